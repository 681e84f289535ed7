"""The daemon as a real process, for end-to-end tests: the emulator seeded for it, ``python -m
syncd -c FILE`` on a generated config, and plain HTTP to its listener.

- :func:`start_emulator` runs the emulator (:class:`Emulator`, an
  :class:`tests.support.emulator.EmulatorProcess` that can also call its Zapier API);
- :class:`DaemonProc` writes a config file, runs the daemon, talks to its listener
  (``/hooks/<token>``, ``/healthz``, ``/metrics``) and reads the mirror through read-only
  connections: a SQLite file in its working directory, or the PostgreSQL database it was
  given (:mod:`tests.support.mirror`);
- :func:`mirror_differences` compares the mirror's live entries with the emulator's, field by
  field (:mod:`tests.support.mirror`).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.config import write_config
from tests.support.emulator import SYNCD, ZAPIER, EmulatorProcess
from tests.support.mirror import Location, differences, mirror_entries, truth_shape
from tests.support.mirror import query as query_mirror
from tests.support.net import free_port

API_KEY = "k"
READY_TIMEOUT = 20.0


# ----------------------------------------------------------------------------- plumbing


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str,
    url: str,
    *,
    json_body: Any = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Reply:
    """One HTTP request; never raises for an HTTP status."""
    headers = dict(headers or {})
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return Reply(resp.status, dict(resp.headers), resp.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, dict(exc.headers), exc.read())


def wait_for(
    predicate: Callable[[], Any], timeout: float, *, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def _stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# ----------------------------------------------------------------------------- emulator


class Emulator(EmulatorProcess):
    """The emulator, plus requests to its Zapier API that return any status."""

    def zapier(self, method: str, path: str, body: Any = None, key: str | None = None) -> Reply:
        headers = {"Authorization": f"Bearer {key or self.api_key}"}
        return http(method, f"{self.url}{ZAPIER}{path}", json_body=body, headers=headers)


def start_emulator(
    *extra: str,
    entries: int = 2000,
    days: int = 200,
    workspaces: int = 2,
    keys: tuple[str, ...] = (API_KEY,),
    log_path: Path | None = None,
) -> Emulator:
    """Returns a started emulator seeded with ``entries`` over ``days`` in ``workspaces``,
    accepting ``keys`` and plain-HTTP webhook targets."""
    args = ["--seed", "42", "--workspaces", str(workspaces), "--entries", str(entries)]
    args += ["--days", str(days), "--allow-http-webhooks", *extra]
    emulator = Emulator.start(*args, api_keys=keys, log=log_path, ready_timeout=READY_TIMEOUT)
    assert isinstance(emulator, Emulator)
    return emulator


# ----------------------------------------------------------------------------- daemon


@dataclass
class DaemonProc:
    """One configuration (mirror, listener port) and the daemon processes run on it.

    The mirror is ``mirror.sqlite`` in ``workdir``, or the PostgreSQL database at
    ``database_url`` (``[database] url``); then the processes run with ``STATE_DIRECTORY``
    set to ``workdir``, where syncd keeps the webhook token file a SQLite mirror has beside
    it, under the same name."""

    emulator: Emulator
    workdir: Path
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscribe: bool = True
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    runs: int = 0
    database_url: str | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.workdir / "mirror.sqlite"
        database = {"path": str(self.db_path)}
        if self.database_url is not None:
            database = {"url": self.database_url}
        sections: dict[str, dict[str, Any]] = {
            "api": {
                "url": self.emulator.api_url,
                "app_url": self.emulator.app_url,
                "key": self.emulator.api_key,
                "max_attempts": 2,
                "timeout_seconds": 10,
            },
            "database": database,
            "limits": {"per_day": 1_000_000},
            "sync": {"interval_seconds": 600},
            "webhooks": {
                "listen": f"127.0.0.1:{self.port}",
                "debounce_seconds": 0.3,
            },
            "logging": {"format": "json", "level": "info"},
        }
        if self.subscribe:
            sections["webhooks"]["public_url"] = self.base_url
        for name, values in self.overrides.items():
            sections.setdefault(name, {}).update(values)
        self.config_path = write_config(self.workdir / "config.toml", sections)

    # -- processes ---------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def location(self) -> Location:
        """The mirror: the SQLite file's path or the PostgreSQL URL."""
        return self.database_url if self.database_url is not None else self.db_path

    @property
    def postgres(self) -> bool:
        return self.database_url is not None

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "syncd", "-c", str(self.config_path), *args]

    def env(self) -> dict[str, str] | None:
        """The environment of the processes: this one's (None), and with a mirror in
        PostgreSQL ``STATE_DIRECTORY`` naming ``workdir`` for the webhook token file."""
        if self.database_url is None:
            return None
        return {**os.environ, "STATE_DIRECTORY": str(self.workdir)}

    def start(self, *, wait_poll: bool = True, timeout: float = 30.0) -> DaemonProc:
        """Start the daemon and wait until it listens (and, by default, its first poll
        succeeded)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.runs += 1
        log = open(self.workdir / f"daemon-{self.runs}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, env=self.env()
        )
        self.started_at = time.monotonic()
        wait_for(self._listening, timeout, what="the daemon's listener")
        if wait_poll:
            self.wait_job("poll", timeout=timeout)
        return self

    def _listening(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"daemon exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
        try:
            return http("GET", f"{self.base_url}/healthz", timeout=1).status in (200, 503)
        except OSError:
            return False

    def wait_job(self, job: str, *, timeout: float = 30.0, runs: int = 1) -> dict:
        """Wait until ``job`` succeeded at least ``runs`` times in this process."""

        def done() -> dict | None:
            info = self.healthz().json()["jobs"][job]
            ok_runs = info["runs"] - info["failures"]
            return info if ok_runs >= runs and not info["running"] else None

        return wait_for(done, timeout, interval=0.1, what=f"{job} to succeed")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> tuple[int, float]:
        """Send ``sig`` and wait; returns ``(exit status, seconds to exit)``."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            pytest.fail(f"daemon did not exit within {timeout}s of signal {sig}")
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc is not None:
            _stop_process(self.proc)

    def log_text(self) -> str:
        return (self.workdir / f"daemon-{self.runs}.log").read_text(errors="replace")

    def log_events(self) -> list[dict]:
        events = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    pass
        return events

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.command(*args), capture_output=True, timeout=timeout, check=False, env=self.env()
        )

    def status(self) -> dict:
        result = self.cli("status", "--json")
        assert result.returncode == 0, result.stderr.decode()
        return json.loads(result.stdout)

    # -- listener ----------------------------------------------------------------------

    def healthz(self) -> Reply:
        return http("GET", f"{self.base_url}/healthz")

    def metrics(self) -> dict[str, float]:
        """``/metrics`` as ``{"name{labels}": value}``."""
        reply = http("GET", f"{self.base_url}/metrics")
        assert reply.status == 200
        return parse_metrics(reply.body.decode())

    @property
    def token(self) -> str:
        # The token file syncd keeps beside the mirror (mode 0600), or in STATE_DIRECTORY.
        return (self.workdir / "mirror.sqlite.webhook-token").read_text().strip()

    @property
    def hook_url(self) -> str:
        return f"{self.base_url}/hooks/{self.token}"

    def post_hook(
        self, body: bytes, headers: dict[str, str] | None = None, *, url: str | None = None
    ) -> Reply:
        headers = {"Content-Type": "application/json", **(headers or {})}
        return http("POST", url or self.hook_url, data=body, headers=headers)

    # -- mirror ------------------------------------------------------------------------

    def db(self) -> sqlite3.Connection:
        """A read-only connection to the SQLite mirror (what any other reader would use)."""
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        return conn

    def query(self, sql: str, *args: Any) -> list[Any]:
        """The rows ``sql`` (``?`` placeholders) selects from the mirror, on either backend
        (:func:`tests.support.mirror.query`)."""
        if self.postgres:
            return query_mirror(self.location, sql, args)
        conn = self.db()
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def scalar(self, sql: str, *args: Any) -> Any:
        rows = self.query(sql, *args)
        return rows[0][0] if rows else None

    def setting(self, key: str) -> str | None:
        return self.scalar("SELECT value FROM installation WHERE key = ?", key)

    def live_entries(self) -> dict[str, Any]:
        rows = self.query("SELECT * FROM time_entries WHERE deleted_at IS NULL")
        return {row["id"]: row for row in rows}


# ----------------------------------------------------------------------------- checks


def parse_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        out[name] = float(value)
    return out


def mirror_differences(daemon: DaemonProc, truth: dict[str, dict]) -> list[str]:
    """How the mirror's live entries differ from ``truth`` (the emulator's entries by id,
    as :meth:`EmulatorProcess.truth` returns them), field by field; empty when equal."""
    want = {entry_id: truth_shape(entry) for entry_id, entry in truth.items()}
    return differences(want, mirror_entries(daemon.location))


def mirror_matches_truth(daemon: DaemonProc, emulator: Emulator) -> bool:
    return not mirror_differences(daemon, emulator.truth())


class LoggedDaemon:
    """One ``syncd`` daemon process started with a config of its own, its JSON log (stderr)
    kept in a file to read the events back; several of them share one database in the tests
    and benchmarks of several instances."""

    def __init__(self, name: str, config: Path, log: Path, env: dict[str, str]) -> None:
        self.name = name
        self.config = config
        self.log = log
        with log.open("w", encoding="utf-8") as errors:
            self.process = subprocess.Popen(
                [*SYNCD, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=errors, env=env
            )

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The daemon's log events so far (named ``name``), skipping a line being written."""
        found = []
        for line in self.log.read_text(encoding="utf-8").splitlines():
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if name is None or event.get("event") == name:
                found.append(event)
        return found

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def epoch(stamp: str) -> float:
    """A log event's ISO 8601 timestamp as epoch seconds."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
