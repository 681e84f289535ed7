"""``/healthz``, ``/metrics`` and ``syncd status`` of a running daemon report what they claim."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime

from tests.support.daemon import wait_for

DOCUMENTED_METRICS = (
    "syncd_api_requests_total",
    "syncd_rate_limited_total",
    "syncd_budget_remaining",
    "syncd_last_success_timestamp_seconds",
    "syncd_entries_upserted_total",
    "syncd_entries_tombstoned_total",
    "syncd_webhook_events_total",
    "syncd_webhook_to_mirror_seconds_bucket",
    "syncd_webhook_to_mirror_seconds_count",
    "syncd_webhook_to_mirror_seconds_sum",
    "syncd_sync_duration_seconds_bucket",
    "syncd_sync_duration_seconds_count",
    "syncd_sync_failures_total",
    "syncd_refresh_pending",
)


def _age(stamp: str) -> float:
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return (datetime.now(UTC) - moment).total_seconds()


def _names(metrics: dict[str, float]) -> set[str]:
    return {key.split("{")[0] for key in metrics}


def _counts_by_workspace(truth: dict[str, dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in truth.values():
        counts[entry["workspace_id"]] = counts.get(entry["workspace_id"], 0) + 1
    return counts


def test_healthz_metrics_and_status_while_running_then_503_when_upstream_fails(
    emulator_factory, daemon_factory
):
    emu = emulator_factory()
    daemon = daemon_factory(emu, overrides={"sync": {"interval_seconds": 10}})
    daemon.start()
    reply = daemon.healthz()
    assert reply.status == 200, reply.body
    health = reply.json()
    assert health["status"] == "ok"
    assert health["reason"] is None
    assert health["last_success_at"] is not None
    assert health["plan"]["poll_interval_seconds"] == 10

    # One push (applied, then confirmed), and one silent delete the confirming re-scan finds.
    workspace = emu.workspace_ids()[0]
    doomed = emu.control(
        "POST",
        "/manual-entries",
        {
            "workspace_id": workspace,
            "start_time": datetime.now(UTC).strftime("%Y-%m-%dT00:10:00Z"),
            "end_time": datetime.now(UTC).strftime("%Y-%m-%dT00:40:00Z"),
        },
    )
    wait_for(lambda: daemon.scalar("SELECT 1 FROM time_entries WHERE id = ?", doomed["id"]), 2)
    emu.control("DELETE", f"/time-entries/{doomed['id']}")
    timer = emu.control("POST", "/timers/start", {"workspace_id": workspace})
    wait_for(
        lambda: daemon.scalar("SELECT deleted_at FROM time_entries WHERE id = ?", doomed["id"]),
        5,
        what="the confirming re-scan to tombstone the silently deleted entry",
    )
    wait_for(lambda: daemon.healthz().json()["pending_refresh_windows"] == 0, 5)

    # -- syncd status --json, while the daemon runs
    status = daemon.status()
    truth = emu.truth()
    counts = _counts_by_workspace(truth)
    assert {w["id"] for w in status["workspaces"]} == set(counts)
    for ws in status["workspaces"]:
        assert ws["live_entries"] == counts[ws["id"]]
        assert ws["tombstoned_entries"] == (1 if ws["id"] == workspace else 0)
        assert ws["last_scan_at"] is not None
        assert _age(ws["last_scan_at"]) < 60
        assert 0 <= ws["freshness_lag_seconds"] < 60
        assert ws["backfill_complete"] is True
    requests = emu.key_stats()["requests"]
    budget = status["budget"]
    assert budget["used_today"] == requests  # every request the daemon sent, no more
    assert budget["per_day"] == 900_000  # per_day 1,000,000 less the 10 % margin
    assert budget["remaining"]["day"] == 900_000 - requests
    plan = status["plan"]
    assert plan["daemon_share"] == 0.8
    assert plan["workspaces"] == 2
    assert plan["poll_interval_seconds"] == 10
    assert plan["poll_stretched"] is False
    subscription = status["webhook_subscription"]
    assert subscription["status"] == "ACTIVE"
    assert subscription["id"] == emu.subscriptions()[0]["id"]
    assert subscription["url"].startswith(f"{daemon.base_url}/hooks/")
    assert status["daemon"]["running"] is True
    assert status["daemon"]["pid"] == daemon.proc.pid
    human = daemon.cli("status")
    assert human.returncode == 0
    assert b"ACTIVE" in human.stdout

    # -- /metrics
    metrics = daemon.metrics()
    missing = [n for n in DOCUMENTED_METRICS if n not in _names(metrics)]
    # Counters with labels appear once a label value was used; make sure of the failure one.
    assert missing in ([], ["syncd_sync_failures_total"]), missing
    assert metrics['syncd_api_requests_total{outcome="ok"}'] == emu.key_stats()["requests"]
    assert metrics["syncd_rate_limited_total"] == 0
    for window in ("second", "minute", "day"):
        assert f'syncd_budget_remaining{{window="{window}"}}' in metrics
    assert 0 < metrics['syncd_budget_remaining{window="day"}'] <= 900_000
    assert abs(time.time() - metrics["syncd_last_success_timestamp_seconds"]) < 30
    # Window scans count here (the 2,000 seeded entries); pushes count in webhook_events.
    assert metrics["syncd_entries_upserted_total"] >= 2000
    assert metrics["syncd_entries_tombstoned_total"] == 1
    assert metrics['syncd_webhook_events_total{outcome="inserted"}'] == 2
    count = metrics["syncd_webhook_to_mirror_seconds_count"]
    assert count == 2
    assert metrics["syncd_webhook_to_mirror_seconds_sum"] / count < 0.1  # answered at once
    assert metrics['syncd_sync_duration_seconds_count{kind="poll"}'] >= 1
    assert metrics['syncd_sync_duration_seconds_count{kind="refresh"}'] >= 1
    assert metrics["syncd_refresh_pending"] == 0

    # -- upstream fails: the key is revoked. Pushes still apply; re-scans and polls fail.
    emu.control("DELETE", f"/keys/{emu.api_key}")
    emu.control(
        "POST",
        "/timers/stop",
        {"workspace_id": workspace, "team_member_id": timer["team_member_id"]},
    )
    wait_for(
        lambda: daemon.scalar("SELECT end_time FROM time_entries WHERE id = ?", timer["id"]),
        2,
        what="the stop to be applied without upstream",
    )

    def unhealthy():
        reply = daemon.healthz()
        return reply if reply.status == 503 else None

    reply = wait_for(unhealthy, 30, interval=0.2, what="/healthz to turn 503")
    health = reply.json()
    assert health["status"] == "unhealthy"
    assert "failed in a row" in health["reason"], health
    assert "AuthError" in health["last_error"], health
    metrics = daemon.metrics()
    failures = sum(v for k, v in metrics.items() if k.startswith("syncd_sync_failures_total"))
    assert failures >= 3
    assert daemon.stop()[0] == 0


def test_status_and_metrics_details_documented_in_operations_md(emulator_factory, daemon_factory):
    """Claims of docs/operations.md that the main test above does not pin down:

    - ``syncd_budget_remaining`` is "read at scrape time, so it includes ``--once`` runs";
    - the freshness lag is "how long ago the hot window was last verified" (a push re-scan
      of one day does not verify the hot window);
    - status shows "the subscribed URL (token hidden) ... and when the last delivery
      arrived".
    """
    emu = emulator_factory(entries=200, days=30)
    daemon = daemon_factory(emu).start()  # polls every 600 s: idle after the first poll
    daemon.wait_job("housekeeping")
    problems = []

    once = daemon.cli("--once")
    assert once.returncode == 0, once.stdout.decode()[-2000:]
    used = daemon.scalar("SELECT COUNT(*) FROM budget_grants")
    assert used == emu.key_stats()["requests"]
    remaining = daemon.metrics()['syncd_budget_remaining{window="day"}']
    if remaining != 900_000 - used:
        problems.append(
            f"syncd_budget_remaining{{window=day}} is {remaining:.0f} after a --once run, "
            f"the shared budget has {900_000 - used} left"
        )

    time.sleep(4.0)  # the hot window ages; the push re-scan below is fresh
    workspace = emu.workspace_ids()[0]
    emu.control("POST", "/timers/start", {"workspace_id": workspace})
    wait_for(
        lambda: daemon.scalar("SELECT COUNT(*) FROM sync_runs WHERE kind = 'push' AND ok = 1"),
        5,
        what="the push re-scan",
    )
    hot_scan = daemon.scalar(
        "SELECT last_hot_scan_at FROM sync_state WHERE workspace_id = ?", workspace
    )
    age_before = _age(hot_scan)
    result = daemon.cli("status", "--json")
    age_after = _age(hot_scan)
    status = json.loads(result.stdout)
    (ws,) = [w for w in status["workspaces"] if w["id"] == workspace]
    assert ws["last_hot_scan_at"] == hot_scan
    if not age_before - 1 <= ws["freshness_lag_seconds"] <= age_after + 1:
        problems.append(
            f"freshness_lag_seconds is {ws['freshness_lag_seconds']} but the hot window was "
            f"last verified {age_before:.1f}..{age_after:.1f}s ago"
        )
    if daemon.token.encode() in result.stdout:
        problems.append("`syncd status --json` prints the webhook token")
    last = daemon.scalar("SELECT MAX(received_at) FROM webhook_events")
    if last not in result.stdout.decode():
        problems.append(f"status --json does not say when the last delivery arrived ({last})")
    assert not problems, "\n".join(problems)


async def test_the_plan_counts_what_a_poll_and_a_sweep_run_cost(emulator_factory, daemon_factory):
    """The daily plan sizes the poll and sweep intervals from ``requests_per_poll`` and
    ``reconcile_windows_per_slice``; a job that costs more than planned overspends the
    daemon's share (and can run into the daily quota). Measured on two workspaces with no
    running timer and a complete history."""
    from syncd.config import load_config
    from syncd.records import RunReport
    from syncd.service import open_runtime

    emu = emulator_factory(entries=400, days=60)
    for workspace in emu.control("GET", "/workspaces"):
        for member in workspace["members"]:
            if member["running_entry_id"]:
                emu.control(
                    "POST",
                    "/timers/stop",
                    {"workspace_id": workspace["id"], "team_member_id": member["id"]},
                )
    daemon = daemon_factory(emu, subscribe=False)
    assert daemon.cli("--once").returncode == 0  # history complete: the daemon only polls
    before = emu.key_stats()["requests"]
    daemon.start()
    daemon.wait_job("housekeeping")
    assert daemon.stop()[0] == 0
    poll = daemon.query("SELECT * FROM sync_runs WHERE kind = 'poll' ORDER BY id DESC")[0]
    assert poll["ok"] == 1
    assert emu.key_stats()["requests"] - before == poll["requests"]
    plan = json.loads(daemon.setting("daemon_plan"))
    assert plan["workspaces"] == 2
    problems = []
    # The workspace listing + one hot window per workspace = 3.
    if poll["requests"] > plan["requests_per_poll"]:
        problems.append(
            f"a poll cost {poll['requests']} requests; the plan budgets "
            f"{plan['requests_per_poll']} per poll"
        )

    # One run of the sweep, the way the daemon's job runs it (engine interval = the plan's
    # sweep interval).
    config = load_config(daemon.config_path)
    async with open_runtime(config, daily_share=config.limits.daemon_share) as runtime:
        engine = runtime.engine
        engine.settings = replace(
            engine.settings, interval_seconds=int(plan["reconcile_interval_seconds"])
        )
        await engine.refresh_workspaces(RunReport(kind="poll", started_at=""))
        report = RunReport(kind="reconcile", started_at="")
        await engine.reconcile(report)
    assert report.windows > 0
    if report.windows > plan["reconcile_windows_per_slice"]:
        problems.append(
            f"a sweep run scanned {report.windows} windows; the plan budgets "
            f"{plan['reconcile_windows_per_slice']} per run every "
            f"{plan['reconcile_interval_seconds']:g}s ({plan['reconcile_per_day']}/day)"
        )
    assert not problems, "\n".join(problems)
