"""The published schema on PostgreSQL: its own ledger, every SQLite table, view and column, and
views that answer as SQLite's do."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from peewee import PostgresqlDatabase

from syncd.errors import SchemaTooNew
from syncd.store import Store, pg_schema
from syncd.store.backend import open_postgres

# SQLite's own bookkeeping and the FTS5 index (a tsvector column on PostgreSQL).
NOT_ON_POSTGRES = {"sqlite_sequence", "time_entries_fts"}


@pytest.fixture
def pg(postgres_url: str) -> Iterator[PostgresqlDatabase]:
    db = open_postgres(postgres_url)
    try:
        yield db
    finally:
        db.close()


def sqlite_schema(path: Path) -> dict[str, set[str]]:
    """``{table or view: {columns}}`` of a fresh mirror, FTS5 tables left out."""
    Store(path).close()
    with sqlite3.connect(path) as conn:
        names = [
            n
            for (n,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                "AND name NOT LIKE 'time_entries_fts_%'"
            )
            if n not in NOT_ON_POSTGRES
        ]
        return {
            n: {r[1] for r in conn.execute("SELECT * FROM pragma_table_info(?)", (n,))}
            for n in names
        }


def postgres_schema(db: PostgresqlDatabase) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for table, column in db.execute_sql(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema()"
    ):
        out.setdefault(table, set()).add(column)
    return out


def test_migrations_apply_once_and_then_are_a_no_op(pg: PostgresqlDatabase) -> None:
    assert pg_schema.migrate(pg, now=lambda: "2026-12-01T00:00:00.000Z") == pg_schema.known_names()
    assert pg_schema.migrate(pg) == []
    assert pg_schema.applied_migrations(pg) == pg_schema.known_names()
    assert "0007_leases" in pg_schema.known_names()


def test_every_sqlite_table_view_and_column_exists_on_postgres(
    pg: PostgresqlDatabase, tmp_path: Path
) -> None:
    pg_schema.migrate(pg)
    lite, post = sqlite_schema(tmp_path / "fresh.sqlite"), postgres_schema(pg)
    missing_tables = sorted(set(lite) - set(post))
    assert missing_tables == []
    for name, columns in lite.items():
        assert columns <= post[name], f"{name}: missing on PostgreSQL {columns - post[name]}"
    views = {v.name for v in pg.get_views()}
    with sqlite3.connect(tmp_path / "fresh.sqlite") as conn:
        lite_views = {
            n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='view'")
        }
    assert lite_views == views
    # Full-text search is a tsvector column with a GIN index over the live rows.
    (kind,) = pg.execute_sql(
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = 'time_entries' AND column_name = 'description_search'"
    ).fetchone()
    assert kind == "tsvector"
    (index,) = pg.execute_sql(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'time_entries_description_search'"
    ).fetchone()
    assert "USING gin (description_search)" in index
    assert "deleted_at IS NULL" in index


def test_a_ledger_naming_an_unknown_step_is_refused(pg: PostgresqlDatabase) -> None:
    pg_schema.migrate(pg)
    pg.execute_sql("INSERT INTO schema_migrations (name, applied_at) VALUES ('9999_future', 'x')")
    with pytest.raises(SchemaTooNew):
        pg_schema.migrate(pg)


# Entries written the same way into both backends; the store adds the totals of what it inserts.
ENTRIES = [
    # id, date, start, end, seconds, description, billable, member, project, client, deleted
    (
        "e1",
        "2026-11-30",
        "2026-11-30T09:00:00.000Z",
        "2026-11-30T10:30:00.000Z",
        5400,
        "Café invoice review",
        1,
        "m1",
        "p1",
        "c1",
        None,
    ),
    (
        "e2",
        "2026-12-02",
        "2026-12-02T09:00:00.000Z",
        "2026-12-02T09:45:00.000Z",
        2700,
        "Standup",
        0,
        "m1",
        "p1",
        "c1",
        None,
    ),
    (
        "e3",
        "2026-12-06",
        "2026-12-06T13:00:00.000Z",
        "2026-12-06T14:00:00.000Z",
        3600,
        "Invoices for December",
        1,
        "m2",
        None,
        None,
        None,
    ),
    (
        "e4",
        "2026-12-01",
        "2026-12-01T08:00:00.000Z",
        "2026-12-01T09:00:00.000Z",
        3600,
        "Gone upstream",
        1,
        "m2",
        "p1",
        "c1",
        "2026-12-03T00:00:00.000Z",
    ),
    (
        "e5",
        "2026-12-07",
        "2026-12-07T08:00:00.000Z",
        "2026-12-07T10:00:00.000Z",
        7200,
        "Design",
        0,
        "m2",
        "p2",
        None,
        None,
    ),
]
TOTALS = """
    INSERT INTO daily_project_totals
        (date, workspace_id, project_id, client_id, entries, running, seconds, billable_seconds)
    SELECT date, workspace_id, COALESCE(project_id, ''), COALESCE(client_id, ''), COUNT(*), 0,
        SUM(COALESCE(duration_seconds, 0)),
        SUM(CASE WHEN billable = 1 THEN COALESCE(duration_seconds, 0) ELSE 0 END)
    FROM time_entries WHERE deleted_at IS NULL GROUP BY 1, 2, 3, 4"""
AFTER = [
    "UPDATE time_entries SET duration_seconds = 1800, end_time = '2026-12-02T09:30:00.000Z' "
    "WHERE id = 'e2'",
    "UPDATE time_entries SET deleted_at = '2026-12-08T00:00:00.000Z' WHERE id = 'e5'",
    "UPDATE time_entries SET deleted_at = NULL WHERE id = 'e4'",
    "DELETE FROM time_entries WHERE id = 'e3'",
    "UPDATE time_entries SET project_id = 'p2', client_id = NULL WHERE id = 'e1'",
]
QUERIES = {
    "live_time_entries": "SELECT id, date, running, live_duration_seconds, hours "
    "FROM live_time_entries ORDER BY id",
    "hours_per_day_per_member": "SELECT * FROM hours_per_day_per_member "
    "ORDER BY date, team_member_id",
    "hours_per_week_per_project": "SELECT * FROM hours_per_week_per_project "
    "ORDER BY week_start, COALESCE(project_id, '')",
    "billable_hours_per_month": "SELECT * FROM billable_hours_per_month ORDER BY month",
    "daily_project_totals": "SELECT * FROM daily_project_totals "
    "ORDER BY date, project_id, client_id",
    "time_entry_tags": "SELECT * FROM time_entry_tags ORDER BY time_entry_id, tag_id",
}


def _fill(execute, param: str) -> None:
    execute("INSERT INTO workspaces (id, name) VALUES ('w1', 'Main')")
    execute("INSERT INTO projects (id, workspace_id, name) VALUES ('p1', 'w1', 'Alpha')")
    execute("INSERT INTO projects (id, workspace_id, name) VALUES ('p2', 'w1', 'Beta')")
    execute("INSERT INTO tags (id, workspace_id, name) VALUES ('t1', 'w1', 'urgent')")
    marks = ", ".join([param] * 11)
    for row in ENTRIES:
        execute(
            "INSERT INTO time_entries (id, date, start_time, end_time, duration_seconds, "
            "description, billable, team_member_id, project_id, client_id, deleted_at, "
            f"workspace_id, synced_at, source) VALUES ({marks}, 'w1', 'now', 'poll')",
            row,
        )
    execute(TOTALS)
    for entry in ("e1", "e3"):
        execute(
            "INSERT INTO time_entry_tag_links (entry_rowid, tag_id) "
            f"SELECT rowid, 't1' FROM time_entries WHERE id = {param}",
            (entry,),
        )


def _rows(execute, sql: str) -> list[tuple]:
    return [tuple(round(v, 6) if isinstance(v, float) else v for v in row) for row in execute(sql)]


def test_the_views_answer_as_on_sqlite(pg: PostgresqlDatabase, tmp_path: Path) -> None:
    pg_schema.migrate(pg)
    path = tmp_path / "mirror.sqlite"
    Store(path).close()
    lite = sqlite3.connect(path, isolation_level=None)
    lite.execute("PRAGMA foreign_keys = ON")

    def on_sqlite(sql: str, params: tuple = ()) -> list[tuple]:
        return lite.execute(sql, params).fetchall()

    def on_postgres(sql: str, params: tuple = ()) -> list[tuple]:
        cursor = pg.execute_sql(sql, params)
        return cursor.fetchall() if cursor.description else []

    _fill(on_sqlite, "?")
    _fill(on_postgres, "%s")
    for name, sql in QUERIES.items():
        assert _rows(on_postgres, sql) == _rows(on_sqlite, sql), f"{name} as inserted"
    # Updates, tombstones, a revival and a delete: the triggers keep the totals alike.
    for sql in AFTER:
        on_sqlite(sql)
        on_postgres(sql)
    for name, sql in QUERIES.items():
        assert _rows(on_postgres, sql) == _rows(on_sqlite, sql), f"{name} once changed"
    lite.close()


def test_running_timers_count_up_to_now(pg: PostgresqlDatabase) -> None:
    pg_schema.migrate(pg)
    pg.execute_sql("INSERT INTO workspaces (id) VALUES ('w1')")
    pg.execute_sql(
        "INSERT INTO time_entries (id, workspace_id, date, start_time, synced_at, source) "
        "VALUES ('r1', 'w1', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD'), "
        "to_char((now() - interval '90 minutes') AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), 'now', 'webhook')"
    )
    pg.execute_sql(
        "INSERT INTO daily_project_totals SELECT date, workspace_id, '', '', 1, 1, 0, 0 "
        "FROM time_entries"
    )
    (running, seconds) = pg.execute_sql(
        "SELECT running, live_duration_seconds FROM live_time_entries"
    ).fetchone()
    assert running == 1
    assert 5399 <= seconds <= 5405
    (timer,) = pg.execute_sql("SELECT running_seconds FROM running_timers").fetchone()
    assert 5399 <= timer <= 5405
    (hours,) = pg.execute_sql("SELECT hours FROM billable_hours_per_month").fetchone()
    assert 1.49 < hours < 1.51
    # Stopping it moves its time from the clock into the totals.
    pg.execute_sql(
        "UPDATE time_entries SET end_time = 'x', duration_seconds = 5400 WHERE id = 'r1'"
    )
    assert pg.execute_sql("SELECT running, seconds FROM daily_project_totals").fetchall() == [
        (0, 5400)
    ]


def test_search_finds_live_descriptions_without_accents_or_case(pg: PostgresqlDatabase) -> None:
    pg_schema.migrate(pg)
    pg.execute_sql("INSERT INTO workspaces (id) VALUES ('w1')")
    for entry, text, deleted in [
        ("a", "Café invoice review", None),
        ("b", "INVOICES for December", None),
        ("c", "invoice of a deleted entry", "2026-12-01T00:00:00.000Z"),
    ]:
        pg.execute_sql(
            "INSERT INTO time_entries (id, workspace_id, date, description, deleted_at, "
            "synced_at, source) VALUES (%s, 'w1', '2026-12-01', %s, %s, 'now', 'poll')",
            (entry, text, deleted),
        )
    query = (
        "SELECT id FROM time_entries WHERE deleted_at IS NULL AND description_search @@ "
        "to_tsquery('simple', syncd_fold(%s)) ORDER BY id"
    )
    assert pg.execute_sql(query, ("cafe",)).fetchall() == [("a",)]
    assert pg.execute_sql(query, ("invoice:*",)).fetchall() == [("a",), ("b",)]


DOC = Path(__file__).resolve().parents[2] / "docs" / "schema.md"


def test_the_postgresql_examples_in_the_schema_doc_run(pg: PostgresqlDatabase) -> None:
    examples = re.findall(r"```postgresql\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert examples
    pg_schema.migrate(pg)
    for sql in examples:
        pg.execute_sql(sql).fetchall()


def test_processes_migrating_at_once_apply_each_step_exactly_once(postgres_url: str) -> None:
    start = threading.Barrier(4)
    applied: list[list[str]] = []
    failures: list[BaseException] = []

    def migrate() -> None:
        db = open_postgres(postgres_url)
        try:
            start.wait()
            applied.append(pg_schema.migrate(db))
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert sorted(name for names in applied for name in names) == sorted(pg_schema.known_names())
