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
from typing import Any, NoReturn
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
    ENTRY_EVENTS,
    EntryList,
    EventKind,
    RateLimitInfo,
    Ref,
    Rejection,
    TimeEntry,
    WebhookEvent,
    WebhookSubscription,
    Workspace,
    format_timestamp,
)

#: The core API's base URL (§2), the default of ``[api] url``.
DEFAULT_API_URL = "https://api.timetracker.in/v1"
#: The host of the Zapier integration API (§2), the default of ``[api] app_url``.
DEFAULT_APP_URL = "https://app.timetracker.in"
#: Zapier integration API prefix, below ``app_url`` (§2, §3).
ZAPIER_PREFIX = "/api/integrations/zapier"
#: Webhook signature header (emulator choice, §8 row 13), when a secret is configured.
SIGNATURE_HEADER = "X-Timetracker-Signature"
#: Optional event-name header on deliveries (extension, §8 row 14).
EVENT_HEADER = "X-Timetracker-Event"
#: Optional delivery id header on deliveries (extension, §8 row 14).
DELIVERY_HEADER = "X-Timetracker-Delivery"
#: The largest webhook delivery body accepted by default (``[webhooks] max_body_bytes``):
#: documented payloads (§4.3) are a few KiB.
MAX_DELIVERY_BYTES = 64 * 1024
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
_SHOW = 80  # characters of an offending value shown in a message


def _show(value: object) -> str:
    """``repr`` of an offending value, cut short (a reason never carries a huge value)."""
    text = repr(value)
    return text if len(text) <= _SHOW else text[: _SHOW - 3] + "..."


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
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return format_timestamp(dt)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 moved to UTC
        raise _malformed(f"{name} is not an ISO 8601 string: {_show(value)}") from None


def _opt_timestamp(value: object, name: str) -> str | None:
    return None if value is None else normalize_timestamp(value, name)


def normalize_date(value: object, name: str = "date") -> str:
    """``YYYY-MM-DD`` or an ISO datetime (§5.1: ``date`` is a full datetime) → the calendar
    day it was sent with, ``YYYY-MM-DD``: ``2026-11-20T00:00:00.000+05:30`` is 2026-11-20 (its
    UTC day would be the 19th). A naive datetime's day is its own.

    Raises ``MalformedResponse`` naming ``name``.
    """
    if isinstance(value, str) and len(value.strip()) == 10:
        try:
            return date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            raise _malformed(f"{name} is not a date: {_show(value)}") from None
    if not isinstance(value, str) or not value.strip():
        raise _malformed(f"{name} is not an ISO 8601 string: {_show(value)}")
    s = value.strip()
    if s[-1] in "zZ":
        s = s[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(s).date().isoformat()
    except ValueError:
        raise _malformed(f"{name} is not an ISO 8601 string: {_show(value)}") from None


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


def compact_json(obj: object) -> str:
    """The compact JSON text stored as ``raw`` (key order kept, unicode unescaped); an
    integer beyond 64 bits is written as sent."""
    try:
        return orjson.dumps(obj).decode()
    except TypeError:  # orjson.JSONEncodeError: an integer orjson cannot hold
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------- time entries

#: Years a date or timestamp of an entry may have; the upstream produces no others.
MIN_YEAR, MAX_YEAR = 1970, 2100
#: The longest duration an entry can have: the span of those years, in seconds.
MAX_DURATION_SECONDS = (date(MAX_YEAR + 1, 1, 1) - date(MIN_YEAR, 1, 1)).days * 86_400
#: Longest id (entry, workspace, member, project, client, task, tag) kept, in characters.
MAX_ID_CHARS = 255
#: Longest name, email or colour kept, in characters.
MAX_NAME_CHARS = 1_000
#: Longest description kept, in characters.
MAX_DESCRIPTION_CHARS = 65_535
#: How much of a quarantined entry's JSON is kept with its rejection, in bytes.
REJECTED_RAW_BYTES = 4_096

#: Webhook ``action`` values that mark a manual entry vs a timer (§4.3).
_MANUAL_ACTIONS = {"manual_entry": True, "start_timer": False, "stop_timer": False}
#: Keys of the nested (webhook, fallback) shape; an object with none of them is flat.
_NESTED_KEYS = frozenset({"workspace", "teamMember", "project", "client", "task"})
_is_canonical_timestamp = _CANONICAL_TIMESTAMP.fullmatch
#: A canonical timestamp within ``MIN_YEAR..MAX_YEAR`` (the common case, checked in one call).
_YEARS = r"(?:19[7-9]\d|20\d\d|2100)-"  # MIN_YEAR..MAX_YEAR, then the dash
_usable_stamp = re.compile(_YEARS + r"\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z").fullmatch
_usable_year = re.compile(_YEARS).match


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


class _Unusable(Exception):
    """The entry has no usable id, date or workspace: it is not stored."""


class _Problems:
    """What was wrong with an entry. Strict parsing raises ``MalformedResponse`` at the first
    problem; lenient parsing clears the field (``clear``) or gives the entry up (``drop``,
    which raises ``_Unusable``). ``found`` stays None until a problem is found, so a clean
    entry allocates nothing here (one instance serves a whole answer)."""

    __slots__ = ("found", "strict")

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.found: list[str] | None = None

    def clear(self, what: str) -> None:
        if self.strict:
            raise _malformed(what)
        if self.found is None:
            self.found = [what]
        else:
            self.found.append(what)

    def drop(self, what: str) -> NoReturn:
        self.clear(what)
        raise _Unusable


def _e_id(value: object, name: str, p: _Problems) -> str | None:
    """An id (§5.1: an opaque string; integers are taken as text), None when absent or
    empty; a bad or over-long one is cleared."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        p.clear(f"{name} is missing or not an id: {_show(value)}")
        return None
    if len(value) > MAX_ID_CHARS:
        p.clear(f"{name} is longer than {MAX_ID_CHARS} characters ({len(value):,})")
        return None
    return value


def _e_text(value: object, name: str, p: _Problems, limit: int = MAX_NAME_CHARS) -> str | None:
    """Text (numbers are taken as text), None when absent; a bad or over-long one is cleared."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        p.clear(f"{name} is not a string: {_show(value)}")
        return None
    if len(value) > limit:
        p.clear(f"{name} is longer than {limit:,} characters ({len(value):,})")
        return None
    return value


def _e_bool(value: object, name: str, p: _Problems, default: bool) -> bool:
    """A boolean (§3.7: sometimes sent as "true"/"false"); absent or null gives ``default``,
    and so does a bad one (cleared)."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    p.clear(f"{name} is not a boolean: {_show(value)}")
    return default


def _e_seconds(value: object, name: str, p: _Problems) -> int | None:
    """Whole seconds in ``0..MAX_DURATION_SECONDS``, None when absent (a running timer);
    anything else is cleared."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        p.clear(f"{name} is not a number of seconds: {_show(value)}")
        return None
    seconds = round(value)
    if not 0 <= seconds <= MAX_DURATION_SECONDS:
        p.clear(f"{name} is out of range (0 to {MAX_DURATION_SECONDS:,} seconds): {_show(value)}")
        return None
    return seconds


def _in_years(text: str) -> bool:
    """Whether a normalised date or timestamp lies in ``MIN_YEAR..MAX_YEAR``."""
    return _usable_year(text) is not None


def _e_stamp(value: object, name: str, p: _Problems) -> str | None:
    """A timestamp normalised to UTC (``normalize_timestamp``) within ``MIN_YEAR..MAX_YEAR``,
    None when absent; anything else is cleared."""
    if value is None:
        return None
    if value.__class__ is str and _is_canonical_timestamp(value):  # type: ignore[arg-type]
        stamp: str = value  # type: ignore[assignment]
    else:
        try:
            stamp = normalize_timestamp(value, name)
        except MalformedResponse as exc:
            p.clear(_what(exc))
            return None
    if not _in_years(stamp):
        p.clear(f"{name} is outside the years {MIN_YEAR}-{MAX_YEAR}: {_show(value)}")
        return None
    return stamp


def _e_day(value: object, p: _Problems) -> str:
    """The calendar day of ``date`` as sent (``normalize_date``) within the allowed years;
    an entry without one is given up."""
    if value.__class__ is str and _is_canonical_timestamp(value):  # type: ignore[arg-type]
        day: str = value[:10]  # type: ignore[index]
    else:
        try:
            day = normalize_date(value)
        except MalformedResponse as exc:
            p.drop(_what(exc))
    if not _in_years(day):
        p.drop(f"date is outside the years {MIN_YEAR}-{MAX_YEAR}: {_show(value)}")
    return day


def _e_ref(
    obj: Mapping[str, Any], nested: str, prefix: str, p: _Problems
) -> tuple[str | None, str | None]:
    """``(id, name)`` of a reference: ``{nested: {id, name}}`` (§4.3) or, when that is absent
    or has no id, the flat pair (``_e_flat_ref``). A bad id clears the reference, a bad name
    only the name."""
    inner = obj.get(nested)
    if inner is not None:
        if inner.__class__ is not dict:
            p.clear(f"{nested} is not an object: {_show(inner)}")
        elif inner.get("id") is not None:
            rid = _e_id(inner["id"], f"{nested}.id", p)
            if rid is None:
                return None, None
            return rid, _e_text(inner.get("name"), f"{nested}.name", p)
    return _e_flat_ref(obj, f"{prefix}_id", f"{prefix}_name", p)


def _e_flat_ref(
    obj: Mapping[str, Any], id_key: str, name_key: str, p: _Problems
) -> tuple[str | None, str | None]:
    """``(id, name)`` of a flat reference (§5.2), ``(None, None)`` when it has no id."""
    rid = obj.get(id_key)
    if rid is None or rid == "":
        return None, None
    if rid.__class__ is not str or len(rid) > MAX_ID_CHARS:
        rid = _e_id(rid, id_key, p)
        if rid is None:
            return None, None
    name = obj.get(name_key)
    if name is not None and (name.__class__ is not str or len(name) > MAX_NAME_CHARS):
        name = _e_text(name, name_key, p)
    return rid, name


def _e_tags(value: object, p: _Problems) -> tuple[Ref, ...]:
    """``[{id, name, color}]``; a tag without a usable id is left out, a bad name or colour
    cleared, and a value that is not a list clears the tags."""
    if value is None or value == []:
        return ()
    if value.__class__ is not list:
        p.clear(f"tags is not a list: {_show(value)}")
        return ()
    tags = []
    for i, item in enumerate(value):  # type: ignore[arg-type]
        if item.__class__ is dict:
            tid, name, color = item.get("id"), item.get("name"), item.get("color")
            if (
                tid.__class__ is str
                and 0 < len(tid) <= MAX_ID_CHARS
                and (name is None or (name.__class__ is str and len(name) <= MAX_NAME_CHARS))
                and (color is None or (color.__class__ is str and len(color) <= MAX_NAME_CHARS))
            ):
                tags.append(Ref(tid, name, color))
                continue
            if tid is None or tid == "":
                p.clear(f"tags[{i}] has no id")
                continue
            tid = _e_id(tid, f"tags[{i}].id", p)
            if tid is not None:
                name = _e_text(name, f"tags[{i}].name", p)
                tags.append(Ref(tid, name, _e_text(color, f"tags[{i}].color", p)))
        else:
            p.clear(f"tags[{i}] is not an object: {_show(item)}")
    return tuple(tags)


def _entry(obj: dict[str, Any], entry_id: str, workspace_id: str | None, p: _Problems) -> TimeEntry:
    """The one time-entry parser, for every shape: flat snake_case (find, create, §5.2) and
    nested camelCase (webhook, fallback, §4.3) differ only in where a reference sits
    (``_e_ref``) and in the casing of a few keys (the snake_case one is read first).

    A field that is absent or null takes its documented meaning (§5.2, §8 rows 9-10): no
    reference, no start or end, a running timer's duration, ``billable`` true, an empty
    description, ``date`` from the start's UTC day. Common values are checked inline; the
    ``_e_*`` helpers handle the rest and report problems to ``p``.
    """
    get = obj.get
    nested = not _NESTED_KEYS.isdisjoint(obj)
    if nested:
        ws_id, ws_name = _e_ref(obj, "workspace", "workspace", p)
        member_id, member_name = _e_ref(obj, "teamMember", "team_member", p)
        project_id, project_name = _e_ref(obj, "project", "project", p)
        client_id, client_name = _e_ref(obj, "client", "client", p)
        task_id, task_name = _e_ref(obj, "task", "task", p)
        member = get("teamMember")
        email = get("team_member_email") or (
            member.get("email") if member.__class__ is dict else None
        )
    else:  # flat: no nested object to look into
        ws_id, ws_name = _e_flat_ref(obj, "workspace_id", "workspace_name", p)
        member_id, member_name = _e_flat_ref(obj, "team_member_id", "team_member_name", p)
        project_id, project_name = _e_flat_ref(obj, "project_id", "project_name", p)
        client_id, client_name = _e_flat_ref(obj, "client_id", "client_name", p)
        task_id, task_name = _e_flat_ref(obj, "task_id", "task_name", p)
        email = get("team_member_email") or None
    if ws_id is None:
        ws_id = _e_id(get("workspaceId") or workspace_id, "workspace_id", p)
        if ws_id is None:
            p.drop("workspace_id is missing or not an id")
    if email is not None and (email.__class__ is not str or len(email) > MAX_NAME_CHARS):
        email = _e_text(email, "team_member_email", p)

    start = get("start_time")
    if start is None:
        start = get("startTime")
    if start is not None and (start.__class__ is not str or not _usable_stamp(start)):
        start = _e_stamp(start, "start_time", p)
    raw_date = get("date")
    if raw_date is None:
        if start is None:
            p.drop("date is missing (and there is no start_time)")
        day = start[:10]  # §8 row 10: date defaults to start_time's UTC day
    elif raw_date.__class__ is str and _usable_stamp(raw_date):
        day = raw_date[:10]
    else:
        day = _e_day(raw_date, p)
    manual = get("manually_entered")
    if manual is None:
        manual = get("manuallyEntered")
        if manual is None:
            action = get("action")
            manual = _MANUAL_ACTIONS.get(action) if action.__class__ is str else None
    if manual.__class__ is not bool:
        manual = _e_bool(manual, "manually_entered", p, False)
    end = get("end_time")
    if end is None:
        end = get("endTime")
    if end is not None and (end.__class__ is not str or not _usable_stamp(end)):
        end = _e_stamp(end, "end_time", p)
        if end is None and start is not None and not manual:
            p.clear("start_time cleared too: without its end the entry would read as running")
            start = None
    duration = get("duration")
    if duration.__class__ is not int or not 0 <= duration <= MAX_DURATION_SECONDS:
        duration = _e_seconds(duration, "duration", p)
    description = get("description")
    if description.__class__ is not str or len(description) > MAX_DESCRIPTION_CHARS:
        description = _e_text(description, "description", p, MAX_DESCRIPTION_CHARS) or ""
    billable = get("billable")
    if billable.__class__ is not bool:
        billable = _e_bool(billable, "billable", p, True)  # §3.6 (guide): default true
    created = get("created_at")
    if created is None:
        created = get("createdAt")
    if created is not None and (created.__class__ is not str or not _usable_stamp(created)):
        created = _e_stamp(created, "created_at", p)
    updated = get("updated_at")
    if updated is None:
        updated = get("updatedAt")
    if updated is not None and (updated.__class__ is not str or not _usable_stamp(updated)):
        updated = _e_stamp(updated, "updated_at", p)
    tags = get("tags")
    tags = () if tags is None else _e_tags(tags, p)
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


def _entry_id(obj: object, p: _Problems) -> str:
    """The id of an entry object; the entry is given up without one."""
    if obj.__class__ is not dict:
        p.drop(f"time entry is not an object: {_show(obj)}")
    rid = obj.get("id")  # type: ignore[attr-defined]
    if rid.__class__ is str and 0 < len(rid) <= MAX_ID_CHARS:
        return rid
    if rid is None or rid == "" or isinstance(rid, bool):
        p.drop(f"id is missing or not an id: {_show(rid)}")
    usable = _e_id(rid, "id", p)
    if usable is None:
        raise _Unusable
    return usable


def parse_time_entry(obj: object, *, workspace_id: str | None = None) -> TimeEntry:
    """Normalise one time entry of any upstream shape into a ``TimeEntry``, strictly.

    Shapes: find (flat snake_case, ``createdAt``/``updatedAt``, §3.7), create (flat,
    ``created_at``/``updated_at``, §3.6/§5.2), webhook/fallback (nested camelCase, §4.3;
    ``endTime``/``duration`` absent while the timer runs). ``workspace_id`` is used when the
    object names none. Raises ``MalformedResponse`` naming the first offending field, for
    any value ``check_time_entry`` would quarantine.
    """
    p = _Problems(strict=True)
    entry_id = _entry_id(obj, p)
    try:
        return _entry(obj, entry_id, workspace_id, p)  # type: ignore[arg-type]
    except MalformedResponse as exc:
        raise _malformed(f"time entry {entry_id}: {_what(exc)}") from None


def check_time_entry(
    obj: object, *, workspace_id: str | None = None
) -> tuple[TimeEntry | None, Rejection | None]:
    """Normalise one time entry like ``parse_time_entry``, quarantining instead of raising.

    Returns ``(entry, None)`` for a clean entry; ``(entry, rejection)`` when fields had to be
    cleared (over-long text, a duration out of range, a timestamp outside ``MIN_YEAR`` to
    ``MAX_YEAR``, a value of the wrong type); ``(None, rejection)`` when the entry has no
    usable id, date or workspace and cannot be stored at all. Never raises.
    """
    p = _Problems(strict=False)
    entry = _lenient(obj, workspace_id, p)
    return entry, None if p.found is None else _rejection(obj, entry, workspace_id, p.found)


def _lenient(obj: object, workspace_id: str | None, p: _Problems) -> TimeEntry | None:
    """The entry with bad fields cleared, None when it is unusable; problems go to ``p``."""
    try:
        return _entry(obj, _entry_id(obj, p), workspace_id, p)  # type: ignore[arg-type]
    except _Unusable:
        return None


def _rejection(
    obj: object, entry: TimeEntry | None, workspace_id: str | None, found: list[str]
) -> Rejection:
    raw = compact_json(obj)
    data = raw.encode()
    if entry is None:
        entry_id = _lenient_id(obj)
        day = _day_of(obj)
    else:
        entry_id, day, workspace_id = entry.id, entry.date, entry.workspace_id
    return Rejection(
        entry_id=entry_id,
        workspace_id=workspace_id,
        reason="; ".join(found),
        raw=data[:REJECTED_RAW_BYTES].decode("utf-8", errors="ignore"),
        raw_bytes=len(data),
        stored=entry is not None,
        date=day,
    )


def _lenient_id(obj: object) -> str | None:
    try:
        return _entry_id(obj, _Problems(strict=False))
    except _Unusable:
        return None


def _day_of(obj: object) -> str | None:
    """The usable day of an entry given up for another reason (its id, say), else None."""
    if obj.__class__ is not dict:
        return None
    p = _Problems(strict=False)
    try:
        value = obj.get("date")  # type: ignore[attr-defined]
        return None if value is None else _e_day(value, p)
    except _Unusable:
        return None


def _what(exc: MalformedResponse) -> str:
    return str(exc).removeprefix("unexpected response: ")


def _entries_json(status: int, body: bytes, url: str) -> Any:
    """``_json``, but a body orjson refuses only for a number it cannot hold (beyond a double,
    ``NaN``) is read again with the standard library, keeping such numbers as their text (a
    huge integer stays an integer), so the entry holding one is quarantined, not the answer.
    """
    try:
        return orjson.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        first = exc
    try:
        return json.loads(body, parse_float=_finite_or_text, parse_constant=str)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _malformed(f"body is not JSON ({first})", status, body, url) from None


def _finite_or_text(text: str) -> float | str:
    value = float(text)
    return value if math.isfinite(value) else text


def parse_time_entries(
    status: int, headers: Headers, body: bytes, url: str = "", *, workspace_id: str | None = None
) -> EntryList:
    """The find-time-entries response (§3.7): a bare JSON array of flat entries, ``[]`` if none.

    Entries syncd cannot store as given are quarantined (``check_time_entry``): the list
    holds the usable ones, ``rejected`` the quarantined ones. ``workspace_id`` is used for
    entries that name none. Raises the ``error_for_response`` exception for a non-200 status
    and ``MalformedResponse`` when the body is not a JSON array.
    """
    _check_status(status, headers, body, url, (200,))
    data = _entries_json(status, body, url)
    if not isinstance(data, list):
        raise _malformed(
            f"expected a JSON array of time entries, got {type(data).__name__}", status, body, url
        )
    entries = EntryList()
    rejected = []
    append = entries.append
    p = _Problems(strict=False)
    for obj in data:
        entry = _lenient(obj, workspace_id, p)
        if entry is not None:
            append(entry)
        if p.found is not None:
            rejected.append(_rejection(obj, entry, workspace_id, p.found))
            p.found = None
    entries.rejected = tuple(rejected)
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
    entry = parse_time_entry(obj) if kind in ENTRY_EVENTS else None
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
