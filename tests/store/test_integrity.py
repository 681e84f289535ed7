"""Failing storage is named by its cause: integrity checks, disk full, moving a mirror aside.

Real SQLite files throughout; the disk fills for real (``PRAGMA max_page_count``, and in
``tests/test_failing_storage.py`` a file-size limit and a tiny tmpfs).
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncd.errors import CorruptDatabase, DiskFull, NoDatabase, StoreError, UsageError
from syncd.records import Workspace
from syncd.store import AsyncStore, ReadOnlyMirror, Store
from syncd.store.integrity import (
    CHECKED_AT_SETTING,
    check_if_due,
    ensure_not_open,
    move_aside,
    quick_check,
    rebuild,
    storage_error,
)

from .factory import WS, day, entry, ts, window

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def fill(path: Path, entries: int = 1500) -> None:
    """A mirror of ``entries`` entries over 100 days, written as a sync writes them."""
    with Store(path) as store:
        store.upsert_workspaces([Workspace(WS, "Main")], ts("2024-06-01"))
        per_day = entries // 100
        for d in range(0, 100, 10):
            batch = [
                entry(f"e{d + i // per_day:03d}-{i % per_day:03d}", day=day(d + i // per_day),
                      description=f"work item {i} on a long enough description")
                for i in range(per_day * 10)
            ]  # fmt: skip
            store.apply_window(window(batch, day(d), day(d + 9)))


def overwrite_pages(path: Path, count: int = 4, seed: int = 1) -> list[int]:
    """Overwrite ``count`` random pages (never the header page) with random bytes."""
    page = 4096
    pages = path.stat().st_size // page
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(pages // 10, pages - 1), count))
    with path.open("r+b") as f:
        for n in chosen:
            f.seek(n * page)
            f.write(rng.randbytes(page))
    return chosen


@pytest.fixture
def damaged(db_path: Path) -> Path:
    fill(db_path)
    overwrite_pages(db_path)
    assert sqlite_finds_damage(db_path)
    return db_path


def sqlite_finds_damage(path: Path) -> bool:
    """SQLite's own verdict, as a precondition independent of syncd's code."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA quick_check").fetchone() != ("ok",)
    except sqlite3.DatabaseError:
        return True
    finally:
        conn.close()


def test_quick_check_passes_a_healthy_mirror_and_lists_damage(db_path, damaged) -> None:
    healthy = db_path.with_name("healthy.sqlite")
    fill(healthy)
    assert quick_check(healthy) == []
    problems = quick_check(damaged)
    assert problems
    assert len(problems) <= 10


def test_quick_check_on_a_file_that_is_not_a_database(tmp_path) -> None:
    path = tmp_path / "notes.sqlite"
    path.write_bytes(b"not a database at all " * 500)
    assert quick_check(path) == ["file is not a database"]
    with pytest.raises(NoDatabase):
        quick_check(tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()


def test_a_damaged_mirror_is_a_named_error_wherever_it_is_read(damaged) -> None:
    with pytest.raises(CorruptDatabase, match="rebuild") as raised, Store(damaged) as store:
        store.status()
    assert "database disk image is malformed" in str(raised.value)
    with pytest.raises(CorruptDatabase, match="rebuild"), ReadOnlyMirror(damaged) as mirror:
        mirror.query("SELECT count(*), sum(length(description)) FROM time_entries")


def test_a_file_that_is_not_a_database_is_named_corrupt(tmp_path) -> None:
    path = tmp_path / "mirror.sqlite"
    path.write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(CorruptDatabase, match="file is not a database"):
        Store(path)


def test_a_full_disk_is_named_and_the_window_is_not_written(db_path) -> None:
    with Store(db_path) as store:
        store.upsert_workspaces([Workspace(WS, "Main")], ts("2024-06-01"))
        pages = store.db.execute_sql("PRAGMA page_count").fetchone()[0]
        store.db.execute_sql(f"PRAGMA max_page_count = {pages + 2}")
        big = [entry(f"e{i:04d}", description="x" * 400) for i in range(400)]
        with pytest.raises(DiskFull) as raised:
            store.apply_window(window(big, "2024-03-01", "2024-03-31"))
        message = str(raised.value)
        assert "the disk is full (database or disk is full)" in message
        assert "free space" in message
        assert "rollback" not in message
        assert store.count_live_entries(WS) == 0
        store.db.execute_sql("PRAGMA max_page_count = 1073741823")
        store.apply_window(window(big[:5], "2024-03-01", "2024-03-31"))  # usable again
        assert store.count_live_entries(WS) == 5


def test_a_missing_directory_is_named(tmp_path) -> None:
    path = tmp_path / "nowhere" / "mirror.sqlite"
    try:
        sqlite3.connect(path)
    except sqlite3.Error as exc:
        error = storage_error(exc, f"mirror database {path}", path)
    assert type(error) is StoreError
    assert f"the directory {path.parent} does not exist" in str(error)


async def test_the_check_runs_when_due_and_records_when_it_passed(db_path) -> None:
    fill(db_path, entries=200)
    async with await AsyncStore.open(db_path) as store:
        assert await check_if_due(store, now=NOW) is True  # never checked
        assert await store.get_setting(CHECKED_AT_SETTING) == "2024-06-01T12:00:00.000Z"
        assert await check_if_due(store, now=NOW + timedelta(hours=23)) is False
        assert await check_if_due(store, now=NOW + timedelta(hours=25)) is True
        assert await store.get_setting(CHECKED_AT_SETTING) == "2024-06-02T13:00:00.000Z"
        # a clock set back: the record is in the future, so check again
        assert await check_if_due(store, now=NOW) is True


async def test_a_failed_check_raises_and_records_nothing(db_path) -> None:
    fill(db_path)
    async with await AsyncStore.open(db_path) as store:
        await store.set_setting(CHECKED_AT_SETTING, "2024-05-01T00:00:00.000Z")
        overwrite_pages(db_path)  # damage where this run's own reads do not go
        with pytest.raises(CorruptDatabase, match="quick_check"):
            await check_if_due(store, now=NOW)
        assert await store.get_setting(CHECKED_AT_SETTING) == "2024-05-01T00:00:00.000Z"


def test_moving_aside_keeps_the_wal_with_its_database(tmp_path) -> None:
    """A process killed with committed rows still in the WAL: the moved set still opens with
    those rows, and nothing of it leaks into the new mirror."""
    path = tmp_path / "mirror.sqlite"
    script = (
        "import os, sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1])\n"
        "c.execute('PRAGMA journal_mode=wal'); c.execute('PRAGMA wal_autocheckpoint=0')\n"
        "c.execute('CREATE TABLE t (x)'); c.commit()\n"
        "c.execute(\"INSERT INTO t VALUES ('in the wal')\"); c.commit()\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(path)], check=True)
    assert Path(f"{path}-wal").stat().st_size > 0
    moved = move_aside(path, NOW)
    assert [p.name for p in moved] == [
        "mirror.sqlite.damaged-20240601T120000Z",
        "mirror.sqlite.damaged-20240601T120000Z-wal",
        "mirror.sqlite.damaged-20240601T120000Z-shm",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in moved)
    rows = sqlite3.connect(moved[0]).execute("SELECT x FROM t").fetchall()
    assert rows == [("in the wal",)]
    # the same second again: another name, never an overwrite
    path.write_bytes(moved[0].read_bytes())
    assert move_aside(path, NOW)[0].name == "mirror.sqlite.damaged-20240601T120000Z-2"
    with pytest.raises(NoDatabase):
        move_aside(path, NOW)


def test_rebuild_replaces_a_damaged_mirror_with_an_empty_one(damaged) -> None:
    moved = rebuild(damaged, now=NOW)
    assert moved[0].name == "mirror.sqlite.damaged-20240601T120000Z"
    assert quick_check(moved[0])  # the damaged file, kept for salvage
    with Store(damaged) as store:
        assert store.status().workspaces == ()
    with pytest.raises(UsageError, match="passed the integrity check"):
        rebuild(damaged, now=NOW)  # healthy now: left alone
    again = rebuild(damaged, now=NOW + timedelta(seconds=1), force=True)
    assert again[0].name == "mirror.sqlite.damaged-20240601T120001Z"


def test_rebuild_refuses_a_mirror_another_process_has_open(damaged) -> None:
    script = (
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1]); c.execute('PRAGMA schema_version').fetchone()\n"
        "print('open', flush=True); sys.stdin.read()\n"
    )
    reader = subprocess.Popen(
        [sys.executable, "-c", script, str(damaged)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline() == "open\n"
        with pytest.raises(UsageError, match="open in another process"):
            rebuild(damaged, now=NOW)
        assert damaged.exists()
    finally:
        reader.communicate("", timeout=10)
    ensure_not_open(damaged)
    assert rebuild(damaged, now=NOW)
