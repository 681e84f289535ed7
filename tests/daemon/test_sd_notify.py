"""sd_notify and the watchdog against a real AF_UNIX datagram socket."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid

import pytest

from syncd.daemon import systemd


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    """A datagram socket standing in for systemd; yields a function returning received
    messages."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))

    def received() -> str:
        return sock.recv(4096).decode()

    yield received
    sock.close()


def test_ready_status_stopping(notify_socket):
    assert systemd.notify_ready("listening on 127.0.0.1:8787")
    assert notify_socket() == "READY=1\nSTATUS=listening on 127.0.0.1:8787"
    assert systemd.notify_status("last sync 12:03\n1234 rows")
    assert notify_socket() == "STATUS=last sync 12:03 1234 rows"
    assert systemd.notify_stopping()
    assert notify_socket() == "STOPPING=1"
    assert systemd.notify_extend_timeout(1.5)
    assert notify_socket() == "EXTEND_TIMEOUT_USEC=1500000"


def test_abstract_socket(monkeypatch):
    name = f"syncd-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify_ready()
        assert sock.recv(100) == b"READY=1"
    finally:
        sock.close()


def test_without_notify_socket_nothing_happens(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify_ready() is False
    systemd.notify(b"READY=1")  # no error either


def test_a_broken_socket_is_logged_not_raised(tmp_path, monkeypatch, logs):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "missing.sock"))
    assert systemd.notify_status("x") is False
    assert logs[-1]["event"] == "sd_notify_failed"
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/path")
    with pytest.raises(OSError):
        systemd.notify(b"READY=1")
    with pytest.raises(ValueError):
        systemd.notify(b"")


def test_watchdog_interval():
    pid = str(os.getpid())
    assert systemd.watchdog_interval({}) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "120000000"}) == 60.0
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "120000000", "WATCHDOG_PID": pid}) == 60
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "120000000", "WATCHDOG_PID": "1"}) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "junk"}) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "0"}) is None


async def test_watchdog_task_pings(notify_socket):
    task = systemd.start_watchdog(environ={"WATCHDOG_USEC": "40000"})  # ping every 20 ms
    assert task is not None
    try:
        loop = asyncio.get_running_loop()
        first = await loop.run_in_executor(None, notify_socket)
        second = await loop.run_in_executor(None, notify_socket)
        assert first == second == "WATCHDOG=1"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert systemd.start_watchdog(environ={}) is None


async def test_watchdog_ping_can_be_withheld(notify_socket, logs):
    task = asyncio.create_task(systemd.watchdog_loop(0.01, alive=lambda: False))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert any(e["event"] == "watchdog_ping_withheld" for e in logs)
