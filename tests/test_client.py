"""``HttpClient`` over real sockets: fake upstreams (aiohttp apps and a raw TCP server) and
the bundled emulator."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import peewee
import pytest
from aiohttp import web

from syncd.budget import BudgetLimits, RateBudget, key_id_for
from syncd.client import HttpClient, RetryPolicy
from syncd.errors import (
    ApiError,
    AuthError,
    BudgetExhausted,
    MalformedResponse,
    RateLimited,
    ResponseError,
    ServerError,
    ShutdownRequested,
    TransportError,
)
from syncd.records import Priority
from syncd.shutdown import Shutdown
from syncd.store.budget import SqliteBudgetLedger
from syncd.store.migrations import BUDGET_TABLES

KEY = "test-key-4f9a"
FIND = "/api/integrations/zapier/triggers/time-entries/find"
HOOKS = "/api/integrations/zapier/webhooks"
FAST = RetryPolicy(
    max_attempts=4, total_timeout=20, wait_initial=0.01, wait_max=0.05, wait_jitter=0
)

ENTRY = {
    "id": "te-1",
    "date": "2024-01-15T00:00:00.000Z",
    "description": "Write docs",
    "start_time": "2024-01-15T09:00:00.000Z",
    "end_time": "2024-01-15T11:30:00.000Z",
    "duration": 9000,
    "billable": True,
    "manually_entered": False,
    "workspace_id": "w1",
    "workspace_name": "Dev",
    "team_member_id": "tm1",
    "team_member_name": "Ana",
    "tags": [],
    "createdAt": "2024-01-15T11:30:00.000Z",
    "updatedAt": "2024-01-15T11:30:00.000Z",
}


# --------------------------------------------------------------------------- fixtures


class DbThread:
    """The budget's database on one dedicated thread, like the store's ``call``."""

    def __init__(self, path: Path) -> None:
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="db")
        self.db = peewee.SqliteDatabase(
            str(path), pragmas={"journal_mode": "wal", "busy_timeout": 10_000}, timeout=10
        )
        for ddl in BUDGET_TABLES:
            self.pool.submit(self.db.execute_sql, ddl).result()

    def ledger(self, key_id: str) -> SqliteBudgetLedger:
        return SqliteBudgetLedger(self.db, key_id)

    async def call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def rows(self, sql: str, *params) -> list[tuple]:
        return self.pool.submit(lambda: list(self.db.execute_sql(sql, params))).result()

    def close(self) -> None:
        self.pool.submit(self.db.close).result()
        self.pool.shutdown()


@pytest.fixture
def dbt(tmp_path):
    thread = DbThread(tmp_path / "mirror.sqlite")
    yield thread
    thread.close()


@pytest.fixture
def budget(dbt):
    limits = BudgetLimits(per_second=1000, per_minute=10_000, per_day=100_000, safety_margin=0)
    return RateBudget(dbt.ledger(key_id_for(KEY)), limits=limits, runner=dbt.call)


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def make_client(session, budget, base: str, **kwargs) -> HttpClient:
    kwargs.setdefault("retry", FAST)
    return HttpClient(session, budget, api_key=KEY, api_url=f"{base}/v1", app_url=base, **kwargs)


def base_of(server) -> str:
    return str(server.make_url("")).rstrip("/")


class Script:
    """A route that answers from a list of (status, body, headers) and records requests."""

    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[dict, bytes, float]] = []
        self.peers: set = set()

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append((dict(request.headers), body, time.monotonic()))
        self.peers.add(request.transport.get_extra_info("peername"))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        status, payload, headers = (*answer, {})[:3] if len(answer) == 2 else answer
        if callable(payload):
            return await payload(request)
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return web.Response(
            status=status, body=data, headers=headers, content_type="application/json"
        )


async def serve(aiohttp_server, routes: dict[tuple[str, str], Any]):
    app = web.Application()
    for (method, path), handler in routes.items():
        app.router.add_route(
            method, path, handler if inspect.isfunction(handler) else handler.__call__
        )
    return await aiohttp_server(app)


# --------------------------------------------------------------------------- happy paths


async def test_list_workspaces_sends_key_and_version(aiohttp_server, session, budget, dbt):
    route = Script((200, [{"id": "w1", "name": "One"}], {"X-RateLimit-Remaining": "99"}))
    server = await serve(aiohttp_server, {("GET", "/v1/workspaces"): route})
    client = make_client(session, budget, base_of(server), version="1.0")
    workspaces = await client.list_workspaces()
    assert [(w.id, w.name) for w in workspaces] == [("w1", "One")]
    headers = route.requests[0][0]
    assert headers["X-Api-Key"] == KEY
    assert headers["X-Accept-Version"] == "1.0"
    assert client.stats.requests == 1
    assert dbt.rows("SELECT priority FROM budget_grants") == [(int(Priority.HOT),)]
    assert (await budget.snapshot()).server_remaining == 99
    assert KEY not in repr(client)


async def test_find_time_entries(aiohttp_server, session, budget):
    route = Script((200, [ENTRY, {**ENTRY, "id": "te-2"}]))
    server = await serve(aiohttp_server, {("POST", FIND): route})
    client = make_client(session, budget, base_of(server))
    entries = await client.find_time_entries(
        "w1", date_from="2024-01-01", date_to="2024-01-31", priority=Priority.BACKFILL
    )
    assert [e.id for e in entries] == ["te-1", "te-2"]
    headers, body, _ = route.requests[0]
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert json.loads(body) == {
        "workspace_id": "w1",
        "date_after": "2024-01-01T00:00:00.000Z",
        "date_before": "2024-01-31T23:59:59.999Z",
    }
    open_ended = await client.find_time_entries(
        "w1", date_from=None, date_to=None, priority=Priority.HOT
    )
    assert len(open_ended) == 2
    assert json.loads(route.requests[1][1]) == {"workspace_id": "w1"}


async def test_one_session_one_connection(aiohttp_server, session, budget):
    route = Script((200, []))
    server = await serve(aiohttp_server, {("POST", FIND): route})
    client = make_client(session, budget, base_of(server))
    for _ in range(5):
        await client.find_time_entries("w1", date_from=None, date_to=None, priority=Priority.HOT)
    assert len(route.peers) == 1  # keep-alive on the shared session
    assert client.stats.requests == 5


async def test_webhook_management_uses_control_priority(aiohttp_server, session, budget, dbt):
    hook = {"id": "wh_1234567890abcdef", "url": "https://me/h", "events": ["TIMER_STOPPED"]}
    sub = Script((200, {"success": True, "webhook": {**hook, "status": "ACTIVE"}}))
    lst = Script((200, {"success": True, "webhooks": [hook]}))
    delete = Script((200, {"success": True}), (400, {"error": "Webhook not found"}))
    server = await serve(
        aiohttp_server,
        {
            ("POST", f"{HOOKS}/subscribe"): sub,
            ("GET", f"{HOOKS}/subscribe"): lst,
            ("DELETE", f"{HOOKS}/{{id}}"): delete,
        },
    )
    client = make_client(session, budget, base_of(server))
    made = await client.subscribe_webhook(
        "https://me/h", ["TIMER_STOPPED"], secret="s", description=None
    )
    assert made.id == hook["id"]
    assert json.loads(sub.requests[0][1]) == {
        "url": "https://me/h",
        "events": ["TIMER_STOPPED"],
        "secret": "s",
    }
    assert [h.id for h in await client.list_webhooks()] == [hook["id"]]
    await client.delete_webhook(hook["id"])
    await client.delete_webhook(hook["id"])  # already gone counts as deleted
    assert dbt.rows("SELECT DISTINCT priority FROM budget_grants") == [(int(Priority.CONTROL),)]


async def test_budget_exhausted_is_not_retried(aiohttp_server, session, dbt):
    route = Script((200, []))
    server = await serve(aiohttp_server, {("POST", FIND): route})
    limits = BudgetLimits(per_second=10, per_minute=100, per_day=1, safety_margin=0)
    budget = RateBudget(dbt.ledger(key_id_for(KEY)), limits=limits, runner=dbt.call)
    client = make_client(session, budget, base_of(server))
    await client.find_time_entries("w1", date_from=None, date_to=None, priority=Priority.PUSH)
    with pytest.raises(BudgetExhausted):
        await client.find_time_entries("w1", date_from=None, date_to=None, priority=Priority.PUSH)
    assert client.stats.requests == len(route.requests) == 1


# --------------------------------------------------------------------------- retries


async def test_429_waits_for_the_shared_deadline(aiohttp_server, session, budget, dbt):
    route = Script(
        (429, {"error": "Too many requests"}, {"Retry-After": "1"}),
        (200, [ENTRY]),
    )
    server = await serve(aiohttp_server, {("POST", FIND): route})
    client = make_client(session, budget, base_of(server))
    entries = await client.find_time_entries(
        "w1", date_from=None, date_to=None, priority=Priority.HOT
    )
    assert [e.id for e in entries] == ["te-1"]
    assert (client.stats.requests, client.stats.rate_limited, client.stats.retries) == (2, 1, 1)
    first, second = route.requests[0][2], route.requests[1][2]
    assert second - first >= 0.95  # the retry waited for Retry-After, not a short backoff
    grants = [r[0] for r in dbt.rows("SELECT granted_at FROM budget_grants ORDER BY id")]
    (not_before,) = dbt.rows("SELECT not_before FROM budget_state")[0]
    assert grants[1] >= not_before >= grants[0] + 0.95


async def test_429_http_date_and_v1_body(aiohttp_server, session, budget):
    from email.utils import formatdate

    route = Script(
        (
            429,
            {"error": {"code": "RATE_LIMIT_EXCEEDED", "message": "slow down"}},
            {"Retry-After": formatdate(time.time() + 1, usegmt=True)},
        ),
        (200, [{"id": "w1", "name": "One"}]),
    )
    server = await serve(aiohttp_server, {("GET", "/v1/workspaces"): route})
    client = make_client(session, budget, base_of(server))
    assert len(await client.list_workspaces()) == 1
    assert client.stats.rate_limited == 1


async def test_429_storm_gives_up_with_rate_limited(aiohttp_server, session, budget):
    route = Script((429, {"error": "Too many requests"}, {"Retry-After": "0"}))
    server = await serve(aiohttp_server, {("GET", "/v1/workspaces"): route})
    client = make_client(session, budget, base_of(server))
    with pytest.raises(RateLimited):
        await client.list_workspaces()
    assert client.stats.requests == FAST.max_attempts
    assert client.stats.rate_limited == FAST.max_attempts
    assert client.stats.failures == 1


async def test_5xx_burst_is_retried(aiohttp_server, session, budget):
    route = Script(
        (503, b"<html>busy</html>"),
        (500, {"error": "Failed to fetch time entries"}),
        (502, b""),
        (200, [ENTRY]),
    )
    server = await serve(aiohttp_server, {("POST", FIND): route})
    seen: list[str] = []
    client = make_client(session, budget, base_of(server), on_outcome=seen.append)
    entries = await client.find_time_entries(
        "w1", date_from=None, date_to=None, priority=Priority.HOT
    )
    assert len(entries) == 1
    assert (client.stats.requests, client.stats.retries) == (4, 3)
    assert seen == ["server_error"] * 3 + ["ok"]
    assert client.stats.outcomes == {"server_error": 3, "ok": 1}


async def test_5xx_forever_raises_the_last_error(aiohttp_server, session, budget):
    route = Script((500, {"error": "Internal server error"}))
    server = await serve(aiohttp_server, {("POST", FIND): route})
    client = make_client(session, budget, base_of(server))
    with pytest.raises(ServerError, match="Internal server error") as info:
        await client.find_time_entries("w1", date_from=None, date_to=None, priority=Priority.HOT)
    assert info.value.status == 500
    assert client.stats.requests == FAST.max_attempts


async def test_stop_during_an_outage_ends_the_retries(aiohttp_server, session, budget):
    """A stop signal that arrives while upstream fails is not held up by the remaining
    attempts: the next retry is not started and the call raises ShutdownRequested."""
    route = Script((503, b"<html>busy</html>"))
    server = await serve(aiohttp_server, {("POST", FIND): route})
    shutdown = Shutdown()

    def outcome(label: str) -> None:
        shutdown.request()  # the signal arrives during the first failed attempt

    client = make_client(session, budget, base_of(server), on_outcome=outcome, shutdown=shutdown)
    with pytest.raises(ShutdownRequested):
        await client.find_time_entries("w1", date_from=None, date_to=None, priority=Priority.HOT)
    assert client.stats.requests == 1
    assert client.stats.retries == 0


async def test_stop_during_a_backoff_ends_the_call_at_once(aiohttp_server, session, budget):
    """A stop signal that arrives while a failed request waits out a long backoff ends
    the call at once (no further request), instead of after the backoff."""
    route = Script((503, b"<html>busy</html>"))
    server = await serve(aiohttp_server, {("POST", FIND): route})
    shutdown = Shutdown()
    slow = RetryPolicy(max_attempts=3, total_timeout=120, wait_initial=60, wait_max=60)

    def outcome(label: str) -> None:
        asyncio.get_running_loop().call_later(0.2, shutdown.request)  # during the backoff

    client = make_client(
        session, budget, base_of(server), retry=slow, on_outcome=outcome, shutdown=shutdown
    )
    started = time.monotonic()
    with pytest.raises(ShutdownRequested):
        await client.find_time_entries("w1", date_from=None, date_to=None, priority=Priority.HOT)
    assert time.monotonic() - started < 10
    assert client.stats.requests == 1


async def test_stop_lets_the_exchange_on_the_wire_finish(aiohttp_server, session, budget):
    """A stop signal that arrives while a response is on its way does not throw that
    response away: the call returns it (the window can still be committed)."""
    shutdown = Shutdown()

    async def slow_find(request: web.Request) -> web.Response:
        shutdown.request()  # the signal arrives while the request is being answered
        await asyncio.sleep(0.2)
        return web.json_response([ENTRY])

    server = await serve(aiohttp_server, {("POST", FIND): slow_find})
    client = make_client(session, budget, base_of(server), shutdown=shutdown)
    entries = await client.find_time_entries(
        "w1", date_from=None, date_to=None, priority=Priority.HOT
    )
    assert [e.id for e in entries] == ["te-1"]


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, {"error": "Unauthorized"}, AuthError),
        (403, {"error": {"code": "PERMISSION_DENIED", "message": "no"}}, AuthError),
        (400, {"error": "Invalid request parameters"}, ResponseError),
        (404, {"error": "Workspace not found"}, ResponseError),
    ],
)
async def test_4xx_is_not_retried(aiohttp_server, session, budget, status, body, error):
    route = Script((status, body))
    server = await serve(aiohttp_server, {("POST", FIND): route})
    client = make_client(session, budget, base_of(server))
    with pytest.raises(error) as info:
        await client.find_time_entries("w1", date_from=None, date_to=None, priority=Priority.HOT)
    assert type(info.value) is error
    assert client.stats.requests == 1
    assert KEY not in str(info.value)


async def test_malformed_body_is_retried(aiohttp_server, session, budget):
    route = Script((200, b'{"not": "a list"'), (200, {"a": 1}), (200, [ENTRY]))
    server = await serve(aiohttp_server, {("POST", FIND): route})
    client = make_client(session, budget, base_of(server))
    entries = await client.find_time_entries(
        "w1", date_from=None, date_to=None, priority=Priority.HOT
    )
    assert len(entries) == 1
    assert client.stats.requests == 3


async def test_malformed_forever_raises(aiohttp_server, session, budget):
    """A body that is not JSON at all, every time: retried, then raised (a bad field in an
    entry is no reason to retry: the entry is quarantined, see test_api)."""
    route = Script((200, b'[{"id": "e1", "date"'))
    server = await serve(aiohttp_server, {("POST", FIND): route})
    client = make_client(session, budget, base_of(server))
    with pytest.raises(MalformedResponse, match="not JSON"):
        await client.find_time_entries("w1", date_from=None, date_to=None, priority=Priority.HOT)
    assert client.stats.requests == FAST.max_attempts


async def test_timeout_is_a_transport_error(aiohttp_server, session, budget):
    async def slow(request):
        await asyncio.sleep(2)
        return web.json_response([])

    route = Script((200, slow))
    server = await serve(aiohttp_server, {("POST", FIND): route})
    client = make_client(
        session,
        budget,
        base_of(server),
        timeout=aiohttp.ClientTimeout(total=0.2),
        retry=RetryPolicy(max_attempts=2, wait_initial=0.01, wait_max=0.01, wait_jitter=0),
    )
    with pytest.raises(TransportError, match="timed out"):
        await client.find_time_entries("w1", date_from=None, date_to=None, priority=Priority.HOT)
    assert client.stats.requests == 2


async def test_connection_refused_is_a_transport_error(session, budget, unused_tcp_port):
    client = make_client(session, budget, f"http://127.0.0.1:{unused_tcp_port}")
    with pytest.raises(TransportError):
        await client.list_workspaces()
    assert client.stats.requests == FAST.max_attempts


# --------------------------------------------------------------------------- raw TCP faults


class RawServer:
    """A bare TCP server answering each request with the next scripted bytes.

    ``None`` closes the connection without answering; a response is followed by a close.
    """

    def __init__(self, script: list[bytes | None]) -> None:
        self.script = list(script)
        self.requests = 0
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            self.requests += 1
            answer = self.script.pop(0) if len(self.script) > 1 else self.script[0]
            if answer is not None:
                writer.write(answer)
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def http_response(body: bytes, *, length: int | None = None) -> bytes:
    length = len(body) if length is None else length
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {length}\r\nConnection: close\r\n\r\n".encode()
        + body
    )


GOOD = http_response(json.dumps([ENTRY]).encode())
TRUNCATED = http_response(json.dumps([ENTRY]).encode()[:40], length=4000)


@pytest.mark.parametrize(
    ("script", "requests"),
    [
        ([TRUNCATED, GOOD], 2),
        ([None, None, GOOD], 3),
        ([TRUNCATED, None, GOOD], 3),
    ],
    ids=["truncated", "dropped", "both"],
)
async def test_cut_off_responses_are_retried(session, budget, script, requests):
    raw = RawServer(script)
    client = make_client(session, budget, await raw.start())
    entries = await client.find_time_entries(
        "w1", date_from=None, date_to=None, priority=Priority.HOT
    )
    await raw.close()
    assert [e.id for e in entries] == ["te-1"]
    assert raw.requests == client.stats.requests == requests


@pytest.mark.parametrize(
    ("answer", "match"), [(TRUNCATED, "cut off"), (None, "closed the connection")]
)
async def test_cut_off_forever_raises_transport_error(session, budget, answer, match):
    raw = RawServer([answer])
    client = make_client(session, budget, await raw.start())
    with pytest.raises(TransportError, match=match):
        await client.find_time_entries("w1", date_from=None, date_to=None, priority=Priority.HOT)
    await raw.close()
    assert client.stats.requests == FAST.max_attempts


@pytest.mark.parametrize("base", ["http://[::1", "nohost", "ftp://example.com"])
async def test_unusable_url_is_not_retried(session, budget, base):
    client = make_client(session, budget, base)
    with pytest.raises(ApiError, match="invalid upstream URL") as info:
        await client.list_workspaces()
    assert not isinstance(info.value, TransportError)
    assert client.stats.requests == 1


# --------------------------------------------------------------------------- the emulator

emulator_app = pytest.importorskip("syncd.emulator.app")
emulator_settings = pytest.importorskip("syncd.emulator.settings")

EMU_KEY = "emu-key-1"


@pytest.fixture
async def emulator(aiohttp_server):
    settings = emulator_settings.EmulatorSettings(
        workspaces=1,
        entries=300,
        days=60,
        api_keys=(EMU_KEY,),
        rate_per_second=5,
        rate_per_minute=100,
        rate_per_day=10_000,
    )
    return await aiohttp_server(emulator_app.create_app(settings))


def emulator_client(session, dbt, server, **budget_kwargs) -> HttpClient:
    limits = budget_kwargs.pop(
        "limits", BudgetLimits(per_second=5, per_minute=100, per_day=10_000, safety_margin=0.1)
    )
    budget = RateBudget(dbt.ledger(key_id_for(EMU_KEY)), limits=limits, runner=dbt.call)
    base = base_of(server)
    retry = RetryPolicy(wait_initial=0.01, wait_max=0.05, wait_jitter=0)  # 6 attempts
    return HttpClient(
        session, budget, api_key=EMU_KEY, api_url=f"{base}/v1", app_url=base, retry=retry
    )


async def control(session, server, method: str, path: str, body=None):
    async with session.request(method, server.make_url(f"/__emulator{path}"), json=body) as r:
        assert r.status < 300, await r.text()
        return await r.json()


async def test_emulator_windows_are_complete(emulator, session, dbt):
    client = emulator_client(session, dbt, emulator)
    (workspace,) = await client.list_workspaces()
    everything = await client.find_time_entries(
        workspace.id, date_from=None, date_to=None, priority=Priority.BACKFILL
    )
    assert len(everything) == 300
    days = sorted({e.date for e in everything})
    lo, hi = days[len(days) // 3], days[2 * len(days) // 3]
    window = await client.find_time_entries(
        workspace.id, date_from=lo, date_to=hi, priority=Priority.HOT
    )
    assert {e.id for e in window} == {e.id for e in everything if lo <= e.date <= hi}
    assert all(e.workspace_id == workspace.id for e in window)


async def test_emulator_faults_are_survived(emulator, session, dbt):
    client = emulator_client(session, dbt, emulator)
    (workspace,) = await client.list_workspaces()
    for fault in (
        {"kind": "status", "status": 503, "count": 1, "path": FIND},
        {"kind": "truncated", "count": 1, "path": FIND},
        {"kind": "malformed", "count": 1, "path": FIND},
        {"kind": "status", "status": 429, "retry_after": 1, "count": 1, "path": FIND},
    ):
        await control(session, emulator, "POST", "/faults", fault)
    entries = await client.find_time_entries(
        workspace.id, date_from=None, date_to=None, priority=Priority.HOT
    )
    assert len(entries) == 300
    assert client.stats.requests == 1 + 5
    assert client.stats.rate_limited == 1


async def test_emulator_limits_are_never_hit(emulator, session, dbt):
    client = emulator_client(session, dbt, emulator)
    (workspace,) = await client.list_workspaces()
    await asyncio.gather(
        *(
            client.find_time_entries(
                workspace.id, date_from="2000-01-01", date_to="2000-01-01", priority=Priority.HOT
            )
            for _ in range(10)
        )
    )
    stats = await control(session, emulator, "GET", "/stats")
    mine = stats["keys"][EMU_KEY]
    assert mine["requests"] == client.stats.requests == 11
    assert mine["rate_limited"] == 0
    assert mine["max_in_any_second"] <= 5  # we aim at 4/s; arrival jitter is what the margin is for
    assert client.stats.rate_limited == 0
