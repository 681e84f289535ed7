"""``syncd migrate-to URL``: a SQLite mirror made by a real ``syncd --once`` is copied into an
empty PostgreSQL database, and syncd pointed at the URL continues from where the mirror
stopped (no second backfill); the copy is refused into a database holding a mirror, from a
file that is not one, and for a bad URL.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from syncd.errors import NoDatabase, UsageError
from syncd.store import transfer
from tests.e2e.harness import EXIT_OK, EXIT_USAGE, SyncRun, database_of, run_once, write_config
from tests.support.emulator import SYNCD, EmulatorProcess
from tests.support.environment import clean_env
from tests.support.mirror import differences, mirror_entries, truth_entries

#: Two workspaces, a few years of entries: the first run backfills in many windows.
EMULATOR_ARGS = ("--seed", "11", "--workspaces", "2", "--entries", "600", "--no-rate-limit")


@pytest.fixture
def emulator(tmp_path: Path) -> Any:
    started = EmulatorProcess.start(*EMULATOR_ARGS, log=tmp_path / "emulator.log")
    yield started
    assert started.stop() == 0


def migrate_to(config: Path, url: str, timeout: float = 180.0) -> SyncRun:
    """``syncd -c CONFIG migrate-to URL`` run to the end."""
    argv = [*SYNCD, "-c", str(config), "migrate-to", url]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=clean_env(), check=False
    )
    return SyncRun.of(argv, done.returncode, done.stdout, done.stderr, 0.0)


def url_config(directory: Path, emulator: EmulatorProcess, url: str) -> Path:
    """A config for ``emulator`` whose mirror is the PostgreSQL database at ``url``."""
    path = write_config(directory, emulator, name="pg.toml")
    text = path.read_text(encoding="utf-8")
    start = text.index("[database]")
    end = text.index("\n\n", start)
    path.write_text(text[:start] + f'[database]\nurl = "{url}"' + text[end:], encoding="utf-8")
    return path


def counts_in_sqlite(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {
            t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in transfer.TABLES
        }
    finally:
        conn.close()


def counts_in_postgres(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {
            t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in transfer.TABLES
        }


@pytest.mark.e2e
def test_the_copy_continues_incrementally_and_equals_upstream(tmp_path, emulator, postgres_url):
    config = write_config(tmp_path, emulator)
    first = run_once(config)
    assert first.returncode == EXIT_OK, first.explain()
    backfill_requests = first.summary["requests"]
    db = database_of(config)
    before = counts_in_sqlite(db)
    assert before["time_entries"] > 100
    assert before["time_entry_tag_links"] > 0

    migrated = migrate_to(config, postgres_url)

    assert migrated.returncode == EXIT_OK, migrated.explain()
    (line,) = migrated.stdout.splitlines()
    assert line.startswith("syncd: copied ")
    assert "counts and hours verified" in line
    assert counts_in_postgres(postgres_url) == before
    assert counts_in_sqlite(db) == before  # the source is left as it was

    # Upstream moves on; syncd on the copy picks it up with the hot window only.
    (ws, _) = emulator.workspace_ids()
    recent = max(emulator.entries(ws), key=lambda e: e["date"])
    emulator.edit(recent["id"], description="edited after the move")
    emulator.reset_stats()
    pg_config = url_config(tmp_path, emulator, postgres_url)

    after = run_once(pg_config)

    assert after.returncode == EXIT_OK, after.explain()
    requests = emulator.key_stats()["requests"]
    assert requests == after.summary["requests"]
    # One workspace listing and one hot window per workspace (a backfill asked for more).
    assert requests <= 6 < backfill_requests, (
        f"{requests} after the move, {backfill_requests} first"
    )
    assert after.summary["windows"] == 2
    assert after.summary["inserted"] == 0
    assert after.summary["updated"] >= 1
    truth = truth_entries(emulator)
    mirror = mirror_entries(postgres_url)
    assert mirror[recent["id"]]["description"] == "edited after the move"
    problems = differences(truth, mirror)
    assert not problems, "\n".join(problems)


@pytest.mark.e2e
def test_a_second_copy_into_the_same_database_is_refused(tmp_path, emulator, postgres_url):
    config = write_config(tmp_path, emulator)
    assert run_once(config).returncode == EXIT_OK
    # The test server trusts loopback, so a password is accepted and ignored: it must still
    # never be shown, in the result line, the messages or the log.
    password = "m1grate-pa55word"
    url = postgres_url.replace("postgresql://postgres@", f"postgresql://postgres:{password}@")
    first = migrate_to(config, url)
    assert first.returncode == EXIT_OK, first.explain()
    assert "postgresql://postgres:***@" in first.stdout
    copied = counts_in_postgres(postgres_url)

    again = migrate_to(config, url)

    assert again.returncode == EXIT_USAGE, again.explain()
    assert "already holds a syncd mirror" in again.stderr
    assert again.stdout == ""
    assert counts_in_postgres(postgres_url) == copied
    for run in (first, again):
        assert password not in run.stdout + run.stderr + json.dumps(run.events)


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://syncd:hunter2-secret@db/syncd", "has scheme 'mysql'"),
        ("postgresql://syncd:hunter2-secret@db:5432", "names no database"),
        ("postgresql://syncd:hunter2-secret@db:port/syncd", "is not a valid URL"),
    ],
)
def test_a_bad_url_is_refused_with_exit_2_without_its_password(tmp_path, url, problem):
    config = tmp_path / "syncd.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "mirror.sqlite"}"\n', encoding="utf-8")

    refused = migrate_to(config, url)

    assert refused.returncode == EXIT_USAGE, refused.explain()
    assert problem in refused.stderr
    assert "hunter2-secret" not in refused.stderr + refused.stdout
    assert not (tmp_path / "mirror.sqlite").exists()


def test_a_missing_mirror_is_refused_and_not_created(tmp_path, postgres_url):
    with pytest.raises(NoDatabase):
        transfer.copy_to_postgres(tmp_path / "absent.sqlite", postgres_url)
    assert not (tmp_path / "absent.sqlite").exists()


def test_a_file_that_is_not_a_mirror_is_refused(tmp_path, postgres_url):
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database at all\n" * 100, encoding="utf-8")
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE people (name TEXT)")
    for path in (text, other):
        with pytest.raises(UsageError, match="is not a syncd mirror"):
            transfer.copy_to_postgres(path, postgres_url)
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT to_regclass('time_entries')").fetchone()[0] is None


def test_a_mirror_of_a_newer_syncd_is_refused(tmp_path, postgres_url):
    from syncd.store import Store

    path = tmp_path / "mirror.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO schema_migrations (name, applied_at) VALUES ('9999_future', '2030')"
        )
    with pytest.raises(UsageError, match=r"newer syncd.*9999_future"):
        transfer.copy_to_postgres(path, postgres_url)


def test_an_empty_mirror_copies_and_leaves_identities_past_the_ids_handed_out(
    tmp_path, postgres_url
):
    from syncd.store import Store

    path = tmp_path / "mirror.sqlite"
    store = Store(path)
    run_id = store.start_run("once", "2026-01-01T00:00:00.000Z")
    store.close()
    with sqlite3.connect(path) as conn:  # a later run deleted by retention: its id stays used
        conn.execute("INSERT INTO sync_runs (id, kind, started_at) VALUES (41, 'once', 'x')")
        conn.execute("DELETE FROM sync_runs WHERE id = 41")

    result = transfer.copy_to_postgres(path, postgres_url)

    assert result.rows["sync_runs"] == 1
    assert result.live_entries == 0
    with psycopg.connect(postgres_url) as conn:
        # The copy leaves planner statistics behind (reports read all of it at once).
        (analyzed,) = conn.execute(
            "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'sync_runs'"
        ).fetchone()
        assert analyzed is not None
        (next_id,) = conn.execute(
            "INSERT INTO sync_runs (kind, started_at) VALUES ('once', 'y') RETURNING id"
        ).fetchone()
    assert run_id < 41 < next_id


def test_a_mirror_of_an_older_schema_is_brought_up_to_date_then_copied(tmp_path, postgres_url):
    from peewee import SqliteDatabase

    from syncd.store import migrations

    path = tmp_path / "mirror.sqlite"
    db = SqliteDatabase(str(path))
    db.connect()
    db.execute_sql(migrations.LEDGER_DDL)
    older = migrations.MIGRATIONS[:-1]
    for step in older:
        step.apply(db)
        db.execute_sql(
            "INSERT INTO schema_migrations (name, applied_at) VALUES (?, '2026-01-01')",
            (step.name,),
        )
    db.execute_sql("INSERT INTO workspaces (id, name, synced_at) VALUES ('w1', 'One', 'x')")
    db.close()

    result = transfer.copy_to_postgres(path, postgres_url)

    assert result.rows["workspaces"] == 1
    with sqlite3.connect(path) as conn:
        names = [n for (n,) in conn.execute("SELECT name FROM schema_migrations")]
    assert names[-1] == migrations.MIGRATIONS[-1].name


def test_tables_of_its_own_in_the_database_do_not_stop_the_copy(tmp_path, postgres_url):
    from syncd.store import Store

    path = tmp_path / "mirror.sqlite"
    Store(path).close()
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
        conn.execute("INSERT INTO invoices VALUES (1)")

    result = transfer.copy_to_postgres(path, postgres_url)

    assert set(result.rows) == set(transfer.TABLES)
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM invoices").fetchone() == (1,)


def test_a_table_of_the_mirror_this_syncd_does_not_know_stops_the_copy(tmp_path, postgres_url):
    from syncd.errors import StoreError
    from syncd.store import Store

    path = tmp_path / "mirror.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")

    with pytest.raises(StoreError, match="unknown: notes"):
        transfer.copy_to_postgres(path, postgres_url)
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM workspaces").fetchone() == (0,)
