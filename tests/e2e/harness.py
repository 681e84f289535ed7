"""End-to-end harness: ``syncd --once`` as a real process against the emulator's.

Everything here runs the way an operator would: ``syncd emulator`` on a free loopback port
(:mod:`tests.support.emulator`), a generated TOML config, ``syncd -c FILE --once`` as a
subprocess, and the mirror read back with the standard library's sqlite3, or psycopg for a
mirror in PostgreSQL (:mod:`tests.support.mirror`). Nothing is imported from ``syncd`` itself.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tests.support import config as config_files
from tests.support.emulator import SYNCD, EmulatorProcess
from tests.support.environment import clean_env
from tests.support.mirror import (
    Location,
    differences,
    is_postgres,
    mirror_entries,
    query,
    scalar,
    truth_entries,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


# --------------------------------------------------------------------------- syncd --once


def write_config(
    directory: Path,
    emulator: EmulatorProcess,
    *,
    key: str = "k",
    database: Location = "mirror.sqlite",
    name: str = "syncd.toml",
    **sections: Mapping[str, Any],
) -> Path:
    """Writes ``name`` in ``directory``: a config for ``emulator`` and ``key``, the mirror at
    ``database`` (a SQLite file, relative to ``directory``, or a PostgreSQL URL);
    ``sections`` add keys, e.g. ``sync={...}``. Returns its path."""
    base = config_files.emulator_sections(emulator, key=key, database=database)
    merged = config_files.merge(base, sections)
    return config_files.write_config(directory / name, merged)


def database_of(config: Path) -> Location:
    """The mirror a config written by :func:`write_config` names: the SQLite file's path
    (a :class:`Path`), or the PostgreSQL URL (a ``str``)."""
    for line in config.read_text(encoding="utf-8").splitlines():
        if line.startswith("path = "):
            path = Path(json.loads(line.removeprefix("path = ")))
            return path if path.is_absolute() else config.parent / path
        if line.startswith("url = ") and is_postgres(url := json.loads(line[len("url = ") :])):
            return url
    raise AssertionError(f"no database path or url in {config}")


@dataclass
class SyncRun:
    """A finished ``syncd`` process: exit code, output and its JSON log events."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    duration: float
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, args: list[str], code: int, out: str, err: str, duration: float) -> SyncRun:
        # stderr holds the log (JSON lines) and the ``syncd: ...`` messages; ``stderr`` keeps
        # the messages, ``events`` the log and the summary line (stdout).
        messages = "".join(line for line in err.splitlines(True) if not line.startswith("{"))
        return cls(args, code, out, messages, duration, parse_events(err) + parse_events(out))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == name]

    @property
    def summary(self) -> dict[str, Any]:
        (summary,) = self.named("sync_finished")
        return summary

    def explain(self) -> str:
        tail = self.stdout[-4000:]
        return f"exit {self.returncode}\n--- stderr\n{self.stderr}\n--- stdout\n{tail}"


def parse_events(stdout: str) -> list[dict[str, Any]]:
    events = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


def once_argv(config: Path, *extra: str) -> list[str]:
    return [*SYNCD, "-c", str(config), "--once", *extra]


def run_once(config: Path, *extra: str, timeout: float = 120.0) -> SyncRun:
    """Run ``syncd -c CONFIG --once [extra]`` to the end."""
    argv = once_argv(config, *extra)
    started = time.monotonic()
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=clean_env(), check=False
    )
    return SyncRun.of(argv, done.returncode, done.stdout, done.stderr, time.monotonic() - started)


class OnceProcess:
    """A ``syncd --once`` started in the background (for kills and concurrent runs)."""

    def __init__(self, config: Path, *extra: str) -> None:
        self.argv = once_argv(config, *extra)
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)

    def wait(self, timeout: float = 120.0) -> SyncRun:
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
            raise AssertionError(f"syncd --once did not finish in {timeout} s:\n{err}") from None
        return SyncRun.of(
            self.argv, self.process.returncode, out, err, time.monotonic() - self.started
        )


# --------------------------------------------------------------------------- the mirror

FIND_PATH = "/api/integrations/zapier/triggers/time-entries/find"


def wait_for_scans(
    db: Location, count: int, *, source: str = "backfill", timeout: float = 60
) -> int:
    """Poll the mirror until ``count`` window scans of ``source`` are committed."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        if is_postgres(db) or Path(db).exists():
            try:
                seen = scalar(db, "SELECT count(*) FROM window_scans WHERE source = ?", (source,))
            except (sqlite3.OperationalError, psycopg.errors.UndefinedTable):
                seen = 0  # not migrated yet, or busy
            if seen >= count:
                return seen
        time.sleep(0.05)
    raise AssertionError(f"only {seen} {source} windows committed within {timeout} s")


def assert_committed_windows_hold_the_truth(emulator: EmulatorProcess, db: Location) -> int:
    """Whatever the mirror records as scanned is fully and exactly there.

    For every committed window scan, the live mirror entries dated inside it equal the
    truth (upstream unchanged since); every workspace's ``backfill_before`` is covered.
    Returns how many windows were checked.
    """
    truth = {w: truth_entries(emulator, w) for w in emulator.workspace_ids()}
    mirror = mirror_entries(db)
    scans = query(db, "SELECT workspace_id, date_from, date_to FROM window_scans")
    for scan in scans:
        low, high = scan["date_from"] or "0000-00-00", scan["date_to"]
        want = {i: e for i, e in truth[scan["workspace_id"]].items() if low <= e["date"] <= high}
        have = {
            i: e
            for i, e in mirror.items()
            if e["workspace_id"] == scan["workspace_id"] and low <= e["date"] <= high
        }
        problems = differences(want, have)
        assert not problems, f"window {tuple(scan)} committed but:\n" + "\n".join(problems)
    for state in query(db, "SELECT * FROM sync_state"):
        if state["backfill_before"] is None:
            continue
        missing = [
            i
            for i, e in truth[state["workspace_id"]].items()
            if e["date"] >= state["backfill_before"] and i not in mirror
        ]
        assert not missing, f"{state['workspace_id']}: before {state['backfill_before']} {missing}"
        if state["backfill_complete"]:  # then every entry of the workspace is there
            assert set(truth[state["workspace_id"]]) <= set(mirror), state["workspace_id"]
    assert scalar(db, "SELECT count(*) FROM time_entries WHERE deleted_at IS NOT NULL") == 0
    return len(scans)
