"""Benchmark of a first ``syncd --once`` under the readings of the find window the docs leave
open, with the real rate limits.

The emulator is seeded with 3 workspaces × 20,000 entries over 3 years (with its backdated
entries) and plays, in turn: the default reading (``date``, inclusive bounds, no cap), answers
silently capped at 1,000 entries, and creation-time filtering with exclusive bounds. For each,
one ``syncd --once`` on an empty mirror; prints its requests, the response bytes it
downloaded, wall time, 429s, what syncd learned, and how the mirror differs from the
emulator's truth (missing, stale and wrongly live entries; all should be 0).

Prints ``name: value`` lines. Usage::

    .venv/bin/python bench/bench_readings.py [--workspaces 3] [--entries 60000] [--days 1095]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sync import KEY, run_once, start_emulator, write_syncd_config

from tests.support.emulator import EmulatorProcess
from tests.support.mirror import divergence as count_divergence
from tests.support.mirror import mirror_entries, truth_entries

READINGS = {
    "default": [],
    "cap1000": ["--find-cap", "1000"],
    "created_at_exclusive": ["--date-filter-field", "created_at", "--date-bounds", "exclusive"],
}


def divergence(emulator: EmulatorProcess, db: Path) -> tuple[int, int, int]:
    """(missing, stale, wrongly live) entries of the mirror against the emulator's truth;
    stale: live in both, but some field differs."""
    return count_divergence(truth_entries(emulator), mirror_entries(db))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspaces", type=int, default=3)
    parser.add_argument("--entries", type=int, default=60_000)
    parser.add_argument("--days", type=int, default=1095)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    for name, switches in READINGS.items():
        with tempfile.TemporaryDirectory(prefix="bench-readings-") as tmp:
            work = Path(tmp)
            emulator = start_emulator(
                [
                    "--seed", str(args.seed), "--workspaces", str(args.workspaces),
                    "--entries", str(args.entries), "--days", str(args.days), *switches,
                ],
                work / "emulator.log",
            )  # fmt: skip
            try:
                config = write_syncd_config(work, emulator)
                summary, wall, rss = run_once(config, work / "once.log")
                stats = emulator.stats()["keys"][KEY]
                db = work / "mirror.sqlite"
                missing, stale, extra = divergence(emulator, db)
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                    (learned,) = conn.execute(
                        "SELECT value FROM installation WHERE key = 'upstream_reading'"
                    ).fetchone()
                reading = json.loads(learned)
            finally:
                emulator.stop()
        print(f"{name}_requests: {summary['requests']}")
        print(f"{name}_response_mb: {stats['bytes_sent'] / 1e6:.1f}")
        print(f"{name}_wall_seconds: {wall:.1f}")
        print(f"{name}_429s: {summary['rate_limited']}")
        print(f"{name}_peak_rss_mb: {rss / 2**20:.0f}")
        print(
            f"{name}_learned: field={reading['field']} cap={reading['cap']} "
            f"timeout_above={reading['timeout_above']}"
        )
        print(f"{name}_divergence: missing={missing} stale={stale} wrongly_live={extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
