"""``syncd --once`` under kills and upstream faults (``POST /__emulator/faults``)."""

from __future__ import annotations

import signal
import time

from tests.support.mirror import assert_mirror_equals_truth, query, scalar

from .harness import (
    EXIT_FAILED,
    EXIT_OK,
    FIND_PATH,
    OnceProcess,
    assert_committed_windows_hold_the_truth,
    database_of,
    run_once,
    wait_for_scans,
    write_config,
)

#: Narrow windows so a backfill takes many requests.
NARROW = {"window_max_days": 14}


def small_emulator(start_emulator, *extra: str):
    return start_emulator(
        "--seed", "21", "--workspaces", "2", "--entries", "400", "--days", "120",
        "--no-rate-limit", *extra,
    )  # fmt: skip


def test_kill_9_during_backfill_then_once_converges(tmp_path, start_emulator, once_processes):
    emulator = start_emulator(
        "--seed", "8", "--workspaces", "2", "--entries", "1000", "--days", "200",
        "--no-rate-limit",
    )  # fmt: skip
    emulator.fault(kind="delay", seconds=0.15, path=FIND_PATH, count=10_000)
    config = write_config(tmp_path, emulator, sync=NARROW)
    db = database_of(config)
    victim = OnceProcess(config)
    once_processes.append(victim)

    wait_for_scans(db, 4)
    victim.kill9()
    killed = victim.wait()

    assert killed.returncode == -9
    assert "sync_finished" not in killed.stdout
    checked = assert_committed_windows_hold_the_truth(emulator, db)
    assert checked >= 5  # the hot window and at least four backfill windows
    states = query(db, "SELECT backfill_complete FROM sync_state")
    assert [s["backfill_complete"] for s in states].count(1) < 2  # it was killed mid-way
    runs = query(db, "SELECT finished_at, ok FROM sync_runs")
    assert [tuple(r) for r in runs] == [(None, None)]  # the killed run stays unfinished

    emulator.clear_faults()
    again = run_once(config)

    assert again.returncode == EXIT_OK, again.explain()
    truth = assert_mirror_equals_truth(emulator, db)
    assert scalar(db, "SELECT count(*) FROM time_entries") == len(truth)  # no duplicates
    assert scalar(db, "SELECT count(*) FROM time_entries WHERE deleted_at IS NOT NULL") == 0
    assert again.summary["tombstoned"] == 0
    assert [s["backfill_complete"] for s in query(db, "SELECT * FROM sync_state")] == [1, 1]
    dupes = query(
        db,
        "SELECT time_entry_id, tag_id FROM time_entry_tags "
        "GROUP BY time_entry_id, tag_id HAVING count(*) > 1",
    )
    assert dupes == []


def test_429_storm_is_honoured_and_the_run_completes(tmp_path, start_emulator):
    emulator = small_emulator(start_emulator)
    emulator.fault(status=429, retry_after=1, count=3)
    config = write_config(tmp_path, emulator)

    run = run_once(config)

    assert run.returncode == EXIT_OK, run.explain()
    assert run.summary["rate_limited"] == 3
    assert run.duration >= 2.5  # three Retry-After: 1 honoured one after the other
    assert_mirror_equals_truth(emulator, database_of(config))
    row = query(database_of(config), "SELECT ok, rate_limited FROM sync_runs")
    assert [tuple(r) for r in row] == [(1, 3)]


def test_5xx_burst_shorter_than_max_attempts_completes(tmp_path, start_emulator):
    emulator = small_emulator(start_emulator)
    emulator.fault(status=503, count=2)  # the workspace list, twice
    emulator.fault(status=500, path=FIND_PATH, count=1)
    config = write_config(tmp_path, emulator, api={"max_attempts": 4})

    run = run_once(config)

    assert run.returncode == EXIT_OK, run.explain()
    assert run.summary["rate_limited"] == 0
    assert run.summary["requests"] == run.summary["windows"] + 1 + 3  # failed attempts count
    assert_mirror_equals_truth(emulator, database_of(config))


def test_malformed_truncated_and_dropped_bodies_are_retried(tmp_path, start_emulator):
    emulator = small_emulator(start_emulator)
    config = write_config(tmp_path, emulator, sync=NARROW)
    emulator.fault(kind="truncated", path="/v1/workspaces", count=1)
    emulator.fault(kind="drop", path=FIND_PATH, count=1)  # POST: aiohttp does not resend it
    emulator.fault(kind="malformed", path=FIND_PATH, count=1)

    run = run_once(config)

    assert run.returncode == EXIT_OK, run.explain()
    db = database_of(config)
    assert_mirror_equals_truth(emulator, db)
    assert emulator.request("GET", "/__emulator/faults")["faults"] == []  # all of them fired
    assert run.summary["requests"] == run.summary["windows"] + 1 + 3
    assert emulator.key_stats()["requests"] == run.summary["requests"]
    assert run.summary["tombstoned"] == 0  # a failed attempt never reads as an empty window
    assert scalar(db, "SELECT count(*) FROM time_entries WHERE deleted_at IS NOT NULL") == 0


def start_outage_after_three_windows(
    tmp_path, start_emulator, once_processes, *, workspaces, entries, status, api
):
    """A slowed ``--once`` backfill that commits three windows, after which every find
    answers ``status``; returns (emulator, config, db, process)."""
    emulator = start_emulator(
        "--seed", "9", "--workspaces", str(workspaces), "--entries", str(entries),
        "--days", "200", "--no-rate-limit",
    )  # fmt: skip
    emulator.fault(kind="delay", seconds=0.15, path=FIND_PATH, count=10_000)
    config = write_config(tmp_path, emulator, api=api, sync=NARROW)
    db = database_of(config)
    process = OnceProcess(config)
    once_processes.append(process)
    wait_for_scans(db, 3)
    emulator.clear_faults()
    emulator.fault(status=status, path=FIND_PATH, count=100_000)
    return emulator, config, db, process


def test_persistent_5xx_fails_cleanly_keeping_committed_windows(
    tmp_path, start_emulator, once_processes
):
    emulator, config, db, process = start_outage_after_three_windows(
        tmp_path, start_emulator, once_processes,
        workspaces=2, entries=600, status=500,
        api={"max_attempts": 3, "retry_timeout_seconds": 10},
    )  # fmt: skip

    run = process.wait(timeout=60)

    assert run.returncode == EXIT_FAILED, run.explain()
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("syncd: ")
    assert "HTTP 500" in lines[0]
    assert "Traceback" not in run.stdout + run.stderr
    assert run.summary["ok"] is False
    (row,) = query(db, "SELECT ok, finished_at, error FROM sync_runs")
    assert row["ok"] == 0
    assert row["finished_at"] is not None
    assert "500" in row["error"]
    assert assert_committed_windows_hold_the_truth(emulator, db) >= 4
    complete = [r[0] for r in query(db, "SELECT backfill_complete FROM sync_state")]
    assert complete.count(1) < 2

    emulator.clear_faults()
    again = run_once(config)
    assert again.returncode == EXIT_OK, again.explain()
    assert_mirror_equals_truth(emulator, db)


def test_sigterm_during_backfill_exits_0_after_the_window_in_flight(
    tmp_path, start_emulator, once_processes
):
    """SIGTERM stops a cron run cleanly: the window in flight is committed, the run is
    recorded as finished, the exit code is 0, and the next run completes the mirror."""
    emulator = start_emulator(
        "--seed", "9", "--workspaces", "1", "--entries", "1000", "--days", "200",
        "--no-rate-limit",
    )  # fmt: skip
    emulator.fault(kind="delay", seconds=0.2, path=FIND_PATH, count=10_000)
    config = write_config(tmp_path, emulator, sync=NARROW)
    db = database_of(config)
    run = OnceProcess(config)
    once_processes.append(run)

    wait_for_scans(db, 3)
    run.process.send_signal(signal.SIGTERM)
    stopped = run.wait(timeout=30)

    assert stopped.returncode == EXIT_OK, stopped.explain()
    assert stopped.summary["ok"] is True
    assert assert_committed_windows_hold_the_truth(emulator, db) >= 3
    (finished,) = query(db, "SELECT finished_at, ok FROM sync_runs")
    assert finished["finished_at"] is not None
    assert finished["ok"] == 1

    emulator.clear_faults()
    assert run_once(config).returncode == EXIT_OK
    assert_mirror_equals_truth(emulator, db)


def test_sigterm_during_an_outage_exits_0_without_waiting_out_the_retries(
    tmp_path, start_emulator, once_processes
):
    """Upstream answers 503 to everything and the run has many attempts left; SIGTERM ends
    it within one backoff with exit 0, keeping every committed window."""
    emulator, _, db, run = start_outage_after_three_windows(
        tmp_path, start_emulator, once_processes,
        workspaces=1, entries=1000, status=503,
        api={"max_attempts": 30, "retry_timeout_seconds": 600},
    )  # fmt: skip
    time.sleep(1.5)  # a few failed attempts: the run is between retries now

    run.process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    stopped = run.wait(timeout=60)

    assert stopped.returncode == EXIT_OK, stopped.explain()
    assert time.monotonic() - started < 35  # at most one backoff (wait_max 30 s)
    assert stopped.summary["ok"] is True
    assert assert_committed_windows_hold_the_truth(emulator, db) >= 3
