"""Control API and fault switches, over real sockets."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from conftest import Z


async def test_patch_moves_an_entry_between_date_windows(emu):
    ws = (await emu.workspaces())[0]
    entries = await emu.cjson("GET", f"/time-entries?workspace_id={ws['id']}")
    target = entries[7]
    before = await emu.find(
        {"workspace_id": ws["id"], "date_after": target["date"], "date_before": target["date"]}
    )
    assert target["id"] in [e["id"] for e in await before.json()]
    emu.clock.advance(5)
    patched = await emu.cjson(
        "PATCH",
        f"/time-entries/{target['id']}",
        json={
            "start_time": "2024-02-29T10:00:00Z",
            "end_time": "2024-02-29T11:00:00Z",
            "date": "2024-02-29T00:00:00Z",
        },
    )
    assert patched["updatedAt"] > target["updatedAt"]
    assert patched["duration"] == 3600
    assert patched["createdAt"] == target["createdAt"]
    old = await (
        await emu.find(
            {"workspace_id": ws["id"], "date_after": target["date"], "date_before": target["date"]}
        )
    ).json()
    assert target["id"] not in [e["id"] for e in old]
    new = await (
        await emu.find(
            {
                "workspace_id": ws["id"],
                "date_after": "2024-02-29T00:00:00Z",
                "date_before": "2024-02-29T23:59:59Z",
            }
        )
    ).json()
    assert [e["id"] for e in new] == [target["id"]]
    window = await emu.cjson(
        "GET",
        f"/time-entries?workspace_id={ws['id']}"
        "&date_after=2024-02-29T00:00:00Z&date_before=2024-02-29T00:00:00Z",
    )
    assert window == new


async def test_delete_and_bulk_create_are_silent_and_visible(emu):
    ws = (await emu.workspaces())[0]
    entries = await emu.cjson("GET", f"/time-entries?workspace_id={ws['id']}")
    await emu.cjson("DELETE", f"/time-entries/{entries[0]['id']}")
    assert (await emu.control("DELETE", f"/time-entries/{entries[0]['id']}")).status == 404
    member = ws["members"][0]["id"]
    created = await emu.cjson(
        "POST",
        "/time-entries",
        json=[
            {
                "workspace_id": ws["id"],
                "start_time": f"2026-11-0{d}T09:00:00Z",
                "end_time": f"2026-11-0{d}T10:00:00Z",
                "description": f"bulk {d}",
                "team_member_id": member,
                "billable": False,
                "manually_entered": True,
            }
            for d in range(1, 4)
        ],
    )
    assert [c["description"] for c in created] == ["bulk 1", "bulk 2", "bulk 3"]
    after = await (await emu.find({"workspace_id": ws["id"]})).json()
    ids = {e["id"] for e in after}
    assert entries[0]["id"] not in ids
    assert {c["id"] for c in created} <= ids
    assert len(after) == len(entries) + 2
    bad = await emu.control("POST", "/time-entries", json=[{"workspace_id": ws["id"]}])
    assert bad.status == 400


async def test_clock_moves_timestamps(emu):
    before = await emu.cjson("GET", "/clock")
    after = await emu.cjson("POST", "/clock", json={"advance_seconds": 3600})
    assert after["epoch"] - before["epoch"] == 3600
    ws = (await emu.workspaces())[0]
    e = await emu.cjson("POST", "/timers/start", json={"workspace_id": ws["id"]})
    assert e["start_time"] == after["now"] == e["createdAt"]
    assert (await emu.control("POST", "/clock", json={"advance_seconds": -1})).status == 400


async def test_stats_count_endpoints(emu):
    await emu.v1("/v1/workspaces")
    await emu.find({"workspace_id": "x"})
    stats = await emu.cjson("GET", "/stats")
    assert stats["endpoints"] == {
        "GET /v1/workspaces": 1,
        f"POST {Z}/triggers/time-entries/find": 1,
    }
    assert stats["keys"]["demo-key"]["requests"] == 2


# --- faults ----------------------------------------------------------------------------------
FIND = f"{Z}/triggers/time-entries/find"


async def test_status_fault_for_the_next_n_matching(emu):
    await emu.cjson(
        "POST", "/faults", json={"path": FIND, "method": "POST", "count": 2, "status": 503}
    )
    ws = (await emu.workspaces())[0]
    assert (await emu.v1("/v1/workspaces")).status == 200  # does not match
    for _ in range(2):
        resp = await emu.find({"workspace_id": ws["id"]})
        assert (resp.status, await resp.json()) == (503, {"error": "Service unavailable"})
    assert (await emu.find({"workspace_id": ws["id"]})).status == 200
    stats = await emu.cjson("GET", "/stats")
    assert stats["endpoints"][f"POST {FIND}"] == 3
    assert stats["faults_fired"] == 2
    assert stats["keys"]["demo-key"]["requests"] == 4


async def test_status_fault_429_and_v1_body(emu):
    await emu.cjson("POST", "/faults", json={"kind": "status", "status": 429, "retry_after": 2})
    resp = await emu.v1("/v1/workspaces")
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "2"
    assert (await resp.json())["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    await emu.cjson(
        "POST", "/faults", json={"status": 500, "path": f"{Z}/triggers/clients/fallback"}
    )
    resp = await emu.api("GET", f"{Z}/triggers/clients/fallback")
    assert (resp.status, await resp.json()) == (500, {"error": "Failed to fetch clients"})


async def test_delay_fault(emu):
    await emu.cjson("POST", "/faults", json={"kind": "delay", "seconds": 0.3})
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    resp = await emu.v1("/v1/workspaces")
    assert resp.status == 200
    assert loop.time() - t0 >= 0.3
    t0 = loop.time()
    await emu.v1("/v1/workspaces")
    assert loop.time() - t0 < 0.3


async def test_malformed_fault(emu):
    await emu.cjson("POST", "/faults", json={"kind": "malformed"})
    resp = await emu.v1("/v1/workspaces")
    assert resp.status == 200
    with pytest.raises(ValueError):
        await resp.json()


async def test_truncated_fault(emu):
    ws = (await emu.workspaces())[0]
    await emu.cjson("POST", "/faults", json={"kind": "truncated", "path": FIND})
    resp = await emu.find({"workspace_id": ws["id"]})
    assert int(resp.headers["Content-Length"]) > 0
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    assert (await emu.find({"workspace_id": ws["id"]})).status == 200


async def test_drop_fault(emu):
    await emu.cjson("POST", "/faults", json={"kind": "drop", "count": 1})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await emu.v1("/v1/workspaces")
    assert (await emu.v1("/v1/workspaces")).status == 200


async def test_faults_list_clear_and_validate(emu):
    await emu.cjson("POST", "/faults", json={"kind": "drop", "count": 5, "path": "/api/"})
    assert len((await emu.cjson("GET", "/faults"))["faults"]) == 1
    await emu.cjson("DELETE", "/faults")
    assert (await emu.cjson("GET", "/faults"))["faults"] == []
    assert (await emu.api("GET", f"{Z}/auth")).status == 200
    for bad in (
        {"kind": "explode"},
        {"status": 99},
        {"kind": "drop", "count": 0},
        {"kind": "delay"},
        {"kind": "drop", "path": "api"},
    ):
        assert (await emu.control("POST", "/faults", json=bad)).status == 400
    assert (await emu.control("GET", "/workspaces")).status == 200  # control is never faulted
