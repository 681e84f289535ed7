"""Store benchmarks: upsert throughput, and query speed on a large mirror.

    .venv/bin/python bench/bench_store.py                       # 200k throughput, 1M scale
    .venv/bin/python bench/bench_store.py --entries 100000      # quicker scale run

Figures are printed as ``name: value`` lines. Both parts write through ``Store.apply_window``
(the path a sync uses), in windows of about 1,000 entries.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from syncd.records import Ref, Source, TimeEntry, WindowScan
from syncd.store import ReadOnlyMirror, Store

WORDS = [
    *("design", "review", "standup", "planning", "emails", "support", "call", "research"),
    *("café", "réunion", "refactor", "deploy", "testing", "documentation", "meeting"),
    *("analysis", "東京", "bugfix"),
]
FIRST_DAY = date(2023, 1, 1)


def make_entries(ws: str, day: date, count: int, rng: random.Random, seq: int) -> list[TimeEntry]:
    d = day.isoformat()
    out = []
    for i in range(count):
        start = rng.randrange(6 * 3600, 20 * 3600)
        seconds = rng.randrange(300, 4 * 3600)
        end = start + seconds
        words = rng.sample(WORDS, 3)
        if rng.random() < 0.02:
            words.append("invoice")
        member = rng.randrange(20)
        project = rng.randrange(40)
        entry_id = f"{ws}-{seq + i:08d}"
        out.append(
            TimeEntry(
                id=entry_id,
                workspace_id=ws,
                date=d,
                start_time=f"{d}T{start // 3600:02d}:{start // 60 % 60:02d}:{start % 60:02d}.000Z",
                end_time=f"{d}T{min(end // 3600, 23):02d}:{end // 60 % 60:02d}:{end % 60:02d}.000Z",
                duration_seconds=seconds,
                description=" ".join(words),
                billable=project % 3 != 0,
                manually_entered=False,
                team_member_id=f"{ws}-m{member}",
                team_member_name=f"Member {member}",
                project_id=f"{ws}-p{project}",
                project_name=f"Project {project}",
                client_id=f"{ws}-c{project % 7}",
                client_name=f"Client {project % 7}",
                task_id=None,
                task_name=None,
                created_at=f"{d}T23:00:00.000Z",
                updated_at=f"{d}T23:30:00.000Z",
                tags=(Ref(f"{ws}-t{project % 5}", f"tag {project % 5}"),),
                raw=json.dumps({"id": entry_id}),
            )
        )
    return out


def windows(
    n: int, workspaces: int, days: int, per_window: int, seed: int = 1
) -> Iterator[WindowScan]:
    """Windows of whole days, about ``per_window`` entries each, ``n`` entries in all."""
    rng = random.Random(seed)
    per_day = max(1, n // (workspaces * days))
    days_per_window = max(1, per_window // per_day)
    made = 0
    for w in range(workspaces):
        ws = f"ws{w}"
        for first in range(0, days, days_per_window):
            entries: list[TimeEntry] = []
            span = range(first, min(first + days_per_window, days))
            for offset in span:
                entries += make_entries(ws, FIRST_DAY + timedelta(offset), per_day, rng, made)
                made += per_day
            yield WindowScan(
                workspace_id=ws,
                date_from=(FIRST_DAY + timedelta(span[0])).isoformat(),
                date_to=(FIRST_DAY + timedelta(span[-1])).isoformat(),
                entries=tuple(entries),
                source=Source.BACKFILL,
                scanned_at="2026-01-01T00:00:00.000Z",
            )


def fill(store: Store, scans: Iterator[WindowScan]) -> tuple[int, float]:
    """Apply every scan; return (entries, seconds spent inside apply_window)."""
    total, spent = 0, 0.0
    for scan in scans:
        t = time.perf_counter()
        store.apply_window(scan)
        spent += time.perf_counter() - t
        total += len(scan.entries)
    return total, spent


def timed_ms(fn: Callable[[], object], repeat: int = 5) -> float:
    fn()  # warm the page cache once
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def throughput(n: int, workdir: Path) -> None:
    path = workdir / "throughput.sqlite"
    scans = list(windows(n, 1, 365, 1000))
    with Store(path) as store:
        count, spent = fill(store, iter(scans))
        print(f"upsert_insert_entries_per_s: {count / spent:,.0f}")
        again, spent = fill(store, iter(scans))
        print(f"upsert_unchanged_entries_per_s: {again / spent:,.0f}")
    print(f"upsert_entries: {count}")


def scale(n: int, workdir: Path) -> None:
    path = workdir / "scale.sqlite"
    with Store(path) as store:
        count, spent = fill(store, windows(n, 3, 3 * 365, 1000, seed=2))
    size = sum(os.path.getsize(p) for p in workdir.glob("scale.sqlite*"))
    print(f"scale_entries: {count}")
    print(f"scale_load_entries_per_s: {count / spent:,.0f}")
    print(f"scale_db_size_mb: {size / 1e6:.1f}")
    month = ("2025-03-01", "2025-03-31")
    with ReadOnlyMirror(path) as ro:
        queries: dict[str, Callable[[], object]] = {
            "live_time_entries_month_ms": lambda: ro.query(
                "SELECT * FROM live_time_entries WHERE date BETWEEN ? AND ?", month
            ),
            "live_time_entries_month_sum_ms": lambda: ro.query(
                "SELECT count(*), sum(hours) FROM live_time_entries WHERE date BETWEEN ? AND ?",
                month,
            ),
            "hours_per_day_per_member_month_ms": lambda: ro.query(
                "SELECT * FROM hours_per_day_per_member WHERE date BETWEEN ? AND ?", month
            ),
            "hours_per_week_per_project_month_ms": lambda: ro.query(
                "SELECT * FROM hours_per_week_per_project WHERE week_start BETWEEN ? AND ?",
                ("2025-03-03", "2025-03-31"),
            ),
            "billable_hours_per_month_month_ms": lambda: ro.query(
                "SELECT * FROM billable_hours_per_month WHERE month = ?", ("2025-03",)
            ),
            "running_timers_ms": lambda: ro.query("SELECT * FROM running_timers"),
            "hours_per_project_year_ms": lambda: ro.report_hours(
                "project", "2025-01-01", "2025-12-31"
            ),
            "hours_per_month_year_ms": lambda: ro.report_hours("month", "2025-01-01", "2025-12-31"),
            "hours_per_member_year_ms": lambda: ro.report_hours(
                "member", "2025-01-01", "2025-12-31"
            ),
            "fts_invoice_quarter_ms": lambda: ro.search(
                "invoice", since="2025-01-01", until="2025-03-31", limit=100
            ),
            "fts_invoice_quarter_all_matches_ms": lambda: ro.search(
                "invoice", since="2025-01-01", until="2025-03-31", limit=1_000_000
            ),
        }
        for name, fn in queries.items():
            print(f"{name}: {timed_ms(fn):.1f}")
    cli_month_ms(path, month)


def cli_month_ms(path: Path, month: tuple[str, str]) -> None:
    """The month of ``live_time_entries`` run by the ``sqlite3`` shell, output discarded: the
    query's own time, without building ~27,000 Python rows (``live_time_entries_month_ms``)."""
    shell = shutil.which("sqlite3")
    if shell is None:
        print("live_time_entries_month_sqlite3_shell_ms: skipped (no sqlite3 shell)")
        return
    sql = f"SELECT * FROM live_time_entries WHERE date BETWEEN '{month[0]}' AND '{month[1]}';"
    uri = f"file:{path}?mode=ro"

    def run() -> None:
        subprocess.run([shell, uri], input=sql, text=True, stdout=subprocess.DEVNULL, check=True)

    start_only = timed_ms(lambda: subprocess.run([shell, uri], input="", text=True, check=True))
    print(f"live_time_entries_month_sqlite3_shell_ms: {timed_ms(run) - start_only:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="scale mirror size")
    parser.add_argument("--throughput", type=int, default=200_000, help="entries to upsert")
    parser.add_argument("--keep", action="store_true", help="keep the database files")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="syncd-bench-"))
    try:
        throughput(args.throughput, workdir)
        scale(args.entries, workdir)
    finally:
        if args.keep:
            print(f"databases: {workdir}")
        else:
            for p in workdir.iterdir():
                p.unlink()
            workdir.rmdir()


if __name__ == "__main__":
    main()
