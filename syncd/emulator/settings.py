"""Every option of the emulator, and the injectable clock."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

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
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}")
        if not self.api_keys:
            raise ValueError("at least one API key is needed")

    def make_clock(self) -> Clock:
        return self.clock if self.clock is not None else Clock(self.now)

    def has(self, extension: str) -> bool:
        return extension in self.extensions
