"""Housekeeping on both backends: settings rewritten in one transaction, pruning by row
number."""

from __future__ import annotations

from syncd.records import EventKind, WebhookEvent
from syncd.store import Store
from syncd.store.housekeeping import delete_expired, expired_rows, last_rowid, rewrite_settings

from .backends import rows
from .factory import entry, ts, window


def test_settings_are_rewritten_and_removed(mirror: Store) -> None:
    mirror.set_setting("webhook_token", "old")
    mirror.set_setting("subscription", "s-1")
    rewrite_settings(mirror, {"webhook_token": None, "subscription": "s-2", "new": "n"})
    assert rows(mirror.location, "SELECT key, value FROM installation ORDER BY key") == [
        ("new", "n"),
        ("subscription", "s-2"),
    ]


def test_expired_rows_are_found_by_row_number_and_deleted(mirror: Store) -> None:
    for n, day in enumerate(("2024-01-01", "2024-05-01")):
        mirror.record_webhook_event(
            WebhookEvent(EventKind.TIMER_STOPPED, f"o{n}", "ws-1", None, f"k{n}"), ts(day)
        )
    mirror.apply_window(window([entry("a"), entry("b")], "2024-03-01", "2024-03-31"))
    mirror.apply_window(
        window([entry("b")], "2024-03-01", "2024-03-31", scanned_at=ts("2024-06-02"))
    )
    assert last_rowid(mirror, "webhook_events") == 2
    assert last_rowid(mirror, "tombstones") == 2
    old = expired_rows(mirror, "webhook_events", ts("2024-03-01"), 1, 2)
    assert old == [1]
    assert delete_expired(mirror, "webhook_events", old, ts("2024-03-01")) == 1
    gone = expired_rows(mirror, "tombstones", ts("2024-07-01"), 1, 2)
    assert gone == [1]
    assert delete_expired(mirror, "tombstones", gone, ts("2024-07-01")) == 1
    assert rows(mirror.location, "SELECT id FROM time_entries") == [("b",)]
    assert rows(mirror.location, "SELECT dedupe_key FROM webhook_events") == [("k1",)]
