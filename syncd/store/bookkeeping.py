"""Bookkeeping: the workspaces, their sync progress (``sync_state``), runs (``sync_runs``),
the scan history (``window_scans``), and the per-workspace reads the engine plans with.

Writes run inside the caller's write transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from peewee import Database, chunked, fn

from syncd.records import RunReport, Source, WindowOutcome, WindowScan, Workspace, WorkspaceState
from syncd.store import models as m
from syncd.store.reports import HIGH_DATE, LOW_DATE
from syncd.store.statements import Statements

CHUNK = 500  # rows per insert_many statement (well below SQLite's bound-variable limit)
#: The ``sync_state`` columns of a ``WorkspaceState`` (every field but the id).
STATE_FIELDS = tuple(n for n in m.SyncState._meta.sorted_field_names if n != "workspace_id")


def upsert_workspaces(workspaces: Sequence[Workspace], synced_at: str) -> None:
    W = m.Workspace
    rows = [(w.id, w.name, synced_at) for w in workspaces]
    for chunk in chunked(rows, CHUNK):
        W.insert_many(chunk, fields=[W.id, W.name, W.synced_at]).on_conflict(
            conflict_target=[W.id], preserve=[W.name, W.synced_at]
        ).execute()


def workspace_ids() -> set[str]:
    """Ids of every workspace the mirror knows."""
    return {i for (i,) in m.Workspace.select(m.Workspace.id).tuples()}


def workspace_state(workspace_id: str) -> WorkspaceState:
    """The workspace's progress (a fresh state when it has none yet)."""
    row = m.SyncState.get_or_none(m.SyncState.workspace_id == workspace_id)
    if row is None:
        return WorkspaceState(workspace_id=workspace_id)
    values = {name: getattr(row, name) for name in STATE_FIELDS}
    values["backfill_complete"] = bool(values["backfill_complete"])
    return WorkspaceState(workspace_id=row.workspace_id, **values)


def save_state(state: WorkspaceState) -> None:
    values = {name: getattr(state, name) for name in ("workspace_id", *STATE_FIELDS)}
    m.SyncState.insert(values).on_conflict(
        conflict_target=[m.SyncState.workspace_id],
        preserve=[getattr(m.SyncState, name) for name in STATE_FIELDS],
    ).execute()


def record_scan(scan: WindowScan, entries: int, outcome: WindowOutcome) -> None:
    """Add the scan to ``window_scans`` with what it did."""
    m.WindowScanRow.insert(
        workspace_id=scan.workspace_id,
        date_from=scan.date_from,
        date_to=scan.date_to,
        scanned_at=scan.scanned_at,
        source=str(scan.source),
        entries=entries,
        inserted=outcome.inserted,
        updated=outcome.updated,
        tombstoned=outcome.tombstoned,
        revived=outcome.revived,
        run_id=scan.run_id,
    ).execute()


def oldest_entry_date(workspace_id: str) -> str | None:
    """The oldest ``date`` of any entry of the workspace, tombstones included."""
    TE = m.TimeEntry
    return TE.select(fn.MIN(TE.date)).where(TE.workspace_id == workspace_id).scalar()


def last_scan_covering(workspace_id: str, day: str) -> str | None:
    """When ``day`` of the workspace was last verified by a walk (the newest backfill, poll
    or reconciliation row of ``window_scans`` whose range holds it; a re-scan after a push
    is left out), or None when it never was."""
    W = m.WindowScanRow
    return (
        W.select(fn.MAX(W.scanned_at))
        .where(
            (W.workspace_id == workspace_id)
            & (W.date_to >= day)
            & (W.date_from.is_null() | (W.date_from <= day))
            & (W.source != str(Source.PUSH_RESCAN))
        )
        .scalar()
    )


def count_live_entries(
    workspace_id: str, date_from: str | None = None, date_to: str | None = None, by: str = "date"
) -> int:
    """Live entries of the workspace whose ``date`` (``by="date"``), creation day
    (``"created_at"``) or both (``"both"``) lie in ``[date_from, date_to]``."""
    TE = m.TimeEntry
    low, high = date_from or LOW_DATE, date_to or HIGH_DATE
    where = (TE.workspace_id == workspace_id) & TE.deleted_at.is_null()
    if by in ("date", "both"):
        where &= (TE.date >= low) & (TE.date <= high)
    if by in ("created_at", "both"):
        where &= (TE.created_at >= low) & (TE.created_at < next_day(high))
    return int(TE.select(fn.COUNT(TE.id)).where(where).scalar() or 0)


def running_entry_dates(db: Database, sql: Statements, workspace_id: str) -> list[str]:
    """Dates (YYYY-MM-DD, ascending, distinct) of live entries held as running timers."""
    return [d for (d,) in db.execute_sql(sql.running_dates, (workspace_id,)).fetchall()]


def start_run(kind: str, started_at: str) -> int:
    """Add a run to ``sync_runs``; returns its id."""
    return int(m.SyncRun.insert(kind=kind, started_at=started_at).execute())


def finish_run(run_id: int, report: RunReport) -> None:
    o = report.outcome
    m.SyncRun.update(
        finished_at=report.finished_at,
        ok=report.ok,
        error=report.error,
        workspaces=report.workspaces,
        windows=report.windows,
        inserted=o.inserted,
        updated=o.updated,
        unchanged=o.unchanged,
        tombstoned=o.tombstoned,
        revived=o.revived,
        requests=report.requests,
        rate_limited=report.rate_limited,
    ).where(m.SyncRun.id == run_id).execute()


def next_day(day: str) -> str:
    """The day after ``day`` as text that sorts after every timestamp of ``day``."""
    if day >= "9999-12-31":
        return "9999-12-32"
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()
