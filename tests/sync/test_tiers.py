"""Verification tiers by age, and ``--full``, against the fake upstream with an injected clock.

A silent change (no webhook) must reach the mirror within its tier's period: the hot tier at
the next run, the warm tier within ``warm_period_minutes``, anything older within
``reconcile_period_hours``.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncd.config import parse_config
from syncd.daemon.metrics import Metrics
from syncd.errors import ConfigError
from syncd.records import Priority, RunReport
from syncd.status import MirrorStatus, describe_status, verified_times
from syncd.store import AsyncStore, Store
from syncd.sync import FRESHNESS_SETTING, SyncEngine, SyncSettings

from . import mirror_rows as mirror
from .fakes import WS, Clock, FakeUpstream, days_back

TIERED = {
    "hot_window_days": 3,
    "warm_window_days": 62,
    "warm_period_minutes": 60,
    "reconcile_period_hours": 24,
    "interval_seconds": 900,
}


def make_engine(upstream: FakeUpstream, store: AsyncStore, clock: Clock, **settings) -> SyncEngine:
    return SyncEngine(
        upstream, store, SyncSettings.from_config(**{**TIERED, **settings}), clock=clock
    )


def report(clock: Clock, kind: str = "once") -> RunReport:
    return RunReport(kind=kind, started_at=clock.stamp())


async def test_a_silent_change_in_each_tier_arrives_within_its_period(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """Edits, a delete and a backdated add, made without webhooks hours into a sweep, reach
    the mirror of ``--once`` runs every 15 minutes: hot ones at the next run, warm ones
    within an hour, cold ones within a day."""
    today = clock.today()
    entries = upstream.add_many(days_back(today, *range(0, 3 * 365, 3)))
    by_age = {(today - date.fromisoformat(e.date)).days: e for e in entries}
    engine = make_engine(upstream, store, clock)
    await engine.run_once(report(clock))
    for _ in range(21):  # seven hours into the sweeps: changes land mid-pass
        clock.advance(minutes=15)
        await engine.run_once(report(clock))

    hot = upstream.edit(by_age[0].id, description="hot fix")
    warm = upstream.edit(by_age[30].id, description="warm fix")
    warm_gone = upstream.delete(by_age[45].id)
    cold = upstream.edit(by_age[600].id, description="cold fix")
    cold_gone = upstream.delete(by_age[900].id)
    cold_added = upstream.add(clock.days_ago(700), description="backdated")
    changed_at = clock.now
    pending = {
        "hot": lambda: mirror.row(db_path, hot.id)["description"] == "hot fix",
        "warm edit": lambda: mirror.row(db_path, warm.id)["description"] == "warm fix",
        "warm delete": lambda: mirror.row(db_path, warm_gone.id)["deleted_at"] is not None,
        "cold edit": lambda: mirror.row(db_path, cold.id)["description"] == "cold fix",
        "cold delete": lambda: mirror.row(db_path, cold_gone.id)["deleted_at"] is not None,
        "cold add": lambda: mirror.row(db_path, cold_added.id) is not None,
    }
    seen: dict[str, timedelta] = {}
    while clock.now < changed_at + timedelta(hours=25) and len(seen) < len(pending):
        clock.advance(minutes=15)
        run_at = clock.now
        await engine.run_once(report(clock))
        for name, check in pending.items():
            if name not in seen and check():
                seen[name] = run_at - changed_at

    assert set(seen) == set(pending)
    assert seen["hot"] <= timedelta(minutes=15)
    assert seen["warm edit"] <= timedelta(hours=1)
    assert seen["warm delete"] <= timedelta(hours=1)
    assert max(seen["cold edit"], seen["cold delete"], seen["cold add"]) <= timedelta(hours=24)
    assert mirror.live(db_path) == mirror.expected(upstream.entries)


async def test_verified_ages_stay_within_each_tier_period(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock
) -> None:
    """Over a day of 15-minute runs the age of each tier's oldest verification never passes
    its period, and a warm pass costs a few requests, not a full re-scan per run."""
    today = clock.today()
    upstream.add_many(days_back(today, *range(0, 3 * 365, 2)))
    engine = make_engine(upstream, store, clock)
    await engine.run_once(report(clock))
    worst = {"hot": 0.0, "warm": 0.0, "cold": 0.0}
    upstream.reset_counts()
    for _ in range(96):
        clock.advance(minutes=15)
        await engine.run_once(report(clock))
        ages = await engine.verified_ages(WS)
        for tier, age in ages.items():
            assert age is not None, tier
            worst[tier] = max(worst[tier], age)

    assert worst["hot"] <= 15 * 60
    assert worst["warm"] <= 3600
    assert worst["cold"] <= 24 * 3600
    # 96 hot scans, and sweeps far cheaper than re-scanning everything every run
    assert upstream.priorities[Priority.HOT] == 2 * 96  # a workspace list and a hot scan
    assert upstream.priorities[Priority.RECONCILE] < 3 * 96


async def test_stretched_periods_slow_the_sweep_not_the_hot_window(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock
) -> None:
    """Longer tier periods (what the daemon's plan sets when the quota cannot pay) spend
    fewer sweep requests; the hot window is still scanned every run."""
    today = clock.today()
    upstream.add_many(days_back(today, *range(0, 3 * 365, 2)))
    costs = []
    for minutes, hours in ((60, 24), (240, 96)):
        engine = make_engine(
            upstream, store, clock, warm_period_minutes=minutes, reconcile_period_hours=hours
        )
        await engine.run_once(report(clock))
        upstream.reset_counts()
        for _ in range(96):
            clock.advance(minutes=15)
            await engine.run_once(report(clock))
        costs.append((upstream.priorities[Priority.HOT], upstream.priorities[Priority.RECONCILE]))
    assert costs[0][0] == costs[1][0] == 2 * 96
    assert costs[1][1] < costs[0][1] / 2


def test_the_old_reconcile_period_days_is_read_as_hours_with_a_warning(
    tmp_path: Path, quiet_logs: list[dict]
) -> None:
    """A config written for an older syncd keeps working: days become hours, and the log
    says which setting to use instead; setting both is an error naming them."""
    env = {"SYNCD_API_KEY": "k"}
    config = parse_config("[sync]\nreconcile_period_days = 7\n", base_dir=tmp_path, env=env)
    assert config.sync.reconcile_period_hours == 168
    (warning,) = [e for e in quiet_logs if e["event"] == "config_deprecated"]
    assert warning["use"] == "sync.reconcile_period_hours = 168"

    both = "[sync]\nreconcile_period_days = 7\nreconcile_period_hours = 24\n"
    with pytest.raises(ConfigError) as info:
        parse_config(both, base_dir=tmp_path, env=env)
    assert "keep only reconcile_period_hours" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_config("[sync]\nwarm_period_minutes = 0\n", base_dir=tmp_path, env=env)
    assert "warm_period_minutes" in str(info.value)


async def test_metrics_show_the_verified_age_of_each_tier(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock
) -> None:
    """``syncd_verified_age_seconds{workspace,tier}`` ages with the clock between runs and
    drops back when a run verifies the tier again."""
    upstream.add_many(days_back(clock.today(), *range(0, 400, 2)))
    engine = make_engine(upstream, store, clock)
    await engine.run_once(report(clock))
    metrics = Metrics(now=lambda: clock.now.timestamp())

    def ages() -> dict[str, float]:
        families = text_string_to_metric_families(metrics.render().decode())
        (family,) = [f for f in families if f.name == "syncd_verified_age_seconds"]
        return {s.labels["tier"]: s.value for s in family.samples if s.labels["workspace"] == WS}

    metrics.set_freshness(verified_times(await store.get_setting(FRESHNESS_SETTING)))
    assert max(ages().values()) < 5
    clock.advance(minutes=50)
    assert 2999 < ages()["warm"] < 3005  # nothing ran: the age grows with the clock
    await engine.run_once(report(clock))
    metrics.set_freshness(verified_times(await store.get_setting(FRESHNESS_SETTING)))
    got = ages()
    assert got["hot"] < 5
    assert got["warm"] < 5  # due within the next 15 minutes: verified by this run
    assert 2999 < got["cold"] < 3005  # not due for most of a day


async def test_status_shows_each_tiers_verified_age(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path, tmp_path: Path
) -> None:
    """``syncd status --json`` data: per workspace and tier the age of its least recently
    verified window, read from the mirror alone."""
    upstream.add_many(days_back(clock.today(), *range(0, 400, 2)))
    engine = make_engine(upstream, store, clock)
    await engine.run_once(report(clock))
    config = parse_config(
        f'[database]\npath = "{db_path}"\n', base_dir=tmp_path, env={"SYNCD_API_KEY": "k"}
    )

    def status() -> MirrorStatus:  # in a thread of its own, as the status command runs
        reader = Store(db_path)
        try:
            return describe_status(config, reader)
        finally:
            reader.close()

    data = await asyncio.to_thread(status)
    (workspace,) = data.workspaces
    ages = workspace.verified_age_seconds
    assert data.as_json()["workspaces"][0]["verified_age_seconds"] == ages
    assert set(ages) == {"hot", "warm", "cold"}
    # the mirror's clock is the injected one; status reads the wall clock
    assert all(age is not None and age >= 0 for age in ages.values())
    assert max(ages.values()) - min(ages.values()) < 5
