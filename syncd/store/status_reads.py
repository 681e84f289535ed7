"""The mirror's state as ``syncd status`` reports it: per workspace counts and progress, the
last run, webhook outcomes and the entries held in quarantine, as typed records."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from peewee import Database, fn

from syncd.records import WorkspaceState
from syncd.store import models as m
from syncd.store import quarantine
from syncd.store.backend import execute


@dataclass(frozen=True, slots=True)
class WorkspaceCounts:
    """One mirrored workspace: its entries by kind, its last scan and its sync progress."""

    id: str
    name: str | None  # None: known only from its entries
    live_entries: int
    tombstoned_entries: int
    quarantined_entries: int
    last_scan_at: str | None  # the latest window scan of any kind
    progress: WorkspaceState  # as committed with the last window (fresh when none was)

    def as_dict(self) -> dict[str, Any]:
        """Counts and progress as one flat JSON-ready dict (the keys ``syncd status --json``
        shows for a workspace, less the freshness)."""
        state = self.progress
        return {
            "id": self.id,
            "name": self.name,
            "live_entries": self.live_entries,
            "tombstoned_entries": self.tombstoned_entries,
            "quarantined_entries": self.quarantined_entries,
            "last_scan_at": self.last_scan_at,
            "backfill_complete": state.backfill_complete,
            "backfill_before": state.backfill_before,
            "oldest_date": state.oldest_date,
            "reconcile_before": state.reconcile_before,
            "last_hot_scan_at": state.last_hot_scan_at,
            "last_reconcile_at": state.last_reconcile_at,
        }


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One row of ``sync_runs``: a sync run and what it changed (``ok`` None: running)."""

    id: int
    kind: str
    started_at: str
    finished_at: str | None = None
    ok: bool | None = None
    error: str | None = None
    workspaces: int = 0
    windows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    tombstoned: int = 0
    revived: int = 0
    requests: int = 0
    rate_limited: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The row as a dict of its columns, in table order."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class MirrorCounts:
    """What the mirror holds and how far syncd got, as :func:`read_counts` finds it."""

    workspaces: tuple[WorkspaceCounts, ...] = ()
    last_run: RunRecord | None = None
    webhook_events: dict[str, int] = field(default_factory=dict)  # outcome -> deliveries
    last_webhook_at: str | None = None
    quarantined_entries: int = 0


def read_counts(db: Database, workspace_state: Callable[[str], WorkspaceState]) -> MirrorCounts:
    """Per-workspace counts and progress (``workspace_state`` reads one workspace's), the
    last run, webhook outcomes, and the upstream entries held in quarantine, from ``db``
    with the models bound to it. Raises what the database raises."""
    quarantined = quarantine.counts(db)
    counts: dict[str, list[int]] = {}
    rows = execute(
        db,
        "SELECT workspace_id, deleted_at IS NULL, COUNT(*) FROM time_entries "
        "GROUP BY workspace_id, deleted_at IS NULL",
    )
    for ws, live, n in rows.fetchall():
        counts.setdefault(ws, [0, 0])[0 if live else 1] += n
    last_scan = dict(
        execute(
            db, "SELECT workspace_id, MAX(scanned_at) FROM window_scans GROUP BY workspace_id"
        ).fetchall()
    )
    workspaces = []
    for ws in m.Workspace.select().order_by(m.Workspace.name, m.Workspace.id):
        live, gone = counts.get(ws.id, [0, 0])
        workspaces.append(
            WorkspaceCounts(
                id=ws.id,
                name=ws.name,
                live_entries=live,
                tombstoned_entries=gone,
                quarantined_entries=quarantined.get(ws.id, 0),
                last_scan_at=last_scan.get(ws.id),
                progress=workspace_state(ws.id),
            )
        )
    last = m.SyncRun.select().order_by(m.SyncRun.id.desc()).dicts().first()
    hooks = dict(
        m.WebhookEventRow.select(m.WebhookEventRow.outcome, fn.COUNT(m.WebhookEventRow.id))
        .group_by(m.WebhookEventRow.outcome)
        .tuples()
    )
    last_delivery = m.WebhookEventRow.select(fn.MAX(m.WebhookEventRow.received_at)).scalar()
    return MirrorCounts(
        workspaces=tuple(workspaces),
        last_run=None if last is None else RunRecord(**last),
        webhook_events=hooks,
        last_webhook_at=last_delivery,
        quarantined_entries=sum(quarantined.values()),
    )
