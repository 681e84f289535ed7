"""`syncd status` and `syncd report hours` as people read them: plain aligned text when piped,
human units, a workspace column when names repeat, weeks within the range, two decimals."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncd.cli.render import ago, count, duration, every, hours, status_text
from syncd.records import Source, TimeEntry, WindowScan, Workspace, WorkspaceState
from syncd.status import DaemonPlan, MirrorStatus, WorkspaceStatus
from syncd.store import Store
from syncd.store.status_reads import RunRecord

ACME = ("c-1", "Acme")


def entry(
    entry_id: str,
    *,
    day: str,
    seconds: int,
    client: tuple[str, str],
    ws: str = "ws-1",
    project: tuple[str, str] = ("p-1", "Apollo"),
) -> TimeEntry:
    end = datetime.fromisoformat(f"{day}T09:00:00") + timedelta(seconds=seconds)
    return TimeEntry(
        id=entry_id,
        workspace_id=ws,
        date=day,
        start_time=f"{day}T09:00:00.000Z",
        end_time=end.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        duration_seconds=seconds,
        description="",
        billable=False,
        manually_entered=False,
        team_member_id="m-1",
        team_member_name="Ann",
        project_id=project[0],
        project_name=project[1],
        client_id=client[0],
        client_name=client[1],
        task_id=None,
        task_name=None,
        created_at=f"{day}T09:00:00.000Z",
        updated_at=f"{day}T18:00:00.000Z",
        tags=(),
        raw=json.dumps({"id": entry_id}),
    )


def window(entries: list[TimeEntry], date_from: str, date_to: str, *, ws: str = "ws-1"):
    return WindowScan(
        workspace_id=ws,
        date_from=date_from,
        date_to=date_to,
        entries=tuple(entries),
        source=Source.POLL,
        scanned_at="2024-06-01T00:00:00.000Z",
    )


LONG = "Ministry of Extremely Long Workspace Names and Their Consequences (EMEA)"


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    """Two workspaces that both have a client called Acme, and a config without a key."""
    tmp = tmp_path_factory.mktemp("render")
    path = tmp / "mirror.sqlite"
    with Store(path) as store:
        store.upsert_workspaces(
            [Workspace("ws-1", "Main"), Workspace("ws-2", LONG)], "2024-03-10T00:00:00.000Z"
        )
        store.apply_window(
            window(
                [
                    entry("a", day="2024-03-04", seconds=5400, client=ACME),  # a Monday
                    entry("b", day="2024-03-06", seconds=1200, client=ACME),
                ],
                "2024-03-01",
                "2024-03-31",
            )
        )
        store.apply_window(
            window(
                [
                    entry(
                        "c",
                        ws="ws-2",
                        day="2024-03-06",
                        seconds=3600,
                        client=("c-9", "Acme"),
                        project=("p-9", "Hermes"),
                    )
                ],
                "2024-03-01",
                "2024-03-31",
                ws="ws-2",
            )
        )
    config = tmp / "syncd.toml"
    config.write_text(f'[database]\npath = "{path}"\n', encoding="utf-8")
    return config


def syncd(config: Path, *args: str) -> str:
    """Run syncd as a process with stdout to a pipe; returns stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "80"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.e2e
def test_report_by_client_names_the_workspace_when_a_name_repeats(config: Path) -> None:
    text = syncd(config, "report", "hours", "--by", "client", "--since", "2024-03-01")
    lines = text.splitlines()
    assert lines[0].split() == ["workspace", "client", "entries", "hours", "billable_hours"]
    assert lines[1].split() == ["Main", "Acme", "2", "1.83", "0.00"]
    assert lines[2] == f"{LONG}  Acme          1   1.00            0.00"  # never clipped
    assert len(lines[2]) > 80


@pytest.mark.e2e
def test_report_without_repeated_names_has_no_workspace_column(config: Path) -> None:
    text = syncd(config, "report", "hours", "--by", "project", "--since", "2024-03-01")
    assert text.splitlines()[0].split() == [
        "project",
        "client",
        "entries",
        "hours",
        "billable_hours",
    ]
    assert "Apollo" in text
    assert "Hermes" in text
    assert "ws-" not in text


@pytest.mark.e2e
def test_weeks_are_labelled_within_the_range_with_two_decimals(config: Path) -> None:
    text = syncd(config, "report", "hours", "--by", "week", "--since", "2024-03-05")
    # The week of Monday 2024-03-04 starts before --since: it is labelled by --since.
    assert text.splitlines()[1].split() == ["2024-03-05", "2", "1.33", "0.00"]
    rows = json.loads(
        syncd(config, "report", "hours", "--by", "week", "--since", "2024-03-05", "--json")
    )
    assert rows == [
        {"week_start": "2024-03-05", "entries": 2, "hours": 1.33, "billable_hours": 0.0}
    ]


@pytest.mark.e2e
def test_status_piped_is_plain_text_in_human_units(config: Path) -> None:
    text = syncd(config, "status")
    assert "━" not in text
    assert "│" not in text
    assert LONG in text  # never clipped to the 80 columns of COLUMNS
    assert "webhook subscription: none" in text
    data = json.loads(syncd(config, "status", "--json"))
    assert {ws["name"] for ws in data["workspaces"]} == {"Main", LONG}


def test_status_text_shows_lag_rates_and_sweep_progress_in_words() -> None:
    now = datetime(2026, 12, 4, 16, 9, 19, tzinfo=UTC)
    data = MirrorStatus(
        workspaces=(
            WorkspaceStatus(
                id="ws-1",
                name="Acme",
                progress=WorkspaceState(
                    "ws-1",
                    backfill_complete=True,
                    oldest_date="2025-12-04",
                    reconcile_before="2026-06-04",
                ),
                live_entries=29280,
                tombstoned_entries=3,
                freshness_lag_seconds=147,
            ),
        ),
        plan=DaemonPlan(
            poll_interval_seconds=300.0,
            reconcile_interval_seconds=11630.0,
            planned_per_day=7123.3,
            daemon_budget=9000,
        ),
        last_run=RunRecord(
            id=1, kind="poll", ok=True, started_at="", finished_at="2026-12-04T16:05:19.000Z"
        ),
    )
    columns, rows, lines = status_text(data, now=now)
    row = dict(zip(columns, rows[0], strict=True))
    assert row["live"] == "29,280"
    assert row["fresh"] == "verified 2 min 27 s ago"
    assert row["history"] == "done, from 2025-12-04"
    assert row["sweep"] == "50 % of history, at 2026-06-04"  # 183 of 365 days re-verified
    assert "poll every 5 min, reconcile every 3 h 13 min, about 7,123 requests/day" in lines
    assert "last run: poll ok, 2026-12-04 16:05 UTC (4 min ago)" in lines


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (duration(23), "23 s"),
        (duration(240), "4 min"),
        (duration(11_640), "3 h 14 min"),
        (duration(3 * 86400 + 7200), "3 d 2 h"),
        (ago(240.4), "4 min ago"),
        (ago(0.2), "just now"),
        (every(11_640), "every 3 h 14 min"),
        (count(7123.3, "requests/day"), "7,123 requests/day"),
        (hours(2.5), "2.50"),
        (hours(1234.567), "1,234.57"),
    ],
)
def test_human_units(text: str, expected: str) -> None:
    assert text == expected
