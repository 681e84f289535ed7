"""The SQL half of the rate budget: grant, defer, observe and inspect, each in one transaction.

Tables (created by the store's migrations):

* ``budget_grants(id, key_id, granted_at, priority, pid)``: one row per request granted, with
  ``granted_at`` in epoch seconds; indexed on ``(key_id, granted_at)``.
* ``budget_state(key_id, not_before, server_remaining, server_reset, server_seen_at)``: the
  shared "not before" deadline written after a 429, and the server's last word on the
  rolling minute window.

Every function is synchronous and takes the peewee database as its first argument; the
budget runs them on the database thread. ``try_acquire`` is one short ``BEGIN IMMEDIATE``
transaction, so every process using the same database file sees one consistent budget.
"""

from __future__ import annotations

import functools
import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ParamSpec, TypeVar

import peewee

from syncd.store.failures import storage_error

SECOND = 1.0
#: The span the per-second cap is counted over: a second plus the time a request may take
#: from its grant to the moment the server counts it (the event loop, the network, and a
#: server still busy answering the requests that arrived just before; against the
#: emulator, 1.05 s let eleven land in one of its seconds once in about fifteen backfills).
SECOND_SPAN = SECOND + 0.1
#: A server ``Reset`` at most this far after the observation is its per-second window's
#: (one second, plus up to one more as ``Reset`` is given in whole seconds).
SERVER_SECOND_RESET = 2 * SECOND
#: How far ahead a per-second slot may be reserved (see :func:`try_acquire`). Short, since a
#: request of higher priority arriving meanwhile waits behind the reservation.
RESERVE_AHEAD = 0.25
#: A grant used later than this after its recorded moment is given back and asked for again
#: (``give_back``): the server counts a request when it arrives, so a late request must not
#: be counted where its grant was written. Well under ``SECOND_SPAN - SECOND``.
LATE_GRANT = 0.03
MINUTE = 60.0
DAY = 86_400.0
#: Grants older than this are deleted by :func:`prune`.
KEEP_GRANTS = 2 * DAY


@dataclass(frozen=True, slots=True)
class Caps:
    """What one request of a given priority may use, in requests (margins already applied)."""

    per_second: int
    per_minute: int  # this priority's share of the minute window
    per_day: int  # this priority's share of the day window
    daily_cap: int | None  # this process's share of the day; None: no extra cap


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer of :func:`try_acquire`.

    ``granted``: a grant row was written, for ``wait`` seconds from now (0: at once; more:
    a slot of the per-second window reserved ahead). Otherwise ``wait`` seconds until it may
    be worth asking again and ``reason`` names the binding window; ``exhausted_until``
    (epoch seconds) is set when only the next UTC day frees the budget.
    """

    granted: bool
    wait: float = 0.0  # refused: when to ask again; granted: how long until the slot comes
    reason: str = ""
    exhausted_until: float | None = None
    grant_id: int | None = None  # the grant row, when granted


@dataclass(frozen=True, slots=True)
class Usage:
    """Counts and shared state for one key (see :func:`usage`)."""

    second: int
    minute: int
    day: int
    not_before: float
    server_remaining: int | None
    server_reset: float | None
    server_seen_at: float | None


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


def day_start(now: float) -> float:
    """Epoch seconds of the UTC midnight at or before ``now``."""
    return math.floor(now / DAY) * DAY


def _state(db: Any, key_id: str) -> tuple[float, int | None, float | None, float | None]:
    row = db.execute_sql(
        "SELECT not_before, server_remaining, server_reset, server_seen_at"
        " FROM budget_state WHERE key_id = ?",
        (key_id,),
    ).fetchone()
    if row is None:
        return 0.0, None, None, None
    return float(row[0] or 0.0), row[1], row[2], row[3]


def _counts(db: Any, key_id: str, now: float) -> tuple[int, int, int]:
    since = min(day_start(now), now - MINUTE)
    row = db.execute_sql(
        "SELECT"
        " COALESCE(SUM(granted_at > ?), 0),"
        " COALESCE(SUM(granted_at > ?), 0),"
        " COALESCE(SUM(granted_at >= ?), 0)"
        " FROM budget_grants WHERE key_id = ? AND granted_at >= ?",
        (now - SECOND_SPAN, now - MINUTE, day_start(now), key_id, since),
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


def _server_wait(db: Any, key_id: str, now: float, state: tuple) -> float:
    """Seconds to wait because the server's ``X-RateLimit-Remaining`` says so (0: no wait).

    The server reports what is left of its tightest window, which need not be the minute,
    so its word is honoured as it stands: once the grants made after it have used up
    ``remaining``, nothing goes until ``reset``. Margins and priority reserves are the local
    windows' business.
    """
    _, remaining, reset, seen_at = state
    if remaining is None or seen_at is None:
        return 0.0
    reset = reset if reset is not None else seen_at + MINUTE
    if now >= reset:
        return 0.0  # that view of the window has expired
    if reset - seen_at <= SERVER_SECOND_RESET:
        # The tightest window was the server's second, which the local per-second cap (and
        # its margin) already governs; at full pace that window often has one slot left, and
        # a whole-second Reset would stall every tenth request. A 429 still says otherwise.
        return 0.0
    left = remaining - _grants_since(db, key_id, seen_at)
    return reset - now if left <= 0 else 0.0


def _check(db: Any, key_id: str, now: float, caps: Caps) -> Decision | None:
    """Why a request may not go now, or None when it may."""
    state = _state(db, key_id)
    if now < state[0]:
        return Decision(False, state[0] - now, "not_before")
    second, minute, day = _counts(db, key_id, now)
    tomorrow = day_start(now) + DAY
    if caps.daily_cap is not None and day >= caps.daily_cap:
        return Decision(False, tomorrow - now, "daily_share", exhausted_until=tomorrow)
    if day >= caps.per_day:
        return Decision(False, tomorrow - now, "per_day", exhausted_until=tomorrow)
    if second >= caps.per_second:
        wait = _frees_at(db, key_id, now, SECOND_SPAN, second, caps.per_second) - now
        return Decision(False, wait, "per_second")
    if minute >= caps.per_minute:
        wait = _frees_at(db, key_id, now, MINUTE, minute, caps.per_minute) - now
        return Decision(False, wait, "per_minute")
    server = _server_wait(db, key_id, now, state)
    if server > 0:
        return Decision(False, server, "server_remaining")
    return None


@_store_errors
def try_acquire(
    db: Any,
    key_id: str,
    now: float,
    caps: Caps,
    priority: int,
    pid: int,
    observed: tuple[int, float | None, float] | None = None,
    give_back: int | None = None,
) -> Decision:
    """Grant one request to ``key_id`` at ``now`` if every window allows it.

    One ``BEGIN IMMEDIATE`` transaction: delete the grant row ``give_back`` if given (a
    grant that could not be used in time), record ``observed`` (the arguments of
    :func:`observe`) if given, check ``not_before``, the day (and this process's daily
    share), second and minute windows and the server's view, then insert the grant row.
    When only the per-second window refuses and frees a slot within ``RESERVE_AHEAD``, the
    grant is written for that moment (if every other window allows it then) and the decision
    says how long to wait for it: the caller sleeps and sends without asking the database
    again, so the request goes out on time even when the database is busy at that moment.
    When the slot is further off, the refusal says to ask again ``RESERVE_AHEAD`` before it.
    Every window is counted over all later grants too, so a reservation never lets a window
    overfill.

    Raises ``StoreError`` when the database cannot be used (for example when it stays
    locked past its busy timeout); so do the other functions here.
    """
    with db.atomic("IMMEDIATE"):
        if give_back is not None:
            db.execute_sql("DELETE FROM budget_grants WHERE id = ?", (give_back,))
        if observed is not None:
            _observe(db, key_id, *observed)
        at = now
        refusal = _check(db, key_id, now, caps)
        if refusal is not None and refusal.reason == "per_second":
            if refusal.wait <= RESERVE_AHEAD:
                at = now + refusal.wait
                if _check(db, key_id, at, caps) is None:
                    refusal = None
            else:  # ask again in time to reserve the slot
                refusal = replace(refusal, wait=refusal.wait - RESERVE_AHEAD)
        if refusal is not None:
            return Decision(
                False, max(refusal.wait, 0.001), refusal.reason, refusal.exhausted_until
            )
        cursor = db.execute_sql(
            "INSERT INTO budget_grants (key_id, granted_at, priority, pid) VALUES (?, ?, ?, ?)",
            (key_id, at, priority, pid),
        )
    return Decision(True, at - now, "reserved" if at > now else "", grant_id=cursor.lastrowid)


def _ensure_state(db: Any, key_id: str) -> None:
    db.execute_sql(
        "INSERT INTO budget_state (key_id, not_before) VALUES (?, 0)"
        " ON CONFLICT (key_id) DO NOTHING",
        (key_id,),
    )


@_store_errors
def defer(db: Any, key_id: str, until: float) -> float:
    """Move the shared ``not_before`` deadline to ``until`` unless it is already later.

    Returns the deadline now in force (epoch seconds).
    """
    with db.atomic("IMMEDIATE"):
        _ensure_state(db, key_id)
        db.execute_sql(
            "UPDATE budget_state SET not_before = MAX(COALESCE(not_before, 0), ?) WHERE key_id = ?",
            (until, key_id),
        )
        return _state(db, key_id)[0]


@_store_errors
def observe(db: Any, key_id: str, remaining: int, reset: float | None, seen_at: float) -> None:
    """Record the server's ``X-RateLimit-Remaining``/``Reset`` as seen at ``seen_at``.

    ``try_acquire`` then refuses once the grants made after ``seen_at`` have used up
    ``remaining``, until ``reset``. An older observation never replaces a newer one.
    """
    with db.atomic("IMMEDIATE"):
        _observe(db, key_id, remaining, reset, seen_at)


def _observe(db: Any, key_id: str, remaining: int, reset: float | None, seen_at: float) -> None:
    _ensure_state(db, key_id)
    db.execute_sql(
        "UPDATE budget_state SET server_remaining = ?, server_reset = ?, server_seen_at = ?"
        " WHERE key_id = ? AND (server_seen_at IS NULL OR server_seen_at <= ?)",
        (remaining, reset, seen_at, key_id, seen_at),
    )


@_store_errors
def usage(db: Any, key_id: str, now: float) -> Usage:
    """Grants in the current second, minute and UTC day, and the shared state."""
    second, minute, day = _counts(db, key_id, now)
    state = _state(db, key_id)
    return Usage(second, minute, day, *state)


@_store_errors
def prune(db: Any, key_id: str, now: float, keep: float = KEEP_GRANTS) -> int:
    """Delete grant rows older than ``keep`` seconds; returns how many went."""
    with db.atomic("IMMEDIATE"):
        cursor = db.execute_sql(
            "DELETE FROM budget_grants WHERE key_id = ? AND granted_at < ?", (key_id, now - keep)
        )
        return cursor.rowcount
