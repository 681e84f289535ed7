"""The daemon's daily request plan (pure arithmetic, no I/O).

Upstream allows ``per_day`` requests per key (10,000). The daemon may spend at most
``daemon_share`` of it (default 80 %); the rest is left for ``syncd --once`` runs and anything
else using the same key. Inside the daemon's share the plan carves out, in this order:

1. ``fixed_per_day``: housekeeping (workspace listing, webhook subscription checks);
2. ``push_reserve``: confirming re-scans after webhook deliveries;
3. the **reconciliation sweep**, which re-scans every history window once per
   ``reconcile_period_days``:
   ``windows = workspaces × ceil(history_days / window_days)`` and it needs
   ``windows / reconcile_period_days`` requests a day. It is guaranteed up to
   ``reconcile_max_share`` of what is left after 1 and 2, and may take more when the poll
   leaves it over;
4. the **hot-window poll**, ``requests_per_poll × 86400 / interval`` requests a day, which
   gets the rest. When the configured interval would overspend, the interval is stretched
   to ``ceil(requests_per_poll × 86400 / poll_allowance)`` seconds.

The sweep runs every ``reconcile_interval_seconds`` and scans ``reconcile_windows_per_slice``
windows each time; slices are made at least ``min_reconcile_interval`` apart (bigger slices
rather than more frequent ones) and at most ``max_windows_per_slice`` big.

Example: 3 workspaces with 2 running-timer windows each poll 9 windows; at 60 s that is
12,960 requests a day, more than the 8,000 of an 80 % share, so the interval is stretched
(to 105 s with the default reserves and a year of history re-verified weekly).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True, slots=True)
class TierPlan:
    """What the plan promises one verification tier: every window of it is re-verified at
    least every ``promised_seconds`` (its configured ``period_seconds``, or longer when
    ``stretched``), for ``per_day`` requests a day over ``windows`` windows."""

    name: str  # hot | warm | cold
    windows: int
    period_seconds: float
    promised_seconds: float | None  # None: the plan cannot afford it at all
    per_day: float
    stretched: bool

    def describe(self) -> str:
        promised = "never" if self.promised_seconds is None else _span(self.promised_seconds)
        line = f"{self.name}: verified every {promised} ({self.per_day:.0f} req/day"
        line += f", {self.windows} window(s))"
        if self.stretched:
            line += f", stretched from {_span(self.period_seconds)}: the quota cannot pay for it"
        return line


def _span(seconds: float) -> str:
    if seconds <= 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


@dataclass(frozen=True, slots=True)
class Plan:
    """The outcome of :func:`make_plan`; every ``*_per_day`` figure is a request count."""

    per_day: int
    daemon_share: float
    daemon_budget: int  # floor(per_day × daemon_share)
    left_for_others: int  # per_day − daemon_budget (cron --once, other clients)
    workspaces: int
    requests_per_poll: int
    configured_interval_seconds: float
    poll_interval_seconds: float  # effective (≥ configured)
    poll_stretched: bool
    reconcile_windows: int  # windows in one full pass over the history
    reconcile_interval_seconds: float
    reconcile_windows_per_slice: int
    reconcile_period_days: float  # the configured target
    achieved_period_days: float | None  # None when there is nothing to reconcile
    period_achievable: bool
    poll_per_day: float
    reconcile_per_day: float
    push_reserve: int
    fixed_per_day: int
    warnings: tuple[str, ...] = field(default=())
    tiers: tuple[TierPlan, ...] = field(default=())

    @property
    def planned_per_day(self) -> float:
        """Everything the daemon expects to spend in a day, reserves included."""
        return self.poll_per_day + self.reconcile_per_day + self.push_reserve + self.fixed_per_day

    def as_dict(self) -> dict:
        """A JSON-ready dict (for ``syncd status --json`` and ``/healthz``)."""
        data = asdict(self)
        data["warnings"] = list(self.warnings)
        data["tiers"] = {
            t.name: {
                "windows": t.windows,
                "period_seconds": t.period_seconds,
                "promised_seconds": t.promised_seconds,
                "requests_per_day": round(t.per_day, 1),
                "stretched": t.stretched,
            }
            for t in self.tiers
        }
        data["planned_per_day"] = round(self.planned_per_day, 1)
        data["poll_per_day"] = round(self.poll_per_day, 1)
        data["reconcile_per_day"] = round(self.reconcile_per_day, 1)
        return data


def hot_requests_per_poll(workspaces: int, running_timer_windows: int = 0) -> int:
    """Requests one hot poll costs: one hot window per workspace, plus one per running timer
    whose date lies outside its workspace's hot window."""
    return max(0, workspaces) + max(0, running_timer_windows)


def reconcile_windows(workspaces: int, history_days: int, window_days: int) -> int:
    """Windows in one full pass: ``workspaces × ceil(history_days / window_days)``.

    Raises ``ValueError`` when ``window_days`` is not positive.
    """
    if window_days <= 0:
        raise ValueError("window_days must be positive")
    if workspaces <= 0 or history_days <= 0:
        return 0
    return workspaces * math.ceil(history_days / window_days)


def make_plan(
    *,
    per_day: int = 10_000,
    daemon_share: float = 0.8,
    workspaces: int,
    requests_per_poll: int | None = None,
    interval_seconds: float,
    history_days: int,
    window_days: int = 7,
    reconcile_period_days: float = 7.0,
    push_reserve: int = 500,
    fixed_per_day: int = 48,
    reconcile_max_share: float = 0.5,
    min_reconcile_interval: float = 60.0,
    max_windows_per_slice: int = 10,
    max_poll_interval: float = 3_600.0,
    warm_days: int = 0,
    warm_period_minutes: float = 60.0,
) -> Plan:
    """Compute the daily plan (see the module docstring for the arithmetic).

    ``requests_per_poll`` defaults to one per workspace (:func:`hot_requests_per_poll`).
    ``history_days`` is how far back the sweep re-verifies and ``window_days`` the typical
    window size. The effective poll interval is never shorter than ``interval_seconds`` and
    never longer than ``max_poll_interval`` (a plan that cannot even afford that says so in
    ``warnings``).

    Raises ``ValueError`` for a non-positive ``per_day``, interval, window size or period, a
    share outside ``(0, 1]``, or negative counts.
    """
    if per_day <= 0:
        raise ValueError("per_day must be positive")
    if not 0 < daemon_share <= 1:
        raise ValueError("daemon_share must be in (0, 1]")
    if not 0 <= reconcile_max_share <= 1:
        raise ValueError("reconcile_max_share must be in [0, 1]")
    if interval_seconds <= 0 or reconcile_period_days <= 0 or min_reconcile_interval <= 0:
        raise ValueError("intervals and periods must be positive")
    if workspaces < 0 or push_reserve < 0 or fixed_per_day < 0 or history_days < 0:
        raise ValueError("counts must not be negative")
    if max_windows_per_slice <= 0:
        raise ValueError("max_windows_per_slice must be positive")
    per_poll = hot_requests_per_poll(workspaces) if requests_per_poll is None else requests_per_poll
    if per_poll < 0:
        raise ValueError("requests_per_poll must not be negative")
    warnings: list[str] = []

    daemon_budget = math.floor(per_day * daemon_share)
    available = daemon_budget - push_reserve - fixed_per_day
    if available <= 0:
        warnings.append(
            f"reserves ({push_reserve} push + {fixed_per_day} housekeeping) use the whole "
            f"daemon budget of {daemon_budget}/day"
        )
        available = 0

    warm_days = max(0, min(warm_days, history_days))
    warm_windows = reconcile_windows(workspaces, warm_days, window_days)
    cold_windows = reconcile_windows(workspaces, history_days - warm_days, window_days)
    windows = warm_windows + cold_windows
    warm_need = warm_windows * 1440 / warm_period_minutes
    cold_need = cold_windows / reconcile_period_days
    reconcile_need = warm_need + cold_need
    poll_wanted = per_poll * SECONDS_PER_DAY / interval_seconds

    # The sweep is guaranteed its share, and may use whatever the poll leaves over.
    guaranteed = available * reconcile_max_share
    reconcile_alloc = max(0.0, min(reconcile_need, max(guaranteed, available - poll_wanted)))
    interval, per_slice = _slices(
        reconcile_alloc,
        min_reconcile_interval,
        max_windows_per_slice,
        meet_target=windows > 0 and reconcile_alloc >= reconcile_need,
        min_per_slice=max(1, workspaces),
    )
    reconcile_per_day = per_slice * SECONDS_PER_DAY / interval if per_slice else 0.0
    if reconcile_per_day > available:  # rounding down overshot a budget that is all taken
        interval, per_slice = _slices(
            reconcile_alloc,
            min_reconcile_interval,
            max_windows_per_slice,
            meet_target=False,
            min_per_slice=max(1, workspaces),
        )
        reconcile_per_day = per_slice * SECONDS_PER_DAY / interval if per_slice else 0.0
    poll_alloc = available - reconcile_per_day

    poll_interval = float(interval_seconds)
    stretched = False
    if per_poll and poll_wanted > poll_alloc:
        stretched = True
        if poll_alloc > 0:
            poll_interval = float(math.ceil(per_poll * SECONDS_PER_DAY / poll_alloc))
        else:
            poll_interval = max_poll_interval
        if poll_interval > max_poll_interval:
            warnings.append(
                f"the poll needs {per_poll * SECONDS_PER_DAY / max_poll_interval:.0f}/day even "
                f"at the longest interval ({max_poll_interval:g}s); it will overspend its share"
            )
            poll_interval = max_poll_interval
    poll_per_day = per_poll * SECONDS_PER_DAY / poll_interval if per_poll else 0.0

    # Both sweeping tiers stretch by the same factor when the sweep cannot pay for them.
    stretch = reconcile_need / reconcile_per_day if reconcile_per_day > 0 else math.inf
    if windows == 0:
        achieved: float | None = None
        achievable = True
    elif reconcile_per_day > 0:
        achieved = reconcile_period_days * stretch if cold_windows else None
        achievable = stretch <= 1 + 1e-9
    else:
        achieved = None
        achievable = False
    if not achievable and not warm_windows:
        warnings.append(
            f"re-verifying {windows} windows every {reconcile_period_days:g} days needs "
            f"{reconcile_need:.0f}/day; the plan affords {reconcile_alloc:.0f}/day"
        )
    elif not achievable:
        warnings.append(
            f"the warm tier every {warm_period_minutes:g} min and the cold tier every "
            f"{reconcile_period_days * 24:g} h need {reconcile_need:.0f}/day; the plan affords "
            f"{reconcile_alloc:.0f}/day, so both are stretched"
            + (f" {stretch:.1f}x" if math.isfinite(stretch) else " indefinitely")
        )
    tiers = [
        TierPlan(
            "hot",
            workspaces,
            float(interval_seconds),
            poll_interval,
            poll_per_day,
            poll_interval > interval_seconds,
        )
    ]
    for name, count, need, period in (
        ("warm", warm_windows, warm_need, warm_period_minutes * 60.0),
        ("cold", cold_windows, cold_need, reconcile_period_days * SECONDS_PER_DAY),
    ):
        if count == 0:
            continue
        share = reconcile_per_day * need / reconcile_need if reconcile_need else 0.0
        tiers.append(
            TierPlan(
                name,
                count,
                period,
                period * max(1.0, stretch) if math.isfinite(stretch) else None,
                share,
                not achievable,
            )
        )
    return Plan(
        per_day=per_day,
        daemon_share=daemon_share,
        daemon_budget=daemon_budget,
        left_for_others=per_day - daemon_budget,
        workspaces=workspaces,
        requests_per_poll=per_poll,
        configured_interval_seconds=float(interval_seconds),
        poll_interval_seconds=poll_interval,
        poll_stretched=stretched,
        reconcile_windows=windows,
        reconcile_interval_seconds=interval,
        reconcile_windows_per_slice=per_slice,
        reconcile_period_days=float(reconcile_period_days),
        achieved_period_days=achieved,
        period_achievable=achievable,
        poll_per_day=poll_per_day,
        reconcile_per_day=reconcile_per_day,
        push_reserve=push_reserve,
        fixed_per_day=fixed_per_day,
        warnings=tuple(warnings),
        tiers=tuple(tiers),
    )


def _slices(
    per_day: float,
    min_interval: float,
    max_per_slice: int,
    *,
    meet_target: bool,
    min_per_slice: int = 1,
) -> tuple[float, int]:
    """Split ``per_day`` sweep requests into slices: ``(interval_seconds, windows_per_slice)``.

    One window per slice when that keeps slices ``min_interval`` apart; otherwise the fewest
    windows per slice that do (capped at ``max_per_slice``), never fewer than
    ``min_per_slice`` (a sweep run scans at least one window per workspace). The interval is
    whole seconds: rounded down when ``per_day`` is the period target (so the target is met),
    rounded up when it is a budget limit (so the budget is never exceeded). Nothing to spend gives
    ``(86400, 0)``: a daily slot that scans nothing.
    """
    if per_day <= 0:
        return float(SECONDS_PER_DAY), 0
    per_slice = min(
        max(max_per_slice, min_per_slice),
        max(min_per_slice, math.ceil(min_interval * per_day / SECONDS_PER_DAY)),
    )
    exact = per_slice * SECONDS_PER_DAY / per_day
    interval = max(1, math.floor(exact)) if meet_target else math.ceil(exact)
    return float(interval), per_slice
