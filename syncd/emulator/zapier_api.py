"""The Zapier integration API under ``/api`` (Bearer auth, flat ``{error}`` bodies)."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

from aiohttp import web

from . import actions, shapes
from .responses import api_error, gateway_timeout, json_response, raw_json
from .settings import EmulatorSettings
from .state import EMU, REQ_KEY, REQ_USER, Emulator
from .timefmt import fmt_ms
from .validation import (
    COLOR_NAMES,
    CURRENCY_RE,
    HEX_COLOR_RE,
    UUID_RE,
    Checker,
    Invalid,
    bool_filter,
    date_filter,
    int_filter,
    uuid_filter,
)
from .webhooks import allowed_events
from .world import Webhook, Workspace, new_uuid, sort_newest_first

Z = "/api/integrations/zapier"
FETCH_ERRORS = {
    f"{Z}/triggers/time-entries/start/fallback": "Failed to fetch time entries",
    f"{Z}/triggers/time-entries/stop/fallback": "Failed to fetch time entries",
    f"{Z}/triggers/time-entries/manual_entry/fallback": "Failed to fetch time entries",
    f"{Z}/triggers/clients/fallback": "Failed to fetch clients",
    f"{Z}/triggers/projects/fallback": "Failed to fetch projects",
    f"{Z}/triggers/tasks/fallback": "Failed to fetch tasks",
}


class BadRequest(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


def _handler(fn):
    """Turn BadRequest/Invalid raised by a handler into its documented response."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        emu = request.app[EMU]
        if request.get(REQ_USER) is None and fn.__name__ not in ("auth_test", "delete_webhook"):
            return api_error(401, "Unauthorized")
        try:
            return await fn(request, emu)
        except BadRequest as exc:
            return exc.response
        except Invalid as exc:
            return api_error(400, "Invalid request body", details=exc.details)

    wrapped.__name__ = fn.__name__
    return wrapped


async def _body(request: web.Request, message: str = "Invalid request body") -> dict:
    try:
        body = await request.json(loads=json.loads)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(api_error(400, message)) from None
    if not isinstance(body, dict):
        raise BadRequest(api_error(400, message))
    return body


def _workspaces(emu: Emulator, request: web.Request) -> list[Workspace]:
    user = request[REQ_USER]
    if emu.settings.webhook_scope == "default-workspace" and user.default_workspace:
        return [user.default_workspace]
    return emu.world.user_workspaces(user)


def _workspace(emu: Emulator, request: web.Request, ws_id: str | None) -> Workspace | None:
    ws = emu.world.workspaces.get(ws_id or "")
    if ws is None or emu.world.member_of(request[REQ_USER], ws) is None:
        return None
    return ws


def _ws_or_404(emu, request, ws_id) -> Workspace:
    ws = _workspace(emu, request, ws_id)
    if ws is None:
        raise BadRequest(api_error(404, "Workspace not found"))
    return ws


# --- health and auth ----------------------------------------------------------------
async def health(request: web.Request) -> web.Response:
    emu = request.app[EMU]
    stamp = fmt_ms(emu.now_ms())
    if emu.health_error:
        body = {
            "status": "unhealthy",
            "timestamp": stamp,
            "service": "timetracker-api",
            "error": emu.health_error,
        }
        return json_response(body, 503)
    body = {
        "status": "healthy",
        "timestamp": stamp,
        "service": "timetracker-api",
        "version": "1.0.0",
    }
    return json_response(body)


@_handler
async def auth_test(request: web.Request, emu: Emulator) -> web.Response:
    user = request[REQ_USER]
    if user is None:
        return api_error(404, "User not found")
    return json_response({"user_id": user.id, "user_name": user.name, "user_email": user.email})


# --- webhooks ------------------------------------------------------------------------
def _valid_target(url: object, settings: EmulatorSettings) -> bool:
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if not parts.netloc or not parts.hostname:
        return False
    if parts.scheme == "https":
        return True
    return (
        parts.scheme == "http"
        and settings.allow_http_webhooks
        and parts.hostname in ("127.0.0.1", "localhost", "::1")
    )


@_handler
async def subscribe(request: web.Request, emu: Emulator) -> web.Response:
    body = await _body(request)
    url, events = body.get("url"), body.get("events")
    if not url or not isinstance(events, list) or not events:
        return api_error(400, "URL and events array are required")
    if not _valid_target(url, emu.settings):
        return api_error(400, "Invalid URL format")
    allowed = allowed_events(emu.settings)
    for ev in events:
        if ev not in allowed:
            return api_error(400, f"Invalid event type: {ev}")
    description = body.get("description")
    secret = body.get("secret")
    if description is not None and not isinstance(description, str):
        return api_error(400, "Invalid request body")
    if secret is not None and not isinstance(secret, str):
        return api_error(400, "Invalid request body")
    rng = emu.world.rng
    if emu.settings.webhook_id_format == "uuid":
        wid = new_uuid(rng)
    else:
        wid = f"wh_{rng.getrandbits(64):016x}"
    wh = Webhook(
        wid,
        request[REQ_USER],
        request[REQ_KEY],
        url,
        list(dict.fromkeys(events)),
        description,
        secret or None,
        emu.now_ms(),
    )
    emu.world.webhooks[wid] = wh
    out = {"id": wh.id, "url": wh.url, "events": wh.events, "status": wh.status}
    if emu.settings.webhook_id_format == "uuid":
        out["secret"] = wh.secret
    return json_response({"success": True, "webhook": out})


@_handler
async def list_webhooks(request: web.Request, emu: Emulator) -> web.Response:
    user = request[REQ_USER]
    hooks = [w for w in emu.world.webhooks.values() if w.user is user]
    hooks.sort(key=lambda w: (w.created, w.id), reverse=True)
    return json_response(
        {
            "success": True,
            "webhooks": [
                {
                    "id": w.id,
                    "url": w.url,
                    "events": w.events,
                    "status": w.status,
                    "description": w.description,
                    "createdAt": fmt_ms(w.created),
                    "updatedAt": fmt_ms(w.updated),
                }
                for w in hooks
            ],
        }
    )


@_handler
async def delete_webhook(request: web.Request, emu: Emulator) -> web.Response:
    user = request[REQ_USER]
    if user is None:
        return api_error(401, "User ID not found in authentication result")
    wid = request.match_info["id"]
    wh = emu.world.webhooks.get(wid)
    if wh is None or wh.user is not user:
        mode = emu.settings.delete_unknown_webhook
        if mode == "200":
            return json_response({"success": True})
        return api_error(404 if mode == "404" else 400, "Webhook not found")
    del emu.world.webhooks[wid]
    mode = emu.settings.delete_webhook_success
    if mode == "204":
        return web.Response(status=204)
    if mode == "webhook-id":
        return json_response({"success": True, "webhookId": wid})
    return json_response({"success": True})


# --- fallbacks -----------------------------------------------------------------------
def _fallback(kind: str, action: str | None = None):
    @_handler
    async def handler(request: web.Request, emu: Emulator) -> web.Response:
        item = emu.world.latest(kind, _workspaces(emu, request))
        if kind in ("start", "stop", "manual"):
            out = shapes.sample_entry(action) if item is None else shapes.entry_event(item, action)
        elif kind == "client":
            out = shapes.SAMPLE_CLIENT if item is None else shapes.client_event(item)
        elif kind == "project":
            out = shapes.SAMPLE_PROJECT if item is None else shapes.project_event(item)
        else:
            out = shapes.SAMPLE_TASK if item is None else shapes.task_event(item)
        return json_response([out])

    handler.__name__ = f"fallback_{kind}"
    return handler


# --- time entries --------------------------------------------------------------------
def _check(cond: bool) -> None:
    if not cond:
        raise ValueError


@_handler
async def find_time_entries(request: web.Request, emu: Emulator) -> web.Response:
    body = await _body(request)
    try:
        ws_id = uuid_filter(body.get("workspace_id"), required=True)
        desc = body.get("description")
        _check(desc is None or isinstance(desc, str))
        member_id = uuid_filter(body.get("team_member_id"))
        project_id = uuid_filter(body.get("project_id"))
        task_id = uuid_filter(body.get("task_id"))
        billable = bool_filter(body.get("billable"))
        manual = bool_filter(body.get("manually_entered"))
        date_after = date_filter(body.get("date_after"))
        date_before = date_filter(body.get("date_before"))
        st_after = date_filter(body.get("start_time_after"))
        st_before = date_filter(body.get("start_time_before"))
        et_after = date_filter(body.get("end_time_after"))
        et_before = date_filter(body.get("end_time_before"))
        dmin = int_filter(body.get("duration_min"))
        dmax = int_filter(body.get("duration_max"))
    except ValueError:
        return api_error(400, "Invalid request parameters")
    ws = _workspace(emu, request, ws_id)
    if ws is None:
        return raw_json("[]")
    world = emu.world
    s = emu.settings
    exclusive = s.date_bounds == "exclusive"
    if s.date_filter_field == "date":
        found = world.window(ws, date_after, date_before, exclusive=exclusive)
    else:
        found = world.created_window(ws, date_after, date_before, exclusive=exclusive)
    if desc:
        needle = desc.casefold()
        found = [e for e in found if needle in e.description.casefold()]
    if member_id is not None:
        found = [e for e in found if e.member.id == member_id]
    if project_id is not None:
        found = [e for e in found if e.project is not None and e.project.id == project_id]
    if task_id is not None:
        found = [e for e in found if e.task is not None and e.task.id == task_id]
    if billable is not None:
        found = [e for e in found if e.billable is billable]
    if manual is not None:
        found = [e for e in found if e.manual is manual]
    if st_after is not None:
        found = [e for e in found if e.start is not None and e.start >= st_after]
    if st_before is not None:
        found = [e for e in found if e.start is not None and e.start <= st_before]
    if et_after is not None:
        found = [e for e in found if e.end is not None and e.end >= et_after]
    if et_before is not None:
        found = [e for e in found if e.end is not None and e.end <= et_before]
    if dmin is not None:
        found = [e for e in found if e.duration is not None and e.duration >= dmin]
    if dmax is not None:
        found = [e for e in found if e.duration is not None and e.duration <= dmax]
    if s.find_timeout_above and len(found) > s.find_timeout_above:
        await asyncio.sleep(s.find_timeout_delay)
        return gateway_timeout()
    sort_newest_first(found)
    if s.find_cap:
        del found[s.find_cap :]
    return raw_json(shapes.entries_json(found, emu.json_cache))


@_handler
async def create_time_entry(request: web.Request, emu: Emulator) -> web.Response:
    body = await _body(request)
    s = emu.settings
    c = Checker(body)
    ws_id = c.uuid("workspace_id", required=True)
    start = c.datetime("start_time", required=True)
    end = c.datetime("end_time", required=True)
    billable = c.boolean("billable", required=s.billable_required, default=True)
    date = c.datetime("date")
    description = c.string("description") or ""
    duration = c.integer("duration", minimum=0)
    manual = c.boolean("manually_entered", default=True)
    member_id = c.string(
        "team_member_id",
        required=s.team_member_required,
        min_len=1 if s.team_member_required else 0,
    )
    project_id = c.string("project_id")
    task_id = c.string("task_id")
    tag_ids = c.string_list("tag_ids")
    c.done()
    if end <= start:
        return api_error(400, "End time must be after start time")
    ws = _ws_or_404(emu, request, ws_id)
    world = emu.world
    if member_id:
        member = world.members.get(member_id)
        if member is None or member.ws is not ws:
            return api_error(400, "Team member does not belong to the specified workspace")
    else:
        member = world.member_of(request[REQ_USER], ws)
    project = None
    if project_id:
        project = world.projects.get(project_id)
        if project is None or project.ws is not ws:
            return api_error(400, "Project does not belong to the specified workspace")
    task = None
    if task_id:
        task = world.tasks.get(task_id)
        if task is None or (project is not None and task.project is not project):
            return api_error(400, "Task does not belong to the specified project")
        if task.project.ws is not ws:
            return api_error(400, "Task does not belong to the specified project")
        project = task.project
    tags = []
    for tid in tag_ids:
        tag = world.tags.get(tid)
        if tag is None or tag.ws is not ws:
            return api_error(400, "One or more tags do not belong to the specified workspace")
        if tag not in tags:
            tags.append(tag)
    e = actions.create_entry(
        emu,
        ws=ws,
        member=member,
        start=start,
        end=end,
        duration=duration,
        date=date,
        description=description,
        billable=billable,
        manual=manual,
        project=project,
        task=task,
        tags=tags,
    )
    return raw_json(shapes.entry_json(e, camel_stamps=False), 201)


# --- clients -------------------------------------------------------------------------
def _name_search(emu, request, body, items, ws_of):
    try:
        ws_id = uuid_filter(body.get("workspace_id"), required=True)
        name = body.get("name")
        _check(isinstance(name, str))
    except ValueError:
        raise BadRequest(api_error(400, "Invalid request parameters")) from None
    ws = _workspace(emu, request, ws_id)
    if ws is None:
        return []
    needle = name.casefold()
    found = [o for o in items if ws_of(o) is ws and needle in o.name.casefold()]
    found.sort(key=lambda o: (o.created, o.id), reverse=True)
    return found


@_handler
async def create_client(request: web.Request, emu: Emulator) -> web.Response:
    body = await _body(request)
    c = Checker(body)
    name = c.string("name", required=True, min_len=1, max_len=255)
    ws_id = c.uuid("workspace_id", required=True)
    ctype = c.enum("type", ("individual", "company"), "individual")
    status = c.enum("status", ("active", "inactive"), "active")
    email = c.email("email")
    phone = c.string("phone")
    address = c.string("address")
    note = c.string("note")
    currency = c.string("currency") or "USD"
    if not CURRENCY_RE.match(currency):
        c.fail("currency", "Invalid currency code")
    c.done()
    ws = _ws_or_404(emu, request, ws_id)
    client = actions.create_client(
        emu,
        ws,
        name,
        type=ctype,
        status=status,
        email=email,
        phone=phone,
        address=address,
        note=note,
        currency=currency,
    )
    return json_response(shapes.client_full(client), 201)


@_handler
async def list_clients(request: web.Request, emu: Emulator) -> web.Response:
    q = request.query
    try:
        ws_id = uuid_filter(q.get("workspace_id"), required=True)
        ctype = q.get("type")
        _check(ctype in (None, "individual", "company"))
        status = q.get("status")
        _check(status in (None, "active", "inactive"))
        currency = q.get("currency")
        flags = {
            f: bool_filter(q.get(f))
            for f in ("has_email", "has_phone", "has_address", "has_notes", "has_projects")
        }
        after = date_filter(q.get("created_after"))
        before = date_filter(q.get("created_before"))
        limit = int_filter(q.get("limit"))
        limit = 50 if limit is None else limit
        _check(1 <= limit <= 100)
        offset = int_filter(q.get("offset")) or 0
        _check(offset >= 0)
    except ValueError:
        return api_error(400, "Invalid request parameters")
    ws = _workspace(emu, request, ws_id)
    if ws is None:
        return json_response([])
    attrs = {
        "has_email": "email",
        "has_phone": "phone",
        "has_address": "address",
        "has_notes": "note",
        "has_projects": "projects",
    }
    out = []
    for cl in emu.world.clients.values():
        if cl.ws is not ws or (ctype and cl.type != ctype) or (status and cl.status != status):
            continue
        if currency and cl.currency != currency:
            continue
        if (after is not None and cl.created < after) or (
            before is not None and cl.created > before
        ):
            continue
        if any(v is not None and bool(getattr(cl, attrs[f])) != v for f, v in flags.items()):
            continue
        out.append(cl)
    out.sort(key=lambda o: (o.created, o.id), reverse=True)
    return json_response([shapes.client_full(cl) for cl in out[offset : offset + limit]])


@_handler
async def find_clients(request: web.Request, emu: Emulator) -> web.Response:
    body = await _body(request, "Invalid request parameters")
    found = _name_search(emu, request, body, emu.world.clients.values(), lambda o: o.ws)
    return json_response([shapes.client_find(o) for o in found])


# --- projects ------------------------------------------------------------------------
@_handler
async def create_project(request: web.Request, emu: Emulator) -> web.Response:
    body = await _body(request)
    c = Checker(body)
    name = c.string("name", required=True, min_len=1, max_len=255)
    ws_id = c.uuid("workspace_id", required=True)
    client_id = c.string("client_id")
    description = c.string("description")
    status = c.enum("status", ("active", "completed"), "active")
    is_private = c.boolean("isPrivate", default=False)
    rate = c.positive("defaultBillableRate")
    default_billable = c.boolean("defaultBillable", default=True)
    est_hours = c.positive("estimatedHours")
    est_budget = c.positive("estimatedBudget")
    c.done()
    ws = _ws_or_404(emu, request, ws_id)
    client = None
    if client_id:
        client = emu.world.clients.get(client_id)
        if client is None or client.ws is not ws:
            return api_error(400, "Client not found in workspace")
    p = actions.create_project(
        emu,
        ws,
        client,
        name,
        description=description,
        status=status,
        is_private=is_private,
        rate=rate,
        default_billable=default_billable,
        estimated_hours=est_hours,
        estimated_budget=est_budget,
    )
    return json_response(shapes.project_create(p), 201)


@_handler
async def find_projects(request: web.Request, emu: Emulator) -> web.Response:
    body = await _body(request, "Invalid request parameters")
    found = _name_search(emu, request, body, emu.world.projects.values(), lambda o: o.ws)
    return json_response([shapes.project_find(o, emu.world) for o in found])


# --- tasks ---------------------------------------------------------------------------
@_handler
async def create_task(request: web.Request, emu: Emulator) -> web.Response:
    body = await _body(request)
    c = Checker(body)
    name = c.string("name", required=True, min_len=1, max_len=255)
    project_id = c.string("project_id", required=True, min_len=1)
    description = c.string("description")
    status = c.enum("status", ("todo", "in-progress", "completed"), "todo")
    priority = c.enum("priority", ("low", "medium", "high"), "medium")
    est = c.positive("estimated_hours")
    actual = c.positive("actual_hours")
    due = c.datetime("due_date")
    assignee_ids = c.string("assignee_ids")
    c.done()
    project = emu.world.projects.get(project_id)
    if project is None or emu.world.member_of(request[REQ_USER], project.ws) is None:
        return api_error(400, "Project not found")
    assignees = []
    for mid in [x.strip() for x in (assignee_ids or "").split(",") if x.strip()]:
        m = emu.world.members.get(mid)
        if m is None or m.ws is not project.ws:
            return api_error(400, "One or more assignee IDs are invalid")
        if m not in assignees:
            assignees.append(m)
    t = actions.create_task(
        emu,
        project,
        name,
        description=description,
        status=status,
        priority=priority,
        estimated_hours=est,
        actual_hours=actual,
        due_date=due,
        assignees=assignees,
    )
    return json_response(shapes.task_record(t), 201)


@_handler
async def find_tasks(request: web.Request, emu: Emulator) -> web.Response:
    if request.method == "GET":
        body = dict(request.query)
    else:
        body = await _body(request, "Invalid request parameters")
    found = _name_search(emu, request, body, emu.world.tasks.values(), lambda o: o.project.ws)
    return json_response([shapes.task_record(o) for o in found])


# --- tags ----------------------------------------------------------------------------
@_handler
async def create_tag(request: web.Request, emu: Emulator) -> web.Response:
    body = await _body(request)
    c = Checker(body)
    name = c.string("name", required=True, min_len=1, max_len=255)
    ws_id = c.uuid("workspace_id", required=True)
    color = c.string("color") or "#3B82F6"
    if not (HEX_COLOR_RE.match(color) or color.lower() in COLOR_NAMES):
        c.fail("color", "Invalid color")
    description = c.string("description")
    c.done()
    ws = _ws_or_404(emu, request, ws_id)
    for tag in emu.world.tags.values():
        if tag.ws is ws and tag.name.casefold() == name.casefold():
            return api_error(409, "Tag already exists", tag=shapes.tag_record(tag))
    tag = actions.create_tag(emu, ws, name, color, description)
    return json_response(shapes.tag_record(tag), 201)


@_handler
async def list_tags(request: web.Request, emu: Emulator) -> web.Response:
    try:
        ws_id = uuid_filter(request.query.get("workspace_id"), required=True)
    except ValueError:
        return api_error(400, "Invalid request parameters")
    ws = _workspace(emu, request, ws_id)
    tags = [t for t in emu.world.tags.values() if t.ws is ws] if ws else []
    tags.sort(key=lambda o: (o.created, o.id), reverse=True)
    return json_response([shapes.tag_record(t) for t in tags])


@_handler
async def find_tags(request: web.Request, emu: Emulator) -> web.Response:
    body = await _body(request, "Invalid request parameters")
    found = _name_search(emu, request, body, emu.world.tags.values(), lambda o: o.ws)
    return json_response([shapes.tag_record(o) for o in found])


def add_routes(app: web.Application, settings: EmulatorSettings) -> None:
    r = app.router
    r.add_get("/api/health", health)
    r.add_get(f"{Z}/auth", auth_test)
    r.add_post(f"{Z}/webhooks/subscribe", subscribe)
    r.add_get(f"{Z}/webhooks/subscribe", list_webhooks)
    r.add_delete(f"{Z}/webhooks/{{id}}", delete_webhook)
    r.add_get(f"{Z}/triggers/time-entries/start/fallback", _fallback("start", "start_timer"))
    r.add_get(f"{Z}/triggers/time-entries/stop/fallback", _fallback("stop", "stop_timer"))
    r.add_get(
        f"{Z}/triggers/time-entries/manual_entry/fallback", _fallback("manual", "manual_entry")
    )
    r.add_get(f"{Z}/triggers/clients/fallback", _fallback("client"))
    r.add_get(f"{Z}/triggers/projects/fallback", _fallback("project"))
    r.add_get(f"{Z}/triggers/tasks/fallback", _fallback("task"))
    r.add_post(f"{Z}/triggers/time-entries/find", find_time_entries)
    r.add_post(f"{Z}/triggers/time-entries", create_time_entry)
    r.add_get(f"{Z}/triggers/clients", list_clients)
    r.add_post(f"{Z}/triggers/clients", create_client)
    r.add_post(f"{Z}/triggers/clients/find", find_clients)
    r.add_post(f"{Z}/triggers/projects", create_project)
    r.add_post(f"{Z}/triggers/projects/find", find_projects)
    r.add_post(f"{Z}/triggers/tasks", create_task)
    r.add_post(f"{Z}/triggers/tasks/find", find_tasks)
    r.add_get(f"{Z}/triggers/tasks/find", find_tasks)
    if settings.tag_create_path in ("triggers", "both"):
        r.add_post(f"{Z}/triggers/tags", create_tag)
    if settings.tag_create_path in ("actions", "both"):
        r.add_post(f"{Z}/actions/tags", create_tag)
    r.add_get(f"{Z}/actions/tags", list_tags)
    r.add_post(f"{Z}/triggers/tags/find", find_tags)


__all__ = ["FETCH_ERRORS", "UUID_RE", "add_routes"]
