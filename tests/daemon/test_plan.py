"""The daily request plan's arithmetic."""

from __future__ import annotations

import math

import pytest

from syncd.daemon.plan import hot_requests_per_poll, make_plan, reconcile_windows

YEAR = 365


def test_a_quiet_config_is_not_stretched():
    plan = make_plan(workspaces=1, interval_seconds=900, history_days=YEAR)
    assert not plan.poll_stretched
    assert plan.poll_interval_seconds == 900
    assert plan.poll_per_day == 96  # 86400 / 900
    assert plan.period_achievable
    assert plan.warnings == ()
    assert plan.planned_per_day <= plan.daemon_budget


def test_three_workspaces_at_60s_fit_in_80_percent():
    plan = make_plan(workspaces=3, interval_seconds=60, history_days=YEAR)
    assert plan.daemon_budget == 8000
    assert plan.left_for_others == 2000
    assert plan.poll_per_day == 3 * 1440
    assert plan.planned_per_day <= 0.8 * 10_000


def test_three_workspaces_with_running_timers_at_60s_are_stretched():
    per_poll = hot_requests_per_poll(3, running_timer_windows=6)
    assert per_poll == 9
    plan = make_plan(
        workspaces=3, requests_per_poll=per_poll, interval_seconds=60, history_days=YEAR
    )
    assert plan.poll_stretched
    assert plan.configured_interval_seconds == 60
    # 12,960 requests a day at 60 s would overspend; the stretched poll fits with the rest:
    available = 8000 - plan.push_reserve - plan.fixed_per_day - plan.reconcile_per_day
    assert plan.poll_interval_seconds == math.ceil(9 * 86400 / available)
    assert plan.poll_interval_seconds == 105
    assert plan.planned_per_day <= 8000
    assert plan.period_achievable  # 159 windows a week is ~23 a day
    assert plan.reconcile_windows == 3 * math.ceil(YEAR / 7)


def test_a_stretched_poll_is_as_short_as_the_budget_allows():
    plan = make_plan(workspaces=3, interval_seconds=30, history_days=YEAR)
    assert plan.poll_stretched
    shorter = plan.poll_interval_seconds - 1
    spend_if_shorter = 3 * 86400 / shorter + plan.reconcile_per_day + 548
    assert spend_if_shorter > 8000 >= plan.planned_per_day


def test_reconcile_meets_its_period_with_one_window_per_workspace_per_slice():
    """A sweep run scans at least one window of every workspace, and the plan counts that."""
    plan = make_plan(
        workspaces=2, interval_seconds=600, history_days=700, window_days=7, reconcile_period_days=7
    )
    assert plan.reconcile_windows == 200
    assert plan.reconcile_windows_per_slice == 2
    # 200 windows a week = 28.6 a day, two every floor(2 * 86400 * 7 / 200) = 6048 s
    assert plan.reconcile_interval_seconds == 6048
    assert plan.achieved_period_days <= 7
    assert plan.period_achievable


def test_big_reconcile_needs_use_bigger_slices_and_may_miss_the_target():
    plan = make_plan(
        workspaces=3,
        interval_seconds=60,
        history_days=5 * YEAR,
        window_days=1,
        reconcile_period_days=1,
    )
    # 5,475 windows a day cannot fit: the sweep keeps half of what is left after reserves
    assert not plan.period_achievable
    assert plan.achieved_period_days > 1
    assert plan.reconcile_windows_per_slice > 1
    assert plan.reconcile_interval_seconds >= 60
    assert plan.reconcile_per_day <= (8000 - 548) / 2 + 1e-6
    assert plan.poll_stretched
    assert plan.planned_per_day <= 8000
    assert any("needs 5475/day" in w for w in plan.warnings)


def test_the_sweep_takes_what_the_poll_leaves():
    # a slow poll leaves nearly everything; the sweep needs 4,000/day and gets it
    plan = make_plan(
        workspaces=4,
        interval_seconds=3600,
        history_days=1000,
        window_days=1,
        reconcile_period_days=1,
    )
    assert plan.reconcile_windows == 4000
    assert plan.period_achievable
    assert not plan.poll_stretched
    assert plan.planned_per_day <= 8000


def test_no_history_means_no_sweep():
    plan = make_plan(workspaces=2, interval_seconds=300, history_days=0)
    assert plan.reconcile_windows == 0
    assert plan.reconcile_windows_per_slice == 0
    assert plan.reconcile_per_day == 0
    assert plan.period_achievable
    assert plan.achieved_period_days is None


def test_reserves_larger_than_the_share_are_reported():
    plan = make_plan(
        per_day=600, workspaces=1, interval_seconds=60, history_days=10, push_reserve=500
    )
    assert plan.poll_interval_seconds == 3600
    assert plan.warnings


def test_a_smaller_share_stretches_more():
    wide = make_plan(workspaces=3, interval_seconds=30, history_days=YEAR, daemon_share=0.8)
    narrow = make_plan(workspaces=3, interval_seconds=30, history_days=YEAR, daemon_share=0.5)
    assert narrow.poll_interval_seconds > wide.poll_interval_seconds
    assert narrow.planned_per_day <= 5000


@pytest.mark.parametrize("workspaces", [1, 2, 5, 20])
@pytest.mark.parametrize("interval", [5, 30, 60, 300, 900])
@pytest.mark.parametrize("history", [0, 30, YEAR, 3 * YEAR])
def test_the_plan_never_exceeds_the_daemon_share(workspaces, interval, history):
    plan = make_plan(workspaces=workspaces, interval_seconds=interval, history_days=history)
    assert plan.planned_per_day <= plan.daemon_budget
    assert plan.poll_interval_seconds >= interval


def test_describe_and_as_dict():
    plan = make_plan(workspaces=3, requests_per_poll=9, interval_seconds=60, history_days=YEAR)
    hot = {t.name: t for t in plan.tiers}["hot"]
    assert plan.poll_stretched
    assert plan.configured_interval_seconds == 60
    assert hot.describe() == (
        "hot: verified every 2 min (7406 req/day, 3 window(s)), stretched from 1 min: "
        "the quota cannot pay for it"
    )
    assert plan.daemon_budget == 8000
    assert plan.left_for_others == 2000
    data = plan.as_dict()
    assert data["poll_interval_seconds"] == 105
    assert data["planned_per_day"] == round(plan.planned_per_day, 1)


def test_helpers_and_validation():
    assert reconcile_windows(3, 365, 7) == 3 * 53
    assert reconcile_windows(0, 365, 7) == 0
    with pytest.raises(ValueError):
        reconcile_windows(1, 10, 0)
    for bad in (
        {"daemon_share": 0},
        {"daemon_share": 1.5},
        {"interval_seconds": 0},
        {"per_day": 0},
        {"workspaces": -1},
        {"reconcile_period_days": 0},
    ):
        kwargs = {"workspaces": 1, "interval_seconds": 60, "history_days": 10, **bad}
        with pytest.raises(ValueError):
            make_plan(**kwargs)


def test_each_tier_shows_its_staleness_and_its_daily_cost():
    """3 workspaces, 3 years of history in 14-day windows: the warm tier (59 days) every
    hour and the rest daily fit the budget, and status says what each costs."""
    plan = make_plan(
        workspaces=3,
        interval_seconds=900,
        history_days=3 * YEAR,
        window_days=14,
        reconcile_period_days=1,
        warm_days=59,
        warm_period_minutes=60,
    )
    tiers = {t.name: t for t in plan.tiers}
    assert set(tiers) == {"hot", "warm", "cold"}
    assert tiers["hot"].promised_seconds == 900
    assert tiers["warm"].windows == 3 * 5
    assert tiers["warm"].promised_seconds == 3600
    assert tiers["cold"].promised_seconds == 86400
    assert not any(t.stretched for t in plan.tiers)
    assert tiers["warm"].per_day >= 3 * 5 * 24
    assert tiers["cold"].windows == 3 * 74
    assert tiers["cold"].per_day >= 3 * 74
    assert plan.as_dict()["tiers"]["warm"]["promised_seconds"] == 3600
    assert tiers["warm"].describe().startswith("warm: verified every 60 min")


def test_tiers_the_quota_cannot_pay_for_are_stretched_never_the_hot_poll():
    plan = make_plan(
        per_day=2_000,
        workspaces=3,
        interval_seconds=900,
        history_days=3 * YEAR,
        window_days=7,
        reconcile_period_days=1,
        warm_days=59,
        warm_period_minutes=15,
    )
    tiers = {t.name: t for t in plan.tiers}
    assert not tiers["hot"].stretched
    assert plan.poll_interval_seconds == 900
    assert tiers["warm"].stretched
    assert tiers["cold"].stretched
    assert tiers["warm"].promised_seconds > 15 * 60
    assert tiers["cold"].promised_seconds > 86400
    assert plan.planned_per_day <= 1_600
    assert any("both are stretched" in w for w in plan.warnings)
    assert "stretched from 15 min" in tiers["warm"].describe()
