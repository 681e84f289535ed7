"""End-to-end fixtures for the daemon: the emulator and ``syncd`` as real subprocesses
(:mod:`tests.support.daemon`), stopped by their own pid when the test ends;
:class:`CaptureServer` records real webhook deliveries (headers and bodies) for replay.

A test's daemons keep their mirror in SQLite unless the test is parametrized over ``backend``
(``@pytest.mark.parametrize("backend", BACKENDS)``, :data:`tests.support.mirror.BACKENDS`): on
``postgresql`` they keep it in a new database of the test's own (``postgres_url``: skipped
with one line when the server is unreachable, outside CI), one database for all the daemons
the test makes.

Every test here is marked e2e (tests/conftest.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import DaemonProc, Emulator, start_emulator
from tests.support.environment import PROXY_ENV, SYNCD_ENV
from tests.support.postgres import postgres_url  # noqa: F401 (a fixture, found by name)


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


@pytest.fixture
def backend() -> str:
    """The mirror's backend: SQLite, unless the test is parametrized over ``backend``."""
    return "sqlite"


@pytest.fixture
def daemon_factory(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., DaemonProc]]:
    made: list[DaemonProc] = []
    assert backend in ("sqlite", "postgresql"), backend
    if backend == "postgresql":
        database_url = str(request.getfixturevalue("postgres_url"))

    def make(emulator: Emulator, **kw: Any) -> DaemonProc:
        if backend == "postgresql":
            kw.setdefault("database_url", database_url)
        daemon = DaemonProc(emulator, tmp_path / f"daemon{len(made)}", **kw)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.kill()


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback requests never go through a proxy; syncd reads only the generated config."""
    for name in PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
    for name in SYNCD_ENV:
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
