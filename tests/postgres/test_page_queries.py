"""The status page's queries answer on PostgreSQL as on SQLite."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from syncd.store import Store
from syncd.store import pagequeries as q
from tests.postgres.test_readers import Execute, fill

NOW = 1_796_400_000.0  # 2026-12-04T16:00:00Z


def fill_bookkeeping(execute: Execute, mark: str, started: str) -> None:
    """Runs, deliveries, grants and a running timer, written through ``execute``."""
    runs = [
        ("poll", "2026-12-04T10:00:00.000Z", "2026-12-04T10:00:05.000Z", 1, None, 3, 40),
        ("once", "2026-12-04T11:00:00.000Z", "2026-12-04T11:00:09.000Z", 0, "boom", 1, 2),
        ("poll", "2026-12-04T12:00:00.000Z", None, None, None, 0, 0),
    ]
    for run in runs:
        execute(
            "INSERT INTO sync_runs (kind, started_at, finished_at, ok, error, windows, "
            f"requests) VALUES ({', '.join([mark] * 7)})",
            run,
        )
    events = [
        ("k1", "TIMER_STARTED", "e01", "w1", "2026-12-04T10:01:00.000Z", "applied"),
        ("k2", "TIMER_STOPPED", "e02", "w9", "2026-12-04T10:02:00.000Z", "ignored"),
        ("k3", "MANUAL_TIME_ADDED", "e03", None, "2026-12-04T10:03:00.000Z", None),
    ]
    for event in events:
        execute(
            "INSERT INTO webhook_events (dedupe_key, kind, object_id, workspace_id, "
            f"received_at, outcome) VALUES ({', '.join([mark] * 6)})",
            event,
        )
    # Grants at the very start of the day's hours, in the middle, at an hour's edge, and
    # outside the 24 hours.
    for offset in (-24 * 3600, -24 * 3600 + 1, -3600.5, -3600, -3599.5, -10, -1, 0, 5):
        execute(
            f"INSERT INTO budget_grants (key_id, granted_at, priority) VALUES ('k', {mark}, 1)",
            (NOW + offset,),
        )
    execute(
        "INSERT INTO time_entries (id, workspace_id, date, start_time, team_member_name, "
        f"project_name, synced_at, source) VALUES ('r1', 'w1', {mark}, {mark}, 'Ann', "
        "'Alpha', 'now', 'webhook')",
        (started[:10], started),
    )
    execute(
        "INSERT INTO daily_project_totals SELECT date, workspace_id, '', '', 1, 1, 0, 0 "
        "FROM time_entries WHERE id = 'r1'"
    )


@pytest.fixture
def stores(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    started = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 600))
    path = tmp_path / "mirror.sqlite"
    Store(path).close()
    with sqlite3.connect(path, isolation_level=None) as lite:
        fill(lite.execute, "?")
        fill_bookkeeping(lite.execute, "?", started)
    lite.close()
    Store(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as pg:
        fill(pg.execute, "%s")
        fill_bookkeeping(pg.execute, "%s", started)
    lite_store, pg_store = Store(path), Store(postgres_url)
    try:
        yield lite_store, pg_store
    finally:
        lite_store.close()
        pg_store.close()


def test_the_page_queries_answer_as_on_sqlite(stores: tuple[Store, Store]) -> None:
    lite, pg = stores
    assert q.recent_runs(pg, 2) == q.recent_runs(lite, 2)
    assert len(q.recent_runs(pg)) == 3
    assert q.recent_webhook_events(pg) == q.recent_webhook_events(lite)
    assert [e["workspace_name"] for e in q.recent_webhook_events(pg)] == [None, None, "Main"]
    per_hour = q.requests_per_hour(pg, NOW, 24)
    assert per_hour == q.requests_per_hour(lite, NOW, 24)
    assert sum(per_hour) == 7
    assert per_hour[0] == 2
    assert per_hour[22:] == [1, 4]  # 3600.5 s before now is in the hour before the last
    for since, until in (("2026-11-01", "2026-11-30"), ("2026-10-01", "2026-12-31")):
        assert q.hours_per_day(pg, since, until) == q.hours_per_day(lite, since, until)
    counts, timers = q.running_timers(pg)
    lite_counts, lite_timers = q.running_timers(lite)
    assert counts == lite_counts == {"w1": 1}
    assert len(timers) == len(lite_timers) == 1
    seconds, lite_seconds = timers[0].pop("running_seconds"), lite_timers[0].pop("running_seconds")
    assert timers == lite_timers
    assert abs(seconds - lite_seconds) <= 1
    assert 599 <= seconds <= 610
