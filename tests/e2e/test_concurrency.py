"""Two ``syncd --once`` started together on one key and one database share the budget."""

from __future__ import annotations

from tests.support.mirror import assert_mirror_equals_truth, query

from .harness import EXIT_OK, OnceProcess, database_of, write_config

PER_SECOND, PER_MINUTE = 3, 40


def test_two_concurrent_once_runs_never_see_a_429(tmp_path, start_emulator, once_processes):
    """Low limits on the emulator (3/s, 40/min) and the same values in ``[limits]``: each
    process alone would plan 2 requests per second (margin 0.1), so together they only stay
    under 3/s by sharing the persisted budget. (Crossing the minute limit would cost a
    minute of waiting, so the backfill stays below the 28 requests a minute the budget plans
    for backfills at 40/min.) Two workspaces: runs started together split them (one each, by
    their leases), so both send requests at once."""
    emulator = start_emulator(
        "--seed", "4", "--workspaces", "2", "--entries", "800", "--days", "365",
        "--rate-per-second", str(PER_SECOND), "--rate-per-minute", str(PER_MINUTE),
    )  # fmt: skip
    config = write_config(
        tmp_path, emulator, limits={"per_second": PER_SECOND, "per_minute": PER_MINUTE}
    )
    runs = [OnceProcess(config), OnceProcess(config)]
    once_processes.extend(runs)

    results = [run.wait(timeout=150) for run in runs]

    for result in results:
        assert result.returncode == EXIT_OK, result.explain()
        assert result.summary["ok"] is True
        assert result.summary["rate_limited"] == 0
    stats = emulator.key_stats()
    assert stats["rate_limited"] == 0
    assert stats["max_in_any_second"] <= min(10, PER_SECOND)
    assert stats["max_in_any_minute"] <= min(100, PER_MINUTE)
    total = sum(r.summary["requests"] for r in results)
    assert stats["requests"] == total
    assert total > 2 * PER_SECOND * 2  # enough traffic for the per-second limit to matter
    db = database_of(config)
    assert_mirror_equals_truth(emulator, db)
    runs_table = query(db, "SELECT ok, rate_limited FROM sync_runs")
    assert [tuple(r) for r in runs_table] == [(1, 0), (1, 0)]
