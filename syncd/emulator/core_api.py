"""The core API under ``/v1`` (``X-Api-Key``, nested ``{error:{code,message,details}}``).

Only ``GET /v1/workspaces`` is documented; the resource lists below it are an extension
(``v1-resources``) modelled on Clockify's layout.
"""

from __future__ import annotations

import re

from aiohttp import web

from . import shapes
from .responses import json_response, raw_json, v1_error
from .settings import EmulatorSettings
from .state import EMU, REQ_USER, Emulator
from .timefmt import parse_iso
from .world import Workspace, sort_newest_first

_VERSION_RE = re.compile(r"^\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?\s*$")


def _version_error(request: web.Request) -> web.Response | None:
    """``X-Accept-Version``: missing or any 1.x.y means 1.0.0; anything else is refused."""
    value = request.headers.get("X-Accept-Version")
    if value is None:
        return None
    m = _VERSION_RE.match(value)
    if m and m.group(1) == "1":
        return None
    return v1_error(
        400,
        "VALIDATION_ERROR",
        details={"field": "X-Accept-Version", "issue": f"Unsupported API version: {value}"},
    )


def _handler(fn):
    async def wrapped(request: web.Request) -> web.StreamResponse:
        bad = _version_error(request)
        if bad is not None:
            return bad
        if request.get(REQ_USER) is None:
            return v1_error(401, "INVALID_API_KEY")
        return await fn(request, request.app[EMU])

    wrapped.__name__ = fn.__name__
    return wrapped


@_handler
async def list_workspaces(request: web.Request, emu: Emulator) -> web.Response:
    return json_response([ws.ref() for ws in emu.world.user_workspaces(request[REQ_USER])])


# --- extension: v1-resources -------------------------------------------------------------
def _workspace(request: web.Request, emu: Emulator) -> Workspace | web.Response:
    ws = emu.world.workspaces.get(request.match_info["ws"])
    if ws is None:
        return v1_error(404, "RESOURCE_NOT_FOUND")
    if emu.world.member_of(request[REQ_USER], ws) is None:
        return v1_error(403, "PERMISSION_DENIED")
    return ws


def _page(request: web.Request) -> tuple[int, int] | web.Response:
    try:
        limit = int(request.query.get("limit", "50"))
        offset = int(request.query.get("offset", "0"))
    except ValueError:
        limit, offset = -1, -1
    if not 1 <= limit <= 100:
        return v1_error(400, details={"field": "limit", "issue": "must be between 1 and 100"})
    if offset < 0:
        return v1_error(400, details={"field": "offset", "issue": "must be 0 or more"})
    return limit, offset


def _paged(emu: Emulator, items: list, page: tuple[int, int], render) -> web.Response:
    limit, offset = page
    resp = json_response([render(o) for o in items[offset : offset + limit]])
    if emu.settings.has("total-count"):
        resp.headers["X-Total-Count"] = str(len(items))
    return resp


def _list(kind: str):
    @_handler
    async def handler(request: web.Request, emu: Emulator) -> web.Response:
        ws = _workspace(request, emu)
        if isinstance(ws, web.Response):
            return ws
        page = _page(request)
        if isinstance(page, web.Response):
            return page
        world = emu.world
        if kind == "clients":
            items, render = [c for c in world.clients.values() if c.ws is ws], shapes.client_full
        elif kind == "projects":
            items = [p for p in world.projects.values() if p.ws is ws]

            def render(p):
                return shapes.project_find(p, world)
        elif kind == "tags":
            items, render = [t for t in world.tags.values() if t.ws is ws], shapes.tag_record
        else:  # members
            items = list(ws.members)

            def render(m):
                return {
                    "id": m.id,
                    "name": m.name,
                    "email": m.email,
                    "role": m.role[1],
                    "workspace_id": ws.id,
                }

            return _paged(emu, items, page, render)
        items.sort(key=lambda o: (o.created, o.id), reverse=True)
        return _paged(emu, items, page, render)

    handler.__name__ = f"list_{kind}"
    return handler


@_handler
async def list_tasks(request: web.Request, emu: Emulator) -> web.Response:
    ws = _workspace(request, emu)
    if isinstance(ws, web.Response):
        return ws
    project = emu.world.projects.get(request.match_info["project"])
    if project is None or project.ws is not ws:
        return v1_error(404, "RESOURCE_NOT_FOUND")
    page = _page(request)
    if isinstance(page, web.Response):
        return page
    items = sorted(project.tasks, key=lambda o: (o.created, o.id), reverse=True)
    return _paged(emu, items, page, shapes.task_record)


@_handler
async def list_time_entries(request: web.Request, emu: Emulator) -> web.Response:
    ws = _workspace(request, emu)
    if isinstance(ws, web.Response):
        return ws
    page = _page(request)
    if isinstance(page, web.Response):
        return page
    items = emu.world.all_entries(ws)
    since = request.query.get("updated_since")
    if since is not None:
        if not emu.settings.has("updated-since"):
            return v1_error(400, details={"field": "updated_since", "issue": "unknown parameter"})
        try:
            since_ms = parse_iso(since)
        except ValueError:
            return v1_error(400, details={"field": "updated_since", "issue": "invalid datetime"})
        items = [e for e in items if e.updated >= since_ms]
    sort_newest_first(items)
    limit, offset = page
    body = "[" + ",".join(shapes.entry_json(e, False) for e in items[offset : offset + limit])
    resp = raw_json(body + "]")
    if emu.settings.has("total-count"):
        resp.headers["X-Total-Count"] = str(len(items))
    return resp


@_handler
async def get_time_entry(request: web.Request, emu: Emulator) -> web.Response:
    ws = _workspace(request, emu)
    if isinstance(ws, web.Response):
        return ws
    e = emu.world.entries.get(request.match_info["id"])
    if e is None or e.ws is not ws:
        return v1_error(404, "RESOURCE_NOT_FOUND")
    return raw_json(shapes.entry_json(e, False))


def add_routes(app: web.Application, settings: EmulatorSettings) -> None:
    r = app.router
    r.add_get("/v1/workspaces", list_workspaces)
    if settings.has("v1-resources"):
        base = "/v1/workspaces/{ws}"
        for kind in ("clients", "projects", "tags", "members"):
            r.add_get(f"{base}/{kind}", _list(kind))
        r.add_get(f"{base}/projects/{{project}}/tasks", list_tasks)
        r.add_get(f"{base}/time-entries", list_time_entries)
        r.add_get(f"{base}/time-entries/{{id}}", get_time_entry)
