"""Readers on PostgreSQL: ``syncd sql``, ``syncd report hours`` and search answer as on SQLite,
in a read-only transaction bounded by ``--timeout`` and stopped by Ctrl-C."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from syncd.errors import QueryTimeout, UsageError
from syncd.store import Store
from syncd.store.readonly import ReadOnlyMirror, run_readonly_query
from syncd.store.reports import REPORT_KINDS
from tests.support.environment import clean_env

WORKSPACES = [("w1", "Main"), ("w2", "Side")]
CLIENTS = [("c1", "w1", "Acme"), ("c2", "w2", "zeta"), ("c3", "w1", "Zenith")]
PROJECTS = [
    ("p1", "w1", "Alpha", "c1"),
    ("p2", "w1", "beta", None),
    ("p3", "w2", "Alpha", "c2"),
    ("p4", "w1", "Ärger", "c3"),
]
# id, workspace, date, seconds, description, billable, member id, member name, project,
# client, deleted_at
ENTRIES = [
    ("e01", "w1", "2026-10-30", 5400, "Café invoice review", 1, "m1", "Ann", "p1", "c1", None),
    ("e02", "w1", "2026-11-02", 2700, "Standup", 0, "m1", "Ann", "p1", "c1", None),
    ("e03", "w1", "2026-11-03", 3600, "Invoices for November", 1, "m2", "bob", None, None, None),
    ("e04", "w1", "2026-11-04", 1234, "Gone upstream invoice", 1, "m2", "bob", "p1", "c1", "x"),
    ("e05", "w1", "2026-11-05", 7200, "Design", 0, "m3", None, "p2", None, None),
    ("e06", "w2", "2026-11-05", 1800, "invoice check", 1, "m4", "Ann", "p3", "c2", None),
    ("e07", "w2", "2026-11-09", 999, "Réunion d'équipe", 0, "m4", "Ann", "p3", "c2", None),
    ("e08", "w1", "2026-11-12", 4321, "Quarterly planning", 1, "m1", "Ann", "p4", "c3", None),
    ("e09", "w1", "2026-11-30", 600, "invoice", 1, "m2", "bob", "p4", "c3", None),
    ("e10", "w1", "2026-12-01", 3000, "Review", 0, "m1", "Ann", "p2", None, None),
    ("e11", "w2", "2026-12-07", 3333, "Planning", 1, "m5", "Zoë", None, None, None),
    ("e12", "w1", "2026-12-07", 18, "a tiny invoice", 1, "m3", None, "p1", "c1", None),
]
TOTALS = """
    INSERT INTO daily_project_totals
        (date, workspace_id, project_id, client_id, entries, running, seconds, billable_seconds)
    SELECT date, workspace_id, COALESCE(project_id, ''), COALESCE(client_id, ''), COUNT(*), 0,
        SUM(COALESCE(duration_seconds, 0)),
        SUM(CASE WHEN billable = 1 THEN COALESCE(duration_seconds, 0) ELSE 0 END)
    FROM time_entries WHERE deleted_at IS NULL GROUP BY 1, 2, 3, 4"""

Execute = Callable[..., Any]


def fill(execute: Execute, mark: str, entries: list[tuple] = ENTRIES) -> None:
    """Write the reference rows and the entries' daily totals through ``execute``."""
    for row in WORKSPACES:
        execute(f"INSERT INTO workspaces (id, name) VALUES ({mark}, {mark})", row)
    for row in CLIENTS:
        execute(
            f"INSERT INTO clients (id, workspace_id, name) VALUES ({mark}, {mark}, {mark})", row
        )
    for row in PROJECTS:
        execute(
            "INSERT INTO projects (id, workspace_id, name, client_id) "
            f"VALUES ({mark}, {mark}, {mark}, {mark})",
            row,
        )
    names = {p[0]: p[2] for p in PROJECTS} | {c[0]: c[2] for c in CLIENTS}
    for e in entries:
        (entry, workspace, day, seconds, text, billable, member, name, project, client, gone) = e
        start = f"{day}T09:00:00.000Z" if seconds is not None else None
        end = f"{day}T10:00:00.000Z" if seconds is not None else None
        execute(
            "INSERT INTO time_entries (id, workspace_id, date, start_time, end_time, "
            "duration_seconds, description, billable, team_member_id, team_member_name, "
            "project_id, project_name, client_id, client_name, deleted_at, synced_at, source) "
            f"VALUES ({', '.join([mark] * 15)}, 'now', 'poll')",
            (
                entry,
                workspace,
                day,
                start,
                end,
                seconds,
                text,
                billable,
                member,
                name,
                project,
                names.get(project),
                client,
                names.get(client),
                gone and f"{day}T12:00:00.000Z",
            ),
        )
    execute(TOTALS)


@pytest.fixture
def mirrors(postgres_url: str, tmp_path: Path) -> tuple[Path, str]:
    """``(SQLite path, PostgreSQL URL)`` holding the same rows."""
    path = tmp_path / "mirror.sqlite"
    Store(path).close()
    Store(postgres_url).close()
    with sqlite3.connect(path, isolation_level=None) as lite:
        fill(lite.execute, "?")
    lite.close()
    store = Store(path)
    store.rebuild_search()  # the store indexes what it writes itself; these rows it did not
    store.close()
    with psycopg.connect(postgres_url, autocommit=True) as pg:
        fill(pg.execute, "%s")
    return path, postgres_url


RANGES = [
    (None, None, None),
    ("2026-11-01", "2026-11-30", None),
    ("2026-11-04", None, None),  # mid-week: the first week is labelled by since
    (None, "2026-11-09", "w1"),
    ("2026-11-01", None, "w2"),
    ("2026-12-08", None, None),  # nothing
]


@pytest.mark.parametrize("by", REPORT_KINDS)
def test_every_report_answers_as_on_sqlite(mirrors: tuple[Path, str], by: str) -> None:
    path, url = mirrors
    with ReadOnlyMirror(path) as lite, ReadOnlyMirror(url) as pg:
        assert pg.postgres
        assert not lite.postgres
        for since, until, workspace in RANGES:
            expected = lite.report_hours(by, since, until, workspace)
            assert pg.report_hours(by, since, until, workspace) == expected, (since, until)
        assert lite.report_hours(by)[1]  # the data is not empty


def test_search_answers_as_on_sqlite(mirrors: tuple[Path, str]) -> None:
    path, url = mirrors
    searches: list[tuple[str, dict[str, Any]]] = [
        ("invoice", {}),
        ("cafe", {}),
        ("équipe", {}),
        ("EQUIPE", {}),
        ("invoice", {"since": "2026-11-01", "until": "2026-11-30"}),
        ("invoice", {"workspace_id": "w2"}),
        ("invoice", {"limit": 2}),
        ("planning", {}),
        ("invoice review", {}),
        ("invoi*", {}),
        ("  Plan*  ", {}),
    ]
    with ReadOnlyMirror(path) as lite, ReadOnlyMirror(url) as pg:
        for text, options in searches:
            expected = lite.search(text, **options)
            assert expected[1]
            assert pg.search(text, **options) == expected, (text, options)
        # Anything beyond plain words is tsquery syntax.
        assert [r[0] for r in pg.search("invoi:* & !cafe")[1]] == ["e12", "e09", "e06", "e03"]
        with pytest.raises(UsageError):
            pg.search("invoice &")


def test_a_running_timer_counts_up_to_now_in_the_reports(postgres_url: str, tmp_path: Path) -> None:
    Store(postgres_url).close()
    path = tmp_path / "mirror.sqlite"
    Store(path).close()
    started = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 5400))
    today = started[:10]
    timer = (
        "INSERT INTO time_entries (id, workspace_id, date, start_time, billable, "
        "team_member_id, team_member_name, synced_at, source) "
        "VALUES ('r1', 'w1', {m}, {m}, 1, 'm1', 'Ann', 'now', 'webhook')"
    )
    running = (
        "INSERT INTO daily_project_totals SELECT date, workspace_id, '', '', 1, 1, 0, 0 "
        "FROM time_entries WHERE id = 'r1'"
    )
    with sqlite3.connect(path, isolation_level=None) as lite:
        lite.execute("INSERT INTO workspaces (id, name) VALUES ('w1', 'Main')")
        lite.execute(timer.format(m="?"), (today, started))
        lite.execute(running)
    lite.close()
    with psycopg.connect(postgres_url, autocommit=True) as pg:
        pg.execute("INSERT INTO workspaces (id, name) VALUES ('w1', 'Main')")
        pg.execute(timer.format(m="%s"), (today, started))
        pg.execute(running)
    with ReadOnlyMirror(path) as lite, ReadOnlyMirror(postgres_url) as pg:
        for by in REPORT_KINDS:
            (want,) = lite.report_hours(by, today, today)[1]
            (got,) = pg.report_hours(by, today, today)[1]
            assert len(got) == len(want)
            for a, b in zip(got, want, strict=True):
                if isinstance(b, float):
                    assert abs(a - b) <= 0.011, by  # a second apart at most
                else:
                    assert a == b, by
            assert 1.49 <= got[-2 if by in ("project", "client", "member") else -1] <= 1.52


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO installation (key, value) VALUES ('k', 'v')",
        "UPDATE time_entries SET description = 'x'",
        "DELETE FROM time_entries",
        "DROP TABLE time_entries",
        "CREATE TABLE t (x INTEGER)",
        "SELECT 1; DELETE FROM time_entries",
        "COMMIT",
        "SELECT setval('sync_runs_id_seq', 5)",
    ],
)
def test_writes_are_refused(mirrors: tuple[Path, str], sql: str) -> None:
    _, url = mirrors
    with pytest.raises(UsageError):
        run_readonly_query(url, sql)
    assert run_readonly_query(url, "SELECT count(*) FROM time_entries") == (
        ["count"],
        [(len(ENTRIES),)],
    )
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('t')").fetchone() == (None,)


def test_reads_come_back_as_plain_values(mirrors: tuple[Path, str]) -> None:
    _, url = mirrors
    with ReadOnlyMirror(url) as pg:
        columns, rows = pg.query(
            "SELECT id, hours, CAST(1.5 AS NUMERIC) AS n, DATE '2026-12-01' AS d, "
            "CAST('{\"a\": 1}' AS JSONB) AS j FROM live_time_entries WHERE id = %s",
            ("e01",),
        )
        assert columns == ["id", "hours", "n", "d", "j"]
        assert rows == [("e01", 1.5, 1.5, "2026-12-01", '{"a": 1}')]
        assert pg.query("SHOW transaction_read_only")[1] == [("on",)]
        assert pg.query("SELECT 1 WHERE false") == (["?column?"], [])
        with pytest.raises(UsageError, match="syntax error"):
            pg.query("SELEC nonsense")
        assert pg.query("SELECT count(*) FROM workspaces")[1] == [(2,)]  # still usable
        # Lists (any type psycopg returns as a Python object) become their text, NULL stays.
        assert pg.query("SELECT ARRAY[1, 2] UNION ALL SELECT NULL")[1] == [("[1, 2]",), (None,)]
        # No JIT: it made the year reports 10-20 times slower once the planner had statistics.
        assert pg.query("SHOW jit")[1] == [("off",)]


def test_a_query_past_its_timeout_stops_with_the_timeout_error(mirrors: tuple[Path, str]) -> None:
    _, url = mirrors
    with ReadOnlyMirror(url) as pg:
        started = time.monotonic()
        with pytest.raises(QueryTimeout) as caught:
            pg.query("SELECT pg_sleep(5)", timeout=0.5)
        assert time.monotonic() - started < 3
        assert caught.value.seconds == 0.5
        assert pg.query("SELECT 1")[1] == [(1,)]  # the connection is usable again


def config_for(tmp_path: Path, url: str) -> str:
    path = tmp_path / "syncd.toml"
    path.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    return str(path)


def syncd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.e2e
def test_syncd_sql_on_postgres(mirrors: tuple[Path, str], tmp_path: Path) -> None:
    path, url = mirrors
    config = config_for(tmp_path, url)
    query = (
        "SELECT project_name, count(*) AS n FROM live_time_entries "
        'GROUP BY 1 ORDER BY project_name COLLATE "C"'
    )
    result = syncd("-c", config, "sql", query)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:3] == ["project_name\tn", "Alpha\t5", "beta\t2"]
    for write in ("INSERT INTO workspaces (id) VALUES ('w9')", "UPDATE workspaces SET name = 'x'"):
        refused = syncd("-c", config, "sql", write)
        assert refused.returncode == 2, refused.stderr
        assert "read-only transaction" in refused.stderr
        assert refused.stdout == ""
    dropped = syncd("-c", config, "sql", "DROP TABLE time_entries")
    assert dropped.returncode == 2
    assert "Traceback" not in dropped.stderr
    slow = syncd("-c", config, "sql", "--timeout", "0.5", "SELECT pg_sleep(5)")
    assert slow.returncode == 1
    assert "syncd: query interrupted after 0.5 s (--timeout)" in slow.stderr
    tables = syncd("-c", config, "sql", "--tables")
    assert "time_entries\ttable" in tables.stdout
    assert "live_time_entries\tview" in tables.stdout
    schema = syncd("-c", config, "sql", "--schema", "workspaces")
    assert schema.returncode == 0, schema.stderr
    assert schema.stdout.startswith("CREATE TABLE workspaces (\n    id text NOT NULL,")
    assert "CREATE UNIQUE INDEX workspaces_pkey" in schema.stdout
    assert run_readonly_query(path, "SELECT count(*) FROM workspaces")[1] == [(2,)]


@pytest.mark.e2e
def test_syncd_report_hours_on_postgres_prints_what_sqlite_prints(
    mirrors: tuple[Path, str], tmp_path: Path
) -> None:
    path, url = mirrors
    on_postgres = config_for(tmp_path, url)
    (tmp_path / "lite").mkdir()
    on_sqlite = tmp_path / "lite" / "syncd.toml"
    on_sqlite.write_text(f'[database]\npath = "{path}"\n', encoding="utf-8")
    for args in (
        ["--by", "project", "--since", "2026-11-01", "--csv"],
        ["--by", "week", "--since", "2026-11-04", "--until", "2026-12-31", "--json"],
        ["--by", "member", "--since", "2026-10-01", "--workspace", "w2"],
    ):
        want = syncd("-c", str(on_sqlite), "report", "hours", *args)
        got = syncd("-c", on_postgres, "report", "hours", *args)
        assert want.returncode == 0, want.stderr
        assert got.returncode == 0, got.stderr
        assert got.stdout == want.stdout
    unknown = syncd(
        "-c",
        on_postgres,
        "report",
        "hours",
        "--by",
        "day",
        "--since",
        "2026-01-01",
        "--workspace",
        "w9",
    )
    assert unknown.returncode == 2
    assert "no workspace 'w9'; it has: w1 (Main), w2 (Side)" in unknown.stderr


@pytest.mark.e2e
def test_ctrl_c_cancels_the_query_on_the_server(mirrors: tuple[Path, str], tmp_path: Path) -> None:
    _, url = mirrors
    config = config_for(tmp_path, url)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "syncd",
            "-c",
            config,
            "sql",
            "--timeout",
            "0",
            "SELECT pg_sleep(60)",
        ],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watching = (
        "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' "
        "AND state = 'active'"
    )
    with psycopg.connect(url, autocommit=True) as admin:
        deadline = time.monotonic() + 20
        while admin.execute(watching).fetchone() != (1,):
            assert time.monotonic() < deadline, "the query never started"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=15)
        assert process.returncode == 130, stderr
        assert "syncd: interrupted" in stderr
        assert admin.execute(watching).fetchone() == (0,)
