"""The webhook receiver over a real socket: what is handed on, what is refused (and how it is
answered), health, metrics."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from syncd.api import MAX_DELIVERY_BYTES
from syncd.config import WebhooksConfig
from syncd.daemon.metrics import Metrics
from syncd.daemon.webhook import (
    LEDGER_BODY_BYTES,
    Refusal,
    create_receiver_app,
    json_too_deep,
    new_token,
    redact_path,
    start_receiver,
    webhook_url,
)
from syncd.errors import InvalidWebhook, StoreError
from syncd.records import EventKind, WebhookEvent

TOKEN = "t0ken-abcdefghijklmnopqrstuvwxyz0123456789"
SECRET = "s3cret"
MAX = 2048

# A TIMER_STARTED delivery shaped as documented (§4.3): bare camelCase entry, no envelope.
TIMER_STARTED = {
    "id": "3f2b8c1e-4a5d-4e6f-8a9b-0c1d2e3f4a5b",
    "description": "Write the report",
    "date": "2024-01-15T00:00:00.000Z",
    "startTime": "2024-01-15T10:00:00.000Z",
    "billable": True,
    "action": "start_timer",
    "workspace": {"id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "name": "Acme"},
    "teamMember": {"id": "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e", "name": "Ada"},
    "project": {"id": "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f", "name": "Website"},
    "task": {"id": "3d4e5f6a-7b8c-4d9e-0f1a-2b3c4d5e6f7a", "name": "Copy"},
    "tags": [],
    "createdAt": "2024-01-15T10:00:00.000Z",
    "updatedAt": "2024-01-15T10:00:00.000Z",
}
TIMER_STOPPED = {
    **TIMER_STARTED,
    "action": "stop_timer",
    "endTime": "2024-01-15T12:30:00.000Z",
    "duration": 9000,
    "updatedAt": "2024-01-15T12:30:00.000Z",
}
PROJECT_CREATED = {
    "id": "4e5f6a7b-8c9d-4e0f-1a2b-3c4d5e6f7a8b",
    "name": "Website",
    "description": "",
    "status": "active",
    "workspace": {"id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "name": "Acme"},
    "client": None,
    "defaultBillable": True,
    "defaultBillableRate": 120,
    "estimatedHours": 100,
    "estimatedBudget": 12000,
    "isPrivate": False,
    "createdAt": "2024-01-15T10:30:00Z",
    "updatedAt": "2024-01-15T10:30:00Z",
}


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def encode(obj: object) -> bytes:
    return json.dumps(obj).encode()


class Recorder:
    def __init__(self, outcome: str = "applied") -> None:
        self.events: list[WebhookEvent] = []
        self.outcome = outcome

    async def __call__(self, event: WebhookEvent) -> str:
        self.events.append(event)
        return self.outcome


class Ledger:
    """Stands in for the daemon's ledger of refused deliveries."""

    def __init__(self) -> None:
        self.refusals: list[Refusal] = []

    async def __call__(self, refusal: Refusal) -> None:
        self.refusals.append(refusal)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def health_state() -> dict:
    return {"ok": True, "details": {"status": "ok"}}


@pytest.fixture
def make_client(aiohttp_client, recorder, ledger, metrics, health_state):
    """A receiver with the real parser and signature check, behind a real socket."""

    async def make(secret: str | None = SECRET, **overrides):
        kwargs = {
            "token": TOKEN,
            "secret": secret,
            "max_body_bytes": MAX,
            "on_event": recorder,
            "on_refused": ledger,
            "health": lambda: (health_state["ok"], health_state["details"]),
            "metrics": metrics,
        }
        kwargs.update(overrides)
        return await aiohttp_client(create_receiver_app(**kwargs))

    return make


def signed_headers(body: bytes, **extra: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Timetracker-Signature": sign(body), **extra}


BODY = encode(TIMER_STARTED)
HOOK = f"/hooks/{TOKEN}"


async def post(client, body: bytes, headers: dict[str, str] | None = None):
    return await client.post(
        HOOK, data=body, headers=signed_headers(body) if headers is None else headers
    )


# ----------------------------------------------------------------------------- accepted


async def test_valid_signed_event_is_handed_on_once_and_answered_fast(make_client, recorder):
    client = await make_client()
    assert (await client.get("/healthz")).status == 200  # connection is open and warm
    started = time.perf_counter()
    resp = await post(client, BODY)
    elapsed = time.perf_counter() - started
    assert resp.status == 202
    assert await resp.json() == {"status": "applied"}
    assert elapsed < 0.1
    (event,) = recorder.events
    assert event.kind is EventKind.TIMER_STARTED
    assert event.object_id == TIMER_STARTED["id"]
    assert event.workspace_id == TIMER_STARTED["workspace"]["id"]
    assert event.entry is not None
    assert event.entry.end_time is None


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "application/json; charset=utf-8"},
        {},
        {"X-Timetracker-Event": "SOMETHING_NEW"},  # the header is no documented contract
        {"X-Timetracker-Event": "TIME_ENTRY_DELETED"},
    ],
    ids=["text/plain", "form", "json+charset", "no headers", "unknown event", "wrong event"],
)
async def test_a_documented_event_is_accepted_whatever_its_headers(make_client, recorder, headers):
    """Upstream documents neither a content type nor headers; a non-2xx answer makes it
    retry and, in the end, disable the subscription."""
    client = await make_client(secret=None)
    resp = await post(client, encode(TIMER_STOPPED), headers)
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["status"] == "applied"
    (event,) = recorder.events
    assert event.kind is EventKind.TIMER_STOPPED


@pytest.mark.parametrize("payload", [TIMER_STARTED, TIMER_STOPPED, PROJECT_CREATED])
async def test_unsigned_deliveries_are_accepted_with_a_secret_set(make_client, recorder, payload):
    client = await make_client()
    resp = await post(client, encode(payload), {"Content-Type": "application/json"})
    assert resp.status == 202, await resp.text()
    assert len(recorder.events) == 1


async def test_without_secret_no_signature_is_needed(make_client, recorder):
    client = await make_client(secret=None)
    resp = await post(client, BODY, {"Content-Type": "application/json"})
    assert resp.status == 202
    assert len(recorder.events) == 1


async def test_streamed_body_under_cap_is_accepted(make_client, recorder):
    client = await make_client()

    async def chunks():
        for i in range(0, len(BODY), 100):
            yield BODY[i : i + 100]

    resp = await client.post(HOOK, data=chunks(), headers=signed_headers(BODY))
    assert resp.status == 202
    assert len(recorder.events) == 1


# ----------------------------------------------------------------------------- 404/405/413/401


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/hooks/wrong-token", "POST"),
        ("/hooks/" + TOKEN[:-1], "POST"),
        ("/hooks/", "POST"),
        ("/hooks", "POST"),
        ("/", "POST"),
        ("/hooks/wrong-token", "GET"),
    ],
)
async def test_unknown_token_is_404(make_client, recorder, ledger, path, method):
    client = await make_client()
    resp = await client.request(method, path, data=BODY, headers=signed_headers(BODY))
    assert resp.status == 404
    assert recorder.events == []
    assert ledger.refusals == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_other_methods_are_405(make_client, recorder, ledger, method):
    client = await make_client()
    resp = await client.request(method, HOOK, data=BODY, headers=signed_headers(BODY))
    assert resp.status == 405
    assert resp.headers["Allow"] == "POST"
    assert recorder.events == []
    assert ledger.refusals == []


async def test_body_over_cap_by_content_length_is_413(make_client, recorder, ledger):
    client = await make_client()
    big = encode({**TIMER_STARTED, "description": "x" * MAX})
    resp = await post(client, big)
    assert resp.status == 413
    assert recorder.events == []
    assert ledger.refusals == []


async def test_the_default_cap_is_the_configured_one_of_64_kib(aiohttp_client, recorder, ledger):
    """Without ``max_body_bytes`` the receiver caps a body where ``[webhooks]
    max_body_bytes`` does by default: 64 KiB, as ``docs/operations.md`` documents."""
    assert WebhooksConfig().max_body_bytes == MAX_DELIVERY_BYTES == 64 * 1024
    app = create_receiver_app(
        token=TOKEN, secret=None, on_event=recorder, on_refused=ledger, health=lambda: (True, {})
    )
    client = await aiohttp_client(app)
    fits = encode({**TIMER_STARTED, "description": "x" * (60 * 1024)})
    over = encode({**TIMER_STARTED, "description": "x" * (64 * 1024)})
    assert (await client.post(HOOK, data=fits)).status == 202
    assert (await client.post(HOOK, data=over)).status == 413
    assert len(recorder.events) == 1


async def test_streamed_body_over_cap_is_413(make_client, recorder, ledger):
    client = await make_client()
    big = encode({**TIMER_STARTED, "description": "x" * MAX})

    async def chunks():
        for i in range(0, len(big), 256):
            yield big[i : i + 256]

    # An async generator body goes out chunked, without Content-Length.
    resp = await client.post(HOOK, data=chunks(), headers=signed_headers(big))
    assert resp.status == 413
    assert recorder.events == []
    assert ledger.refusals == []


@pytest.mark.parametrize(
    "signature",
    [sign(BODY, "other-secret"), sign(BODY + b" "), "sha256=", "md5=abc", "garbage"],
)
async def test_a_signature_that_does_not_verify_is_401(make_client, recorder, ledger, signature):
    client = await make_client()
    headers = {"Content-Type": "application/json", "X-Timetracker-Signature": signature}
    resp = await post(client, BODY, headers)
    assert resp.status == 401
    assert recorder.events == []
    assert ledger.refusals == []


async def test_require_signature_refuses_unsigned_deliveries(make_client, recorder, ledger):
    client = await make_client(require_signature=True)
    resp = await post(client, BODY, {"Content-Type": "application/json"})
    assert resp.status == 401
    assert (await post(client, b"not json", {})).status == 401  # nothing unsigned is ledgered
    assert recorder.events == []
    assert ledger.refusals == []
    assert (await post(client, BODY)).status == 202


def test_require_signature_needs_a_secret(recorder):
    with pytest.raises(ValueError, match="require_signature needs a secret"):
        create_receiver_app(
            token=TOKEN,
            secret=None,
            require_signature=True,
            on_event=recorder,
            health=lambda: (True, {}),
        )


# ----------------------------------------------------------------------------- refused


def nested(depth: int) -> bytes:
    return b'{"id": ' + b"[" * depth + b"]" * depth + b"}"


REFUSED = {
    # name: (body, words of the reason, or a choice of them)
    "not JSON": (b"{nope", "not JSON"),
    "empty": (b"", "not JSON"),
    "invalid UTF-8": (b'{"id": "\xff\xfe"}', "not JSON"),
    "JSON array": (b"[1, 2]", "not a JSON object"),
    "a string": (b'"text"', "not a JSON object"),
    "no known event": (b'{"no_id": true}', "matches no known event"),
    "unknown action": (encode({**TIMER_STARTED, "action": "explode"}), "unknown webhook action"),
    "delete_entry": (
        encode({"id": TIMER_STARTED["id"], "action": "delete_entry", "workspace": {"id": "w"}}),
        "not one syncd subscribes to",
    ),
    "update without action": (
        encode({k: v for k, v in TIMER_STOPPED.items() if k != "action"}),
        "not one syncd subscribes to",
    ),
    "entry without workspace": (
        b'{"action": "start_timer", "id": "e1", "startTime": "2026-01-01T00:00:00Z"}',
        "workspace_id",
    ),
    "negative duration": (encode({**TIMER_STOPPED, "duration": -1_000_000_000_000}), "duration"),
    "duration over 31 days": (encode({**TIMER_STOPPED, "duration": 32 * 86_400}), "duration"),
    "10^30 duration": (encode({**TIMER_STOPPED, "duration": 10**30}), "too large"),
    "10^30 elsewhere": (
        encode({**PROJECT_CREATED, "estimatedBudget": 10**30}),
        "too large",
    ),
    "year 9999": (encode({**TIMER_STOPPED, "updatedAt": "9999-01-01T00:00:00.000Z"}), "years"),
    "year 9999 with an offset": (
        encode({**TIMER_STOPPED, "endTime": "9999-12-31T23:00:00-05:00"}),
        ("9999", "out of range"),
    ),
    "year 1900": (encode({**TIMER_STOPPED, "date": "1900-01-01T00:00:00.000Z"}), "years"),
    "ends before it starts": (
        encode({**TIMER_STOPPED, "endTime": "2024-01-15T09:00:00.000Z"}),
        "before startTime",
    ),
    "30 KB id": (encode({**TIMER_STARTED, "id": "x" * 30_000}), "id"),
    "long name": (
        encode({**TIMER_STARTED, "project": {"id": "p", "name": "n" * 1500}}),
        "name",
    ),
    "NaN": (BODY.replace(b'"billable": true', b'"billable": NaN'), "not finite"),
    "Infinity": (encode({**PROJECT_CREATED, "estimatedHours": float("inf")}), "not finite"),
    "deep nesting": (nested(5000), "nested deeper"),
    "nesting just too deep": (nested(17), "nested deeper"),
}


@pytest.mark.parametrize("name", list(REFUSED))
async def test_unusable_deliveries_are_answered_2xx_and_ledgered_not_applied(
    make_client, recorder, ledger, metrics, name
):
    """Nothing on the token path gets 400 or 500 (upstream would retry, then disable the
    subscription): the delivery is handed to the ledger as refused, with its reason."""
    body, words = REFUSED[name]
    client = await make_client(secret=None, max_body_bytes=64 * 1024)
    resp = await post(client, body, {"Content-Type": "application/json"})
    assert resp.status == 202, await resp.text()
    answer = await resp.json()
    assert answer["status"] == "refused"
    choices = (words,) if isinstance(words, str) else words
    assert any(w in answer["reason"] for w in choices), answer["reason"]
    assert recorder.events == []
    (refusal,) = ledger.refusals
    assert refusal.reason == answer["reason"]
    assert refusal.body == body[:LEDGER_BODY_BYTES]
    assert refusal.body_bytes == len(body)
    assert refusal.dedupe_key == "refused:" + hashlib.sha256(body).hexdigest()
    assert metrics.webhook_events.labels(outcome="refused")._value.get() == 1


async def test_a_refusal_names_the_event_and_keeps_at_most_4_kib(make_client, ledger):
    client = await make_client(secret=None, max_body_bytes=64 * 1024)
    body = encode({**TIMER_STOPPED, "duration": 32 * 86_400, "description": "é" * 5000})
    resp = await post(client, body, {"X-Timetracker-Delivery": "d-1"})
    assert (await resp.json())["status"] == "refused"
    (refusal,) = ledger.refusals
    assert refusal.kind == "TIMER_STOPPED"
    assert refusal.object_id == TIMER_STOPPED["id"]
    assert refusal.workspace_id == TIMER_STOPPED["workspace"]["id"]
    assert refusal.delivery_id == "d-1"
    assert len(refusal.body) == LEDGER_BODY_BYTES < refusal.body_bytes == len(body)
    assert refusal.body_text.startswith('{"id": ')
    bad = Refusal.of(b'{"x": "\xff"}', "not JSON")
    assert bad.body_text == '{"x": "\\xff"}'
    assert (bad.kind, bad.object_id, bad.workspace_id) == ("UNKNOWN", "", None)
    unknown = Refusal.of(encode({**TIMER_STARTED, "action": "explode"}), "unknown action")
    assert (unknown.kind, unknown.object_id, unknown.workspace_id) == (
        "UNKNOWN",
        TIMER_STARTED["id"],
        TIMER_STARTED["workspace"]["id"],
    )


@pytest.mark.parametrize(
    ("failure", "status", "answer"),
    [
        (InvalidWebhook("workspace w is not known to the mirror", status=422), 202, "refused"),
        (RuntimeError("a bug"), 202, "refused"),
        (StoreError("database is locked"), 503, "unavailable"),
    ],
)
async def test_what_on_event_raises_never_gives_500(
    make_client, ledger, metrics, failure, status, answer
):
    async def broken(event: WebhookEvent) -> str:
        raise failure

    client = await make_client(on_event=broken)
    resp = await post(client, BODY)
    assert resp.status == status
    assert (await resp.json())["status"] == answer
    assert len(ledger.refusals) == (status == 202)
    if status == 503:  # upstream retries a database hiccup later
        assert resp.headers["Retry-After"]
    assert metrics.webhook_events.labels(outcome=answer)._value.get() == 1


async def test_a_ledger_that_fails_gives_503(make_client):
    async def broken_ledger(refusal: Refusal) -> None:
        raise StoreError("disk full")

    client = await make_client(on_refused=broken_ledger)
    resp = await post(client, b"{nope")
    assert resp.status == 503


async def test_refusals_are_logged_once_per_interval(make_client, logs):
    now = [0.0]
    client = await make_client(secret=None, clock=lambda: now[0], log_interval=60)
    for _ in range(50):
        assert (await post(client, b"{nope", {})).status == 202
        assert (await client.post("/hooks/wrong", data=b"x")).status == 404
    refused = [e for e in logs if e["event"] == "webhook_refused"]
    assert [e["outcome"] for e in refused] == ["refused", "not_found"]
    now[0] = 61.0
    await post(client, b"{nope", {})
    refused = [e for e in logs if e["event"] == "webhook_refused"]
    assert refused[-1]["suppressed"] == 49


def test_json_too_deep_skips_strings():
    assert not json_too_deep(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[["}', 3)
    assert not json_too_deep(b'{"a": "\\"[[[[[[["}', 3)
    assert json_too_deep(b'{"a": [[[1]]]}', 3)
    assert not json_too_deep(b'{"a": [[1]]}', 3)


# ----------------------------------------------------------------------------- health, metrics


async def test_outcomes_are_counted(make_client):
    client = await make_client()
    await post(client, BODY)
    await client.post("/hooks/nope", data=BODY, headers=signed_headers(BODY))
    await post(client, BODY, {"X-Timetracker-Signature": "sha256=00"})
    await client.get(HOOK)
    await post(client, b"{nope", {})
    text = (await (await client.get("/metrics")).read()).decode()
    assert 'syncd_webhook_events_total{outcome="applied"} 1.0' in text
    assert 'syncd_webhook_events_total{outcome="not_found"} 1.0' in text
    assert 'syncd_webhook_events_total{outcome="unauthorized"} 1.0' in text
    assert 'syncd_webhook_events_total{outcome="method_not_allowed"} 1.0' in text
    assert 'syncd_webhook_events_total{outcome="refused"} 1.0' in text
    assert "syncd_webhook_to_mirror_seconds_count 1.0" in text


async def test_healthz_reports_200_and_503(make_client, health_state):
    client = await make_client()
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}
    health_state["ok"] = False
    health_state["details"] = {"status": "unhealthy", "reason": "no successful sync for 900s"}
    resp = await client.get("/healthz")
    assert resp.status == 503
    assert (await resp.json())["reason"] == "no successful sync for 900s"


async def test_healthz_is_503_when_the_check_raises(make_client):
    def broken() -> tuple[bool, dict]:
        raise RuntimeError("boom")

    client = await make_client(health=broken)
    resp = await client.get("/healthz")
    assert resp.status == 503
    assert "boom" in (await resp.json())["reason"]


async def test_metrics_lists_every_metric(make_client):
    client = await make_client()
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    for name in (
        "syncd_api_requests_total",
        "syncd_rate_limited_total",
        "syncd_budget_remaining",
        "syncd_last_success_timestamp_seconds",
        "syncd_entries_upserted_total",
        "syncd_entries_tombstoned_total",
        "syncd_webhook_events_total",
        "syncd_webhook_to_mirror_seconds",
        "syncd_sync_duration_seconds",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name


async def test_start_receiver_binds_and_serves(recorder):
    import aiohttp

    app = create_receiver_app(
        token=TOKEN, secret=None, on_event=recorder, health=lambda: (True, {"status": "ok"})
    )
    runner, port = await start_receiver(app, "127.0.0.1", 0)
    try:
        assert port > 0
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/healthz") as resp,
        ):
            assert resp.status == 200
    finally:
        await runner.cleanup()


# ----------------------------------------------------------------------------- helpers


def test_webhook_url_keeps_a_proxy_prefix():
    assert webhook_url("https://example.org", "abc") == "https://example.org/hooks/abc"
    assert webhook_url("https://example.org/", "abc") == "https://example.org/hooks/abc"
    assert webhook_url("https://example.org/syncd/", "abc") == "https://example.org/syncd/hooks/abc"
    for bad in ("example.org", "ftp://example.org", "https://example.org/?x=1", ""):
        with pytest.raises(ValueError):
            webhook_url(bad, "abc")
    with pytest.raises(ValueError):
        webhook_url("https://example.org", "")


def test_tokens_are_long_and_distinct():
    tokens = {new_token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(len(t) >= 40 for t in tokens)


def test_redact_path_hides_the_token():
    assert redact_path(f"/hooks/{TOKEN}") == "/hooks/<token>"
    assert redact_path("/healthz") == "/healthz"


def test_empty_token_is_refused(recorder):
    with pytest.raises(ValueError):
        create_receiver_app(token="", secret=None, on_event=recorder, health=lambda: (True, {}))
