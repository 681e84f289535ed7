"""An in-memory Timetracker that speaks :class:`syncd.seams.Client`, and an injected clock.

``FakeUpstream`` is the truth the sync engine mirrors: workspaces and time entries, edited
through methods that stamp ``updated_at`` from the shared :class:`Clock` (so upstream
versions and the mirror's scan timestamps live on one timeline). ``find_time_entries``
answers like the documented find endpoint under any reading the docs leave open: the window
filters on ``date`` or on the creation time (``date_field``), its bounds include or not
(``bounds``), answers may be silently capped (``cap``) and large ones may time out with a 504
(``timeout_above``). Every call is counted per method and per priority, every
find is logged with its window and answer size, and faults can be scheduled for the Nth
find call. Every change also emits the webhook event upstream would push, so tests can
deliver, drop, duplicate or reorder pushes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

from syncd.errors import ApiError, ServerError, TransportError
from syncd.records import (
    EventKind,
    Priority,
    Ref,
    TimeEntry,
    WebhookEvent,
    WebhookSubscription,
    Workspace,
)

WS = "ws-1"
START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    """ISO 8601 UTC text in the records' format (``YYYY-MM-DDTHH:MM:SS.sssZ``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


class Clock:
    """The injected clock: moves only when advanced, plus one millisecond per reading.

    The tick keeps every timestamp unique, so a tombstone's ``deleted_at`` names the one
    scan that wrote it and an upstream edit is always strictly older than a later scan.
    """

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    def today(self) -> date:
        return self.now.date()

    def days_ago(self, days: int) -> str:
        return (self.today() - timedelta(days=days)).isoformat()

    def stamp(self) -> str:
        return stamp(self())


@dataclass(frozen=True, slots=True)
class FindCall:
    """One answered (or failed) find request.

    ``date_from``/``date_to`` are the window the request reconciles: the engine asks for one
    day more on each side (``asked_from``/``asked_to``), so either bound reading covers it.
    """

    workspace_id: str
    date_from: str | None
    date_to: str | None
    priority: Priority
    returned: int | None  # None when the call failed
    asked_from: str | None = None
    asked_to: str | None = None

    @classmethod
    def asked(
        cls,
        workspace_id: str,
        asked_from: str | None,
        asked_to: str | None,
        priority: Priority,
        returned: int | None,
    ) -> FindCall:
        return cls(
            workspace_id,
            _shift(asked_from, 1),
            _shift(asked_to, -1),
            priority,
            returned,
            asked_from,
            asked_to,
        )

    def covers(self, day: str) -> bool:
        return (self.date_from is None or self.date_from <= day) and (
            self.date_to is None or day <= self.date_to
        )


class FakeUpstream:
    """An in-memory Timetracker account implementing ``syncd.seams.Client``."""

    def __init__(self, clock: Clock, workspaces: Sequence[str] = (WS,)) -> None:
        self.clock = clock
        self.workspaces = {w: Workspace(w, f"Workspace {w}") for w in workspaces}
        self.entries: dict[str, TimeEntry] = {}
        self.calls: Counter[str] = Counter()
        self.priorities: Counter[Priority] = Counter()
        self.finds: list[FindCall] = []
        self.events: list[WebhookEvent] = []  # every push upstream sent, in order
        self.subscriptions: dict[str, WebhookSubscription] = {}
        self._faults: dict[int, ApiError] = {}
        self._next_id = 0
        # The open readings of the find window (see the module doc).
        self.date_field = "date"
        self.bounds = "inclusive"
        self.cap = 0
        self.timeout_above = 0
        # When set, every find answers with no entries (a faulty upstream).
        self.answer_empty = False
        # Called with each find request before it is answered (e.g. a signal arriving
        # while the request is in flight).
        self.on_find: Callable[[FindCall], None] | None = None
        # Awaited after the answer was read and before it reaches the caller: what happens
        # upstream (and in the mirror) while the response is on the wire.
        self.while_answering: Callable[[FindCall], Awaitable[None]] | None = None

    # ------------------------------------------------------------------ fault injection

    def fail_find(self, nth: int, error: ApiError | None = None) -> None:
        """Make the ``nth`` find call from now (1 = the next one) fail with ``error``."""
        at = self.calls["find_time_entries"] + nth
        self._faults[at] = error or ServerError("upstream 503", status=503, body="busy")

    def fail_transport(self, nth: int) -> None:
        self.fail_find(nth, TransportError("connection reset by peer"))

    def clear_faults(self) -> None:
        self._faults.clear()

    def reset_counts(self) -> None:
        self.calls.clear()
        self.priorities.clear()
        self.finds.clear()
        self._faults.clear()

    @property
    def find_calls(self) -> int:
        return self.calls["find_time_entries"]

    # ------------------------------------------------------------------ the Client seam

    async def list_workspaces(self, *, priority: Priority = Priority.HOT) -> list[Workspace]:
        self._count("list_workspaces", priority)
        return list(self.workspaces.values())

    async def find_time_entries(
        self,
        workspace_id: str,
        *,
        date_from: str | None,
        date_to: str | None,
        priority: Priority,
        retry_timeouts: bool = True,
    ) -> list[TimeEntry]:
        self._count("find_time_entries", priority)
        if self.on_find is not None:
            self.on_find(FindCall.asked(workspace_id, date_from, date_to, priority, None))
        fault = self._faults.pop(self.calls["find_time_entries"], None)
        if fault is not None:
            self.finds.append(FindCall.asked(workspace_id, date_from, date_to, priority, None))
            raise fault
        after = None if date_from is None else f"{date_from}T00:00:00.000Z"
        before = None if date_to is None else f"{date_to}T23:59:59.999Z"
        found = sorted(
            (
                e
                for e in self.entries.values()
                if e.workspace_id == workspace_id and self._inside(e, after, before)
            ),
            key=lambda e: (e.created_at or "", e.id),
            reverse=True,  # newest created first, as the find pages document
        )
        if self.timeout_above and len(found) > self.timeout_above:
            self.finds.append(FindCall.asked(workspace_id, date_from, date_to, priority, None))
            raise ServerError("upstream 504", status=504, body="gateway timeout")
        if self.cap:
            found = found[: self.cap]
        if self.answer_empty:
            found = []
        call = FindCall.asked(workspace_id, date_from, date_to, priority, len(found))
        self.finds.append(call)
        if self.while_answering is not None:
            await self.while_answering(call)
        return found

    def _inside(self, entry: TimeEntry, after: str | None, before: str | None) -> bool:
        """Whether the find window holds ``entry`` under this upstream's reading."""
        if self.date_field == "created_at":
            value = entry.created_at or ""
        else:
            value = f"{entry.date}T00:00:00.000Z"
        if self.bounds == "exclusive":
            return (after is None or value > after) and (before is None or value < before)
        return (after is None or value >= after) and (before is None or value <= before)

    async def list_webhooks(self) -> list[WebhookSubscription]:
        self._count("list_webhooks", Priority.CONTROL)
        return list(self.subscriptions.values())

    async def subscribe_webhook(
        self, url: str, events: Sequence[str], *, secret: str | None, description: str | None
    ) -> WebhookSubscription:
        self._count("subscribe_webhook", Priority.CONTROL)
        sub = WebhookSubscription(f"wh-{len(self.subscriptions) + 1}", url, tuple(events), "ACTIVE")
        self.subscriptions[sub.id] = sub
        return sub

    async def delete_webhook(self, webhook_id: str) -> None:
        self._count("delete_webhook", Priority.CONTROL)
        self.subscriptions.pop(webhook_id, None)

    def _count(self, method: str, priority: Priority) -> None:
        self.calls[method] += 1
        self.priorities[priority] += 1

    # ------------------------------------------------------------------ changing upstream

    def add_workspace(self, workspace_id: str) -> None:
        self.workspaces[workspace_id] = Workspace(workspace_id, f"Workspace {workspace_id}")

    def add(
        self,
        day: str,
        *,
        workspace_id: str = WS,
        running: bool = False,
        manual: bool = False,
        description: str = "",
        seconds: int = 3600,
        hour: int = 9,
        project: tuple[str, str] | None = ("p-1", "Apollo"),
        tags: tuple[Ref, ...] = (),
    ) -> TimeEntry:
        """Create an entry dated ``day`` (a running timer when ``running``) and push it."""
        self._next_id += 1
        now = self.clock.stamp()
        start = f"{day}T{hour:02d}:00:00.000Z"
        entry = TimeEntry(
            id=f"te-{self._next_id:05d}",
            workspace_id=workspace_id,
            date=day,
            start_time=start,
            end_time=None if running else _plus(start, seconds),
            duration_seconds=None if running else seconds,
            description=description,
            billable=self._next_id % 2 == 0,
            manually_entered=manual and not running,
            team_member_id="m-1",
            team_member_name="Ann",
            project_id=project and project[0],
            project_name=project and project[1],
            client_id=None,
            client_name=None,
            task_id=None,
            task_name=None,
            created_at=now,
            updated_at=now,
            tags=tags,
            workspace_name=self.workspaces[workspace_id].name,
        )
        entry = _with_raw(entry)
        self.entries[entry.id] = entry
        kind = EventKind.TIMER_STARTED if running else EventKind.MANUAL_TIME_ADDED
        self._emit(kind, entry)
        return entry

    def add_many(self, days: Iterable[str], **kwargs) -> list[TimeEntry]:
        return [self.add(d, **kwargs) for d in days]

    def edit(self, entry_id: str, **changes) -> TimeEntry:
        """Change fields of an entry (``date`` moves it), bump ``updated_at``, push it."""
        held = self.entries[entry_id]
        if "date" in changes and held.start_time and "start_time" not in changes:
            changes["start_time"] = changes["date"] + held.start_time[10:]
            if held.end_time and "end_time" not in changes:
                changes["end_time"] = _plus(changes["start_time"], held.duration_seconds or 0)
        entry = _with_raw(replace(held, **changes, updated_at=self.clock.stamp()))
        self.entries[entry_id] = entry
        self._emit(EventKind.TIME_ENTRY_UPDATED, entry)
        return entry

    def stop(self, entry_id: str, seconds: int = 1800) -> TimeEntry:
        """Stop a running timer and push ``TIMER_STOPPED``."""
        held = self.entries[entry_id]
        assert held.start_time is not None
        entry = _with_raw(
            replace(
                held,
                end_time=_plus(held.start_time, seconds),
                duration_seconds=seconds,
                updated_at=self.clock.stamp(),
            )
        )
        self.entries[entry_id] = entry
        self._emit(EventKind.TIMER_STOPPED, entry)
        return entry

    def delete(self, entry_id: str) -> TimeEntry:
        """Delete an entry; upstream documents no delete event, the extension one is kept."""
        gone = self.entries.pop(entry_id)
        when = self.clock.stamp()
        self.events.append(
            WebhookEvent(
                kind=EventKind.TIME_ENTRY_DELETED,
                object_id=gone.id,
                workspace_id=gone.workspace_id,
                updated_at=when,
                dedupe_key=f"{EventKind.TIME_ENTRY_DELETED}:{gone.id}:{when}",
            )
        )
        return gone

    def deliveries(
        self,
        *,
        drop: Iterable[int] = (),
        duplicate: Iterable[int] = (),
        reverse: bool = False,
    ) -> list[WebhookEvent]:
        """The pushes as a lossy transport delivers them: some dropped, some twice, any order."""
        dropped, doubled = set(drop), set(duplicate)
        out: list[WebhookEvent] = []
        for i, event in enumerate(self.events):
            if i in dropped:
                continue
            out.extend([event, event] if i in doubled else [event])
        return out[::-1] if reverse else out

    def _emit(self, kind: EventKind, entry: TimeEntry) -> None:
        self.events.append(push_of(kind, entry))


def push_of(kind: EventKind, entry: TimeEntry) -> WebhookEvent:
    """The webhook event carrying ``entry`` as it is now (dedupe by kind, id, updatedAt)."""
    return WebhookEvent(
        kind=kind,
        object_id=entry.id,
        workspace_id=entry.workspace_id,
        updated_at=entry.updated_at,
        dedupe_key=f"{kind}:{entry.id}:{entry.updated_at}",
        entry=entry,
    )


def _shift(day: str | None, days: int) -> str | None:
    return None if day is None else (date.fromisoformat(day) + timedelta(days=days)).isoformat()


def days_back(today: date, *offsets: int) -> list[str]:
    return [(today - timedelta(days=n)).isoformat() for n in offsets]


def _plus(instant: str, seconds: int) -> str:
    moment = datetime.strptime(instant, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return stamp(moment + timedelta(seconds=seconds))


def _with_raw(entry: TimeEntry) -> TimeEntry:
    raw = {
        "id": entry.id,
        "workspaceId": entry.workspace_id,
        "date": entry.date,
        "startTime": entry.start_time,
        "endTime": entry.end_time,
        "duration": entry.duration_seconds,
        "description": entry.description,
        "updatedAt": entry.updated_at,
    }
    return replace(entry, raw=json.dumps(raw, ensure_ascii=False))
