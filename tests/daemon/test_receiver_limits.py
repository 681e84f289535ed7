"""The receiver bounds what a client can hold: header and body read time, open connections,
and the log lines out-of-resource errors cause. Real sockets, a real subprocess for the file
limit."""

from __future__ import annotations

import asyncio
import errno
import json
import resource
import subprocess
import sys
import textwrap
import time

import aiohttp
import pytest

from syncd.daemon.webhook import (
    MIN_CONNECTIONS,
    RESERVED_FDS,
    ConnectionGuard,
    Refusal,
    ResourceErrorLog,
    connection_limit,
    create_receiver_app,
    start_receiver,
)

TOKEN = "t0ken-abcdefghijklmnopqrstuvwxyz0123456789"


class Ledger:
    def __init__(self) -> None:
        self.refusals: list[Refusal] = []

    async def __call__(self, refusal: Refusal) -> None:
        self.refusals.append(refusal)


async def never_called(event) -> str:
    raise AssertionError("no event should be handed on")


async def serve(ledger: Ledger | None = None, *, secret: str | None = None, **limits):
    """A receiver on a free port; returns ``(runner, port)``."""
    app_limits = {k: limits.pop(k) for k in ("body_timeout",) if k in limits}
    app = create_receiver_app(
        token=TOKEN,
        secret=secret,
        on_event=never_called,
        on_refused=ledger,
        health=lambda: (True, {"status": "ok"}),
        **app_limits,
    )
    return await start_receiver(app, "127.0.0.1", 0, **limits)


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """Whether the server closes the connection (EOF or reset) within ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(1024):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def healthz(port: int) -> tuple[int, float]:
    started = time.perf_counter()
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{port}/healthz", timeout=aiohttp.ClientTimeout(total=5)
        ) as resp,
    ):
        return resp.status, time.perf_counter() - started


async def test_headers_must_arrive_within_the_header_timeout():
    runner, port = await serve(header_timeout=0.3)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /hooks/" + TOKEN.encode() + b" HTTP/1.1\r\nHost: x\r\n")
        started = time.perf_counter()

        async def trickle() -> None:
            for _ in range(40):  # a header byte every 50 ms: never a whole request
                await asyncio.sleep(0.05)
                writer.write(b"X")

        dribble = asyncio.create_task(trickle())
        assert await closed_by_server(reader, within=2.0)
        assert time.perf_counter() - started < 1.0
        dribble.cancel()
        writer.close()
        # An idle connection that never sends anything is closed as well.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_by_server(reader, within=2.0)
        writer.close()
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("signed", "status"), [(False, 202), (True, 401)], ids=["unsigned", "signed"]
)
async def test_a_body_must_arrive_within_the_body_timeout(signed, status):
    """A trickled body is cut off: refused into the ledger (202), or, when a signature
    says it must verify and cannot, 401 with nothing ledgered."""
    ledger = Ledger()
    runner, port = await serve(ledger, secret="s", body_timeout=0.3)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        signature = b"X-Timetracker-Signature: sha256=00\r\n" if signed else b""
        writer.write(
            b"POST /hooks/" + TOKEN.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n"
            + signature
            + b'\r\n{"id": "'
        )
        started = time.perf_counter()

        async def trickle() -> None:
            for _ in range(40):
                await asyncio.sleep(0.05)
                writer.write(b"x")

        dribble = asyncio.create_task(trickle())
        async with asyncio.timeout(2.0):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status} ".encode()), head
        assert time.perf_counter() - started < 1.0
        dribble.cancel()
        writer.close()
    finally:
        await runner.cleanup()
    if status == 202:
        (refusal,) = ledger.refusals
        assert refusal.reason == "body not received within 0.3 s"
        assert refusal.body.startswith(b'{"id": "')
    else:
        assert ledger.refusals == []


async def test_slow_connections_beyond_the_cap_make_room_and_healthz_answers():
    """120 clients that never finish their headers against a cap of 20: the server keeps at
    most 20 open (the oldest idle ones are closed first) and /healthz answers at once."""
    runner, port = await serve(max_connections=20, header_timeout=30)
    streams = []
    try:
        for _ in range(120):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            streams.append((reader, writer))
        await asyncio.sleep(0.2)
        assert runner.server is not None
        assert len(runner.server.connections) <= 20
        closed = [await closed_by_server(r, within=0.01) for r, _ in streams]
        assert sum(closed) >= 100
        assert closed[:100] == [True] * 100  # the oldest went first
        for _ in range(5):
            status, seconds = await healthz(port)
            assert status == 200
            assert seconds < 1.0
    finally:
        for _, writer in streams:
            writer.close()
        await runner.cleanup()


async def test_when_every_connection_is_inside_a_handler_a_new_one_gets_503():
    runner, port = await serve(Ledger(), max_connections=2, body_timeout=5)
    writers = []
    try:
        for _ in range(2):  # two deliveries whose bodies never come
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST /hooks/" + TOKEN.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 100\r\n\r\n{"
            )
            writers.append(writer)
        await asyncio.sleep(0.2)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
        async with asyncio.timeout(2.0):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ")
        assert await closed_by_server(reader, within=1.0)
    finally:
        for writer in writers:
            writer.close()
        await runner.cleanup()


def test_the_connection_cap_leaves_descriptors_free_under_the_file_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, hard))
        assert connection_limit(1024) == 300 - RESERVED_FDS
        assert connection_limit(100) == 100
        resource.setrlimit(resource.RLIMIT_NOFILE, (130, hard))
        assert connection_limit(1024) == MIN_CONNECTIONS
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    with pytest.raises(ValueError, match="at least 1"):
        ConnectionGuard(0)


def test_resource_errors_are_logged_once_per_interval(logs):
    loop = asyncio.new_event_loop()
    passed_on: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: passed_on.append(context))
    now = [0.0]
    handler = ResourceErrorLog(loop, interval=60, clock=lambda: now[0])
    handler.install()
    try:
        emfile = OSError(errno.EMFILE, "Too many open files")
        for _ in range(1000):
            loop.call_exception_handler(
                {"message": "socket.accept() out of system resource", "exception": emfile}
            )
        now[0] = 60.0
        loop.call_exception_handler({"message": "again", "exception": emfile})
        loop.call_exception_handler({"message": "something else", "exception": ValueError()})
    finally:
        handler.uninstall()
        loop.close()
    lines = [e for e in logs if e["event"] == "out_of_resources"]
    assert [e["suppressed"] for e in lines] == [0, 999]
    assert lines[0]["error"] == "Too many open files"
    assert [c["message"] for c in passed_on] == ["something else"]


SERVE_UNDER_A_FULL_FILE_TABLE = textwrap.dedent(
    """
    import asyncio, os, sys
    from syncd.log import configure_logging
    from syncd.daemon.webhook import create_receiver_app, start_receiver

    async def main():
        configure_logging("info", "json")

        async def on_event(event):
            return "applied"

        app = create_receiver_app(
            token="t" * 40, secret=None, on_event=on_event, health=lambda: (True, {})
        )
        runner, port = await start_receiver(app, "127.0.0.1", 0)
        hog = []
        try:  # another part of the process takes every descriptor left
            while True:
                hog.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        print(json.dumps({"event": "listening", "port": port}), flush=True)
        await asyncio.sleep(float(sys.argv[1]))
        await runner.cleanup()

    import json
    asyncio.run(main())
    """
)


@pytest.mark.e2e
def test_a_full_file_table_is_logged_once_not_once_a_second(tmp_path):
    """accept() failing with EMFILE used to log a traceback every second for as long as it
    lasted (asyncio retries every second); now one line per interval says so."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE_UNDER_A_FULL_FILE_TABLE, "3.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256)),
    )
    try:
        assert proc.stdout is not None
        port = None
        while port is None:  # the first lines may say the connection cap was lowered
            line = json.loads(proc.stdout.readline())
            port = line.get("port")
        sockets = []
        deadline = time.monotonic() + 3.0
        import socket

        while time.monotonic() < deadline:
            try:
                sockets.append(socket.create_connection(("127.0.0.1", port), timeout=1))
            except OSError:
                pass
            time.sleep(0.1)
        output = proc.communicate(timeout=10)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for sock in sockets:
        sock.close()
    lines = [line for line in output.splitlines() if "receiver_connections_capped" not in line]
    resource_lines = [
        line for line in lines if "out of system resource" in line or "out_of_resources" in line
    ]
    assert len(resource_lines) == 1, output[-3000:]
    assert "Too many open files" in resource_lines[0]
    assert len(lines) < 10, output[-3000:]
