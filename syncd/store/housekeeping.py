"""Housekeeping of the mirror: pruning by age, and settings rewritten without a trace.

Pruning is done in short steps (find the rows of one range of row numbers, then delete them
a chunk per transaction), so that the rate budget's transactions and window commits of the daemon,
which share its one DB thread (``AsyncStore``), and other processes' writes never wait long
behind it. Every delete re-checks its condition, so a tombstone revived meanwhile by another
process stays.

Rows are numbered by ``webhook_events.id`` and ``time_entries.rowid``: on SQLite the id is
the table's rowid, and on PostgreSQL both are identity columns, so the same SQL serves both.

Hard-deleting a tombstone needs nothing else: tombstones are neither in the description
index nor in ``daily_project_totals``, and a trigger (SQLite) or a cascading foreign key
(PostgreSQL) removes the entry's tag links.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from peewee import Database

from syncd.store.backend import execute, is_postgres, write_transaction
from syncd.store.failures import DATABASE_ERRORS
from syncd.store.mirror import Store

T = TypeVar("T")

#: Rows deleted per transaction (a few milliseconds each).
PRUNE_CHUNK = 250
#: Rowids looked at per search (about 10 ms on a mirror of a million entries).
SCAN_SPAN = 50_000

_LAST = {
    "webhook_events": "SELECT COALESCE(MAX(id), 0) FROM webhook_events",
    "tombstones": "SELECT COALESCE(MAX(rowid), 0) FROM time_entries",
}
_EXPIRED = {
    "webhook_events": "SELECT id FROM webhook_events WHERE id BETWEEN ? AND ? AND received_at < ?",
    "tombstones": "SELECT rowid FROM time_entries "
    "WHERE rowid BETWEEN ? AND ? AND deleted_at IS NOT NULL AND deleted_at < ?",
}
_DELETE = {
    "webhook_events": "DELETE FROM webhook_events WHERE id IN ({marks}) AND received_at < ?",
    "tombstones": (
        "DELETE FROM time_entries WHERE rowid IN ({marks}) "
        "AND deleted_at IS NOT NULL AND deleted_at < ?"
    ),
}
PRUNABLE = tuple(_EXPIRED)


def last_rowid(store: Store, kind: str) -> int:
    """The largest row number of ``kind``'s table (0 when empty). Raises ``StoreError``;
    ``KeyError`` for an unknown kind."""
    sql = _LAST[kind]
    return _guarded(store, lambda: int(execute(store.db, sql).fetchone()[0]))


def expired_rows(store: Store, kind: str, before: str, first: int, last: int) -> list[int]:
    """Row numbers from ``first`` to ``last`` of ``kind`` (``webhook_events`` received, or
    ``tombstones`` deleted, before the timestamp ``before``).

    Raises ``StoreError``; ``KeyError`` for an unknown kind.
    """
    sql = _EXPIRED[kind]

    def rows() -> list[int]:
        return [r for (r,) in execute(store.db, sql, (first, last, before))]

    return _guarded(store, rows)


def delete_expired(store: Store, kind: str, rowids: Sequence[int], before: str) -> int:
    """Delete those of ``rowids`` still expired, in one transaction; returns how many.

    Raises ``StoreError``; ``KeyError`` for an unknown kind.
    """
    if not rowids:
        return 0
    sql = _DELETE[kind].format(marks=", ".join("?" * len(rowids)))

    def delete() -> int:
        # The store's write transaction: its checkpoint thread copies the pages afterwards,
        # so no delete waits for a checkpoint.
        with store._write():
            return execute(store.db, sql, (*rowids, before)).rowcount

    return _guarded(store, delete)


def rewrite_settings(store: Store, values: Mapping[str, str | None]) -> None:
    """Set (or, for ``None``, remove) ``installation`` settings so that the old values leave
    no readable trace on SQLite: the freed bytes are zeroed (``secure_delete``) and the WAL,
    which still holds the old pages, is checkpointed and truncated (best effort while readers
    hold it). On PostgreSQL the settings are written in one transaction; the old row versions
    are the server's to vacuum.

    Raises ``StoreError``.
    """

    def write(db: Database) -> None:
        with write_transaction(db):
            for key, value in values.items():
                if value is None:
                    execute(db, "DELETE FROM installation WHERE key = ?", (key,))
                else:
                    execute(
                        db,
                        "INSERT INTO installation (key, value) VALUES (?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (key, value),
                    )

    def rewrite() -> None:
        db = store.db
        if is_postgres(db):
            write(db)
            return
        db.execute_sql("PRAGMA secure_delete = ON")
        try:
            write(db)
        finally:
            db.execute_sql("PRAGMA secure_delete = OFF")
        db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    _guarded(store, rewrite)


def _guarded(store: Store, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except DATABASE_ERRORS as exc:
        raise store.failure(exc) from exc
