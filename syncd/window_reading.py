"""What syncd has learned about how upstream reads a find window (pure, no I/O).

The docs leave open which field ``date_after``/``date_before`` filter on (the entry's ``date``
by name, its creation time by prose), whether the bounds include, and whether an answer can
be capped. syncd stays exact under every reading:

- **Bounds** never matter: every request reaches one day past the range it reconciles on each
  side, so an inclusive and an exclusive server return every entry of that range.
- **The field** is learned from evidence. An answer that holds an entry whose ``date`` lies
  outside the requested range (by more than any time-zone offset) proves creation-time
  filtering; one whose creation time lies outside proves ``date`` filtering. Until one is
  proven, a scan tombstones only entries inside its range under both readings (``both``). Proof
  of both at once means upstream filters on neither: scans then tombstone nothing and runs fail.
- **Caps** are learned when an answer of suspicious size (a cap seen before, or a round number
  of 100 or more) turns out, split in two, to have held fewer entries than its halves. One
  shown complete that way proves any cap is at least its size, so later, smaller answers are
  trusted without a check (one of exactly that size is still checked).
- **Timeouts** (a 504 or a timed-out find) teach the largest answer size known to time out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from datetime import date, timedelta
from typing import Any, Literal

from syncd.records import TimeEntry

Field = Literal["date", "created_at"]
#: What a scan may tombstone by: the proven field, ``both`` while unproven, ``none`` when
#: nothing may be tombstoned (an unverified answer, or evidence that contradicts itself).
TombstoneBy = Literal["date", "created_at", "both", "none"]

SETTING = "upstream_reading"  # the installation setting holding the learned reading
SUSPICIOUS_ROUND = 100  # an answer of a multiple of this many entries (or more) may be cut off
OFFSET_MARGIN_DAYS = 1  # a ``date`` sent with any UTC offset is within a day of its UTC instant


@dataclass(frozen=True, slots=True)
class Evidence:
    """An entry that proved something, with the window it came back for."""

    entry_id: str
    date: str
    created_at: str | None
    requested_from: str | None
    requested_to: str | None
    seen_at: str

    def describe(self) -> str:
        window = f"{self.requested_from or '…'}..{self.requested_to or '…'}"
        return (
            f"entry {self.entry_id} (date {self.date}, created {self.created_at}) "
            f"came back for {window}"
        )


@dataclass(frozen=True, slots=True)
class WindowReading:
    """The learned reading of the find window, persisted in the mirror as JSON."""

    field: Field | None = None  # None until proven (or pinned)
    pinned: bool = False  # set by ``[api] window_field``; evidence is still recorded
    field_evidence: Evidence | None = None
    conflict_evidence: Evidence | None = None  # evidence against the proven field
    cap: int | None = None  # answers hold at most this many entries
    cap_evidence: str | None = None
    verified_up_to: int = 0  # the largest answer shown complete by splitting (any cap >= it)
    timeout_above: int | None = None  # answers of about this many entries timed out
    timeout_evidence: str | None = None

    @property
    def conflict(self) -> bool:
        return self.conflict_evidence is not None and not self.pinned

    def tombstone_by(self) -> TombstoneBy:
        """What a complete scan may tombstone by under what is known now."""
        if self.conflict:
            return "none"
        return self.field or "both"

    def answer_limit(self) -> int | None:
        """The largest answer syncd should ask for (below a learned cap or timeout)."""
        limits = [n for n in (self.cap, self.timeout_above) if n]
        return min(limits) if limits else None

    def suspicious(self, count: int) -> bool:
        """Whether an answer of ``count`` entries may have been cut off by a cap."""
        if self.cap is not None and count >= self.cap:
            return True
        if count < self.verified_up_to:
            # An answer of ``verified_up_to`` entries was complete, so any cap is at least
            # that: a smaller answer was not cut (one of exactly that size still may be).
            return False
        return count >= SUSPICIOUS_ROUND and count % SUSPICIOUS_ROUND == 0

    def describe(self) -> dict[str, Any]:
        """For ``status``: what was learned and why, in words."""
        if self.pinned:
            field = f"{self.field} (pinned by [api] window_field)"
        elif self.conflict:
            field = "contradictory: upstream filters on neither field; scans tombstone nothing"
        elif self.field is None:
            field = "not proven yet: scans tombstone only entries inside both readings"
        else:
            field = self.field
        return {
            "window_field": field,
            "window_field_evidence": _words(self.field_evidence),
            "conflicting_evidence": _words(self.conflict_evidence),
            "bounds": "either (every request overlaps its neighbours by a day)",
            "answer_cap": self.cap,
            "answer_cap_evidence": self.cap_evidence,
            "timeout_above": self.timeout_above,
            "timeout_evidence": self.timeout_evidence,
        }

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None, *, pinned: Field | None = None) -> WindowReading:
        """The stored reading (a fresh one for ``None`` or unreadable text), with ``pinned``
        applied over what was learned."""
        reading = cls()
        if text:
            try:
                data = json.loads(text)
                for key in ("field_evidence", "conflict_evidence"):
                    if data.get(key):
                        data[key] = Evidence(**data[key])
                reading = cls(**data)
            except (TypeError, ValueError):
                reading = cls()
        if pinned is not None:
            return replace(reading, field=pinned, pinned=True)
        if reading.pinned:  # no longer pinned: forget the pin, keep what evidence proved
            proven = reading.field if reading.field_evidence is not None else None
            return replace(reading, field=proven, pinned=False)
        return reading


def _words(evidence: Evidence | None) -> str | None:
    return None if evidence is None else evidence.describe()


def widen(date_from: str | None, date_to: str | None) -> tuple[str | None, str | None]:
    """The range to request for reconciling ``[date_from, date_to]``: one day more each side,
    so inclusive and exclusive bounds return the same entries of the reconciled range."""
    low = None if date_from is None else (_day(date_from) - timedelta(days=1)).isoformat()
    high = None if date_to is None else (_day(date_to) + timedelta(days=1)).isoformat()
    return low, high


def observe(
    reading: WindowReading,
    entries: Iterable[TimeEntry],
    requested_from: str | None,
    requested_to: str | None,
    seen_at: str,
) -> WindowReading:
    """``reading`` updated with what one answer to ``[requested_from, requested_to]`` shows.

    An entry outside the range under one reading (and inside under the other) proves the
    other; one outside under both readings is recorded as conflicting evidence.
    """
    date_low = _shift(requested_from, -OFFSET_MARGIN_DAYS)
    date_high = _shift(requested_to, OFFSET_MARGIN_DAYS)
    for entry in entries:
        by_date = _inside_day(entry.date, date_low, date_high)
        by_created = entry.created_at is None or _inside_instant(
            entry.created_at, requested_from, requested_to
        )
        if by_date and by_created:
            continue
        evidence = Evidence(
            entry.id, entry.date, entry.created_at, requested_from, requested_to, seen_at
        )
        proves: Field | None = None
        if by_created and not by_date:
            proves = "created_at"
        elif by_date and not by_created:
            proves = "date"
        if proves is not None and reading.field is None:
            reading = replace(reading, field=proves, field_evidence=evidence)
        elif proves is None or proves != reading.field:
            if reading.conflict_evidence is None:
                reading = replace(reading, conflict_evidence=evidence)
        elif reading.field_evidence is None:  # pinned, and now proven too
            reading = replace(reading, field_evidence=evidence)
    return reading


def _day(text: str) -> date:
    return date.fromisoformat(text)


def _shift(day: str | None, days: int) -> str | None:
    return None if day is None else (_day(day) + timedelta(days=days)).isoformat()


def _inside_day(day: str, low: str | None, high: str | None) -> bool:
    return (low is None or low <= day) and (high is None or day <= high)


def _inside_instant(instant: str, low: str | None, high: str | None) -> bool:
    """Whether a UTC timestamp lies in the whole days ``[low, high]`` (inclusive)."""
    day = instant[:10]
    return (low is None or low <= day) and (high is None or day <= high)
