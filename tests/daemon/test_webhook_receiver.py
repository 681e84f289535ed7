"""The webhook receiver over a real socket: every refusal, the happy path, health, metrics."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from syncd.errors import InvalidWebhook
from syncd.metrics import Metrics
from syncd.records import EventKind, WebhookEvent
from syncd.webhook import (
    create_receiver_app,
    new_token,
    parse_listen,
    redact_path,
    start_receiver,
    webhook_url,
)

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


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def fake_verify(secret: str, body: bytes, header_value: str | None) -> bool:
    return bool(header_value) and hmac.compare_digest(sign(body, secret), header_value)


def fake_parse(headers, body: bytes) -> WebhookEvent:
    """Stands in for syncd.api.parse_webhook_event: JSON object with an ``id``."""
    try:
        obj = json.loads(body)
    except ValueError:
        raise InvalidWebhook("not JSON", status=400) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        raise InvalidWebhook("wrong shape", status=400)
    return WebhookEvent(
        kind=EventKind.TIMER_STARTED,
        object_id=obj["id"],
        workspace_id=(obj.get("workspace") or {}).get("id"),
        updated_at=obj.get("updatedAt"),
        dedupe_key=f"x:{obj['id']}",
        payload=obj,
    )


class Recorder:
    def __init__(self, outcome: str = "applied") -> None:
        self.events: list[WebhookEvent] = []
        self.outcome = outcome

    async def __call__(self, event: WebhookEvent) -> str:
        self.events.append(event)
        return self.outcome


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def health_state() -> dict:
    return {"ok": True, "details": {"status": "ok"}}


@pytest.fixture
def make_client(aiohttp_client, recorder, metrics, health_state):
    async def make(secret: str | None = SECRET, **overrides):
        kwargs = {
            "token": TOKEN,
            "secret": secret,
            "max_body_bytes": MAX,
            "on_event": recorder,
            "health": lambda: (health_state["ok"], health_state["details"]),
            "metrics": metrics,
            "parse_event": fake_parse,
            "verify_signature": fake_verify,
        }
        kwargs.update(overrides)
        return await aiohttp_client(create_receiver_app(**kwargs))

    return make


def signed_headers(body: bytes, **extra: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Timetracker-Signature": sign(body), **extra}


BODY = json.dumps(TIMER_STARTED).encode()


async def test_valid_signed_event_is_handed_on_once_and_answered_fast(make_client, recorder):
    client = await make_client()
    assert (await client.get("/healthz")).status == 200  # connection is open and warm
    started = time.perf_counter()
    resp = await client.post(f"/hooks/{TOKEN}", data=BODY, headers=signed_headers(BODY))
    elapsed = time.perf_counter() - started
    assert resp.status == 202
    assert await resp.json() == {"status": "applied"}
    assert elapsed < 0.1
    assert [e.object_id for e in recorder.events] == [TIMER_STARTED["id"]]


async def test_without_secret_no_signature_is_needed(make_client, recorder):
    client = await make_client(secret=None)
    resp = await client.post(
        f"/hooks/{TOKEN}", data=BODY, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 202
    assert len(recorder.events) == 1


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
async def test_unknown_token_is_404(make_client, recorder, path, method):
    client = await make_client()
    resp = await client.request(method, path, data=BODY, headers=signed_headers(BODY))
    assert resp.status == 404
    assert recorder.events == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_other_methods_are_405(make_client, recorder, method):
    client = await make_client()
    resp = await client.request(method, f"/hooks/{TOKEN}", data=BODY, headers=signed_headers(BODY))
    assert resp.status == 405
    assert resp.headers["Allow"] == "POST"
    assert recorder.events == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_wrong_content_type_is_415(make_client, recorder, content_type):
    client = await make_client()
    headers = signed_headers(BODY)
    if content_type is None:
        del headers["Content-Type"]
    else:
        headers["Content-Type"] = content_type
    resp = await client.post(f"/hooks/{TOKEN}", data=BODY, headers=headers)
    assert resp.status == 415
    assert recorder.events == []


async def test_json_with_charset_is_accepted(make_client, recorder):
    client = await make_client()
    headers = signed_headers(BODY, **{"Content-Type": "application/json; charset=utf-8"})
    resp = await client.post(f"/hooks/{TOKEN}", data=BODY, headers=headers)
    assert resp.status == 202


async def test_body_over_cap_by_content_length_is_413(make_client, recorder):
    client = await make_client()
    big = json.dumps({**TIMER_STARTED, "description": "x" * MAX}).encode()
    resp = await client.post(f"/hooks/{TOKEN}", data=big, headers=signed_headers(big))
    assert resp.status == 413
    assert recorder.events == []


async def test_streamed_body_over_cap_is_413(make_client, recorder):
    client = await make_client()
    big = json.dumps({**TIMER_STARTED, "description": "x" * MAX}).encode()

    async def chunks():
        for i in range(0, len(big), 256):
            yield big[i : i + 256]

    # An async generator body goes out chunked, without Content-Length.
    resp = await client.post(f"/hooks/{TOKEN}", data=chunks(), headers=signed_headers(big))
    assert resp.status == 413
    assert recorder.events == []


async def test_streamed_body_under_cap_is_accepted(make_client, recorder):
    client = await make_client()

    async def chunks():
        for i in range(0, len(BODY), 100):
            yield BODY[i : i + 100]

    resp = await client.post(f"/hooks/{TOKEN}", data=chunks(), headers=signed_headers(BODY))
    assert resp.status == 202
    assert len(recorder.events) == 1


async def test_missing_signature_is_401(make_client, recorder):
    client = await make_client()
    resp = await client.post(
        f"/hooks/{TOKEN}", data=BODY, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 401
    assert recorder.events == []


@pytest.mark.parametrize(
    "signature",
    [sign(BODY, "other-secret"), sign(BODY + b" "), "sha256=", "md5=abc", "garbage"],
)
async def test_wrong_signature_is_401(make_client, recorder, signature):
    client = await make_client()
    headers = {"Content-Type": "application/json", "X-Timetracker-Signature": signature}
    resp = await client.post(f"/hooks/{TOKEN}", data=BODY, headers=headers)
    assert resp.status == 401
    assert recorder.events == []


@pytest.mark.parametrize(
    "body",
    [b"not json", b"{", b"[1, 2]", b'"text"', b'{"no_id": true}', b"\xff\xfe"],
)
async def test_non_json_or_wrong_shape_is_400(make_client, recorder, body):
    client = await make_client()
    resp = await client.post(f"/hooks/{TOKEN}", data=body, headers=signed_headers(body))
    assert resp.status == 400
    assert recorder.events == []


async def test_on_event_failure_is_500_so_upstream_retries(make_client, metrics):
    async def broken(event: WebhookEvent) -> str:
        raise RuntimeError("database is locked")

    client = await make_client(on_event=broken)
    resp = await client.post(f"/hooks/{TOKEN}", data=BODY, headers=signed_headers(BODY))
    assert resp.status == 500
    assert metrics.webhook_events.labels(outcome="error")._value.get() == 1


async def test_outcomes_are_counted(make_client, metrics):
    client = await make_client()
    await client.post(f"/hooks/{TOKEN}", data=BODY, headers=signed_headers(BODY))
    await client.post("/hooks/nope", data=BODY, headers=signed_headers(BODY))
    await client.post(f"/hooks/{TOKEN}", data=BODY, headers={"Content-Type": "application/json"})
    await client.get(f"/hooks/{TOKEN}")
    text = (await (await client.get("/metrics")).read()).decode()
    assert 'syncd_webhook_events_total{outcome="applied"} 1.0' in text
    assert 'syncd_webhook_events_total{outcome="not_found"} 1.0' in text
    assert 'syncd_webhook_events_total{outcome="unauthorized"} 1.0' in text
    assert 'syncd_webhook_events_total{outcome="method_not_allowed"} 1.0' in text
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


async def test_real_parser_and_signature_accept_a_documented_timer_started(
    aiohttp_client, recorder
):
    """The default parse/verify functions (syncd.api) with a §4.3-shaped TIMER_STARTED."""
    app = create_receiver_app(
        token=TOKEN,
        secret=SECRET,
        max_body_bytes=MAX,
        on_event=recorder,
        health=lambda: (True, {}),
    )
    client = await aiohttp_client(app)
    resp = await client.post(f"/hooks/{TOKEN}", data=BODY, headers=signed_headers(BODY))
    assert resp.status == 202, await resp.text()
    (event,) = recorder.events
    assert event.kind is EventKind.TIMER_STARTED
    assert event.object_id == TIMER_STARTED["id"]
    assert event.workspace_id == TIMER_STARTED["workspace"]["id"]
    assert event.entry is not None
    assert event.entry.end_time is None
    # and the real parser's refusals reach the client as 400
    bad = json.dumps({"action": "start_timer"}).encode()
    resp = await client.post(f"/hooks/{TOKEN}", data=bad, headers=signed_headers(bad))
    assert resp.status == 400
    assert len(recorder.events) == 1


async def test_start_receiver_binds_and_serves(recorder):
    import aiohttp

    app = create_receiver_app(
        token=TOKEN,
        secret=None,
        on_event=recorder,
        health=lambda: (True, {"status": "ok"}),
        parse_event=fake_parse,
        verify_signature=fake_verify,
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


def test_parse_listen():
    assert parse_listen("127.0.0.1:8787") == ("127.0.0.1", 8787)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    assert parse_listen(":8787") == ("0.0.0.0", 8787)
    assert parse_listen("localhost:1") == ("localhost", 1)
    for bad in ("8787", "host:", "host:99999", "a:b:c"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_empty_token_is_refused(recorder):
    with pytest.raises(ValueError):
        create_receiver_app(
            token="",
            secret=None,
            on_event=recorder,
            health=lambda: (True, {}),
            parse_event=fake_parse,
            verify_signature=fake_verify,
        )
