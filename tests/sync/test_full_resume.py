"""``syncd --once --full`` killed with SIGKILL, then run again: it continues where it stopped.

Real ``syncd`` processes against the bundled emulator over a real socket, a real SQLite file.
"""

from __future__ import annotations

from datetime import date, timedelta

from tests.e2e.harness import (
    EXIT_OK,
    FIND_PATH,
    OnceProcess,
    database_of,
    run_once,
    wait_for_scans,
    write_config,
)
from tests.support.emulator import EmulatorProcess
from tests.support.mirror import assert_mirror_equals_truth, query, scalar

#: Narrow windows, so walking the history takes many requests.
NARROW = {"window_max_days": 14, "window_target_entries": 40, "window_max_entries": 80}


def walk_scans(db, after_id: int = 0) -> list[tuple[str, str]]:
    rows = query(
        db,
        "SELECT date_from, date_to FROM window_scans "
        "WHERE source = 'reconcile' AND date_from IS NOT NULL AND id > ? ORDER BY id",
        (after_id,),
    )
    return [(r["date_from"], r["date_to"]) for r in rows]


def test_a_killed_full_run_is_continued_by_the_next(tmp_path) -> None:
    emulator = EmulatorProcess.start(
        "--seed", "8", "--workspaces", "1", "--entries", "600", "--days", "300",
        "--no-rate-limit", log=tmp_path / "emulator.log",
    )  # fmt: skip
    try:
        config = write_config(tmp_path, emulator, sync=NARROW)
        db = database_of(config)
        first = run_once(config)
        assert first.returncode == EXIT_OK, first.explain()
        (workspace,) = emulator.workspace_ids()

        emulator.fault(kind="delay", seconds=0.1, path=FIND_PATH, count=10_000)
        victim = OnceProcess(config, "--full")
        try:
            wait_for_scans(db, 5, source="reconcile")
            victim.kill9()
            assert victim.wait().returncode == -9
        finally:
            if victim.process.poll() is None:
                victim.process.kill()
        (cursor,) = [r["full_before"] for r in query(db, "SELECT full_before FROM sync_state")]
        assert cursor is not None  # the walk was stopped half-way and says where
        killed_walk = walk_scans(db)
        last_id = scalar(db, "SELECT max(id) FROM window_scans")

        # A silent change below where the walk stopped: the resumed walk must bring it.
        old = [e for e in emulator.entries(workspace) if e["start_time"][:10] < cursor]
        changed = emulator.edit(old[len(old) // 2]["id"], description="fixed long ago")
        emulator.clear_faults()
        again = run_once(config, "--full")

        assert again.returncode == EXIT_OK, again.explain()
        resumed = walk_scans(db, last_id)
        assert resumed, "the second --full scanned nothing"
        # It went on below the first run's position instead of starting again at the top.
        assert max(high for _low, high in resumed) < cursor
        assert query(db, "SELECT full_before FROM sync_state")[0]["full_before"] is None
        # Together the two runs walked every day of the history once.
        oldest = scalar(db, "SELECT oldest_date FROM sync_state")
        days = {
            date.fromisoformat(low) + timedelta(days=n)
            for low, high in killed_walk + resumed
            for n in range((date.fromisoformat(high) - date.fromisoformat(low)).days + 1)
        }
        newest = max(date.fromisoformat(high) for _low, high in killed_walk)
        span = (newest - date.fromisoformat(oldest)).days + 1
        assert len({d for d in days if d.isoformat() >= oldest}) == span
        truth = assert_mirror_equals_truth(emulator, db)
        assert truth[changed["id"]]["description"] == "fixed long ago"
    finally:
        emulator.stop()
