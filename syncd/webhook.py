"""The webhook receiver: an aiohttp application that checks deliveries and hands them on.

Routes (all on the one listener, see ``docs/operations.md``):

- ``POST /hooks/{token}``: a webhook delivery. Upstream documents no signature, so the
  subscribed URL carries an unguessable per-installation token; when a ``secret`` is
  configured the ``X-Timetracker-Signature`` HMAC is required too. Refusals, in the order they
  are checked: unknown token 404, other method 405, content type 415, body too large 413,
  signature 401, not JSON / wrong shape 400. None of them calls ``on_event``. A valid delivery
  is awaited through ``on_event`` (which records, applies and queues a re-scan without talking
  to upstream) and answered 202 ``{"status": <outcome>}``.
- ``GET /healthz``: 200 or 503 with the JSON of ``health()``.
- ``GET /metrics``: Prometheus text.

The handler never waits for upstream, so it answers within milliseconds.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from syncd.errors import InvalidWebhook
from syncd.records import WebhookEvent

if TYPE_CHECKING:
    from syncd.metrics import Metrics

log = structlog.get_logger("syncd.webhook")

#: Header carrying ``sha256=<hex HMAC-SHA256(secret, raw body)>`` when a secret is configured.
SIGNATURE_HEADER = "X-Timetracker-Signature"
#: Path prefix of the delivery route; the token is the next path segment.
HOOK_PREFIX = "/hooks/"
#: Default cap on a delivery's body (documented payloads are a few KiB).
DEFAULT_MAX_BODY_BYTES = 256 * 1024

OnEvent = Callable[[WebhookEvent], Awaitable[str]]
Health = Callable[[], tuple[bool, dict]]
ParseEvent = Callable[[Mapping[str, str], bytes], WebhookEvent]
VerifySignature = Callable[[str, bytes, str | None], bool]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_READ_CHUNK = 64 * 1024
_TOKEN_IN_PATH = re.compile(r"(/hooks/)[^/?#]+")


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


def redact_path(path: str) -> str:
    """``path`` with the webhook token replaced, for logs (the token is a credential)."""
    return _TOKEN_IN_PATH.sub(r"\1<token>", path)


def _default_parse_event() -> ParseEvent:
    from syncd.api import parse_webhook_event

    return parse_webhook_event


def _default_verify_signature() -> VerifySignature:
    from syncd.api import verify_signature

    return verify_signature


def create_receiver_app(
    *,
    token: str,
    secret: str | None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    on_event: OnEvent,
    health: Health,
    metrics: Metrics | None = None,
    metrics_handler: Handler | None = None,
    parse_event: ParseEvent | None = None,
    verify_signature: VerifySignature | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> web.Application:
    """Build the receiver application (serve it with :func:`start_receiver`).

    ``on_event`` must be fast and never wait for upstream; its return value (e.g. ``applied``,
    ``duplicate``, ``stale``) is the ``status`` of the 202 answer and the metrics outcome. If it
    raises ``InvalidWebhook`` the delivery is answered with that status; any other exception
    gives 500 so upstream retries. ``parse_event`` and ``verify_signature`` default to
    ``syncd.api.parse_webhook_event`` and ``syncd.api.verify_signature``. ``metrics`` counts
    outcomes and serves ``/metrics`` (``metrics_handler`` overrides the handler).

    Raises ``ValueError`` for an empty token or a non-positive body cap.
    """
    if not token:
        raise ValueError("webhook token is empty")
    if max_body_bytes <= 0:
        raise ValueError("max_body_bytes must be positive")
    parse = parse_event or _default_parse_event()
    verify = verify_signature or _default_verify_signature()
    expected_token = token.encode()
    secret_value = secret or None

    def refuse(status: int, outcome: str, reason: str, **extra: object) -> web.Response:
        if metrics is not None:
            metrics.webhook(outcome)
        log.info("webhook_refused", status=status, outcome=outcome, reason=reason, **extra)
        return web.json_response({"status": outcome, "error": reason}, status=status)

    async def read_capped(request: web.Request) -> bytes | None:
        """The body, or None once it exceeds the cap (whatever Content-Length claimed)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = await request.content.read(_READ_CHUNK)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > max_body_bytes:
                return None
            chunks.append(chunk)

    async def hook(request: web.Request) -> web.StreamResponse:
        started = clock()
        given = request.match_info.get("token", "").encode()
        if not hmac.compare_digest(given, expected_token):
            return refuse(404, "not_found", "unknown webhook path")
        if request.method != "POST":
            if metrics is not None:
                metrics.webhook("method_not_allowed")
            raise web.HTTPMethodNotAllowed(request.method, ["POST"])
        if request.content_type != "application/json":
            return refuse(
                415,
                "unsupported_media_type",
                "content type must be application/json",
                content_type=request.content_type,
            )
        declared = request.content_length
        if declared is not None and declared > max_body_bytes:
            return refuse(413, "too_large", "body too large", declared=declared)
        body = await read_capped(request)
        if body is None:
            return refuse(413, "too_large", "body too large")
        if secret_value is not None:
            signature = request.headers.get(SIGNATURE_HEADER)
            if not signature:
                return refuse(401, "unauthorized", "signature missing")
            if not verify(secret_value, body, signature):
                return refuse(401, "unauthorized", "signature mismatch")
        try:
            event = parse(request.headers, body)
        except InvalidWebhook as exc:
            return refuse(exc.status, "invalid", str(exc))
        try:
            outcome = await on_event(event)
        except InvalidWebhook as exc:
            return refuse(exc.status, "invalid", str(exc))
        except Exception:
            log.exception("webhook_failed", kind=str(event.kind), object_id=event.object_id)
            if metrics is not None:
                metrics.webhook("error")
            return web.json_response({"status": "error"}, status=500)
        elapsed = clock() - started
        if metrics is not None:
            metrics.webhook(outcome, elapsed)
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


def parse_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:8787"``, ``"[::1]:8787"`` or ``":8787"`` → ``(host, port)``.

    An empty host means all interfaces (``0.0.0.0``). Raises ``ValueError`` for anything else.
    """
    match = re.fullmatch(r"\s*(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]\s]*)):(\d{1,5})\s*", listen)
    if not match:
        raise ValueError(f"listen must look like HOST:PORT, got {listen!r}")
    host = match.group(1) or match.group(2) or "0.0.0.0"
    port = int(match.group(3))
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range in {listen!r}")
    return host, port


async def start_receiver(
    app: web.Application, host: str, port: int, *, shutdown_timeout: float = 5.0
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port`` and return ``(runner, bound_port)`` once the socket
    listens (port 0 picks a free port). Send ``READY=1`` only after this returns; stop with
    ``await runner.cleanup()``. The access log goes through :class:`RedactedAccessLogger`.

    Raises ``OSError`` when the address cannot be bound (the runner is cleaned up first).
    """
    runner = web.AppRunner(
        app, access_log_class=RedactedAccessLogger, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site.port
