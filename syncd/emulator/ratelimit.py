"""Rate limits (1 s, rolling 60 s, UTC day) per key, or per key and workspace, and the
per-key request statistics."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from .settings import Clock


@dataclass
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # epoch seconds
    retry_after: int = 0  # whole seconds, on refusals


class KeyState:
    __slots__ = (
        "bytes_sent",
        "day",
        "day_count",
        "max_minute",
        "max_second",
        "minute",
        "rate_limited",
        "requests",
        "second",
    )

    def __init__(self) -> None:
        self.second: deque[float] = deque()  # accepted request times within the last 1 s
        self.minute: deque[float] = deque()  # ... within the last 60 s
        self.day = -1
        self.day_count = 0
        self.requests = 0
        self.rate_limited = 0
        self.max_second = 0
        self.max_minute = 0
        self.bytes_sent = 0  # response bodies sent to the key


#: Scopes of the limits: one budget per key (the intro's reading of the docs), or one per
#: key and workspace (the create pages'); requests naming no workspace share one more.
SCOPES = ("key", "key-and-workspace")


class RateLimiter:
    """Sliding-window limits: at most ``per_second`` in any 1 s, ``per_minute`` in any
    60 s and ``per_day`` per UTC day, per key or (``scope="key-and-workspace"``) per key
    and workspace. Refused requests consume nothing. The statistics are per key in both
    scopes (all the key's requests together)."""

    def __init__(
        self,
        clock: Clock,
        *,
        enabled: bool,
        per_second: int,
        per_minute: int,
        per_day: int,
        scope: str = "key",
    ) -> None:
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
        self.clock = clock
        self.enabled = enabled
        self.per_second = per_second
        self.per_minute = per_minute
        self.per_day = per_day
        self.scope = scope
        self.keys: dict[str, KeyState] = {}
        self.buckets: dict[tuple[str, str], KeyState] = {}  # the per-workspace scope's

    def bucket(self, key: str, workspace: str | None) -> KeyState:
        """The state whose windows limit a request of ``key`` naming ``workspace``."""
        if self.scope == "key":
            return self.state(key)
        name = (key, workspace or "")
        st = self.buckets.get(name)
        if st is None:
            st = self.buckets[name] = KeyState()
        return st

    def state(self, key: str) -> KeyState:
        st = self.keys.get(key)
        if st is None:
            st = self.keys[key] = KeyState()
        return st

    def _prune(self, st: KeyState, now: float) -> None:
        sec, minute = st.second, st.minute
        while sec and sec[0] <= now - 1.0:
            sec.popleft()
        while minute and minute[0] <= now - 60.0:
            minute.popleft()
        day = int(now // 86400)
        if day != st.day:
            st.day = day
            st.day_count = 0

    def _windows(self, st: KeyState, now: float) -> list[tuple[int, float]]:
        """(remaining, epoch second when that window next frees a slot) per window."""
        out = []
        if self.per_second:
            oldest = st.second[0] if st.second else now
            out.append((self.per_second - len(st.second), oldest + 1.0))
        if self.per_minute:
            oldest = st.minute[0] if st.minute else now
            out.append((self.per_minute - len(st.minute), oldest + 60.0))
        if self.per_day:
            out.append((self.per_day - st.day_count, (st.day + 1) * 86400.0))
        return out

    def peek(self, key: str, workspace: str | None = None) -> Decision:
        """Header values without consuming anything."""
        now = self.clock.now()
        st = self.bucket(key, workspace)
        self._prune(st, now)
        return self._decide(st, now, allowed=True)

    def _decide(self, st: KeyState, now: float, *, allowed: bool) -> Decision:
        limit = self.per_minute or self.per_second or self.per_day
        if not self.enabled:
            return Decision(True, limit, limit, math.ceil(now + 60))
        windows = self._windows(st, now)
        if not windows:
            return Decision(True, 0, 0, math.ceil(now))
        remaining, frees = min(windows, key=lambda w: (w[0], -w[1]))
        remaining = max(0, remaining)
        decision = Decision(allowed, limit, remaining, math.ceil(frees))
        if not allowed:
            blocked = [f for r, f in windows if r <= 0]
            wait = max(blocked) - now
            decision.retry_after = max(1, math.ceil(wait - 1e-9))
            decision.reset = math.ceil(max(blocked))
        return decision

    def hit(self, key: str, workspace: str | None = None) -> Decision:
        """Count a request for ``key`` (naming ``workspace``, if any); refuse it (without
        consuming) when its bucket is over a limit."""
        now = self.clock.now()
        st = self.state(key)
        st.requests += 1
        self._prune(st, now)
        limited = self.bucket(key, workspace)
        if limited is not st:
            self._prune(limited, now)
        if self.enabled and (
            (self.per_second and len(limited.second) >= self.per_second)
            or (self.per_minute and len(limited.minute) >= self.per_minute)
            or (self.per_day and limited.day_count >= self.per_day)
        ):
            st.rate_limited += 1
            return self._decide(limited, now, allowed=False)
        for counted in (st, limited) if limited is not st else (st,):
            counted.second.append(now)
            counted.minute.append(now)
            counted.day_count += 1
        # The key's own windows hold all its accepted requests: its statistics.
        if len(st.second) > st.max_second:
            st.max_second = len(st.second)
        if len(st.minute) > st.max_minute:
            st.max_minute = len(st.minute)
        return self._decide(limited, now, allowed=True)

    def count_only(self, key: str) -> None:
        """Count a request that never reached the limiter (a fault answered it)."""
        self.state(key).requests += 1

    def count_bytes(self, key: str, size: int) -> None:
        """Count ``size`` bytes of response body sent to ``key``."""
        self.state(key).bytes_sent += size

    def reset_stats(self) -> None:
        for st in self.keys.values():
            st.requests = st.rate_limited = st.bytes_sent = 0
            st.max_second = st.max_minute = 0

    def stats(self) -> dict:
        return {
            key: {
                "requests": st.requests,
                "rate_limited": st.rate_limited,
                "max_in_any_second": st.max_second,
                "max_in_any_minute": st.max_minute,
                "bytes_sent": st.bytes_sent,
            }
            for key, st in self.keys.items()
        }
