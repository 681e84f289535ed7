"""Benchmark of ``syncd --once`` against the bundled emulator with the real rate limits.

1. Backfill: the emulator seeded with 3 workspaces × 20,000 entries over 3 years, rate
   limits on (10/s, 100/min, 10,000/day), one ``syncd --once`` on an empty mirror.
   Reports requests used, requests per 1,000 entries, wall time against the minimum the
   limits allow for that many requests (raw limits and syncd's effective ones), 429s and
   the peak RSS of the sync process.
2. A second ``syncd --once`` with no upstream change: requests used (expected: the
   workspace list, one hot-window scan per workspace and the windows due for
   re-verification) and wall time.
3. ``syncd --once --full`` on the same mirror: requests and wall time to re-verify all
   history.

Both syncd and the emulator run as real processes on a loopback socket. Prints
``name: value`` lines. Usage::

    .venv/bin/python bench/bench_sync.py [--workspaces 3] [--entries 60000] [--days 1095]
"""

from __future__ import annotations

import argparse
import compileall
import itertools
import json
import math
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the emulator process and config writer of tests/support

from tests.support.config import emulator_sections, merge, write_config  # noqa: E402
from tests.support.emulator import SYNCD, EmulatorProcess  # noqa: E402
from tests.support.environment import clean_env  # noqa: E402

KEY = "bench-key"
LATENCY_KEY = "bench-key-latency"  # a key of its own: its budget and minute start empty
#: Round-trip time added to every request in the latency run, as to a remote server.
LATENCY_SECONDS = 0.15
#: The upstream limits (and syncd's defaults for ``[limits]``).
PER_SECOND, PER_MINUTE, PER_DAY = 10, 100, 10_000
SAFETY_MARGIN = 0.1
#: Share of the (margin-reduced) minute a BACKFILL request of ``--once`` may use
#: (``syncd.service.ONCE_SHARES``).
BACKFILL_MINUTE_SHARE = 0.95
#: The span syncd counts its per-second cap over (``syncd.store.budget.SECOND_SPAN``).
SECOND_SPAN = 1.1
REPLAYS = 3  # the write throughput is the median of this many replays


def min_seconds(
    requests: int, per_second: float, per_minute: float, second_span: float = 1.0
) -> float:
    """The least time from the first to the last of ``requests`` under rolling windows.

    Request ``k`` (0-based) cannot go before ``k // per_second`` seconds (any 1 s holds at
    most ``per_second``) nor before ``60 × (k // per_minute)`` seconds (any 60 s holds at
    most ``per_minute``); the last request's time is the minimum.
    """
    if requests <= 1:
        return 0.0
    k = requests - 1
    return max(
        math.floor(k / per_second) * second_span,
        math.floor(k / per_minute) * 60.0,
    )


def effective(limit: int) -> int:
    return max(1, math.floor(limit * (1 - SAFETY_MARGIN) + 1e-9))


def start_emulator(args: list[str], log: Path) -> EmulatorProcess:
    """Returns the emulator run with ``args``, accepting both benchmark keys."""
    return EmulatorProcess.start(*args, api_keys=(KEY, LATENCY_KEY), log=log, ready_timeout=300)


def write_syncd_config(directory: Path, emulator: EmulatorProcess, key: str = KEY) -> Path:
    """Writes ``syncd.toml`` in ``directory`` for ``emulator`` with the upstream's limits."""
    limits = {
        "per_second": PER_SECOND,
        "per_minute": PER_MINUTE,
        "per_day": PER_DAY,
        "safety_margin": SAFETY_MARGIN,
    }
    sections = emulator_sections(emulator, key=key, database=directory / "mirror.sqlite")
    return write_config(directory / "syncd.toml", merge(sections, {"limits": limits}))


def run_once(config: Path, log: Path, *extra: str) -> tuple[dict[str, Any], float, int]:
    """Run ``syncd --once [extra]``; returns its summary, wall seconds and peak RSS in bytes."""
    started = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(
            [*SYNCD, "-c", str(config), "--once", *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(),
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"syncd --once exited {process.returncode}; see {log}")
    summary = None
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.startswith("{") and '"sync_finished"' in line:
            summary = json.loads(line)
    if summary is None:
        raise SystemExit(f"no sync_finished line in {log}")
    return summary, wall, usage.ru_maxrss * 1024  # Linux reports KiB


def scans(db: Path) -> list[tuple[str, float]]:
    """``(source, scanned_at epoch seconds)`` of every committed window, in order."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT source, scanned_at FROM window_scans ORDER BY id").fetchall()
    finally:
        conn.close()
    return [
        (source, datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp())
        for source, at in rows
    ]


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def window_bodies(mirror: Path) -> tuple[list[tuple[str, bytes]], int]:
    """The backfilled upstream entries (the ``raw`` JSON of each) as find-response bodies of
    whole days, about the backfill's window size each, and that size."""
    conn = sqlite3.connect(f"file:{mirror}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT workspace_id, date, raw FROM time_entries ORDER BY workspace_id, date DESC"
        ).fetchall()
        per_window = conn.execute(
            "SELECT CAST(avg(entries) AS INTEGER) FROM window_scans WHERE source = 'backfill'"
        ).fetchone()[0]
    finally:
        conn.close()
    # Windows hold whole days, as a backfill's do: a day split over two windows would have
    # the second tombstone the first's entries of that day.
    bodies: list[tuple[str, bytes]] = []
    for workspace_id, group in itertools.groupby(rows, key=lambda r: r[0]):
        items: list[str] = []
        for _, day in itertools.groupby(group, key=lambda r: r[1]):
            items.extend(raw for _, _, raw in day)
            if len(items) >= per_window:
                bodies.append((workspace_id, ("[" + ",".join(items) + "]").encode()))
                items = []
        if items:
            bodies.append((workspace_id, ("[" + ",".join(items) + "]").encode()))
    return bodies, per_window


def replay_throughput(mirror: Path, target: Path) -> None:
    """Parse and upsert the backfilled upstream entries again, timing each stage alone.

    The entries are the emulator's own (UUID ids, the raw JSON of each entry, tags), read
    back from the mirror's ``raw`` column, and go into a fresh mirror in windows of the size
    the backfill used, through the store's ``apply_window``: the local write throughput on
    realistic data, without the network or the rate limits.
    """
    bodies, per_window = window_bodies(mirror)
    parse_rates, rates = [], []
    for attempt in range(REPLAYS):
        path = target.with_name(f"{target.stem}-{attempt}{target.suffix}")
        count, parse_seconds, spent, inserted, tombstoned = _replay_into(path, bodies)
        parse_rates.append(count / parse_seconds)
        rates.append(count / spent)
    print(
        f"replay_entries: {count} in {len(bodies)} windows of ~{per_window} "
        f"(inserted {inserted}, tombstoned {tombstoned})"
    )
    print(f"replay_parse_entries_per_s: {statistics.median(parse_rates):,.0f}")
    print(
        f"replay_upsert_entries_per_s: {statistics.median(rates):,.0f} (target >= 20,000; "
        f"median of {REPLAYS}: {', '.join(f'{r:,.0f}' for r in rates)})"
    )


def _replay_into(path: Path, bodies: list[tuple[str, bytes]]) -> tuple[int, float, float, int, int]:
    """Parse each window and apply it to a fresh mirror at ``path`` as a sync does (one
    window in memory at a time, checkpoints in the background).

    Returns the entries, the seconds spent parsing and in ``apply_window``, and the entries
    inserted and tombstoned.
    """
    from syncd import api
    from syncd.records import Source, WindowScan
    from syncd.store import Store

    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)
    count = inserted = tombstoned = 0
    parsing = spent = 0.0
    with Store(path, checkpoint_in_background=True) as store:
        for workspace_id, body in bodies:
            t = time.perf_counter()
            entries = api.parse_time_entries(200, {}, body)
            parsing += time.perf_counter() - t
            scan = WindowScan(
                workspace_id=workspace_id,
                date_from=min(e.date for e in entries),
                date_to=max(e.date for e in entries),
                entries=tuple(entries),
                source=Source.BACKFILL,
                scanned_at="2026-01-01T00:00:00.000Z",
            )
            t = time.perf_counter()
            outcome = store.apply_window(scan)
            spent += time.perf_counter() - t
            count += len(entries)
            inserted += outcome.inserted
            tombstoned += outcome.tombstoned
    return count, parsing, spent, inserted, tombstoned


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspaces", type=int, default=3)
    parser.add_argument("--entries", type=int, default=60_000)
    parser.add_argument("--days", type=int, default=1095)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    # Time syncd as installed: pip compiles an installed package's bytecode, while an
    # editable checkout run with PYTHONDONTWRITEBYTECODE compiles every module at each start.
    compileall.compile_dir(ROOT / "syncd", quiet=1)

    work = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    emulator = start_emulator(
        [
            "--seed", str(args.seed), "--workspaces", str(args.workspaces),
            "--entries", str(args.entries), "--days", str(args.days),
        ],
        work / "emulator.log",
    )  # fmt: skip
    try:
        config = write_syncd_config(work, emulator)
        db = work / "mirror.sqlite"
        truth = sum(w["time_entry_count"] for w in emulator.workspaces())

        summary, wall, rss = run_once(config, work / "first.log")
        stats = emulator.stats()["keys"][KEY]
        requests = summary["requests"]
        raw_min = min_seconds(requests, PER_SECOND, PER_MINUTE)
        eff_s, eff_m = effective(PER_SECOND), effective(PER_MINUTE)
        eff_min = min_seconds(requests, eff_s, eff_m)
        backfill_m = max(1, math.floor(eff_m * BACKFILL_MINUTE_SHARE + 1e-9))
        backfill_min = min_seconds(requests, eff_s, backfill_m)
        first_scans = scans(db)
        sources = [source for source, _ in first_scans]
        steps = gaps([at for _, at in first_scans])
        print(f"entries_upstream: {truth}")
        print(f"backfill_entries_inserted: {summary['inserted']}")
        print(f"backfill_windows: {summary['windows']}")
        print(
            "backfill_windows_by_source: "
            + ", ".join(f"{s}={sources.count(s)}" for s in sorted(set(sources)))
        )
        print(f"backfill_requests: {requests}")
        print(f"backfill_requests_per_1000_entries: {requests / truth * 1000:.2f}")
        print(f"backfill_wall_seconds: {wall:.1f}")
        print(f"backfill_sync_reported_seconds: {summary['duration_seconds']:.1f}")
        print(
            f"backfill_min_seconds_raw_limits: {raw_min:.1f} "
            f"({PER_SECOND}/s, {PER_MINUTE}/min, {requests} requests)"
        )
        print(f"backfill_wall_vs_raw_min: {wall / raw_min:.2f} (target <= 1.10)")
        print(
            f"backfill_min_seconds_effective_limits: {eff_min:.1f} "
            f"({eff_s}/s, {eff_m}/min after safety_margin {SAFETY_MARGIN})"
        )
        print(f"backfill_wall_vs_effective_min: {wall / eff_min:.2f}")
        print(
            f"backfill_min_seconds_backfill_share: {backfill_min:.1f} "
            f"({eff_s}/s, {backfill_m}/min = {BACKFILL_MINUTE_SHARE:.0%} of the effective minute)"
        )
        print(f"backfill_wall_vs_backfill_share_min: {wall / backfill_min:.2f}")
        pacing_min = min_seconds(requests, eff_s, backfill_m, SECOND_SPAN)
        print(
            f"backfill_min_seconds_syncd_pacing: {pacing_min:.1f} ({eff_s} per {SECOND_SPAN} s,"
            f" {backfill_m}/min)"
        )
        print(f"backfill_wall_vs_syncd_pacing_min: {wall / pacing_min:.2f}")
        sync_seconds = summary["duration_seconds"]
        print(
            f"backfill_sync_reported_vs_effective_min: {sync_seconds / eff_min:.2f}"
            " (the run's own duration: first request to last commit, no process start-up)"
        )
        print(f"backfill_429s: {summary['rate_limited']} (emulator: {stats['rate_limited']})")
        print(
            f"backfill_upstream_max_in_any_second: {stats['max_in_any_second']} "
            f"(limit {PER_SECOND})"
        )
        print(
            f"backfill_upstream_max_in_any_minute: {stats['max_in_any_minute']} "
            f"(limit {PER_MINUTE})"
        )
        print(
            f"backfill_seconds_between_windows: median {statistics.median(steps):.3f}, "
            f"max {max(steps):.1f} (fetch + parse + commit of one window; the max includes "
            "budget waits)"
        )
        print(f"backfill_peak_rss_mb: {rss / 2**20:.0f}")

        workspaces = summary["workspaces"]
        # The backfill's requests still fill the shared minute window; a cron run would come
        # minutes later, so let the window roll over before timing the second run.
        time.sleep(61)
        again, wall2, rss2 = run_once(config, work / "second.log")
        sources2 = [source for source, _ in scans(db)[len(first_scans) :]]
        print(f"second_requests: {again['requests']}")
        print(
            f"second_expected_requests: {1 + workspaces + sources2.count('reconcile')} "
            f"(1 workspace list + {workspaces} hot windows + "
            f"{sources2.count('reconcile')} reconciliation windows)"
        )
        print(
            "second_windows_by_source: "
            + ", ".join(f"{s}={sources2.count(s)}" for s in sorted(set(sources2)))
        )
        print(
            f"second_changes: inserted={again['inserted']} updated={again['updated']} "
            f"tombstoned={again['tombstoned']}"
        )
        print(f"second_wall_seconds: {wall2:.2f}")
        print(f"second_sync_reported_seconds: {again['duration_seconds']:.2f}")
        print(f"second_peak_rss_mb: {rss2 / 2**20:.0f}")

        # Re-verify all history now, as after a clean-up of old entries.
        time.sleep(61)
        before_full = len(scans(db))
        full, wall4, rss4 = run_once(config, work / "full.log", "--full")
        sources4 = [source for source, _ in scans(db)[before_full:]]
        per_1000 = full["requests"] / truth * 1000
        print(f"full_requests: {full['requests']} ({per_1000:.2f} per 1,000 entries)")
        print(
            "full_windows_by_source: "
            + ", ".join(f"{s}={sources4.count(s)}" for s in sorted(set(sources4)))
        )
        print(f"full_wall_seconds: {wall4:.1f}")
        print(f"full_peak_rss_mb: {rss4 / 2**20:.0f}")

        # The same backfill into a fresh mirror with a network's round trip added to every
        # request (a delay fault), on a key of its own.
        far = work / "latency"
        far.mkdir()
        emulator.fault(kind="delay", seconds=LATENCY_SECONDS, count=10 * requests)
        slow, wall3, _ = run_once(write_syncd_config(far, emulator, LATENCY_KEY), far / "run.log")
        print(
            f"latency_{LATENCY_SECONDS * 1000:.0f}ms_backfill_wall_seconds: {wall3:.1f} "
            f"({slow['requests']} requests, {slow['rate_limited']} 429s; "
            f"wall / effective minimum {wall3 / eff_min:.2f})"
        )
        print(
            f"latency_{LATENCY_SECONDS * 1000:.0f}ms_backfill_sync_reported_seconds: "
            f"{slow['duration_seconds']:.1f}"
        )
        # Last: the replay loads every entry into this process, whose memory a later child
        # would count in its peak RSS.
        replay_throughput(db, work / "replay.sqlite")
    finally:
        emulator.stop()
        if args.keep:
            print(f"work_dir: {work}")
        else:
            for path in sorted(work.rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()
            work.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
