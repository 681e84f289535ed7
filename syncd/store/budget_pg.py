"""The PostgreSQL budget ledger: grant, defer, observe and inspect, each in one transaction.

The same tables and meaning as the SQLite ledger (``store/budget.py``): ``budget_grants``
holds one row per request granted (``granted_at`` in epoch seconds, from the clock of the
process that asked), ``budget_state`` the key's "not before" deadline and the server's last
view (both created by ``pg_schema``'s ``0003_rate_budget``).

``acquire`` is one transaction that first takes the key's ``budget_state`` row with
``SELECT … FOR UPDATE`` (inserting it with ``INSERT … ON CONFLICT DO NOTHING`` the first
time), so the processes of one key take turns on that row; at READ COMMITTED every statement
after the lock sees the grants the previous holder committed. Row locks only, no advisory
locks, so CockroachDB runs the same code; a transaction the server aborts as a serialization
failure or a deadlock (CockroachDB runs everything SERIALIZABLE) is run again, up to
``ATTEMPTS`` times in all. ``defer`` and ``observe`` are one upsert each, ``usage`` and
``prune`` one statement each.

The window arithmetic is ``budget_windows``'s (:func:`~syncd.store.budget_windows.plan_grant`),
shared with the SQLite ledger; this module only adapts its reads (:class:`_Reads`) to the
key's rows. ``tests/postgres/test_budget_pg.py`` checks the two ledgers decide alike.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final, ParamSpec, TypeVar

import peewee
import psycopg

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

#: How many times a transaction is tried when the server aborts it as retryable.
ATTEMPTS: Final = 3
#: SQLSTATEs of a transaction that may simply be run again: serialization failure, deadlock.
RETRYABLE: Final = frozenset({"40001", "40P01"})

_LOCK_STATE = (
    "SELECT not_before, server_remaining, server_reset, server_seen_at"
    " FROM budget_state WHERE key_id = %s FOR UPDATE"
)
_ENSURE_STATE = (
    "INSERT INTO budget_state (key_id, not_before) VALUES (%s, 0) ON CONFLICT (key_id) DO NOTHING"
)
_OBSERVE = (
    "INSERT INTO budget_state AS s"
    " (key_id, not_before, server_remaining, server_reset, server_seen_at)"
    " VALUES (%s, 0, %s, %s, %s)"
    " ON CONFLICT (key_id) DO UPDATE SET server_remaining = excluded.server_remaining,"
    " server_reset = excluded.server_reset, server_seen_at = excluded.server_seen_at"
    " WHERE s.server_seen_at IS NULL OR s.server_seen_at <= excluded.server_seen_at"
    " RETURNING s.not_before, s.server_remaining, s.server_reset, s.server_seen_at"
)
_DEFER = (
    "INSERT INTO budget_state AS s (key_id, not_before) VALUES (%s, %s)"
    " ON CONFLICT (key_id) DO UPDATE SET not_before = GREATEST(s.not_before, excluded.not_before)"
    " RETURNING not_before"
)
# Grants in the second (over SECOND_SPAN), the rolling minute and the UTC day before ``now``.
_COUNTS = (
    "SELECT COUNT(CASE WHEN granted_at > %s THEN 1 END) AS in_second,"
    " COUNT(CASE WHEN granted_at > %s THEN 1 END) AS in_minute,"
    " COUNT(CASE WHEN granted_at >= %s THEN 1 END) AS in_day"
    " FROM budget_grants WHERE key_id = %s AND granted_at >= %s"
)
_USAGE = (
    "SELECT c.in_second, c.in_minute, c.in_day, s.not_before, s.server_remaining,"  # noqa: S608
    f" s.server_reset, s.server_seen_at FROM ({_COUNTS}) AS c"
    " LEFT JOIN budget_state AS s ON s.key_id = %s"
)
_FREES_AT = (
    "SELECT granted_at FROM budget_grants WHERE key_id = %s AND granted_at > %s"
    " ORDER BY granted_at LIMIT 1 OFFSET %s"
)
_GRANTS_SINCE = "SELECT COUNT(*) FROM budget_grants WHERE key_id = %s AND granted_at > %s"
_GIVE_BACK = "DELETE FROM budget_grants WHERE id = %s AND key_id = %s"
_INSERT_GRANT = (
    "INSERT INTO budget_grants (key_id, granted_at, priority, pid) VALUES (%s, %s, %s, %s)"
    " RETURNING id"
)
_PRUNE = "DELETE FROM budget_grants WHERE key_id = %s AND granted_at < %s"

P = ParamSpec("P")
R = TypeVar("R")


# --------------------------------------------------------------------------- PostgreSQL


def _retryable(exc: BaseException) -> bool:
    cause = getattr(exc, "orig", None) or exc
    return getattr(cause, "sqlstate", None) in RETRYABLE


def _transaction(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` (one transaction) again when the server aborted it as retryable, up to
    ``ATTEMPTS`` times in all; database errors become ``StoreError``."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return fn(*args, **kwargs)
            except (peewee.PeeweeException, psycopg.Error) as exc:
                if attempt < ATTEMPTS and _retryable(exc):
                    continue
                raise storage_error(exc, "rate budget") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    return wrapper


def _as_state(row: tuple[Any, ...] | None) -> State:
    if row is None or row[0] is None:
        return NO_STATE
    return float(row[0]), row[1], row[2], row[3]


class _Reads:
    """The window arithmetic's reads (``budget_windows.WindowReads``) of one key, inside an
    ``acquire`` that holds its state row."""

    def __init__(self, db: Any, key_id: str, state: State) -> None:
        self._db = db
        self._key_id = key_id
        self._state = state

    def state(self) -> State:
        return self._state

    def counts(self, now: float) -> tuple[int, int, int]:
        row = self._db.execute_sql(_COUNTS, _counts_params(self._key_id, now)).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def frees_at(self, now: float, span: float, count: int, cap: int) -> float:
        row = self._db.execute_sql(
            _FREES_AT, (self._key_id, now - span, max(0, count - cap))
        ).fetchone()
        return (float(row[0]) if row else now) + span

    def grants_since(self, since: float) -> int:
        row = self._db.execute_sql(_GRANTS_SINCE, (self._key_id, since)).fetchone()
        return int(row[0])


def _counts_params(key_id: str, now: float) -> tuple[object, ...]:
    return (now - SECOND_SPAN, now - MINUTE, day_start(now), key_id, counts_since(now))


class PostgresBudgetLedger:
    """The :class:`~syncd.budget_ledger.BudgetLedger` of ``key_id`` in the PostgreSQL ``db``.

    ``db`` is a peewee ``PostgresqlDatabase`` (``backend.open_postgres``) holding
    ``budget_grants`` and ``budget_state``. Every method is one transaction and raises
    ``StoreError`` when the database cannot be used (unreachable, tables missing, or a
    retryable abort that persists for ``ATTEMPTS`` tries).
    """

    def __init__(self, db: Any, key_id: str) -> None:
        self._db = db
        self._key_id = key_id

    @property
    def key_id(self) -> str:
        """The key this ledger counts for."""
        return self._key_id

    @_transaction
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

        One transaction holding the key's ``budget_state`` row (``SELECT … FOR UPDATE``):
        delete the grant ``give_back``, record ``observed``, decide (:func:`plan_grant`),
        insert the grant row. Raises ``StoreError``.
        """
        db, key_id = self._db, self._key_id
        with db.atomic():
            state = self._lock_state()
            if give_back is not None:
                db.execute_sql(_GIVE_BACK, (give_back, key_id))
            if observed is not None:
                row = db.execute_sql(_OBSERVE, (key_id, *observed)).fetchone()
                state = _as_state(row) if row is not None else state
            decision, at = plan_grant(_Reads(db, key_id, state), now, caps)
            if not decision.granted:
                return decision
            (grant_id,) = db.execute_sql(_INSERT_GRANT, (key_id, at, priority, pid)).fetchone()
        return replace(decision, grant_id=grant_id)

    def _lock_state(self) -> State:
        """The key's state row, locked until the transaction ends (created if missing)."""
        row = self._db.execute_sql(_LOCK_STATE, (self._key_id,)).fetchone()
        if row is None:
            self._db.execute_sql(_ENSURE_STATE, (self._key_id,))
            row = self._db.execute_sql(_LOCK_STATE, (self._key_id,)).fetchone()
        return _as_state(row)

    @_transaction
    def defer(self, until: float) -> float:
        """Move the shared ``not_before`` deadline to ``until`` unless it is already later.

        Returns the deadline now in force (epoch seconds). Raises ``StoreError``.
        """
        (deadline,) = self._db.execute_sql(_DEFER, (self._key_id, max(0.0, until))).fetchone()
        return float(deadline)

    @_transaction
    def observe(self, observed: Observation) -> None:
        """Record the server's view unless a newer one is recorded already.

        Raises ``StoreError``.
        """
        self._db.execute_sql(_OBSERVE, (self._key_id, *observed))

    @_transaction
    def usage(self, now: float) -> Usage:
        """Grants in the current second, minute and UTC day, and the shared state.

        One statement (one snapshot), so the counts and the state agree; writes nothing.
        Raises ``StoreError``.
        """
        params = (*_counts_params(self._key_id, now), self._key_id)
        row = self._db.execute_sql(_USAGE, params).fetchone()
        return Usage(int(row[0]), int(row[1]), int(row[2]), *_as_state(row[3:]))

    @_transaction
    def prune(self, now: float, keep: float = KEEP_GRANTS) -> int:
        """Delete grant rows older than ``keep`` seconds; returns how many went.

        Raises ``StoreError``.
        """
        cursor = self._db.execute_sql(_PRUNE, (self._key_id, now - keep))
        return cursor.rowcount
