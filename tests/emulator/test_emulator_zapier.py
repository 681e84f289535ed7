"""Zapier /api surface: every endpoint, documented shapes, validation and error bodies."""

from __future__ import annotations

import pytest
from conftest import Z

SAMPLE_ID = "123e4567-e89b-12d3-a456-426614174000"


async def _ws(emu, n=0):
    return (await emu.workspaces())[n]


async def test_health_needs_no_auth_and_can_turn_unhealthy(emu):
    resp = await emu.api("GET", "/api/health", key=None)
    body = await resp.json()
    assert resp.status == 200
    assert body["status"] == "healthy"
    assert body["service"] == "timetracker-api"
    assert body["version"] == "1.0.0"
    assert body["timestamp"] == "2026-11-27T12:00:00.000Z"
    assert "X-RateLimit-Limit" not in resp.headers
    await emu.cjson("POST", "/health", json={"healthy": False})
    resp = await emu.api("GET", "/api/health", key=None)
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "unhealthy"
    assert body["error"] == "Database connection failed"


async def test_auth_test_returns_the_keys_user(emu):
    resp = await emu.api("GET", f"{Z}/auth")
    body = await resp.json()
    assert set(body) == {"user_id", "user_name", "user_email"}
    members = (await _ws(emu))["members"]
    mine = [m for m in members if "demo-key" in m["api_keys"]]
    assert mine[0]["user_id"] == body["user_id"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic demo-key"},
        {"X-Api-Key": "demo-key"},
    ],
)
async def test_api_needs_bearer(emu, headers):
    resp = await emu.api("GET", f"{Z}/auth", key=None, headers=headers)
    assert resp.status == 401
    assert await resp.json() == {"error": "Unauthorized"}


async def test_key_without_user(emu):
    await emu.cjson("POST", "/keys", json={"api_key": "orphan", "orphan": True})
    resp = await emu.api("GET", f"{Z}/auth", key="orphan")
    assert resp.status == 404
    assert await resp.json() == {"error": "User not found"}
    resp = await emu.api("DELETE", f"{Z}/webhooks/wh_0000000000000000", key="orphan")
    assert resp.status == 401
    assert await resp.json() == {"error": "User ID not found in authentication result"}


async def test_revoked_key_is_unauthorized(emu):
    await emu.cjson("POST", "/keys", json={"api_key": "new-key", "same_user_as": "demo-key"})
    await emu.cjson("DELETE", "/keys/demo-key")
    assert (await emu.api("GET", f"{Z}/auth")).status == 401
    assert (await emu.api("GET", f"{Z}/auth", key="new-key")).status == 200


async def test_unknown_api_path(emu):
    resp = await emu.api("GET", f"{Z}/nothing-here")
    assert resp.status == 404
    assert await resp.json() == {"error": "Not found"}


# --- fallbacks ---------------------------------------------------------------------------
FALLBACKS = {
    "time-entries/start/fallback": "start_timer",
    "time-entries/stop/fallback": "stop_timer",
    "time-entries/manual_entry/fallback": "manual_entry",
    "clients/fallback": None,
    "projects/fallback": None,
    "tasks/fallback": None,
}


@pytest.mark.parametrize("path", FALLBACKS)
async def test_fallbacks_return_fixed_samples_without_data(make_emulator, path):
    emu = await make_emulator(workspaces=0, entries=0)
    resp = await emu.api("GET", f"{Z}/triggers/{path}")
    body = await resp.json()
    assert resp.status == 200
    assert len(body) == 1
    assert body[0]["id"] == SAMPLE_ID
    if FALLBACKS[path]:
        assert body[0]["action"] == FALLBACKS[path]
        assert body[0]["teamMember"]["name"] == "Sample Developer"
        assert ("endTime" in body[0]) is (FALLBACKS[path] != "start_timer")


async def test_fallbacks_return_the_latest_real_item(emu):
    ws = await _ws(emu)
    started = await emu.cjson("POST", "/timers/start", json={"workspace_id": ws["id"]})
    body = await (await emu.api("GET", f"{Z}/triggers/time-entries/start/fallback")).json()
    assert body[0]["id"] == started["id"]
    assert "endTime" not in body[0]
    assert body[0]["action"] == "start_timer"
    await emu.cjson("POST", "/clock", json={"advance_seconds": 30})
    await emu.cjson("POST", "/timers/stop", json={"workspace_id": ws["id"]})
    body = await (await emu.api("GET", f"{Z}/triggers/time-entries/stop/fallback")).json()
    assert body[0]["id"] == started["id"]
    assert body[0]["duration"] == 30
    assert set(body[0]) >= {"workspace", "teamMember", "project", "task", "tags", "createdAt"}
    manual = await emu.cjson(
        "POST",
        "/manual-entries",
        json={
            "workspace_id": ws["id"],
            "start_time": "2026-11-27T08:00:00Z",
            "end_time": "2026-11-27T09:00:00Z",
        },
    )
    body = await (await emu.api("GET", f"{Z}/triggers/time-entries/manual_entry/fallback")).json()
    assert body[0]["id"] == manual["id"]
    for kind in ("clients", "projects", "tasks"):
        body = await (await emu.api("GET", f"{Z}/triggers/{kind}/fallback")).json()
        assert body[0]["id"] != SAMPLE_ID
        assert "createdAt" in body[0]


# --- find time entries -----------------------------------------------------------------------
async def test_find_shape_filters_and_order(emu):
    ws = await _ws(emu)
    truth = await emu.cjson("GET", f"/time-entries?workspace_id={ws['id']}")
    resp = await emu.find({"workspace_id": ws["id"]})
    body = await resp.json()
    assert resp.status == 200
    assert body == truth
    assert len(body) == ws["time_entry_count"]
    keys = list(body[0])
    assert keys[:9] == [
        "id",
        "date",
        "description",
        "start_time",
        "end_time",
        "duration",
        "duration_hours",
        "billable",
        "manually_entered",
    ]
    assert "createdAt" in keys
    assert "updatedAt" in keys
    assert "created_at" not in keys
    stamps = [(e["createdAt"], e["id"]) for e in body]
    assert stamps == sorted(stamps, reverse=True)
    for e in body:
        assert e["date"].endswith("T00:00:00.000Z")
        assert e["tag_count"] == len(e["tags"])
        if e["end_time"] is None:
            assert e["duration"] is None
            assert e["duration_hours"] is None
        else:
            assert 900 <= e["duration"] <= 28800
    # inclusive date window on the date field
    day = body[len(body) // 2]["date"]
    window = await (
        await emu.find({"workspace_id": ws["id"], "date_after": day, "date_before": day})
    ).json()
    assert window
    assert all(e["date"] == day for e in window)
    assert window == [e for e in truth if e["date"] == day]
    manual = await (await emu.find({"workspace_id": ws["id"], "manually_entered": "true"})).json()
    assert manual == [e for e in truth if e["manually_entered"]]
    timer = await (await emu.find({"workspace_id": ws["id"], "manually_entered": False})).json()
    assert len(manual) + len(timer) == len(truth)
    member = body[0]["team_member_id"]
    mine = await (await emu.find({"workspace_id": ws["id"], "team_member_id": member})).json()
    assert mine == [e for e in truth if e["team_member_id"] == member]
    long = await (
        await emu.find({"workspace_id": ws["id"], "duration_min": 14400, "duration_max": "20000"})
    ).json()
    assert long == [e for e in truth if e["duration"] and 14400 <= e["duration"] <= 20000]
    desc = await (await emu.find({"workspace_id": ws["id"], "description": "SYNC"})).json()
    assert desc == [e for e in truth if "sync" in e["description"].lower()]
    after = body[10]["start_time"]
    started = await (await emu.find({"workspace_id": ws["id"], "start_time_after": after})).json()
    assert started == [e for e in truth if e["start_time"] and e["start_time"] >= after]
    billable = await (await emu.find({"workspace_id": ws["id"], "billable": "false"})).json()
    assert billable == [e for e in truth if not e["billable"]]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"workspace_id": "not-a-uuid"},
        {"workspace_id": "bdd640fb-0667-4ad1-9c80-317fa3b1799d", "billable": "yes"},
        {"workspace_id": "bdd640fb-0667-4ad1-9c80-317fa3b1799d", "date_after": "yesterday"},
        {"workspace_id": "bdd640fb-0667-4ad1-9c80-317fa3b1799d", "duration_min": "long"},
    ],
)
async def test_find_rejects_bad_parameters(emu, body):
    resp = await emu.find(body)
    assert resp.status == 400
    assert await resp.json() == {"error": "Invalid request parameters"}


async def test_find_unknown_workspace_is_empty(emu):
    resp = await emu.find({"workspace_id": "00000000-0000-4000-8000-000000000000"})
    assert await resp.json() == []


async def test_find_created_at_switch(make_emulator):
    emu = await make_emulator(date_filter_field="created_at")
    ws = await _ws(emu)
    truth = await emu.cjson("GET", f"/time-entries?workspace_id={ws['id']}")
    cut = truth[20]["createdAt"]
    body = await (await emu.find({"workspace_id": ws["id"], "date_after": cut})).json()
    assert body == truth[:21]


# --- create time entry ------------------------------------------------------------------------
async def test_create_time_entry_and_its_errors(emu):
    ws = await _ws(emu)
    other = await _ws(emu, 1)
    base = {
        "workspace_id": ws["id"],
        "start_time": "2026-11-26T09:00:00+02:00",
        "end_time": "2026-11-26T10:30:00Z",
        "billable": True,
    }
    resp = await emu.api("POST", f"{Z}/triggers/time-entries", json=base)
    assert resp.status == 201
    e = await resp.json()
    assert e["start_time"] == "2026-11-26T07:00:00.000Z"
    assert e["duration"] == 12600
    assert e["duration_hours"] == 3.5
    assert e["date"] == "2026-11-26T00:00:00.000Z"
    assert e["manually_entered"] is True
    assert "created_at" in e
    assert "createdAt" not in e
    me = next(m for m in ws["members"] if "demo-key" in m["api_keys"])
    assert e["team_member_id"] == me["id"]
    found = await (
        await emu.find(
            {"workspace_id": ws["id"], "date_after": e["date"], "date_before": e["date"]}
        )
    ).json()
    assert found[0]["id"] == e["id"]
    project = ws["projects"][0]
    task = next(t for t in ws["tasks"] if t["project_id"] == project["id"])
    ok = dict(
        base,
        project_id=project["id"],
        task_id=task["id"],
        duration=100,
        tag_ids=[ws["tags"][0]["id"]],
        description="Grüße 👋",
        manually_entered=False,
    )
    e = await (await emu.api("POST", f"{Z}/triggers/time-entries", json=ok)).json()
    assert (e["duration"], e["task_name"], e["tags"][0]["name"]) == (
        100,
        task["name"],
        ws["tags"][0]["name"],
    )
    assert e["description"] == "Grüße 👋"

    async def err(body):
        r = await emu.api("POST", f"{Z}/triggers/time-entries", json=body)
        return r.status, await r.json()

    status, body = await err(dict(base, start_time=""))
    assert status == 400
    assert body == {
        "error": "Invalid request body",
        "details": [
            {"field": "start_time", "message": "String must contain at least 1 character(s)"}
        ],
    }
    status, body = await err({k: v for k, v in base.items() if k != "billable"})
    assert body["details"] == [{"field": "billable", "message": "Required"}]
    assert (await err(dict(base, end_time="2026-11-26T06:00:00Z"))) == (
        400,
        {"error": "End time must be after start time"},
    )
    assert (await err(dict(base, team_member_id=other["members"][0]["id"])))[1] == {
        "error": "Team member does not belong to the specified workspace"
    }
    assert (await err(dict(base, project_id=other["projects"][0]["id"])))[1] == {
        "error": "Project does not belong to the specified workspace"
    }
    wrong_task = next(t for t in ws["tasks"] if t["project_id"] != project["id"])
    assert (await err(dict(base, project_id=project["id"], task_id=wrong_task["id"])))[1] == {
        "error": "Task does not belong to the specified project"
    }
    assert (await err(dict(base, tag_ids=[other["tags"][0]["id"]])))[1] == {
        "error": "One or more tags do not belong to the specified workspace"
    }
    resp = await emu.api("POST", f"{Z}/triggers/time-entries", data=b"{not json")
    assert (resp.status, await resp.json()) == (400, {"error": "Invalid request body"})


async def test_create_time_entry_contradiction_switches(make_emulator):
    emu = await make_emulator(billable_required=False, team_member_required=True)
    ws = await _ws(emu)
    body = {
        "workspace_id": ws["id"],
        "start_time": "2026-11-26T09:00:00Z",
        "end_time": "2026-11-26T10:00:00Z",
    }
    resp = await emu.api("POST", f"{Z}/triggers/time-entries", json=body)
    assert (await resp.json())["details"] == [{"field": "team_member_id", "message": "Required"}]
    body["team_member_id"] = ws["members"][0]["id"]
    resp = await emu.api("POST", f"{Z}/triggers/time-entries", json=body)
    assert resp.status == 201
    assert (await resp.json())["billable"] is True


# --- clients, projects, tasks, tags ----------------------------------------------------------
async def test_clients_create_list_find(emu):
    ws = await _ws(emu)
    resp = await emu.api(
        "POST",
        f"{Z}/triggers/clients",
        json={
            "name": "Zoë's Café",
            "workspace_id": ws["id"],
            "email": "zoe@example.com",
            "type": "company",
        },
    )
    assert resp.status == 201
    c = await resp.json()
    assert c["name"] == "Zoë's Café"
    assert c["currency"] == "USD"
    assert c["status"] == "active"
    assert c["workspaces"] == [{"id": ws["id"], "name": ws["name"]}]
    assert c["project_count"] == 0
    assert c["workspace_count"] == 1
    listed = await (await emu.api("GET", f"{Z}/triggers/clients?workspace_id={ws['id']}")).json()
    assert listed[0]["id"] == c["id"]
    assert len(listed) == len(ws["clients"]) + 1
    page = await (
        await emu.api("GET", f"{Z}/triggers/clients?workspace_id={ws['id']}&limit=2&offset=1")
    ).json()
    assert [x["id"] for x in page] == [x["id"] for x in listed[1:3]]
    with_email = await (
        await emu.api("GET", f"{Z}/triggers/clients?workspace_id={ws['id']}&has_email=true")
    ).json()
    assert all(x["email"] for x in with_email)
    bad = await emu.api("GET", f"{Z}/triggers/clients?workspace_id={ws['id']}&limit=0")
    assert (bad.status, await bad.json()) == (400, {"error": "Invalid request parameters"})
    found = await (
        await emu.api(
            "POST", f"{Z}/triggers/clients/find", json={"workspace_id": ws["id"], "name": "CAFÉ"}
        )
    ).json()
    assert found[0]["id"] == c["id"]
    assert "workspaces" not in found[0]
    assert "created_at" in found[0]
    resp = await emu.api(
        "POST",
        f"{Z}/triggers/clients",
        json={"name": "", "workspace_id": ws["id"], "email": "nope", "type": "alien"},
    )
    body = await resp.json()
    assert resp.status == 400
    assert body["error"] == "Invalid request body"
    assert {"field": "email", "message": "Invalid email"} in body["details"]
    assert {"field": "name", "message": "String must contain at least 1 character(s)"} in (
        body["details"]
    )
    resp = await emu.api(
        "POST",
        f"{Z}/triggers/clients",
        json={"name": "X", "workspace_id": "00000000-0000-4000-8000-000000000000"},
    )
    assert (resp.status, await resp.json()) == (404, {"error": "Workspace not found"})


async def test_projects_create_camel_find_snake(emu):
    ws = await _ws(emu)
    client = ws["clients"][0]
    resp = await emu.api(
        "POST",
        f"{Z}/triggers/projects",
        json={
            "name": "Ünïcode Project",
            "workspace_id": ws["id"],
            "client_id": client["id"],
            "defaultBillableRate": 80,
            "isPrivate": True,
        },
    )
    assert resp.status == 201
    p = await resp.json()
    assert p["clientName"] == client["name"]
    assert p["workspaceId"] == ws["id"]
    assert p["isPrivate"] is True
    assert "createdAt" in p
    found = await (
        await emu.api(
            "POST",
            f"{Z}/triggers/projects/find",
            json={"workspace_id": ws["id"], "name": "ünïcode"},
        )
    ).json()
    assert found[0]["id"] == p["id"]
    assert found[0]["is_private"] is True
    assert found[0]["time_entry_count"] == 0
    assert "task_count" in found[0]
    assert "member_count" in found[0]
    resp = await emu.api(
        "POST",
        f"{Z}/triggers/projects",
        json={"name": "P", "workspace_id": ws["id"], "defaultBillableRate": 0},
    )
    assert (await resp.json())["details"] == [
        {"field": "defaultBillableRate", "message": "Number must be greater than 0"}
    ]
    other_client = (await _ws(emu, 1))["clients"][0]
    resp = await emu.api(
        "POST",
        f"{Z}/triggers/projects",
        json={"name": "P", "workspace_id": ws["id"], "client_id": other_client["id"]},
    )
    assert (resp.status, await resp.json()) == (400, {"error": "Client not found in workspace"})


async def test_tasks_create_and_find_by_post_and_get(emu):
    ws = await _ws(emu)
    project = ws["projects"][0]
    members = [m["id"] for m in ws["members"][:2]]
    resp = await emu.api(
        "POST",
        f"{Z}/triggers/tasks",
        json={
            "name": "Write tests ✅",
            "project_id": project["id"],
            "status": "in-progress",
            "assignee_ids": ",".join(members),
            "estimated_hours": 3,
        },
    )
    assert resp.status == 201
    t = await resp.json()
    assert [a["id"] for a in t["assignees"]] == members
    assert t["status"] == "in-progress"
    assert t["workspace_id"] == ws["id"]
    q = {"workspace_id": ws["id"], "name": "tests ✅"}
    by_post = await (await emu.api("POST", f"{Z}/triggers/tasks/find", json=q)).json()
    by_get = await (await emu.api("GET", f"{Z}/triggers/tasks/find", params=q)).json()
    assert by_post == by_get
    assert by_post[0]["id"] == t["id"]
    resp = await emu.api(
        "POST",
        f"{Z}/triggers/tasks",
        json={"name": "x", "project_id": "00000000-0000-4000-8000-000000000000"},
    )
    assert await resp.json() == {"error": "Project not found"}
    resp = await emu.api(
        "POST",
        f"{Z}/triggers/tasks",
        json={"name": "x", "project_id": project["id"], "assignee_ids": "nobody"},
    )
    assert await resp.json() == {"error": "One or more assignee IDs are invalid"}
    resp = await emu.api(
        "POST",
        f"{Z}/triggers/tasks",
        json={"name": "x", "project_id": project["id"], "actual_hours": -1},
    )
    assert (await resp.json())["details"][0]["message"] == "Number must be greater than 0"


async def test_tags_create_duplicate_list_find(emu):
    ws = await _ws(emu)
    resp = await emu.api(
        "POST",
        f"{Z}/triggers/tags",
        json={"name": "Überstunden", "workspace_id": ws["id"], "color": "blue"},
    )
    assert resp.status == 201
    tag = await resp.json()
    assert set(tag) == {
        "id",
        "name",
        "color",
        "description",
        "workspace_id",
        "created_at",
        "updated_at",
    }
    dup = await emu.api(
        "POST", f"{Z}/triggers/tags", json={"name": "überstunden", "workspace_id": ws["id"]}
    )
    assert dup.status == 409
    assert await dup.json() == {"error": "Tag already exists", "tag": tag}
    bad = await emu.api(
        "POST", f"{Z}/triggers/tags", json={"name": "t", "workspace_id": ws["id"], "color": "#zzz"}
    )
    assert (await bad.json())["details"] == [{"field": "color", "message": "Invalid color"}]
    listed = await (await emu.api("GET", f"{Z}/actions/tags?workspace_id={ws['id']}")).json()
    assert listed[0] == tag
    assert len(listed) == len(ws["tags"]) + 1
    found = await (
        await emu.api(
            "POST", f"{Z}/triggers/tags/find", json={"workspace_id": ws["id"], "name": "STUNDEN"}
        )
    ).json()
    assert found == [tag]
    assert (await emu.api("POST", f"{Z}/actions/tags", json={})).status == 405


async def test_tag_create_path_switch(make_emulator):
    emu = await make_emulator(tag_create_path="actions")
    ws = await _ws(emu)
    body = {"name": "n", "workspace_id": ws["id"]}
    assert (await emu.api("POST", f"{Z}/actions/tags", json=body)).status == 201
    assert (await emu.api("POST", f"{Z}/triggers/tags", json=body)).status == 404


# --- webhook subscriptions ---------------------------------------------------------------------
async def test_subscribe_list_delete(make_emulator):
    emu = await make_emulator(allow_http_webhooks=False)
    body = {
        "url": "https://hooks.example.com/x",
        "events": ["TIMER_STARTED", "TIMER_STOPPED"],
        "description": "mirror",
    }
    resp = await emu.api("POST", f"{Z}/webhooks/subscribe", json=body)
    assert resp.status == 200
    sub = await resp.json()
    hook = sub["webhook"]
    assert sub["success"] is True
    assert hook["id"].startswith("wh_")
    assert len(hook["id"]) == 19
    assert hook["status"] == "ACTIVE"
    assert hook["events"] == body["events"]
    listed = await (await emu.api("GET", f"{Z}/webhooks/subscribe")).json()
    assert listed["success"] is True
    assert listed["webhooks"][0]["id"] == hook["id"]
    assert listed["webhooks"][0]["description"] == "mirror"
    assert "createdAt" in listed["webhooks"][0]
    resp = await emu.api("DELETE", f"{Z}/webhooks/{hook['id']}")
    assert (resp.status, await resp.json()) == (200, {"success": True})
    resp = await emu.api("DELETE", f"{Z}/webhooks/{hook['id']}")
    assert (resp.status, await resp.json()) == (400, {"error": "Webhook not found"})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"events": ["TIMER_STARTED"]}, "URL and events array are required"),
        ({"url": "https://a.example", "events": []}, "URL and events array are required"),
        (
            {"url": "https://a.example", "events": "TIMER_STARTED"},
            "URL and events array are required",
        ),
        ({"url": "http://a.example/x", "events": ["TIMER_STARTED"]}, "Invalid URL format"),
        ({"url": "not a url", "events": ["TIMER_STARTED"]}, "Invalid URL format"),
        ({"url": "http://127.0.0.1:9/x", "events": ["TIMER_STARTED"]}, "Invalid URL format"),
        (
            {"url": "https://a.example", "events": ["TIME_ENTRY_DELETED"]},
            "Invalid event type: TIME_ENTRY_DELETED",
        ),
    ],
)
async def test_subscribe_errors(make_emulator, body, message):
    emu = await make_emulator(allow_http_webhooks=False)
    resp = await emu.api("POST", f"{Z}/webhooks/subscribe", json=body)
    assert (resp.status, await resp.json()) == (400, {"error": message})


async def test_webhook_contradiction_switches(make_emulator):
    emu = await make_emulator(
        webhook_id_format="uuid", delete_unknown_webhook="404", delete_webhook_success="204"
    )
    sub = await (
        await emu.api(
            "POST",
            f"{Z}/webhooks/subscribe",
            json={"url": "https://a.example/h", "events": ["CLIENT_CREATED"], "secret": "s"},
        )
    ).json()
    assert len(sub["webhook"]["id"]) == 36
    assert sub["webhook"]["secret"] == "s"
    assert (await emu.api("DELETE", f"{Z}/webhooks/{sub['webhook']['id']}")).status == 204
    resp = await emu.api("DELETE", f"{Z}/webhooks/{sub['webhook']['id']}")
    assert (resp.status, await resp.json()) == (404, {"error": "Webhook not found"})
    idem = await make_emulator(delete_unknown_webhook="200", delete_webhook_success="webhook-id")
    resp = await idem.api("DELETE", f"{Z}/webhooks/wh_nothing")
    assert (resp.status, await resp.json()) == (200, {"success": True})


async def test_only_the_creator_sees_and_deletes_a_webhook(make_emulator):
    emu = await make_emulator(api_keys=("demo-key", "other-key"))
    sub = await (
        await emu.api(
            "POST",
            f"{Z}/webhooks/subscribe",
            json={"url": "https://a.example/h", "events": ["CLIENT_CREATED"]},
        )
    ).json()
    other = await (await emu.api("GET", f"{Z}/webhooks/subscribe", key="other-key")).json()
    assert other["webhooks"] == []
    resp = await emu.api("DELETE", f"{Z}/webhooks/{sub['webhook']['id']}", key="other-key")
    assert resp.status == 400
