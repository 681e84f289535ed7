"""Retention: the webhook ledger and old tombstones are pruned once a day, nothing younger (on
both backends)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from syncd.config import RetentionConfig
from syncd.daemon.runner import RETENTION_SETTING, prune_if_due
from syncd.records import EventKind, Ref, WebhookEvent, format_timestamp
from syncd.store import AsyncStore

from .backends import rows
from .factory import entry, window

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def ago(days: float) -> str:
    return format_timestamp(NOW - timedelta(days=days))


def event(key: str) -> WebhookEvent:
    return WebhookEvent(
        kind=EventKind.TIMER_STOPPED,
        object_id=key,
        workspace_id="ws-1",
        updated_at=None,
        dedupe_key=key,
    )


async def fill(store: AsyncStore) -> None:
    """Ledger rows received 100 and 10 days ago; entries tombstoned 100 and 10 days ago, one
    live entry last touched long ago, all with a tag."""
    tag = (Ref("t-1", "urgent"),)
    old, recent, live = (entry(i, day="2025-01-06", tags=tag) for i in ("e-old", "e-new", "e-live"))
    await store.apply_window(
        window([old, recent, live], "2025-01-06", "2025-01-06", scanned_at=ago(200))
    )
    await store.apply_window(
        window([recent, live], "2025-01-06", "2025-01-06", scanned_at=ago(100))
    )
    await store.apply_window(window([live], "2025-01-06", "2025-01-06", scanned_at=ago(10)))
    await store.record_webhook_event(event("old"), ago(100))
    await store.record_webhook_event(event("recent"), ago(10))


async def test_old_ledger_rows_and_tombstones_go_live_entries_and_younger_rows_stay(
    mirror_location: str,
):
    path = mirror_location
    retention = RetentionConfig(webhook_events_days=30, tombstones_days=90)
    async with await AsyncStore.open(path) as store:
        await fill(store)
        assert rows(path, "SELECT id, deleted_at FROM time_entries ORDER BY id") == [
            ("e-live", None),
            ("e-new", ago(10)),
            ("e-old", ago(100)),
        ]

        assert await prune_if_due(store, retention, NOW) == {"webhook_events": 1, "tombstones": 1}
        assert rows(path, "SELECT dedupe_key FROM webhook_events") == [("recent",)]
        assert rows(path, "SELECT id FROM time_entries ORDER BY id") == [("e-live",), ("e-new",)]
        assert rows(path, "SELECT COUNT(*) FROM time_entry_tag_links") == [(2,)]  # of 3
        # The live entry still counts in the totals; the pruned tombstone never did.
        assert rows(path, "SELECT entries FROM daily_project_totals") == [(1,)]
        assert await store.get_setting(RETENTION_SETTING) == format_timestamp(NOW)

        # Once a day: an hour later nothing runs, a day later it runs again.
        assert await prune_if_due(store, retention, NOW + timedelta(hours=23)) is None
        later = NOW + timedelta(days=21)
        assert await prune_if_due(store, retention, later) == {
            "webhook_events": 1,
            "tombstones": 0,
        }
        assert rows(path, "SELECT COUNT(*) FROM webhook_events") == [(0,)]


async def test_zero_days_keeps_for_ever(mirror_location: str):
    path = mirror_location
    retention = RetentionConfig(webhook_events_days=0, tombstones_days=0)
    async with await AsyncStore.open(path) as store:
        await fill(store)
        assert await prune_if_due(store, retention, NOW + timedelta(days=3650)) == {}
        assert rows(path, "SELECT COUNT(*) FROM webhook_events") == [(2,)]
        assert rows(path, "SELECT COUNT(*) FROM time_entries") == [(3,)]
