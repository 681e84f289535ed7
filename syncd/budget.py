"""The persisted rate budget: one per API key, shared by every process using the database.

It enforces the upstream's three windows (requests per second, per rolling minute, per UTC
day), each reduced by a safety margin, plus a "not before" deadline written after a 429 and
the server's own ``X-RateLimit-Remaining`` view. Lower priorities leave a reserve of the
minute and day windows to higher ones; in-process waiters are served in priority order.

The library survey suggests pyrate-limiter; the budget is written by hand instead because it
needs priority classes, a UTC-day window, correction from response headers and the shared
deadline to be checked in the same transaction as the grant itself (``BEGIN IMMEDIATE`` on
SQLite, the key's row taken ``FOR UPDATE`` on PostgreSQL).

The grants and deadlines live in a :class:`~syncd.budget_ledger.BudgetLedger` the store
hands out (``syncd.store.ledgers.budget_ledger``, for SQLite or PostgreSQL); this module
decides, waits and keeps time. Ledger calls run through an injectable ``runner`` (the
store's DB thread), never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import itertools
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from syncd.budget_ledger import BudgetLedger, Caps, Decision, Observation, Usage
from syncd.errors import BudgetExhausted
from syncd.records import Priority, RateLimitInfo

log = structlog.get_logger(__name__)

Runner = Callable[..., Awaitable[Any]]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]

#: Prune old grant rows after this many grants by one budget (and on its first grant).
PRUNE_EVERY = 1000
#: How many late grants one request may give back before it goes anyway (a process held up
#: for that long is better served by the request than by more database calls).
GIVE_BACKS = 3
#: A grant used later than this after its recorded moment is given back and asked for again
#: (``give_back``): the server counts a request when it arrives, so a late request must not
#: be counted where its grant was written. Well under ``SECOND_SPAN - SECOND``.
LATE_GRANT = 0.03
_EPS = 1e-9


def key_id_for(api_key: str) -> str:
    """The budget's name for a key: the first 16 hex digits of its SHA-256 (never the key)."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


def _floor(x: float) -> int:
    return math.floor(x + _EPS)


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    """The upstream limits per key and the share of each kept unused (``safety_margin``).

    Raises ``ValueError`` on construction when a limit is not positive or the margin is not
    in ``[0, 1)``.
    """

    per_second: int = 10
    per_minute: int = 100
    per_day: int = 10_000
    safety_margin: float = 0.1

    def __post_init__(self) -> None:
        for name in ("per_second", "per_minute", "per_day"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 0 <= self.safety_margin < 1:
            raise ValueError("safety_margin must be in [0, 1)")

    def effective(self) -> tuple[int, int, int]:
        """``(per_second, per_minute, per_day)`` after the margin; never below 1."""
        keep = 1 - self.safety_margin
        return (
            max(1, _floor(self.per_second * keep)),
            max(1, _floor(self.per_minute * keep)),
            max(1, _floor(self.per_day * keep)),
        )


@dataclass(frozen=True, slots=True)
class PriorityShare:
    """How much of the (margin-reduced) minute and day windows a priority may use."""

    minute: float
    day: float


#: PUSH may use everything; lower priorities stop earlier and leave the rest to higher ones.
DEFAULT_SHARES: Mapping[Priority, PriorityShare] = {
    Priority.PUSH: PriorityShare(1.0, 1.0),
    Priority.HOT: PriorityShare(0.9, 0.95),
    Priority.BACKFILL: PriorityShare(0.8, 0.9),
    Priority.RECONCILE: PriorityShare(0.8, 0.85),
    Priority.CONTROL: PriorityShare(0.9, 0.95),
}


def caps_for(
    limits: BudgetLimits,
    priority: Priority,
    *,
    daily_share: float = 1.0,
    shares: Mapping[Priority, PriorityShare] = DEFAULT_SHARES,
) -> Caps:
    """The caps a request of ``priority`` is checked against.

    ``daily_share`` (0-1] caps this process's day for every priority but PUSH.
    """
    per_second, per_minute, per_day = limits.effective()
    share = shares[priority]
    minute = max(1, _floor(per_minute * share.minute))
    daily_cap = None
    if priority is not Priority.PUSH and daily_share < 1:
        daily_cap = _floor(per_day * daily_share)
    return Caps(
        per_second=per_second,
        per_minute=minute,
        per_day=max(1, _floor(per_day * share.day)),
        daily_cap=daily_cap,
    )


@dataclass(frozen=True, slots=True)
class BudgetSnapshot:
    """The budget as seen now: shared usage, limits and this process's own numbers."""

    key_id: str
    used_this_second: int
    used_this_minute: int
    used_today: int
    per_second: int  # effective limits (margin applied)
    per_minute: int
    per_day: int
    daily_cap: int | None  # this process's share of the day (non-PUSH), None: whole day
    not_before: float | None  # epoch seconds, None when not in force
    server_remaining: int | None
    server_reset: float | None
    server_seen_at: float | None
    granted: int  # grants taken by this process
    waited_seconds: float  # time this process spent waiting for the budget
    deferrals: int  # 429 deadlines this process wrote

    def remaining(self) -> dict[str, int]:
        """Requests left in each window (``second``, ``minute``, ``day``), never negative."""
        return {
            "second": max(0, self.per_second - self.used_this_second),
            "minute": max(0, self.per_minute - self.used_this_minute),
            "day": max(0, self.per_day - self.used_today),
        }


class _Turns:
    """One waiter at a time asks the database; the others queue by priority, then arrival."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._holder: int | None = None
        self.outranked = asyncio.Event()  # set when a higher priority joins the queue

    async def enter(self, priority: int) -> None:
        if self._holder is None and not self._live():
            self._hand_to(priority)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (priority, next(self._seq), fut))
        if self._holder is not None and priority < self._holder:
            self.outranked.set()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.leave()  # the turn arrived together with the cancellation: pass it on
            raise

    def leave(self) -> None:
        while self._heap:
            priority, _, fut = heapq.heappop(self._heap)
            if not fut.done():
                self._hand_to(priority)
                fut.set_result(None)
                return
        self._holder = None

    def _hand_to(self, priority: int) -> None:
        self._holder = priority
        self.outranked.clear()

    def _live(self) -> bool:
        return any(not fut.done() for _, _, fut in self._heap)


class RateBudget:
    """The shared, persisted request budget of one API key.

    ``ledger`` holds the key's grants and deadlines (``budget_ledger(store, key_id)``);
    ``runner(fn, *args)`` runs ``fn(*args)`` off the event loop (the store's
    ``call_budget``, ahead of queued commits; default ``asyncio.to_thread``). ``clock``
    returns wall-clock epoch seconds and ``sleep`` waits, both injectable so tests need no
    real time.
    """

    def __init__(
        self,
        ledger: BudgetLedger,
        *,
        limits: BudgetLimits | None = None,
        daily_share: float = 1.0,
        shares: Mapping[Priority, PriorityShare] | None = None,
        runner: Runner | None = None,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        pid: int | None = None,
    ) -> None:
        if not 0 < daily_share <= 1:
            raise ValueError("daily_share must be in (0, 1]")
        self.key_id = ledger.key_id
        self.limits = limits or BudgetLimits()
        self.daily_share = daily_share
        shares = {**DEFAULT_SHARES, **(shares or {})}
        self._caps = {
            p: caps_for(self.limits, p, daily_share=daily_share, shares=shares) for p in Priority
        }
        self._ledger = ledger
        self._run: Runner = runner or asyncio.to_thread
        self._clock = clock
        self._sleep = sleep
        self._pid = os.getpid() if pid is None else pid
        self._turns = _Turns()
        # The newest server view not yet written: (remaining, reset, seen_at).
        self._observed: Observation | None = None
        self.granted = 0
        self.late_grants = 0
        self.waited_seconds = 0.0
        self.deferrals = 0

    def caps(self, priority: Priority) -> Caps:
        """The caps requests of ``priority`` are checked against."""
        return self._caps[priority]

    async def acquire(self, priority: Priority = Priority.HOT) -> None:
        """Wait until a request of ``priority`` may be sent, and record it as sent.

        A grant this task could not use within ``LATE_GRANT`` of its recorded moment (the
        event loop or the process was held up) is given back and asked for again, at most
        ``GIVE_BACKS`` times, so the record matches when the request really goes.

        Raises ``BudgetExhausted`` (with ``resets_at``) when only the next UTC day would
        allow it: the day window, the priority's share of it, or this process's
        ``daily_share``. Raises ``StoreError`` when the database cannot be used.
        """
        await self._turns.enter(priority)
        held = True
        give_back: int | None = None
        given_back = 0
        try:
            while True:
                decision, decided_at = await self._try(priority, give_back)
                give_back = None
                if decision.granted:
                    held = False
                    self._turns.leave()  # the next waiter may reserve the slot after this one
                    # A reserved slot: sleep until it comes, with no further database round
                    # trip (the wait runs from the decision, not from its return).
                    slot = decided_at + decision.wait
                    wait = slot - self._clock()
                    if decision.wait > 0 and wait > 0:
                        self.waited_seconds += wait
                        await self._sleep(wait)
                    late = self._clock() - slot
                    if late > LATE_GRANT and given_back < GIVE_BACKS:
                        given_back += 1
                        self.late_grants += 1
                        log.debug("budget_late_grant", late=round(late, 3), priority=priority.name)
                        give_back = decision.grant_id
                        await self._turns.enter(priority)
                        held = True
                        continue
                    await self._granted()
                    return
                if decision.exhausted_until is not None:
                    raise self._exhausted(priority, decision)
                if await self._pause(decision, priority):
                    held = False
                    self._turns.leave()  # a higher priority arrived: let it go first
                    await self._turns.enter(priority)
                    held = True
        finally:
            if held:
                self._turns.leave()

    async def _try(
        self, priority: Priority, give_back: int | None = None
    ) -> tuple[Decision, float]:
        """Ask the ledger once; the decision and the clock reading it was made at.

        The clock is read on the database thread, inside the call: a grant is recorded at
        the moment it is made, not when it was asked for (the thread may have been busy).
        ``give_back`` is a grant to drop in the same transaction.
        """
        caps = self._caps[priority]
        observed, self._observed = self._observed, None

        def acquire() -> tuple[Decision, float]:
            now = self._clock()
            decision = self._ledger.acquire(
                now,
                caps,
                priority=int(priority),
                pid=self._pid,
                observed=observed,
                give_back=give_back,
            )
            return decision, now

        try:
            return await self._run(acquire)
        except BaseException:
            self._keep_observed(observed)
            raise

    def _keep_observed(self, observed: Observation | None) -> None:
        """Hold ``observed`` for the next write unless a newer observation is held."""
        if observed is not None and (self._observed is None or self._observed[2] <= observed[2]):
            self._observed = observed

    async def _granted(self) -> None:
        self.granted += 1
        if self.granted % PRUNE_EVERY == 1:
            await self.prune()

    def _exhausted(self, priority: Priority, decision: Decision) -> BudgetExhausted:
        resets = datetime.fromtimestamp(decision.exhausted_until or 0, UTC)
        what = {
            "daily_share": f"this process's share ({self.daily_share:.0%}) of the daily quota",
            "per_day": f"the daily request quota available to {priority.name} requests",
        }.get(decision.reason, "the daily request quota")
        log.warning(
            "budget.exhausted",
            key_id=self.key_id,
            reason=decision.reason,
            priority=priority.name,
            resets_at=resets.isoformat(),
        )
        return BudgetExhausted(
            f"{what} is spent; it resets at {resets:%Y-%m-%d %H:%M} UTC",
            resets_at=decision.exhausted_until,
        )

    async def _pause(self, decision: Decision, priority: Priority) -> bool:
        """Sleep ``decision.wait``; True when cut short because a higher priority queued."""
        self.waited_seconds += decision.wait
        log.debug(
            "budget.wait",
            key_id=self.key_id,
            reason=decision.reason,
            seconds=round(decision.wait, 3),
            priority=priority.name,
        )
        sleeper = asyncio.ensure_future(self._sleep(decision.wait))
        outranked = asyncio.ensure_future(self._turns.outranked.wait())
        try:
            await asyncio.wait({sleeper, outranked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, outranked):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(sleeper, outranked, return_exceptions=True)
        if sleeper.done() and not sleeper.cancelled() and sleeper.exception() is not None:
            raise sleeper.exception()  # e.g. ShutdownRequested from an interruptible sleep
        return self._turns.outranked.is_set()

    async def defer(self, retry_after: float) -> float:
        """Write "not before now + ``retry_after``" into the shared budget (after a 429).

        The deadline only ever moves later. Returns the deadline in force (epoch seconds).
        Raises ``StoreError`` when the database cannot be used.
        """
        until = self._clock() + max(0.0, retry_after)
        self.deferrals += 1
        deadline = await self._run(self._ledger.defer, until)
        log.info(
            "budget.deferred",
            key_id=self.key_id,
            retry_after=retry_after,
            not_before=datetime.fromtimestamp(deadline, UTC).isoformat(),
        )
        return deadline

    async def observe(self, info: RateLimitInfo, *, sent_at: float | None = None) -> None:
        """Let a response's ``X-RateLimit-Remaining``/``Reset`` correct the shared view.

        ``sent_at`` is when the request was granted (default now): grants made after it
        count against the server's ``remaining``. The newest observation is held in memory
        and written in the transaction of the next grant (or by :meth:`flush`), so a
        response never waits for the database while it commits a window. Raises nothing.
        """
        if info.remaining is None:
            return
        seen_at = self._clock() if sent_at is None else sent_at
        self._keep_observed(Observation(info.remaining, info.reset_epoch, seen_at))

    async def flush(self) -> None:
        """Write the held server observation now (``snapshot`` and shutdown call this).

        Raises ``StoreError``.
        """
        observed, self._observed = self._observed, None
        if observed is None:
            return
        try:
            await self._run(self._ledger.observe, observed)
        except BaseException:
            self._keep_observed(observed)
            raise

    async def snapshot(self) -> BudgetSnapshot:
        """Usage in the current second, minute and UTC day, and the shared state.

        Writes the held server observation first. Raises ``StoreError``.
        """
        await self.flush()
        now = self._clock()
        return self._snapshot(await self._run(self._ledger.usage, now), now)

    def read_snapshot(self) -> BudgetSnapshot:
        """The budget as the ledger holds it now, read on the calling thread.

        For a caller with no event loop (``syncd status``): it writes nothing, so a server
        observation this budget still holds is not in it (:meth:`snapshot` writes it first).
        Raises ``StoreError``.
        """
        now = self._clock()
        return self._snapshot(self._ledger.usage(now), now)

    def _snapshot(self, usage: Usage, now: float) -> BudgetSnapshot:
        per_second, per_minute, per_day = self.limits.effective()
        return BudgetSnapshot(
            key_id=self.key_id,
            used_this_second=usage.second,
            used_this_minute=usage.minute,
            used_today=usage.day,
            per_second=per_second,
            per_minute=per_minute,
            per_day=per_day,
            daily_cap=self._caps[Priority.HOT].daily_cap,
            not_before=usage.not_before if usage.not_before > now else None,
            server_remaining=usage.server_remaining,
            server_reset=usage.server_reset,
            server_seen_at=usage.server_seen_at,
            granted=self.granted,
            waited_seconds=self.waited_seconds,
            deferrals=self.deferrals,
        )

    async def prune(self) -> int:
        """Delete grant rows older than two days; returns how many went (0 on failure)."""
        try:
            return await self._run(self._ledger.prune, self._clock())
        except Exception as exc:  # pruning is housekeeping; the next attempt will retry
            log.warning("budget_prune_failed", key_id=self.key_id, error=str(exc))
            return 0
