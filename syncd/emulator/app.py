"""The aiohttp application: both API surfaces, the control API, limits and faults."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from . import control, core_api, zapier_api
from .faults import Fault
from .ratelimit import Decision
from .responses import api_error, raw_json, surface_error, v1_error
from .settings import EmulatorSettings
from .state import EMU, REQ_KEY, REQ_USER, Emulator

HEALTH_PATH = "/api/health"


def surface_of(path: str) -> str:
    return "v1" if path == "/v1" or path.startswith("/v1/") else "api"


def api_key_of(request: web.Request, surface: str, lenient: bool) -> str | None:
    """The API key a request presents on its surface (the other surface's header only
    when ``lenient``)."""
    x_key = request.headers.get("X-Api-Key")
    auth = request.headers.get("Authorization", "")
    bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
    if surface == "v1":
        return x_key or (bearer if lenient else None)
    return bearer or (x_key if lenient else None)


def rate_headers(resp: web.StreamResponse, d: Decision) -> None:
    resp.headers["X-RateLimit-Limit"] = str(d.limit)
    resp.headers["X-RateLimit-Remaining"] = str(d.remaining)
    resp.headers["X-RateLimit-Reset"] = str(d.reset)
    if not d.allowed:
        resp.headers["Retry-After"] = str(d.retry_after)


def _convert_http_exception(exc: web.HTTPException, surface: str) -> web.Response:
    return surface_error(surface, exc.status)


@web.middleware
async def gate(request: web.Request, handler) -> web.StreamResponse:
    path = request.path
    if path.startswith("/__emulator"):
        return await handler(request)
    emu = request.app[EMU]
    surface = surface_of(path)
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else "(unmatched)"
    emu.endpoints[f"{request.method} {canonical}"] += 1
    key = api_key_of(request, surface, emu.settings.lenient_auth)
    fault = emu.faults.take(request.method, path)
    if fault is not None:
        return await _apply_fault(request, handler, fault, surface, key)
    return await _serve(request, handler, surface, key)


async def _serve(request: web.Request, handler, surface: str, key: str | None):
    emu = request.app[EMU]
    if request.path == HEALTH_PATH:
        return await _call(request, handler, surface)
    if key is None or key not in emu.world.keys:
        return _unauthorized(surface)
    decision = emu.limiter.hit(key, await _limited_workspace(request, emu))
    if not decision.allowed:
        if surface == "v1":
            resp = v1_error(
                429,
                "RATE_LIMIT_EXCEEDED",
                details={"issue": f"Retry after {decision.retry_after} seconds"},
            )
        else:
            resp = api_error(429, "Too many requests")
    else:
        request[REQ_KEY] = key
        request[REQ_USER] = emu.world.keys[key]
        resp = await _call(request, handler, surface)
    if isinstance(resp, web.Response) and isinstance(resp.body, bytes):
        emu.limiter.count_bytes(key, len(resp.body))
    rate_headers(resp, decision)
    return resp


async def _limited_workspace(request: web.Request, emu: Emulator) -> str | None:
    """The workspace a request names (path, query or JSON body) when the limits are per key
    and workspace; None when they are per key."""
    if emu.limiter.scope == "key":
        return None
    named = request.match_info.get("ws") or request.query.get("workspace_id")
    if named or request.method != "POST" or not request.can_read_body:
        return named or None
    try:  # the body is cached: the handler reads it again
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        return None
    value = body.get("workspace_id") if isinstance(body, dict) else None
    return str(value) if value not in (None, "") else None


async def _call(request: web.Request, handler, surface: str) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return _convert_http_exception(exc, surface)


def _unauthorized(surface: str) -> web.Response:
    if surface == "v1":
        return v1_error(401, "INVALID_API_KEY")
    return api_error(401, "Unauthorized")


async def _apply_fault(request, handler, fault: Fault, surface: str, key: str | None):
    emu = request.app[EMU]
    if fault.kind == "delay":
        await asyncio.sleep(fault.seconds)
        return await _serve(request, handler, surface, key)
    known = key is not None and key in emu.world.keys
    workspace = await _limited_workspace(request, emu) if known else None
    if known:
        emu.limiter.count_only(key)
    if fault.kind == "drop":
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError
    if fault.kind == "status":
        if fault.body is not None:
            resp = raw_json(_dumps(fault.body), fault.status)
        else:
            resp = surface_error(surface, fault.status, _fault_message(request, fault.status))
        if fault.retry_after is not None:
            resp.headers["Retry-After"] = str(fault.retry_after)
    elif fault.kind == "malformed":
        resp = web.Response(
            body=b'{"error": "unterminated', status=200, content_type="application/json"
        )
    else:  # truncated
        if known:
            request[REQ_KEY] = key
            request[REQ_USER] = emu.world.keys[key]
            real = await _call(request, handler, surface)
        else:
            real = _unauthorized(surface)
        body = real.body if isinstance(real.body, bytes) else b"{}"
        stream = web.StreamResponse(status=real.status)
        stream.content_type = "application/json"
        stream.content_length = len(body)
        if known:
            rate_headers(stream, emu.limiter.peek(key, workspace))
        await stream.prepare(request)
        await stream.write(body[: max(1, len(body) // 2)])
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError
    if known:
        rate_headers(resp, emu.limiter.peek(key, workspace))
    return resp


def _dumps(body: object) -> str:
    from .responses import dumps

    return dumps(body)


def _fault_message(request: web.Request, status: int) -> str | None:
    if status != 500:
        return None
    return zapier_api.FETCH_ERRORS.get(request.path, "Internal server error")


async def _webhooks_ctx(app: web.Application):
    emu = app[EMU]
    await emu.dispatcher.start()
    yield
    await emu.dispatcher.close()


def create_app(settings: EmulatorSettings | None = None) -> web.Application:
    """Build the emulator application (seeding happens here)."""
    settings = settings or EmulatorSettings()
    app = web.Application(middlewares=[gate], client_max_size=32 * 1024 * 1024)
    app[EMU] = Emulator(settings)
    core_api.add_routes(app, settings)
    zapier_api.add_routes(app, settings)
    control.add_routes(app)
    app.cleanup_ctx.append(_webhooks_ctx)
    return app
