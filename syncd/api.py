"""The Timetracker protocol without I/O: build requests, parse responses into records.

Every function here is pure (bytes and headers in, records or exceptions out), so the whole
protocol is tested without a socket. Section numbers (§) refer to the upstream contract
``timetracker-api.md``. ``client.py`` does the sending.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

import orjson

from syncd.errors import (
    ApiError,
    AuthError,
    InvalidWebhook,
    MalformedResponse,
    RateLimited,
    ResponseError,
    ServerError,
)
from syncd.records import (
    EventKind,
    RateLimitInfo,
    Ref,
    TimeEntry,
    WebhookEvent,
    WebhookSubscription,
    Workspace,
    format_timestamp,
)

#: Zapier integration API prefix, below ``app_url`` (§2, §3).
ZAPIER_PREFIX = "/api/integrations/zapier"
#: Webhook signature header (emulator choice, §8 row 13).
SIGNATURE_HEADER = "X-Timetracker-Signature"
#: Optional event-name header on deliveries (extension, §8 row 14).
EVENT_HEADER = "X-Timetracker-Event"
#: Optional delivery id header on deliveries (extension, §8 row 14).
DELIVERY_HEADER = "X-Timetracker-Delivery"
#: Seconds to wait after a 429 that names no Retry-After and no reset (§6.2 leaves it open).
DEFAULT_RETRY_AFTER = 10.0
#: How much of an error body is kept on the exception.
_BODY_KEEP = 2000

Headers = Mapping[str, str]


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One HTTP request, ready for any transport. ``json`` is the body (None: no body)."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None

    def __repr__(self) -> str:  # never show credentials
        return f"HttpRequest({self.method} {self.url})"


def _base(url: str) -> str:
    return url.rstrip("/")


def _bearer(key: str) -> dict[str, str]:
    # Zapier surface: ``Authorization: Bearer <key>`` (§2).
    return {"Authorization": f"Bearer {key}", "Accept": "application/json"}


def list_workspaces_request(api_url: str, key: str, version: str | None = None) -> HttpRequest:
    """``GET {api_url}/workspaces`` on the core API with ``X-Api-Key`` (§2, §3 row 1, §8 row 30)."""
    headers = {"X-Api-Key": key, "Accept": "application/json"}
    if version:
        headers["X-Accept-Version"] = version  # §2: pins a version when set
    return HttpRequest("GET", f"{_base(api_url)}/workspaces", headers)


def find_time_entries_request(
    app_url: str,
    key: str,
    workspace_id: str,
    date_from: str | None,
    date_to: str | None,
) -> HttpRequest:
    """``POST …/triggers/time-entries/find`` for entries whose ``date`` is in the window (§3.7).

    ``date_from``/``date_to`` are ``YYYY-MM-DD`` (inclusive; None leaves that side open). The
    filters apply to the entry's ``date`` field and are inclusive (§8 row 27).

    Raises ``ValueError`` when a date is not ``YYYY-MM-DD``.
    """
    body: dict[str, Any] = {"workspace_id": workspace_id}
    if date_from is not None:
        body["date_after"] = f"{_check_day(date_from)}T00:00:00.000Z"
    if date_to is not None:
        body["date_before"] = f"{_check_day(date_to)}T23:59:59.999Z"
    url = f"{_base(app_url)}{ZAPIER_PREFIX}/triggers/time-entries/find"
    return HttpRequest("POST", url, _bearer(key), body)


def subscribe_webhook_request(
    app_url: str,
    key: str,
    url: str,
    events: Sequence[str],
    *,
    secret: str | None = None,
    description: str | None = None,
) -> HttpRequest:
    """``POST …/webhooks/subscribe`` with ``{url, events[, description, secret]}`` (§3.2)."""
    body: dict[str, Any] = {"url": url, "events": list(events)}
    if description is not None:
        body["description"] = description
    if secret is not None:
        body["secret"] = secret  # OAS-only field (§3.2)
    return HttpRequest(
        "POST", f"{_base(app_url)}{ZAPIER_PREFIX}/webhooks/subscribe", _bearer(key), body
    )


def list_webhooks_request(app_url: str, key: str) -> HttpRequest:
    """``GET …/webhooks/subscribe``: the caller's subscriptions (§3.3)."""
    return HttpRequest("GET", f"{_base(app_url)}{ZAPIER_PREFIX}/webhooks/subscribe", _bearer(key))


def delete_webhook_request(app_url: str, key: str, webhook_id: str) -> HttpRequest:
    """``DELETE …/webhooks/{id}`` (§3.4)."""
    wid = quote(webhook_id, safe="")
    return HttpRequest("DELETE", f"{_base(app_url)}{ZAPIER_PREFIX}/webhooks/{wid}", _bearer(key))


def _check_day(value: str) -> str:
    try:
        if len(value) == 10:
            return date.fromisoformat(value).isoformat()
    except ValueError:
        pass
    raise ValueError(f"expected a YYYY-MM-DD date, got {value!r}")


# --------------------------------------------------------------------------- headers


def header(headers: Headers, name: str) -> str | None:
    """Case-insensitive header lookup on any mapping (aiohttp's is already case-insensitive)."""
    value = headers.get(name)
    if value is not None:
        return value
    lname = name.lower()
    for k, v in headers.items():
        if k.lower() == lname:
            return v
    return None


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP-date (§6.2, RFC 9110).

    Returns None when absent or unreadable; never negative.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _int_header(headers: Headers, name: str) -> int | None:
    value = header(headers, name)
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def _reset_epoch(value: str | None, now: float) -> float | None:
    # §8 row 23: epoch seconds. Tolerate milliseconds and delta-seconds, which no
    # epoch of this century can be confused with.
    if value is None:
        return None
    try:
        reset = float(value)
    except ValueError:
        return None
    if not math.isfinite(reset) or reset < 0:
        return None
    if reset > 1e12:
        return reset / 1000.0
    if reset < 1e9:
        return now + reset
    return reset


def parse_rate_limit(headers: Headers, now: float | None = None) -> RateLimitInfo:
    """Read ``X-RateLimit-Limit/Remaining/Reset`` and ``Retry-After`` (§6.2, §8 row 23).

    ``now`` (epoch seconds, default the wall clock) resolves HTTP-date and delta forms.
    Unreadable values become None; this never raises.
    """
    now = time.time() if now is None else now
    return RateLimitInfo(
        limit=_int_header(headers, "X-RateLimit-Limit"),
        remaining=_int_header(headers, "X-RateLimit-Remaining"),
        reset_epoch=_reset_epoch(header(headers, "X-RateLimit-Reset"), now),
        retry_after=parse_retry_after(header(headers, "Retry-After"), now),
    )


# --------------------------------------------------------------------------- errors


def _body_text(body: bytes) -> str:
    return body[:_BODY_KEEP].decode("utf-8", errors="replace")


def error_message(body: bytes) -> str:
    """The error text of either documented error format (§6.1), or the raw body start."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _body_text(body)[:200].strip()
    if not isinstance(data, dict) or "error" not in data:
        return _body_text(body)[:200].strip()
    err = data["error"]
    if isinstance(err, dict):  # /v1: {error:{code,message,details}}
        parts = [str(err[k]) for k in ("code", "message") if err.get(k)]
        text = ": ".join(parts)
        if err.get("details"):
            text += f" ({json.dumps(err['details'], ensure_ascii=False)})"
        return text
    text = str(err)  # /api: {error:"…", details:[…]}
    if data.get("details"):
        text += f" ({json.dumps(data['details'], ensure_ascii=False)})"
    return text


def error_for_response(
    status: int, headers: Headers, body: bytes, url: str, *, now: float | None = None
) -> ApiError:
    """The exception for a non-success response (returned, not raised).

    401/403 → ``AuthError``; 429 → ``RateLimited`` whose ``retry_after`` comes from
    ``Retry-After`` (else ``X-RateLimit-Reset``, else ``DEFAULT_RETRY_AFTER``); 5xx →
    ``ServerError``; anything else → ``ResponseError``. The key is never part of the message.
    """
    now = time.time() if now is None else now
    detail = error_message(body)
    where = f"HTTP {status} from {url}" + (f": {detail}" if detail else "")
    kwargs = {"status": status, "body": _body_text(body), "url": url}
    if status in (401, 403):
        what = "is invalid or expired" if status == 401 else "lacks permission for this request"
        return AuthError(f"the API key {what} ({where})", **kwargs)
    if status == 429:
        info = parse_rate_limit(headers, now)
        wait = info.retry_after
        if wait is None and info.reset_epoch is not None:
            wait = max(0.0, info.reset_epoch - now)
        if wait is None:
            wait = DEFAULT_RETRY_AFTER
        return RateLimited(
            f"rate limited ({where}); retry in {wait:g} s", retry_after=wait, **kwargs
        )
    if 500 <= status < 600:
        return ServerError(f"server error ({where})", **kwargs)
    return ResponseError(f"request refused ({where})", **kwargs)


def _check_status(status: int, headers: Headers, body: bytes, url: str, ok: Sequence[int]) -> None:
    if status not in ok:
        raise error_for_response(status, headers, body, url)


def _json(status: int, body: bytes, url: str) -> Any:
    try:
        return orjson.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _malformed(f"body is not JSON ({exc})", status, body, url) from None


def _malformed(what: str, status: int = 200, body: bytes = b"", url: str = "") -> MalformedResponse:
    where = f" from {url}" if url else ""
    return MalformedResponse(
        f"unexpected response{where}: {what}", status=status, body=_body_text(body), url=url
    )


# --------------------------------------------------------------------------- values


_CANONICAL_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def normalize_timestamp(value: object, name: str = "timestamp") -> str:
    """Any ISO 8601 datetime (any offset, naive = UTC, with or without millis) → UTC
    ``YYYY-MM-DDTHH:MM:SS.sssZ`` (§5.1, §8 row 12).

    Raises ``MalformedResponse`` naming ``name`` when the value is not such a string.
    """
    if isinstance(value, str) and _CANONICAL_TIMESTAMP.fullmatch(value):
        return value  # already UTC with milliseconds: the common case, kept cheap
    if not isinstance(value, str) or not value.strip():
        raise _malformed(f"{name} is not an ISO 8601 string: {value!r}")
    s = value.strip()
    if s[-1] in "zZ":
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise _malformed(f"{name} is not an ISO 8601 string: {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return format_timestamp(dt)


def _opt_timestamp(value: object, name: str) -> str | None:
    return None if value is None else normalize_timestamp(value, name)


def normalize_date(value: object, name: str = "date") -> str:
    """``YYYY-MM-DD`` or an ISO datetime (§5.1: ``date`` is a full datetime) → UTC ``YYYY-MM-DD``.

    Raises ``MalformedResponse`` naming ``name``.
    """
    if isinstance(value, str) and len(value.strip()) == 10:
        try:
            return date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            raise _malformed(f"{name} is not a date: {value!r}") from None
    return normalize_timestamp(value, name)[:10]


def _id(value: object, name: str) -> str:
    # §5.1: ids are opaque strings (examples are not always valid UUIDs).
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise _malformed(f"{name} is missing or not an id: {value!r}")
    return str(value)


def _opt_id(value: object, name: str) -> str | None:
    return None if value is None or value == "" else _id(value, name)


def _opt_str(value: object, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _malformed(f"{name} is not a string: {value!r}")


def _bool(value: object, name: str, default: bool = False) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):  # §3.7: booleans sometimes travel as strings
        return value == "true"
    raise _malformed(f"{name} is not a boolean: {value!r}")


def _seconds(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _malformed(f"{name} is not a number of seconds: {value!r}")
    return round(value)


def _ref(value: object, name: str) -> Ref | None:
    """A nested ``{id, name}`` object (§4.3), or None when absent/null."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _malformed(f"{name} is not an object: {value!r}")
    if value.get("id") is None:
        return None
    return Ref(
        _id(value["id"], f"{name}.id"),
        _opt_str(value.get("name"), f"{name}.name"),
        _opt_str(value.get("color"), f"{name}.color"),
    )


def _tags(value: object) -> tuple[Ref, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _malformed(f"tags is not a list: {value!r}")
    tags = []
    for i, item in enumerate(value):
        ref = _ref(item, f"tags[{i}]")
        if ref is None:
            raise _malformed(f"tags[{i}] has no id")
        tags.append(ref)
    return tuple(tags)


def compact_json(obj: object) -> str:
    """The compact JSON text stored as ``raw`` (key order kept, unicode unescaped)."""
    return orjson.dumps(obj).decode()


# --------------------------------------------------------------------------- time entries

#: Webhook ``action`` values that mark a manual entry vs a timer (§4.3).
_MANUAL_ACTIONS = {"manual_entry": True, "start_timer": False, "stop_timer": False}


def _pick(obj: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if obj.get(name) is not None:
            return obj[name]
    return None


def _flat_or_nested(obj: Mapping[str, Any], prefix: str, nested: str) -> Ref | None:
    """A reference from ``{prefix}_id``/``_name`` (§5.2) or ``{nested: {id, name}}`` (§4.3)."""
    ref = _ref(obj.get(nested), nested)
    if ref is not None:
        return ref
    rid = _opt_id(obj.get(f"{prefix}_id"), f"{prefix}_id")
    if rid is None:
        return None
    return Ref(rid, _opt_str(obj.get(f"{prefix}_name"), f"{prefix}_name"))


def parse_time_entry(obj: object, *, workspace_id: str | None = None) -> TimeEntry:
    """Normalise one time entry of any upstream shape into a ``TimeEntry``.

    Shapes: find (flat snake_case, ``createdAt``/``updatedAt``, §3.7), create (flat,
    ``created_at``/``updated_at``, §3.6/§5.2), webhook/fallback (nested camelCase, §4.3;
    ``endTime``/``duration`` absent while the timer runs). ``workspace_id`` is used when the
    object names none. Raises ``MalformedResponse`` naming the offending field.
    """
    if not isinstance(obj, dict):
        raise _malformed(f"time entry is not an object: {compact_json(obj)[:80]}")
    entry_id = _id(obj.get("id"), "id")
    try:
        if _NESTED_KEYS.isdisjoint(obj):
            return _flat_time_entry(obj, entry_id, workspace_id)
        return _time_entry(obj, entry_id, workspace_id)
    except MalformedResponse as exc:
        raise _malformed(f"time entry {entry_id}: {_what(exc)}") from None


def _what(exc: MalformedResponse) -> str:
    return str(exc).removeprefix("unexpected response: ")


#: Keys of the nested (webhook, fallback) shape; an object with none of them is flat.
_NESTED_KEYS = frozenset({"workspace", "teamMember", "project", "client", "task"})
_is_canonical_timestamp = _CANONICAL_TIMESTAMP.fullmatch


def _stamp(value: object, name: str) -> str | None:
    """``_opt_timestamp`` with the canonical form checked first."""
    if value is None:
        return None
    if value.__class__ is str and _is_canonical_timestamp(value):  # type: ignore[arg-type]
        return value  # type: ignore[return-value]
    return normalize_timestamp(value, name)


def _either(obj: Mapping[str, Any], name: str, other: str) -> Any:
    value = obj.get(name)
    return obj.get(other) if value is None else value


def _flat_ref(obj: Mapping[str, Any], id_key: str, name_key: str) -> tuple[str | None, str | None]:
    """``(id, name)`` of a flat reference (§5.2), or ``(None, None)`` when it has no id."""
    rid = obj.get(id_key)
    if rid is None or rid == "":
        return None, None
    if rid.__class__ is not str:
        rid = _id(rid, id_key)
    name = obj.get(name_key)
    if name is not None and name.__class__ is not str:
        name = _opt_str(name, name_key)
    return rid, name


def _flat_tags(value: object) -> tuple[Ref, ...]:
    if value is None or value == []:
        return ()
    if value.__class__ is not list:
        return _tags(value)
    tags = []
    for item in value:  # type: ignore[attr-defined]
        if item.__class__ is not dict:
            return _tags(value)
        tid, name, color = item.get("id"), item.get("name"), item.get("color")
        if tid.__class__ is not str or not tid or not _plain_text(name) or not _plain_text(color):
            return _tags(value)  # the general path names the problem
        tags.append(Ref(tid, name, color))
    return tuple(tags)


def _plain_text(value: object) -> bool:
    return value is None or value.__class__ is str


def _flat_time_entry(obj: dict[str, Any], entry_id: str, workspace_id: str | None) -> TimeEntry:
    """``_time_entry`` for the flat shapes (find, create), which carry almost every entry.

    Gives exactly what ``_time_entry`` gives for an object with none of ``_NESTED_KEYS``,
    checking the common types inline and falling back to the general helpers otherwise.
    """
    get = obj.get
    ws_id, ws_name = _flat_ref(obj, "workspace_id", "workspace_name")
    if ws_id is None:
        ws_id = _id(get("workspaceId") or workspace_id, "workspace_id")
    start = _stamp(_either(obj, "start_time", "startTime"), "start_time")
    end = _stamp(_either(obj, "end_time", "endTime"), "end_time")
    raw_date = get("date")
    if raw_date is None:
        if start is None:
            raise _malformed("date is missing (and there is no start_time)")
        day = start[:10]  # §8 row 10: date defaults to start_time's UTC day
    elif raw_date.__class__ is str and _is_canonical_timestamp(raw_date):
        day = raw_date[:10]
    else:
        day = normalize_date(raw_date)
    # Checked in the order the general parser checks them, so both name the same field.
    manual = _either(obj, "manually_entered", "manuallyEntered")
    if manual is None:
        manual = _MANUAL_ACTIONS.get(get("action"))  # type: ignore[arg-type]
    member_id, member_name = _flat_ref(obj, "team_member_id", "team_member_name")
    project_id, project_name = _flat_ref(obj, "project_id", "project_name")
    client_id, client_name = _flat_ref(obj, "client_id", "client_name")
    task_id, task_name = _flat_ref(obj, "task_id", "task_name")
    duration = get("duration")
    if duration.__class__ is not int:
        duration = _seconds(duration, "duration")
    description = get("description")
    if description.__class__ is not str:
        description = _opt_str(description, "description") or ""
    billable = get("billable")
    if billable.__class__ is not bool:
        billable = _bool(billable, "billable")
    if manual.__class__ is not bool:
        manual = _bool(manual, "manually_entered")
    created = _stamp(_either(obj, "created_at", "createdAt"), "created_at")
    updated = _stamp(_either(obj, "updated_at", "updatedAt"), "updated_at")
    tags = _flat_tags(get("tags"))
    email = get("team_member_email") or None
    if email is not None and email.__class__ is not str:
        email = _opt_str(email, "team_member_email")
    return TimeEntry(
        id=entry_id,
        workspace_id=ws_id,
        date=day,
        start_time=start,
        end_time=end,
        duration_seconds=duration,
        description=description,
        billable=billable,
        manually_entered=manual,
        team_member_id=member_id,
        team_member_name=member_name,
        project_id=project_id,
        project_name=project_name,
        client_id=client_id,
        client_name=client_name,
        task_id=task_id,
        task_name=task_name,
        created_at=created,
        updated_at=updated,
        tags=tags,
        workspace_name=ws_name,
        team_member_email=email,
        raw=compact_json(obj),
    )


def _time_entry(obj: dict[str, Any], entry_id: str, workspace_id: str | None) -> TimeEntry:
    workspace = _flat_or_nested(obj, "workspace", "workspace")
    if workspace is None:
        workspace = Ref(_id(_pick(obj, "workspaceId") or workspace_id, "workspace_id"))
    start = _opt_timestamp(_pick(obj, "start_time", "startTime"), "start_time")
    end = _opt_timestamp(_pick(obj, "end_time", "endTime"), "end_time")
    raw_date = obj.get("date")
    if raw_date is not None:
        day = normalize_date(raw_date)
    elif start is not None:
        day = start[:10]  # §8 row 10: date defaults to start_time's UTC day
    else:
        raise _malformed("date is missing (and there is no start_time)")
    action = obj.get("action")
    manual = _pick(obj, "manually_entered", "manuallyEntered")
    if manual is None and action in _MANUAL_ACTIONS:
        manual = _MANUAL_ACTIONS[action]
    member = _flat_or_nested(obj, "team_member", "teamMember")
    member_obj = obj.get("teamMember") if isinstance(obj.get("teamMember"), dict) else {}
    project = _flat_or_nested(obj, "project", "project")
    client = _flat_or_nested(obj, "client", "client")
    task = _flat_or_nested(obj, "task", "task")
    return TimeEntry(
        id=entry_id,
        workspace_id=workspace.id,
        date=day,
        start_time=start,
        end_time=end,
        duration_seconds=_seconds(obj.get("duration"), "duration"),
        description=_opt_str(obj.get("description"), "description") or "",
        billable=_bool(obj.get("billable"), "billable"),
        manually_entered=_bool(manual, "manually_entered"),
        team_member_id=member.id if member else None,
        team_member_name=member.name if member else None,
        project_id=project.id if project else None,
        project_name=project.name if project else None,
        client_id=client.id if client else None,
        client_name=client.name if client else None,
        task_id=task.id if task else None,
        task_name=task.name if task else None,
        created_at=_opt_timestamp(_pick(obj, "created_at", "createdAt"), "created_at"),
        updated_at=_opt_timestamp(_pick(obj, "updated_at", "updatedAt"), "updated_at"),
        tags=_tags(obj.get("tags")),
        workspace_name=workspace.name,
        team_member_email=_opt_str(
            _pick(obj, "team_member_email") or member_obj.get("email"), "team_member_email"
        ),
        raw=compact_json(obj),
    )


def parse_time_entries(
    status: int, headers: Headers, body: bytes, url: str = "", *, workspace_id: str | None = None
) -> list[TimeEntry]:
    """The find-time-entries response (§3.7): a bare JSON array of flat entries, ``[]`` if none.

    Raises the ``error_for_response`` exception for a non-200 status and
    ``MalformedResponse`` when the body is not a JSON array of valid entries.
    """
    _check_status(status, headers, body, url, (200,))
    data = _json(status, body, url)
    if not isinstance(data, list):
        raise _malformed(
            f"expected a JSON array of time entries, got {type(data).__name__}", status, body, url
        )
    entries = []
    for i, obj in enumerate(data):
        try:
            entries.append(parse_time_entry(obj, workspace_id=workspace_id))
        except MalformedResponse as exc:
            raise _malformed(f"item {i}: {_what(exc)}", status, body, url) from None
    return entries


# --------------------------------------------------------------------------- workspaces


def parse_workspaces(status: int, headers: Headers, body: bytes, url: str = "") -> list[Workspace]:
    """``GET /v1/workspaces`` (§8 row 30): a bare array of ``{id, name}``.

    Raises the ``error_for_response`` exception for a non-200 status and
    ``MalformedResponse`` for any other body.
    """
    _check_status(status, headers, body, url, (200,))
    data = _json(status, body, url)
    if not isinstance(data, list):
        raise _malformed(
            f"expected a JSON array of workspaces, got {type(data).__name__}", status, body, url
        )
    result = []
    for i, obj in enumerate(data):
        if not isinstance(obj, dict):
            raise _malformed(f"workspace {i} is not an object", status, body, url)
        try:
            name = _opt_str(obj.get("name"), f"workspace {i} name") or ""
            result.append(Workspace(_id(obj.get("id"), f"workspace {i} id"), name))
        except MalformedResponse as exc:
            raise _malformed(_what(exc), status, body, url) from None
    return result


# --------------------------------------------------------------------------- subscriptions


def _subscription(obj: object, where: str) -> WebhookSubscription:
    if not isinstance(obj, dict):
        raise _malformed(f"{where} is not an object")
    events = obj.get("events")
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise _malformed(f"{where}.events is not a list of event names")
    return WebhookSubscription(
        id=_id(obj.get("id"), f"{where}.id"),
        url=_opt_str(obj.get("url"), f"{where}.url") or "",
        events=tuple(events),
        status=_opt_str(obj.get("status"), f"{where}.status") or "ACTIVE",
    )


def parse_subscription(
    status: int, headers: Headers, body: bytes, url: str = ""
) -> WebhookSubscription:
    """Subscribe response (§3.2): ``{success: true, webhook: {id, url, events[], status}}``.

    Raises the ``error_for_response`` exception for a non-2xx status and
    ``MalformedResponse`` for any other body.
    """
    _check_status(status, headers, body, url, (200, 201))
    data = _json(status, body, url)
    if not isinstance(data, dict) or "webhook" not in data:
        raise _malformed("expected an object with a 'webhook' member", status, body, url)
    try:
        return _subscription(data["webhook"], "webhook")
    except MalformedResponse as exc:
        raise _malformed(_what(exc), status, body, url) from None


def parse_subscriptions(
    status: int, headers: Headers, body: bytes, url: str = ""
) -> list[WebhookSubscription]:
    """List response (§3.3): ``{success, webhooks: [...]}``.

    Raises the ``error_for_response`` exception for a non-200 status and
    ``MalformedResponse`` for any other body.
    """
    _check_status(status, headers, body, url, (200,))
    data = _json(status, body, url)
    hooks = data.get("webhooks") if isinstance(data, dict) else None
    if not isinstance(hooks, list):
        raise _malformed("expected an object with a 'webhooks' array", status, body, url)
    try:
        return [_subscription(h, f"webhooks[{i}]") for i, h in enumerate(hooks)]
    except MalformedResponse as exc:
        raise _malformed(_what(exc), status, body, url) from None


def check_webhook_deleted(status: int, headers: Headers, body: bytes, url: str = "") -> bool:
    """Unsubscribe response (§3.4): True when the webhook is gone.

    200/204 mean deleted; 400/404 with ``Webhook not found`` mean it was already gone (§8
    row 19). Raises the ``error_for_response`` exception for anything else.
    """
    if status in (200, 202, 204):
        return True
    if status in (400, 404) and "not found" in error_message(body).lower():
        return True
    raise error_for_response(status, headers, body, url)


# --------------------------------------------------------------------------- webhooks


def sign(secret: str | bytes, body: bytes) -> str:
    """The signature header value for ``body``: ``sha256=<hex HMAC-SHA256>`` (§8 row 13)."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | bytes, body: bytes, header_value: str | None) -> bool:
    """True when ``header_value`` is the HMAC-SHA256 of the raw ``body`` (constant-time compare)."""
    if not header_value:
        return False
    scheme, _, digest = header_value.strip().partition("=")
    if scheme.lower() != "sha256" or not digest:
        return False
    expected = sign(secret, body).partition("=")[2]
    return hmac.compare_digest(expected.encode(), digest.strip().lower().encode("ascii", "replace"))


#: ``action`` → event (§4.3); ``delete_entry``/``update_entry`` are extensions (§8 rows 7-8).
_ACTIONS = {
    "start_timer": EventKind.TIMER_STARTED,
    "stop_timer": EventKind.TIMER_STOPPED,
    "manual_entry": EventKind.MANUAL_TIME_ADDED,
    "update_entry": EventKind.TIME_ENTRY_UPDATED,
    "delete_entry": EventKind.TIME_ENTRY_DELETED,
}
_ENTRY_KINDS = frozenset(
    {
        EventKind.TIMER_STARTED,
        EventKind.TIMER_STOPPED,
        EventKind.MANUAL_TIME_ADDED,
        EventKind.TIME_ENTRY_UPDATED,
    }
)
_PROJECT_FIELDS = ("isPrivate", "defaultBillable", "defaultBillableRate", "estimatedBudget")
_TASK_FIELDS = ("teamMembers", "priority", "dueDate")


def _kind_from_shape(obj: dict[str, Any]) -> EventKind:
    """Tell the ``action``-less events apart by their documented fields (§4.3)."""
    if "startTime" in obj or "start_time" in obj:
        return EventKind.TIME_ENTRY_UPDATED  # a full entry naming no action
    if "project" in obj and any(f in obj for f in _TASK_FIELDS):
        return EventKind.TASK_CREATED
    if any(f in obj for f in _PROJECT_FIELDS):
        return EventKind.PROJECT_CREATED
    if "name" in obj and "workspace" in obj:
        return EventKind.CLIENT_CREATED
    raise InvalidWebhook("webhook payload matches no known event", status=400)


def _event_kind(headers: Headers, obj: dict[str, Any]) -> EventKind:
    named = header(headers, EVENT_HEADER)
    if named:
        try:
            return EventKind(named.strip().upper())
        except ValueError:
            raise InvalidWebhook(f"unknown webhook event {named!r}", status=400) from None
    action = obj.get("action")
    if action is not None:
        if action not in _ACTIONS:
            raise InvalidWebhook(f"unknown webhook action {action!r}", status=400)
        return _ACTIONS[action]
    return _kind_from_shape(obj)


def parse_webhook_event(headers: Headers, body: bytes) -> WebhookEvent:
    """Parse one delivery (§4.2, §4.3): a bare JSON object, optionally with extension headers.

    The kind comes from ``X-Timetracker-Event`` when present, else from ``action``, else from
    the shape. ``dedupe_key`` = kind + object id + updatedAt, so repeated deliveries collapse.
    Raises ``InvalidWebhook(status=400)`` for bad JSON or a payload of the wrong shape.
    """
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidWebhook("webhook body is not JSON", status=400) from None
    if not isinstance(obj, dict):
        raise InvalidWebhook("webhook body is not a JSON object", status=400)
    kind = _event_kind(headers, obj)
    try:
        return _event(kind, obj, header(headers, DELIVERY_HEADER))
    except MalformedResponse as exc:
        raise InvalidWebhook(f"{kind} payload: {_what(exc)}", status=400) from None


def _event(kind: EventKind, obj: dict[str, Any], delivery_id: str | None) -> WebhookEvent:
    object_id = _id(obj.get("id"), "id")
    entry = parse_time_entry(obj) if kind in _ENTRY_KINDS else None
    if entry is not None:
        workspace_id: str | None = entry.workspace_id
        updated_at = entry.updated_at
    else:
        ws = _flat_or_nested(obj, "workspace", "workspace")
        workspace_id = ws.id if ws else None
        updated_at = _opt_timestamp(_pick(obj, "updatedAt", "updated_at"), "updatedAt")
    if kind is EventKind.TIME_ENTRY_DELETED and workspace_id is None:
        raise _malformed("workspace is missing")
    return WebhookEvent(
        kind=kind,
        object_id=object_id,
        workspace_id=workspace_id,
        updated_at=updated_at,
        dedupe_key=f"{kind}:{object_id}:{updated_at or ''}",
        entry=entry,
        payload=obj,
        delivery_id=delivery_id,
    )
