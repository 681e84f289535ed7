"""The sync algorithm: date windows, backfill, hot window, reconciliation and pushes.

Upstream documents no "changed since" listing and no delete events, so freshness comes from
re-scanning date windows: a complete scan of ``[date_from, date_to]`` upserts what it sees
(``updated_at`` wins, except over a pushed row: a scan is the truth) and tombstones what the
mirror holds in that range but upstream no longer returns. Every window is committed on its
own (rows, tombstones, scan record and progress in one transaction), so a kill loses at most
the window in flight.

What a window's answer means is learned, not assumed (:mod:`syncd.window_reading`): every
request reaches a day past its window on each side, a scan tombstones only what every reading
still possible puts in its window, an answer of suspicious size is verified by splitting it,
a timed-out one is split, and an answer that lost most of its window is asked again wider.

- **Hot window**: the last ``hot_window_days`` days and everything dated after them, plus the
  date of every running timer, re-scanned on every poll.
- **Backfill**: walks history backwards from the hot window with windows sized to hold
  ``_target()`` entries, until ``history_start`` or until an open-ended probe for everything
  older comes back (its answer is complete, so it ends the walk either way). The target grows
  while answers come back complete and fast (fewer, larger requests), up to below
  ``window_max_entries`` and any learned cap or timeout size, and halves on a slow,
  incomplete or oversized answer.
- **Reconciliation by age**: the *warm* tier (the last ``warm_window_days``) is re-verified
  at least every ``warm_period_minutes``, the *cold* tier (all older history) at least every
  ``reconcile_period_hours``. Each tier is swept round-robin towards the past; every run
  scans the tier's due windows, the least recently verified first (a window is due when its
  last verification plus the period falls before the next run, ``interval_seconds`` away).
- **Full re-verification** (``syncd --once --full``): every window of the history, newest
  first, its position committed with every window so a killed run is continued.
- **Push**: a webhook event is recorded in a ledger (dedupe), its entry applied at once as
  provisional (its ``updated_at`` held to its arrival), and its date (and, unless the window
  field is proven to be the date, its creation day) queued for a confirming re-scan
  (``refresh``) that overrides it. Deletion events write nothing. Every poll also re-scans
  the days of the pushes no scan has confirmed yet (a refresh lost to a restart, or skipped
  by an instance not holding the workspace), a few windows at a time.

- **Shared work**: when several syncd processes use one key, each round syncs only the
  workspaces whose lease this process holds (:class:`~syncd.seams.WorkLeases`); the lease is
  renewed before every window is asked for and after it is committed, and a workspace whose
  lease went to another process is left to it.

This module talks only to the :mod:`syncd.seams` protocols; it imports neither aiohttp
nor peewee.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import structlog

from syncd.config import Config, SyncConfig
from syncd.errors import (
    ServerError,
    TransportError,
    UpstreamEmptyError,
    timed_out,
)
from syncd.records import (
    ENTRY_EVENTS,
    EventKind,
    Priority,
    Rejection,
    RunReport,
    Source,
    TimeEntry,
    WebhookEvent,
    WindowOutcome,
    WindowScan,
    WorkspaceState,
    format_timestamp,
    rejected_of,
    sent_count,
)
from syncd.seams import Client, MassDeletePolicy, MirrorStore, SoleInstance, WorkLeases
from syncd.shutdown import Shutdown, ShutdownCheck
from syncd.window_reading import SETTING as READING_SETTING
from syncd.window_reading import WindowReading, observe, widen

log = structlog.get_logger("syncd.sync")

#: Set while workspaces are worked on together (see ``_each``).
_siblings: contextvars.ContextVar[_Siblings | None] = contextvars.ContextVar(
    "siblings", default=None
)
#: The entries quarantined by the answers of the window being fetched (see ``_fetch``).
_quarantined: contextvars.ContextVar[list[Rejection] | None] = contextvars.ContextVar(
    "quarantined", default=None
)

OPEN_END = "9999-12-31"  # the recorded upper bound of a scan with no upper bound
INITIAL_WINDOW_DAYS = 7  # the first backfill window when the hot window holds nothing
MAX_GROWTH = 4.0  # a window grows at most this much from one scan to the next
REFRESH_SPAN_DAYS = 7  # pushed dates of one workspace closer than this share a re-scan
PUSH_WINDOWS_PER_POLL = 4  # a poll re-scans at most this many windows of unconfirmed pushes
PUSHES_READ_PER_POLL = 500  # ... chosen among the days of this many, the earliest received
BACKFILL_WINDOWS_PER_POLL = 20  # the daemon interleaves a long backfill with pushes
BELOW_LIMIT = 0.8  # windows aim at this share of a learned answer cap or timeout size
MAX_SPLIT_DEPTH = 12  # an answer is verified by halving its range at most this deep
OPEN_SPLIT_DAYS = 30  # an open-ended range is split this far from its finite end
EMPTY_SHARE = 0.5  # an answer missing more than this share of a window's live rows is asked again
EMPTY_MIN = 10  # ... when at least this many are missing (any number for an empty answer)
FAST_SECONDS = 2.0  # a backfill answer faster than this (and near the aim) grows the aim
SLOW_SECONDS = 10.0  # ... one slower than this halves it
FULL_SHARE = 0.5  # ... when it held at least this share of the aim
PUSH_SKEW = timedelta(minutes=5)  # a push's updatedAt may lead its arrival by this much
HOT, WARM, COLD = "hot", "warm", "cold"  # the verification tiers, by age
PASS_MARGIN = 0.02  # a tier's pass aims to end this share of its period early (run jitter)
TIERS = (WARM, COLD)  # the tiers the reconciliation sweeps (the poll serves the hot one)
FRESHNESS_SETTING = "freshness"  # per workspace and tier, when it was last all verified


@dataclass(frozen=True, slots=True)
class SyncSettings:
    """What the engine needs of the config: the ``[sync]`` section, ``[api] window_field``
    and ``--force-delete``. Built by :meth:`from_config`; every default is the config's."""

    hot_window_days: int
    history_start: str | None  # YYYY-MM-DD; None = discover the oldest entry
    workspaces: tuple[str, ...]  # empty = every workspace the key can see
    interval_seconds: int
    window_target_entries: int
    window_max_entries: int
    window_min_days: int
    window_max_days: int
    warm_window_days: int
    warm_period_minutes: int
    reconcile_period_hours: int
    mass_delete_share: float
    mass_delete_min: int
    force_delete: bool
    window_field: str  # auto | date | created_at

    @classmethod
    def from_config(
        cls, config: Config | None = None, *, force_delete: bool = False, **overrides: Any
    ) -> SyncSettings:
        """The engine's settings from ``config`` (default: the config's defaults), with
        ``overrides`` replacing single settings by name. Raises ``TypeError`` for a name
        that is not a setting."""
        config = config or Config()
        names = [f.name for f in fields(cls) if f.name in SyncConfig.model_fields]
        section = {name: getattr(config.sync, name) for name in names}
        settings = cls(**section, force_delete=force_delete, window_field=config.api.window_field)
        return replace(settings, **overrides) if overrides else settings


@dataclass(frozen=True, slots=True)
class ScanProgress:
    """Reported after every committed window (drives the progress bar)."""

    workspace_id: str
    source: Source
    date_from: str | None
    date_to: str
    entries: int


def _iso(d: date) -> str:
    return d.isoformat()


def _day(text: str) -> date:
    return date.fromisoformat(text)


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _later(first: str | None, second: str) -> str:
    """The later of two timestamps (``first`` may be missing)."""
    if first is None:
        return second
    return max(first, second, key=_parse_time)


class SyncEngine:
    """Brings the mirror up to date through a :class:`Client` and a :class:`MirrorStore`.

    ``clock`` returns the current aware UTC time; ``shutdown`` is checked before each
    request (the window in flight is always committed first). ``leases`` says which
    workspaces are this process's to sync (default: all of them).
    """

    def __init__(
        self,
        client: Client,
        store: MirrorStore,
        settings: SyncSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        shutdown: ShutdownCheck | None = None,
        on_window: Callable[[ScanProgress], None] | None = None,
        timer: Callable[[], float] = time.monotonic,
        leases: WorkLeases | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.leases: WorkLeases = leases or SoleInstance()
        self._lost: set[str] = set()  # workspaces whose lease another process took this round
        self.settings = settings
        self.clock = clock
        self.shutdown = shutdown or Shutdown()
        self.on_window = on_window
        self.timer = timer  # seconds, for how long an answer took (``_adapt_aim``)
        self._aim: int | None = None  # the backfill's current target (``_adapt_aim``)
        self._workspace_ids: list[str] | None = None
        self._reading: WindowReading | None = None
        self._answered: set[str] = set()  # workspaces with a non-empty answer this run
        self._outside = 0  # entries returned outside their request's range, not yet reported
        self._unresolved: dict[str, set[tuple[str, str]]] = {}  # ranges left to verify

    # -- whole runs -------------------------------------------------------------------

    async def run_once(self, report: RunReport) -> RunReport:
        """One full cycle: workspaces, hot windows, backfill to the end, a reconcile slice.

        Workspaces are worked on at the same time (the budget paces their requests by
        priority), the hot windows of all of them first. A workspace whose whole history was
        walked by this run's backfill gets no reconcile slice: it was verified just now.
        Raises ``ApiError``/``BudgetExhausted`` when upstream cannot be read,
        ``MassDeleteError`` from the guard, ``ShutdownRequested`` when asked to stop.
        """
        self._answered.clear()
        began = format_timestamp(self.clock())
        workspace_ids = await self._claim(await self.refresh_workspaces(report), report)
        hot_from = self._hot_from()
        await _each(workspace_ids, self._while_held(lambda w: self.scan_hot(w, report), report))

        async def history(workspace_id: str) -> None:
            state = await self.store.workspace_state(workspace_id)
            # The walk starts where an earlier hot window began; days that have left the hot
            # window since then are re-verified only by the reconcile slice.
            walks_all = (
                not state.backfill_complete
                and state.window_days is None
                and (state.backfill_before is None or state.backfill_before >= _iso(hot_from))
            )
            await self.backfill(workspace_id, report)
            if not walks_all:
                await self.reconcile_slice(workspace_id, report)
            elif (state := await self.store.workspace_state(workspace_id)).backfill_complete:
                # every window was verified by this walk: each tier's pass starts now
                await self.store.save_state(
                    replace(
                        state,
                        warm_verified_at=began,
                        warm_pass_at=began,
                        cold_verified_at=began,
                        cold_pass_at=began,
                    )
                )
            await self.verify_unresolved(workspace_id, report)
            await self.confirm_pushes(workspace_id, report)  # what no scan above confirmed
            await self.verify_unresolved(workspace_id, report)

        await _each(workspace_ids, self._while_held(history, report))
        await self.record_freshness()
        return report

    async def poll(self, report: RunReport) -> RunReport:
        """The daemon's hot-window poll: hot windows, running timers, the days of pushes no
        scan has confirmed yet (:meth:`confirm_pushes`), unfinished backfill.

        Raises what :meth:`run_once` raises.
        """
        self._answered.clear()
        workspace_ids = await self._claim(await self.refresh_workspaces(report), report)
        await _each(workspace_ids, self._while_held(lambda w: self.scan_hot(w, report), report))

        async def rest(workspace_id: str) -> None:
            # What the hot scans left undecided first: it may confirm pushes as well.
            await self.verify_unresolved(workspace_id, report)
            await self.confirm_pushes(workspace_id, report)
            await self.backfill(workspace_id, report, max_windows=BACKFILL_WINDOWS_PER_POLL)
            await self.verify_unresolved(workspace_id, report)

        await _each(workspace_ids, self._while_held(rest, report))
        await self.record_freshness()
        return report

    async def reconcile(self, report: RunReport) -> RunReport:
        """The daemon's reconciliation sweep: one slice per workspace.

        Raises what :meth:`run_once` raises.
        """
        self._answered.clear()
        workspace_ids = await self._claim(await self._known_workspaces(report), report)

        async def slice_(workspace_id: str) -> None:
            await self.reconcile_slice(workspace_id, report)
            await self.verify_unresolved(workspace_id, report)

        await _each(workspace_ids, self._while_held(slice_, report))
        await self.record_freshness()
        return report

    async def refresh_workspaces(self, report: RunReport) -> list[str]:
        """List workspaces upstream, store them, and return the ids to mirror.

        Raises ``ApiError`` and ``BudgetExhausted``.
        """
        workspaces = await self.client.list_workspaces(priority=Priority.HOT)
        await self.store.upsert_workspaces(workspaces, format_timestamp(self.clock()))
        wanted = self.settings.workspaces
        ids = [w.id for w in workspaces if not wanted or w.id in wanted]
        missing = sorted(set(wanted) - {w.id for w in workspaces})
        if missing:
            log.warning("workspaces_not_visible", workspace_ids=missing)
        report.workspaces = len(ids)
        self._workspace_ids = ids
        return ids

    async def _known_workspaces(self, report: RunReport) -> list[str]:
        if self._workspace_ids is None:
            return await self.refresh_workspaces(report)
        return self._workspace_ids

    # -- the three kinds of scan ---------------------------------------------------------

    async def scan_hot(self, workspace_id: str, report: RunReport) -> None:
        """Re-scan the hot window and the date of every running timer older than it.

        Raises what :meth:`run_once` raises.
        """
        hot_from = self._hot_from()
        state = await self.store.workspace_state(workspace_id)
        state = replace(state, last_hot_scan_at=format_timestamp(self.clock()))
        if state.backfill_before is None:
            state = replace(state, backfill_before=_iso(hot_from))
        await self._scan(
            workspace_id,
            _iso(hot_from),
            None,  # no upper bound: entries dated in the future are part of the hot window
            Source.POLL,
            Priority.HOT,
            report,
            state,
        )
        older = {
            d for d in await self.store.running_entry_dates(workspace_id) if d < _iso(hot_from)
        }
        for day in sorted(older):
            await self._scan(workspace_id, day, day, Source.POLL, Priority.HOT, report, None)

    async def backfill(
        self, workspace_id: str, report: RunReport, *, max_windows: int | None = None
    ) -> None:
        """Walk history backwards with adaptive windows until it is complete.

        ``max_windows`` bounds the work of one call (the daemon interleaves backfill with
        pushes); progress is committed with every window, so the next call resumes.
        Raises what :meth:`run_once` raises.
        """
        await self._current_reading()
        state = await self.store.workspace_state(workspace_id)
        if state.backfill_before is None:
            await self.scan_hot(workspace_id, report)
            state = await self.store.workspace_state(workspace_id)
        history_start = self.settings.history_start
        if (
            state.backfill_complete
            and history_start
            and state.oldest_date
            and history_start < state.oldest_date
        ):  # history_start was moved earlier: walk on from where the last walk stopped
            state = replace(state, backfill_complete=False, backfill_before=state.oldest_date)
        size = self._clamp_days(state.window_days or await self._first_window_days(workspace_id))
        empty_days = 0
        windows = 0
        # Window n is committed while window n+1 is fetched: its size depends only on how
        # many entries window n held, known before the commit. Commits stay in order, and
        # the one in flight always finishes before this method returns or raises.
        committing: asyncio.Task[int] | None = None
        try:
            while not state.backfill_complete and (max_windows is None or windows < max_windows):
                windows += 1
                before = _day(state.backfill_before or _iso(self.clock().date()))
                if history_start and _iso(before) <= history_start:
                    await _finish(committing)
                    committing = None
                    done = replace(state, backfill_complete=True, oldest_date=history_start)
                    await self.store.save_state(done)
                    return
                if not history_start and empty_days >= self.settings.window_max_days:
                    await _finish(committing)
                    committing = None
                    await self._probe_older(workspace_id, before, state, report)
                    return
                start = before - timedelta(days=size)
                if history_start:
                    start = max(start, _day(history_start))
                last = before - timedelta(days=1)
                reached_start = bool(history_start) and _iso(start) <= (history_start or "")
                state = replace(
                    state,
                    backfill_before=_iso(start),
                    window_days=size,
                    backfill_complete=reached_start,
                    oldest_date=history_start if reached_start else state.oldest_date,
                )
                asked_at = self.timer()
                scan = await self._fetch(
                    workspace_id, _iso(start), _iso(last), Source.BACKFILL, Priority.BACKFILL, state
                )
                took = self.timer() - asked_at
                await _finish(committing)
                # Not awaited here: the next window's request goes out while this commits.
                committing = asyncio.ensure_future(self._commit(scan, report))
                days = (last - start).days + 1
                low, high = _iso(start), _iso(last)
                count = sum(1 for e in scan.entries if low <= e.date <= high)
                empty_days = empty_days + days if count == 0 else 0
                self._adapt_aim(count, seconds=took, complete=scan.tombstone_by != "none")
                size = self._next_size(days, count=count)
        finally:
            await _finish(committing)

    async def _probe_older(
        self, workspace_id: str, before: date, state: WorkspaceState, report: RunReport
    ) -> None:
        """End the backfill with one open-ended query for everything before ``before``.

        Nothing turned up for a long stretch; the probe's answer is complete, so it ends the
        walk whether or not it finds older entries.
        """
        done = replace(state, backfill_complete=True)
        count = await self._scan(
            workspace_id,
            None,
            _iso(before - timedelta(days=1)),
            Source.BACKFILL,
            Priority.BACKFILL,
            report,
            done,
        )
        oldest = await self.store.oldest_entry_date(workspace_id)
        await self.store.save_state(replace(done, oldest_date=oldest or _iso(before)))
        log.info("backfill_complete", workspace_id=workspace_id, probe_entries=count)

    async def reconcile_slice(self, workspace_id: str, report: RunReport) -> None:
        """Re-scan what is due of the warm and cold tiers, the one whose next window is
        due soonest (or most overdue) first (see :meth:`tier_slice`). Raises what
        :meth:`run_once` raises.
        """
        state = await self.store.workspace_state(workspace_id)
        due: list[tuple[datetime, str]] = []
        for tier in TIERS:
            span = self._tier_days(tier, state) if state.backfill_complete else None
            last = None
            if span is not None:
                _size, last = await self._next_window(
                    workspace_id, self._cursor(tier, state, span), span[0]
                )
            since = last or datetime.min.replace(tzinfo=UTC)
            due.append((since + timedelta(seconds=self._period_seconds(tier)), tier))
        for _when, tier in sorted(due):
            await self.tier_slice(workspace_id, tier, report)

    async def tier_slice(self, workspace_id: str, tier: str, report: RunReport) -> None:
        """Re-scan the tier's due windows, oldest-verified first.

        A tier is swept round-robin towards the past from its cursor, so the window at the
        cursor is the one verified longest ago. It is due when its last verification plus
        the tier's period (less ``PASS_MARGIN``) falls before the next run (now plus
        ``interval_seconds``); due windows are scanned, each as large as the window target
        allows, until the cursor reaches one that is not. When the cursor passes the tier's
        oldest day a pass ends (``*_verified_at`` records when it began) and the next one
        starts from the tier's newest day, going on down to where this run began (no day is
        scanned twice in one run). Raises what :meth:`run_once` raises.
        """
        state = await self.store.workspace_state(workspace_id)
        if not state.backfill_complete:
            return
        span = self._tier_days(tier, state)
        if span is None:
            if tier == COLD:  # no day is cold: probe once a period below the younger tiers
                warm = self._tier_days(WARM, state)
                below = warm[0] if warm is not None else self._hot_from()
                await self._probe_below(workspace_id, state, below, report)
            return
        bottom, top = span
        now = self.clock()
        stamp = format_timestamp(now)
        horizon = now + timedelta(seconds=self.settings.interval_seconds)
        period = timedelta(seconds=self._period_seconds(tier) * (1 - PASS_MARGIN))
        cursor = self._cursor(tier, state, span)
        cursor_field = "reconcile_before" if tier == COLD else "warm_before"
        floor = bottom  # after a pass ends: the day above where this run began
        began = cursor
        while cursor >= floor:
            size, last = await self._next_window(workspace_id, cursor, floor)
            if last is not None and last + period > horizon:
                return  # the oldest-verified window is not due yet: nothing else is
            start = cursor - timedelta(days=size - 1)
            following = start - timedelta(days=1)
            ended = following < bottom
            state = await self.store.workspace_state(workspace_id)
            pass_at = getattr(state, f"{tier}_pass_at") or stamp
            changes: dict[str, str | None] = {f"{tier}_pass_at": pass_at}
            if ended:  # this window ends the pass: the next one begins now, at the top
                changes = {f"{tier}_pass_at": stamp, f"{tier}_verified_at": pass_at}
            changes[cursor_field] = None if ended else _iso(following)
            state = replace(state, last_reconcile_at=stamp, **changes)  # type: ignore[arg-type]
            await self._scan(
                workspace_id,
                _iso(start),
                _iso(cursor),
                Source.RECONCILE,
                Priority.RECONCILE,
                report,
                state,
            )
            cursor = following
            if ended:  # the next pass goes on, as far as where this run began
                if tier == COLD and not self.settings.history_start:
                    await self._probe_before(workspace_id, bottom, report)
                floor, cursor = began + timedelta(days=1), top

    async def _next_window(
        self, workspace_id: str, cursor: date, bottom: date
    ) -> tuple[int, datetime | None]:
        """The days of the sweep window ending at ``cursor``, and when the less recently
        verified of its two ends was last verified (None: never). Both ends are looked at: a
        day that just left a younger tier was verified there, the window's older days were
        not. Raises ``StoreError``."""
        size = await self._fitting_window(workspace_id, cursor, bottom, (cursor - bottom).days + 1)
        start = cursor - timedelta(days=size - 1)
        stamps = [
            await self.store.last_scan_covering(workspace_id, _iso(day)) for day in {cursor, start}
        ]
        if any(text is None for text in stamps):
            return size, None
        return size, min(_parse_time(text) for text in stamps if text is not None)

    def _cursor(self, tier: str, state: WorkspaceState, span: tuple[date, date]) -> date:
        """The newest day of the tier's next window (its newest day at the start of a pass)."""
        text = state.reconcile_before if tier == COLD else state.warm_before
        cursor = _day(text) if text else span[1]
        return span[1] if cursor < span[0] or cursor > span[1] else cursor

    def _tier_days(self, tier: str, state: WorkspaceState) -> tuple[date, date] | None:
        """The days ``(first, last)`` a tier re-verifies; None when it has none.

        The warm tier holds the ``warm_window_days`` before the hot window, the cold tier
        every known day older than that (all history below the hot window when the warm
        tier is no wider than the hot one).
        """
        top = self._hot_from() - timedelta(days=1)  # newest non-hot date
        warm_from = self.clock().date() - timedelta(days=self.settings.warm_window_days - 1)
        bottom = _day(state.oldest_date) if state.oldest_date else None
        if bottom is None and self.settings.history_start:
            bottom = _day(self.settings.history_start)
        if bottom is None:
            return None
        if tier == WARM:
            low = max(bottom, warm_from)
            return (low, top) if low <= top else None
        high = min(top, warm_from - timedelta(days=1))
        return (bottom, high) if bottom <= high else None

    def _period_seconds(self, tier: str) -> float:
        if tier == WARM:
            return self.settings.warm_period_minutes * 60.0
        return self.settings.reconcile_period_hours * 3600.0

    async def verified_times(self, workspace_id: str) -> dict[str, datetime | None]:
        """Per tier, when its least recently verified window was last scanned (None when
        unknown: before the backfill ends, or a tier with no days).

        A tier's sweep walks round-robin, so its least recently verified window is the one
        at its cursor (its newest day when a pass has just ended). Raises ``StoreError``.
        """
        state = await self.store.workspace_state(workspace_id)
        hot = state.last_hot_scan_at
        times: dict[str, datetime | None] = {HOT: _parse_time(hot) if hot else None}
        for tier in TIERS:
            span = self._tier_days(tier, state) if state.backfill_complete else None
            if span is None:
                times[tier] = None
                continue
            _size, times[tier] = await self._next_window(
                workspace_id, self._cursor(tier, state, span), span[0]
            )
        return times

    async def verified_ages(self, workspace_id: str) -> dict[str, float | None]:
        """Per tier, the seconds since its least recently verified window was last scanned
        (see :meth:`verified_times`). Raises ``StoreError``."""
        now = self.clock()
        return {
            tier: None if at is None else max(0.0, (now - at).total_seconds())
            for tier, at in (await self.verified_times(workspace_id)).items()
        }

    async def record_freshness(self) -> None:
        """Save every mirrored workspace's :meth:`verified_times` (setting ``freshness``)
        for ``syncd status`` and ``/metrics``. Raises ``StoreError``."""
        if not self._workspace_ids:
            return
        data = {
            workspace_id: {
                tier: None if at is None else format_timestamp(at)
                for tier, at in (await self.verified_times(workspace_id)).items()
            }
            for workspace_id in self._workspace_ids
        }
        await self.store.set_setting(FRESHNESS_SETTING, json.dumps(data, sort_keys=True))

    async def full(self, report: RunReport) -> RunReport:
        """``syncd --once --full``: a normal run, then every window of every workspace's
        history re-verified now, newest first.

        The position is committed with every window, so a run that was stopped or killed is
        continued by the next ``full`` from where it stopped. When a workspace's walk ends,
        its warm and cold tiers count as verified from the moment the walk began.
        Raises what :meth:`run_once` raises.
        """
        await self.run_once(report)
        workspace_ids = await self._claim(await self._known_workspaces(report), report)
        await _each(workspace_ids, self._while_held(lambda w: self._full_walk(w, report), report))
        await self.record_freshness()
        return report

    async def _full_walk(self, workspace_id: str, report: RunReport) -> None:
        state = await self.store.workspace_state(workspace_id)
        span = self._tier_days(COLD, state), self._tier_days(WARM, state)
        days = [d for d in span if d is not None]
        stamp = format_timestamp(self.clock())
        began = state.full_started_at or stamp
        if days:
            bottom = min(d[0] for d in days)
            top = max(d[1] for d in days)
            cursor = _day(state.full_before) - timedelta(days=1) if state.full_before else top
            cursor = min(cursor, top)
            while cursor >= bottom:
                # One-off and within the memory bound: the fewest, largest windows.
                size = await self._fitting_window(
                    workspace_id, cursor, bottom, self.settings.window_max_days, self._ceiling()
                )
                start = cursor - timedelta(days=size - 1)
                state = replace(
                    await self.store.workspace_state(workspace_id),
                    full_before=_iso(start),
                    full_started_at=began,
                )
                await self._scan(
                    workspace_id,
                    _iso(start),
                    _iso(cursor),
                    Source.RECONCILE,
                    Priority.RECONCILE,
                    report,
                    state,
                )
                cursor = start - timedelta(days=1)
            if not self.settings.history_start:
                await self._probe_before(workspace_id, bottom, report)
        await self.verify_unresolved(workspace_id, report)
        state = await self.store.workspace_state(workspace_id)
        await self.store.save_state(
            replace(
                state,
                full_before=None,
                full_started_at=None,
                warm_before=None,
                warm_pass_at=began,
                warm_verified_at=_later(state.warm_verified_at, began),
                reconcile_before=None,
                cold_pass_at=began,
                cold_verified_at=_later(state.cold_verified_at, began),
                last_reconcile_at=format_timestamp(self.clock()),
            )
        )
        log.info("full_verification_complete", workspace_id=workspace_id, began=began)

    async def _probe_below(
        self, workspace_id: str, state: WorkspaceState, below: date, report: RunReport
    ) -> None:
        """Probe once per cold period for entries dated before ``below`` when no known day
        is cold (a young workspace, or one whose older entries were all deleted): an entry
        added later with an older date is found there and nowhere else."""
        if self.settings.history_start is not None:
            return  # history_start is inside the younger tiers: nothing older is mirrored
        now = self.clock()
        last = state.cold_verified_at or state.last_reconcile_at
        if last is not None:
            elapsed = (now - _parse_time(last)).total_seconds()
            if elapsed + self.settings.interval_seconds < self._period_seconds(COLD):
                return  # probed within this period
        stamp = format_timestamp(now)
        await self.store.save_state(
            replace(state, last_reconcile_at=stamp, cold_verified_at=stamp, cold_pass_at=stamp)
        )
        await self._probe_before(workspace_id, below, report)

    async def _probe_before(self, workspace_id: str, bottom: date, report: RunReport) -> None:
        """Once per sweep, one open-ended scan for entries dated before the known history
        (an entry added long after the backfill, dated years back)."""
        await self._scan(
            workspace_id,
            None,
            _iso(bottom - timedelta(days=1)),
            Source.RECONCILE,
            Priority.RECONCILE,
            report,
            None,
        )
        oldest = await self.store.oldest_entry_date(workspace_id)
        if oldest and oldest < _iso(bottom):
            state = await self.store.workspace_state(workspace_id)
            await self.store.save_state(replace(state, oldest_date=oldest))

    async def refresh(self, windows: Iterable[tuple[str, str]], report: RunReport) -> None:
        """Confirm pushed entries: re-scan the pushed dates, nearby dates sharing a window.

        Raises what :meth:`run_once` raises.
        """
        self._answered.clear()
        by_workspace: dict[str, list[date]] = {}
        for workspace_id, day in windows:
            by_workspace.setdefault(workspace_id, []).append(_day(day))
        everything = sorted({*(self._workspace_ids or ()), *by_workspace})
        mine = await self._claim(everything, report, of=by_workspace)

        async def rescan(workspace_id: str) -> None:
            for start, last in _group_dates(
                sorted(set(by_workspace[workspace_id])), REFRESH_SPAN_DAYS
            ):
                await self._scan(
                    workspace_id,
                    _iso(start),
                    _iso(last),
                    Source.PUSH_RESCAN,
                    Priority.PUSH,
                    report,
                    None,
                )
            await self.verify_unresolved(workspace_id, report)

        for workspace_id in sorted(set(by_workspace) & set(mine)):
            await self._while_held(rescan, report)(workspace_id)

    async def verify_unresolved(self, workspace_id: str, report: RunReport) -> None:
        """Re-scan, as one window each, the ranges spanning the date and creation day of
        entries a scan could not decide on while the window's field is unproven (missing from
        an answer whose range held one of the two days only), however far apart the two days
        are: only a window holding both decides such an entry under either reading. Raises
        what :meth:`run_once` raises.
        """
        pending = self._unresolved.pop(workspace_id, set())
        spans = sorted((_day(a), _day(b)) for a, b in pending)
        merged: list[tuple[date, date]] = []
        for low, high in spans:
            if merged and low <= merged[-1][1] + timedelta(days=1):
                merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
            else:
                merged.append((low, high))
        for low, high in merged:
            await self._scan(
                workspace_id,
                _iso(low),
                _iso(high),
                Source.RECONCILE,
                Priority.RECONCILE,
                report,
                None,
                collect_unresolved=False,
            )

    # -- pushes -----------------------------------------------------------------------

    async def apply_event(self, event: WebhookEvent) -> tuple[str, tuple[tuple[str, str], ...]]:
        """Record a webhook event and apply what it carries, without calling upstream.

        A push is provisional: its row is marked as pushed, its ``updated_at`` never leads its
        arrival by more than ``PUSH_SKEW``, and the next scan of its window overrides it. Event
        kinds syncd does not subscribe to (deletions) write nothing. Returns the outcome
        (``duplicate``, ``inserted``, ``updated``, ``revived``, ``stale``, ``ignored``,
        ``refused``, ``recorded``) and the ``(workspace_id, date)`` windows whose re-scan
        confirms the push: the entry's date and, unless the window field is proven to be the
        date, its creation day. Raises ``StoreError``.
        """
        moment = self.clock()
        now = format_timestamp(moment)
        wanted = self.settings.workspaces
        if wanted and event.workspace_id not in wanted:
            return "ignored", ()  # a workspace this mirror does not hold
        carries_entry = event.kind in ENTRY_EVENTS and event.entry is not None
        entry = _arrived(event.entry, moment) if carries_entry else None
        # Deletions are not subscribed to (a scan finds them): ledgered as refused.
        unused = "refused" if event.kind is EventKind.TIME_ENTRY_DELETED else "recorded"
        outcome = await self.store.apply_push(event, now, entry, outcome=unused)
        if entry is None or outcome in ("duplicate", "ignored", "refused"):
            return outcome, ()
        days = {entry.date}
        reading = await self._current_reading()
        if reading.field != "date" and entry.created_at:
            days.add(entry.created_at[:10])
        return outcome, tuple((entry.workspace_id, d) for d in sorted(days))

    async def confirm_pushes(self, workspace_id: str, report: RunReport) -> None:
        """Re-scan the days of the workspace's pushes no scan has confirmed yet that lie
        before the hot window (the hot scan covers the rest): each push's date and, unless
        the window field is proven to be the date, its creation day (the rule of
        :meth:`apply_event`). Adjacent days share a window; at most
        ``PUSH_WINDOWS_PER_POLL`` windows are scanned per call, for the earliest received
        pushes first (the rest wait for the next poll). This confirms what a refresh lost to
        a restart or skipped on an instance not holding the workspace left provisional.
        Raises what :meth:`run_once` raises.
        """
        hot_from = self._hot_from()
        proven_date = (await self._current_reading()).field == "date"
        days: set[date] = set()
        for day, created in await self.store.unconfirmed_push_days(
            workspace_id, PUSHES_READ_PER_POLL
        ):
            wanted = {_day(day)}
            if not proven_date and created:
                wanted.add(_day(created))
            wanted = {d for d in wanted if d < hot_from} - days
            if not wanted:
                continue
            if len(_runs(sorted(days | wanted))) > PUSH_WINDOWS_PER_POLL:
                break  # this push and every later one wait for the next poll
            days |= wanted
        for start, last in _runs(sorted(days)):
            await self._scan(
                workspace_id,
                _iso(start),
                _iso(last),
                Source.PUSH_RESCAN,
                Priority.PUSH,
                report,
                None,
            )
            report.confirmed_pushes += 1

    # -- shared work ------------------------------------------------------------------

    async def _claim(
        self, workspace_ids: list[str], report: RunReport, *, of: Iterable[str] | None = None
    ) -> list[str]:
        """The workspaces of ``of`` (default: all of ``workspace_ids``, every workspace
        mirrored) this process syncs this round; the others are left to the instances holding
        their leases (logged, counted in the report). Raises ``StoreError``."""
        self._lost.clear()
        mine = set(await self.leases.claim(workspace_ids))
        wanted = list(workspace_ids) if of is None else sorted(set(of))
        elsewhere = [w for w in wanted if w not in mine]
        if elsewhere:
            log.debug("workspaces_leased_elsewhere", workspace_ids=elsewhere)
            report.leased_elsewhere += len(elsewhere)
        return [w for w in wanted if w in mine]

    def _while_held(
        self, work: Callable[[str], Awaitable[None]], report: RunReport
    ) -> Callable[[str], Awaitable[None]]:
        """``work`` for one workspace, ended (not failed) when another process takes the
        workspace's lease; the workspace is then left alone for the rest of the round."""

        async def held(workspace_id: str) -> None:
            if workspace_id in self._lost:
                return
            try:
                await work(workspace_id)
            except _LeaseLost:
                self._lost.add(workspace_id)
                report.leased_elsewhere += 1
                log.info("workspace_lease_lost", workspace_id=workspace_id)

        return held

    async def _hold(self, workspace_id: str) -> None:
        """Renew the workspace's lease. Raises ``_LeaseLost`` when another process has it."""
        if not await self.leases.renew(workspace_id):
            raise _LeaseLost(workspace_id)

    # -- helpers ----------------------------------------------------------------------

    async def _scan(
        self,
        workspace_id: str,
        date_from: str | None,
        date_to: str | None,
        source: Source,
        priority: Priority,
        report: RunReport,
        state: WorkspaceState | None,
        *,
        collect_unresolved: bool = True,
    ) -> int:
        """Fetch one window and commit it; returns how many entries upstream sent."""
        scan = await self._fetch(workspace_id, date_from, date_to, source, priority, state)
        return await self._commit(scan, report, collect_unresolved=collect_unresolved)

    async def _fetch(
        self,
        workspace_id: str,
        date_from: str | None,
        date_to: str | None,
        source: Source,
        priority: Priority,
        state: WorkspaceState | None,
    ) -> WindowScan:
        """Ask upstream for one window; the answer, ready to commit with ``state``.

        A window wider than ``window_max_days`` is asked in pieces no wider than that. Each
        request reaches a day past its range on each side (so either bound reading returns
        the whole window); an answer of suspicious size is verified by splitting it,
        a timed-out one is split; a window that lost most of its live rows is asked again
        over a wider range. What the answer tombstones follows what is known of the window's
        field (``syncd.window_reading``); an answer that could not be shown complete
        tombstones nothing and is listed in the run's ``unverified``.
        Raises ``ShutdownRequested`` instead when a stop was requested, ``UpstreamEmptyError``
        when every answer for the workspace came back empty while the mirror holds entries
        there, and what the client raises.
        """
        await self._hold(workspace_id)
        requested_at = format_timestamp(self.clock())
        quarantined: list[Rejection] = []  # filled by every answer asked for below
        _quarantined.set(quarantined)
        entries: list[TimeEntry] = []
        complete = True
        for low, high in _pieces(date_from, date_to, self.settings.window_max_days):
            ask_from, ask_to = widen(low, high)
            part, whole = await self._ask_complete(workspace_id, ask_from, ask_to, priority)
            entries = _merged(entries, part) if entries else part
            complete = complete and whole
        if entries:
            self._answered.add(workspace_id)
        if complete:
            entries = await self._unless_suspiciously_empty(
                workspace_id, date_from, date_to, entries, priority
            )
        reading = await self._current_reading()
        tombstone_by = reading.tombstone_by() if complete else "none"
        start = self.settings.history_start
        if start is not None:  # the request reaches a day past the mirrored history
            entries = [e for e in entries if e.date >= start]
        return WindowScan(
            workspace_id=workspace_id,
            date_from=date_from,
            date_to=date_to or OPEN_END,
            entries=tuple(entries),
            source=source,
            scanned_at=format_timestamp(self.clock()),
            requested_at=requested_at,
            state=state,
            tombstone_by=tombstone_by,
            rejected=tuple(quarantined),
        )

    async def _ask(
        self,
        workspace_id: str,
        ask_from: str | None,
        ask_to: str | None,
        priority: Priority,
        *,
        retry_timeouts: bool = True,
    ) -> list[TimeEntry]:
        """One find request (checking first for a stop or a failed sibling); what its answer
        proves about the window's field is learned at once."""
        self.shutdown.check("stop requested; every committed window is kept")
        siblings = _siblings.get()
        if siblings is not None and siblings.failed:
            raise _SiblingFailed
        try:
            answer = await self.client.find_time_entries(
                workspace_id,
                date_from=ask_from,
                date_to=ask_to,
                priority=priority,
                retry_timeouts=retry_timeouts,
            )
            quarantined = _quarantined.get()
            if quarantined is not None:  # asked for by ``_fetch``
                quarantined.extend(rejected_of(answer))
        except Exception as exc:
            # Stop the others now, not after this window's commit; a timeout this call
            # splits instead of retrying is no failure.
            if siblings is not None and (retry_timeouts or not timed_out(exc)):
                siblings.failed = True
            raise
        await self._learn(answer, ask_from, ask_to)
        return answer

    async def _ask_complete(
        self,
        workspace_id: str,
        ask_from: str | None,
        ask_to: str | None,
        priority: Priority,
        depth: int = 0,
    ) -> tuple[list[TimeEntry], bool]:
        """Every entry upstream holds for ``[ask_from, ask_to]``, and whether the answer is
        known to be complete.

        A range that times out (504 or a timed-out request) is split in two; an answer of
        suspicious size is checked against the answers for its two halves, and when those
        hold more, the cap it revealed is learned. A range that cannot be split is asked with
        the client's usual retries and, when still suspicious, reported incomplete.
        """
        halves = _halves(ask_from, ask_to) if depth < MAX_SPLIT_DEPTH else None
        try:
            entries = await self._ask(
                workspace_id, ask_from, ask_to, priority, retry_timeouts=halves is None
            )
        except (ServerError, TransportError) as exc:
            if halves is None or not timed_out(exc):
                raise
            parts, complete = await self._ask_halves(workspace_id, halves, priority, depth)
            await self._learn_timeout(workspace_id, ask_from, ask_to, exc, len(parts))
            return parts, complete
        reading = await self._current_reading()
        if not reading.suspicious(sent_count(entries)):  # quarantined ones count too
            return entries, True
        if halves is None:
            log.warning(
                "answer_may_be_incomplete",
                workspace_id=workspace_id,
                date_from=ask_from,
                date_to=ask_to,
                entries=len(entries),
            )
            return entries, False
        parts, complete = await self._ask_halves(workspace_id, halves, priority, depth)
        mine = {e.id for e in entries}
        if any(e.id not in mine for e in parts):
            await self._learn_cap(sent_count(entries), workspace_id, ask_from, ask_to, len(parts))
            return parts, complete
        # Read again: the halves' answers (and other workspaces meanwhile) may have taught
        # something; a reading read before them must not overwrite it.
        reading = await self._current_reading()
        if complete and reading.cap is None and len(entries) > reading.verified_up_to:
            self._reading = replace(reading, verified_up_to=len(entries))
            await self.store.set_setting(READING_SETTING, self._reading.to_json())
        return _merged(entries, parts), complete

    async def _ask_halves(
        self,
        workspace_id: str,
        halves: tuple[tuple[str | None, str | None], tuple[str | None, str | None]],
        priority: Priority,
        depth: int,
    ) -> tuple[list[TimeEntry], bool]:
        found: list[TimeEntry] = []
        complete = True
        for low, high in halves:
            part, whole = await self._ask_complete(workspace_id, low, high, priority, depth + 1)
            found = _merged(found, part)
            complete = complete and whole
        return found, complete

    async def _unless_suspiciously_empty(
        self,
        workspace_id: str,
        date_from: str | None,
        date_to: str | None,
        entries: list[TimeEntry],
        priority: Priority,
    ) -> list[TimeEntry]:
        """The answer, joined by a second one over a wider range when it is empty (or lost
        most) of a window the mirror holds live rows in: only what both lack is tombstoned.

        Raises ``UpstreamEmptyError`` when the second answer is empty too, the mirror holds at
        least ``EMPTY_MIN`` live rows in its range, and no answer for the workspace held
        anything this run (unless ``force_delete``).
        """
        by = (await self._current_reading()).tombstone_by()
        if by == "none":
            return entries  # nothing is tombstoned from this answer anyway
        low, high = date_from or "0000-01-01", date_to or OPEN_END
        live = await self.store.count_live_entries(workspace_id, low, high, by)
        inside = sum(1 for e in entries if _held_by(e, low, high, by))
        lost = live - inside
        if live == 0 or (inside > 0 and (lost < EMPTY_MIN or lost <= EMPTY_SHARE * live)):
            return entries
        wide_from, wide_to = _neighbourhood(date_from, date_to)
        ask_from, ask_to = widen(wide_from, wide_to)
        again, _complete = await self._ask_complete(workspace_id, ask_from, ask_to, priority)
        log.info(
            "window_asked_again",
            workspace_id=workspace_id,
            date_from=date_from,
            date_to=date_to,
            live=live,
            first_answer=inside,
            second_answer=len(again),
        )
        if again:
            self._answered.add(workspace_id)
        elif workspace_id not in self._answered and not self.settings.force_delete:
            held = await self.store.count_live_entries(
                workspace_id, wide_from or "0000-01-01", wide_to or OPEN_END, by
            )
            if held >= EMPTY_MIN:
                raise UpstreamEmptyError(workspace_id=workspace_id, live=held)
        return _merged(entries, again)

    # -- what is learned about the window ---------------------------------------------

    async def _current_reading(self) -> WindowReading:
        """The learned reading of the find window (loaded once from the mirror)."""
        if self._reading is None:
            pinned = self.settings.window_field
            text = await self.store.get_setting(READING_SETTING)
            self._reading = WindowReading.from_json(
                text,
                pinned=None if pinned == "auto" else pinned,  # type: ignore[arg-type]
            )
        return self._reading

    async def _save_reading(self, reading: WindowReading, event: str, **fields: object) -> None:
        self._reading = reading
        await self.store.set_setting(READING_SETTING, reading.to_json())
        log.warning(event, **fields) if reading.conflict else log.info(event, **fields)

    async def _learn(
        self, entries: list[TimeEntry], ask_from: str | None, ask_to: str | None
    ) -> WindowReading:
        """The reading, updated (and saved, and logged once) with what ``entries`` prove."""
        reading = await self._current_reading()
        low, high = widen(ask_from, ask_to)
        self._outside += sum(
            1 for e in entries if (low and e.date < low) or (high and e.date > high)
        )
        learned = observe(reading, entries, ask_from, ask_to, format_timestamp(self.clock()))
        if learned != reading:
            described = learned.describe()
            await self._save_reading(
                learned,
                "window_field_learned",
                window_field=described["window_field"],
                evidence=described["window_field_evidence"],
                conflicting_evidence=described["conflicting_evidence"],
            )
        return learned

    async def _learn_cap(
        self, cap: int, workspace_id: str, ask_from: str | None, ask_to: str | None, found: int
    ) -> None:
        reading = await self._current_reading()
        if reading.cap is not None and reading.cap <= cap:
            return
        why = (
            f"{ask_from or '…'}..{ask_to or '…'} of {workspace_id} answered {cap} entries; "
            f"its halves held {found}"
        )
        await self._save_reading(
            replace(reading, cap=cap, cap_evidence=why), "answer_cap_learned", cap=cap, why=why
        )

    async def _learn_timeout(
        self,
        workspace_id: str,
        ask_from: str | None,
        ask_to: str | None,
        exc: Exception,
        held: int,
    ) -> None:
        """Remember that an answer of ``held`` entries (what the split range turned out to
        hold) timed out, so later windows aim below it."""
        reading = await self._current_reading()
        if held < 2 or (reading.timeout_above is not None and reading.timeout_above <= held):
            log.info("window_split_after_timeout", workspace_id=workspace_id, error=str(exc))
            return
        why = (
            f"{ask_from or '…'}..{ask_to or '…'} of {workspace_id} "
            f"({held} entries) timed out: {str(exc).splitlines()[0][:80]}"
        )
        await self._save_reading(
            replace(reading, timeout_above=held, timeout_evidence=why),
            "answer_timeout_learned",
            entries=held,
            why=why,
        )

    def _target(self) -> int:
        """Entries a window aims at: the backfill's grown aim (else the configured target),
        at most ``window_max_entries``, kept below a learned answer cap or timeout size."""
        target = min(self._aim or self.settings.window_target_entries, self._ceiling())
        return max(1, target)

    def _ceiling(self) -> int:
        """The most entries a window may aim at: below ``window_max_entries`` (memory) and
        below a learned cap or timeout size."""
        ceiling = max(
            self.settings.window_target_entries, int(self.settings.window_max_entries * BELOW_LIMIT)
        )
        limit = self._reading.answer_limit() if self._reading is not None else None
        if limit:
            ceiling = max(1, min(ceiling, int(limit * BELOW_LIMIT)))
        return ceiling

    def _adapt_aim(self, count: int, *, seconds: float, complete: bool) -> None:
        """Grow the backfill's aim towards fewer, larger requests while answers come back
        complete, fast (under ``FAST_SECONDS``) and near the aim; halve it after a slow
        (over ``SLOW_SECONDS``), incomplete or oversized one. Requests are what the daily
        quota and the per-minute limit count, so at the same memory bound fewer is better.
        """
        aim = self._aim or self.settings.window_target_entries
        if not complete or seconds > SLOW_SECONDS or count > self.settings.window_max_entries:
            aim = max(1, min(aim, self._ceiling()) // 2)
        elif seconds < FAST_SECONDS and count >= aim * FULL_SHARE:
            aim = min(aim * 2, self._ceiling())
        if aim != self._aim:
            log.debug("window_aim", entries=aim, answer=count, seconds=round(seconds, 3))
        self._aim = aim

    async def _commit(
        self, scan: WindowScan, report: RunReport, *, collect_unresolved: bool = True
    ) -> int:
        """Apply a fetched window to the mirror (one transaction); returns its entry count.

        A window that tombstoned nothing because its answer could not be trusted is listed
        in the run's ``unverified``; entries it could not decide on are kept for
        :meth:`verify_unresolved`.
        """
        s = self.settings
        policy = MassDeletePolicy(s.mass_delete_share, s.mass_delete_min, s.force_delete)
        outcome: WindowOutcome = await self.store.apply_window(scan, policy)
        report.outcome.add(outcome)
        report.windows += 1
        report.outside_window += self._outside
        self._outside = 0
        if scan.tombstone_by == "none":
            report.unverified.append(f"{scan.workspace_id} {scan.date_from or '…'}..{scan.date_to}")
        if collect_unresolved and outcome.unresolved:
            spans = self._unresolved.setdefault(scan.workspace_id, set())
            for _entry_id, day, created in outcome.unresolved:
                spans.add((min(day, created), max(day, created)))
        log.debug(
            "window_synced",
            workspace_id=scan.workspace_id,
            source=str(scan.source),
            date_from=scan.date_from,
            date_to=scan.date_to,
            entries=len(scan.entries),
            inserted=outcome.inserted,
            updated=outcome.updated,
            tombstoned=outcome.tombstoned,
        )
        if self.on_window is not None:
            self.on_window(
                ScanProgress(
                    scan.workspace_id, scan.source, scan.date_from, scan.date_to, len(scan.entries)
                )
            )
        await self._hold(scan.workspace_id)
        return len(scan.entries)

    async def _first_window_days(self, workspace_id: str) -> float:
        """The first backfill window, sized from the density of the hot window (the newest
        history, scanned just before); ``INITIAL_WINDOW_DAYS`` when that holds nothing.

        Raises ``StoreError``.
        """
        count = await self.store.count_live_entries(workspace_id, _iso(self._hot_from()))
        if count == 0:
            return INITIAL_WINDOW_DAYS
        return self.settings.hot_window_days * self._target() / count

    def _hot_from(self) -> date:
        """The first day of the hot window (today is its last full day)."""
        return self.clock().date() - timedelta(days=self.settings.hot_window_days - 1)

    def _clamp_days(self, days: float) -> int:
        low, high = self.settings.window_min_days, self.settings.window_max_days
        return max(low, min(high, int(days)))

    def _next_size(self, days: int, *, count: int) -> int:
        """The next window size: aim at ``_target()`` entries per response. A grown aim
        counts the day each request reaches past its window on either side, so that the
        whole answer stays below ``window_max_entries``."""
        target = self._target()
        ratio = MAX_GROWTH if count == 0 else min(MAX_GROWTH, target / count)
        if count > self.settings.window_max_entries:
            ratio = min(ratio, 0.5)
        size = days * ratio
        if count and target > self.settings.window_target_entries:
            size -= 2
        return self._clamp_days(max(1.0, size))

    async def _fitting_window(
        self, workspace_id: str, cursor: date, bottom: date, days: int, target: int | None = None
    ) -> int:
        """The largest window ending at ``cursor`` (≤ ``days``) holding ≤ ``target`` entries
        (default ``_target()``)."""
        size = max(1, min(days, (cursor - bottom).days + 1, self.settings.window_max_days))
        target = target or self._target()
        while size > self.settings.window_min_days:
            start = cursor - timedelta(days=size - 1)
            live = await self.store.count_live_entries(workspace_id, _iso(start), _iso(cursor))
            if live <= target:
                break
            size = max(self.settings.window_min_days, int(size * target / live))
        return size


class _LeaseLost(Exception):
    """Another process took the lease of the workspace being synced: this one leaves it."""


class _SiblingFailed(Exception):
    """Another workspace's work failed; this one stops before its next request."""


class _Siblings:
    """Workspaces worked on together: the errors they raised, and whether one failed."""

    def __init__(self) -> None:
        self.failed = False
        self.errors: list[Exception] = []


async def _each(workspace_ids: Iterable[str], work: Callable[[str], Awaitable[None]]) -> None:
    """Run ``work`` for every workspace at once; raise the first error any of them raised.

    After a failure the others send no further request, and each still commits the window
    it has in flight, so no work is abandoned half-way.
    """
    ids = list(workspace_ids)
    if len(ids) <= 1:
        for workspace_id in ids:
            await work(workspace_id)
        return
    siblings = _Siblings()

    async def one(workspace_id: str) -> None:
        try:
            await work(workspace_id)
        except _SiblingFailed:
            pass
        except Exception as exc:  # cancellation is not a failure: it goes through gather
            siblings.failed = True
            siblings.errors.append(exc)

    token = _siblings.set(siblings)
    try:
        await asyncio.gather(*(one(w) for w in ids))
    finally:
        _siblings.reset(token)
    if siblings.errors:
        raise siblings.errors[0]


async def _finish(task: asyncio.Task[int] | None) -> None:
    """Wait for a commit in flight (re-raising its error)."""
    if task is not None:
        await task


def _group_dates(days: list[date], span: int) -> list[tuple[date, date]]:
    """Group sorted dates into ranges no wider than ``span`` days."""
    groups: list[tuple[date, date]] = []
    for day in days:
        if groups and (day - groups[-1][0]).days < span:
            groups[-1] = (groups[-1][0], day)
        else:
            groups.append((day, day))
    return groups


def _runs(days: list[date]) -> list[tuple[date, date]]:
    """Sorted dates grouped into runs of consecutive days, as ``(first, last)``."""
    runs: list[tuple[date, date]] = []
    for day in days:
        if runs and (day - runs[-1][1]).days <= 1:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def _halves(
    low: str | None, high: str | None
) -> tuple[tuple[str | None, str | None], tuple[str | None, str | None]] | None:
    """``[low, high]`` split in two halves that share their middle day, so that together
    they return what the whole range returns under either bound reading (an open side splits
    ``OPEN_SPLIT_DAYS`` from the finite one); None when no half would be smaller."""
    if low is not None and high is not None:
        first, last = _day(low), _day(high)
        if (last - first).days < 2:
            return None
        middle = _iso(first + timedelta(days=(last - first).days // 2))
        return (low, middle), (middle, high)
    if low is None and high is not None:
        middle = _iso(_day(high) - timedelta(days=OPEN_SPLIT_DAYS))
        return (None, middle), (middle, high)
    if low is not None:
        middle = _iso(_day(low) + timedelta(days=OPEN_SPLIT_DAYS))
        return (low, middle), (middle, None)
    return None


def _pieces(
    date_from: str | None, date_to: str | None, days: int
) -> list[tuple[str | None, str | None]]:
    """``[date_from, date_to]`` as consecutive ranges of at most ``days`` days (the whole
    range when it is that short or open-ended)."""
    if date_from is None or date_to is None or (_day(date_to) - _day(date_from)).days < days:
        return [(date_from, date_to)]
    first, last = _day(date_from), _day(date_to)
    pieces: list[tuple[str | None, str | None]] = []
    while first <= last:
        end = min(last, first + timedelta(days=days - 1))
        pieces.append((_iso(first), _iso(end)))
        first = end + timedelta(days=1)
    return pieces


def _held_by(entry: TimeEntry, low: str, high: str, by: str) -> bool:
    """Whether ``entry`` lies in the days ``[low, high]`` by its date, creation day or both."""
    by_date = low <= entry.date <= high
    by_created = entry.created_at is None or low <= entry.created_at[:10] <= high
    if by == "date":
        return by_date
    if by == "created_at":
        return by_created
    return by_date and by_created


def _neighbourhood(date_from: str | None, date_to: str | None) -> tuple[str | None, str | None]:
    """``[date_from, date_to]`` widened by its own length on each side (its neighbours)."""
    if date_to is None:
        return date_from and _iso(_day(date_from) - timedelta(days=OPEN_SPLIT_DAYS)), None
    if date_from is None:
        return None, _iso(_day(date_to) + timedelta(days=OPEN_SPLIT_DAYS))
    span = timedelta(days=(_day(date_to) - _day(date_from)).days + 1)
    return _iso(_day(date_from) - span), _iso(_day(date_to) + span)


def _merged(first: list[TimeEntry], second: list[TimeEntry]) -> list[TimeEntry]:
    """Both answers' entries, once each (the newer ``updated_at`` where both hold one)."""
    out = {e.id: e for e in first}
    for entry in second:
        held = out.get(entry.id)
        if held is None or (entry.updated_at or "") > (held.updated_at or ""):
            out[entry.id] = entry
    return list(out.values())


def _arrived(entry: TimeEntry, moment: datetime) -> TimeEntry:
    """``entry`` with an ``updated_at`` no later than its arrival plus ``PUSH_SKEW``."""
    latest = format_timestamp(moment + PUSH_SKEW)
    if entry.updated_at is not None and entry.updated_at > latest:
        return replace(entry, updated_at=latest)
    return entry
