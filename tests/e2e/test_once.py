"""``syncd --once`` against the emulator: first sync, convergence, the key, the guard.

Real processes, real sockets, a real SQLite file per test; the first sync, the convergence
and the mass-delete guard also on a PostgreSQL database of their own (``[database] url``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.emulator import EmulatorProcess
from tests.support.mirror import (
    BACKENDS,
    assert_mirror_equals_truth,
    description_bytes,
    mirror_entries,
    query,
    scalar,
)

from .harness import EXIT_FAILED, EXIT_OK, database_of, run_once, write_config

#: One run re-verifies all of history: every window is due within a day and, with no warm
#: tier beyond the hot window, the sweep walks all history in windows of up to 92 days.
FULL_SWEEP = {"reconcile_period_hours": 24, "warm_window_days": 3, "interval_seconds": 86400}

TRICKY_TEXT = [
    "Café crème – naïve façade",  # precomposed accents
    "Cafe\u0301 decomposed e\u0301",  # combining accents must stay decomposed (no NFC)
    "会議の準備 · 회의 준비 · 会议",  # CJK
    "🔥 deploy 👩\u200d💻 pairing 🇳🇴 flag",  # emoji, ZWJ sequence, regional indicators
    "עברית ومرحبا mixed RTL",  # right-to-left scripts
    "quotes \" ' and backslash \\ and tab\tend",
    "line\u2028separator and\nnewline",
    "",  # empty description
]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


def day_at(days_ago: int, hour: int = 9) -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago) + timedelta(hours=hour)


def member_of(emulator: EmulatorProcess, workspace_id: str, *, idle: bool = True) -> dict[str, Any]:
    (ws,) = [w for w in emulator.workspaces() if w["id"] == workspace_id]
    for member in ws["members"]:
        if not idle or member["running_entry_id"] is None:
            return member
    raise AssertionError("no idle member")


@pytest.mark.parametrize("backend", BACKENDS)
def test_first_once_equals_the_truth_field_by_field(tmp_path, start_emulator, database):
    """Rate limits on (real values): the first run mirrors every entry exactly, running
    timers with NULL end and duration, and unicode byte for byte."""
    emulator = start_emulator("--seed", "7", "--workspaces", "2", "--entries", "800")
    (ws, _) = emulator.workspace_ids()
    idle = member_of(emulator, ws)
    created = emulator.create(
        [
            {
                "workspace_id": ws,
                "team_member_id": idle["id"],
                "start_time": iso(day_at(10 + i)),
                "end_time": iso(day_at(10 + i, hour=11)),
                "description": text,
            }
            for i, text in enumerate(TRICKY_TEXT)
        ]
    )
    timer = emulator.start_timer(
        workspace_id=ws, team_member_id=idle["id"], description="⏱ läuft – 実行中 🚀"
    )
    config = write_config(tmp_path, emulator, database=database)

    run = run_once(config)

    assert run.returncode == EXIT_OK, run.explain()
    db = database_of(config)
    truth = assert_mirror_equals_truth(emulator, db)
    summary = run.summary
    assert summary["ok"] is True
    assert summary["inserted"] == len(truth) == 800 + len(TRICKY_TEXT) + 1
    assert summary["workspaces"] == 2
    assert summary["rate_limited"] == 0
    assert emulator.key_stats()["rate_limited"] == 0
    assert run.stderr == ""

    running = {e["id"] for e in truth.values() if e["end_time"] is None}
    assert timer["id"] in running
    assert len(running) >= 5  # two seeded per workspace, plus ours
    rows = query(
        db,
        "SELECT id FROM time_entries WHERE end_time IS NULL AND duration_seconds IS NULL "
        "AND deleted_at IS NULL",
    )
    assert {r["id"] for r in rows} == running
    assert {r["id"] for r in query(db, "SELECT id FROM running_timers")} == running

    # byte-exact: compare the UTF-8 bytes the database holds with what upstream sent
    for item in [*created, timer]:
        stored = description_bytes(db, item["id"])
        assert stored == item["description"].encode("utf-8"), item["description"]
    names = query(db, "SELECT DISTINCT team_member_name FROM time_entries")
    assert any(any(ord(ch) > 127 for ch in r[0]) for r in names)

    # nothing else got lost on the way: the workspaces and the raw JSON
    upstream = {w["id"]: w["name"] for w in emulator.workspaces()}
    mirrored = {r["id"]: r["name"] for r in query(db, "SELECT id, name FROM workspaces")}
    assert mirrored == upstream
    assert scalar(db, "SELECT count(*) FROM time_entries WHERE raw IS NULL OR raw = ''") == 0
    ok = query(db, "SELECT ok, error, requests, rate_limited FROM sync_runs")
    assert [tuple(r) for r in ok] == [(1, None, summary["requests"], 0)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_second_once_converges_after_silent_changes(tmp_path, start_emulator, database):
    """Silent edits, deletes, moves and new entries; the second run converges.

    The config (``FULL_SWEEP``) makes every window due at every run, so one run
    re-verifies all history; with the defaults an old-window change is found by the sweep
    within a day (within an hour in the last 62 days).
    """
    emulator = start_emulator(
        "--seed", "11", "--workspaces", "2", "--entries", "600", "--days", "200",
        "--no-rate-limit",
    )  # fmt: skip
    ws_a, ws_b = emulator.workspace_ids()
    config = write_config(tmp_path, emulator, database=database, sync=FULL_SWEEP)
    first = run_once(config)
    assert first.returncode == EXIT_OK, first.explain()
    db = database_of(config)
    before = assert_mirror_equals_truth(emulator, db)

    entries_a = sorted(
        (e for e in emulator.entries(ws_a) if e["end_time"] is not None), key=lambda e: e["date"]
    )
    old, older, recent = entries_a[20], entries_a[40], entries_a[-3]
    # 1. an old entry edited in place (only the reconciliation slice can see it)
    emulator.edit(old["id"], description="Überarbeitet ✏️ 改訂", billable=not old["billable"])
    # 2. a recent entry moved far into the past (leaves the hot window, lands in an old one)
    moved_start = day_at(170, hour=8)
    emulator.edit(
        recent["id"],
        date=iso(moved_start.replace(hour=0)),
        start_time=iso(moved_start),
        end_time=iso(moved_start + timedelta(minutes=95)),
    )
    # 3. an old entry moved into the hot window
    emulator.edit(
        older["id"],
        date=iso(day_at(1, hour=0)),
        start_time=iso(day_at(1, hour=10)),
        end_time=iso(day_at(1, hour=12)),
    )
    # 4. silent deletes, old and recent, in both workspaces
    deleted = [entries_a[5]["id"], entries_a[60]["id"], entries_a[-2]["id"]]
    deleted += [e["id"] for e in emulator.entries(ws_b)[10:13]]
    for entry_id in deleted:
        emulator.delete(entry_id)
    # 5. new entries, old and recent
    new = emulator.create(
        [
            {"workspace_id": ws_b, "start_time": iso(day_at(d)), "end_time": iso(day_at(d, 12)),
             "description": f"nachgetragen {d} 📝"}
            for d in (0, 2, 45, 150, 199)
        ]
    )  # fmt: skip
    # 6. a running timer stopped
    running = next(e for e in emulator.entries(ws_b) if e["end_time"] is None)
    emulator.stop_timer(workspace_id=ws_b, team_member_id=running["team_member_id"])

    second = run_once(config)

    assert second.returncode == EXIT_OK, second.explain()
    after = assert_mirror_equals_truth(emulator, db)
    summary = second.summary
    # The entry moved out of the hot window vanishes from the hot scan first (tombstoned)
    # and reappears in the older window later in the same run (revived).
    assert summary["tombstoned"] - summary["revived"] == len(deleted)
    assert summary["revived"] <= 1
    assert summary["inserted"] == len(new)
    assert summary["updated"] >= 3  # edited, moved into the hot window, stopped timer

    everything = mirror_entries(db, live=None)
    for entry_id in deleted:  # tombstoned, not removed
        assert everything[entry_id]["deleted_at"] is not None
    assert len(everything) == len(before) + len(new)
    moved = everything[recent["id"]]
    assert moved["date"] == moved_start.date().isoformat()
    assert moved["deleted_at"] is None
    assert after[old["id"]]["description"] == "Überarbeitet ✏️ 改訂"

    third = run_once(config)  # nothing changed upstream: nothing changes here
    assert third.returncode == EXIT_OK, third.explain()
    assert (third.summary["inserted"], third.summary["updated"]) == (0, 0)
    assert (third.summary["tombstoned"], third.summary["revived"]) == (0, 0)


def test_entry_moved_before_the_oldest_known_date_is_found(tmp_path, start_emulator):
    """An entry silently re-dated to before the oldest date the backfill found.

    The full-sweep config (see above) re-verifies the whole known history in one run; the
    moved entry must not end up tombstoned while it is live upstream.
    """
    emulator = start_emulator(
        "--seed", "5", "--workspaces", "1", "--entries", "200", "--days", "90",
        "--no-rate-limit",
    )  # fmt: skip
    (ws,) = emulator.workspace_ids()
    config = write_config(tmp_path, emulator, sync=FULL_SWEEP)
    assert run_once(config).returncode == EXIT_OK
    entry = next(e for e in emulator.entries(ws) if e["end_time"] is not None)
    start = day_at(400, hour=9)  # a year before the oldest seeded entry
    emulator.edit(
        entry["id"],
        date=iso(start.replace(hour=0)),
        start_time=iso(start),
        end_time=iso(start + timedelta(hours=1)),
    )

    second = run_once(config)

    assert second.returncode == EXIT_OK, second.explain()
    assert_mirror_equals_truth(emulator, database_of(config))


def test_wrong_api_key_exits_1_naming_the_key_problem(tmp_path, start_emulator):
    emulator = start_emulator("--workspaces", "1", "--entries", "20", "--no-rate-limit")
    secret = "tt_live_wrong_0123456789abcdef"
    config = write_config(tmp_path, emulator, key=secret)

    run = run_once(config)

    assert run.returncode == EXIT_FAILED, run.explain()
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("syncd: ")
    assert "API key" in lines[0]
    assert "401" in lines[0]
    assert secret not in run.stdout + run.stderr
    assert secret[-8:] not in run.stdout + run.stderr
    assert run.summary["ok"] is False
    db = database_of(config)
    assert scalar(db, "SELECT count(*) FROM time_entries") == 0
    assert [tuple(r) for r in query(db, "SELECT ok FROM sync_runs")] == [(0,)]
    assert secret not in db.read_bytes().decode("latin-1")


@pytest.mark.parametrize("backend", BACKENDS)
def test_mass_delete_guard_stops_the_run_until_force_delete(tmp_path, start_emulator, database):
    """Most of a workspace silently deleted (all of it older than the hot window): the run
    stops naming --force-delete and tombstones nothing; with --force-delete it applies.

    Full-sweep config (see above), so one run's reconciliation sees every deleted entry.
    """
    emulator = start_emulator(
        "--seed", "3", "--workspaces", "2", "--entries", "400", "--days", "120",
        "--no-rate-limit",
    )  # fmt: skip
    ws_a, ws_b = emulator.workspace_ids()
    config = write_config(tmp_path, emulator, database=database, sync=FULL_SWEEP)
    assert run_once(config).returncode == EXIT_OK
    db = database_of(config)
    entries = emulator.entries(ws_a)
    cold = day_at(7).date().isoformat()
    doomed = [e["id"] for e in entries if e["date"][:10] < cold][: int(len(entries) * 0.8)]
    for entry_id in doomed:
        emulator.delete(entry_id)

    stopped = run_once(config)

    assert stopped.returncode == EXIT_FAILED, stopped.explain()
    assert "--force-delete" in stopped.stderr
    assert len(stopped.stderr.splitlines()) == 1, stopped.stderr
    assert scalar(db, "SELECT count(*) FROM time_entries WHERE deleted_at IS NOT NULL") == 0
    assert scalar(db, "SELECT ok FROM sync_runs ORDER BY id DESC LIMIT 1") == 0

    forced = run_once(config, "--force-delete")

    assert forced.returncode == EXIT_OK, forced.explain()
    assert forced.summary["tombstoned"] == len(doomed)
    assert_mirror_equals_truth(emulator, db)
    assert set(mirror_entries(db, ws_a, live=False)) == set(doomed)
    assert mirror_entries(db, ws_b, live=False) == {}


def test_mass_delete_guard_holds_when_windows_are_small(tmp_path, start_emulator):
    """The same mass deletion when each window holds only a fraction of the workspace (as
    in any real workspace: windows of ~1,000 entries, workspaces of 20,000+).

    The guard must stop the run before the deletions pass the configured share of the
    workspace, whichever way they are split into windows.
    """
    emulator = start_emulator(
        "--seed", "3", "--workspaces", "1", "--entries", "400", "--days", "120",
        "--no-rate-limit",
    )  # fmt: skip
    (ws,) = emulator.workspace_ids()
    config = write_config(tmp_path, emulator, sync={**FULL_SWEEP, "window_target_entries": 60})
    assert run_once(config).returncode == EXIT_OK
    db = database_of(config)
    live_before = scalar(db, "SELECT count(*) FROM time_entries WHERE deleted_at IS NULL")
    entries = emulator.entries(ws)
    cold = day_at(7).date().isoformat()
    doomed = [e["id"] for e in entries if e["date"][:10] < cold][: int(len(entries) * 0.8)]
    for entry_id in doomed:
        emulator.delete(entry_id)

    stopped = run_once(config)

    tombstoned = scalar(db, "SELECT count(*) FROM time_entries WHERE deleted_at IS NOT NULL")
    assert stopped.returncode == EXIT_FAILED, (tombstoned, stopped.explain())
    assert "--force-delete" in stopped.stderr
    assert tombstoned <= 0.5 * live_before, f"{tombstoned} of {live_before} tombstoned"
