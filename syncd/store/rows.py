"""Pure conversions between ``TimeEntry`` records and ``time_entries`` rows (no SQL here).

A row is a tuple in ``ENTRY_COLUMNS`` order. Comparing two versions of an entry uses the
*content* columns only (not ``synced_at``, ``source``, ``raw`` or ``deleted_at``) plus the
entry's tag ids, so a re-scan that brings back the same data is counted as unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from syncd.records import TimeEntry
from syncd.store import models as m

#: The columns of ``time_entries`` as the model declares them (``models.TimeEntry``).
ENTRY_COLUMNS: tuple[str, ...] = tuple(m.TimeEntry._meta.sorted_field_names)
#: What a scan copies from upstream: ``id`` .. ``updated_at``.
CONTENT_COLUMNS: tuple[str, ...] = ENTRY_COLUMNS[: ENTRY_COLUMNS.index("updated_at") + 1]
_UPDATED_AT = ENTRY_COLUMNS.index("updated_at")
_DESCRIPTION = ENTRY_COLUMNS.index("description")

Row = tuple[Any, ...]


def content_of(entry: TimeEntry) -> Row:
    """The comparable content of a record, in ``CONTENT_COLUMNS`` order."""
    return row_of(entry, "", "")[1 : 1 + len(CONTENT_COLUMNS)]


def row_of(entry: TimeEntry, source: str, synced_at: str, rowid: int | None = None) -> Row:
    """The upsert parameters for a record: ``rowid`` (a new entry's, or the stored entry's,
    which the upsert keeps), then the full live row (``deleted_at`` NULL) in ``ENTRY_COLUMNS``
    order.

    The one place that lists the columns' values; a backfill calls it for every entry it
    writes, so it builds the tuple in one step.
    """
    e = entry
    return (
        rowid,
        e.id,
        e.workspace_id,
        e.date,
        e.start_time,
        e.end_time,
        e.duration_seconds,
        e.description or "",
        1 if e.billable else 0,
        1 if e.manually_entered else 0,
        e.team_member_id,
        e.team_member_name,
        e.project_id,
        e.project_name,
        e.client_id,
        e.client_name,
        e.task_id,
        e.task_name,
        e.created_at,
        e.updated_at,
        None,
        synced_at,
        source,
        e.raw,
    )


def totals_of(entries: Iterable[TimeEntry]) -> list[Row]:
    """What live ``entries`` add to ``daily_project_totals``: one row per (date, workspace,
    project, client), with entries, running timers, seconds and billable seconds.

    The same sums as the migration's triggers: a running timer has a start and neither an
    end nor a duration, and counts no seconds until it stops.
    """
    sums: dict[tuple[str, str, str, str], list[int]] = {}
    for e in entries:
        key = (e.date, e.workspace_id, e.project_id or "", e.client_id or "")
        row = sums.get(key)
        if row is None:
            row = sums[key] = [0, 0, 0, 0]
        seconds = e.duration_seconds
        row[0] += 1
        if seconds is None:
            if e.end_time is None and e.start_time is not None:
                row[1] += 1
        else:
            row[2] += seconds
            if e.billable:
                row[3] += seconds
    return [(*key, *row) for key, row in sums.items()]


def tag_ids(entry: TimeEntry) -> tuple[str, ...]:
    tags = entry.tags
    if not tags:
        return ()
    return tuple(sorted({t.id for t in tags}))


def at_least_as_new(incoming: str | None, stored: str | None) -> bool:
    """True when ``incoming`` (an ``updated_at``) is not older than ``stored``.

    Both are ISO 8601 UTC text in one format, so text order is time order. A missing
    ``updated_at`` is older than any present one.
    """
    if stored is None:
        return True
    if incoming is None:
        return False
    return incoming >= stored


def is_newer(instant: str | None, than: str | None) -> bool:
    """True when ``instant`` is strictly later than ``than`` (None is never later)."""
    if instant is None:
        return False
    return than is None or instant > than


def dedupe_entries(entries: Iterable[TimeEntry]) -> list[TimeEntry]:
    """One record per id: the one with the greatest ``updated_at`` (the later one on ties)."""
    best: dict[str, TimeEntry] = {}
    for entry in entries:
        held = best.get(entry.id)
        if held is None or at_least_as_new(entry.updated_at, held.updated_at):
            best[entry.id] = entry
    return list(best.values())


def updated_at_of(content: Row) -> str | None:
    return content[_UPDATED_AT]


def description_of(content: Row) -> str:
    return content[_DESCRIPTION]
