"""Builders for domain records used across the store tests."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

from syncd.records import Ref, Source, TimeEntry, WindowScan, WorkspaceState
from syncd.seams import MassDeletePolicy

WS = "ws-1"


def ts(day: str, hour: int = 9, minute: int = 0, second: int = 0) -> str:
    """ISO 8601 UTC timestamp text as the parser produces it."""
    return f"{day}T{hour:02d}:{minute:02d}:{second:02d}.000Z"


def entry(
    entry_id: str,
    *,
    ws: str = WS,
    day: str = "2024-03-04",
    start_hour: int = 9,
    seconds: int | None = 3600,
    running: bool = False,
    manual: bool = False,
    description: str = "",
    billable: bool = False,
    member: tuple[str, str] | None = ("m-1", "Ann"),
    project: tuple[str, str] | None = ("p-1", "Apollo"),
    client: tuple[str, str] | None = ("c-1", "Acme"),
    task: tuple[str, str] | None = None,
    tags: tuple[Ref, ...] = (),
    updated_at: str | None = None,
    created_at: str | None = None,
) -> TimeEntry:
    start = datetime.fromisoformat(f"{day}T{start_hour:02d}:00:00")
    end = None if running or seconds is None else start + timedelta(seconds=seconds)
    raw = {"id": entry_id, "description": description}
    return TimeEntry(
        id=entry_id,
        workspace_id=ws,
        date=day,
        start_time=start.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        end_time=None if end is None else end.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        duration_seconds=None if end is None else seconds,
        description=description,
        billable=billable,
        manually_entered=manual,
        team_member_id=member and member[0],
        team_member_name=member and member[1],
        project_id=project and project[0],
        project_name=project and project[1],
        client_id=client and client[0],
        client_name=client and client[1],
        task_id=task and task[0],
        task_name=task and task[1],
        created_at=created_at or ts(day),
        updated_at=updated_at or ts(day, 18),
        tags=tags,
        raw=json.dumps(raw, ensure_ascii=False),
    )


def window(
    entries: list[TimeEntry] | tuple[TimeEntry, ...],
    date_from: str | None,
    date_to: str,
    *,
    ws: str = WS,
    scanned_at: str = "2024-06-01T00:00:00.000Z",
    source: Source = Source.POLL,
    state: WorkspaceState | None = None,
) -> WindowScan:
    return WindowScan(
        workspace_id=ws,
        date_from=date_from,
        date_to=date_to,
        entries=tuple(entries),
        source=source,
        scanned_at=scanned_at,
        state=state,
    )


#: The mass-delete policy that lets every tombstone through.
FORCED = MassDeletePolicy(force=True)


def day(n: int, start: str = "2024-01-01") -> str:
    """The date ``n`` days after ``start``."""
    return (date.fromisoformat(start) + timedelta(days=n)).isoformat()
