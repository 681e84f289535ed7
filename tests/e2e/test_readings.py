"""``syncd --once`` stays exact under every reading of the find window the docs leave open.

The emulator plays each one: ``date_after``/``date_before`` on the entry's date or on its
creation time, inclusive or exclusive bounds, answers silently capped below the window target,
and large finds timing out with a 504. With no config change, a first run mirrors the truth,
and a second one converges after silent edits, deletes, moves and backdated adds.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest

from tests.support.environment import clean_env
from tests.support.mirror import assert_mirror_equals_truth, scalar

from .harness import EXIT_OK, database_of, run_once, write_config
from .test_once import FULL_SWEEP, day_at, iso

READINGS = [
    pytest.param(field, bounds, cap, timeout, id=f"{field}-{bounds}-cap{cap}-timeout{timeout}")
    for field, bounds, cap, timeout in itertools.product(
        ("date", "created_at"), ("inclusive", "exclusive"), (0, 100), (0, 150)
    )
]


@pytest.mark.parametrize(("field", "bounds", "cap", "timeout"), READINGS)
def test_once_is_exact_under_every_reading(tmp_path, start_emulator, field, bounds, cap, timeout):
    emulator = start_emulator(
        "--seed", "5", "--workspaces", "2", "--entries", "500", "--days", "120",
        "--no-rate-limit", "--date-filter-field", field, "--date-bounds", bounds,
        "--find-cap", str(cap), "--find-timeout-above", str(timeout),
        "--find-timeout-delay", "0.01",
    )  # fmt: skip
    ws_a, ws_b = emulator.workspace_ids()
    config = write_config(tmp_path, emulator, sync=FULL_SWEEP)
    db = database_of(config)

    first = run_once(config)

    assert first.returncode == EXIT_OK, first.explain()
    assert_mirror_equals_truth(emulator, db)
    reading = json.loads(
        scalar(db, "SELECT value FROM installation WHERE key = 'upstream_reading'")
    )
    assert reading["field"] == field, reading  # the seeded backdated entries prove it
    # Entries dated outside the asked range come back only when the window reads creation
    # time; the run's summary counts them once.
    assert ("outside_window" in first.summary) == (field == "created_at"), first.summary
    if cap:
        assert reading["cap"] == cap, reading

    entries = sorted(
        (e for e in emulator.entries(ws_a) if e["end_time"] is not None), key=lambda e: e["date"]
    )
    emulator.edit(entries[10]["id"], description="edited long after")
    moved = day_at(90, hour=8)
    emulator.edit(
        entries[-4]["id"],
        date=iso(moved.replace(hour=0)),
        start_time=iso(moved),
        end_time=iso(moved.replace(hour=9)),
    )
    for entry in (entries[3], entries[50], entries[-2], *emulator.entries(ws_b)[5:8]):
        emulator.delete(entry["id"])
    emulator.create(
        [
            {"workspace_id": ws_b, "start_time": iso(day_at(d)), "end_time": iso(day_at(d, 12)),
             "description": f"backdated {d}"}
            for d in (1, 20, 75, 110)
        ]
    )  # fmt: skip

    second = run_once(config)

    assert second.returncode == EXIT_OK, second.explain()
    assert_mirror_equals_truth(emulator, db)
    third = run_once(config)
    assert third.returncode == EXIT_OK, third.explain()
    assert (third.summary["tombstoned"], third.summary["inserted"]) == (0, 0)


def test_status_shows_what_was_learned_and_a_pin(tmp_path, start_emulator):
    """``status`` (text and JSON) says which field the window filters on and why; a pinned
    field is shown as pinned."""
    emulator = start_emulator(
        "--seed", "5", "--workspaces", "1", "--entries", "300", "--days", "60",
        "--no-rate-limit", "--date-filter-field", "created_at",
    )  # fmt: skip
    config = write_config(tmp_path, emulator, sync=FULL_SWEEP)
    assert run_once(config).returncode == EXIT_OK

    shown = status(config)
    learned = json.loads(shown("--json"))["upstream_reading"]
    assert learned["window_field"] == "created_at"
    assert "came back for" in learned["window_field_evidence"]
    text = shown()
    assert "find window field: created_at" in text
    assert "because: entry" in text

    pinned = write_config(
        tmp_path,
        emulator,
        name="pinned.toml",
        database=tmp_path / "pinned.sqlite",
        sync=FULL_SWEEP,
        api={"window_field": "date"},
    )
    run = run_once(pinned)
    assert run.returncode == EXIT_OK, run.explain()
    assert "pinned" in json.loads(status(pinned)("--json"))["upstream_reading"]["window_field"]


def status(config):
    def shown(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "syncd", "-c", str(config), "status", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env(),
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    return shown
