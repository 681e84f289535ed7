"""apply_window / apply_pushed_entry semantics on a real mirror, SQLite file and PostgreSQL
database alike."""

from __future__ import annotations

import pytest

from syncd.errors import MassDeleteError, StoreError
from syncd.records import Ref, Source, Workspace, WorkspaceState
from syncd.store import Store

from .backends import failing_inserts, rows
from .factory import FORCED, WS, entry, ts, window


@pytest.fixture
def store(mirror: Store) -> Store:
    """Every test here runs on both backends."""
    return mirror


@pytest.fixture
def db_path(mirror: Store) -> str:
    """Where the mirror is, for reading it behind the store's back."""
    return mirror.location


def live_ids(store: Store, ws: str = WS) -> set[str]:
    return {row["id"] for row in store.mirror_snapshot(ws)}


def raw_rows(db_path, sql: str, params=()) -> list[tuple]:
    return rows(db_path, sql, params)


def test_first_scan_inserts_and_repeat_is_unchanged(store: Store) -> None:
    entries = [entry(f"e{i}", day="2024-03-04") for i in range(5)]
    first = store.apply_window(window(entries, "2024-03-01", "2024-03-31"))
    again = store.apply_window(window(entries, "2024-03-01", "2024-03-31"))
    assert (first.inserted, first.updated, first.unchanged) == (5, 0, 0)
    assert (again.inserted, again.updated, again.unchanged, again.tombstoned) == (0, 0, 5, 0)
    assert live_ids(store) == {f"e{i}" for i in range(5)}


def test_updated_at_wins_whatever_the_order(store: Store) -> None:
    old = entry("e1", description="draft", updated_at=ts("2024-03-04", 10))
    new = entry("e1", description="final", updated_at=ts("2024-03-04", 12))
    store.apply_window(window([new], "2024-03-01", "2024-03-31"))
    out = store.apply_window(window([old], "2024-03-01", "2024-03-31"))
    assert out.unchanged == 1
    assert out.updated == 0
    assert store.mirror_snapshot(WS)[0]["description"] == "final"
    assert store.apply_pushed_entry(old, Source.WEBHOOK, ts("2024-03-05")) == "stale"
    newer = entry("e1", description="final v2", updated_at=ts("2024-03-04", 13))
    assert store.apply_pushed_entry(newer, Source.WEBHOOK, ts("2024-03-05")) == "updated"
    assert store.mirror_snapshot(WS)[0]["description"] == "final v2"


def test_same_updated_at_with_new_content_updates(store: Store) -> None:
    e = entry("e1", project=("p-1", "Apollo"))
    store.apply_window(window([e], "2024-03-01", "2024-03-31"))
    renamed = entry("e1", project=("p-1", "Apollo 2"))
    out = store.apply_window(window([renamed], "2024-03-01", "2024-03-31"))
    assert out.updated == 1
    assert raw_rows(store.location, "SELECT name FROM projects") == [("Apollo 2",)]


def test_tombstone_and_revive(store: Store, db_path) -> None:
    a, b = entry("a", day="2024-03-04"), entry("b", day="2024-03-05")
    store.apply_window(window([a, b], "2024-03-01", "2024-03-31"))
    out = store.apply_window(window([a], "2024-03-01", "2024-03-31", scanned_at=ts("2024-06-02")))
    assert out.tombstoned == 1
    assert raw_rows(db_path, "SELECT deleted_at FROM time_entries WHERE id='b'") == [
        (ts("2024-06-02"),)
    ]
    assert live_ids(store) == {"a"}
    out = store.apply_window(window([a, b], "2024-03-01", "2024-03-31"))
    assert out.revived == 1
    assert out.tombstoned == 0
    assert live_ids(store) == {"a", "b"}
    assert raw_rows(db_path, "SELECT count(*) FROM time_entries") == [(2,)]  # never hard-deleted


def test_entry_moved_to_another_window(store: Store) -> None:
    e = entry("e", day="2024-03-04")
    store.apply_window(window([e], "2024-03-01", "2024-03-31"))
    moved = entry("e", day="2024-04-10", updated_at=ts("2024-04-10", 20))
    # The old window is scanned first: the entry is gone from it -> tombstoned ...
    assert store.apply_window(window([], "2024-03-01", "2024-03-31")).tombstoned == 1
    # ... and the new window brings it back with its new date.
    assert store.apply_window(window([moved], "2024-04-01", "2024-04-30")).revived == 1
    [row] = store.mirror_snapshot(WS)
    assert row["date"] == "2024-04-10"
    # The other order: the new window first updates it, the old window then leaves it alone.
    back = entry("e", day="2024-03-20", updated_at=ts("2024-04-11", 9))
    assert store.apply_window(window([back], "2024-03-01", "2024-03-31")).updated == 1
    assert store.apply_window(window([], "2024-04-01", "2024-04-30")).tombstoned == 0
    assert live_ids(store) == {"e"}


def test_scan_only_tombstones_inside_its_window_and_workspace(store: Store) -> None:
    inside = entry("in", day="2024-03-04")
    outside = entry("out", day="2024-02-28")
    other_ws = entry("other", ws="ws-2", day="2024-03-04")
    store.apply_window(window([inside, outside], None, "2024-03-31"))
    store.apply_window(window([other_ws], None, "2024-03-31", ws="ws-2"))
    out = store.apply_window(window([], "2024-03-01", "2024-03-31"))
    assert out.tombstoned == 1
    assert live_ids(store) == {"out"}
    assert live_ids(store, "ws-2") == {"other"}
    # An open-ended window (date_from None) covers everything up to date_to.
    assert store.apply_window(window([], None, "2024-02-28")).tombstoned == 1


def test_mass_delete_guard_writes_nothing(store: Store, db_path) -> None:
    entries = [entry(f"e{i:02d}", day="2024-03-04") for i in range(20)]
    store.apply_window(window(entries, "2024-03-01", "2024-03-31"))
    before = raw_rows(db_path, "SELECT * FROM time_entries ORDER BY id")
    scans_before = raw_rows(db_path, "SELECT count(*) FROM window_scans")
    new = entry("new", day="2024-03-05")
    state = WorkspaceState(WS, backfill_before="2024-03-01")
    with pytest.raises(MassDeleteError) as info:
        store.apply_window(window([new], "2024-03-01", "2024-03-31", state=state))
    assert (info.value.would_delete, info.value.live) == (20, 20)
    assert raw_rows(db_path, "SELECT * FROM time_entries ORDER BY id") == before
    assert raw_rows(db_path, "SELECT count(*) FROM window_scans") == scans_before
    assert store.workspace_state(WS) == WorkspaceState(WS)
    forced = store.apply_window(window([new], "2024-03-01", "2024-03-31", state=state), FORCED)
    assert (forced.tombstoned, forced.inserted) == (20, 1)
    assert store.workspace_state(WS) == state


def test_guard_ignores_small_deletions(store: Store) -> None:
    entries = [entry(f"e{i}", day="2024-03-04") for i in range(4)]
    store.apply_window(window(entries, "2024-03-01", "2024-03-31"))
    # 3 of 4 is above the share but below mass_delete_min (10).
    assert store.apply_window(window(entries[:1], "2024-03-01", "2024-03-31")).tombstoned == 3


def test_failure_mid_window_writes_nothing(store: Store, db_path) -> None:
    entries = [entry(f"e{i:04d}", day="2024-03-04") for i in range(1200)]
    entries[900] = entry("e0900", day="2024-03-04", description="boom")
    with (
        failing_inserts(db_path, "time_entries", "boom", when="NEW.description = 'boom'"),
        pytest.raises(StoreError, match="boom"),
    ):
        store.apply_window(
            window(entries, "2024-03-01", "2024-03-31", state=WorkspaceState(WS, window_days=9))
        )
    tables = ["time_entries", "window_scans", "sync_state", "team_members", "workspaces"]
    if not store.is_postgres:  # PostgreSQL's search column lives in time_entries itself
        tables.append("time_entries_fts")
    for table in tables:
        assert raw_rows(db_path, f"SELECT count(*) FROM {table}") == [(0,)], table


def test_window_scan_row_and_state_are_recorded(store: Store, db_path) -> None:
    run_id = store.start_run("once", ts("2024-06-01"))
    state = WorkspaceState(WS, backfill_before="2024-03-01", window_days=31)
    scan = window([entry("a")], "2024-03-01", "2024-03-31", state=state)
    store.apply_window(
        type(scan)(**{**{f: getattr(scan, f) for f in scan.__slots__}, "run_id": run_id})
    )
    rows = raw_rows(
        db_path,
        "SELECT workspace_id, date_from, date_to, source, entries, inserted, run_id "
        "FROM window_scans",
    )
    assert rows == [(WS, "2024-03-01", "2024-03-31", "poll", 1, 1, run_id)]
    assert store.workspace_state(WS) == state


def test_running_timer_has_null_end_and_duration(store: Store, db_path) -> None:
    timer = entry("t", running=True)
    store.apply_window(window([timer], "2024-03-01", "2024-03-31"))
    assert raw_rows(db_path, "SELECT end_time, duration_seconds FROM time_entries") == [
        (None, None)
    ]
    assert store.running_entry_dates(WS) == ["2024-03-04"]
    stopped = entry("t", seconds=1800, updated_at=ts("2024-03-04", 20))
    assert store.apply_pushed_entry(stopped, Source.WEBHOOK, ts("2024-03-04", 20)) == "updated"
    assert store.running_entry_dates(WS) == []


def test_unicode_round_trip(store: Store, db_path) -> None:
    text = "Réunion café — 東京 ✈️ naïve Ωmega \u0000end"
    e = entry("u", description=text, member=("m", "Zoë Ümlaut"), tags=(Ref("t", "Ärger", "#f00"),))
    store.apply_window(window([e], "2024-03-01", "2024-03-31"))
    [row] = store.mirror_snapshot(WS)
    # PostgreSQL's text cannot hold a NUL character: it is taken out there.
    assert row["description"] == (text.replace("\u0000", "") if store.is_postgres else text)
    assert row["team_member_name"] == "Zoë Ümlaut"
    assert raw_rows(db_path, "SELECT raw FROM time_entries") == [(e.raw,)]
    again = store.apply_window(window([e], "2024-03-01", "2024-03-31"))
    assert (again.unchanged, again.updated) == (1, 0)
    assert raw_rows(db_path, "SELECT name FROM tags") == [("Ärger",)]


def test_tags_and_references(store: Store, db_path) -> None:
    e = entry("e", task=("k-1", "Design"), tags=(Ref("t1", "red"), Ref("t2", "blue")))
    store.apply_window(window([e], "2024-03-01", "2024-03-31"))
    assert store.mirror_snapshot(WS)[0]["tags"] == ["t1", "t2"]
    retagged = entry(
        "e", task=("k-1", "Design"), tags=(Ref("t2", "blue"),), updated_at=ts("2024-03-05")
    )
    assert store.apply_window(window([retagged], "2024-03-01", "2024-03-31")).updated == 1
    assert store.mirror_snapshot(WS)[0]["tags"] == ["t2"]
    assert raw_rows(db_path, "SELECT id, project_id, name FROM tasks") == [("k-1", "p-1", "Design")]
    assert raw_rows(db_path, "SELECT id, client_id FROM projects") == [("p-1", "c-1")]
    unnamed = entry(
        "f", project=("p-1", None), client=("c-2", "Globex"), updated_at=ts("2024-03-05")
    )
    store.apply_window(window([retagged, unnamed], "2024-03-01", "2024-03-31"))
    assert raw_rows(db_path, "SELECT name FROM projects") == [("Apollo",)]  # NULL keeps it
    assert raw_rows(db_path, "SELECT id, name FROM clients ORDER BY id") == [
        ("c-1", "Acme"),
        ("c-2", "Globex"),
    ]


def test_push_for_a_workspace_not_mirrored_writes_nothing(store: Store) -> None:
    assert store.apply_pushed_entry(entry("e"), Source.WEBHOOK, ts("2024-03-04")) == "ignored"
    assert live_ids(store) == set()
    assert store.status().workspaces == ()


def test_push_rules(store: Store) -> None:
    store.upsert_workspaces([Workspace(WS, "Main")], ts("2024-03-01"))
    v1 = entry("e", updated_at=ts("2024-03-04", 10))
    assert store.apply_pushed_entry(v1, Source.WEBHOOK, ts("2024-03-04", 10)) == "inserted"
    assert store.apply_pushed_entry(v1, Source.WEBHOOK, ts("2024-03-04", 10)) == "stale"
    # A scan at 12:00 finds it gone.
    store.apply_window(window([], "2024-03-01", "2024-03-31", scanned_at=ts("2024-03-04", 12)))
    # A delayed push of a version from before that scan must not resurrect it ...
    v2 = entry("e", description="x", updated_at=ts("2024-03-04", 11))
    assert store.apply_pushed_entry(v2, Source.WEBHOOK, ts("2024-03-04", 13)) == "stale"
    assert live_ids(store) == set()
    # ... a version written after the scan does.
    v3 = entry("e", description="y", updated_at=ts("2024-03-04", 14))
    assert store.apply_pushed_entry(v3, Source.WEBHOOK, ts("2024-03-04", 14)) == "revived"
    assert live_ids(store) == {"e"}
    assert store.tombstone_entry("e", ts("2024-03-04", 15)) is True
    assert store.tombstone_entry("e", ts("2024-03-04", 16)) is False
    assert store.tombstone_entry("unknown", ts("2024-03-04", 16)) is False


def test_workspaces_state_settings_and_status(store: Store) -> None:
    store.upsert_workspaces(
        [Workspace("ws-1", "Main"), Workspace("ws-2", "Side")], ts("2024-06-01")
    )
    store.upsert_workspaces([Workspace("ws-1", "Main renamed")], ts("2024-06-02"))
    store.apply_window(window([entry("a"), entry("b")], "2024-03-01", "2024-03-31"))
    store.apply_window(
        window([entry("a")], "2024-03-01", "2024-03-31", scanned_at=ts("2024-06-03"))
    )
    store.save_state(
        WorkspaceState("ws-1", backfill_complete=True, last_hot_scan_at=ts("2024-06-03"))
    )
    assert store.oldest_entry_date("ws-1") == "2024-03-04"
    assert store.oldest_entry_date("ws-2") is None
    assert store.count_live_entries("ws-1") == 1
    assert store.count_live_entries("ws-1", "2024-03-05", None) == 0
    assert store.get_setting("webhook_token") is None
    store.set_setting("webhook_token", "abc")
    store.set_setting("webhook_token", "def")
    assert store.get_setting("webhook_token") == "def"
    store.set_setting("webhook_token", None)
    assert store.get_setting("webhook_token") is None
    run_id = store.start_run("once", ts("2024-06-03"))
    status = store.status()
    ws1 = next(w for w in status.workspaces if w.id == "ws-1")
    assert ws1.name == "Main renamed"
    assert (ws1.live_entries, ws1.tombstoned_entries) == (1, 1)
    assert ws1.last_scan_at == ts("2024-06-03")
    assert ws1.progress.backfill_complete is True
    assert status.last_run is not None
    assert status.last_run.id == run_id
    assert status.last_run.finished_at is None
