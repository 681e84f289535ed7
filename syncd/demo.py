"""``make demo``: start the bundled emulator, mirror it once, and show the result.

Runs everything as real processes, the way a user would: ``syncd emulator`` on a free
loopback port with seeded data and the real rate limits, ``syncd --once`` against it with a
generated config, then the README's example queries through ``syncd sql``.

The emulator runs at a fixed instant (``NOW``) with a fixed seed, so its data, and the
answers to the queries (which name their dates), are the same on every machine and every
day: the outputs quoted in README.md are exactly what the demo prints (``tests/test_docs.py``
keeps them equal).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from syncd.cli.render import plain_table

DEMO_DIR = Path("demo")
#: The emulator's clock starts here: same seed and instant, same data.
NOW = "2026-12-01T12:00:00Z"
# title -> query; the README quotes each with the output the demo prints for it.
QUERIES = {
    "Hours per project in November 2026": """
        SELECT coalesce(project_name, '(no project)') AS project,
               coalesce(client_name, '-') AS client, round(sum(hours), 1) AS hours
        FROM live_time_entries
        WHERE date BETWEEN '2026-11-01' AND '2026-11-30'
        GROUP BY project_name, client_name
        ORDER BY hours DESC, project LIMIT 5""",
    "Billable share per month in one workspace": """
        SELECT month, round(billable_hours, 1) AS billable, round(non_billable_hours, 1) AS other,
               round(100 * billable_hours / hours) AS billable_pct
        FROM billable_hours_per_month
        WHERE workspace_id = (SELECT id FROM workspaces WHERE name = 'Acme Engineering')
          AND month BETWEEN '2026-09' AND '2026-11'
        ORDER BY month""",
    "Entries mentioning an invoice last quarter": """
        SELECT e.date, e.team_member_name AS member, e.description
        FROM time_entries_fts AS f JOIN time_entries AS e ON e.rowid = f.rowid
        WHERE time_entries_fts MATCH 'invoice*' AND e.deleted_at IS NULL
          AND e.date BETWEEN '2026-07-01' AND '2026-09-30'
        ORDER BY e.date DESC, e.id LIMIT 3""",
    "Entries per workspace": """
        SELECT w.name AS workspace, count(e.id) AS live_entries,
               round(sum(e.duration_seconds) / 3600.0) AS hours
        FROM workspaces AS w JOIN time_entries AS e ON e.workspace_id = w.id
        WHERE e.deleted_at IS NULL AND e.date < '2026-12-01' GROUP BY w.id ORDER BY w.name""",
}


def _syncd(*args: str) -> list[str]:
    return [sys.executable, "-m", "syncd", *args]


def _write_config(ready: dict, path: Path) -> None:
    path.write_text(
        "\n".join(
            [
                "[api]",
                f'url = "{ready["api_url"]}"',
                f'app_url = "{ready["app_url"]}"',
                'key = "demo-key"',
                "",
                "[database]",
                'path = "mirror.sqlite"',
                "",
                "[logging]",
                'format = "console"',
                "",
            ]
        ),
        encoding="utf-8",
    )


def query_output(config: Path, sql: str) -> str:
    """``sql`` run by ``syncd sql`` on the demo mirror, as the aligned text the README quotes.

    Raises ``subprocess.CalledProcessError`` when the query fails.
    """
    done = subprocess.run(
        _syncd("-c", str(config), "sql", "--json", " ".join(sql.split())),
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(done.stdout)
    if not rows:
        return "(no rows)\n"
    columns = list(rows[0])
    cells = [["" if row[c] is None else str(row[c]) for c in columns] for row in rows]
    return plain_table(columns, cells, right=set())


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit code of the sync run."""
    parser = argparse.ArgumentParser(prog="python -m syncd.demo", description=__doc__)
    parser.add_argument("--dir", type=Path, default=DEMO_DIR, help="Where the mirror goes.")
    parser.add_argument(
        "--no-rate-limit",
        action="store_true",
        help="Run the emulator without rate limits (same data and answers, sooner).",
    )
    args = parser.parse_args(argv)
    directory: Path = args.dir
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("mirror.sqlite*"):
        stale.unlink()
    config = directory / "config.toml"
    emulator_args = ["--port", "0", "--seed", "42", "--workspaces", "3", "--entries", "5000"]
    emulator_args += ["--days", "365", "--api-key", "demo-key", "--now", NOW]
    if args.no_rate_limit:
        emulator_args.append("--no-rate-limit")
    emulator = subprocess.Popen(
        _syncd("emulator", *emulator_args), stdout=subprocess.PIPE, text=True
    )
    try:
        assert emulator.stdout is not None
        ready = json.loads(emulator.stdout.readline())
        limits = "no rate limits" if args.no_rate_limit else "real rate limits"
        print(f"emulator: {ready['url']} (3 workspaces, 5,000 entries, {limits}, now {NOW})")
        _write_config(ready, config)
        print(f"$ syncd -c {config} --once", flush=True)
        code = subprocess.call(_syncd("-c", str(config), "--once"))
        if code != 0:
            return code
        for title, sql in QUERIES.items():
            print(f"\n== {title}")
            print(query_output(config, sql), end="", flush=True)
        mirror = directory / "mirror.sqlite"
        print(f"\nThe mirror is {mirror}; try: sqlite3 {mirror}")
        return 0
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


if __name__ == "__main__":
    raise SystemExit(main())
