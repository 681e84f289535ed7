"""A push as one store call: the ledger row, the entry and the outcome in one transaction
(on both backends)."""

from __future__ import annotations

import pytest

from syncd.errors import StoreError
from syncd.records import EventKind, Source, TimeEntry, WebhookEvent, Workspace
from syncd.store import AsyncStore, Store

from .backends import failing_inserts, rows
from .factory import WS, entry, ts


@pytest.fixture
def store(mirror: Store) -> Store:
    """Every test here runs on both backends."""
    return mirror


@pytest.fixture
def db_path(mirror_location: str) -> str:
    return mirror_location


def pushed(key: str, what: TimeEntry | None = None) -> WebhookEvent:
    return WebhookEvent(
        kind=EventKind.TIMER_STOPPED if what else EventKind.TIME_ENTRY_DELETED,
        object_id=what.id if what else "gone",
        workspace_id=WS,
        updated_at=what.updated_at if what else None,
        dedupe_key=key,
        delivery_id=f"d-{key}",
        entry=what,
    )


def ledger(db_path) -> list[tuple]:
    return rows(db_path, "SELECT dedupe_key, outcome FROM webhook_events ORDER BY dedupe_key")


def test_a_push_is_ledgered_applied_and_its_outcome_recorded(store: Store, db_path) -> None:
    store.upsert_workspaces([Workspace(WS, "Main")], ts("2024-03-01"))
    e = entry("e", updated_at=ts("2024-03-04", 10))
    assert store.apply_push(pushed("k1", e), ts("2024-03-04", 11), e) == "inserted"
    assert store.apply_push(pushed("k1", e), ts("2024-03-04", 12), e) == "duplicate"
    assert store.apply_push(pushed("k2", e), ts("2024-03-04", 12), e) == "stale"
    assert store.apply_push(pushed("k3"), ts("2024-03-04", 13), outcome="refused") == "refused"
    assert ledger(db_path) == [("k1", "inserted"), ("k2", "stale"), ("k3", "refused")]
    [row] = store.mirror_snapshot(WS)
    assert row["id"] == "e"


def test_a_push_for_a_workspace_not_mirrored_is_ledgered_as_ignored(store: Store, db_path) -> None:
    e = entry("e")
    assert store.apply_push(pushed("k1", e), ts("2024-03-04"), e) == "ignored"
    assert ledger(db_path) == [("k1", "ignored")]
    assert store.mirror_snapshot(WS) == []


def test_a_push_that_fails_leaves_no_ledger_row_so_a_redelivery_applies(
    store: Store, db_path
) -> None:
    store.upsert_workspaces([Workspace(WS, "Main")], ts("2024-03-01"))
    e = entry("e", description="boom")
    with failing_inserts(db_path, "time_entries", "boom", when="NEW.description = 'boom'"):
        with pytest.raises(StoreError, match="boom"):
            store.apply_push(pushed("k1", e), ts("2024-03-04"), e)
        assert ledger(db_path) == []
    assert store.apply_push(pushed("k1", e), ts("2024-03-05"), e) == "inserted"
    assert ledger(db_path) == [("k1", "inserted")]


async def test_the_async_store_applies_a_push_in_one_call(db_path) -> None:
    async with await AsyncStore.open(db_path) as store:
        await store.upsert_workspaces([Workspace(WS, "Main")], ts("2024-03-01"))
        e = entry("e")
        assert await store.apply_push(pushed("k1", e), ts("2024-03-04"), e) == "inserted"
        assert await store.apply_push(pushed("k1", e), ts("2024-03-04"), e) == "duplicate"
    assert ledger(db_path) == [("k1", "inserted")]
    assert rows(db_path, "SELECT source FROM time_entries") == [(Source.WEBHOOK,)]


def test_a_nul_in_a_deliverys_text_is_ledgered_not_a_failure(store: Store, db_path) -> None:
    """Hostile text with a NUL character (PostgreSQL's text cannot hold one) is ledgered like
    any other delivery, accepted or refused, on both backends."""
    event = WebhookEvent(
        kind=EventKind.TIME_ENTRY_DELETED,
        object_id="te\x00evil",
        workspace_id=WS + "\x00",
        updated_at=None,
        dedupe_key="nul\x00key",
        delivery_id="d\x00",
    )
    assert store.apply_push(event, ts("2024-06-01"), None, outcome="refused") == "refused"
    assert store.apply_push(event, ts("2024-06-01"), None, outcome="refused") == "duplicate"
    assert store.record_refused_webhook(
        dedupe_key="refused:nul",
        kind="UNKNOWN",
        object_id="x\x00",
        workspace_id=None,
        delivery_id=None,
        reason="not json",
        body='{"id": "\x00"}',
        body_bytes=13,
        received_at=ts("2024-06-01"),
    )
    assert len(ledger(db_path)) == 2
