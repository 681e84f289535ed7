"""Core /v1 surface: auth, X-Accept-Version, error format, extension lists."""

from __future__ import annotations

import pytest


async def test_workspaces_is_bare_array_of_id_and_name(emu):
    resp = await emu.v1("/v1/workspaces")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    body = await resp.json()
    truth = await emu.workspaces()
    assert body == [{"id": w["id"], "name": w["name"]} for w in truth]
    assert len(body) == 3


@pytest.mark.parametrize("key", [None, "wrong-key"])
async def test_missing_or_bad_key_is_401_invalid_api_key(emu, key):
    resp = await emu.v1("/v1/workspaces", key=key)
    assert resp.status == 401
    assert await resp.json() == {
        "error": {
            "code": "INVALID_API_KEY",
            "message": "API key is invalid or expired",
            "details": {},
        }
    }


async def test_bearer_is_not_accepted_on_v1_unless_lenient(make_emulator):
    strict = await make_emulator()
    resp = await strict.client.get("/v1/workspaces", headers={"Authorization": "Bearer demo-key"})
    assert resp.status == 401
    lenient = await make_emulator(lenient_auth=True)
    resp = await lenient.client.get("/v1/workspaces", headers={"Authorization": "Bearer demo-key"})
    assert resp.status == 200


async def test_header_name_is_case_insensitive(emu):
    resp = await emu.client.get("/v1/workspaces", headers={"X-API-Key": "demo-key"})
    assert resp.status == 200


@pytest.mark.parametrize("version", ["1", "1.0", "1.0.0"])
async def test_accept_version_1_is_served(emu, version):
    resp = await emu.v1("/v1/workspaces", headers={"X-Accept-Version": version})
    assert resp.status == 200
    assert "X-Accept-Version" not in resp.headers


@pytest.mark.parametrize("version", ["2", "2.0.0", "0.9", "latest"])
async def test_other_versions_are_validation_errors(emu, version):
    resp = await emu.v1("/v1/workspaces", headers={"X-Accept-Version": version})
    assert resp.status == 400
    err = (await resp.json())["error"]
    assert err["code"] == "VALIDATION_ERROR"
    assert err["message"] == "Request parameters are invalid"
    assert err["details"]["field"] == "X-Accept-Version"


async def test_unknown_v1_path_is_resource_not_found(emu):
    resp = await emu.v1("/v1/workspaces/x/time-entries")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "RESOURCE_NOT_FOUND"


async def test_method_not_allowed_keeps_v1_format(emu):
    resp = await emu.v1("/v1/workspaces", method="POST")
    assert resp.status == 405
    assert "code" in (await resp.json())["error"]


async def test_v1_resource_lists_extension(make_emulator):
    emu = await make_emulator(extensions=frozenset({"v1-resources", "total-count"}))
    ws = (await emu.workspaces())[0]
    resp = await emu.v1(f"/v1/workspaces/{ws['id']}/time-entries?limit=7&offset=0")
    assert resp.status == 200
    page = await resp.json()
    assert len(page) == 7
    assert "created_at" in page[0]
    assert "createdAt" not in page[0]
    assert int(resp.headers["X-Total-Count"]) == ws["time_entry_count"]
    one = await emu.v1(f"/v1/workspaces/{ws['id']}/time-entries/{page[0]['id']}")
    assert (await one.json())["id"] == page[0]["id"]
    for kind in ("clients", "projects", "tags", "members"):
        resp = await emu.v1(f"/v1/workspaces/{ws['id']}/{kind}")
        assert resp.status == 200, kind
        assert len(await resp.json()) >= 1
    project = ws["projects"][0]
    resp = await emu.v1(f"/v1/workspaces/{ws['id']}/projects/{project['id']}/tasks")
    assert len(await resp.json()) == project["task_count"]
    bad = await emu.v1(f"/v1/workspaces/{ws['id']}/clients?limit=101")
    assert bad.status == 400
    assert (await bad.json())["error"]["details"]["field"] == "limit"
    missing = await emu.v1("/v1/workspaces/nope/clients")
    assert missing.status == 404


async def test_updated_since_extension(make_emulator):
    emu = await make_emulator(extensions=frozenset({"v1-resources", "updated-since"}))
    ws = (await emu.workspaces())[0]
    entries = await emu.cjson("GET", f"/time-entries?workspace_id={ws['id']}")
    await emu.cjson("POST", "/clock", json={"advance_seconds": 60})
    await emu.cjson("PATCH", f"/time-entries/{entries[5]['id']}", json={"description": "edited"})
    resp = await emu.v1(
        f"/v1/workspaces/{ws['id']}/time-entries?updated_since=2026-11-27T12:00:30Z"
    )
    assert [e["id"] for e in await resp.json()] == [entries[5]["id"]]


async def test_v1_lists_are_absent_by_default(emu):
    ws = (await emu.workspaces())[0]
    resp = await emu.v1(f"/v1/workspaces/{ws['id']}/time-entries")
    assert resp.status == 404
