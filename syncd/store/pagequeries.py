"""Read-only queries behind the status page (``syncd.status_page``): recent runs, recent
webhook deliveries, running timers, requests granted per hour and hours per day.

Every statement is a constant; values are bound as parameters. Nothing here writes. The
statements are written with ``?`` placeholders and run on SQLite and PostgreSQL alike
(``backend.execute``); where the two differ (rounding a number down, the daily totals the
reports read), each has its own form.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import peewee
import psycopg

from syncd.errors import StoreError
from syncd.store import reports
from syncd.store.backend import execute, is_postgres
from syncd.store.mirror import Store

T = TypeVar("T")

_RECENT_RUNS = (
    "SELECT id, kind, started_at, finished_at, ok, error, workspaces, windows, inserted, "
    "updated, tombstoned, revived, requests, rate_limited "
    "FROM sync_runs ORDER BY id DESC LIMIT ?"
)
_RECENT_WEBHOOKS = (
    "SELECT e.received_at, e.kind, e.object_id, e.workspace_id, w.name AS workspace_name, "
    "e.outcome FROM webhook_events AS e LEFT JOIN workspaces AS w ON w.id = e.workspace_id "
    "ORDER BY e.id DESC LIMIT ?"
)
_RUNNING_TIMERS = (
    "SELECT r.workspace_id, w.name AS workspace_name, r.start_time, r.team_member_name, "
    "r.project_name, r.running_seconds FROM running_timers AS r "
    "LEFT JOIN workspaces AS w ON w.id = r.workspace_id "
    "ORDER BY r.start_time DESC LIMIT ?"
)
_RUNNING_COUNTS = "SELECT workspace_id, COUNT(*) FROM running_timers GROUP BY workspace_id"
# Grants of every key: the budget is per key and one installation normally uses one.
# Parameters: start, start, end. The hour is rounded down: SQLite's CAST truncates (the value
# is never negative here), PostgreSQL's rounds, so it takes floor() first.
_GRANTS_PER_HOUR = (
    "SELECT CAST((granted_at - ?) / 3600 AS INTEGER) AS slot, COUNT(*) "
    "FROM budget_grants WHERE granted_at >= ? AND granted_at < ? GROUP BY slot"
)
_PG_GRANTS_PER_HOUR = (
    "SELECT CAST(floor((granted_at - ?) / 3600) AS INTEGER) AS slot, COUNT(*) "
    "FROM budget_grants WHERE granted_at >= ? AND granted_at < ? GROUP BY slot"
)


def _rows(store: Store, sql: str, params: tuple) -> list[dict[str, Any]]:
    cursor = execute(store.db, sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def recent_runs(store: Store, limit: int = 10) -> list[dict[str, Any]]:
    """The last ``limit`` sync runs, newest first. Raises ``StoreError``."""
    return _guarded(store, lambda: _rows(store, _RECENT_RUNS, (limit,)))


def recent_webhook_events(store: Store, limit: int = 10) -> list[dict[str, Any]]:
    """The last ``limit`` ledgered webhook deliveries, newest first. Raises ``StoreError``."""
    return _guarded(store, lambda: _rows(store, _RECENT_WEBHOOKS, (limit,)))


def running_timers(store: Store, limit: int = 20) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """``(count per workspace id, the ``limit`` most recently started running timers)``.
    Raises ``StoreError``."""

    def read() -> tuple[dict[str, int], list[dict[str, Any]]]:
        counts = dict(execute(store.db, _RUNNING_COUNTS).fetchall())
        return counts, _rows(store, _RUNNING_TIMERS, (limit,))

    return _guarded(store, read)


def requests_per_hour(store: Store, now: float, hours: int = 24) -> list[int]:
    """Rate-budget grants (requests sent, by every process sharing the mirror) in each of the
    ``hours`` hours before ``now`` (epoch seconds), oldest first. Raises ``StoreError``."""
    start = now - hours * 3600

    def read() -> list[int]:
        counts = [0] * hours
        sql = _PG_GRANTS_PER_HOUR if is_postgres(store.db) else _GRANTS_PER_HOUR
        for slot, n in execute(store.db, sql, (start, start, now)).fetchall():
            if 0 <= slot < hours:
                counts[slot] = n
        return counts

    return _guarded(store, read)


def hours_per_day(store: Store, since: str, until: str) -> dict[str, float]:
    """Hours of live entries per day from ``since`` to ``until`` (ISO dates, inclusive), all
    workspaces together, from the daily totals the reports read; days without entries are
    absent. Raises ``StoreError``."""

    def read() -> dict[str, float]:
        postgres = is_postgres(store.db)
        cursor = store.db.execute_sql(
            reports.hours_report_sql("day", postgres=postgres),
            reports.hours_report_params(since, until, None, postgres=postgres),
        )
        names = [d[0] for d in cursor.description]
        return {
            row[names.index("day")]: float(row[names.index("hours")] or 0.0)
            for row in cursor.fetchall()
        }

    return _guarded(store, read)


def _guarded(store: Store, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except (peewee.DatabaseError, sqlite3.Error, psycopg.Error) as exc:
        raise StoreError(f"mirror database {store.path}: {exc}") from exc
