"""``syncd --once`` against an upstream holding an entry syncd cannot store as given.

One entry with a ``duration`` of 10^23 used to make every run exit 1 (SQLite cannot hold the
number), so nothing added upstream afterwards reached the mirror. It is quarantined now:
stored with the duration cleared, recorded in ``rejected_entries``, counted in the run's
summary and by ``status``; the run goes on and exits 0.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta

from tests.support.emulator import SYNCD
from tests.support.environment import clean_env
from tests.support.mirror import differences, mirror_entries, query, truth_entries

from .harness import EXIT_OK, database_of, run_once, write_config

HUGE = 10**23


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _status(config, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SYNCD, "-c", str(config), "status", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
    )


def test_a_bad_upstream_entry_is_quarantined_and_never_blocks_the_run(tmp_path, start_emulator):
    emulator = start_emulator(
        "--seed", "5", "--workspaces", "1", "--entries", "120", "--days", "30", "--no-rate-limit"
    )  # fmt: skip
    (ws,) = emulator.workspace_ids()
    start = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0) - timedelta(2)
    (bad,) = emulator.create(
        [
            {
                "workspace_id": ws,
                "start_time": _iso(start),
                "end_time": _iso(start + timedelta(hours=1)),
                "duration": HUGE,
                "description": "a duration SQLite cannot hold",
            }
        ]
    )
    config = write_config(tmp_path, emulator)
    db = database_of(config)

    first = run_once(config)

    assert first.returncode == EXIT_OK, first.explain()
    assert first.summary["ok"] is True
    assert first.summary["quarantined"] == 1  # once, however many answers held it
    stored = mirror_entries(db, ws)[bad["id"]]
    assert stored["duration_seconds"] is None  # cleared; the rest as upstream sent it
    assert stored["end_time"] == bad["end_time"]
    assert stored["description"] == bad["description"]
    (rejection,) = query(db, "SELECT * FROM rejected_entries")
    assert (rejection["id"], rejection["workspace_id"], rejection["stored"]) == (bad["id"], ws, 1)
    assert "duration" in rejection["reason"]
    truth = truth_entries(emulator, ws)
    assert truth[bad["id"]]["duration_seconds"] == HUGE
    del truth[bad["id"]]
    mirror = mirror_entries(db, ws)
    del mirror[bad["id"]]
    assert differences(truth, mirror) == []

    # An entry added upstream afterwards reaches the mirror; the bad one stays quarantined.
    later = start + timedelta(days=1)
    (added,) = emulator.create(
        [{"workspace_id": ws, "start_time": _iso(later), "end_time": _iso(later + timedelta(1))}]
    )
    second = run_once(config)

    assert second.returncode == EXIT_OK, second.explain()
    assert second.summary["quarantined"] == 1
    assert second.summary["inserted"] == 1
    assert added["id"] in mirror_entries(db, ws)
    (rejection,) = query(db, "SELECT seen_count FROM rejected_entries")
    assert rejection["seen_count"] >= 2

    as_json = _status(config, "--json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["quarantined_entries"] == 1
    assert data["workspaces"][0]["quarantined_entries"] == 1
    as_text = _status(config)
    assert as_text.returncode == 0, as_text.stderr
    assert "quarantined upstream entries: 1" in as_text.stdout
