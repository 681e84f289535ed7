"""The daemon prunes the webhook ledger and tombstones older than ``[retention]`` at start
(then once a day), and keeps everything younger."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from syncd.records import format_timestamp
from syncd.store import Store


def ago(days: int) -> str:
    return format_timestamp(datetime.now(UTC) - timedelta(days=days))


def test_the_daemon_prunes_old_ledger_rows_and_tombstones(emulator_factory, daemon_factory):
    emu = emulator_factory(entries=50, days=10)
    daemon = daemon_factory(
        emu, overrides={"retention": {"webhook_events_days": 30, "tombstones_days": 60}}
    )
    Store(daemon.db_path).close()
    # Rows of a workspace the key no longer sees, so no scan touches them.
    with sqlite3.connect(daemon.db_path) as conn:
        conn.execute("INSERT INTO workspaces (id, name) VALUES ('ws-gone', 'Gone')")
        for entry_id, deleted_at in (("t-old", ago(61)), ("t-recent", ago(59)), ("live", None)):
            conn.execute(
                "INSERT INTO time_entries (id, workspace_id, date, description, billable, "
                "manually_entered, synced_at, source, raw, deleted_at) "
                "VALUES (?, 'ws-gone', '2020-01-01', '', 0, 0, ?, 'poll', '{}', ?)",
                (entry_id, ago(400), deleted_at),
            )
        for key, received_at in (("h-old", ago(31)), ("h-recent", ago(29))):
            conn.execute(
                "INSERT INTO webhook_events (dedupe_key, kind, object_id, received_at) "
                "VALUES (?, 'TIMER_STOPPED', ?, ?)",
                (key, key, received_at),
            )

    daemon.start(wait_poll=False)
    daemon.wait_job("housekeeping", timeout=15)
    assert daemon.stop()[0] == 0
    ids = daemon.query("SELECT id FROM time_entries WHERE workspace_id = 'ws-gone' ORDER BY id")
    assert [r["id"] for r in ids] == ["live", "t-recent"]
    keys = daemon.query("SELECT dedupe_key FROM webhook_events ORDER BY dedupe_key")
    assert [r["dedupe_key"] for r in keys] == ["h-recent"]
    pruned = [e for e in daemon.log_events() if e["event"] == "retention_pruned"]
    assert [(e["webhook_events"], e["tombstones"]) for e in pruned] == [(1, 1)]
    assert daemon.setting("retention_pruned_at") is not None
