"""Webhook ledger and runs (on both backends), migrations ledger and SchemaTooNew."""

from __future__ import annotations

import sqlite3

import pytest

from syncd.errors import SchemaTooNew, StoreError
from syncd.records import EventKind, RunReport, WebhookEvent, WindowOutcome
from syncd.store import Store
from syncd.store.migrations import MIGRATIONS

from .factory import ts


def event(key: str, outcome_id: str = "e1") -> WebhookEvent:
    return WebhookEvent(
        kind=EventKind.TIMER_STOPPED,
        object_id=outcome_id,
        workspace_id="ws-1",
        updated_at=ts("2024-03-04"),
        dedupe_key=key,
        delivery_id="d-1",
    )


def test_webhook_ledger_dedupes(mirror: Store) -> None:
    assert mirror.record_webhook_event(event("k1"), ts("2024-03-04")) is True
    assert mirror.record_webhook_event(event("k1"), ts("2024-03-05")) is False
    assert mirror.record_webhook_event(event("k2"), ts("2024-03-05")) is True
    mirror.set_webhook_outcome("k2", "stale")
    assert mirror.status().webhook_events == {"received": 1, "stale": 1}


def test_runs(mirror: Store) -> None:
    run_id = mirror.start_run("once", ts("2024-03-04"))
    report = RunReport(
        kind="once",
        started_at=ts("2024-03-04"),
        finished_at=ts("2024-03-04", 10),
        workspaces=2,
        windows=5,
        outcome=WindowOutcome(inserted=3, updated=2, unchanged=1, tombstoned=1, revived=1),
        requests=7,
        rate_limited=1,
        ok=True,
    )
    mirror.finish_run(run_id, report)
    last = mirror.status().last_run
    assert last is not None
    assert last.ok is True
    assert last.inserted == 3
    assert last.requests == 7
    assert last.finished_at == ts("2024-03-04", 10)


def test_migration_ledger(db_path) -> None:
    with Store(db_path) as store:
        assert store.applied_migrations() == [m.name for m in MIGRATIONS]
    with Store(db_path) as store:  # reopening applies nothing new
        assert store.applied_migrations() == [m.name for m in MIGRATIONS]
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT name, applied_at FROM schema_migrations").fetchall()
        modes = conn.execute("PRAGMA journal_mode").fetchone()
    assert len(rows) == len(MIGRATIONS)
    assert all(applied for _, applied in rows)
    assert modes == ("wal",)


def test_schema_too_new_is_refused(db_path) -> None:
    Store(db_path).close()
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "INSERT INTO schema_migrations VALUES ('9999_from_the_future', '2030-01-01T00:00:00Z')"
        )
    with pytest.raises(SchemaTooNew) as info:
        Store(db_path)
    assert info.value.unknown == ["9999_from_the_future"]


def test_not_a_database(tmp_path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        Store(path)
