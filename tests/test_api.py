"""The sans-I/O protocol: request builders, parsers, errors, rate headers, webhooks."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd import api
from syncd.errors import (
    AuthError,
    InvalidWebhook,
    MalformedResponse,
    RateLimited,
    ResponseError,
    ServerError,
)
from syncd.records import ENTRY_EVENTS, EventKind, Ref, sent_count
from syncd.store.rows import row_of
from tests.support.examples import examples

KEY = "secret-key-123"
NOW = 1_700_000_000.0

# --------------------------------------------------------------------------- the three shapes

FIND_ENTRY = {  # §3.7: flat snake_case, createdAt/updatedAt
    "id": "te1a2b3c4-0000",
    "date": "2024-01-15T00:00:00.000Z",
    "description": "Write docs",
    "start_time": "2024-01-15T09:00:00.000Z",
    "end_time": "2024-01-15T11:30:00.000Z",
    "duration": 9000,
    "duration_hours": 2.5,
    "billable": True,
    "manually_entered": False,
    "workspace_id": "w1b2c3d4",
    "workspace_name": "Dev Team",
    "team_member_id": "tm1a2b3c4",
    "team_member_name": "Ana",
    "team_member_email": "ana@example.com",
    "team_member_role": "Developer",
    "project_id": "p1",
    "project_name": "Website",
    "project_status": "active",
    "client_id": "c1",
    "client_name": "ACME",
    "task_id": "t1",
    "task_name": "Docs",
    "task_status": "todo",
    "timesheet_id": None,
    "timesheet_status": None,
    "tags": [{"id": "tag1", "name": "urgent", "color": "#ff0000"}],
    "tag_count": 1,
    "createdAt": "2024-01-15T11:30:00.000Z",
    "updatedAt": "2024-01-15T11:30:05.000Z",
}

CREATE_ENTRY = {  # §3.6/§5.2: flat snake_case, created_at/updated_at, other offsets
    **{k: v for k, v in FIND_ENTRY.items() if k not in ("createdAt", "updatedAt")},
    "start_time": "2024-01-15T10:00:00+01:00",
    "end_time": "2024-01-15T12:30:00+01:00",
    "created_at": "2024-01-15T11:30:00Z",
    "updated_at": "2024-01-15T06:30:05-05:00",
}

WEBHOOK_ENTRY = {  # §4.3: nested camelCase
    "id": "te1a2b3c4-0000",
    "description": "Write docs",
    "date": "2024-01-15T00:00:00.000Z",
    "startTime": "2024-01-15T09:00:00.000Z",
    "endTime": "2024-01-15T11:30:00.000Z",
    "duration": 9000,
    "billable": True,
    "action": "stop_timer",
    "workspace": {"id": "w1b2c3d4", "name": "Dev Team"},
    "teamMember": {"id": "tm1a2b3c4", "name": "Ana", "email": "ana@example.com"},
    "project": {"id": "p1", "name": "Website"},
    "client": {"id": "c1", "name": "ACME"},
    "task": {"id": "t1", "name": "Docs"},
    "tags": [{"id": "tag1", "name": "urgent", "color": "#ff0000"}],
    "createdAt": "2024-01-15T11:30:00.000Z",
    "updatedAt": "2024-01-15T11:30:05.000Z",
}


def _fields(entry):
    """Every field but ``raw`` (which keeps each shape's own JSON)."""
    return {k: getattr(entry, k) for k in entry.__slots__ if k != "raw"}


def test_every_shape_normalises_to_the_same_record():
    find = api.parse_time_entry(FIND_ENTRY)
    create = api.parse_time_entry(CREATE_ENTRY)
    hook = api.parse_time_entry(WEBHOOK_ENTRY)
    assert _fields(find) == _fields(create) == _fields(hook)
    assert find.date == "2024-01-15"
    assert find.start_time == "2024-01-15T09:00:00.000Z"
    assert find.end_time == "2024-01-15T11:30:00.000Z"
    assert find.duration_seconds == 9000
    assert find.updated_at == "2024-01-15T11:30:05.000Z"
    assert find.tags == (Ref("tag1", "urgent", "#ff0000"),)
    assert (find.team_member_id, find.team_member_name) == ("tm1a2b3c4", "Ana")
    assert find.team_member_email == "ana@example.com"
    assert (find.client_id, find.task_name, find.workspace_name) == ("c1", "Docs", "Dev Team")
    assert not find.running


def test_raw_is_compact_json_of_the_original():
    entry = api.parse_time_entry(WEBHOOK_ENTRY)
    assert json.loads(entry.raw) == WEBHOOK_ENTRY
    assert ", " not in entry.raw
    assert ": " not in entry.raw
    uni = api.parse_time_entry({**FIND_ENTRY, "description": "Čaj ☕ 日本"})
    assert "Čaj ☕ 日本" in uni.raw
    assert uni.description == "Čaj ☕ 日本"


def test_running_timer_from_webhook():
    started = {k: v for k, v in WEBHOOK_ENTRY.items() if k not in ("endTime", "duration")}
    started["action"] = "start_timer"
    entry = api.parse_time_entry(started)
    assert entry.end_time is None
    assert entry.duration_seconds is None
    assert entry.running
    assert not entry.manually_entered


def test_manual_action_sets_manually_entered():
    entry = api.parse_time_entry({**WEBHOOK_ENTRY, "action": "manual_entry"})
    assert entry.manually_entered
    assert not entry.running


def test_optional_refs_may_be_null_or_absent():
    obj = {**WEBHOOK_ENTRY, "project": None, "task": None}
    del obj["client"]
    entry = api.parse_time_entry(obj)
    assert entry.project_id is None
    assert entry.task_id is None
    assert entry.client_id is None
    flat = {**FIND_ENTRY, "project_id": None, "project_name": None, "task_id": None}
    entry = api.parse_time_entry(flat)
    assert entry.project_id is None
    assert entry.project_name is None
    assert entry.task_id is None


def test_manual_entry_without_start_and_missing_workspace_uses_fallback():
    obj = {
        "id": 42,
        "date": "2024-02-29",
        "start_time": None,
        "end_time": None,
        "duration": 3600,
        "billable": "false",
        "manually_entered": True,
    }
    entry = api.parse_time_entry(obj, workspace_id="w9")
    assert entry.id == "42"
    assert entry.workspace_id == "w9"
    assert entry.date == "2024-02-29"
    assert entry.start_time is None
    assert entry.billable is False
    assert entry.description == ""


def test_date_defaults_to_start_day():
    obj = {k: v for k, v in WEBHOOK_ENTRY.items() if k != "date"}
    obj["startTime"] = "2024-03-01T23:30:00-02:00"
    assert api.parse_time_entry(obj).date == "2024-03-02"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2024-01-15T09:00:00.000Z", "2024-01-15T09:00:00.000Z"),
        ("2024-01-15T09:00:00Z", "2024-01-15T09:00:00.000Z"),
        ("2024-01-15T09:00:00z", "2024-01-15T09:00:00.000Z"),
        ("2024-01-15T09:00:00.5Z", "2024-01-15T09:00:00.500Z"),
        ("2024-01-15T09:00:00.123456Z", "2024-01-15T09:00:00.123Z"),
        ("2024-01-15T10:00:00+01:00", "2024-01-15T09:00:00.000Z"),
        ("2024-01-15T01:00:00.250-08:00", "2024-01-15T09:00:00.250Z"),
        ("2024-01-15T09:00:00", "2024-01-15T09:00:00.000Z"),  # naive means UTC
        ("2024-01-01T00:30:00+05:30", "2023-12-31T19:00:00.000Z"),
    ],
)
def test_timestamp_normalisation(given, expected):
    assert api.normalize_timestamp(given) == expected


@pytest.mark.parametrize("bad", ["", "yesterday", "2024-13-01T00:00:00Z", 1705309200, None])
def test_bad_timestamp_names_the_field(bad):
    with pytest.raises(MalformedResponse, match="start_time"):
        api.parse_time_entry({**FIND_ENTRY, "start_time": bad or "nope"})
    with pytest.raises(MalformedResponse, match="when"):
        api.normalize_timestamp(bad, "when")


@pytest.mark.parametrize(
    ("mutation", "field"),
    [
        ({"id": None}, "id"),
        ({"id": True}, "id"),
        ({"duration": "long"}, "duration"),
        ({"billable": "maybe"}, "billable"),
        ({"tags": "urgent"}, "tags"),
        ({"tags": [{"name": "x"}]}, "tags"),
        ({"date": "15/01/2024"}, "date"),
        ({"description": {"x": 1}}, "description"),
        ({"workspace_id": None}, "workspace_id"),
        ({"team_member_id": []}, "team_member_id"),
    ],
)
def test_wrong_shape_names_what_was_wrong(mutation, field):
    with pytest.raises(MalformedResponse, match=field):
        api.parse_time_entry({**FIND_ENTRY, **mutation})


def test_entry_not_an_object():
    with pytest.raises(MalformedResponse, match="not an object"):
        api.parse_time_entry(["x"])


# --------------------------------------------------------------------------- requests


def test_workspaces_request():
    req = api.list_workspaces_request("https://api.example/v1/", KEY, "1.0")
    assert (req.method, req.url) == ("GET", "https://api.example/v1/workspaces")
    assert req.headers["X-Api-Key"] == KEY
    assert req.headers["X-Accept-Version"] == "1.0"
    assert "X-Accept-Version" not in api.list_workspaces_request("http://h/v1", KEY).headers
    assert KEY not in repr(req)


def test_find_request_window_and_open_sides():
    req = api.find_time_entries_request(
        "https://app.example/", KEY, "w1", "2024-01-01", "2024-01-31"
    )
    assert req.method == "POST"
    assert req.url == "https://app.example/api/integrations/zapier/triggers/time-entries/find"
    assert req.headers["Authorization"] == f"Bearer {KEY}"
    assert req.json == {
        "workspace_id": "w1",
        "date_after": "2024-01-01T00:00:00.000Z",
        "date_before": "2024-01-31T23:59:59.999Z",
    }
    assert api.find_time_entries_request("h", KEY, "w1", None, None).json == {"workspace_id": "w1"}
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        api.find_time_entries_request("h", KEY, "w1", "2024-1-1", None)


def test_webhook_requests():
    sub = api.subscribe_webhook_request(
        "https://app.example",
        KEY,
        "https://me/hook",
        ["TIMER_STARTED"],
        secret="s",
        description="d",
    )
    assert sub.method == "POST"
    assert sub.url.endswith("/api/integrations/zapier/webhooks/subscribe")
    assert sub.json == {
        "url": "https://me/hook",
        "events": ["TIMER_STARTED"],
        "description": "d",
        "secret": "s",
    }
    lst = api.list_webhooks_request("https://app.example", KEY)
    assert (lst.method, lst.json) == ("GET", None)
    assert lst.url == sub.url
    dele = api.delete_webhook_request("https://app.example", KEY, "wh_1/2")
    assert dele.method == "DELETE"
    assert dele.url == "https://app.example/api/integrations/zapier/webhooks/wh_1%2F2"


# --------------------------------------------------------------------------- parsers


def _body(obj) -> bytes:
    return json.dumps(obj).encode()


def test_parse_workspaces():
    body = _body([{"id": "w1", "name": "One"}, {"id": 2, "name": None}])
    assert [(w.id, w.name) for w in api.parse_workspaces(200, {}, body)] == [
        ("w1", "One"),
        ("2", ""),
    ]
    with pytest.raises(MalformedResponse, match="array"):
        api.parse_workspaces(200, {}, _body({"workspaces": []}))
    with pytest.raises(MalformedResponse, match="not JSON"):
        api.parse_workspaces(200, {}, b"<html>")
    with pytest.raises(MalformedResponse, match="workspace 0 id"):
        api.parse_workspaces(200, {}, _body([{"name": "x"}]))
    with pytest.raises(AuthError):
        api.parse_workspaces(401, {}, _body({"error": {"code": "INVALID_API_KEY"}}))


def test_parse_time_entries():
    body = _body([FIND_ENTRY, {**FIND_ENTRY, "id": "two"}])
    entries = api.parse_time_entries(200, {}, body)
    assert [e.id for e in entries] == ["te1a2b3c4-0000", "two"]
    assert entries.rejected == ()
    assert api.parse_time_entries(200, {}, b"[]") == []
    with pytest.raises(MalformedResponse, match="not JSON") as info:
        api.parse_time_entries(200, {}, b'[{"id": "x"', "u")  # cut off
    assert info.value.status == 200
    assert info.value.url == "u"
    with pytest.raises(MalformedResponse, match="array"):
        api.parse_time_entries(200, {}, b'{"error": "x"}')
    with pytest.raises(ServerError):
        api.parse_time_entries(500, {}, _body({"error": "Failed to fetch time entries"}))


def test_parse_subscriptions():
    hook = {"id": "wh_1234567890abcdef", "url": "https://me/h", "events": ["TIMER_STOPPED"]}
    sub = api.parse_subscription(
        200, {}, _body({"success": True, "webhook": {**hook, "status": "ACTIVE"}})
    )
    assert (sub.id, sub.events, sub.status) == ("wh_1234567890abcdef", ("TIMER_STOPPED",), "ACTIVE")
    listed = api.parse_subscriptions(
        200,
        {},
        _body({"success": True, "webhooks": [hook, {**hook, "id": "b", "status": "DISABLED"}]}),
    )
    assert [(s.id, s.status) for s in listed] == [
        ("wh_1234567890abcdef", "ACTIVE"),
        ("b", "DISABLED"),
    ]
    with pytest.raises(MalformedResponse, match="events"):
        api.parse_subscription(200, {}, _body({"webhook": {**hook, "events": "x"}}))
    with pytest.raises(MalformedResponse, match="webhooks"):
        api.parse_subscriptions(200, {}, _body([hook]))
    with pytest.raises(ResponseError, match="Invalid URL format"):
        api.parse_subscription(400, {}, _body({"error": "Invalid URL format"}))


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b'{"success":true}'),
        (204, b""),
        (400, b'{"error":"Webhook not found"}'),
        (404, b'{"error":"Webhook not found"}'),
    ],
)
def test_delete_webhook_gone(status, body):
    assert api.check_webhook_deleted(status, {}, body) is True


def test_delete_webhook_failure():
    with pytest.raises(ResponseError, match="Failed to delete webhook"):
        api.check_webhook_deleted(400, {}, b'{"error":"Failed to delete webhook"}')


# --------------------------------------------------------------------------- errors


def test_error_mapping():
    v1 = _body({"error": {"code": "INVALID_API_KEY", "message": "API key invalid", "details": {}}})
    err = api.error_for_response(401, {}, v1, "https://h/v1/workspaces")
    assert type(err) is AuthError
    assert err.status == 401
    assert "invalid" in str(err)
    assert "INVALID_API_KEY: API key invalid" in str(err)
    assert "https://h/v1/workspaces" in str(err)
    forbidden = api.error_for_response(403, {}, _body({"error": "Forbidden"}), "u")
    assert type(forbidden) is AuthError
    assert "permission" in str(forbidden)
    assert type(api.error_for_response(500, {}, b"", "u")) is ServerError
    assert type(api.error_for_response(503, {}, b"<html>down</html>", "u")) is ServerError
    bad = api.error_for_response(
        400,
        {},
        _body(
            {"error": "Invalid request body", "details": [{"field": "start_time", "message": "m"}]}
        ),
        "u",
    )
    assert type(bad) is ResponseError
    assert "Invalid request body" in str(bad)
    assert "start_time" in str(bad)
    assert bad.body.startswith('{"error"')
    v1_detail = _body(
        {
            "error": {
                "code": "VALIDATION_ERROR",
                "message": "bad",
                "details": {"field": "X-Accept-Version"},
            }
        }
    )
    assert "X-Accept-Version" in str(api.error_for_response(400, {}, v1_detail, "u"))


def test_errors_never_contain_the_key():
    for status in (400, 401, 403, 404, 429, 500):
        err = api.error_for_response(status, {}, b'{"error":"Unauthorized"}', "https://h/x")
        assert KEY not in str(err)
        assert KEY not in repr(err)


def test_rate_limited_retry_after_forms():
    err = api.error_for_response(
        429, {"Retry-After": "7"}, b'{"error":"Too many requests"}', "u", now=NOW
    )
    assert isinstance(err, RateLimited)
    assert err.retry_after == 7
    date = format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True)
    err = api.error_for_response(429, {"retry-after": date}, b"", "u", now=NOW)
    assert err.retry_after == pytest.approx(30)
    err = api.error_for_response(429, {"X-RateLimit-Reset": str(int(NOW) + 12)}, b"", "u", now=NOW)
    assert err.retry_after == pytest.approx(12)
    err = api.error_for_response(429, {}, b"", "u", now=NOW)
    assert err.retry_after == api.DEFAULT_RETRY_AFTER


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        (format_datetime(datetime.fromtimestamp(NOW + 90, UTC), usegmt=True), 90.0),
        (format_datetime(datetime.fromtimestamp(NOW - 90, UTC), usegmt=True), 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value, expected):
    got = api.parse_retry_after(value, NOW)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_parse_rate_limit_headers():
    headers = {
        "x-ratelimit-limit": "100",
        "X-RateLimit-Remaining": "42",
        "X-RateLimit-Reset": str(int(NOW) + 20),
        "Retry-After": "3",
    }
    info = api.parse_rate_limit(headers, NOW)
    assert (info.limit, info.remaining, info.reset_epoch, info.retry_after) == (
        100,
        42,
        NOW + 20,
        3,
    )
    assert api.parse_rate_limit({}, NOW) == api.parse_rate_limit({"X-RateLimit-Limit": "x"}, NOW)
    assert api.parse_rate_limit({"X-RateLimit-Reset": "15"}, NOW).reset_epoch == NOW + 15
    ms = api.parse_rate_limit({"X-RateLimit-Reset": str(int(NOW * 1000))}, NOW)
    assert ms.reset_epoch == pytest.approx(NOW)


# --------------------------------------------------------------------------- webhooks


def test_signature():
    body = b'{"id":"x"}'
    good = api.sign("s3cret", body)
    assert good.startswith("sha256=")
    assert len(good) == 7 + 64
    assert api.verify_signature("s3cret", body, good)
    assert api.verify_signature(b"s3cret", body, good.upper().replace("SHA256", "sha256"))
    assert not api.verify_signature("other", body, good)
    assert not api.verify_signature("s3cret", body + b" ", good)
    assert not api.verify_signature("s3cret", body, None)
    assert not api.verify_signature("s3cret", body, "sha1=" + good[7:])
    assert not api.verify_signature("s3cret", body, "sha256=ü")


CLIENT_EVENT = {
    "id": "c1",
    "name": "ACME",
    "email": "a@example.com",
    "phone": None,
    "address": None,
    "status": "active",
    "type": "company",
    "workspace": {"id": "w1", "name": "Dev"},
    "createdAt": "2024-01-15T10:30:00Z",
    "updatedAt": "2024-01-15T10:30:00Z",
}
PROJECT_EVENT = {
    "id": "p1",
    "name": "Site",
    "description": "",
    "status": "active",
    "workspace": {"id": "w1", "name": "Dev"},
    "client": {"id": "c1", "name": "ACME"},
    "defaultBillable": True,
    "defaultBillableRate": 100,
    "estimatedHours": 10,
    "estimatedBudget": 1000,
    "isPrivate": False,
    "createdAt": "2024-01-15T10:30:00Z",
    "updatedAt": "2024-01-15T10:30:00Z",
}
TASK_EVENT = {
    "id": "t1",
    "name": "Docs",
    "description": "",
    "project": {"id": "p1", "name": "Site"},
    "client": {"id": "c1", "name": "ACME"},
    "workspace": {"id": "w1", "name": "Dev"},
    "teamMembers": [],
    "status": "in_progress",
    "priority": "urgent",
    "estimatedHours": 3,
    "dueDate": None,
    "createdAt": "2024-01-15T10:30:00Z",
    "updatedAt": "2024-01-15T10:30:00Z",
}


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ({**WEBHOOK_ENTRY, "action": "start_timer"}, EventKind.TIMER_STARTED),
        (WEBHOOK_ENTRY, EventKind.TIMER_STOPPED),
        ({**WEBHOOK_ENTRY, "action": "manual_entry"}, EventKind.MANUAL_TIME_ADDED),
        (CLIENT_EVENT, EventKind.CLIENT_CREATED),
        (PROJECT_EVENT, EventKind.PROJECT_CREATED),
        (TASK_EVENT, EventKind.TASK_CREATED),
    ],
)
def test_webhook_kinds_without_headers(payload, kind):
    event = api.parse_webhook_event({}, _body(payload))
    assert event.kind is kind
    assert event.object_id == payload["id"]
    assert event.workspace_id == payload["workspace"]["id"]
    assert event.payload == payload
    if kind.name.endswith("CREATED"):
        assert event.entry is None
        assert event.updated_at == "2024-01-15T10:30:00.000Z"
    else:
        assert event.entry is not None
        assert event.entry.id == payload["id"]


@pytest.mark.parametrize("kind", list(EventKind))
def test_webhook_kind_from_header(kind):
    payloads = {
        EventKind.CLIENT_CREATED: CLIENT_EVENT,
        EventKind.PROJECT_CREATED: PROJECT_EVENT,
        EventKind.TASK_CREATED: TASK_EVENT,
        EventKind.TIME_ENTRY_DELETED: {
            "id": "te1",
            "action": "delete_entry",
            "workspace": {"id": "w1", "name": "Dev"},
            "updatedAt": "2024-01-16T00:00:00.000Z",
        },
    }
    payload = payloads.get(kind, {k: v for k, v in WEBHOOK_ENTRY.items() if k != "action"})
    headers = {"x-timetracker-event": kind.value, "X-Timetracker-Delivery": "d-1"}
    event = api.parse_webhook_event(headers, _body(payload))
    assert event.kind is kind
    assert event.delivery_id == "d-1"
    assert (event.entry is not None) is (kind in ENTRY_EVENTS)  # the entry events carry one


def test_extension_events():
    updated = api.parse_webhook_event(
        {"X-Timetracker-Event": "TIME_ENTRY_UPDATED"},
        _body({**WEBHOOK_ENTRY, "description": "new"}),
    )
    assert updated.kind is EventKind.TIME_ENTRY_UPDATED
    assert updated.entry.description == "new"
    deleted = {
        "id": "te1",
        "action": "delete_entry",
        "workspace": {"id": "w1", "name": "Dev"},
        "updatedAt": "2024-01-16T01:00:00+01:00",
    }
    event = api.parse_webhook_event({}, _body(deleted))
    assert event.kind is EventKind.TIME_ENTRY_DELETED
    assert event.entry is None
    assert event.workspace_id == "w1"
    assert event.updated_at == "2024-01-16T00:00:00.000Z"
    assert event.dedupe_key == "TIME_ENTRY_DELETED:te1:2024-01-16T00:00:00.000Z"


def test_dedupe_key_collapses_repeats_and_separates_changes():
    first = api.parse_webhook_event({}, _body(WEBHOOK_ENTRY))
    again = api.parse_webhook_event({"X-Timetracker-Delivery": "other"}, _body(WEBHOOK_ENTRY))
    later = api.parse_webhook_event(
        {}, _body({**WEBHOOK_ENTRY, "updatedAt": "2024-01-15T12:00:00.000Z"})
    )
    assert (
        first.dedupe_key
        == again.dedupe_key
        == ("TIMER_STOPPED:te1a2b3c4-0000:2024-01-15T11:30:05.000Z")
    )
    assert later.dedupe_key != first.dedupe_key


@pytest.mark.parametrize(
    ("headers", "body", "match"),
    [
        ({}, b"not json", "not JSON"),
        ({}, b"\xff\xfe", "not JSON"),
        ({}, b"[]", "object"),
        ({}, _body({"id": "x", "action": "dance"}), "action"),
        ({"X-Timetracker-Event": "NOPE"}, _body(CLIENT_EVENT), "NOPE"),
        ({}, _body({"id": "x"}), "no known event"),
        ({}, _body({**WEBHOOK_ENTRY, "id": None}), "id"),
        ({}, _body({**WEBHOOK_ENTRY, "startTime": "later"}), "start_time"),
        ({}, _body({"id": "te1", "action": "delete_entry"}), "workspace"),
    ],
)
def test_bad_webhooks_are_400(headers, body, match):
    with pytest.raises(InvalidWebhook, match=match) as info:
        api.parse_webhook_event(headers, body)
    assert info.value.status == 400


def test_emulator_samples_parse():
    shapes = pytest.importorskip("syncd.emulator.shapes")
    for action, kind in (
        ("start_timer", EventKind.TIMER_STARTED),
        ("stop_timer", EventKind.TIMER_STOPPED),
        ("manual_entry", EventKind.MANUAL_TIME_ADDED),
        ("update_entry", EventKind.TIME_ENTRY_UPDATED),
    ):
        event = api.parse_webhook_event({}, _body(shapes.sample_entry(action)))
        assert event.kind is kind
        assert event.entry.date == "2024-01-15"
        assert event.entry.running is (action == "start_timer")
    samples = {
        "SAMPLE_CLIENT": EventKind.CLIENT_CREATED,
        "SAMPLE_PROJECT": EventKind.PROJECT_CREATED,
        "SAMPLE_TASK": EventKind.TASK_CREATED,
    }
    for name, kind in samples.items():
        if hasattr(shapes, name):
            assert api.parse_webhook_event({}, _body(getattr(shapes, name))).kind is kind


# --------------------------------------------------------------------------- quarantine

OVERLONG_ID = "i" * (api.MAX_ID_CHARS + 1)
OVERLONG_NAME = "n" * (api.MAX_NAME_CHARS + 1)
OVERLONG_DESCRIPTION = "d" * (api.MAX_DESCRIPTION_CHARS + 1)


@pytest.mark.parametrize(
    ("change", "field", "cleared"),
    [
        ({"duration": 10**23}, "duration", {"duration_seconds": None}),
        ({"duration": 1e23}, "duration", {"duration_seconds": None}),
        ({"duration": -1_000_000_000_000}, "duration", {"duration_seconds": None}),
        ({"duration": "long"}, "duration", {"duration_seconds": None}),
        ({"start_time": "9999-12-31T23:00:00-05:00"}, "start_time", {"start_time": None}),
        ({"createdAt": "1969-12-31T23:59:59.000Z"}, "created_at", {"created_at": None}),
        ({"updatedAt": "2024-13-01T00:00:00Z"}, "updated_at", {"updated_at": None}),
        ({"description": OVERLONG_DESCRIPTION}, "description", {"description": ""}),
        ({"project_id": OVERLONG_ID}, "project_id", {"project_id": None, "project_name": None}),
        ({"team_member_name": OVERLONG_NAME}, "team_member_name", {"team_member_name": None}),
        (
            {"team_member_id": []},
            "team_member_id",
            {"team_member_id": None, "team_member_name": None},
        ),
        ({"billable": "maybe"}, "billable", {"billable": True}),
        (
            {"tags": [{"name": "x"}, {"id": "tag1", "name": "urgent", "color": "#ff0000"}]},
            "tags[0]",
            {"tags": (Ref("tag1", "urgent", "#ff0000"),)},
        ),
        # A stopped timer whose end is unusable must not read as a running one.
        ({"end_time": "later"}, "end_time", {"end_time": None, "start_time": None}),
    ],
)
def test_a_field_syncd_cannot_store_is_cleared_and_the_entry_kept(change, field, cleared):
    clean = api.parse_time_entry(FIND_ENTRY)
    entry, rejection = api.check_time_entry({**FIND_ENTRY, **change})
    assert {k: getattr(entry, k) for k in cleared} == cleared
    kept = {k: v for k, v in _fields(clean).items() if k not in cleared}
    assert {k: v for k, v in _fields(entry).items() if k not in cleared} == kept
    assert not entry.running
    assert rejection.stored
    assert (rejection.entry_id, rejection.workspace_id, rejection.date) == (
        "te1a2b3c4-0000",
        "w1b2c3d4",
        "2024-01-15",
    )
    assert field in rejection.reason
    assert len(rejection.reason) < 300  # the offending value is shown cut short
    with pytest.raises(MalformedResponse, match=re.escape(field)):
        api.parse_time_entry({**FIND_ENTRY, **change})


@pytest.mark.parametrize(
    ("change", "entry_id", "field"),
    [
        ({"id": None}, None, "id"),
        ({"id": ["x"]}, None, "id"),
        ({"id": OVERLONG_ID}, None, "id"),
        ({"date": "2026-02-30"}, "te1a2b3c4-0000", "date"),
        ({"date": "9999-01-01T00:00:00.000Z"}, "te1a2b3c4-0000", "date"),
        ({"date": "1969-12-31"}, "te1a2b3c4-0000", "date"),
        ({"date": None, "start_time": None}, "te1a2b3c4-0000", "date"),
        ({"workspace_id": None}, "te1a2b3c4-0000", "workspace_id"),
    ],
)
def test_an_entry_without_usable_id_date_or_workspace_is_not_stored(change, entry_id, field):
    entry, rejection = api.check_time_entry({**FIND_ENTRY, **change})
    assert entry is None
    assert not rejection.stored
    assert rejection.entry_id == entry_id
    assert field in rejection.reason


def test_the_requested_workspace_stands_in_for_a_missing_one():
    entry, rejection = api.check_time_entry({**FIND_ENTRY, "workspace_id": None}, workspace_id="w9")
    assert rejection is None
    assert entry.workspace_id == "w9"


def test_a_rejection_keeps_at_most_a_few_kib_of_the_entry():
    entry, rejection = api.check_time_entry({**FIND_ENTRY, "description": "é" * 70_000})
    assert entry.description == ""
    assert len(rejection.raw.encode()) <= api.REJECTED_RAW_BYTES
    assert rejection.raw_bytes > 140_000
    assert rejection.raw.startswith('{"id":"te1a2b3c4-0000"')


def test_one_bad_entry_never_fails_the_answer():
    """Numbers orjson cannot hold (10^23 as an integer, 1e400) and items of no use are
    quarantined one by one; every other entry of the answer is parsed as usual."""
    body = b",".join(
        [
            _body(FIND_ENTRY),
            b'{"id":"big","date":"2024-01-16T00:00:00.000Z","duration":100000000000000000000000}',
            b'{"id":"inf","date":"2024-01-16","duration":1e400,"billable":NaN}',
            b"7",
            _body({**FIND_ENTRY, "id": "late", "date": "9999-01-01"}),
            _body({**FIND_ENTRY, "id": "two"}),
        ]
    )
    entries = api.parse_time_entries(200, {}, b"[" + body + b"]", workspace_id="w1")
    assert [e.id for e in entries] == ["te1a2b3c4-0000", "big", "inf", "two"]
    assert sent_count(entries) == 6  # an answer's size (for a cap) counts the ones left out
    big, inf = entries[1], entries[2]
    assert big.duration_seconds is None
    assert big.workspace_id == "w1"
    assert '"duration":100000000000000000000000' in big.raw  # kept as sent
    assert (inf.duration_seconds, inf.billable) == (None, True)
    assert [(r.entry_id, r.stored, r.date) for r in entries.rejected] == [
        ("big", True, "2024-01-16"),
        ("inf", True, "2024-01-16"),
        (None, False, None),
        ("late", False, None),
    ]
    assert "duration" in entries.rejected[0].reason
    assert "duration" in entries.rejected[1].reason
    assert "billable" in entries.rejected[1].reason
    assert "not an object" in entries.rejected[2].reason
    with pytest.raises(MalformedResponse, match="not JSON"):
        api.parse_time_entries(200, {}, b"[" + b"[" * 100_000 + b"]" * 100_000 + b"]")


@pytest.mark.parametrize(
    ("sent", "day"),
    [
        ("2026-11-20T00:00:00.000+05:30", "2026-11-20"),
        ("2026-11-20T23:30:00-08:00", "2026-11-20"),
        ("2026-11-20T00:00:00.000Z", "2026-11-20"),
        ("2026-11-20T10:00:00", "2026-11-20"),
        ("2026-11-20", "2026-11-20"),
    ],
)
def test_date_keeps_the_calendar_day_it_was_sent_with(sent, day):
    for shape in (FIND_ENTRY, CREATE_ENTRY, WEBHOOK_ENTRY):
        assert api.parse_time_entry({**shape, "date": sent}).date == day


def test_a_missing_or_null_billable_takes_the_documented_default_true():
    for shape in (FIND_ENTRY, WEBHOOK_ENTRY):
        without = {k: v for k, v in shape.items() if k != "billable"}
        assert api.parse_time_entry(without).billable is True
        assert api.parse_time_entry({**shape, "billable": None}).billable is True
        assert api.parse_time_entry({**shape, "billable": False}).billable is False
        assert api.parse_time_entry({**shape, "billable": "false"}).billable is False


def test_fields_present_but_null_mean_what_the_contract_documents():
    """§5.2 and §8 rows 9-10: null is the same as absent. No start or end (a manual entry),
    no duration, no project, client, task or member, no tags, billable by default, an empty
    description; nothing is quarantined."""
    nullable = (
        "description", "start_time", "end_time", "duration", "duration_hours", "billable",
        "manually_entered", "team_member_id", "team_member_name", "team_member_email",
        "team_member_role", "project_id", "project_name", "project_status", "client_id",
        "client_name", "task_id", "task_name", "task_status", "timesheet_id",
        "timesheet_status", "tags", "tag_count", "createdAt", "updatedAt",
    )  # fmt: skip
    entry, rejection = api.check_time_entry({**FIND_ENTRY, **dict.fromkeys(nullable)})
    assert rejection is None
    assert _fields(entry) == {
        **dict.fromkeys(_fields(entry)),
        "id": "te1a2b3c4-0000",
        "workspace_id": "w1b2c3d4",
        "workspace_name": "Dev Team",
        "date": "2024-01-15",
        "description": "",
        "billable": True,
        "manually_entered": False,
        "tags": (),
    }
    assert not entry.running


@pytest.mark.parametrize(
    "change",
    [
        {"duration": -1_000_000_000_000},
        {"duration": 10**23},
        {"updatedAt": "9999-12-31T23:00:00-05:00"},
        {"startTime": "0001-01-01T00:00:00+01:00"},
        {"date": "2101-01-01T00:00:00.000Z"},
        {"description": OVERLONG_DESCRIPTION},
    ],
)
def test_a_webhook_with_values_the_upstream_cannot_produce_is_refused(change):
    with pytest.raises(InvalidWebhook) as info:
        api.parse_webhook_event({}, _body({**WEBHOOK_ENTRY, **change}))
    assert info.value.status == 400


# --------------------------------------------------------------------------- any input

_FIELD_VALUES = st.one_of(
    st.none(),
    st.just(""),
    st.booleans(),
    st.integers(-5, 10**6),
    st.integers(-(10**25), 10**25),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "2024-01-15T09:00:00.000Z",
            "2024-01-15T09:00:00Z",
            "2024-01-15T11:00:00+02:00",
            "2024-01-15",
            "2024-13-45",
            "9999-12-31T23:00:00-05:00",
            "0001-01-01T00:30:00+01:00",
            "1969-12-31T23:59:59.999Z",
            "2100-12-31T23:59:59.999Z",
            "2101-01-01",
            "true",
            "false",
            "naïve 東京",
            OVERLONG_ID,
            OVERLONG_NAME,
        ]
    ),
    st.lists(
        st.one_of(
            st.fixed_dictionaries(
                {"id": st.sampled_from(["t1", "", 7, None, OVERLONG_ID])},
                optional={
                    "name": st.sampled_from(["urgent", 3, None, OVERLONG_NAME]),
                    "color": st.sampled_from(["red", None, 1.5]),
                },
            ),
            st.just("not a tag"),
        ),
        max_size=3,
    ),
    st.dictionaries(st.sampled_from(["id", "name", "email"]), st.sampled_from(["x", 3, None])),
    st.lists(st.just(1), max_size=1),
)
_ENTRY_KEYS = [
    "id", "workspace_id", "workspace_name", "workspaceId", "workspace", "date", "start_time",
    "startTime", "end_time", "endTime", "duration", "description", "billable",
    "manually_entered", "manuallyEntered", "action", "team_member_id", "team_member_name",
    "team_member_email", "teamMember", "project_id", "project_name", "project", "client_id",
    "client_name", "client", "task_id", "task_name", "task", "created_at", "createdAt",
    "updated_at", "updatedAt", "tags",
]  # fmt: skip


def _storable(entry) -> None:
    """The row of ``entry`` binds to SQLite, and holds only values the upstream can produce."""
    sqlite3.connect(":memory:").execute(
        "SELECT " + ", ".join("?" * len(row_of(entry, "poll", "now"))), row_of(entry, "poll", "now")
    )
    stamps = [entry.date, entry.start_time, entry.end_time, entry.created_at, entry.updated_at]
    assert all(f"{api.MIN_YEAR}" <= s[:4] <= f"{api.MAX_YEAR}" for s in stamps if s)
    assert entry.duration_seconds is None or 0 <= entry.duration_seconds <= 4_200_000_000
    ids = [entry.id, entry.workspace_id, entry.project_id, entry.task_id, entry.client_id]
    assert all(len(i) <= api.MAX_ID_CHARS for i in ids + [t.id for t in entry.tags] if i)
    assert len(entry.description) <= api.MAX_DESCRIPTION_CHARS


@given(
    base=st.sampled_from([FIND_ENTRY, CREATE_ENTRY, WEBHOOK_ENTRY]),
    changes=st.dictionaries(st.sampled_from(_ENTRY_KEYS), _FIELD_VALUES, max_size=6),
    workspace_id=st.sampled_from([None, "ws-default"]),
)
@settings(max_examples=examples(400), deadline=None)
def test_any_entry_is_stored_quarantined_or_refused_and_never_raises(base, changes, workspace_id):
    """Whatever a field holds, the lenient parser returns a storable entry or none, with a
    rejection exactly when the strict one (webhooks) raises."""
    obj = {**base, **changes}
    entry, rejection = api.check_time_entry(obj, workspace_id=workspace_id)
    try:
        strict = api.parse_time_entry(obj, workspace_id=workspace_id)
    except MalformedResponse as exc:
        strict = exc
    if rejection is None:
        assert entry == strict
    else:
        assert isinstance(strict, MalformedResponse)
        assert rejection.stored is (entry is not None)
        assert rejection.reason
    if entry is not None:
        _storable(entry)


_SHARED = ("date", "duration", "description", "billable", "tags", "id")


@given(
    shared=st.dictionaries(st.sampled_from(_SHARED), _FIELD_VALUES, max_size=4),
    cased=st.dictionaries(
        st.sampled_from(["start", "end", "created", "updated"]), _FIELD_VALUES, max_size=3
    ),
    refs=st.dictionaries(
        st.sampled_from(["project", "task", "client", "teamMember"]), _FIELD_VALUES, max_size=2
    ),
)
@settings(max_examples=examples(300), deadline=None)
def test_flat_and_nested_shapes_of_the_same_values_give_the_same_outcome(shared, cased, refs):
    """One parser for every shape: the find shape and the webhook shape holding the same
    values give the same record, cleared the same way, or both are given up."""
    flat_keys = {"start": "start_time", "end": "end_time", "created": "createdAt"}
    flat_keys |= {"updated": "updatedAt"}
    nested_keys = {"start": "startTime", "end": "endTime", "created": "createdAt"}
    nested_keys |= {"updated": "updatedAt"}
    ref_keys = {"project": "project", "task": "task", "client": "client"}
    ref_keys |= {"teamMember": "team_member"}
    flat = {**FIND_ENTRY, **shared, **{flat_keys[k]: v for k, v in cased.items()}}
    nested = {**WEBHOOK_ENTRY, **shared, **{nested_keys[k]: v for k, v in cased.items()}}
    for key, value in refs.items():
        flat[f"{ref_keys[key]}_id"] = value
        nested[key] = {**nested[key], "id": value}
    flat_entry, flat_rejection = api.check_time_entry(flat)
    nested_entry, nested_rejection = api.check_time_entry(nested)
    assert (flat_entry is None) == (nested_entry is None)
    if flat_entry is not None:
        assert _fields(flat_entry) == _fields(nested_entry)
    assert (flat_rejection is None) == (nested_rejection is None)
