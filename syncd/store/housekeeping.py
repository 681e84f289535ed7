"""Housekeeping of the mirror: pruning by age, and settings rewritten without a trace.

Pruning is done in short steps (find the rows of one rowid range, then delete them a chunk
per transaction), so that the rate budget's transactions and window commits of the daemon,
which share its one DB thread (``AsyncStore``), and other processes' writes never wait long
behind it. Every delete re-checks its condition, so a tombstone revived meanwhile by another
process stays.

Hard-deleting a tombstone needs nothing else: tombstones are neither in the description
index nor in ``daily_project_totals``, and a trigger removes the entry's tag links.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import peewee

from syncd.errors import StoreError
from syncd.store.mirror import Store

T = TypeVar("T")

#: Rows deleted per transaction (a few milliseconds each).
PRUNE_CHUNK = 250
#: Rowids looked at per search (about 10 ms on a mirror of a million entries).
SCAN_SPAN = 50_000

_TABLE = {"webhook_events": "webhook_events", "tombstones": "time_entries"}
_EXPIRED = {
    "webhook_events": "SELECT rowid FROM webhook_events "
    "WHERE rowid BETWEEN ? AND ? AND received_at < ?",
    "tombstones": "SELECT rowid FROM time_entries "
    "WHERE rowid BETWEEN ? AND ? AND deleted_at IS NOT NULL AND deleted_at < ?",
}
_DELETE = {
    "webhook_events": "DELETE FROM webhook_events WHERE rowid IN ({marks}) AND received_at < ?",
    "tombstones": (
        "DELETE FROM time_entries WHERE rowid IN ({marks}) "
        "AND deleted_at IS NOT NULL AND deleted_at < ?"
    ),
}
PRUNABLE = tuple(_EXPIRED)


def last_rowid(store: Store, kind: str) -> int:
    """The largest rowid of ``kind``'s table (0 when empty). Raises ``StoreError``;
    ``KeyError`` for an unknown kind."""
    sql = f"SELECT IFNULL(MAX(rowid), 0) FROM {_TABLE[kind]}"  # noqa: S608 (a constant)
    return _guarded(store, lambda: int(store.db.execute_sql(sql).fetchone()[0]))


def expired_rows(store: Store, kind: str, before: str, first: int, last: int) -> list[int]:
    """Rowids from ``first`` to ``last`` of ``kind`` (``webhook_events`` received, or
    ``tombstones`` deleted, before the timestamp ``before``).

    Raises ``StoreError``; ``KeyError`` for an unknown kind.
    """
    sql = _EXPIRED[kind]

    def rows() -> list[int]:
        return [r for (r,) in store.db.execute_sql(sql, (first, last, before))]

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
            return store.db.execute_sql(sql, (*rowids, before)).rowcount

    return _guarded(store, delete)


def rewrite_settings(store: Store, values: Mapping[str, str | None]) -> None:
    """Set (or, for ``None``, remove) ``installation`` settings so that the old values leave
    no readable trace: the freed bytes are zeroed (``secure_delete``) and the WAL, which still
    holds the old pages, is checkpointed and truncated (best effort while readers hold it).

    Raises ``StoreError``.
    """

    def rewrite() -> None:
        db = store.db
        db.execute_sql("PRAGMA secure_delete = ON")
        try:
            with db.atomic("IMMEDIATE"):
                for key, value in values.items():
                    if value is None:
                        db.execute_sql("DELETE FROM installation WHERE key = ?", (key,))
                    else:
                        db.execute_sql(
                            "INSERT INTO installation (key, value) VALUES (?, ?) "
                            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                            (key, value),
                        )
        finally:
            db.execute_sql("PRAGMA secure_delete = OFF")
        db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    _guarded(store, rewrite)


def _guarded(store: Store, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except (peewee.DatabaseError, sqlite3.Error) as exc:
        raise StoreError(f"mirror database {store.path}: {exc}") from exc
