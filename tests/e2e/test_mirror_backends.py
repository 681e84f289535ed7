"""The mirror read back through :mod:`tests.support.mirror` gives the same rows, of the same
Python types, from a SQLite file and from a PostgreSQL database that ``syncd --once`` filled
from the same emulator: the assertions of the end-to-end tests mean the same on both."""

from __future__ import annotations

from typing import Any

from tests.support.mirror import mirror_entries, query, scalar

from .harness import EXIT_OK, run_once, write_config


def typed(value: Any) -> tuple[str, Any]:
    return type(value).__name__, value


def test_both_backends_read_back_the_same_rows_and_types(tmp_path, start_emulator, postgres_url):
    emulator = start_emulator(
        "--seed", "13", "--workspaces", "2", "--entries", "150", "--no-rate-limit"
    )  # fmt: skip
    (tmp_path / "sqlite").mkdir()
    (tmp_path / "postgresql").mkdir()
    sqlite_config = write_config(tmp_path / "sqlite", emulator)
    postgres_config = write_config(tmp_path / "postgresql", emulator, database=postgres_url)
    for config in (sqlite_config, postgres_config):
        run = run_once(config)
        assert run.returncode == EXIT_OK, run.explain()
    sqlite_db = tmp_path / "sqlite" / "mirror.sqlite"

    # Entries in the comparison shape: equal values of equal types, field by field.
    on_sqlite, on_postgres = mirror_entries(sqlite_db, live=None), mirror_entries(postgres_url)
    assert len(on_sqlite) == 150
    assert set(on_sqlite) == set(on_postgres)
    for entry_id, entry in on_sqlite.items():
        want = {k: typed(v) for k, v in entry.items()}
        assert {k: typed(v) for k, v in on_postgres[entry_id].items()} == want, entry_id
    # Flags are the integers 0 and 1, durations integers, running timers NULL.
    assert {e["billable"] for e in on_sqlite.values()} == {0, 1}
    assert any(e["end_time"] is None for e in on_sqlite.values())
    assert any(e["tags"] for e in on_sqlite.values())

    # Rows as sqlite3.Row gives them: by position and name, tuple(), dict(), same types.
    sql = (
        "SELECT id, billable, manually_entered, duration_seconds, description, end_time "
        "FROM time_entries WHERE workspace_id = ? ORDER BY id"
    )
    workspace = emulator.workspace_ids()[0]
    rows = {db: query(db, sql, (workspace,)) for db in (sqlite_db, postgres_url)}
    assert [tuple(r) for r in rows[sqlite_db]] == [tuple(r) for r in rows[postgres_url]]
    for a, b in zip(rows[sqlite_db], rows[postgres_url], strict=True):
        assert [typed(v) for v in a] == [typed(v) for v in b]
        assert dict(a) == dict(b)
        assert (a["id"], a[1]) == (b["id"], b[1])

    # Aggregates: counts and sums of integers are ints on both (PostgreSQL sums a BIGINT
    # column to numeric).
    for sql in (
        "SELECT count(*) FROM time_entries WHERE billable = 1",
        "SELECT sum(duration_seconds) FROM time_entries",
        "SELECT sum(seconds), sum(billable_seconds) FROM daily_project_totals",
        "SELECT max(date) FROM time_entries",
    ):
        assert typed(scalar(sqlite_db, sql)) == typed(scalar(postgres_url, sql)), sql

    # Bookkeeping: the same columns and types (the values of one run's request counts may
    # differ between the two runs, their types may not).
    sql = "SELECT kind, ok, error, requests, rate_limited, finished_at FROM sync_runs"
    (a,), (b,) = query(sqlite_db, sql), query(postgres_url, sql)
    assert a.keys() == b.keys()
    assert (a["kind"], a["ok"], a["error"]) == (b["kind"], b["ok"], b["error"]) == ("once", 1, None)
    assert [type(v) for v in a] == [type(v) for v in b]
    sql = "SELECT workspace_id, backfill_complete, oldest_date FROM sync_state ORDER BY 1"
    assert [[typed(v) for v in r] for r in query(sqlite_db, sql)] == [
        [typed(v) for v in r] for r in query(postgres_url, sql)
    ]
