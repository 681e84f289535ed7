"""``AsyncStore``: the ``MirrorStore`` seam for asyncio code, backed by a ``Store``.

Store work runs on one dedicated worker thread, so SQLite never blocks the event loop and the
process's own writes never compete for the write lock. The rate budget's short transactions
run on a second thread with its own connection (``call_budget``): a grant then waits at most
for the one commit holding the lock, never behind a queue of window commits. The caller's
``contextvars`` are copied into the threads, so structlog's bound fields reach store logs.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
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
from syncd.store.mirror import Store

P = ParamSpec("P")
T = TypeVar("T")


class AsyncStore:
    """Async facade over a ``Store``; create it with ``await AsyncStore.open(path)``."""

    def __init__(self, store: Store, executor: ThreadPoolExecutor) -> None:
        self._store = store
        self._executor = executor
        self._budget_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="syncd-budget")
        self._closed = False

    @classmethod
    async def open(cls, path: str | Path, *, busy_timeout: float = 30.0) -> AsyncStore:
        """Open (create, migrate) the mirror on a new DB thread.

        Raises ``SchemaTooNew`` or ``StoreError`` (and stops the thread again).
        """
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="syncd-db")
        try:
            store = await _run(executor, functools.partial(Store, path, timeout=busy_timeout))
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(store, executor)

    @property
    def store(self) -> Store:
        """The synchronous store; call its methods only through :meth:`call`."""
        return self._store

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` (typically a ``Store`` method) on the DB thread."""
        if self._closed:
            raise RuntimeError("AsyncStore is closed")
        return await _run(self._executor, functools.partial(fn, *args, **kwargs))

    async def call_budget(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` on the budget thread (its own connection to the mirror).

        For short transactions only: ``fn`` gets the thread's connection through the store's
        peewee database, whose connections are per thread.
        """
        if self._closed:
            raise RuntimeError("AsyncStore is closed")
        return await _run(self._budget_executor, functools.partial(fn, *args, **kwargs))

    async def close(self) -> None:
        """Close both threads' connections and stop the threads (idempotent)."""
        if self._closed:
            return
        try:
            await _run(self._budget_executor, self._store.close)
            await self.call(self._store.close)
        finally:
            self._closed = True
            self._budget_executor.shutdown(wait=True)
            self._executor.shutdown(wait=True)

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

    async def apply_window(self, scan: WindowScan) -> WindowOutcome:
        return await self.call(self._store.apply_window, scan)

    async def count_live_entries(
        self, workspace_id: str, date_from: str | None = None, date_to: str | None = None
    ) -> int:
        return await self.call(self._store.count_live_entries, workspace_id, date_from, date_to)

    async def running_entry_dates(self, workspace_id: str) -> list[str]:
        return await self.call(self._store.running_entry_dates, workspace_id)

    async def apply_pushed_entry(self, entry: TimeEntry, source: Source, synced_at: str) -> str:
        return await self.call(self._store.apply_pushed_entry, entry, source, synced_at)

    async def tombstone_entry(self, entry_id: str, deleted_at: str) -> bool:
        return await self.call(self._store.tombstone_entry, entry_id, deleted_at)

    async def record_webhook_event(self, event: WebhookEvent, received_at: str) -> bool:
        return await self.call(self._store.record_webhook_event, event, received_at)

    async def start_run(self, kind: str, started_at: str) -> int:
        return await self.call(self._store.start_run, kind, started_at)

    async def finish_run(self, run_id: int, report: RunReport) -> None:
        await self.call(self._store.finish_run, run_id, report)

    # ---- extras for the daemon and the CLI
    async def upsert_reference(self, kind: str, workspace_id: str, obj: Mapping[str, Any]) -> None:
        await self.call(self._store.upsert_reference, kind, workspace_id, obj)

    async def set_webhook_outcome(self, dedupe_key: str, outcome: str) -> None:
        await self.call(self._store.set_webhook_outcome, dedupe_key, outcome)

    async def get_setting(self, key: str) -> str | None:
        return await self.call(self._store.get_setting, key)

    async def set_setting(self, key: str, value: str | None) -> None:
        await self.call(self._store.set_setting, key, value)

    async def status(self) -> dict[str, Any]:
        return await self.call(self._store.status)

    async def mirror_snapshot(self, workspace_id: str) -> list[dict[str, Any]]:
        return await self.call(self._store.mirror_snapshot, workspace_id)


async def _run(executor: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
    ctx = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(executor, ctx.run, fn)
