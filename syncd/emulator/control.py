"""The unauthenticated control API under ``/__emulator/`` (loopback only).

It changes the world the way real users would (timers, manual entries, silent edits and
deletes), moves the clock, arms faults and reports statistics. None of it costs rate budget.
"""

from __future__ import annotations

import json

from aiohttp import web

from . import actions, shapes
from .faults import FaultSpecError, parse_fault
from .responses import json_response, raw_json
from .seed import _seed_key_users
from .settings import runtime_changes
from .state import EMU, Emulator
from .timefmt import fmt_ms, parse_iso
from .world import Entry, Member, Workspace, sort_newest_first

C = "/__emulator"


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _handler(fn):
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await fn(request, request.app[EMU])
        except ControlError as exc:
            return json_response({"error": exc.message}, exc.status)

    wrapped.__name__ = fn.__name__
    return wrapped


async def _body(request: web.Request, kind=dict):
    if not request.can_read_body:
        return kind()
    try:
        body = await request.json(loads=json.loads)
    except ValueError:
        raise ControlError(400, "body must be JSON") from None
    if not isinstance(body, kind):
        raise ControlError(400, f"body must be a JSON {'object' if kind is dict else 'array'}")
    return body


def _ws(emu: Emulator, ws_id: object) -> Workspace:
    ws = emu.world.workspaces.get(ws_id) if isinstance(ws_id, str) else None
    if ws is None:
        raise ControlError(404, "Workspace not found")
    return ws


def _member(emu: Emulator, ws: Workspace, member_id: object) -> Member:
    if member_id is None:
        user = emu.world.keys.get(emu.settings.api_keys[0])
        m = emu.world.member_of(user, ws) if user else None
        if m is None:
            m = ws.members[0]
        return m
    m = emu.world.members.get(member_id) if isinstance(member_id, str) else None
    if m is None or m.ws is not ws:
        raise ControlError(400, "Team member does not belong to the specified workspace")
    return m


def _time(body: dict, field: str, *, required: bool = False) -> int | None:
    v = body.get(field)
    if v is None:
        if required:
            raise ControlError(400, f"{field} is required")
        return None
    try:
        return parse_iso(v)
    except ValueError:
        raise ControlError(400, f"{field} must be an ISO 8601 datetime") from None


def _entry_fields(emu: Emulator, ws: Workspace, body: dict, base: Entry | None) -> dict:
    """Validated attribute values for an entry from a control body (snake_case fields)."""
    world = emu.world
    out: dict = {}
    if "team_member_id" in body or base is None:
        out["member"] = _member(emu, ws, body.get("team_member_id"))
    for field, attr in (("start_time", "start"), ("end_time", "end"), ("date", "date")):
        if field in body:
            out[attr] = _time(body, field)
    if "created_at" in body:
        out["created"] = _time(body, "created_at", required=True)
    if "description" in body:
        if not isinstance(body["description"], str):
            raise ControlError(400, "description must be a string")
        out["description"] = body["description"]
    for field, attr in (("billable", "billable"), ("manually_entered", "manual")):
        if field in body:
            if not isinstance(body[field], bool):
                raise ControlError(400, f"{field} must be a boolean")
            out[attr] = body[field]
    if "project_id" in body:
        pid = body["project_id"]
        p = world.projects.get(pid) if pid is not None else None
        if pid is not None and (p is None or p.ws is not ws):
            raise ControlError(400, "Project does not belong to the specified workspace")
        out["project"] = p
    if "task_id" in body:
        tid = body["task_id"]
        t = world.tasks.get(tid) if tid is not None else None
        if tid is not None and (t is None or t.project.ws is not ws):
            raise ControlError(400, "Task does not belong to the specified project")
        out["task"] = t
        if t is not None and "project" not in out:
            out["project"] = t.project
    if "tag_ids" in body:
        ids = body["tag_ids"] or []
        tags = [world.tags.get(i) for i in ids]
        if any(t is None or t.ws is not ws for t in tags):
            raise ControlError(400, "One or more tags do not belong to the specified workspace")
        out["tagset"] = world.tagset(tuple(dict.fromkeys(tags)))
    if "duration" in body:
        d = body["duration"]
        if d is not None and (not isinstance(d, int) or isinstance(d, bool) or d < 0):
            raise ControlError(400, "duration must be a non-negative integer")
        out["duration"] = d
    start = out.get("start", base.start if base else None)
    end = out.get("end", base.end if base else None)
    if start is not None and end is not None and end < start:
        raise ControlError(400, "End time must be after start time")
    if "duration" not in body and ("start" in out or "end" in out):
        out["duration"] = None if start is None or end is None else (end - start) // 1000
    return out


def _entry_list(entries: list[Entry]) -> web.Response:
    return raw_json(shapes.entries_json(entries))


# --- reads ---------------------------------------------------------------------------
@_handler
async def workspaces(request: web.Request, emu: Emulator) -> web.Response:
    world = emu.world
    out = []
    key_of = {}
    for key, user in world.keys.items():
        if user is not None:
            key_of.setdefault(user.id, []).append(key)
    for ws in world.workspaces.values():
        out.append(
            {
                "id": ws.id,
                "name": ws.name,
                "time_entry_count": ws.count,
                "members": [
                    {
                        "id": m.id,
                        "name": m.name,
                        "email": m.email,
                        "role": m.role[1],
                        "user_id": m.user.id if m.user else None,
                        "api_keys": key_of.get(m.user.id, []) if m.user else [],
                        "running_entry_id": m.running.id if m.running else None,
                    }
                    for m in ws.members
                ],
                "clients": [shapes.client_find(c) for c in world.clients.values() if c.ws is ws],
                "projects": [
                    shapes.project_find(p, world) for p in world.projects.values() if p.ws is ws
                ],
                "tasks": [
                    shapes.task_record(t) for t in world.tasks.values() if t.project.ws is ws
                ],
                "tags": [shapes.tag_record(t) for t in world.tags.values() if t.ws is ws],
            }
        )
    return json_response(out)


@_handler
async def time_entries(request: web.Request, emu: Emulator) -> web.Response:
    ws = _ws(emu, request.query.get("workspace_id"))
    q = request.query
    lo = _time(dict(q), "date_after")
    hi = _time(dict(q), "date_before")
    return _entry_list(sort_newest_first(emu.world.window(ws, lo, hi)))


@_handler
async def time_entry(request: web.Request, emu: Emulator) -> web.Response:
    e = emu.world.entries.get(request.match_info["id"])
    if e is None:
        raise ControlError(404, "Time entry not found")
    return raw_json(shapes.entry_json(e))


# --- user actions --------------------------------------------------------------------
@_handler
async def timer_start(request: web.Request, emu: Emulator) -> web.Response:
    body = await _body(request)
    ws = _ws(emu, body.get("workspace_id"))
    member = _member(emu, ws, body.get("team_member_id"))
    fields = _entry_fields(
        emu,
        ws,
        {k: v for k, v in body.items() if k in ("project_id", "task_id", "tag_ids", "billable")},
        None,
    )
    desc = body.get("description", "")
    if not isinstance(desc, str):
        raise ControlError(400, "description must be a string")
    tagset = fields.get("tagset")
    e = actions.start_timer(
        emu,
        member,
        description=desc,
        project=fields.get("project"),
        task=fields.get("task"),
        billable=fields.get("billable"),
        tags=tagset.tags if tagset else (),
    )
    return raw_json(shapes.entry_json(e), 201)


@_handler
async def timer_stop(request: web.Request, emu: Emulator) -> web.Response:
    body = await _body(request)
    ws = _ws(emu, body.get("workspace_id"))
    member = _member(emu, ws, body.get("team_member_id"))
    e = actions.stop_timer(emu, member)
    if e is None:
        raise ControlError(409, "No running timer for this team member")
    return raw_json(shapes.entry_json(e))


def _create(emu: Emulator, body: dict, *, fire: bool) -> Entry:
    ws = _ws(emu, body.get("workspace_id"))
    f = _entry_fields(emu, ws, body, None)
    if "start" not in f or "end" not in f:
        raise ControlError(400, "start_time and end_time are required")
    tagset = f.get("tagset")
    return actions.create_entry(
        emu,
        ws=ws,
        member=f["member"],
        start=f["start"],
        end=f["end"],
        duration=f.get("duration"),
        date=f.get("date"),
        description=f.get("description", ""),
        billable=f.get("billable", True),
        manual=f.get("manual", fire),
        project=f.get("project"),
        task=f.get("task"),
        tags=tagset.tags if tagset else (),
        created=f.get("created"),
        fire=fire,
    )


@_handler
async def manual_entry(request: web.Request, emu: Emulator) -> web.Response:
    body = await _body(request)
    body["manually_entered"] = True
    return raw_json(shapes.entry_json(_create(emu, body, fire=True)), 201)


@_handler
async def bulk_create(request: web.Request, emu: Emulator) -> web.Response:
    body = await _body(request, list)
    if not all(isinstance(b, dict) for b in body):
        raise ControlError(400, "every item must be a JSON object")
    created = [_create(emu, b, fire=False) for b in body]
    return _entry_list(created)


@_handler
async def patch_entry(request: web.Request, emu: Emulator) -> web.Response:
    e = emu.world.entries.get(request.match_info["id"])
    if e is None:
        raise ControlError(404, "Time entry not found")
    body = await _body(request)
    if "workspace_id" in body and body["workspace_id"] != e.ws.id:
        raise ControlError(400, "an entry cannot move to another workspace")
    changes = _entry_fields(emu, e.ws, body, e)
    if changes.get("end", e.end) is None and e.member.running not in (None, e):
        raise ControlError(409, "the team member already has a running timer")
    actions.edit_entry(emu, e, changes)
    return raw_json(shapes.entry_json(e))


@_handler
async def delete_entry(request: web.Request, emu: Emulator) -> web.Response:
    e = emu.world.entries.get(request.match_info["id"])
    if e is None:
        raise ControlError(404, "Time entry not found")
    actions.delete_entry(emu, e)
    return json_response({"deleted": e.id})


# --- faults, clock, stats, keys, health -------------------------------------------------
@_handler
async def add_fault(request: web.Request, emu: Emulator) -> web.Response:
    body = await _body(request)
    try:
        fault = parse_fault(body)
    except FaultSpecError as exc:
        raise ControlError(400, str(exc)) from None
    emu.faults.add(fault)
    return json_response({"armed": fault.describe()}, 201)


@_handler
async def list_faults(request: web.Request, emu: Emulator) -> web.Response:
    return json_response({"faults": [f.describe() for f in emu.faults.active]})


@_handler
async def clear_faults(request: web.Request, emu: Emulator) -> web.Response:
    emu.faults.clear()
    return json_response({"faults": []})


@_handler
async def get_clock(request: web.Request, emu: Emulator) -> web.Response:
    now = emu.clock.now()
    return json_response({"now": fmt_ms(int(now * 1000)), "epoch": now})


@_handler
async def advance_clock(request: web.Request, emu: Emulator) -> web.Response:
    body = await _body(request)
    n = body.get("advance_seconds")
    if isinstance(n, bool) or not isinstance(n, (int, float)) or n < 0:
        raise ControlError(400, "advance_seconds must be a non-negative number")
    emu.clock.advance(float(n))
    now = emu.clock.now()
    return json_response({"now": fmt_ms(int(now * 1000)), "epoch": now})


@_handler
async def stats(request: web.Request, emu: Emulator) -> web.Response:
    d = emu.dispatcher
    return json_response(
        {
            "keys": emu.limiter.stats(),
            "webhook_deliveries": d.deliveries,
            "webhook_failures": d.failures,
            "webhook_pending": len(d.tasks),
            "faults_fired": emu.faults.fired,
            "endpoints": dict(sorted(emu.endpoints.items())),
        }
    )


@_handler
async def reset_stats(request: web.Request, emu: Emulator) -> web.Response:
    emu.limiter.reset_stats()
    emu.dispatcher.reset_stats()
    emu.endpoints.clear()
    emu.faults.fired = 0
    return json_response({"reset": True})


@_handler
async def webhooks(request: web.Request, emu: Emulator) -> web.Response:
    return json_response(
        [
            {
                "id": w.id,
                "url": w.url,
                "events": w.events,
                "status": w.status,
                "description": w.description,
                "secret": w.secret,
                "api_key": w.key,
                "user_id": w.user.id if w.user else None,
                "createdAt": fmt_ms(w.created),
                "updatedAt": fmt_ms(w.updated),
            }
            for w in emu.world.webhooks.values()
        ]
    )


@_handler
async def deliveries(request: web.Request, emu: Emulator) -> web.Response:
    return json_response(list(emu.dispatcher.attempts))


@_handler
async def add_key(request: web.Request, emu: Emulator) -> web.Response:
    body = await _body(request)
    key = body.get("api_key")
    if not isinstance(key, str) or not key:
        raise ControlError(400, "api_key is required")
    if key in emu.world.keys:
        raise ControlError(409, "api_key already exists")
    if body.get("orphan"):
        emu.world.keys[key] = None
    elif body.get("same_user_as") is not None:
        other = body["same_user_as"]
        if other not in emu.world.keys:
            raise ControlError(404, "same_user_as: unknown key")
        emu.world.keys[key] = emu.world.keys[other]
    else:
        _seed_key_users(emu.world, emu.settings.seed, (key,))
    emu.limiter.state(key)
    user = emu.world.keys[key]
    return json_response({"api_key": key, "user_id": user.id if user else None}, 201)


@_handler
async def revoke_key(request: web.Request, emu: Emulator) -> web.Response:
    key = request.match_info["key"]
    if emu.world.keys.pop(key, _MISSING) is _MISSING:
        raise ControlError(404, "unknown api key")
    return json_response({"revoked": key})


_MISSING = object()


@_handler
async def set_health(request: web.Request, emu: Emulator) -> web.Response:
    body = await _body(request)
    healthy = body.get("healthy", True)
    emu.health_error = None if healthy else str(body.get("error", "Database connection failed"))
    return json_response({"healthy": emu.health_error is None})


@_handler
async def get_settings(request: web.Request, emu: Emulator) -> web.Response:
    return json_response(emu.settings.public())


@_handler
async def patch_settings(request: web.Request, emu: Emulator) -> web.Response:
    body = await _body(request)
    try:
        settings = runtime_changes(emu.settings, body)
    except ValueError as exc:
        raise ControlError(400, str(exc)) from None
    emu.use_settings(settings)
    return json_response(settings.public())


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{C}/workspaces", workspaces)
    r.add_get(f"{C}/time-entries", time_entries)
    r.add_post(f"{C}/time-entries", bulk_create)
    r.add_get(f"{C}/time-entries/{{id}}", time_entry)
    r.add_patch(f"{C}/time-entries/{{id}}", patch_entry)
    r.add_delete(f"{C}/time-entries/{{id}}", delete_entry)
    r.add_post(f"{C}/timers/start", timer_start)
    r.add_post(f"{C}/timers/stop", timer_stop)
    r.add_post(f"{C}/manual-entries", manual_entry)
    r.add_post(f"{C}/faults", add_fault)
    r.add_get(f"{C}/faults", list_faults)
    r.add_delete(f"{C}/faults", clear_faults)
    r.add_get(f"{C}/clock", get_clock)
    r.add_post(f"{C}/clock", advance_clock)
    r.add_get(f"{C}/stats", stats)
    r.add_post(f"{C}/stats/reset", reset_stats)
    r.add_get(f"{C}/webhooks", webhooks)
    r.add_get(f"{C}/webhook-deliveries", deliveries)
    r.add_post(f"{C}/keys", add_key)
    r.add_delete(f"{C}/keys/{{key}}", revoke_key)
    r.add_post(f"{C}/health", set_health)
    r.add_get(f"{C}/settings", get_settings)
    r.add_patch(f"{C}/settings", patch_settings)
