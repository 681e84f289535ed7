"""Slow clients cannot take the daemon down: under a few hundred connections that trickle
their headers, with the process's file limit lowered to 256, /healthz answers within a second,
a real delivery still reaches the mirror, its confirming re-scan reaches upstream, and no log
line says a descriptor was missing."""

from __future__ import annotations

import os
import resource
import selectors
import socket
import subprocess
import threading
import time

from tests.support.daemon import wait_for

NOFILE = 256
SLOW_CONNECTIONS = 300
REOPEN_PER_SECOND = 1000


class Slowloris:
    """Keeps ``count`` connections open that send a header byte now and then and never end
    their request; a connection the server closes is opened again (at most
    ``REOPEN_PER_SECOND``)."""

    def __init__(self, port: int, count: int, *, trickle_every: float = 0.5) -> None:
        self.port = port
        self.count = count
        self.trickle_every = trickle_every
        self.reopened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Slowloris:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _open(self, selector: selectors.BaseSelector) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=1)
            sock.sendall(b"POST /hooks/not-the-token HTTP/1.1\r\nHost: x\r\n")
        except OSError:
            return
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        for _ in range(self.count):
            self._open(selector)
        started = next_trickle = time.monotonic()
        closed = 0
        while not self._stop.is_set():
            for key, _ in selector.select(timeout=0.05):
                sock = key.fileobj
                try:
                    data = sock.recv(4096)  # type: ignore[union-attr]
                except OSError:
                    data = b""
                if not data:  # closed by the server: come back
                    selector.unregister(sock)
                    sock.close()  # type: ignore[union-attr]
                    closed += 1
            allowed = int((time.monotonic() - started) * REOPEN_PER_SECOND) - self.reopened
            for _ in range(min(closed, allowed)):
                closed -= 1
                self.reopened += 1
                self._open(selector)
            if time.monotonic() >= next_trickle:
                next_trickle += self.trickle_every
                for key in list(selector.get_map().values()):
                    try:
                        key.fileobj.send(b"X")  # type: ignore[union-attr]
                    except OSError:
                        pass
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        selector.close()


def _start_with_file_limit(daemon, nofile: int) -> None:
    """``daemon.start()`` with the daemon's file limit lowered to ``nofile``."""
    daemon.runs += 1
    log = open(daemon.workdir / f"daemon-{daemon.runs}.log", "wb")  # noqa: SIM115
    daemon.proc = subprocess.Popen(
        daemon.command(),
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)),
    )
    wait_for(daemon._listening, 30, what="the daemon's listener")
    daemon.wait_job("poll", timeout=30)


def _healthz_seconds(daemon) -> float:
    started = time.monotonic()
    reply = daemon.healthz()
    assert reply.status == 200, reply.body
    return time.monotonic() - started


def test_slow_connections_under_a_low_file_limit_leave_the_daemon_working(
    emulator_factory, daemon_factory
):
    emu = emulator_factory(entries=300, days=60)
    daemon = daemon_factory(emu)
    _start_with_file_limit(daemon, NOFILE)
    url = daemon.hook_url
    wait_for(lambda: emu.subscriptions(url), 10, what="the subscription")
    workspace = emu.workspace_ids()[0]
    pid = daemon.proc.pid

    with Slowloris(daemon.port, SLOW_CONNECTIONS) as attack:
        time.sleep(1.0)
        latencies = [_healthz_seconds(daemon)]
        held = len(os.listdir(f"/proc/{pid}/fd"))
        # A real delivery gets through and its confirming re-scan reaches upstream.
        refreshes = daemon.healthz().json()["jobs"]["refresh"]["runs"]
        entry = emu.control("POST", "/timers/start", {"workspace_id": workspace})
        wait_for(
            lambda: daemon.scalar("SELECT 1 FROM time_entries WHERE id = ?", entry["id"]),
            5,
            what="the delivery to reach the mirror",
        )
        wait_for(
            lambda: daemon.healthz().json()["jobs"]["refresh"]["runs"] > refreshes,
            5,
            what="the confirming re-scan",
        )
        for _ in range(5):
            latencies.append(_healthz_seconds(daemon))
            time.sleep(0.2)
        reopened = attack.reopened

    jobs = daemon.healthz().json()["jobs"]
    print(
        f"slow clients: {SLOW_CONNECTIONS}, nofile {NOFILE}, daemon fds {held}, "
        f"closed and reopened {reopened}, /healthz max {max(latencies) * 1000:.0f} ms"
    )
    assert max(latencies) < 1.0
    assert held < NOFILE
    assert reopened > 0  # the cap made room by closing slow connections
    assert all(job["failures"] == 0 for job in jobs.values()), jobs
    log = daemon.log_text()
    assert "Too many open files" not in log
    assert "out of system resource" not in log
    assert len(log.splitlines()) < 200
