"""Entry-tag links: kept by entry rowid, read through the ``time_entry_tags`` view."""

from __future__ import annotations

import sqlite3

from syncd.records import Ref
from syncd.seams import MassDeletePolicy
from syncd.store import Store
from syncd.store.migrations import MIGRATIONS, Migration

from .backends import rows
from .factory import entry, ts, window

RED, BLUE, GREEN = Ref("t-red", "red"), Ref("t-blue", "blue"), Ref("t-green", "green")


def links(db_path) -> list[tuple[str, str]]:
    return rows(db_path, "SELECT time_entry_id, tag_id FROM time_entry_tags ORDER BY 1, 2")


def test_links_follow_inserts_retags_and_revivals(mirror: Store) -> None:
    """On both backends."""
    store, db_path = mirror, mirror.location
    day = "2024-03-04"
    store.apply_window(window([entry("a", tags=(RED, BLUE)), entry("b", tags=(RED,))], day, day))
    assert links(db_path) == [("a", "t-blue"), ("a", "t-red"), ("b", "t-red")]

    retagged = entry("a", tags=(GREEN,), updated_at=ts(day, 20))
    store.apply_window(
        window([retagged, entry("b", tags=(RED,))], day, day, scanned_at=ts("2024-06-02"))
    )
    assert links(db_path) == [("a", "t-green"), ("b", "t-red")]

    # b disappears upstream (tombstoned, links kept), then comes back with other tags
    store.apply_window(
        window([retagged], day, day, scanned_at=ts("2024-06-03")), MassDeletePolicy(minimum=5)
    )
    back = entry("b", tags=(BLUE, GREEN), updated_at=ts(day, 21))
    store.apply_window(window([retagged, back], day, day, scanned_at=ts("2024-06-04")))
    assert links(db_path) == [("a", "t-green"), ("b", "t-blue"), ("b", "t-green")]
    assert [e["tags"] for e in store.mirror_snapshot("ws-1")] == [
        ["t-green"],
        ["t-blue", "t-green"],
    ]


def test_new_entries_take_rowids_after_every_stored_one(store: Store, db_path) -> None:
    store.apply_window(window([entry("z", tags=(RED,))], "2024-03-04", "2024-03-04"))
    store.apply_window(
        window([entry("a", day="2024-03-05", tags=(BLUE,))], "2024-03-05", "2024-03-05")
    )
    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute(
            "SELECT e.id, e.rowid, l.entry_rowid FROM time_entries AS e "
            "JOIN time_entry_tag_links AS l ON l.entry_rowid = e.rowid ORDER BY e.rowid"
        ).fetchall()
    finally:
        conn.close()
    assert [(i, r) for i, r, _ in rows] == [("z", 1), ("a", 2)]


def test_migration_moves_existing_links(db_path) -> None:
    """A mirror written before links were kept by rowid keeps every link, and the view
    answers the old queries unchanged."""
    before = [m for m in MIGRATIONS if m.name < "0007"]
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    for step in before:
        for sql in step.statements:
            conn.execute(sql)
        conn.execute(
            "INSERT INTO schema_migrations VALUES (?, '2024-01-01T00:00:00.000Z')", (step.name,)
        )
    conn.execute("INSERT INTO workspaces (id, name, synced_at) VALUES ('ws-1', 'W', NULL)")
    conn.execute("INSERT INTO tags (id, workspace_id, name) VALUES ('t-red', 'ws-1', 'red')")
    for entry_id in ("x", "y"):
        conn.execute(
            "INSERT INTO time_entries (id, workspace_id, date, synced_at, source) "
            "VALUES (?, 'ws-1', '2024-03-04', '2024-06-01T00:00:00.000Z', 'backfill')",
            (entry_id,),
        )
        conn.execute("INSERT INTO time_entry_tags VALUES (?, 't-red')", (entry_id,))
    conn.commit()
    conn.close()
    assert all(isinstance(m, Migration) and not m.function for m in before)

    with Store(db_path) as store:
        assert "0007_tag_links_by_entry_rowid" in store.applied_migrations()
        assert [e["tags"] for e in store.mirror_snapshot("ws-1")] == [["t-red"], ["t-red"]]
    assert links(db_path) == [("x", "t-red"), ("y", "t-red")]
