"""The rate budget's window arithmetic, shared by the SQLite and the PostgreSQL ledger.

Pure: it reads one key's rows through :class:`WindowReads` (each ledger adapts its own
queries, inside its own transaction) and writes nothing. :func:`refusal_at` says why a
request may not go at a moment, :func:`plan_grant` decides a request and the moment its grant
is recorded at, reserving a per-second slot that frees within ``RESERVE_AHEAD``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from syncd.budget_ledger import (
    DAY,
    MINUTE,
    RESERVE_AHEAD,
    SECOND_SPAN,
    SERVER_SECOND_RESET,
    Caps,
    Decision,
    day_start,
)

#: ``(not_before, server_remaining, server_reset, server_seen_at)`` of one key.
State = tuple[float, int | None, float | None, float | None]

#: The state of a key with no ``budget_state`` row.
NO_STATE: State = (0.0, None, None, None)


class WindowReads(Protocol):
    """What the window arithmetic reads of one key's rows, inside the ledger's transaction."""

    def state(self) -> State:
        """The key's deadline and server view (``NO_STATE`` when none)."""
        ...

    def counts(self, now: float) -> tuple[int, int, int]:
        """Grants in the second (over ``SECOND_SPAN``), the rolling minute and the UTC day."""
        ...

    def frees_at(self, now: float, span: float, count: int, cap: int) -> float:
        """When the rolling ``span`` window holding ``count`` grants drops below ``cap``."""
        ...

    def grants_since(self, since: float) -> int:
        """Grants made after ``since``."""
        ...


def server_wait(reads: WindowReads, now: float, state: State) -> float:
    """Seconds to wait because the server's ``X-RateLimit-Remaining`` says so (0: no wait).

    The server reports what is left of its tightest window, which need not be the minute, so
    its word is honoured as it stands: once the grants made after the observation have used
    up its ``remaining``, nothing goes until its ``reset``. A view that has expired, or whose
    ``reset`` is the server's per-second window's (``SERVER_SECOND_RESET``: the local
    per-second cap and its margin govern that one, and a whole-second reset would stall every
    tenth request at full pace), is left to the local windows. Raises what ``reads`` raises.
    """
    _, remaining, reset, seen_at = state
    if remaining is None or seen_at is None:
        return 0.0
    reset = reset if reset is not None else seen_at + MINUTE
    if now >= reset or reset - seen_at <= SERVER_SECOND_RESET:
        return 0.0
    left = remaining - reads.grants_since(seen_at)
    return reset - now if left <= 0 else 0.0


def refusal_at(reads: WindowReads, now: float, caps: Caps) -> Decision | None:
    """Why a request may not go at ``now``, or None when it may.

    Checks, in order: the ``not_before`` deadline, ``caps.daily_cap``, the day, second and
    minute windows, then the server's last view. Raises what ``reads`` raises.
    """
    state = reads.state()
    if now < state[0]:
        return Decision(False, state[0] - now, "not_before")
    second, minute, day = reads.counts(now)
    tomorrow = day_start(now) + DAY
    if caps.daily_cap is not None and day >= caps.daily_cap:
        return Decision(False, tomorrow - now, "daily_share", exhausted_until=tomorrow)
    if day >= caps.per_day:
        return Decision(False, tomorrow - now, "per_day", exhausted_until=tomorrow)
    if second >= caps.per_second:
        wait = reads.frees_at(now, SECOND_SPAN, second, caps.per_second) - now
        return Decision(False, wait, "per_second")
    if minute >= caps.per_minute:
        wait = reads.frees_at(now, MINUTE, minute, caps.per_minute) - now
        return Decision(False, wait, "per_minute")
    server = server_wait(reads, now, state)
    if server > 0:
        return Decision(False, server, "server_remaining")
    return None


def plan_grant(reads: WindowReads, now: float, caps: Caps) -> tuple[Decision, float]:
    """The decision on a request at ``now`` and the moment its grant is to be recorded at.

    When only the per-second window refuses and frees a slot within ``RESERVE_AHEAD``, the
    grant is for that moment if every window allows it then (``wait`` says how far ahead,
    reason ``"reserved"``), so the caller sleeps and sends without asking the database
    again; a slot further off is refused with a ``wait`` that asks again ``RESERVE_AHEAD``
    before it. A refusal waits at least a millisecond. The decision carries no ``grant_id``:
    the caller records the grant. Raises what ``reads`` raises.
    """
    at = now
    refusal = refusal_at(reads, now, caps)
    if refusal is not None and refusal.reason == "per_second":
        if refusal.wait <= RESERVE_AHEAD:
            at = now + refusal.wait
            if refusal_at(reads, at, caps) is None:
                refusal = None
        else:
            refusal = replace(refusal, wait=refusal.wait - RESERVE_AHEAD)
    if refusal is not None:
        decision = Decision(
            False, max(refusal.wait, 0.001), refusal.reason, refusal.exhausted_until
        )
        return decision, now
    return Decision(True, at - now, "reserved" if at > now else ""), at


def counts_since(now: float) -> float:
    """The oldest ``granted_at`` the counts at ``now`` need: the start of the UTC day or of
    the rolling minute, whichever is earlier."""
    return min(day_start(now), now - MINUTE)
