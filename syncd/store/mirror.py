"""The mirror store: the connection, its write transaction, and one method per thing the
daemon and the CLI ask of the mirror (synchronous peewee).

``Store`` is a facade: what a call does lives in a module of its own, ``windows.py`` (applying
a scan), ``pushes.py`` (the webhook ledger and pushed entries), ``bookkeeping.py``
(workspaces, progress, runs, scan history), ``settings.py`` (the installation's key/value
settings), ``snapshot.py`` and ``status_reads.py``; ``entries.py`` writes the rows for scans
and pushes alike. Every method binds the models to this store's database and turns a database
failure into ``StoreError`` (``failures.py``).

The mirror lives in a SQLite file or, given a ``postgresql://`` (``postgres://``) URL, in a
PostgreSQL database migrated by ``pg_schema.py``; the statements that differ are rendered per
backend in ``statements.py``. All writes run in ``backend.write_transaction``: ``BEGIN
IMMEDIATE`` on SQLite (the write lock is taken up front, so a concurrent writer waits on the
busy timeout instead of failing half-way), ``BEGIN`` on PostgreSQL. The connection's PRAGMAs,
the file's mode and the WAL checkpoint thread are the SQLite-only part of opening it.
``AsyncStore`` (``asyncstore.py``) runs these methods on one dedicated thread for asyncio
callers, on either backend.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import peewee
import stamina
from peewee import SqliteDatabase

from syncd.database_url import is_postgres_url, redact
from syncd.errors import SchemaTooNew
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
from syncd.store import (
    bookkeeping,
    migrations,
    pg_schema,
    pushes,
    settings,
    snapshot,
    status_reads,
    windows,
)
from syncd.store import models as m
from syncd.store.backend import (
    drop_if_broken,
    open_postgres,
    write_transaction,
)
from syncd.store.checkpoint import Checkpointer
from syncd.store.entries import EntryWriter
from syncd.store.failures import DATABASE_ERRORS, storage_error
from syncd.store.filemodes import create_mirror_file
from syncd.store.statements import build

P = ParamSpec("P")
T = TypeVar("T")

WAL_SIZE_LIMIT = 8 * 2**20  # bytes of WAL file kept once a checkpoint has copied it
PRAGMAS: dict[str, Any] = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "foreign_keys": 1,
    "cache_size": -64000,  # KiB
    "temp_store": "memory",
    # Checkpoint the WAL every ~32 MB instead of every ~4 MB: a backfill commits thousands of
    # rows per window, and each checkpoint is an fsync of the database.
    "wal_autocheckpoint": 8000,
    # Once a checkpoint has copied the WAL, the next write starts it over and cuts the file
    # back to this size: a backfill's WAL does not stay on disk for the daemon's lifetime.
    "journal_size_limit": WAL_SIZE_LIMIT,
}
#: With checkpoints in the background, the writer checkpoints only past this many WAL pages
#: (64 MB): what the background has not copied yet, after which the WAL starts over.
BACKSTOP_CHECKPOINT_PAGES = 16_000


def _store_call(method: Callable[P, T]) -> Callable[P, T]:
    """Bind the models to this store's database and turn database failures into StoreError;
    a PostgreSQL connection found broken is dropped, so the next call connects anew."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        self = args[0]
        try:
            with self.db.bind_ctx(m.ALL_MODELS, bind_refs=False, bind_backrefs=False):  # type: ignore[attr-defined]
                return method(*args, **kwargs)
        except DATABASE_ERRORS as exc:
            drop_if_broken(self.db)  # type: ignore[attr-defined]
            raise self.failure(exc) from exc  # type: ignore[attr-defined]

    return wrapper


class Store:
    """The mirror at ``location``: a SQLite file path, or a ``postgresql://`` /
    ``postgres://`` URL (created and migrated on open).

    ``path`` names the mirror in messages: the file path, or the URL with its password
    hidden. With ``checkpoint_in_background`` a thread copies the WAL into a SQLite database
    after commits, so no write waits for a checkpoint (see ``checkpoint.py``); PostgreSQL has
    no WAL file to copy and ignores it.

    Raises ``SchemaTooNew`` when the database was migrated by a newer syncd, ``ConfigError``
    for a malformed PostgreSQL URL, and ``StoreError`` when it cannot be opened (not a
    database, unwritable directory, locked for longer than ``timeout`` seconds, a server that
    cannot be reached).
    """

    def __init__(
        self,
        location: str | Path,
        *,
        timeout: float = 30.0,
        migrate: bool = True,
        checkpoint_in_background: bool = False,
    ) -> None:
        self.location = str(location)
        self.is_postgres = is_postgres_url(self.location)
        self.path = redact(self.location) if self.is_postgres else self.location
        self._checkpointer: Checkpointer | None = None
        if self.is_postgres:
            self.db: peewee.Database = open_postgres(self.location, connect_timeout=timeout)
            schema: Any = pg_schema
        else:
            if migrate:
                create_mirror_file(self.path)  # 0640; SQLite gives -wal and -shm the same mode
            self.db = SqliteDatabase(self.path, timeout=timeout, pragmas=PRAGMAS)
            schema = migrations
        self._schema = schema
        try:
            if not self.is_postgres:
                self._connect_sqlite(timeout)
            if migrate:
                schema.migrate(self.db)
            else:
                schema.check_not_too_new(self.db)
            with self.db.bind_ctx(m.ALL_MODELS, bind_refs=False, bind_backrefs=False):
                self._sql = build(self.db)
            self._entries = EntryWriter(self.db, self._sql)
            if checkpoint_in_background and not self.is_postgres:
                self.db.execute_sql(f"PRAGMA wal_autocheckpoint = {BACKSTOP_CHECKPOINT_PAGES}")
                self._checkpointer = Checkpointer(self.path, timeout=timeout)
        except SchemaTooNew:
            self.db.close()
            raise
        except DATABASE_ERRORS as exc:
            drop_if_broken(self.db)
            self.db.close()
            where = f"cannot open mirror database {self.path}"
            raise storage_error(exc, where, self._file) from exc

    def _connect_sqlite(self, timeout: float) -> None:
        # Switching a new file to WAL takes an exclusive lock, and SQLite answers "locked" at
        # once instead of waiting out the busy timeout: two processes creating the mirror
        # together retry here (jittered) until ``timeout``.
        for attempt in stamina.retry_context(
            on=_locked, attempts=None, timeout=timeout, wait_initial=0.02, wait_max=0.5
        ):
            with attempt:
                self.db.connect(reuse_if_open=True)

    @property
    def _file(self) -> str | None:
        """The SQLite file, for explaining a file that cannot be opened (None on PostgreSQL)."""
        return None if self.is_postgres else self.path

    def failure(self, exc: BaseException) -> Exception:
        """The ``StoreError`` naming the cause of the database failure ``exc``."""
        return storage_error(exc, f"mirror database {self.path}", self._file)

    def close(self) -> None:
        """Close this thread's connection (idempotent), after the checkpoint thread's."""
        if self._checkpointer is not None:
            self._checkpointer.close()
        if not self.db.is_closed():
            self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[None]:
        with write_transaction(self.db):
            yield
        if self._checkpointer is not None:
            self._checkpointer.committed()

    # ------------------------------------------------------------------ bookkeeping

    @_store_call
    def upsert_workspaces(self, workspaces: Sequence[Workspace], synced_at: str) -> None:
        if not workspaces:
            return
        with self._write():
            bookkeeping.upsert_workspaces(workspaces, synced_at)

    @_store_call
    def workspace_ids(self) -> set[str]:
        """Ids of every workspace the mirror knows."""
        return bookkeeping.workspace_ids()

    @_store_call
    def workspace_state(self, workspace_id: str) -> WorkspaceState:
        return bookkeeping.workspace_state(workspace_id)

    @_store_call
    def save_state(self, state: WorkspaceState) -> None:
        with self._write():
            bookkeeping.save_state(state)

    @_store_call
    def oldest_entry_date(self, workspace_id: str) -> str | None:
        """The oldest ``date`` of any entry of the workspace, tombstones included."""
        return bookkeeping.oldest_entry_date(workspace_id)

    @_store_call
    def last_scan_covering(self, workspace_id: str, day: str) -> str | None:
        """When ``day`` of the workspace was last verified by a walk, or None."""
        return bookkeeping.last_scan_covering(workspace_id, day)

    @_store_call
    def count_live_entries(
        self,
        workspace_id: str,
        date_from: str | None = None,
        date_to: str | None = None,
        by: str = "date",
    ) -> int:
        """Live entries whose ``date``, creation day or both (``by``) lie in the range."""
        return bookkeeping.count_live_entries(workspace_id, date_from, date_to, by)

    @_store_call
    def running_entry_dates(self, workspace_id: str) -> list[str]:
        """Dates (YYYY-MM-DD, ascending, distinct) of live entries held as running timers."""
        return bookkeeping.running_entry_dates(self.db, self._sql, workspace_id)

    @_store_call
    def start_run(self, kind: str, started_at: str) -> int:
        with self._write():
            return bookkeeping.start_run(kind, started_at)

    @_store_call
    def finish_run(self, run_id: int, report: RunReport) -> None:
        with self._write():
            bookkeeping.finish_run(run_id, report)

    # ------------------------------------------------------------------ entries

    @_store_call
    def apply_window(
        self, scan: WindowScan, policy: MassDeletePolicy = MassDeletePolicy()
    ) -> WindowOutcome:
        """Apply one complete window scan in one write transaction (see ``windows.py``).

        Raises ``MassDeleteError`` (nothing written) when the tombstones would pass what
        ``policy`` allows; ``StoreError`` when the database fails (nothing written either).
        """
        with self._write():
            return windows.apply_window(self._entries, scan, policy)

    @_store_call
    def apply_pushed_entry(self, entry: TimeEntry, source: Source, synced_at: str) -> str:
        """Upsert one pushed entry unless the mirror holds a version at least as new.

        Returns "inserted", "updated", "revived", "stale" or "ignored" (see ``pushes.py``).
        """
        with self._write():
            return pushes.apply_entry(self._entries, entry, source, synced_at)

    @_store_call
    def apply_push(
        self,
        event: WebhookEvent,
        received_at: str,
        entry: TimeEntry | None = None,
        *,
        outcome: str = "recorded",
    ) -> str:
        """Ledger ``event``, apply ``entry`` (if any) and record the outcome, in one
        transaction.

        Returns "duplicate" (nothing written) when the event's key was seen, else what
        :meth:`apply_pushed_entry` returns, or ``outcome`` when there is no entry.
        """
        with self._write():
            return pushes.apply_push(
                self._entries, self._storable_event(event), received_at, entry, outcome
            )

    @_store_call
    def unconfirmed_push_days(self, workspace_id: str, limit: int) -> list[tuple[str, str | None]]:
        """``(date, creation day or None)`` of at most ``limit`` live pushed rows of the
        workspace no scan has confirmed yet, the earliest received first (see ``pushes.py``)."""
        return pushes.unconfirmed_push_days(workspace_id, limit)

    @_store_call
    def tombstone_entry(self, entry_id: str, deleted_at: str) -> bool:
        """Tombstone one live entry; False if unknown or already gone."""
        with self._write():
            return self._entries.tombstone([entry_id], deleted_at) > 0

    @_store_call
    def mirror_snapshot(self, workspace_id: str) -> list[dict[str, Any]]:
        """Every live entry of the workspace as a dict (content columns + sorted ``tags``)."""
        return snapshot.mirror_snapshot(self.db, self._sql, workspace_id)

    @_store_call
    def rebuild_search(self) -> None:
        """Rebuild the description index from the live rows (after external tools edit rows);
        nothing to do on PostgreSQL, whose ``description_search`` follows every row."""
        with self._write():
            for sql in self._sql.rebuild_search:
                self.db.execute_sql(sql)

    # ------------------------------------------------------------------ webhook ledger

    @_store_call
    def record_webhook_event(self, event: WebhookEvent, received_at: str) -> bool:
        """Add the event to the ledger; False (and nothing written) if its key was seen."""
        with self._write():
            return pushes.record_event(self._storable_event(event), received_at)

    @_store_call
    def set_webhook_outcome(self, dedupe_key: str, outcome: str) -> None:
        """Record what applying a ledgered event did (e.g. "inserted", "stale", "failed")."""
        with self._write():
            pushes.set_outcome(dedupe_key, outcome)

    @_store_call
    def record_refused_webhook(
        self,
        *,
        dedupe_key: str,
        kind: str,
        object_id: str,
        workspace_id: str | None,
        delivery_id: str | None,
        reason: str,
        body: str,
        body_bytes: int,
        received_at: str,
    ) -> bool:
        """Ledger a delivery syncd will not use (outcome ``refused``); writes nothing else.
        False (and nothing written) if its key was seen. Raises ``StoreError``."""
        ((dedupe_key, kind, object_id, workspace_id, delivery_id, reason, body),) = (
            self._sql.storable(
                [(dedupe_key, kind, object_id, workspace_id, delivery_id, reason, body)]
            )
        )
        with self._write():
            return pushes.record_refused(
                dedupe_key=dedupe_key,
                kind=kind,
                object_id=object_id,
                workspace_id=workspace_id,
                delivery_id=delivery_id,
                reason=reason,
                body=body,
                body_bytes=body_bytes,
                received_at=received_at,
            )

    def _storable_event(self, event: WebhookEvent) -> WebhookEvent:
        """``event`` with its ledgered text as this database can hold it (a hostile NUL
        character taken out on PostgreSQL)."""
        ((dedupe_key, object_id, workspace_id, updated_at, delivery_id),) = self._sql.storable(
            [
                (
                    event.dedupe_key,
                    event.object_id,
                    event.workspace_id,
                    event.updated_at,
                    event.delivery_id,
                )
            ]
        )
        return dataclasses.replace(
            event,
            dedupe_key=dedupe_key,
            object_id=object_id,
            workspace_id=workspace_id,
            updated_at=updated_at,
            delivery_id=delivery_id,
        )

    # ------------------------------------------------------------------ settings, status

    @_store_call
    def get_setting(self, key: str) -> str | None:
        return settings.get(key)

    @_store_call
    def set_setting(self, key: str, value: str | None) -> None:
        """Store a setting; ``None`` removes it."""
        with self._write():
            settings.put(key, value)

    @_store_call
    def status(self) -> status_reads.MirrorCounts:
        """What the mirror holds and how far syncd got (see :mod:`syncd.store.status_reads`)."""
        return status_reads.read_counts(self.db, self.workspace_state)

    @_store_call
    def applied_migrations(self) -> list[str]:
        """The names in the schema ledger of this store's backend, in the order applied."""
        return self._schema.applied_migrations(self.db)

    @_store_call
    def missing_migrations(self) -> list[str]:
        """Steps of this backend's schema not in the ledger ([] when it is complete)."""
        applied = set(self._schema.applied_migrations(self.db))
        return [step.name for step in self._schema.MIGRATIONS if step.name not in applied]


def _locked(exc: Exception) -> bool:
    return isinstance(exc, peewee.OperationalError) and "locked" in str(exc)


def open_store(location: str | Path, *, timeout: float = 30.0) -> Store:
    """Open (creating and migrating if needed) the mirror at ``location`` (a file path or a
    PostgreSQL URL).

    Raises ``SchemaTooNew``, ``ConfigError`` (a malformed URL) or ``StoreError``.
    """
    return Store(location, timeout=timeout)
