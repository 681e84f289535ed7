"""Timestamps as the service writes them (``YYYY-MM-DDTHH:MM:SS.sssZ``) and reads them."""

from __future__ import annotations

from datetime import UTC, datetime

DAY_MS = 86_400_000
_DAY_PREFIX: dict[int, str] = {}


def day_prefix(day: int) -> str:
    s = _DAY_PREFIX.get(day)
    if s is None:
        s = datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%d")
        _DAY_PREFIX[day] = s
    return s


_SOD = [f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86400)]
_MSZ = [f".{m:03d}Z" for m in range(1000)]


def fmt_ms(ms: int) -> str:
    """Epoch milliseconds to ``2024-01-15T09:00:00.000Z`` (table driven: it is on the hot path)."""
    day, rem = divmod(ms, DAY_MS)
    p = _DAY_PREFIX.get(day)
    if p is None:
        p = day_prefix(day)
    s, milli = divmod(rem, 1000)
    return p + _SOD[s] + _MSZ[milli]


def fmt_ms_or_none(ms: int | None) -> str | None:
    return None if ms is None else fmt_ms(ms)


def fmt_seconds(t: float) -> str:
    return fmt_ms(int(t * 1000))


def parse_iso(value: object) -> int:
    """ISO 8601 string (any offset; naive means UTC) to epoch milliseconds.

    Raises ValueError for anything else.
    """
    if not isinstance(value, str) or not value:
        raise ValueError("not a datetime string")
    s = value.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return round(dt.timestamp() * 1000)


def midnight_ms(ms: int) -> int:
    return ms - ms % DAY_MS
