"""Plain domain records shared by every layer (no I/O, no ORM).

Timestamps are ISO 8601 UTC text in the form ``YYYY-MM-DDTHH:MM:SS.sssZ``; entry dates are
``YYYY-MM-DD`` text. ``api.py`` normalises every upstream shape into these records.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime


def format_timestamp(moment: datetime) -> str:
    """``moment`` as the mirror writes timestamps: UTC ``YYYY-MM-DDTHH:MM:SS.sssZ``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Priority(enum.IntEnum):
    """Who asks for a request; lower values are served first when the budget is tight."""

    PUSH = 0  # confirming re-scan after a webhook
    HOT = 1  # hot-window poll
    BACKFILL = 2  # first walk through history
    RECONCILE = 3  # background re-verification of old windows
    CONTROL = 4  # webhook subscription management and other housekeeping


class Source(enum.StrEnum):
    """How a row reached the mirror (the ``source`` column)."""

    BACKFILL = "backfill"
    POLL = "poll"
    RECONCILE = "reconcile"
    WEBHOOK = "webhook"
    PUSH_RESCAN = "push_rescan"


@dataclass(frozen=True, slots=True)
class Workspace:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Ref:
    """A named reference to another upstream object (member, project, task, client, tag)."""

    id: str
    name: str | None = None
    color: str | None = None


@dataclass(slots=True)
class TimeEntry:
    """One upstream time entry, whatever endpoint it came from.

    Treated as immutable, but not ``frozen``: a frozen dataclass with this many fields costs
    several times more to build, and the parser builds one per entry of every window.
    """

    id: str
    workspace_id: str
    date: str  # YYYY-MM-DD: the calendar day upstream sent (or start_time's UTC day)
    start_time: str | None
    end_time: str | None  # None while the timer runs
    duration_seconds: int | None  # None while the timer runs
    description: str
    billable: bool
    manually_entered: bool
    team_member_id: str | None
    team_member_name: str | None
    project_id: str | None
    project_name: str | None
    client_id: str | None
    client_name: str | None
    task_id: str | None
    task_name: str | None
    created_at: str | None
    updated_at: str | None
    tags: tuple[Ref, ...] = ()
    workspace_name: str | None = None
    team_member_email: str | None = None
    raw: str = "{}"  # the upstream JSON object this record was parsed from

    @property
    def running(self) -> bool:
        return self.end_time is None and self.start_time is not None and not self.manually_entered


@dataclass(frozen=True, slots=True)
class Rejection:
    """An upstream entry syncd could not store as given (it is quarantined).

    ``stored``: the entry was stored with the offending fields cleared; otherwise it was not
    stored at all (no usable id, date or workspace). ``entry_id`` is None when the entry had
    no usable id. ``raw`` is the entry's JSON, cut to a few KiB; ``raw_bytes`` its full size.
    """

    entry_id: str | None
    workspace_id: str | None
    reason: str
    raw: str
    raw_bytes: int
    stored: bool
    date: str | None = None  # the entry's day, when it had a usable one


class EntryList(list[TimeEntry]):
    """The usable entries of one find answer, and (``rejected``) those quarantined."""

    __slots__ = ("rejected",)

    def __init__(self, entries: Iterable[TimeEntry] = (), rejected: Iterable[Rejection] = ()):
        super().__init__(entries)
        self.rejected: tuple[Rejection, ...] = tuple(rejected)


def rejected_of(entries: Iterable[TimeEntry]) -> tuple[Rejection, ...]:
    """The quarantined entries of a find answer (none for a plain list)."""
    return entries.rejected if isinstance(entries, EntryList) else ()


def sent_count(entries: Sequence[TimeEntry]) -> int:
    """How many entries upstream sent in a find answer: the usable ones and those quarantined
    without being stored. An answer's size, as a cap or a suspicious round number shows, is
    this count, not ``len(entries)``."""
    return len(entries) + sum(1 for r in rejected_of(entries) if not r.stored)


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """What one response said about the server's view of our budget."""

    limit: int | None = None
    remaining: int | None = None
    reset_epoch: float | None = None  # epoch seconds when the window frees a slot
    retry_after: float | None = None  # seconds, from Retry-After on a 429


@dataclass(frozen=True, slots=True)
class WebhookSubscription:
    id: str
    url: str
    events: tuple[str, ...]
    status: str  # ACTIVE, DISABLED, ...


class EventKind(enum.StrEnum):
    TIMER_STARTED = "TIMER_STARTED"
    TIMER_STOPPED = "TIMER_STOPPED"
    MANUAL_TIME_ADDED = "MANUAL_TIME_ADDED"
    CLIENT_CREATED = "CLIENT_CREATED"
    PROJECT_CREATED = "PROJECT_CREATED"
    TASK_CREATED = "TASK_CREATED"
    TIME_ENTRY_UPDATED = "TIME_ENTRY_UPDATED"  # emulator extension
    TIME_ENTRY_DELETED = "TIME_ENTRY_DELETED"  # emulator extension


#: The events upstream documents (§4.1), and the only ones syncd subscribes to.
DOCUMENTED_EVENTS = frozenset(
    {
        EventKind.TIMER_STARTED,
        EventKind.TIMER_STOPPED,
        EventKind.MANUAL_TIME_ADDED,
        EventKind.CLIENT_CREATED,
        EventKind.PROJECT_CREATED,
        EventKind.TASK_CREATED,
    }
)
#: The events whose payload is a whole time entry (``WebhookEvent.entry`` is set).
ENTRY_EVENTS = frozenset(
    {
        EventKind.TIMER_STARTED,
        EventKind.TIMER_STOPPED,
        EventKind.MANUAL_TIME_ADDED,
        EventKind.TIME_ENTRY_UPDATED,
    }
)


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A parsed webhook delivery.

    ``dedupe_key`` identifies the delivery's content (event kind, object id, updatedAt), so a
    repeated delivery is recognised whatever headers it carries.
    """

    kind: EventKind
    object_id: str
    workspace_id: str | None
    updated_at: str | None
    dedupe_key: str
    entry: TimeEntry | None = None  # time-entry events (not deletes)
    payload: dict = field(default_factory=dict)
    delivery_id: str | None = None


@dataclass(slots=True)
class WindowOutcome:
    """What applying one complete window scan changed in the mirror."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    tombstoned: int = 0
    revived: int = 0
    # Entries the answer held that syncd could not store as given, as ``workspace/key`` (see
    # ``store.quarantine.entry_key``): a set, so an entry in two answers of a run counts once.
    quarantined: frozenset[str] = frozenset()
    # Live entries inside the window under one possible reading of its field but not the
    # other, missing from the answer: ``(id, date, created day)``, left for a verifying scan.
    unresolved: tuple[tuple[str, str, str], ...] = ()

    def add(self, other: WindowOutcome) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.tombstoned += other.tombstoned
        self.revived += other.revived
        self.quarantined |= other.quarantined


@dataclass(frozen=True, slots=True)
class WorkspaceState:
    """Per-workspace sync progress, as committed with the last window."""

    workspace_id: str
    backfill_before: str | None = None  # YYYY-MM-DD: every date >= this was scanned once
    backfill_complete: bool = False
    oldest_date: str | None = None  # oldest entry date known upstream (set when backfill ends)
    reconcile_before: str | None = None  # YYYY-MM-DD: the reconciliation sweep's position
    window_days: int | None = None  # last adaptive window size that fit the response cap
    last_hot_scan_at: str | None = None
    last_reconcile_at: str | None = None
    # The verification tiers (``syncd.sync``): each sweeps its days downwards from a cursor;
    # ``*_pass_at`` is when the current pass began and ``*_verified_at`` when the last complete
    # pass began, so every window of the tier was verified at or after it. The cold tier's
    # cursor is ``reconcile_before``.
    warm_before: str | None = None
    warm_pass_at: str | None = None
    warm_verified_at: str | None = None
    cold_pass_at: str | None = None
    cold_verified_at: str | None = None
    # ``syncd --once --full`` in progress: its cursor (every date >= it re-verified) and start.
    full_before: str | None = None
    full_started_at: str | None = None


@dataclass(frozen=True, slots=True)
class WindowScan:
    """One complete scan of ``[date_from, date_to]`` (inclusive) of a workspace.

    ``date_from=None`` means "everything up to ``date_to``" (the open-ended probe at the end of
    a backfill). ``state`` is written in the same transaction as the rows.
    """

    workspace_id: str
    date_from: str | None  # YYYY-MM-DD
    date_to: str  # YYYY-MM-DD
    entries: tuple[TimeEntry, ...]
    source: Source
    scanned_at: str  # ISO timestamp
    state: WorkspaceState | None = None
    # When the request was sent: rows written after it (a push, another process's scan) are
    # newer than this scan's answer and are never tombstoned by it.
    requested_at: str | None = None
    run_id: int | None = None
    # Which live rows of the range the answer lacks are tombstoned: those whose ``date`` is in
    # it, whose creation day is, both, or none (see ``syncd.window_reading``).
    tombstone_by: str = "date"
    # Entries of the answer syncd quarantined (``Rejection``): stored with fields cleared, or
    # not at all. One not stored keeps its mirror row as it is; one without a usable id might
    # be any row, so an answer holding one tombstones nothing.
    rejected: tuple[Rejection, ...] = ()

    @property
    def dropped_ids(self) -> frozenset[str]:
        """Ids of answered entries that were not stored: their mirror rows stay as they are."""
        return frozenset(r.entry_id for r in self.rejected if not r.stored and r.entry_id)

    @property
    def proves_absence(self) -> bool:
        """Whether an entry missing from the answer is gone upstream: not when the answer held
        an entry without a usable id."""
        return all(r.entry_id is not None for r in self.rejected)


@dataclass(slots=True)
class RunReport:
    """The summary of one sync run (one ``--once`` or one daemon cycle)."""

    kind: str  # once | poll | reconcile | push | backfill
    started_at: str
    finished_at: str | None = None
    workspaces: int = 0
    windows: int = 0
    outcome: WindowOutcome = field(default_factory=WindowOutcome)
    requests: int = 0
    rate_limited: int = 0
    # Windows whose answer could not be shown complete (nothing was tombstoned from them):
    # the mirror may be wrong there, so the run does not count as ok.
    unverified: list[str] = field(default_factory=list)
    # Entries upstream returned outside the range a request asked for (by their date, beyond
    # any time-zone offset): kept, never evidence for tombstoning (see syncd.window_reading).
    outside_window: int = 0
    # Workspaces of the run left to another syncd instance holding their lease (or lost to
    # one part-way); none when this process is alone on its key.
    leased_elsewhere: int = 0
    # Windows a poll re-scanned to confirm pushes no scan had confirmed yet (their refresh
    # was lost to a restart, or ran on an instance not holding the workspace).
    confirmed_pushes: int = 0
    ok: bool = False
    error: str | None = None
