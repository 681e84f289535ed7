"""``make demo``: start the bundled emulator, mirror it once, and show the result.

Runs everything as real processes, the way a user would: ``syncd emulator`` on a free
loopback port with seeded data and the real rate limits, ``syncd --once`` against it with a
generated config, then a few ``syncd sql`` queries on the mirror.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DEMO_DIR = Path("demo")
QUERIES = {
    "Hours per project this month": """
        SELECT coalesce(project_name, '(no project)') AS project,
               coalesce(client_name, '-') AS client, round(sum(hours), 1) AS hours
        FROM live_time_entries
        WHERE date >= date('now', 'start of month')
        GROUP BY project_name, client_name
        ORDER BY hours DESC LIMIT 10""",
    "Running timers": """
        SELECT team_member_name AS member, coalesce(project_name, '-') AS project,
               start_time, round(running_seconds / 3600.0, 2) AS hours_so_far
        FROM running_timers ORDER BY start_time""",
    "Entries per workspace": """
        SELECT w.name AS workspace, count(e.id) AS live_entries,
               round(sum(e.duration_seconds) / 3600.0) AS hours
        FROM workspaces AS w JOIN time_entries AS e ON e.workspace_id = w.id
        WHERE e.deleted_at IS NULL GROUP BY w.id ORDER BY w.name""",
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


def main() -> int:
    """Run the demo; returns the exit code of the sync run."""
    DEMO_DIR.mkdir(exist_ok=True)
    for stale in DEMO_DIR.glob("mirror.sqlite*"):
        stale.unlink()
    config = DEMO_DIR / "config.toml"
    emulator = subprocess.Popen(
        _syncd(
            "emulator",
            "--port",
            "0",
            "--seed",
            "42",
            "--workspaces",
            "3",
            "--entries",
            "5000",
            "--days",
            "365",
            "--api-key",
            "demo-key",
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert emulator.stdout is not None
        ready = json.loads(emulator.stdout.readline())
        print(f"emulator: {ready['url']} (3 workspaces, 5,000 entries, real rate limits)")
        _write_config(ready, config)
        print(f"$ syncd -c {config} --once")
        code = subprocess.call(_syncd("-c", str(config), "--once"))
        if code != 0:
            return code
        for title, sql in QUERIES.items():
            print(f"\n== {title}")
            subprocess.call(_syncd("-c", str(config), "sql", " ".join(sql.split())))
        print(
            f"\nThe mirror is {DEMO_DIR / 'mirror.sqlite'}; try: sqlite3 {DEMO_DIR}/mirror.sqlite"
        )
        return 0
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


if __name__ == "__main__":
    raise SystemExit(main())
