"""The pushes no scan has confirmed yet, as the engine's poll reads them (on both backends)."""

from __future__ import annotations

from syncd.records import EventKind, TimeEntry, WebhookEvent, Workspace
from syncd.store import Store

from .factory import FORCED, WS, entry, ts, window


def push(store: Store, what: TimeEntry, received_at: str) -> str:
    event = WebhookEvent(
        kind=EventKind.TIME_ENTRY_UPDATED,
        object_id=what.id,
        workspace_id=what.workspace_id,
        updated_at=what.updated_at,
        dedupe_key=f"k-{what.id}-{received_at}",
        entry=what,
    )
    return store.apply_push(event, received_at, what)


def test_unconfirmed_pushes_are_the_live_pushed_rows_no_scan_rewrote_earliest_first(
    mirror: Store,
) -> None:
    mirror.upsert_workspaces([Workspace(WS, "Main"), Workspace("ws-2", "Other")], ts("2024-01-01"))
    scanned = entry("scanned", day="2024-02-10")
    mirror.apply_window(window([scanned], "2024-02-10", "2024-02-10"), FORCED)
    late = entry("late", day="2024-03-01", created_at=ts("2024-05-20", 8))
    early = entry("early", day="2024-04-02")
    confirmed = entry("confirmed", day="2024-02-20")
    gone = entry("gone", day="2024-02-21")
    other = entry("other", ws="ws-2", day="2024-02-22")
    for what, hour in ((early, 1), (late, 2), (confirmed, 3), (gone, 4), (other, 5)):
        assert push(mirror, what, ts("2024-05-31", hour)) == "inserted"

    # A scan after the pushes confirms one and tombstones another.
    scan = window([confirmed], "2024-02-20", "2024-02-21", scanned_at=ts("2024-06-01"))
    outcome = mirror.apply_window(scan, FORCED)
    assert outcome.tombstoned == 1

    assert mirror.unconfirmed_push_days(WS, 10) == [
        ("2024-04-02", "2024-04-02"),
        ("2024-03-01", "2024-05-20"),
    ]
    assert mirror.unconfirmed_push_days(WS, 1) == [("2024-04-02", "2024-04-02")]
    assert mirror.unconfirmed_push_days("ws-2", 10) == [("2024-02-22", "2024-02-22")]
    assert mirror.unconfirmed_push_days("ws-none", 10) == []
