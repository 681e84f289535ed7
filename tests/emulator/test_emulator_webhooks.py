"""Webhook delivery to a real receiver: payloads, signature, retries, 410, DISABLED."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

from conftest import Z

ALL = [
    "TIMER_STARTED",
    "TIMER_STOPPED",
    "MANUAL_TIME_ADDED",
    "CLIENT_CREATED",
    "PROJECT_CREATED",
    "TASK_CREATED",
]


async def _subscribe(emu, receiver, events=ALL, **extra):
    resp = await emu.api(
        "POST", f"{Z}/webhooks/subscribe", json={"url": receiver.url, "events": events, **extra}
    )
    assert resp.status == 200, await resp.text()
    return (await resp.json())["webhook"]


async def _settle(emu, until, limit_s=5.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not until():
        assert loop.time() < deadline, "timed out waiting for webhook deliveries"
        await asyncio.sleep(0.01)
    stats = await emu.cjson("GET", "/stats")
    while stats["webhook_pending"]:
        await asyncio.sleep(0.01)
        stats = await emu.cjson("GET", "/stats")
    return stats


async def test_all_documented_events_are_delivered_bare(emu, receiver):
    hook = await _subscribe(emu, receiver)
    ws = (await emu.workspaces())[0]
    started = await emu.cjson(
        "POST", "/timers/start", json={"workspace_id": ws["id"], "description": "Café ☕"}
    )
    emu.clock.advance(90)
    await emu.cjson("POST", "/timers/stop", json={"workspace_id": ws["id"]})
    await emu.cjson(
        "POST",
        "/manual-entries",
        json={
            "workspace_id": ws["id"],
            "start_time": "2026-11-27T08:00:00Z",
            "end_time": "2026-11-27T09:00:00Z",
            "description": "manual",
        },
    )
    client = await (
        await emu.api("POST", f"{Z}/triggers/clients", json={"name": "C", "workspace_id": ws["id"]})
    ).json()
    project = await (
        await emu.api(
            "POST",
            f"{Z}/triggers/projects",
            json={"name": "P", "workspace_id": ws["id"], "client_id": client["id"]},
        )
    ).json()
    await emu.api(
        "POST",
        f"{Z}/triggers/tasks",
        json={"name": "T", "project_id": project["id"], "status": "in-progress"},
    )
    stats = await _settle(emu, lambda: len(receiver.received) >= 6)
    assert sorted(receiver.events()) == sorted(ALL)
    assert stats["webhook_deliveries"] == 6
    by_event = {r["headers"]["X-Timetracker-Event"]: r for r in receiver.received}
    for r in receiver.received:
        assert r["headers"]["Content-Type"] == "application/json"
        assert r["headers"]["X-Timetracker-Webhook-Id"] == hook["id"]
        assert "X-Timetracker-Signature" not in r["headers"]
    start = json.loads(by_event["TIMER_STARTED"]["raw"])
    assert start["id"] == started["id"]
    assert start["action"] == "start_timer"
    assert "endTime" not in start
    assert start["description"] == "Café ☕"
    assert set(start) >= {"workspace", "teamMember", "project", "task", "tags", "createdAt"}
    stop = json.loads(by_event["TIMER_STOPPED"]["raw"])
    assert stop["id"] == started["id"]
    assert stop["duration"] == 90
    assert stop["action"] == "stop_timer"
    assert stop["updatedAt"] == stop["endTime"]
    manual = json.loads(by_event["MANUAL_TIME_ADDED"]["raw"])
    assert manual["action"] == "manual_entry"
    assert manual["duration"] == 3600
    assert json.loads(by_event["CLIENT_CREATED"]["raw"])["id"] == client["id"]
    assert json.loads(by_event["PROJECT_CREATED"]["raw"])["client"]["id"] == client["id"]
    task = json.loads(by_event["TASK_CREATED"]["raw"])
    assert task["status"] == "in_progress"
    assert task["project"]["id"] == project["id"]


async def test_starting_a_second_timer_stops_the_first(emu, receiver):
    await _subscribe(emu, receiver, ["TIMER_STARTED", "TIMER_STOPPED"])
    ws = (await emu.workspaces())[0]
    first = await emu.cjson("POST", "/timers/start", json={"workspace_id": ws["id"]})
    second = await emu.cjson("POST", "/timers/start", json={"workspace_id": ws["id"]})
    await _settle(emu, lambda: len(receiver.received) >= 3)
    assert sorted(receiver.events()) == ["TIMER_STARTED", "TIMER_STARTED", "TIMER_STOPPED"]
    truth = await emu.cjson("GET", f"/time-entries?workspace_id={ws['id']}")
    running = {e["id"] for e in truth if e["end_time"] is None}
    assert second["id"] in running
    assert first["id"] not in running
    resp = await emu.control(
        "POST",
        "/timers/stop",
        json={"workspace_id": ws["id"], "team_member_id": ws["members"][0]["id"]},
    )
    assert resp.status in (200, 409)


async def test_signature_when_secret_given(emu, receiver):
    await _subscribe(emu, receiver, ["CLIENT_CREATED"], secret="s3cret")
    ws = (await emu.workspaces())[0]
    await emu.api("POST", f"{Z}/triggers/clients", json={"name": "C", "workspace_id": ws["id"]})
    await _settle(emu, lambda: receiver.received)
    r = receiver.received[0]
    expected = hmac.new(b"s3cret", r["raw"], hashlib.sha256).hexdigest()
    assert r["headers"]["X-Timetracker-Signature"] == f"sha256={expected}"


async def test_retry_then_success(emu, receiver):
    receiver.statuses.extend([500, 503])
    await _subscribe(emu, receiver, ["CLIENT_CREATED"])
    ws = (await emu.workspaces())[0]
    await emu.api("POST", f"{Z}/triggers/clients", json={"name": "C", "workspace_id": ws["id"]})
    stats = await _settle(emu, lambda: len(receiver.received) >= 3)
    assert stats["webhook_deliveries"] == 1
    assert stats["webhook_failures"] == 2
    ids = {r["headers"]["X-Timetracker-Delivery"] for r in receiver.received}
    assert len(ids) == 1  # the same delivery, attempted three times
    hooks = await emu.cjson("GET", "/webhooks")
    assert hooks[0]["status"] == "ACTIVE"


async def test_failing_subscription_becomes_disabled(emu, receiver):
    receiver.statuses.extend([500, 500, 500])
    hook = await _subscribe(emu, receiver, ["CLIENT_CREATED"])
    ws = (await emu.workspaces())[0]
    await emu.api("POST", f"{Z}/triggers/clients", json={"name": "C", "workspace_id": ws["id"]})
    stats = await _settle(emu, lambda: len(receiver.received) >= 3)
    assert stats["webhook_failures"] == 3
    listed = await (await emu.api("GET", f"{Z}/webhooks/subscribe")).json()
    assert listed["webhooks"][0]["id"] == hook["id"]
    assert listed["webhooks"][0]["status"] == "DISABLED"
    await emu.api("POST", f"{Z}/triggers/clients", json={"name": "D", "workspace_id": ws["id"]})
    await asyncio.sleep(0.1)
    assert len(receiver.received) == 3  # nothing more goes to a disabled subscription


async def test_410_unsubscribes(emu, receiver):
    receiver.statuses.append(410)
    await _subscribe(emu, receiver, ["CLIENT_CREATED"])
    ws = (await emu.workspaces())[0]
    await emu.api("POST", f"{Z}/triggers/clients", json={"name": "C", "workspace_id": ws["id"]})
    await _settle(emu, lambda: receiver.received)
    listed = await (await emu.api("GET", f"{Z}/webhooks/subscribe")).json()
    assert listed["webhooks"] == []


async def test_unreachable_target_counts_as_failure(make_emulator):
    emu = await make_emulator(webhook_retry_delays=())
    await emu.api(
        "POST",
        f"{Z}/webhooks/subscribe",
        json={"url": "http://127.0.0.1:9/nothing", "events": ["CLIENT_CREATED"]},
    )
    ws = (await emu.workspaces())[0]
    await emu.api("POST", f"{Z}/triggers/clients", json={"name": "C", "workspace_id": ws["id"]})
    await _settle(emu, lambda: True)
    for _ in range(200):
        hooks = await emu.cjson("GET", "/webhooks")
        if hooks[0]["status"] == "DISABLED":
            break
        await asyncio.sleep(0.02)
    assert hooks[0]["status"] == "DISABLED"
    attempts = await emu.cjson("GET", "/webhook-deliveries")
    assert attempts[0]["status"] is None
    assert attempts[0]["error"]


async def test_silent_edits_unless_extension(emu, make_emulator, receiver):
    await _subscribe(emu, receiver)
    ws = (await emu.workspaces())[0]
    entry = (await emu.cjson("GET", f"/time-entries?workspace_id={ws['id']}"))[3]
    await emu.cjson("PATCH", f"/time-entries/{entry['id']}", json={"description": "x"})
    await emu.cjson("DELETE", f"/time-entries/{entry['id']}")
    await emu.cjson(
        "POST",
        "/time-entries",
        json=[
            {
                "workspace_id": ws["id"],
                "start_time": "2026-11-20T08:00:00Z",
                "end_time": "2026-11-20T09:00:00Z",
            }
        ],
    )
    await asyncio.sleep(0.05)
    assert receiver.received == []

    ext = await make_emulator(extensions=frozenset({"updated-events", "deleted-events"}))
    await _subscribe(ext, receiver, ["TIME_ENTRY_UPDATED", "TIME_ENTRY_DELETED"])
    ws = (await ext.workspaces())[0]
    entry = (await ext.cjson("GET", f"/time-entries?workspace_id={ws['id']}"))[3]
    await ext.cjson("PATCH", f"/time-entries/{entry['id']}", json={"description": "x"})
    await _settle(ext, lambda: receiver.received)
    await ext.cjson("DELETE", f"/time-entries/{entry['id']}")
    await _settle(ext, lambda: len(receiver.received) >= 2)
    updated, deleted = (json.loads(r["raw"]) for r in receiver.received)
    assert updated["id"] == entry["id"]
    assert updated["description"] == "x"
    assert updated["action"] == "update_entry"
    assert deleted == {
        "id": entry["id"],
        "action": "delete_entry",
        "workspace": {"id": ws["id"], "name": ws["name"]},
        "updatedAt": deleted["updatedAt"],
    }


async def test_default_workspace_scope_switch(make_emulator, receiver):
    emu = await make_emulator(webhook_scope="default-workspace")
    await _subscribe(emu, receiver, ["CLIENT_CREATED"])
    first, second = (await emu.workspaces())[:2]
    await emu.api("POST", f"{Z}/triggers/clients", json={"name": "B", "workspace_id": second["id"]})
    await emu.api("POST", f"{Z}/triggers/clients", json={"name": "A", "workspace_id": first["id"]})
    await _settle(emu, lambda: receiver.received)
    await asyncio.sleep(0.05)
    assert [json.loads(r["raw"])["name"] for r in receiver.received] == ["A"]
