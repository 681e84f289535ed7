"""Fixtures: an emulator on a real loopback socket, with a frozen, injectable clock."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from aiohttp import web

from syncd.emulator import Clock, EmulatorSettings, create_app
from syncd.emulator.timefmt import parse_iso

NOW = parse_iso("2026-11-27T12:00:00Z") / 1000
Z = "/api/integrations/zapier"
KEY = "demo-key"


@dataclass
class Emu:
    client: object  # aiohttp TestClient
    settings: EmulatorSettings
    clock: Clock

    @property
    def url(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    async def api(self, method: str, path: str, *, key: str | None = KEY, **kw):
        headers = kw.pop("headers", {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return await self.client.request(method, path, headers=headers, **kw)

    async def v1(self, path: str, *, key: str | None = KEY, method: str = "GET", **kw):
        headers = kw.pop("headers", {})
        if key is not None:
            headers["X-Api-Key"] = key
        return await self.client.request(method, path, headers=headers, **kw)

    async def control(self, method: str, path: str, **kw):
        resp = await self.client.request(method, "/__emulator" + path, **kw)
        return resp

    async def cjson(self, method: str, path: str, **kw):
        resp = await self.control(method, path, **kw)
        assert resp.status < 300, await resp.text()
        return await resp.json()

    async def workspaces(self) -> list[dict]:
        return await self.cjson("GET", "/workspaces")

    async def find(self, body: dict, **kw):
        return await self.api("POST", f"{Z}/triggers/time-entries/find", json=body, **kw)


@pytest.fixture
def make_emulator(aiohttp_client):
    async def make(**kw) -> Emu:
        clock = kw.pop("clock", None) or Clock(NOW, frozen=True)
        kw.setdefault("entries", 300)
        kw.setdefault("rate_limit", False)
        kw.setdefault("webhook_retry_delays", (0.01, 0.01))
        kw.setdefault("allow_http_webhooks", True)
        settings = EmulatorSettings(clock=clock, **kw)
        client = await aiohttp_client(create_app(settings))
        return Emu(client, settings, clock)

    return make


@pytest.fixture
async def emu(make_emulator) -> Emu:
    return await make_emulator()


@dataclass
class Receiver:
    url: str
    received: list
    statuses: list  # status codes to answer with, in order; 200 once exhausted

    def events(self) -> list[str]:
        return [r["headers"].get("X-Timetracker-Event") for r in self.received]


@pytest.fixture
async def receiver(aiohttp_server) -> Receiver:
    """A webhook target on a real socket that records every POST."""
    received: list = []
    statuses: list = []

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        received.append({"headers": dict(request.headers), "raw": raw, "path": request.path})
        status = statuses.pop(0) if statuses else 200
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    server = await aiohttp_server(app)
    return Receiver(str(server.make_url("/hook")), received, statuses)
