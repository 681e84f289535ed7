"""End-to-end fixtures for the daemon: the emulator and ``syncd`` as real subprocesses.

Everything goes over real loopback sockets and real SQLite files:

- :func:`start_emulator` runs ``python -m syncd emulator --port 0 ...`` and reads its
  ``emulator_ready`` line;
- :class:`DaemonProc` writes a config file, runs ``python -m syncd -c FILE`` (the daemon),
  talks to its listener (``/hooks/<token>``, ``/healthz``, ``/metrics``) and reads the mirror
  through read-only SQLite connections;
- :func:`mirror_differences` compares the mirror's live entries with the emulator's;
- :class:`CaptureServer` records real webhook deliveries (headers and bodies) for replay.

Every process is stopped by its own pid when the test ends.
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

API_KEY = "k"
ZAPIER = "/api/integrations/zapier"
READY_TIMEOUT = 20.0


# ----------------------------------------------------------------------------- plumbing


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


@dataclass
class Emulator:
    proc: subprocess.Popen
    url: str
    api_key: str = API_KEY

    def control(self, method: str, path: str, body: Any = None) -> Any:
        reply = http(method, f"{self.url}/__emulator{path}", json_body=body)
        assert reply.status < 300, (method, path, reply.status, reply.body[:500])
        return reply.json() if reply.body else None

    def zapier(self, method: str, path: str, body: Any = None, key: str | None = None) -> Reply:
        headers = {"Authorization": f"Bearer {key or self.api_key}"}
        return http(method, f"{self.url}{ZAPIER}{path}", json_body=body, headers=headers)

    def stats(self) -> dict:
        return self.control("GET", "/stats")

    def key_stats(self, key: str | None = None) -> dict:
        return self.stats()["keys"].get(key or self.api_key, {"requests": 0, "rate_limited": 0})

    def workspace_ids(self) -> list[str]:
        return [w["id"] for w in self.control("GET", "/workspaces")]

    def entries(self, workspace_id: str) -> list[dict]:
        return self.control("GET", f"/time-entries?workspace_id={workspace_id}")

    def truth(self) -> dict[str, dict]:
        """Every entry of every workspace, by id (find shape)."""
        out: dict[str, dict] = {}
        for workspace_id in self.workspace_ids():
            for entry in self.entries(workspace_id):
                out[entry["id"]] = entry
        return out

    def subscriptions(self, url: str | None = None) -> list[dict]:
        hooks = self.control("GET", "/webhooks")
        hooks = hooks.get("webhooks", hooks) if isinstance(hooks, dict) else hooks
        return [h for h in hooks if url is None or h["url"] == url]

    def stop(self) -> None:
        _stop_process(self.proc)


def start_emulator(
    *extra: str,
    entries: int = 2000,
    days: int = 200,
    workspaces: int = 2,
    keys: tuple[str, ...] = (API_KEY,),
    log_path: Path | None = None,
) -> Emulator:
    args = [sys.executable, "-m", "syncd", "emulator", "--port", "0", "--seed", "42"]
    args += ["--workspaces", str(workspaces), "--entries", str(entries), "--days", str(days)]
    for key in keys:
        args += ["--api-key", key]
    args += ["--allow-http-webhooks", *extra]
    stderr = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr)
    deadline = time.monotonic() + READY_TIMEOUT
    line = b""
    while time.monotonic() < deadline:
        line = proc.stdout.readline() if proc.stdout else b""
        if line.strip().startswith(b"{") or proc.poll() is not None:
            break
    if not line.strip():
        _stop_process(proc)
        raise RuntimeError(f"emulator did not start (exit {proc.poll()})")
    ready = json.loads(line)
    assert ready["event"] == "emulator_ready", ready
    # Keep reading stdout so the emulator can never block on a full pipe.
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # type: ignore[union-attr]
    return Emulator(proc=proc, url=ready["url"])


@pytest.fixture
def emulator_factory(tmp_path: Path) -> Iterator[Callable[..., Emulator]]:
    started: list[Emulator] = []

    def make(*extra: str, **kw: Any) -> Emulator:
        kw.setdefault("log_path", tmp_path / f"emulator-{len(started)}.log")
        emu = start_emulator(*extra, **kw)
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()


# ----------------------------------------------------------------------------- daemon


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


@dataclass
class DaemonProc:
    """One configuration (mirror file, listener port) and the daemon processes run on it."""

    emulator: Emulator
    workdir: Path
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscribe: bool = True
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    runs: int = 0

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.workdir / "mirror.sqlite"
        sections: dict[str, dict[str, Any]] = {
            "api": {
                "url": f"{self.emulator.url}/v1",
                "app_url": self.emulator.url,
                "key": self.emulator.api_key,
                "max_attempts": 2,
                "timeout_seconds": 10,
            },
            "database": {"path": str(self.db_path)},
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

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "syncd", "-c", str(self.config_path), *args]

    def start(self, *, wait_poll: bool = True, timeout: float = 30.0) -> DaemonProc:
        """Start the daemon and wait until it listens (and, by default, its first poll
        succeeded)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.runs += 1
        log = open(self.workdir / f"daemon-{self.runs}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
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
            self.command(*args), capture_output=True, timeout=timeout, check=False
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
        # The token file syncd keeps beside the mirror (mode 0600).
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
        """A read-only connection to the mirror (what any other reader would use)."""
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        return conn

    def query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
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

    def live_entries(self) -> dict[str, sqlite3.Row]:
        rows = self.query("SELECT * FROM time_entries WHERE deleted_at IS NULL")
        return {row["id"]: row for row in rows}


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[..., DaemonProc]]:
    made: list[DaemonProc] = []

    def make(emulator: Emulator, **kw: Any) -> DaemonProc:
        daemon = DaemonProc(emulator, tmp_path / f"daemon{len(made)}", **kw)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.kill()


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
    """How the mirror's live entries differ from the emulator's (empty when equal)."""
    live = daemon.live_entries()
    problems = [f"missing {i}" for i in sorted(set(truth) - set(live))]
    problems += [f"extra {i}" for i in sorted(set(live) - set(truth))]
    for entry_id in sorted(set(truth) & set(live)):
        want, have = truth[entry_id], live[entry_id]
        for theirs, ours in (
            ("updatedAt", "updated_at"),
            ("end_time", "end_time"),
            ("start_time", "start_time"),
            ("description", "description"),
        ):
            if want.get(theirs) != have[ours]:
                problems.append(f"{entry_id}.{ours}: {have[ours]!r} != {want.get(theirs)!r}")
    return problems


def mirror_matches_truth(daemon: DaemonProc, emulator: Emulator) -> bool:
    return not mirror_differences(daemon, emulator.truth())


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback requests never go through a proxy; syncd reads only the generated config."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("SYNCD_API_KEY", "SYNCD_CONFIG", "CREDENTIALS_DIRECTORY", "JOURNAL_STREAM"):
        monkeypatch.delenv(name, raising=False)  # the generated config alone decides
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)  # the token file stays in workdir
    monkeypatch.setenv("NO_PROXY", "*")


# ----------------------------------------------------------------------------- capture


class CaptureServer:
    """A plain HTTP server that records every webhook delivery made to it (headers, body)."""

    def __init__(self) -> None:
        deliveries: list[tuple[dict[str, str], bytes]] = []
        self.deliveries = deliveries

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                deliveries.append((dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/capture"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def capture_server() -> Iterator[CaptureServer]:
    server = CaptureServer()
    yield server
    server.close()
