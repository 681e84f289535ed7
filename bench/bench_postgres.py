"""PostgreSQL benchmarks: a backfill into PostgreSQL beside one into SQLite, and the report
queries on a large PostgreSQL mirror.

1. Backfill: the emulator seeded with 3 workspaces × 20,000 entries over 3 years, the real
   rate limits (10/s, 100/min, 10,000/day), one ``syncd --once`` into an empty SQLite file
   and one into an empty PostgreSQL database (``[database] url``), each on a key of its own
   (both start with an empty budget). For each: wall time, requests, 429s, entries written
   per second of wall time, peak RSS, and how the mirror differs from the emulator's truth
   (missing, stale and wrongly live entries; all should be 0).
2. Replay: the backfilled entries parsed and applied again through ``Store.apply_window``
   into a fresh mirror on each backend, in windows of the backfill's size: the local write
   throughput without the network and the rate limits (median of 3).
3. Scale: a mirror of ``--scale-entries`` generated entries (bench_store.py's data) is
   filled into SQLite through ``Store.apply_window`` and copied into PostgreSQL by
   ``syncd migrate-to`` (about twice as fast as filling PostgreSQL through
   ``Store(url).apply_window``, whose rate the replay shows). Then bench_store.py's queries
   (report views for one month, ``report hours`` for a year, search) are timed on PostgreSQL
   beside SQLite, in ms per query (median of 5, after one warm-up) through
   ``ReadOnlyMirror`` (what ``syncd sql`` and ``syncd report`` use), three times: on the
   copy as ``migrate-to`` leaves it (no planner statistics yet), after ``ANALYZE``, and
   with ``jit = off`` for the database (after ``ANALYZE`` the cost estimate of the
   ``report hours`` queries passes ``jit_above_cost``, and compiling them takes longer
   than running them). The month of ``live_time_entries`` is also timed through ``psql``
   (its time without Python rows), by plain psycopg (Python rows, without
   ``ReadOnlyMirror``'s conversion of each value) and as the server's own execution time
   (``EXPLAIN ANALYZE``, no rows sent). The target is < 100 ms per month.

Every part uses a database ``syncd_bench_<random>`` of its own on the server at
``SYNCD_TEST_POSTGRES_URL`` (default postgresql://postgres@127.0.0.1:5432/test), dropped at
the end. When the server cannot be reached it prints one line saying so and exits 0.
Prints ``name: value`` lines. Usage::

    .venv/bin/python bench/bench_postgres.py [--workspaces 3] [--entries 60000] [--days 1095]
        [--scale-entries 1000000] [--skip-backfill] [--skip-scale] [--keep]
"""

from __future__ import annotations

import argparse
import compileall
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # bench_sync and bench_store
sys.path.insert(0, str(ROOT))  # the emulator process and config writer of tests/support

from bench_store import fill, timed_ms, windows  # noqa: E402
from bench_sync import (  # noqa: E402
    BACKFILL_MINUTE_SHARE,
    PER_DAY,
    PER_MINUTE,
    PER_SECOND,
    SAFETY_MARGIN,
    SECOND_SPAN,
    effective,
    min_seconds,
    run_once,
    window_bodies,
)

from tests.support.config import emulator_sections, merge, write_config  # noqa: E402
from tests.support.emulator import SYNCD, EmulatorProcess  # noqa: E402
from tests.support.environment import clean_env  # noqa: E402
from tests.support.mirror import divergence, mirror_entries, truth_entries  # noqa: E402
from tests.support.postgres import admin_url, server_of, url_of_database  # noqa: E402

#: One key per backend: each backfill starts with an empty upstream minute and budget.
SQLITE_KEY = "bench-key-sqlite"
POSTGRES_KEY = "bench-key-postgres"
REPLAYS = 3  # the replay throughput is the median of this many replays
MONTH = ("2025-03-01", "2025-03-31")
YEAR = ("2025-01-01", "2025-12-31")
TARGET_MONTH_MS = 100.0
#: The states of the PostgreSQL copy the queries are timed in, in order.
STAGES = {
    "as_copied": "as migrate-to leaves it (no planner statistics until ANALYZE or autovacuum)",
    "analyzed": "after ANALYZE",
    "analyzed_jit_off": "after ANALYZE, with jit = off for the database's new sessions",
}
#: The queries of one month, whose target is ``TARGET_MONTH_MS``.
MONTH_QUERIES = (
    "live_time_entries_month_ms",
    "live_time_entries_month_sum_ms",
    "hours_per_day_per_member_month_ms",
    "hours_per_week_per_project_month_ms",
    "billable_hours_per_month_month_ms",
)


# ---------------------------------------------------------------------------- the server


def server_problem(admin: str) -> str | None:
    """Why the server at ``admin`` cannot be used (None when it can)."""
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return " ".join(str(exc).split())
    return None


@contextmanager
def fresh_database(admin: str, keep: bool = False) -> Iterator[str]:
    """The URL of a new, empty database ``syncd_bench_<random>``, dropped afterwards."""
    name = f"syncd_bench_{secrets.token_hex(6)}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield url_of_database(admin, name)
    finally:
        if keep:
            print(f"kept_database: {name}")
        else:
            with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


# ---------------------------------------------------------------------------- backfill


def write_syncd_config(
    path: Path, emulator: EmulatorProcess, key: str, database: dict[str, str]
) -> Path:
    """Writes a config at ``path`` for ``emulator`` with the upstream's limits and the
    ``[database]`` section ``database`` (a ``path`` or a ``url``)."""
    limits = {
        "per_second": PER_SECOND,
        "per_minute": PER_MINUTE,
        "per_day": PER_DAY,
        "safety_margin": SAFETY_MARGIN,
    }
    sections = emulator_sections(emulator, key=key)
    sections["database"] = dict(database)
    return write_config(path, merge(sections, {"limits": limits}))


def pacing_min(requests: int) -> float:
    """The least seconds syncd's pacing allows ``requests`` backfill requests of ``--once``
    (bench_sync.py's ``backfill_min_seconds_syncd_pacing``)."""
    per_minute = max(1, int(effective(PER_MINUTE) * BACKFILL_MINUTE_SHARE + 1e-9))
    return min_seconds(requests, effective(PER_SECOND), per_minute, SECOND_SPAN)


def backfill(args: argparse.Namespace, work: Path, url: str) -> Path:
    """Part 1: ``syncd --once`` into SQLite, then into PostgreSQL; returns the SQLite mirror."""
    emulator = EmulatorProcess.start(
        "--seed", str(args.seed), "--workspaces", str(args.workspaces),
        "--entries", str(args.entries), "--days", str(args.days),
        api_keys=(SQLITE_KEY, POSTGRES_KEY), log=work / "emulator.log", ready_timeout=300,
    )  # fmt: skip
    db = work / "mirror.sqlite"
    try:
        truth = truth_entries(emulator)
        print(f"entries_upstream: {len(truth)}")
        runs = {
            "sqlite": (SQLITE_KEY, {"path": str(db)}),
            "postgres": (POSTGRES_KEY, {"url": url}),
        }
        for backend, (key, database) in runs.items():
            config = write_syncd_config(work / f"{backend}.toml", emulator, key, database)
            summary, wall, rss = run_once(config, work / f"{backend}.log")
            stats = emulator.stats()["keys"][key]
            live = mirror_entries(db if backend == "sqlite" else url)
            missing, stale, extra = divergence(truth, live)
            print(f"{backend}_backfill_wall_seconds: {wall:.1f}")
            print(f"{backend}_backfill_sync_reported_seconds: {summary['duration_seconds']:.1f}")
            print(f"{backend}_backfill_requests: {summary['requests']}")
            print(
                f"{backend}_backfill_429s: {summary['rate_limited']} "
                f"(emulator: {stats['rate_limited']})"
            )
            floor = pacing_min(summary["requests"])
            print(
                f"{backend}_backfill_min_seconds_syncd_pacing: {floor:.1f} "
                "(the least time syncd's pacing of a backfill allows for those requests)"
            )
            print(f"{backend}_backfill_entries_inserted: {summary['inserted']}")
            print(
                f"{backend}_backfill_entries_per_s: {summary['inserted'] / wall:,.0f} "
                "(entries inserted / wall seconds)"
            )
            print(f"{backend}_backfill_peak_rss_mb: {rss / 2**20:.0f}")
            print(
                f"{backend}_backfill_divergence: missing={missing} stale={stale} "
                f"wrongly_live={extra}"
            )
    finally:
        emulator.stop()
    return db


# ---------------------------------------------------------------------------- replay


def replay_into(location: str | Path, bodies: list[tuple[str, bytes]]) -> tuple[int, float]:
    """Parse each body and apply it to the empty mirror at ``location`` as a sync does;
    returns the entries and the seconds spent in ``apply_window``."""
    from syncd import api
    from syncd.records import Source, WindowScan
    from syncd.store import Store

    count, spent = 0, 0.0
    with Store(location, checkpoint_in_background=True) as store:
        for workspace_id, body in bodies:
            entries = api.parse_time_entries(200, {}, body)
            scan = WindowScan(
                workspace_id=workspace_id,
                date_from=min(e.date for e in entries),
                date_to=max(e.date for e in entries),
                entries=tuple(entries),
                source=Source.BACKFILL,
                scanned_at="2026-01-01T00:00:00.000Z",
            )
            t = time.perf_counter()
            store.apply_window(scan)
            spent += time.perf_counter() - t
            count += len(entries)
    return count, spent


def replay(mirror: Path, work: Path, admin: str) -> None:
    """Part 2: the backfilled entries applied again into fresh mirrors on each backend."""
    bodies, per_window = window_bodies(mirror)
    rates: dict[str, list[float]] = {"sqlite": [], "postgres": []}
    count = 0
    for attempt in range(REPLAYS):
        count, spent = replay_into(work / f"replay-{attempt}.sqlite", bodies)
        rates["sqlite"].append(count / spent)
        with fresh_database(admin) as url:
            count, spent = replay_into(url, bodies)
        rates["postgres"].append(count / spent)
    print(f"replay_entries: {count} in {len(bodies)} windows of ~{per_window}")
    for backend, values in rates.items():
        print(
            f"{backend}_replay_upsert_entries_per_s: {statistics.median(values):,.0f} "
            f"(median of {REPLAYS}: {', '.join(f'{r:,.0f}' for r in values)})"
        )


# ---------------------------------------------------------------------------- scale


def queries(ro: Any, mark: str) -> dict[str, Callable[[], object]]:
    """bench_store.py's queries on the ReadOnlyMirror ``ro``, ``mark`` its placeholder."""
    between = f"BETWEEN {mark} AND {mark}"
    return {
        "live_time_entries_month_ms": lambda: ro.query(
            f"SELECT * FROM live_time_entries WHERE date {between}", MONTH
        ),
        "live_time_entries_month_sum_ms": lambda: ro.query(
            f"SELECT count(*), sum(hours) FROM live_time_entries WHERE date {between}", MONTH
        ),
        "hours_per_day_per_member_month_ms": lambda: ro.query(
            f"SELECT * FROM hours_per_day_per_member WHERE date {between}", MONTH
        ),
        "hours_per_week_per_project_month_ms": lambda: ro.query(
            f"SELECT * FROM hours_per_week_per_project WHERE week_start {between}",
            ("2025-03-03", "2025-03-31"),
        ),
        "billable_hours_per_month_month_ms": lambda: ro.query(
            f"SELECT * FROM billable_hours_per_month WHERE month = {mark}", ("2025-03",)
        ),
        "running_timers_ms": lambda: ro.query("SELECT * FROM running_timers"),
        "hours_per_project_year_ms": lambda: ro.report_hours("project", *YEAR),
        "hours_per_month_year_ms": lambda: ro.report_hours("month", *YEAR),
        "hours_per_member_year_ms": lambda: ro.report_hours("member", *YEAR),
        "fts_invoice_quarter_ms": lambda: ro.search(
            "invoice", since="2025-01-01", until="2025-03-31", limit=100
        ),
        "fts_invoice_quarter_all_matches_ms": lambda: ro.search(
            "invoice", since="2025-01-01", until="2025-03-31", limit=1_000_000
        ),
    }


def time_queries(location: str | Path, mark: str) -> dict[str, float]:
    """ms per query (median of 5 after a warm-up) of every query on the mirror."""
    from syncd.store import ReadOnlyMirror

    with ReadOnlyMirror(location) as ro:
        return {name: timed_ms(fn) for name, fn in queries(ro, mark).items()}


def month_sql() -> str:
    return f"SELECT * FROM live_time_entries WHERE date BETWEEN '{MONTH[0]}' AND '{MONTH[1]}'"


def psql_month_ms(url: str) -> str:
    """The month of ``live_time_entries`` run by ``psql`` (unaligned, as the ``sqlite3``
    shell's list mode), output discarded, less psql's start-up: the query's time without
    building Python rows (bench_store.py's ``live_time_entries_month_sqlite3_shell_ms``)."""
    shell = shutil.which("psql")
    if shell is None:
        return "skipped (no psql)"

    def run(text: str) -> None:
        subprocess.run(
            [shell, "-X", "-q", "-A", "-t", "-d", url, "-c", text],
            stdout=subprocess.DEVNULL,
            check=True,
            env=clean_env(),
        )

    start_only = timed_ms(lambda: run("SELECT 1"))
    return f"{timed_ms(lambda: run(month_sql() + ';')) - start_only:.1f}"


def psycopg_month_ms(url: str) -> float:
    """The month of ``live_time_entries`` fetched by plain psycopg (its C loaders, no
    per-value conversion as ``ReadOnlyMirror`` makes for ``syncd sql``)."""
    with psycopg.connect(url) as conn:
        return timed_ms(lambda: conn.execute(month_sql()).fetchall())


def server_month_ms(url: str) -> str:
    """The month of ``live_time_entries`` as the server times it (EXPLAIN ANALYZE's
    execution time, no rows sent), and the plan's top node."""
    times, top = [], ""
    with psycopg.connect(url) as conn:
        for _ in range(6):
            (plan,) = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + month_sql()).fetchone()  # type: ignore[misc]
            times.append(plan[0]["Execution Time"])
            top = plan[0]["Plan"]["Node Type"]
    return f"{statistics.median(times[1:]):.1f} (plan: {top})"


def scale(n: int, work: Path, admin: str, keep: bool) -> None:
    """Part 3: a large mirror on both backends, and the report queries timed on each."""
    path = work / "scale.sqlite"
    from syncd.store import Store

    started = time.monotonic()
    with Store(path) as store:
        count, _ = fill(store, windows(n, 3, 3 * 365, 1000, seed=2))
    filled = time.monotonic() - started
    print(f"scale_entries: {count}")
    print(f"scale_sqlite_fill_seconds: {filled:.1f} (Store.apply_window, windows of ~1,000)")
    sqlite_ms = time_queries(path, "?")
    with fresh_database(admin, keep) as url:
        config = write_config(work / "scale.toml", {"database": {"path": str(path)}})
        started = time.monotonic()
        done = subprocess.run(
            [*SYNCD, "-c", str(config), "migrate-to", url],
            capture_output=True,
            text=True,
            env=clean_env(),
            check=False,
        )
        copied = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit(f"syncd migrate-to exited {done.returncode}: {done.stderr}")
        print(
            f"scale_postgres_migrate_to_seconds: {copied:.1f} "
            f"({count / copied:,.0f} entries/s, process start-up and verification included)"
        )
        print(f"scale_postgres_fill_seconds: {filled + copied:.1f} (SQLite fill + migrate-to)")
        with psycopg.connect(url) as conn:
            (size,) = conn.execute("SELECT pg_database_size(current_database())").fetchone()  # type: ignore[misc]
        print(f"scale_postgres_db_size_mb: {size / 1e6:.1f}")
        for stage in STAGES:
            if stage == "analyzed":
                with psycopg.connect(url, autocommit=True) as conn:
                    started = time.monotonic()
                    conn.execute("ANALYZE")
                print(f"scale_postgres_analyze_seconds: {time.monotonic() - started:.1f}")
            elif stage == "analyzed_jit_off":
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(
                        sql.SQL("ALTER DATABASE {} SET jit = off").format(
                            sql.Identifier(conn.info.dbname)
                        )
                    )
            print(f"# report queries, ms per query, PostgreSQL {STAGES[stage]}")
            for name, ms in time_queries(url, "%s").items():
                target = f", target < {TARGET_MONTH_MS:.0f}" if name in MONTH_QUERIES else ""
                print(f"postgres_{stage}_{name}: {ms:.1f} (sqlite {sqlite_ms[name]:.1f}{target})")
            print(
                f"postgres_{stage}_live_time_entries_month_psycopg_ms: {psycopg_month_ms(url):.1f}"
            )
            print(f"postgres_{stage}_live_time_entries_month_psql_ms: {psql_month_ms(url)}")
            print(f"postgres_{stage}_live_time_entries_month_server_ms: {server_month_ms(url)}")


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspaces", type=int, default=3)
    parser.add_argument("--entries", type=int, default=60_000)
    parser.add_argument("--days", type=int, default=1095)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--scale-entries", type=int, default=1_000_000, help="size of the scale mirror"
    )
    parser.add_argument("--skip-backfill", action="store_true", help="parts 1 and 2 left out")
    parser.add_argument("--skip-scale", action="store_true", help="part 3 left out")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    admin = admin_url()
    problem = server_problem(admin)
    if problem is not None:
        print(f"postgres: PostgreSQL at {server_of(admin)} unreachable ({problem}); skipped")
        return 0
    # Time syncd as installed (compiled bytecode), as bench_sync.py does.
    compileall.compile_dir(ROOT / "syncd", quiet=1)
    work = Path(tempfile.mkdtemp(prefix="bench-postgres-"))
    try:
        if not args.skip_backfill:
            with fresh_database(admin, args.keep) as url:
                mirror = backfill(args, work, url)
            replay(mirror, work, admin)
        if not args.skip_scale:
            scale(args.scale_entries, work, admin, args.keep)
    finally:
        if args.keep:
            print(f"work_dir: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
