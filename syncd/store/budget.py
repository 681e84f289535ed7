"""The SQLite budget ledger: grant, defer, observe and inspect, each in one transaction.

Tables (created by the store's migrations):

* ``budget_grants(id, key_id, granted_at, priority, pid)``: one row per request granted, with
  ``granted_at`` in epoch seconds; indexed on ``(key_id, granted_at)``.
* ``budget_state(key_id, not_before, server_remaining, server_reset, server_seen_at)``: the
  shared "not before" deadline written after a 429, and the server's last word on the
  rolling minute window.

:class:`SqliteBudgetLedger` implements :class:`~syncd.budget_ledger.BudgetLedger`;
:func:`budget_ledger` hands out the one of a mirror store, and the budget runs its methods
on the database thread. ``acquire`` is one short ``BEGIN IMMEDIATE`` transaction, so every
process using the same database file sees one consistent budget. What it decides is
``budget_windows``'s arithmetic, shared with the PostgreSQL ledger, reading the key's rows
through :class:`_SqliteReads`.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ParamSpec, TypeVar

import peewee

from syncd.budget_ledger import (
    KEEP_GRANTS,
    MINUTE,
    SECOND_SPAN,
    Caps,
    Decision,
    Observation,
    Usage,
    day_start,
)
from syncd.store.budget_windows import NO_STATE, State, counts_since, plan_grant
from syncd.store.failures import storage_error

_INSERT_GRANT = "INSERT INTO budget_grants (key_id, granted_at, priority, pid) VALUES (?, ?, ?, ?)"

P = ParamSpec("P")
R = TypeVar("R")


def _store_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn database errors (for example a lock held past the busy timeout) into ``StoreError``."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (peewee.PeeweeException, sqlite3.Error) as exc:
            raise storage_error(exc, "rate budget") from exc

    return wrapper


def _state(db: Any, key_id: str) -> State:
    row = db.execute_sql(
        "SELECT not_before, server_remaining, server_reset, server_seen_at"
        " FROM budget_state WHERE key_id = ?",
        (key_id,),
    ).fetchone()
    if row is None:
        return NO_STATE
    return float(row[0] or 0.0), row[1], row[2], row[3]


def _counts(db: Any, key_id: str, now: float) -> tuple[int, int, int]:
    row = db.execute_sql(
        "SELECT"
        " COALESCE(SUM(granted_at > ?), 0),"
        " COALESCE(SUM(granted_at > ?), 0),"
        " COALESCE(SUM(granted_at >= ?), 0)"
        " FROM budget_grants WHERE key_id = ? AND granted_at >= ?",
        (now - SECOND_SPAN, now - MINUTE, day_start(now), key_id, counts_since(now)),
    ).fetchone()
    return int(row[0]), int(row[1]), int(row[2])


def _frees_at(db: Any, key_id: str, now: float, span: float, count: int, cap: int) -> float:
    """When the rolling ``span`` window holding ``count`` grants drops below ``cap``."""
    row = db.execute_sql(
        "SELECT granted_at FROM budget_grants WHERE key_id = ? AND granted_at > ?"
        " ORDER BY granted_at LIMIT 1 OFFSET ?",
        (key_id, now - span, max(0, count - cap)),
    ).fetchone()
    return (float(row[0]) if row else now) + span


def _grants_since(db: Any, key_id: str, since: float) -> int:
    row = db.execute_sql(
        "SELECT COUNT(*) FROM budget_grants WHERE key_id = ? AND granted_at > ?",
        (key_id, since),
    ).fetchone()
    return int(row[0])


class _SqliteReads:
    """The window arithmetic's reads (``budget_windows.WindowReads``) of ``key_id`` in the
    SQLite ``db``, inside the caller's transaction; each reads the rows as they are then."""

    def __init__(self, db: Any, key_id: str) -> None:
        self._db = db
        self._key_id = key_id

    def state(self) -> State:
        return _state(self._db, self._key_id)

    def counts(self, now: float) -> tuple[int, int, int]:
        return _counts(self._db, self._key_id, now)

    def frees_at(self, now: float, span: float, count: int, cap: int) -> float:
        return _frees_at(self._db, self._key_id, now, span, count, cap)

    def grants_since(self, since: float) -> int:
        return _grants_since(self._db, self._key_id, since)


def _ensure_state(db: Any, key_id: str) -> None:
    db.execute_sql(
        "INSERT INTO budget_state (key_id, not_before) VALUES (?, 0)"
        " ON CONFLICT (key_id) DO NOTHING",
        (key_id,),
    )


def _observe(db: Any, key_id: str, observed: Observation) -> None:
    _ensure_state(db, key_id)
    db.execute_sql(
        "UPDATE budget_state SET server_remaining = ?, server_reset = ?, server_seen_at = ?"
        " WHERE key_id = ? AND (server_seen_at IS NULL OR server_seen_at <= ?)",
        (observed.remaining, observed.reset, observed.seen_at, key_id, observed.seen_at),
    )


class SqliteBudgetLedger:
    """The :class:`~syncd.budget_ledger.BudgetLedger` of ``key_id`` in the SQLite ``db``.

    ``db`` is a peewee database holding ``budget_grants`` and ``budget_state``. Every method
    is one transaction and raises ``StoreError`` when the database cannot be used (for
    example when it stays locked past its busy timeout, or the tables are missing).
    """

    def __init__(self, db: Any, key_id: str) -> None:
        self._db = db
        self._key_id = key_id

    @property
    def key_id(self) -> str:
        """The key this ledger counts for."""
        return self._key_id

    @_store_errors
    def acquire(
        self,
        now: float,
        caps: Caps,
        *,
        priority: int,
        pid: int,
        observed: Observation | None = None,
        give_back: int | None = None,
    ) -> Decision:
        """Grant one request at ``now`` if every window allows it (see the protocol).

        One ``BEGIN IMMEDIATE`` transaction: delete the grant row ``give_back``, record
        ``observed``, check the windows, insert the grant row. When only the per-second
        window refuses and frees a slot within ``RESERVE_AHEAD``, the row is written for
        that moment (if every other window allows it then), so the caller sleeps and sends
        without asking the database again and the request goes out on time even when the
        database is busy at that moment. When the slot is further off, the refusal says to
        ask again ``RESERVE_AHEAD`` before it (``budget_windows.plan_grant`` decides).
        """
        db, key_id = self._db, self._key_id
        with db.atomic("IMMEDIATE"):
            if give_back is not None:
                db.execute_sql("DELETE FROM budget_grants WHERE id = ?", (give_back,))
            if observed is not None:
                _observe(db, key_id, observed)
            decision, at = plan_grant(_SqliteReads(db, key_id), now, caps)
            if not decision.granted:
                return decision
            cursor = db.execute_sql(_INSERT_GRANT, (key_id, at, priority, pid))
        return replace(decision, grant_id=cursor.lastrowid)

    @_store_errors
    def defer(self, until: float) -> float:
        """Move the shared ``not_before`` deadline to ``until`` unless it is already later.

        Returns the deadline now in force (epoch seconds).
        """
        db, key_id = self._db, self._key_id
        with db.atomic("IMMEDIATE"):
            _ensure_state(db, key_id)
            db.execute_sql(
                "UPDATE budget_state SET not_before = MAX(COALESCE(not_before, 0), ?)"
                " WHERE key_id = ?",
                (until, key_id),
            )
            return _state(db, key_id)[0]

    @_store_errors
    def observe(self, observed: Observation) -> None:
        """Record the server's view unless a newer one is recorded already."""
        with self._db.atomic("IMMEDIATE"):
            _observe(self._db, self._key_id, observed)

    @_store_errors
    def usage(self, now: float) -> Usage:
        """Grants in the current second, minute and UTC day, and the shared state.

        One read transaction, so the counts and the state agree; writes nothing.
        """
        with self._db.atomic():
            second, minute, day = _counts(self._db, self._key_id, now)
            state = _state(self._db, self._key_id)
        return Usage(second, minute, day, *state)

    @_store_errors
    def prune(self, now: float, keep: float = KEEP_GRANTS) -> int:
        """Delete grant rows older than ``keep`` seconds; returns how many went."""
        with self._db.atomic("IMMEDIATE"):
            cursor = self._db.execute_sql(
                "DELETE FROM budget_grants WHERE key_id = ? AND granted_at < ?",
                (self._key_id, now - keep),
            )
            return cursor.rowcount
