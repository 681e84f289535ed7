"""Rate limits per key: 1 s burst, rolling 60 s, UTC day; headers; Retry-After; stats."""

from __future__ import annotations

import math

from conftest import NOW, Z


async def _limited(make_emulator, **kw):
    kw.setdefault("rate_limit", True)
    return await make_emulator(entries=20, **kw)


def _headers(resp) -> tuple[int, int, int]:
    h = resp.headers
    return int(h["X-RateLimit-Limit"]), int(h["X-RateLimit-Remaining"]), int(h["X-RateLimit-Reset"])


async def test_burst_window(make_emulator):
    emu = await _limited(make_emulator)
    for i in range(10):
        resp = await emu.v1("/v1/workspaces")
        assert resp.status == 200
        limit, remaining, reset = _headers(resp)
        assert (limit, remaining) == (100, 9 - i)
        assert reset == math.ceil(NOW + 1)
    resp = await emu.v1("/v1/workspaces")
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "1"
    assert await resp.json() == {
        "error": {
            "code": "RATE_LIMIT_EXCEEDED",
            "message": "Too many requests in time period",
            "details": {"issue": "Retry after 1 seconds"},
        }
    }
    assert _headers(resp)[1] == 0
    api = await emu.api("GET", f"{Z}/auth")  # same key, other surface: same budget
    assert api.status == 429
    assert await api.json() == {"error": "Too many requests"}
    emu.clock.advance(0.999)
    assert (await emu.v1("/v1/workspaces")).status == 429
    emu.clock.advance(0.001)
    assert (await emu.v1("/v1/workspaces")).status == 200
    stats = await emu.cjson("GET", "/stats")
    sent = stats["keys"]["demo-key"].pop("bytes_sent")
    assert stats["keys"]["demo-key"] == {
        "requests": 14,
        "rate_limited": 3,
        "max_in_any_second": 10,
        "max_in_any_minute": 11,
    }
    assert sent > 11 * len(b"[]")  # the bodies of the 11 accepted answers


async def test_rolling_minute_window(make_emulator):
    emu = await _limited(make_emulator)
    for _second in range(10):
        for _ in range(10):
            assert (await emu.v1("/v1/workspaces")).status == 200
        emu.clock.advance(1)
    # 100 requests in [NOW, NOW+9]; at NOW+10 the minute window is full
    resp = await emu.v1("/v1/workspaces")
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "50"  # the first ten leave the window at NOW+60
    assert int(resp.headers["X-RateLimit-Reset"]) == math.ceil(NOW + 60)
    assert _headers(resp)[1] == 0
    emu.clock.advance(49.5)
    resp = await emu.v1("/v1/workspaces")
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "1"
    emu.clock.advance(0.5)
    resp = await emu.v1("/v1/workspaces")
    assert resp.status == 200
    stats = (await emu.cjson("GET", "/stats"))["keys"]["demo-key"]
    assert stats["max_in_any_minute"] == 100
    assert stats["max_in_any_second"] == 10


async def test_day_window_resets_at_utc_midnight(make_emulator):
    emu = await _limited(make_emulator, rate_per_day=30)
    for _n in range(30):
        resp = await emu.api("GET", f"{Z}/auth")
        assert resp.status == 200
        emu.clock.advance(7)
    resp = await emu.api("GET", f"{Z}/auth")
    assert resp.status == 429
    midnight = (NOW // 86400 + 1) * 86400
    now = NOW + 30 * 7
    assert int(resp.headers["Retry-After"]) == math.ceil(midnight - now)
    assert int(resp.headers["X-RateLimit-Reset"]) == midnight
    emu.clock.advance(midnight - now)
    assert (await emu.api("GET", f"{Z}/auth")).status == 200


async def test_keys_have_separate_budgets_and_free_paths(make_emulator):
    emu = await _limited(make_emulator, api_keys=("demo-key", "other-key"))
    for _ in range(10):
        assert (await emu.v1("/v1/workspaces")).status == 200
    assert (await emu.v1("/v1/workspaces")).status == 429
    assert (await emu.v1("/v1/workspaces", key="other-key")).status == 200
    assert (await emu.api("GET", "/api/health", key=None)).status == 200
    assert (await emu.control("GET", "/workspaces")).status == 200
    assert (await emu.v1("/v1/workspaces", key="bad")).status == 401


async def test_limits_are_configurable_and_can_be_switched_off(make_emulator):
    emu = await _limited(make_emulator, rate_per_second=2, rate_per_minute=3)
    assert [(await emu.v1("/v1/workspaces")).status for _ in range(3)] == [200, 200, 429]
    emu.clock.advance(1)
    resp = await emu.v1("/v1/workspaces")
    assert resp.status == 200
    assert _headers(resp)[:2] == (3, 0)
    off = await make_emulator(rate_limit=False)
    statuses = {(await off.v1("/v1/workspaces")).status for _ in range(30)}
    assert statuses == {200}
    stats = await off.cjson("GET", "/stats")
    assert stats["keys"]["demo-key"]["max_in_any_second"] == 30
    await off.cjson("POST", "/stats/reset")
    stats = await off.cjson("GET", "/stats")
    assert stats["keys"]["demo-key"]["requests"] == 0
    assert stats["endpoints"] == {}


async def test_per_key_and_workspace_scope(make_emulator):
    """With ``--rate-scope key-and-workspace`` each workspace a request names has its own
    windows, requests naming none share one more, and the statistics count the key's
    requests together."""
    emu = await _limited(make_emulator, rate_scope="key-and-workspace")
    first, second = [w["id"] for w in await (await emu.v1("/v1/workspaces")).json()][:2]

    async def find(workspace_id: str) -> int:
        body = {"workspace_id": workspace_id}
        return (await emu.api("POST", f"{Z}/triggers/time-entries/find", json=body)).status

    assert [await find(first) for _ in range(11)] == [200] * 10 + [429]
    assert await find(second) == 200
    listing = await emu.api("GET", f"{Z}/triggers/clients", params={"workspace_id": second})
    assert listing.status == 200
    assert _headers(listing)[1] == 8  # the second workspace's window: 2 of 10 used
    assert (await emu.v1("/v1/workspaces")).status == 200  # names none: 2 of 10 used
    stats = (await emu.cjson("GET", "/stats"))["keys"]["demo-key"]
    assert stats["rate_limited"] == 1
    assert stats["max_in_any_second"] == 14  # over the limit of 10 for the key as a whole


async def test_per_key_scope_counts_every_workspace_together(make_emulator):
    emu = await _limited(make_emulator)
    ids = [w["id"] for w in await (await emu.v1("/v1/workspaces")).json()]
    statuses = [
        (
            await emu.api(
                "POST", f"{Z}/triggers/time-entries/find", json={"workspace_id": ids[i % 2]}
            )
        ).status
        for i in range(10)
    ]
    assert statuses == [200] * 9 + [429]
