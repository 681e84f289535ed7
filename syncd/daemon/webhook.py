"""The webhook receiver: an aiohttp application that checks deliveries and hands them on.

Routes (all on the one listener, see ``docs/operations.md``):

- ``POST /hooks/{token}``: a webhook delivery. Upstream documents no signature, so the
  subscribed URL carries an unguessable per-installation token. Refusals, in the order they
  are checked: unknown token 404, other method 405, body over the cap 413 (by
  ``Content-Length``, or as soon as the streamed body passes it), signature 401 (with a
  ``secret``, a signature header that is present must verify; an absent one is refused only
  with ``require_signature``). Everything else on the token path is answered 202, so upstream
  never disables the subscription: a documented event whose values upstream can produce is
  awaited through ``on_event`` (``{"status": <outcome>}``); anything else (a body not received
  within the body timeout, not JSON, nested too deeply, no documented event, an event kind
  not accepted, impossible values, or ``on_event`` raising ``InvalidWebhook``) is handed to
  ``on_refused`` as a :class:`Refusal`, which ledgers it and writes nothing
  (``{"status": "refused", "reason": ...}``). A database failure gives 503 (upstream
  retries); nothing gives 500.
- ``GET /healthz``: 200 or 503 with the JSON of ``health()``.
- ``GET /metrics``: Prometheus text.
- ``GET /``: the status page (HTML, see ``syncd.status_page``), when a ``page`` handler is given.

:func:`start_receiver` bounds what clients can hold: the request line and headers must arrive
within the header timeout (which also closes idle keep-alive connections), open connections
are capped below the process's file limit (when full, the oldest connection not inside a
handler is closed to make room), and out-of-resource errors are logged at most once per
interval. The handler never waits for upstream, so it answers within milliseconds.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import hmac
import json
import math
import os
import re
import resource
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from syncd import api
from syncd.api import (
    DELIVERY_HEADER,
    MAX_DELIVERY_BYTES,
    MAX_DESCRIPTION_CHARS,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_YEAR,
    MIN_YEAR,
    SIGNATURE_HEADER,
)
from syncd.errors import InvalidWebhook, StoreError
from syncd.records import DOCUMENTED_EVENTS, EventKind, WebhookEvent
from syncd.secrets import redact_path

if TYPE_CHECKING:
    from syncd.daemon.metrics import Metrics

log = structlog.get_logger("syncd.webhook")

#: Path prefix of the delivery route; the token is the next path segment.
HOOK_PREFIX = "/hooks/"
#: Seconds a client has to send the request line and headers (and an idle keep-alive
#: connection stays open).
DEFAULT_HEADER_TIMEOUT = 10.0
#: Seconds a client has to send a delivery's whole body.
DEFAULT_BODY_TIMEOUT = 10.0
#: Open connections at most (lowered to fit the file limit, see :func:`connection_limit`).
DEFAULT_MAX_CONNECTIONS = 1024
#: Connections the kernel queues until the receiver accepts them.
LISTEN_BACKLOG = 1024
#: The most connections the event loop accepts at once, before the connection cap counts
#: them.
ACCEPT_BATCH = 32
#: File descriptors kept free of counted connections: the database, upstream requests and
#: logs, and up to two accept batches (accepted but not yet counted, or closed to make room
#: but not yet released).
RESERVED_FDS = 128
#: Seconds after which an accepted connection that was never served stops counting.
_NEVER_CONNECTED = 5.0
#: The connection cap never goes below this, whatever the file limit.
MIN_CONNECTIONS = 16
#: Seconds between two log lines about the same kind of refusal or resource error.
LOG_INTERVAL = 60.0
#: Bytes of a refused delivery's body kept in the ledger.
LEDGER_BODY_BYTES = 4096
#: A refused delivery queues a hot-window re-scan at most once per this many seconds.
REFUSED_RESCAN_SECONDS = 60.0

# Values upstream can produce; a delivery outside them (or outside the limits of
# ``syncd.api``: years, id, name and text lengths) is refused.
MAX_JSON_DEPTH = 16  # documented payloads nest 4 levels (task → teamMembers → role)
MAX_PUSHED_DURATION_SECONDS = 31 * 86_400  # a pushed entry lasts at most a month
MAX_TAGS = 500
_SQLITE_MAX_INT = 2**63 - 1

OnEvent = Callable[[WebhookEvent], Awaitable[str]]
Health = Callable[[], tuple[bool, dict]]
ParseEvent = Callable[[Mapping[str, str], bytes], WebhookEvent]
VerifySignature = Callable[[str, bytes, str | None], bool]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_READ_CHUNK = 64 * 1024
_JSON_NESTING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
    b"Retry-After: 1\r\nConnection: close\r\n\r\n"
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A delivery on the token path that syncd will not use: ledger it, never apply it."""

    reason: str
    dedupe_key: str  # ``refused:`` + SHA-256 of the whole body
    body: bytes  # the first LEDGER_BODY_BYTES of the body
    body_bytes: int  # the whole body's size
    kind: str = "UNKNOWN"
    object_id: str = ""
    workspace_id: str | None = None
    delivery_id: str | None = None

    @classmethod
    def of(
        cls,
        body: bytes,
        reason: str,
        *,
        event: WebhookEvent | None = None,
        delivery_id: str | None = None,
    ) -> Refusal:
        """The refusal of ``body`` for ``reason``, naming the event it parsed to, if any."""
        if event is not None:
            kind, object_id, workspace = str(event.kind), event.object_id, event.workspace_id
        else:
            kind, (object_id, workspace) = "UNKNOWN", _glimpse(body)
        return cls(
            reason=reason,
            dedupe_key="refused:" + hashlib.sha256(body).hexdigest(),
            body=body[:LEDGER_BODY_BYTES],
            body_bytes=len(body),
            kind=kind,
            object_id=object_id[:MAX_ID_CHARS],
            workspace_id=workspace[:MAX_ID_CHARS] if workspace else None,
            delivery_id=delivery_id,
        )

    @property
    def body_text(self) -> str:
        """The kept body as text; bytes that are not UTF-8 read ``\\xNN``."""
        return self.body.decode("utf-8", "backslashreplace")


OnRefused = Callable[[Refusal], Awaitable[None]]


def _glimpse(body: bytes) -> tuple[str, str | None]:
    """``(id, workspace id)`` named by a body that is no usable event, as far as it names
    them (``""`` and None otherwise)."""
    try:
        obj = json.loads(body) if not json_too_deep(body) else None
    except (ValueError, RecursionError):
        return "", None
    if not isinstance(obj, dict):
        return "", None

    def text(value: object) -> str | None:
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return str(value) if len(str(value)) <= MAX_ID_CHARS else None
        return None

    workspace = obj.get("workspace")
    workspace_id = text(workspace.get("id")) if isinstance(workspace, dict) else None
    return text(obj.get("id")) or "", workspace_id or text(obj.get("workspace_id"))


def new_token() -> str:
    """A fresh unguessable path token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def webhook_url(public_url: str, token: str) -> str:
    """The URL to subscribe upstream: ``public_url`` (which may carry a reverse-proxy path
    prefix such as ``https://example.org/syncd``) followed by ``/hooks/<token>``.

    Raises ``ValueError`` when ``public_url`` is not an absolute http(s) URL, carries a query
    or fragment, or the token is empty.
    """
    if not token:
        raise ValueError("webhook token is empty")
    base = public_url.strip()
    if not re.match(r"^https?://[^/?#]+", base, re.IGNORECASE):
        raise ValueError(f"public_url must be an absolute http(s) URL, got {public_url!r}")
    if "?" in base or "#" in base:
        raise ValueError("public_url must not carry a query or fragment")
    return base.rstrip("/") + HOOK_PREFIX + token


# ------------------------------------------------------------------------- value checks


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``body`` nests arrays and objects deeper than ``limit`` (strings skipped)."""
    depth = 0
    for match in _JSON_NESTING.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False


def _number(value: int) -> str:
    text = str(value)
    return text if len(text) <= 24 else f"{text[:12]}... ({len(text)} digits)"


def _payload_problem(payload: object) -> str | None:
    """A number the mirror cannot hold or an over-long text anywhere in the payload."""
    stack = [payload]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if len(value) > MAX_DESCRIPTION_CHARS:
                return f"a text of {len(value)} characters (at most {MAX_DESCRIPTION_CHARS})"
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if not -_SQLITE_MAX_INT - 1 <= value <= _SQLITE_MAX_INT:
                return f"integer {_number(value)} is too large for the mirror"
        elif isinstance(value, float):
            if not math.isfinite(value):
                return "a number is not finite (NaN or Infinity)"
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return None


def _length_problem(name: str, value: str | None, limit: int) -> str | None:
    if value is not None and len(value) > limit:
        return f"{name} is {len(value)} characters long (at most {limit})"
    return None


def _year_problem(name: str, value: str | None) -> str | None:
    """``value`` is a normalised date or timestamp (``YYYY-...``) or None."""
    if value is None:
        return None
    year = int(value[:4]) if value[:4].isdigit() else None
    if year is None or not MIN_YEAR <= year <= MAX_YEAR:
        return f"{name} {value[:32]} is outside the years {MIN_YEAR}-{MAX_YEAR}"
    return None


def check_event(event: WebhookEvent, accepted: frozenset[EventKind]) -> str | None:
    """Why syncd must not use ``event`` (an unaccepted kind, or values upstream cannot
    produce), or None when it may be applied."""
    if event.kind not in accepted:
        return f"event {event.kind} is not one syncd subscribes to"
    checks: list[str | None] = [
        _payload_problem(event.payload),
        _length_problem("id", event.object_id, MAX_ID_CHARS),
        _length_problem("workspace id", event.workspace_id, MAX_ID_CHARS),
        _year_problem("updatedAt", event.updated_at),
    ]
    entry = event.entry
    if entry is not None:
        checks += [
            _length_problem(f"{name} id", value, MAX_ID_CHARS)
            for name, value in (
                ("team member", entry.team_member_id),
                ("project", entry.project_id),
                ("client", entry.client_id),
                ("task", entry.task_id),
            )
        ]
        checks += [
            _length_problem(name, value, MAX_NAME_CHARS)
            for name, value in (
                ("workspace name", entry.workspace_name),
                ("team member name", entry.team_member_name),
                ("team member email", entry.team_member_email),
                ("project name", entry.project_name),
                ("client name", entry.client_name),
                ("task name", entry.task_name),
            )
        ]
        if len(entry.tags) > MAX_TAGS:
            checks.append(f"{len(entry.tags)} tags (at most {MAX_TAGS})")
        for tag in entry.tags:
            checks.append(_length_problem("tag id", tag.id, MAX_ID_CHARS))
            checks.append(_length_problem("tag name", tag.name, MAX_NAME_CHARS))
            checks.append(_length_problem("tag color", tag.color, MAX_NAME_CHARS))
        checks.append(_length_problem("description", entry.description, MAX_DESCRIPTION_CHARS))
        duration = entry.duration_seconds
        if duration is not None and not 0 <= duration <= MAX_PUSHED_DURATION_SECONDS:
            checks.append(
                f"duration {_number(duration)} is outside 0..{MAX_PUSHED_DURATION_SECONDS} seconds"
            )
        checks += [
            _year_problem(name, value)
            for name, value in (
                ("date", entry.date),
                ("startTime", entry.start_time),
                ("endTime", entry.end_time),
                ("createdAt", entry.created_at),
                ("updatedAt", entry.updated_at),
            )
        ]
        if entry.start_time and entry.end_time and entry.end_time < entry.start_time:
            checks.append("endTime is before startTime")
    return next((c for c in checks if c), None)


# ------------------------------------------------------------------------- the application


class _Throttle:
    """Lets one event per key through every ``interval`` seconds; counts those held back."""

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self._interval = interval
        self._clock = clock
        self._until: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        """None to stay silent, else how many events of ``key`` were held back since."""
        now = self._clock()
        if key in self._until and now < self._until[key]:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._until[key] = now + self._interval
        return self._held.pop(key, 0)


def create_receiver_app(
    *,
    token: str,
    secret: str | None,
    require_signature: bool = False,
    max_body_bytes: int = MAX_DELIVERY_BYTES,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    accepted_kinds: frozenset[EventKind] = DOCUMENTED_EVENTS,
    on_event: OnEvent,
    on_refused: OnRefused | None = None,
    health: Health,
    metrics: Metrics | None = None,
    metrics_handler: Handler | None = None,
    page: Handler | None = None,
    parse_event: ParseEvent | None = None,
    verify_signature: VerifySignature | None = None,
    clock: Callable[[], float] = time.perf_counter,
    log_interval: float = LOG_INTERVAL,
) -> web.Application:
    """Build the receiver application (serve it with :func:`start_receiver`).

    ``on_event`` must be fast and never wait for upstream; its return value (e.g. ``applied``,
    ``duplicate``, ``stale``) is the ``status`` of the 202 answer and the metrics outcome. If
    it raises ``InvalidWebhook`` the delivery is refused (handed to ``on_refused``, answered
    202); ``StoreError`` (from it or from ``on_refused``) gives 503 so upstream retries.
    ``parse_event`` and ``verify_signature`` default to ``syncd.api.parse_webhook_event`` and
    ``syncd.api.verify_signature``; the event kind is read from the body alone (upstream
    documents no event header). ``metrics`` counts outcomes and serves ``/metrics``
    (``metrics_handler`` overrides the handler); ``page`` serves ``GET /``. Log lines about
    refusals of one kind come at most once per ``log_interval`` seconds of ``clock``.

    Raises ``ValueError`` for an empty token, a non-positive body cap or body timeout, or
    ``require_signature`` without a secret.
    """
    if not token:
        raise ValueError("webhook token is empty")
    if max_body_bytes <= 0:
        raise ValueError("max_body_bytes must be positive")
    if body_timeout <= 0:
        raise ValueError("body_timeout must be positive")
    if require_signature and not secret:
        raise ValueError("require_signature needs a secret")
    parse = parse_event or api.parse_webhook_event
    verify = verify_signature or api.verify_signature
    expected_token = token.encode()
    secret_value = secret or None
    throttle = _Throttle(log_interval, clock)

    def count(outcome: str, seconds: float | None = None) -> None:
        if metrics is not None:
            metrics.webhook(outcome, seconds)

    def note(level: str, event: str, key: str, **fields: object) -> None:
        held = throttle.allow(key)
        if held is not None:
            getattr(log, level)(event, suppressed=held, **fields)

    def refuse(status: int, outcome: str, reason: str, **extra: object) -> web.Response:
        count(outcome)
        note("info", "webhook_refused", outcome, status=status, outcome=outcome, reason=reason)
        return web.json_response({"status": outcome, "error": reason}, status=status, **extra)

    def unavailable(exc: Exception) -> web.Response:
        count("unavailable")
        note("error", "webhook_store_failed", "unavailable", error=str(exc))
        return web.json_response(
            {"status": "unavailable"}, status=503, headers={"Retry-After": "10"}
        )

    async def refused(refusal: Refusal) -> web.Response:
        if on_refused is not None:
            try:
                await on_refused(refusal)
            except StoreError as exc:
                return unavailable(exc)
            except Exception as exc:
                note("error", "webhook_refusal_not_ledgered", "ledger", error=repr(exc))
        count("refused")
        note(
            "warning",
            "webhook_refused",
            "refused",
            status=202,
            outcome="refused",
            reason=refusal.reason,
            kind=refusal.kind,
            body_bytes=refusal.body_bytes,
        )
        return web.json_response({"status": "refused", "reason": refusal.reason}, status=202)

    async def read_capped(request: web.Request, chunks: list[bytes]) -> bool:
        """Read the body into ``chunks``; False as soon as it passes the cap."""
        size = 0
        while True:
            chunk = await request.content.read(_READ_CHUNK)
            if not chunk:
                return True
            size += len(chunk)
            if size > max_body_bytes:
                return False
            chunks.append(chunk)

    def authenticate(request: web.Request, body: bytes | None) -> str | None:
        """Why the delivery is not authentic (``body`` None: not received whole), or None."""
        if secret_value is None:
            return None
        signature = request.headers.get(SIGNATURE_HEADER, "").strip()
        if not signature:
            return "signature missing" if require_signature else None
        if body is None:
            return "signature cannot be verified: the body was not received whole"
        if not verify(secret_value, body, signature):
            return "signature mismatch"
        return None

    async def hook(request: web.Request) -> web.StreamResponse:
        started = clock()
        given = request.match_info.get("token", "").encode()
        if not hmac.compare_digest(given, expected_token):
            return refuse(404, "not_found", "unknown webhook path")
        if request.method != "POST":
            return refuse(405, "method_not_allowed", "only POST", headers={"Allow": "POST"})
        declared = request.content_length
        if declared is not None and declared > max_body_bytes:
            return refuse(413, "too_large", f"body over {max_body_bytes} bytes")
        chunks: list[bytes] = []
        incomplete: str | None = None
        try:
            async with asyncio.timeout(body_timeout):
                if not await read_capped(request, chunks):
                    return refuse(413, "too_large", f"body over {max_body_bytes} bytes")
        except TimeoutError:
            incomplete = f"body not received within {body_timeout:g} s"
        except Exception as exc:  # a cut connection, a broken chunked encoding, ...
            incomplete = f"body not received whole ({type(exc).__name__})"
        body = b"".join(chunks)
        unauthorized = authenticate(request, None if incomplete else body)
        if unauthorized:
            return refuse(401, "unauthorized", unauthorized)
        delivery_id = request.headers.get(DELIVERY_HEADER)
        if delivery_id is not None and not 0 < len(delivery_id) <= MAX_ID_CHARS:
            delivery_id = None
        if incomplete:
            return await refused(Refusal.of(body, incomplete, delivery_id=delivery_id))
        if json_too_deep(body):
            reason = f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
            return await refused(Refusal.of(body, reason, delivery_id=delivery_id))
        try:
            problem = _payload_problem(json.loads(body))
        except ValueError:  # not JSON: the parser names the problem
            problem = None
        if problem:
            return await refused(Refusal.of(body, problem, delivery_id=delivery_id))
        headers = {DELIVERY_HEADER: delivery_id} if delivery_id else {}
        try:
            event = parse(headers, body)
        except InvalidWebhook as exc:
            return await refused(Refusal.of(body, str(exc), delivery_id=delivery_id))
        except Exception as exc:  # e.g. a timestamp that overflows when made UTC
            reason = f"body is not a readable event ({type(exc).__name__}: {exc})"[:300]
            return await refused(Refusal.of(body, reason, delivery_id=delivery_id))
        problem = check_event(event, accepted_kinds)
        if problem:
            return await refused(Refusal.of(body, problem, event=event, delivery_id=delivery_id))
        try:
            outcome = await on_event(event)
        except InvalidWebhook as exc:
            return await refused(Refusal.of(body, str(exc), event=event, delivery_id=delivery_id))
        except StoreError as exc:
            return unavailable(exc)
        except Exception as exc:
            log.exception("webhook_failed", kind=str(event.kind))
            reason = f"could not be applied ({type(exc).__name__})"
            return await refused(Refusal.of(body, reason, event=event, delivery_id=delivery_id))
        elapsed = clock() - started
        count(outcome, elapsed)
        log.debug(
            "webhook_accepted",
            kind=str(event.kind),
            object_id=event.object_id,
            outcome=outcome,
            ms=round(elapsed * 1000, 2),
        )
        return web.json_response({"status": outcome}, status=202)

    async def healthz(request: web.Request) -> web.Response:
        try:
            ok, details = health()
        except Exception as exc:
            log.exception("health_check_failed")
            ok, details = False, {"reason": f"health check failed: {exc}"}
        return web.json_response(details, status=200 if ok else 503)

    app = web.Application(client_max_size=max_body_bytes)
    app.router.add_route("*", HOOK_PREFIX + "{token}", hook)
    app.router.add_get("/healthz", healthz, allow_head=True)
    serve_metrics = metrics_handler or (metrics.handler if metrics is not None else None)
    if serve_metrics is not None:
        app.router.add_get("/metrics", serve_metrics)
    if page is not None:
        app.router.add_get("/", page, allow_head=True)
    return app


class RedactedAccessLogger(AbstractAccessLogger):
    """aiohttp access log as structlog events, with the webhook token removed from paths."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        log.debug(
            "http_request",
            method=request.method,
            path=redact_path(request.path),
            status=response.status,
            ms=round(time * 1000, 2),
            remote=request.remote,
        )


# ------------------------------------------------------------------------- bounded serving


def connection_limit(wanted: int, *, reserved: int = RESERVED_FDS) -> int:
    """``wanted``, lowered so open connections leave ``reserved`` descriptors of the soft
    ``RLIMIT_NOFILE`` to the rest of the process and to connections accepted but not yet
    counted (never below ``MIN_CONNECTIONS`` for that reason)."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return wanted
    if soft == resource.RLIM_INFINITY:
        return wanted
    return min(wanted, max(MIN_CONNECTIONS, soft - reserved))


class ConnectionGuard:
    """Caps the receiver's open connections at ``limit``.

    Each accepted connection is counted before it is served. At the cap, it closes the
    oldest connection that is not inside a handler (still sending its headers, or idle
    between requests); when every connection is inside a handler, the new one gets 503 and is
    closed. Both are logged at most once per interval.
    """

    def __init__(
        self,
        limit: int,
        *,
        log_interval: float = LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError("the connection limit must be at least 1")
        self.limit = limit
        self.evicted = 0
        self.refused = 0
        self._clock = clock
        self._open: dict[Any, float] = {}  # RequestHandler → when accepted, oldest first
        self._busy: set[Any] = set()
        self._throttle = _Throttle(log_interval, clock)

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def protocol(self, server: web.Server) -> asyncio.Protocol:
        """The protocol of one accepted connection (a ``loop.create_server`` factory)."""
        if not self._make_room():
            return _Busy()
        handler = server()
        self._open[handler] = self._clock()
        return _Counted(self, handler)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Marks the connection as inside a handler while the request is served."""
        connection = request.protocol
        self._busy.add(connection)
        try:
            return await handler(request)
        finally:
            self._busy.discard(connection)

    def closed(self, connection: Any) -> None:
        self._open.pop(connection, None)
        self._busy.discard(connection)

    def _make_room(self) -> bool:
        """Room for one more connection; False when none can be made."""
        if len(self._open) < self.limit:
            return True
        now = self._clock()
        for connection, since in list(self._open.items()):  # oldest first
            if connection in self._busy:
                continue
            if not connection.connected:
                if now - since > _NEVER_CONNECTED:  # the socket failed before it was served
                    del self._open[connection]
                    return True
                continue  # connected in a moment
            del self._open[connection]
            connection.force_close()
            self.evicted += 1
            self._report()
            return True
        self.refused += 1
        self._report()
        return False

    def _report(self) -> None:
        held = self._throttle.allow("full")
        if held is not None:
            log.warning(
                "receiver_connections_full",
                limit=self.limit,
                closed_idle=self.evicted,
                refused=self.refused,
            )


class _Counted(asyncio.Protocol):
    """Passes one connection to its aiohttp request handler and tells the guard when it
    ends."""

    def __init__(self, guard: ConnectionGuard, handler: Any) -> None:
        self._guard = guard
        self._handler = handler
        # Calls on the hot path go straight to the handler.
        self.data_received = handler.data_received  # type: ignore[method-assign]
        self.eof_received = handler.eof_received  # type: ignore[method-assign]
        self.pause_writing = handler.pause_writing  # type: ignore[method-assign]
        self.resume_writing = handler.resume_writing  # type: ignore[method-assign]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._handler.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.closed(self._handler)
        self._handler.connection_lost(exc)


class _Busy(asyncio.Protocol):
    """Answers a connection beyond the cap with 503 and closes it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(_BUSY)  # type: ignore[attr-defined]
        transport.close()


class _GuardedSite(web.BaseSite):
    """A TCP site whose connections pass through a :class:`ConnectionGuard`.

    Its listening sockets queue up to ``LISTEN_BACKLOG`` connections in the kernel, while the
    event loop accepts at most ``ACCEPT_BATCH`` at a time (asyncio takes both from one
    number, so the socket's backlog is raised again after the loop set it).
    """

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard
    ) -> None:
        super().__init__(runner)
        self._guarded_runner = runner
        self._host = host
        self._port = port
        self._guard = guard
        self._listeners: list[asyncio.AbstractServer] = []

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> None:
        await super().start()
        server = self._guarded_runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        port = self._port
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((address[0], port, *address[2:]))
                sock.setblocking(False)
                listener = await loop.create_server(
                    lambda: self._guard.protocol(server), sock=sock, backlog=ACCEPT_BATCH
                )
            except BaseException:
                sock.close()
                await self.stop()
                raise
            sock.listen(LISTEN_BACKLOG)
            self._listeners.append(listener)
            port = sock.getsockname()[1]  # port 0: the others take the one it got
        self._port = port
        self._server = self._listeners[0] if self._listeners else None

    async def stop(self) -> None:
        for listener in self._listeners[1:]:
            listener.close()
        await super().stop()


class ResourceErrorLog:
    """An event-loop exception handler that logs out-of-resource errors (``EMFILE``,
    ``ENFILE``, ``ENOBUFS``, ``ENOMEM``, e.g. from ``accept()``) at most once per
    ``interval`` seconds, with how many it held back, and hands every other error on."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        interval: float = LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._loop = loop
        self._previous = loop.get_exception_handler()
        self._throttle = _Throttle(interval, clock)

    def install(self) -> None:
        self._loop.set_exception_handler(self)

    def uninstall(self) -> None:
        if self._loop.get_exception_handler() is self:
            self._loop.set_exception_handler(self._previous)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS:
            held = self._throttle.allow("resources")
            if held is not None:
                log.error(
                    "out_of_resources",
                    error=os.strerror(exc.errno),
                    where=str(context.get("message", "")),
                    suppressed=held,
                    hint="raise the file limit (LimitNOFILE=) or lower the load",
                )
            return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)


async def start_receiver(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_timeout: float = 5.0,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    log_interval: float = LOG_INTERVAL,
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port`` and return ``(runner, bound_port)`` once the socket
    listens (port 0 picks a free port). Send ``READY=1`` only after this returns; stop with
    ``await runner.cleanup()``. The access log goes through :class:`RedactedAccessLogger`.

    A client must send its request line and headers within ``header_timeout`` seconds (an
    idle keep-alive connection is closed after as long); at most ``max_connections`` are open
    at once (lowered by :func:`connection_limit` to fit the file limit; see
    :class:`ConnectionGuard`); out-of-resource errors of the event loop are logged at most
    once per ``log_interval`` seconds until the runner is cleaned up.

    Raises ``OSError`` when the address cannot be bound (the runner is cleaned up first) and
    ``ValueError`` for a non-positive header timeout or connection cap.
    """
    if header_timeout <= 0:
        raise ValueError("header_timeout must be positive")
    if max_connections < 1:
        raise ValueError("max_connections must be at least 1")
    limit = connection_limit(max_connections)
    if limit < max_connections:
        log.warning(
            "receiver_connections_capped",
            wanted=max_connections,
            limit=limit,
            nofile=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            hint="raise the file limit (LimitNOFILE=) to allow more",
        )
    guard = ConnectionGuard(limit, log_interval=log_interval)
    app.middlewares.insert(0, guard.middleware)
    errors = ResourceErrorLog(asyncio.get_running_loop(), interval=log_interval)

    async def restore_handler(_app: web.Application) -> None:
        errors.uninstall()

    app.on_cleanup.append(restore_handler)
    runner = web.AppRunner(
        app,
        access_log_class=RedactedAccessLogger,
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=header_timeout,
        lingering_time=min(2.0, header_timeout),
    )
    await runner.setup()
    errors.install()
    site = _GuardedSite(runner, host, port, guard)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site.port
