"""People query the mirror while a sync writes it (issue: offline SQL)."""

from __future__ import annotations

import sqlite3
import threading
import time

from .harness import EXIT_OK, OnceProcess, database_of, write_config

FIND_PATH = "/api/integrations/zapier/triggers/time-entries/find"
# Each view, filtered like a report would filter it, plus a consistency probe: every row of a
# first backfill is counted by exactly one committed window scan, so the two numbers can
# only differ if a reader saw part of a window.
READER_QUERIES = (
    "SELECT count(*), sum(hours) FROM live_time_entries WHERE date >= date('now', '-90 days')",
    "SELECT * FROM hours_per_day_per_member WHERE date >= date('now', '-30 days')",
    "SELECT * FROM hours_per_week_per_project WHERE week_start >= date('now', '-60 days')",
    "SELECT * FROM billable_hours_per_month",
    "SELECT * FROM running_timers",
)
CONSISTENCY = (
    "SELECT (SELECT count(*) FROM time_entries),"
    " (SELECT coalesce(sum(inserted), 0) FROM window_scans)"
)


def test_readers_never_block_and_never_see_a_partial_window(tmp_path, start_emulator):
    """A reader loop running the documented views during a backfill gets no "database is
    locked" and always sees whole windows."""
    emulator = start_emulator(
        "--seed", "11", "--workspaces", "2", "--entries", "6000", "--days", "400",
        "--no-rate-limit",
    )  # fmt: skip
    emulator.fault(kind="delay", seconds=0.05, path=FIND_PATH, count=10_000)
    config = write_config(tmp_path, emulator, sync={"window_target_entries": 300})
    db = database_of(config)
    errors: list[str] = []
    partial: list[tuple[int, int]] = []
    reads = 0
    done = threading.Event()

    def reader() -> None:
        nonlocal reads
        while not db.exists() and not done.is_set():
            time.sleep(0.01)
        connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.5)
        while not done.is_set():
            try:
                with connection:  # one read transaction per round: a consistent snapshot
                    for sql in READER_QUERIES:
                        connection.execute(sql).fetchall()
                    rows, counted = connection.execute(CONSISTENCY).fetchone()
                if rows != counted:
                    partial.append((rows, counted))
                reads += 1
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):  # before the first migration committed
                    errors.append(str(exc))
        connection.close()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        run = OnceProcess(config).wait(timeout=180)
    finally:
        done.set()
        thread.join()

    assert run.returncode == EXIT_OK, run.explain()
    assert run.summary["inserted"] == 6000
    assert errors == []
    assert partial == []
    assert reads > 20  # the reader really ran alongside the writer
