"""``AsyncStore``: the ``MirrorStore`` seam for asyncio code, backed by a ``Store``.

Every call runs on ONE dedicated worker thread, on either backend, so the database never
blocks the event loop and the process never has two of its own connections competing for the
write lock (SQLite's busy wait
is not fair: a connection polling for the lock can lose it to back-to-back commits for
hundreds of milliseconds). The rate budget's short transactions (``call_budget``) go before
any call still queued, so a grant waits at most for the one call running, never behind a
queue of window commits. The caller's ``contextvars`` are copied into the thread, so
structlog's bound fields reach store logs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import itertools
import queue
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from syncd.records import (
    RunReport,
    Source,
    TimeEntry,
    WebhookEvent,
    WindowOutcome,
    WindowScan,
    Workspace,
    WorkspaceState,
)
from syncd.seams import MassDeletePolicy
from syncd.store.mirror import Store
from syncd.store.status_reads import MirrorCounts

P = ParamSpec("P")
T = TypeVar("T")


class _DbThread:
    """One worker thread running calls in submission order, except that urgent calls go
    before every ordinary call still queued.

    ``concurrent.futures.ThreadPoolExecutor`` has no priorities (its queue is FIFO).
    """

    _URGENT, _ORDINARY, _STOP = 0, 1, 2

    def __init__(self, name: str) -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, Callable[[], Any] | None, Any]] = (
            queue.PriorityQueue()
        )
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T], *, urgent: bool = False) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        rank = self._URGENT if urgent else self._ORDINARY
        self._queue.put((rank, next(self._order), fn, future))
        return future

    def shutdown(self) -> None:
        """Stop after every call already queued; wait for the thread to end."""
        self._queue.put((self._STOP, next(self._order), None, None))
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _work(self) -> None:
        while True:
            _, _, fn, future = self._queue.get()
            if fn is None:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn()
            except BaseException as exc:  # handed to the waiting coroutine
                future.set_exception(exc)
            else:
                future.set_result(result)


class AsyncStore:
    """Async facade over a ``Store``; create it with ``await AsyncStore.open(location)``."""

    def __init__(self, store: Store, thread: _DbThread) -> None:
        self._store = store
        self._thread = thread
        self._closed = False

    @classmethod
    async def open(cls, location: str | Path, *, busy_timeout: float = 30.0) -> AsyncStore:
        """Open (create, migrate) the mirror at ``location`` (a SQLite file path or a
        PostgreSQL URL) on a new DB thread; ``busy_timeout`` bounds the wait for SQLite's
        write lock, or for a PostgreSQL connection.

        Raises ``SchemaTooNew``, ``ConfigError`` (a malformed URL) or ``StoreError`` (and
        stops the thread again).
        """
        thread = _DbThread("syncd-db")
        try:
            store = await _run(
                thread,
                functools.partial(
                    Store, location, timeout=busy_timeout, checkpoint_in_background=True
                ),
            )
        except BaseException:
            thread.shutdown()
            raise
        return cls(store, thread)

    @property
    def store(self) -> Store:
        """The synchronous store; call its methods only through :meth:`call`."""
        return self._store

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` (typically a ``Store`` method) on the DB thread."""
        if self._closed:
            raise RuntimeError("AsyncStore is closed")
        return await _run(self._thread, functools.partial(fn, *args, **kwargs))

    async def call_budget(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` on the DB thread before every call still queued.

        For the rate budget's short transactions, which must not wait behind window commits.
        """
        if self._closed:
            raise RuntimeError("AsyncStore is closed")
        return await _run(self._thread, functools.partial(fn, *args, **kwargs), urgent=True)

    async def close(self) -> None:
        """Close the connection on the DB thread and stop the thread (idempotent)."""
        if self._closed:
            return
        try:
            await self.call(self._store.close)
        finally:
            self._closed = True
            self._thread.shutdown()

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- MirrorStore
    async def upsert_workspaces(self, workspaces: Sequence[Workspace], synced_at: str) -> None:
        await self.call(self._store.upsert_workspaces, workspaces, synced_at)

    async def workspace_state(self, workspace_id: str) -> WorkspaceState:
        return await self.call(self._store.workspace_state, workspace_id)

    async def save_state(self, state: WorkspaceState) -> None:
        await self.call(self._store.save_state, state)

    async def oldest_entry_date(self, workspace_id: str) -> str | None:
        return await self.call(self._store.oldest_entry_date, workspace_id)

    async def last_scan_covering(self, workspace_id: str, day: str) -> str | None:
        return await self.call(self._store.last_scan_covering, workspace_id, day)

    async def apply_window(
        self, scan: WindowScan, policy: MassDeletePolicy = MassDeletePolicy()
    ) -> WindowOutcome:
        return await self.call(self._store.apply_window, scan, policy)

    async def count_live_entries(
        self,
        workspace_id: str,
        date_from: str | None = None,
        date_to: str | None = None,
        by: str = "date",
    ) -> int:
        return await self.call(self._store.count_live_entries, workspace_id, date_from, date_to, by)

    async def running_entry_dates(self, workspace_id: str) -> list[str]:
        return await self.call(self._store.running_entry_dates, workspace_id)

    async def apply_pushed_entry(self, entry: TimeEntry, source: Source, synced_at: str) -> str:
        return await self.call(self._store.apply_pushed_entry, entry, source, synced_at)

    async def apply_push(
        self,
        event: WebhookEvent,
        received_at: str,
        entry: TimeEntry | None = None,
        *,
        outcome: str = "recorded",
    ) -> str:
        return await self.call(self._store.apply_push, event, received_at, entry, outcome=outcome)

    async def unconfirmed_push_days(
        self, workspace_id: str, limit: int
    ) -> list[tuple[str, str | None]]:
        return await self.call(self._store.unconfirmed_push_days, workspace_id, limit)

    async def tombstone_entry(self, entry_id: str, deleted_at: str) -> bool:
        return await self.call(self._store.tombstone_entry, entry_id, deleted_at)

    async def record_webhook_event(self, event: WebhookEvent, received_at: str) -> bool:
        return await self.call(self._store.record_webhook_event, event, received_at)

    async def start_run(self, kind: str, started_at: str) -> int:
        return await self.call(self._store.start_run, kind, started_at)

    async def finish_run(self, run_id: int, report: RunReport) -> None:
        await self.call(self._store.finish_run, run_id, report)

    # ---- extras for the daemon and the CLI
    async def set_webhook_outcome(self, dedupe_key: str, outcome: str) -> None:
        await self.call(self._store.set_webhook_outcome, dedupe_key, outcome)

    async def get_setting(self, key: str) -> str | None:
        return await self.call(self._store.get_setting, key)

    async def set_setting(self, key: str, value: str | None) -> None:
        await self.call(self._store.set_setting, key, value)

    async def status(self) -> MirrorCounts:
        return await self.call(self._store.status)

    async def mirror_snapshot(self, workspace_id: str) -> list[dict[str, Any]]:
        return await self.call(self._store.mirror_snapshot, workspace_id)


async def _run(thread: _DbThread, fn: Callable[[], T], *, urgent: bool = False) -> T:
    ctx = contextvars.copy_context()
    return await asyncio.wrap_future(thread.submit(functools.partial(ctx.run, fn), urgent=urgent))
