"""Every option of the emulator, and the injectable clock."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields, replace

#: Extension switches (all off by default; none of them exists in the documented service).
EXTENSIONS = frozenset(
    {
        "updated-events",  # TIME_ENTRY_UPDATED webhook event
        "deleted-events",  # TIME_ENTRY_DELETED webhook event
        "v1-resources",  # Clockify-style /v1 resource lists
        "updated-since",  # ?updated_since= on /v1/workspaces/{id}/time-entries
        "total-count",  # X-Total-Count header on /v1 lists
    }
)


class Clock:
    """Wall clock of the emulated service.

    It starts at ``start`` (epoch seconds; the real time when omitted), ticks with the
    monotonic clock unless ``frozen``, and can be moved forward with :meth:`advance`.
    """

    def __init__(self, start: float | None = None, *, frozen: bool = False) -> None:
        self._base = time.time() if start is None else float(start)
        self._mono0 = time.monotonic()
        self._frozen = frozen
        self._offset = 0.0

    def now(self) -> float:
        """Current emulated time in epoch seconds."""
        t = self._base + self._offset
        if not self._frozen:
            t += time.monotonic() - self._mono0
        return t

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def advance(self, seconds: float) -> None:
        """Move the clock forward (never backwards)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += seconds


@dataclass(frozen=True)
class EmulatorSettings:
    """All options; ``syncd emulator`` flags map one to one onto these fields."""

    host: str = "127.0.0.1"
    port: int = 8765
    seed: int = 42
    workspaces: int = 3
    entries: int = 5000
    days: int = 365
    api_keys: tuple[str, ...] = ("demo-key",)
    now: float | None = None  # epoch seconds the clock starts at (None: real time)
    clock: Clock | None = None  # overrides ``now`` when given
    # rate limits (per API key, shared by /v1 and /api)
    rate_limit: bool = True
    rate_per_second: int = 10
    rate_per_minute: int = 100
    rate_per_day: int = 10_000
    rate_scope: str = "key"  # or "key-and-workspace" (§7: the docs say both)
    # webhooks
    allow_http_webhooks: bool = False
    webhook_retry_delays: tuple[float, ...] = (1.0, 5.0, 25.0)
    webhook_timeout: float = 10.0
    webhook_scope: str = "all-workspaces"  # or "default-workspace"
    extensions: frozenset[str] = field(default_factory=frozenset)
    # switches for the documented contradictions (first value = default)
    webhook_id_format: str = "wh"  # "wh" | "uuid"
    delete_unknown_webhook: str = "400"  # "400" | "404" | "200"
    delete_webhook_success: str = "success"  # "success" | "webhook-id" | "204"
    tag_create_path: str = "triggers"  # "triggers" | "actions" | "both"
    billable_required: bool = True
    team_member_required: bool = False
    date_filter_field: str = "date"  # "date" | "created_at"
    lenient_auth: bool = False
    # switches for readings the docs leave open (§7, §8; first value = default)
    date_bounds: str = "inclusive"  # "inclusive" | "exclusive" (date_after/date_before)
    find_cap: int = 0  # time-entry find answers hold at most N entries (0: no cap)
    find_timeout_above: int = 0  # a find matching more than N entries gets 504 (0: never)
    find_timeout_delay: float = 0.2  # seconds the 504 takes to come
    webhook_headers: str = "full"  # "full" | "none" (no X-Timetracker-* headers, no signature)
    webhook_content_type: str = "application/json"

    def __post_init__(self) -> None:
        unknown = set(self.extensions) - EXTENSIONS
        if unknown:
            raise ValueError(f"unknown extensions: {', '.join(sorted(unknown))}")
        choices = {
            "webhook_id_format": ("wh", "uuid"),
            "delete_unknown_webhook": ("400", "404", "200"),
            "delete_webhook_success": ("success", "webhook-id", "204"),
            "tag_create_path": ("triggers", "actions", "both"),
            "date_filter_field": ("date", "created_at"),
            "webhook_scope": ("all-workspaces", "default-workspace"),
            "date_bounds": ("inclusive", "exclusive"),
            "webhook_headers": ("full", "none"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}")
        for name in ("find_cap", "find_timeout_above"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer (0 = off)")
        delay = self.find_timeout_delay
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
            raise ValueError("find_timeout_delay must be a non-negative number of seconds")
        if not is_header_value(self.webhook_content_type):
            raise ValueError(
                "webhook_content_type must be a non-empty header value (printable ASCII, "
                "e.g. application/json)"
            )
        if not self.api_keys:
            raise ValueError("at least one API key is needed")

    def make_clock(self) -> Clock:
        return self.clock if self.clock is not None else Clock(self.now)

    def has(self, extension: str) -> bool:
        return extension in self.extensions

    def public(self) -> dict:
        """Every setting as JSON values (the clock left out)."""
        out = {}
        for f in fields(self):
            if f.name == "clock":
                continue
            value = getattr(self, f.name)
            if isinstance(value, frozenset):
                value = sorted(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


def is_header_value(value: object) -> bool:
    """True for a string usable as an HTTP header value (no control characters)."""
    return isinstance(value, str) and value.strip() != "" and all(" " <= ch <= "~" for ch in value)


#: Settings a running emulator can change (``PATCH /__emulator/settings``), by kind of value.
#: The others shape the seeded data, the routes, the rate limiter or the webhook session,
#: and are fixed at start.
RUNTIME_SETTINGS: dict[str, str] = {
    "date_filter_field": "text",
    "date_bounds": "text",
    "find_cap": "count",
    "find_timeout_above": "count",
    "find_timeout_delay": "seconds",
    "webhook_headers": "text",
    "webhook_content_type": "text",
    "webhook_scope": "text",
    "webhook_id_format": "text",
    "webhook_retry_delays": "delays",
    "delete_unknown_webhook": "text",
    "delete_webhook_success": "text",
    "billable_required": "flag",
    "team_member_required": "flag",
    "lenient_auth": "flag",
    "allow_http_webhooks": "flag",
}


def runtime_changes(settings: EmulatorSettings, body: dict) -> EmulatorSettings:
    """``settings`` with the changes in ``body`` (names as fields or as flags, e.g.
    ``find_cap`` or ``find-cap``) applied.

    Raises ValueError naming the first setting that is unknown, fixed at start, or given a
    value of the wrong kind.
    """
    changes: dict = {}
    known = {f.name for f in fields(settings)} - {"clock"}
    for raw_name, value in body.items():
        name = str(raw_name).replace("-", "_")
        kind = RUNTIME_SETTINGS.get(name)
        if kind is None:
            if name in known:
                raise ValueError(f"{name} is fixed at start; restart the emulator to change it")
            raise ValueError(f"unknown setting: {raw_name}")
        changes[name] = _coerce(name, kind, value)
    return replace(settings, **changes)


def _coerce(name: str, kind: str, value: object) -> object:
    if kind == "flag":
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        return value
    if kind == "count":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer (0 = off)")
        return value
    if kind == "seconds":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{name} must be a non-negative number of seconds")
        return float(value)
    if kind == "delays":
        if not isinstance(value, list) or not all(
            not isinstance(v, bool) and isinstance(v, (int, float)) and v >= 0 for v in value
        ):
            raise ValueError(f"{name} must be a list of non-negative numbers of seconds")
        return tuple(float(v) for v in value)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value
