"""The report views, their indexes, full-text search and the read-only runner."""

from __future__ import annotations

import re
import sqlite3
import threading

import pytest

from syncd.errors import StoreError, UsageError
from syncd.seams import MassDeletePolicy
from syncd.store import ReadOnlyMirror, Store, run_readonly_query

from .factory import entry, ts, window

ANN, BOB = ("m-1", "Ann"), ("m-2", "Bob")
APOLLO, ZEUS = ("p-1", "Apollo"), ("p-2", "Zeus")
ACME, GLOBEX = ("c-1", "Acme"), ("c-2", "Globex")


@pytest.fixture
def reports(store: Store, db_path):
    """A small hand-made mirror whose numbers are easy to check."""
    live = [
        entry(
            "a",
            day="2024-03-04",
            member=ANN,
            project=APOLLO,
            client=ACME,
            seconds=3600,
            billable=True,
            description="Prepare invoice for Acme",
        ),
        entry(
            "b",
            day="2024-03-04",
            member=ANN,
            project=APOLLO,
            client=ACME,
            seconds=1800,
            description="Standup",
        ),
        entry(
            "c",
            day="2024-03-05",
            member=BOB,
            project=ZEUS,
            client=GLOBEX,
            seconds=7200,
            billable=True,
            description="Invoice review at the café",
        ),
        entry(
            "d",
            day="2024-03-11",
            member=ANN,
            project=APOLLO,
            client=ACME,
            seconds=5400,
            billable=True,
            description="Réunion équipe",
        ),
        entry(
            "e",
            day="2024-04-01",
            member=BOB,
            project=ZEUS,
            client=GLOBEX,
            seconds=900,
            description="Emails",
        ),
    ]
    gone = entry("f", day="2024-03-04", member=ANN, seconds=36000, description="old invoice")
    store.apply_window(window([*live, gone], "2024-03-01", "2024-04-30"))
    store.apply_window(window(live, "2024-03-01", "2024-04-30", scanned_at=ts("2024-06-02")))
    timer = entry("t", ws="ws-2", day="2024-03-06", member=BOB, running=True, description="Live")
    store.apply_window(window([timer], "2024-03-01", "2024-04-30", ws="ws-2"))
    with ReadOnlyMirror(db_path) as mirror:
        yield mirror


def rows(mirror: ReadOnlyMirror, sql: str) -> list[tuple]:
    return mirror.query(sql)[1]


def test_hours_per_day_per_member(reports: ReadOnlyMirror) -> None:
    assert rows(
        reports,
        "SELECT date, team_member_name, entries, seconds, hours, billable_hours "
        "FROM hours_per_day_per_member WHERE workspace_id = 'ws-1' ORDER BY date",
    ) == [
        ("2024-03-04", "Ann", 2, 5400, 1.5, 1.0),
        ("2024-03-05", "Bob", 1, 7200, 2.0, 2.0),
        ("2024-03-11", "Ann", 1, 5400, 1.5, 1.5),
        ("2024-04-01", "Bob", 1, 900, 0.25, 0.0),
    ]


def test_hours_per_week_per_project(reports: ReadOnlyMirror) -> None:
    assert rows(
        reports,
        "SELECT week_start, project_name, client_name, entries, hours, billable_hours "
        "FROM hours_per_week_per_project WHERE workspace_id = 'ws-1' "
        "ORDER BY week_start, project_name",
    ) == [
        ("2024-03-04", "Apollo", "Acme", 2, 1.5, 1.0),
        ("2024-03-04", "Zeus", "Globex", 1, 2.0, 2.0),
        ("2024-03-11", "Apollo", "Acme", 1, 1.5, 1.5),
        ("2024-04-01", "Zeus", "Globex", 1, 0.25, 0.0),
    ]


def test_billable_hours_per_month(reports: ReadOnlyMirror) -> None:
    assert rows(
        reports,
        "SELECT month, entries, hours, billable_hours, non_billable_hours "
        "FROM billable_hours_per_month WHERE workspace_id = 'ws-1' ORDER BY month",
    ) == [("2024-03", 4, 5.0, 4.5, 0.5), ("2024-04", 1, 0.25, 0.0, 0.25)]


def test_live_entries_and_running_timers(reports: ReadOnlyMirror) -> None:
    ids = rows(reports, "SELECT id FROM live_time_entries ORDER BY id")
    assert ids == [("a",), ("b",), ("c",), ("d",), ("e",), ("t",)]  # no tombstone "f"
    [timer] = rows(
        reports, "SELECT id, running, live_duration_seconds FROM live_time_entries WHERE running"
    )
    assert timer[0] == "t"
    assert timer[2] > 0
    [(tid, seconds)] = rows(reports, "SELECT id, running_seconds FROM running_timers")
    assert tid == "t"
    assert seconds > 0


def test_report_hours(reports: ReadOnlyMirror, store: Store) -> None:
    columns, data = reports.report_hours("project", "2024-03-01", "2024-03-31", "ws-1")
    assert columns == [
        "project_id", "project", "client", "entries", "hours", "billable_hours", "workspace"
    ]  # fmt: skip
    assert [row[:6] for row in data] == [
        ("p-1", "Apollo", "Acme", 3, 3.0, 2.5),
        ("p-2", "Zeus", "Globex", 1, 2.0, 2.0),
    ]
    assert reports.report_hours("month", workspace_id="ws-1")[1] == [
        ("2024-03", 4, 5.0, 4.5),
        ("2024-04", 1, 0.25, 0.0),
    ]
    assert reports.report_hours("week", "2024-03-01", "2024-03-10", "ws-1")[1] == [
        ("2024-03-04", 3, 3.5, 3.0)
    ]
    assert [
        r[1] for r in reports.report_hours("member", until="2024-03-31", workspace_id="ws-1")[1]
    ] == [
        "Ann",
        "Bob",
    ]
    assert reports.report_hours("client", "2024-03-01", "2024-03-31", "ws-1")[1][0][1] == "Acme"
    for by in ("day", "client"):
        assert reports.report_hours(by)[1]
    with pytest.raises(UsageError, match="unknown report grouping"):
        reports.report_hours("planet")


def test_search_excludes_tombstones_and_folds_accents(
    reports: ReadOnlyMirror, store: Store
) -> None:
    def found(text: str, **kw) -> list[str]:
        return sorted(r[0] for r in reports.search(text, **kw)[1])

    assert found("invoice") == ["a", "c"]  # "f" mentions it too but is tombstoned
    assert found("cafe") == ["c"]
    assert found("reunion") == ["d"]
    assert found("équipe") == ["d"]
    assert found("invoice", since="2024-03-05", until="2024-03-31") == ["c"]
    # Edits and revivals keep the index in step.
    edited = entry(
        "a",
        day="2024-03-04",
        member=ANN,
        project=APOLLO,
        client=ACME,
        seconds=3600,
        billable=True,
        description="Prepare quote",
        updated_at=ts("2024-06-05"),
    )
    store.apply_window(window([edited], "2024-03-04", "2024-03-04"), MassDeletePolicy(minimum=100))
    assert found("invoice") == ["c"]
    assert found("quote") == ["a"]
    old = entry("f", day="2024-03-04", member=ANN, seconds=36000, description="old invoice")
    store.apply_window(
        window([edited, old], "2024-03-04", "2024-03-04"), MassDeletePolicy(minimum=100)
    )
    assert found("invoice") == ["c", "f"]
    assert [r[0] for r in reports.search("invoice", since="2024-03-05")[1]] == ["c"]
    store.rebuild_search()
    assert found("invoice") == ["c", "f"]
    with pytest.raises(UsageError):
        reports.search('"unbalanced')


PLAN_QUERIES = [
    "SELECT * FROM time_entries WHERE date BETWEEN '2024-03-01' AND '2024-03-31'",
    "SELECT id FROM time_entries WHERE workspace_id = 'ws-1' AND date BETWEEN '2024-03-01' "
    "AND '2024-03-31' AND deleted_at IS NULL",
    "SELECT * FROM live_time_entries WHERE date BETWEEN '2024-03-01' AND '2024-03-31'",
    "SELECT * FROM hours_per_day_per_member WHERE date BETWEEN '2024-03-01' AND '2024-03-31'",
    "SELECT * FROM hours_per_week_per_project WHERE week_start BETWEEN '2024-03-04' "
    "AND '2024-03-25'",
    "SELECT * FROM billable_hours_per_month WHERE month = '2024-03'",
    "SELECT * FROM billable_hours_per_month WHERE month BETWEEN '2024-01' AND '2024-12'",
    "SELECT * FROM hours_per_week_per_project WHERE workspace_id = 'ws-1' "
    "AND week_start >= '2024-03-04'",
    "SELECT * FROM billable_hours_per_month WHERE workspace_id = 'ws-1' AND month >= '2024-03'",
    "SELECT * FROM running_timers",
    "SELECT project_id, SUM(hours) FROM live_time_entries "
    "WHERE date BETWEEN '2024-01-01' AND '2024-12-31' GROUP BY project_id",
]


# A full scan of the entries or of the daily totals (the views and reports read those).
FULL_SCAN = re.compile(r"SCAN (e|t|time_entries|daily_project_totals)")


@pytest.mark.parametrize("sql", PLAN_QUERIES)
def test_no_full_scan_of_time_entries(reports: ReadOnlyMirror, sql: str) -> None:
    plan = [r[3] for r in rows(reports, "EXPLAIN QUERY PLAN " + sql)]
    full_scans = [p for p in plan if FULL_SCAN.fullmatch(p)]
    assert not full_scans, plan
    assert any("USING" in p for p in plan), plan


def test_search_and_reports_use_indexes(reports: ReadOnlyMirror) -> None:
    from syncd.store.reports import (
        REPORT_KINDS,
        SEARCH_SQL,
        hours_report_params,
        hours_report_sql,
    )

    for by in REPORT_KINDS:
        for workspace in (None, "ws-1"):
            plan = [
                r[3]
                for r in reports.query(
                    "EXPLAIN QUERY PLAN " + hours_report_sql(by),
                    hours_report_params("2024-01-01", "2024-12-31", workspace),
                )[1]
            ]
            assert not [p for p in plan if FULL_SCAN.fullmatch(p)], (by, plan)
            assert any("USING" in p for p in plan), (by, plan)
    plan = reports.query(
        "EXPLAIN QUERY PLAN " + SEARCH_SQL, ("x", "2024-01-01", "2024-12-31", None, None, 5)
    )[1]
    assert any("VIRTUAL TABLE" in r[3] for r in plan)


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM time_entries",
        "UPDATE time_entries SET description = 'x'",
        "INSERT INTO installation VALUES ('k', 'v')",
        "DROP TABLE time_entries",
        "CREATE TABLE t (x)",
        "ATTACH DATABASE ':memory:' AS other",
        "PRAGMA journal_mode = delete",
        "PRAGMA user_version = 7",
        "PRAGMA query_only = 0",
        "PRAGMA writable_schema = 1",
        "UPDATE sqlite_master SET sql = '' WHERE name = 'time_entries'",
        "VACUUM",
        "BEGIN",
        "SELECT 1; DELETE FROM time_entries",
        "INSERT INTO time_entries_fts (time_entries_fts) VALUES ('delete-all')",
    ],
)
def test_read_only_runner_refuses_writes(reports: ReadOnlyMirror, db_path, sql: str) -> None:
    with pytest.raises(UsageError):
        reports.query(sql)
    assert rows(reports, "SELECT count(*) FROM time_entries") == [(7,)]


def test_read_only_runner_reads(reports: ReadOnlyMirror, db_path) -> None:
    columns, data = run_readonly_query(
        db_path, "SELECT id, hours FROM live_time_entries WHERE id = ?", ("a",)
    )
    assert columns == ["id", "hours"]
    assert data == [("a", 1.0)]
    assert ("date",) in [(r[1],) for r in rows(reports, "PRAGMA table_info(time_entries)")]
    assert rows(reports, "SELECT count(*) FROM pragma_table_info('workspaces')") == [(3,)]
    assert rows(
        reports,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
        "WHERE i < 3) SELECT sum(i) FROM n",
    ) == [(6,)]


def test_read_only_runner_reports_bad_sql(reports: ReadOnlyMirror, tmp_path) -> None:
    with pytest.raises(UsageError, match="no such table: nope"):
        reports.query("SELECT * FROM nope")
    with pytest.raises(UsageError, match="syntax error"):
        reports.query("SELEC 1")
    with pytest.raises(UsageError, match="empty"):
        reports.query("  ")
    with pytest.raises(StoreError, match="no mirror database"):
        ReadOnlyMirror(tmp_path / "missing.sqlite")


def test_readers_never_see_locks_or_partial_windows(store: Store, db_path) -> None:
    per_window, windows = 400, 15
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with Store(db_path) as writer:
                for w in range(windows):
                    day = f"2025-01-{w + 1:02d}"
                    batch = [entry(f"w{w}-{i}", day=day) for i in range(per_window)]
                    writer.apply_window(window(batch, day, day))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=write)
    seen: list[int] = []
    with ReadOnlyMirror(db_path) as reader:
        thread.start()
        while thread.is_alive():
            [(count,)] = rows(reader, "SELECT count(*) FROM live_time_entries")
            rows(reader, "SELECT * FROM hours_per_day_per_member WHERE date >= '2025-01-01'")
            seen.append(count)
        thread.join()
        seen.append(rows(reader, "SELECT count(*) FROM live_time_entries")[0][0])
    assert not errors
    assert all(c % per_window == 0 for c in seen), seen
    assert seen[-1] == per_window * windows
    with sqlite3.connect(db_path) as conn:  # plain sqlite3 readers work too
        assert conn.execute("SELECT count(*) FROM time_entries").fetchone() == (
            per_window * windows,
        )
