"""``syncd status`` as one typed ``MirrorStatus``: built from typed store records, the stored
plan, heartbeat and subscription read into their types once, and ``as_json`` the document
``status --json`` has always printed."""

from __future__ import annotations

import io
import json
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from syncd.cli import cli
from syncd.config import parse_config
from syncd.daemon.plan import make_plan
from syncd.errors import StoreError
from syncd.records import (
    EventKind,
    RunReport,
    WebhookEvent,
    WindowOutcome,
    Workspace,
    WorkspaceState,
)
from syncd.status import (
    HEARTBEAT_SETTING,
    PLAN_SETTING,
    SUBSCRIPTION_SETTING,
    BudgetStatus,
    DaemonPlan,
    Heartbeat,
    MirrorStatus,
    Subscription,
    WorkspaceStatus,
    describe_status,
    mirror_status,
    verified_times,
)
from syncd.store import Store
from syncd.store.status_reads import MirrorCounts, RunRecord, WorkspaceCounts
from syncd.sync import FRESHNESS_SETTING
from syncd.window_reading import WindowReading
from tests.store.factory import entry, ts, window

NOW = datetime(2026, 12, 4, 16, 0, 0, tzinfo=UTC)
TOKEN = "AbCdEfGhIjKlMnOp1234"
PLAN = make_plan(workspaces=2, interval_seconds=600, history_days=365, warm_days=56)
JOBS = {"poll": {"runs": 3, "failures": 0, "last_success": "2026-12-04T15:59:00.000Z"}}
RUN_COLUMNS = [
    "id",
    "kind",
    "started_at",
    "finished_at",
    "ok",
    "error",
    "workspaces",
    "windows",
    "inserted",
    "updated",
    "unchanged",
    "tombstoned",
    "revived",
    "requests",
    "rate_limited",
]
WORKSPACE_KEYS = [
    "id",
    "name",
    "live_entries",
    "tombstoned_entries",
    "quarantined_entries",
    "last_scan_at",
    "backfill_complete",
    "backfill_before",
    "oldest_date",
    "reconcile_before",
    "last_hot_scan_at",
    "last_reconcile_at",
    "freshness_lag_seconds",
    "verified_age_seconds",
]


@pytest.fixture
def mirror(tmp_path: Path):
    """A mirror the daemon has run on: entries, a run, a delivery, the plan, a heartbeat,
    a subscription (its URL still holding the token, as older versions stored it) and the
    engine's freshness."""
    db = tmp_path / "mirror.sqlite"
    text = f'[api]\nkey = "k"\n[database]\npath = "{db}"\n'
    (tmp_path / "config.toml").write_text(text)
    config = parse_config(text, base_dir=tmp_path, env={})
    store = Store(db)
    store.upsert_workspaces(
        [Workspace("ws-1", "Main"), Workspace("ws-2", "Side")], ts("2024-03-01")
    )
    state = WorkspaceState("ws-1", backfill_complete=True, oldest_date="2024-03-04")
    store.apply_window(window([entry("a"), entry("b")], "2024-03-01", "2024-03-31", state=state))
    store.apply_window(
        window([entry("a")], "2024-03-01", "2024-03-31", scanned_at=ts("2024-06-02"))
    )
    run = store.start_run("poll", ts("2024-06-02"))
    store.finish_run(
        run,
        RunReport(
            kind="poll",
            started_at=ts("2024-06-02"),
            finished_at=ts("2024-06-02", 10),
            outcome=WindowOutcome(inserted=2, tombstoned=1),
            requests=3,
            ok=True,
        ),
    )
    event = WebhookEvent(EventKind.TIMER_STARTED, "e-9", "ws-1", ts("2024-06-02"), "k1")
    store.record_webhook_event(event, ts("2024-06-02"))
    store.set_webhook_outcome("k1", "inserted")
    store.set_setting(PLAN_SETTING, json.dumps(PLAN.as_dict()))
    beat = Heartbeat(pid=42, started_at=ts("2024-06-01"), seen_at=ts("2024-06-02"), running=True)
    store.set_setting(HEARTBEAT_SETTING, replace(beat, jobs=JOBS).to_json())
    hook = {
        "id": "wh_1",
        "url": f"https://sync.example/hooks/{TOKEN}",
        "status": "ACTIVE",
        "events": ["TIMER_STARTED", "TIMER_STOPPED"],
        "secret_verifier": None,
        "checked_at": ts("2024-06-02"),
    }
    store.set_setting(SUBSCRIPTION_SETTING, json.dumps(hook))
    store.set_setting(
        FRESHNESS_SETTING, json.dumps({"ws-1": {"hot": ts("2024-06-02"), "warm": None}})
    )
    yield tmp_path / "config.toml", config, store
    store.close()


def test_status_json_is_the_document_it_always_was(mirror) -> None:
    path, _config, _store = mirror
    result = CliRunner().invoke(cli, ["-c", str(path), "status", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert list(data) == [
        "workspaces",
        "last_run",
        "webhook_events",
        "last_webhook_at",
        "quarantined_entries",
        "budget",
        "plan",
        "webhook_subscription",
        "daemon",
        "upstream_reading",
        "sharing",
    ]
    main, side = data["workspaces"]
    assert list(main) == WORKSPACE_KEYS
    assert (main["name"], main["live_entries"], main["tombstoned_entries"]) == ("Main", 1, 1)
    assert (main["backfill_complete"], main["oldest_date"]) == (True, "2024-03-04")
    assert main["last_scan_at"] == ts("2024-06-02")
    assert main["freshness_lag_seconds"] > 0  # no hot scan: the last scan of any kind
    assert set(main["verified_age_seconds"]) == {"hot", "warm"}
    assert main["verified_age_seconds"]["warm"] is None
    assert (side["name"], side["freshness_lag_seconds"], side["verified_age_seconds"]) == (
        "Side",
        None,
        {},
    )
    assert list(data["last_run"]) == RUN_COLUMNS
    assert data["last_run"]["ok"] is True  # a boolean, as the column is
    assert data["last_run"]["tombstoned"] == 1
    assert data["webhook_events"] == {"inserted": 1}
    assert data["last_webhook_at"] == ts("2024-06-02")
    assert data["quarantined_entries"] == 0
    assert list(data["budget"]) == [
        "used_this_minute",
        "used_today",
        "per_day",
        "remaining",
        "not_before",
    ]
    assert data["budget"]["per_day"] == 9000  # 10,000 less the 10 % margin
    assert list(data["budget"]["remaining"]) == ["second", "minute", "day"]
    assert data["plan"] == PLAN.as_dict()  # exactly as the daemon stored it
    subscription = data["webhook_subscription"]
    assert TOKEN not in result.output
    assert subscription["url"] == "https://sync.example/hooks/<token>"
    assert subscription["events"] == ["TIMER_STARTED", "TIMER_STOPPED"]
    assert data["daemon"] == {
        "pid": 42,
        "started_at": ts("2024-06-01"),
        "seen_at": ts("2024-06-02"),
        "running": True,
        "jobs": JOBS,
    }
    assert data["upstream_reading"] == WindowReading().describe()
    assert data == json.loads(json.dumps(MirrorStatus.from_json(data).as_json()))


def test_the_typed_status_reads_back_from_its_json(mirror) -> None:
    _path, config, store = mirror
    status = describe_status(config, store)
    assert MirrorStatus.from_json(status.as_json()) == status
    assert status.plan is not None
    assert status.plan.tiers["warm"].period_seconds == 3600
    assert status.daemon is not None
    assert status.daemon.jobs == JOBS
    assert status.webhook_subscription is not None
    assert TOKEN not in (status.webhook_subscription.url or "")
    (main, _side) = status.workspaces
    assert main.progress.backfill_complete is True


def test_freshness_is_measured_from_the_hot_scan_and_ages_per_tier() -> None:
    pushed = "2026-12-04T15:59:00.000Z"  # a push re-scan of one day, a minute ago
    counts = MirrorCounts(
        workspaces=(
            WorkspaceCounts(
                "ws-1",
                "Main",
                5,
                0,
                0,
                pushed,
                WorkspaceState("ws-1", last_hot_scan_at="2026-12-04T15:50:00.000Z"),
            ),
            WorkspaceCounts(
                "ws-2", None, 0, 0, 0, "2026-12-04T15:00:00.000Z", WorkspaceState("ws-2")
            ),
            WorkspaceCounts("ws-3", "New", 0, 0, 0, None, WorkspaceState("ws-3")),
        )
    )
    verified = verified_times(
        json.dumps({"ws-1": {"hot": "2026-12-04T15:50:00.000Z", "cold": None}})
    )
    status = mirror_status(
        counts,
        now=NOW,
        verified=verified,
        budget=None,
        plan=None,
        heartbeat=None,
        subscription=None,
        reading=WindowReading(),
    )
    one, two, three = status.workspaces
    assert one.freshness_lag_seconds == 600  # the hot window, not the push re-scan
    assert one.verified_age_seconds == {"hot": 600, "cold": None}
    assert two.freshness_lag_seconds == 3600  # no hot scan yet: the last scan of any kind
    assert three.freshness_lag_seconds is None
    document = status.as_json()
    assert document["budget"] == {}  # no API key
    assert (document["plan"], document["daemon"], document["webhook_subscription"]) == (
        None,
        None,
        None,
    )


def test_stored_settings_are_read_into_their_types() -> None:
    plan = make_plan(
        workspaces=3, interval_seconds=60, history_days=365, warm_days=56, push_reserve=7990
    )
    assert plan.warnings
    assert len(plan.tiers) == 3
    stored = json.dumps(plan.as_dict())
    assert DaemonPlan.from_json(stored).as_json() == plan.as_dict()  # type: ignore[union-attr]
    assert DaemonPlan.from_json(stored).tier_periods() == {  # type: ignore[union-attr]
        t.name: t.period_seconds for t in plan.tiers
    }
    beat = Heartbeat(pid=7, started_at=None, seen_at=ts("2024-06-02"), running=False)
    assert "jobs" not in json.loads(beat.to_json())  # written before the scheduler existed
    assert Heartbeat.from_json(beat.to_json()) == beat
    hook = Subscription.from_json(json.dumps({"id": "wh_1", "url": f"https://x/hooks/{TOKEN}"}))
    assert hook == Subscription(id="wh_1", url="https://x/hooks/<token>")
    for kind in (DaemonPlan, Heartbeat, Subscription):
        assert kind.from_json(None) is None
        assert kind.from_json("not json") is None
        assert kind.from_json("[1, 2]") is None


def test_status_text_reads_the_typed_status() -> None:
    """`syncd status` for people: one row per workspace, then budget, plan and webhook."""
    from syncd.cli import print_status

    status = MirrorStatus(
        workspaces=(
            WorkspaceStatus(
                "ws-1",
                "Acme",
                WorkspaceState("ws-1", backfill_complete=True),
                live_entries=1200,
                tombstoned_entries=3,
                last_scan_at="2026-11-27T10:00:00.000Z",
                freshness_lag_seconds=42,
            ),
            WorkspaceStatus("ws-2", "Globex", WorkspaceState("ws-2", backfill_before="2025-03-01")),
        ),
        budget=BudgetStatus(used_today=812, per_day=9000, used_this_minute=4),
        plan=DaemonPlan(
            poll_interval_seconds=900.0,
            reconcile_interval_seconds=3600.0,
            planned_per_day=940.3,
            daemon_budget=7200,
            warnings=("reserves use the whole daemon budget",),
        ),
        webhook_subscription=Subscription(id="wh_1", status="ACTIVE", checked_at="t"),
        webhook_events={"inserted": 5, "duplicate": 2},
        last_run=RunRecord(id=1, kind="poll", started_at="t", ok=False, error="ServerError: 503"),
    )
    out = io.StringIO()
    print_status(status, out)
    text = out.getvalue()
    for expected in (
        "Acme",
        "1,200",
        "42 s",
        "done",
        "at 2025-03-01",
        "812 of 9,000",
        "poll every 15 min",
        "reserves use the whole daemon budget",
        "ACTIVE wh_1",
        "duplicate 2",
        "FAILED",
        "ServerError: 503",
    ):
        assert expected in text, expected
    document = io.StringIO()
    print_status(MirrorStatus.from_json(status.as_json()), document)  # read back from --json
    assert document.getvalue() == text


def test_a_failing_typed_read_is_a_store_error(tmp_path: Path) -> None:
    db = tmp_path / "mirror.sqlite"
    Store(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE sync_runs")
    with pytest.raises(StoreError, match="sync_runs"), Store(db, migrate=False) as store:
        store.status()


def test_ages_are_whole_seconds_from_now() -> None:
    at = NOW - timedelta(seconds=90.6)
    counts = MirrorCounts(
        workspaces=(
            WorkspaceCounts(
                "ws-1",
                "Main",
                0,
                0,
                0,
                None,
                WorkspaceState("ws-1", last_hot_scan_at=at.isoformat().replace("+00:00", "Z")),
            ),
        )
    )
    status = mirror_status(
        counts,
        now=NOW,
        verified={"ws-1": {"hot": at}},
        budget=None,
        plan=None,
        heartbeat=None,
        subscription=None,
        reading=WindowReading(),
    )
    assert status.workspaces[0].freshness_lag_seconds == 91
    assert status.workspaces[0].verified_age_seconds == {"hot": 91}
