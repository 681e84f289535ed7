"""End-to-end harness: the emulator and ``syncd --once`` as real processes.

Everything here runs the way an operator would: ``syncd emulator`` on a free loopback port,
a generated TOML config, ``syncd -c FILE --once`` as a subprocess, and the SQLite mirror read
back with the standard library. Nothing is imported from ``syncd`` itself.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SYNCD = [sys.executable, "-m", "syncd"]
#: Environment variables syncd reads; tests must not inherit them from the caller.
SYNCD_ENV = ("SYNCD_API_KEY", "SYNCD_CONFIG", "CREDENTIALS_DIRECTORY", "JOURNAL_STREAM")
READY_TIMEOUT = 60.0

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SYNCD_ENV}
    env.update(extra or {})
    return env


# --------------------------------------------------------------------------- the emulator


class ControlError(AssertionError):
    """The control API answered with an error status."""


class Emulator:
    """``syncd emulator`` as a subprocess, with helpers for its control API.

    ``Emulator.start("--entries", "500", ...)`` waits for the ``emulator_ready`` line;
    :meth:`stop` sends SIGTERM and waits for a clean exit.
    """

    def __init__(self, process: subprocess.Popen[str], ready: dict[str, str], log: Path) -> None:
        self.process = process
        self.ready = ready
        self.url: str = ready["url"]
        self.api_url: str = ready["api_url"]
        self.app_url: str = ready["app_url"]
        self.log = log
        self._drain = threading.Thread(target=self._drain_stdout, daemon=True)
        self._drain.start()

    @classmethod
    def start(cls, *args: str, log: Path, api_key: str = "k") -> Emulator:
        """Start an emulator with ``args`` (``--port 0`` and ``--api-key`` are added)."""
        argv = [*SYNCD, "emulator", "--port", "0", "--api-key", api_key, *args]
        errors = log.open("w", encoding="utf-8")
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=errors, text=True, env=clean_env()
        )
        errors.close()
        try:
            ready = _read_ready_line(process, READY_TIMEOUT)
        except BaseException:
            process.kill()
            process.wait()
            raise
        return cls(process, ready, log)

    def _drain_stdout(self) -> None:
        assert self.process.stdout is not None
        for _ in self.process.stdout:  # keep the pipe from filling up
            pass

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait; returns the exit status (kills if it does not stop)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    # -- control API --------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise ControlError(f"{method} {path}: HTTP {exc.code} {exc.read()[:500]!r}") from exc
        return json.loads(raw) if raw else None

    def workspaces(self) -> list[dict[str, Any]]:
        return self.request("GET", "/__emulator/workspaces")

    def workspace_ids(self) -> list[str]:
        return [w["id"] for w in self.workspaces()]

    def truth(self, workspace_id: str, **filters: str) -> list[dict[str, Any]]:
        """Every entry of the workspace in the find shape (the emulator's truth)."""
        query = urllib.parse.urlencode({"workspace_id": workspace_id, **filters})
        return self.request("GET", f"/__emulator/time-entries?{query}")

    def entry(self, entry_id: str) -> dict[str, Any]:
        return self.request("GET", f"/__emulator/time-entries/{entry_id}")

    def edit(self, entry_id: str, **fields: Any) -> dict[str, Any]:
        return self.request("PATCH", f"/__emulator/time-entries/{entry_id}", fields)

    def delete(self, entry_id: str) -> Any:
        return self.request("DELETE", f"/__emulator/time-entries/{entry_id}")

    def create(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.request("POST", "/__emulator/time-entries", entries)

    def start_timer(self, **body: Any) -> dict[str, Any]:
        return self.request("POST", "/__emulator/timers/start", body)

    def stop_timer(self, **body: Any) -> dict[str, Any]:
        return self.request("POST", "/__emulator/timers/stop", body)

    def fault(self, **body: Any) -> Any:
        return self.request("POST", "/__emulator/faults", body)

    def clear_faults(self) -> Any:
        return self.request("DELETE", "/__emulator/faults")

    def stats(self) -> dict[str, Any]:
        return self.request("GET", "/__emulator/stats")

    def key_stats(self, key: str = "k") -> dict[str, Any]:
        return self.stats()["keys"].get(key, {})

    def reset_stats(self) -> Any:
        return self.request("POST", "/__emulator/stats/reset", {})


def _read_ready_line(process: subprocess.Popen[str], timeout: float) -> dict[str, str]:
    assert process.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(process.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError(f"the emulator printed nothing within {timeout} s")
    line = process.stdout.readline()
    if not line:
        raise AssertionError(f"the emulator exited early (status {process.wait()})")
    ready = json.loads(line)
    assert ready.get("event") == "emulator_ready", line
    return ready


# --------------------------------------------------------------------------- syncd --once


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def write_config(
    directory: Path,
    emulator: Emulator,
    *,
    key: str = "k",
    database: str | Path = "mirror.sqlite",
    name: str = "syncd.toml",
    **sections: Mapping[str, Any],
) -> Path:
    """Write a config pointing at ``emulator``; ``sections`` add keys, e.g. ``sync={...}``."""
    merged: dict[str, dict[str, Any]] = {
        "api": {"url": emulator.api_url, "app_url": emulator.app_url, "key": key},
        "database": {"path": str(database)},
        "logging": {"format": "json"},
    }
    for section, values in sections.items():
        merged.setdefault(section, {}).update(values)
    lines: list[str] = []
    for section, values in merged.items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in values.items())
        lines.append("")
    path = directory / name
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def database_of(config: Path) -> Path:
    """The mirror path a config written by :func:`write_config` names."""
    for line in config.read_text(encoding="utf-8").splitlines():
        if line.startswith("path = "):
            path = Path(json.loads(line.removeprefix("path = ")))
            return path if path.is_absolute() else config.parent / path
    raise AssertionError(f"no database path in {config}")


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

ENTRY_FIELDS = (
    "id",
    "workspace_id",
    "date",
    "start_time",
    "end_time",
    "duration_seconds",
    "description",
    "billable",
    "manually_entered",
    "team_member_id",
    "team_member_name",
    "project_id",
    "project_name",
    "client_id",
    "client_name",
    "task_id",
    "task_name",
    "created_at",
    "updated_at",
    "tags",
)


def connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    conn = connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def scalar(db: Path, sql: str, params: tuple[Any, ...] = ()) -> Any:
    rows = query(db, sql, params)
    return rows[0][0] if rows else None


def mirror_entries(
    db: Path, workspace_id: str | None = None, *, live: bool | None = True
) -> dict[str, dict[str, Any]]:
    """Entries of the mirror in the comparison shape, by id (``live=None``: all rows)."""
    where, params = [], []
    if workspace_id is not None:
        where.append("e.workspace_id = ?")
        params.append(workspace_id)
    if live is True:
        where.append("e.deleted_at IS NULL")
    elif live is False:
        where.append("e.deleted_at IS NOT NULL")
    sql = "SELECT e.* FROM time_entries AS e" + (" WHERE " + " AND ".join(where) if where else "")
    conn = connect(db)
    try:
        rows = conn.execute(sql, params).fetchall()
        tags: dict[str, list[tuple[str, str | None, str | None]]] = {}
        for entry_id, tag_id, name, color in conn.execute(
            "SELECT l.time_entry_id, t.id, t.name, t.color FROM time_entry_tags AS l "
            "LEFT JOIN tags AS t ON t.id = l.tag_id"
        ):
            tags.setdefault(entry_id, []).append((tag_id, name, color))
    finally:
        conn.close()
    result = {}
    for row in rows:
        item = {k: row[k] for k in ENTRY_FIELDS if k != "tags"}
        item["tags"] = sorted(tags.get(row["id"], []))
        item["deleted_at"] = row["deleted_at"]
        result[row["id"]] = item
    return result


def _bool(value: Any) -> int:
    if isinstance(value, str):
        return int(value.lower() == "true")
    return int(bool(value))


def truth_shape(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One find-shaped emulator entry in the mirror's column shape."""
    return {
        "id": entry["id"],
        "workspace_id": entry["workspace_id"],
        "date": entry["date"][:10],
        "start_time": entry["start_time"],
        "end_time": entry["end_time"],
        "duration_seconds": entry["duration"],
        "description": entry["description"] or "",
        "billable": _bool(entry["billable"]),
        "manually_entered": _bool(entry["manually_entered"]),
        "team_member_id": entry["team_member_id"],
        "team_member_name": entry["team_member_name"],
        "project_id": entry["project_id"],
        "project_name": entry["project_name"],
        "client_id": entry["client_id"],
        "client_name": entry["client_name"],
        "task_id": entry["task_id"],
        "task_name": entry["task_name"],
        "created_at": entry["createdAt"],
        "updated_at": entry["updatedAt"],
        "tags": sorted((t["id"], t["name"], t.get("color")) for t in entry.get("tags") or []),
    }


def truth_entries(emulator: Emulator, workspace_id: str) -> dict[str, dict[str, Any]]:
    return {e["id"]: truth_shape(e) for e in emulator.truth(workspace_id)}


def differences(
    truth: Mapping[str, Mapping[str, Any]], mirror: Mapping[str, Mapping[str, Any]], limit: int = 10
) -> list[str]:
    """Human-readable differences between truth and the live mirror (empty when equal)."""
    problems = []
    for missing in sorted(set(truth) - set(mirror))[:limit]:
        problems.append(f"missing from the mirror: {missing} ({truth[missing]['date']})")
    for extra in sorted(set(mirror) - set(truth))[:limit]:
        problems.append(f"live in the mirror but not upstream: {extra} ({mirror[extra]['date']})")
    for entry_id in sorted(set(truth) & set(mirror)):
        for key in ENTRY_FIELDS:
            if truth[entry_id][key] != mirror[entry_id][key]:
                problems.append(
                    f"{entry_id}.{key}: upstream {truth[entry_id][key]!r}, "
                    f"mirror {mirror[entry_id][key]!r}"
                )
        if len(problems) > 3 * limit:
            break
    return problems


def assert_mirror_equals_truth(emulator: Emulator, db: Path) -> dict[str, dict[str, Any]]:
    """Every workspace's live mirror equals the emulator's truth, field by field."""
    everything: dict[str, dict[str, Any]] = {}
    for workspace_id in emulator.workspace_ids():
        truth = truth_entries(emulator, workspace_id)
        mirror = mirror_entries(db, workspace_id)
        problems = differences(truth, mirror)
        assert not problems, f"workspace {workspace_id}:\n" + "\n".join(problems)
        everything.update(truth)
    return everything


FIND_PATH = "/api/integrations/zapier/triggers/time-entries/find"


def wait_for_scans(db: Path, count: int, *, source: str = "backfill", timeout: float = 60) -> int:
    """Poll the mirror until ``count`` window scans of ``source`` are committed."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        if db.exists():
            try:
                seen = scalar(db, "SELECT count(*) FROM window_scans WHERE source = ?", (source,))
            except sqlite3.OperationalError:  # not migrated yet, or busy
                seen = 0
            if seen >= count:
                return seen
        time.sleep(0.05)
    raise AssertionError(f"only {seen} {source} windows committed within {timeout} s")


def assert_committed_windows_hold_the_truth(emulator: Emulator, db: Path) -> int:
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
