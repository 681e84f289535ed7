"""The mirror's state as ``syncd status`` reports it: per workspace counts and progress, the
last run, webhook outcomes and the entries held in quarantine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from peewee import fn

from syncd.store import models as m
from syncd.store import quarantine

if TYPE_CHECKING:
    from syncd.store.mirror import Store


def read(store: Store) -> dict[str, Any]:
    """Per-workspace counts and progress, the last run, webhook outcomes, and the upstream
    entries held in quarantine.

    Returns ``{"workspaces": [...], "last_run": {...} | None, "webhook_events": {...},
    "last_webhook_at": str | None, "quarantined_entries": int}``.
    """
    quarantined = quarantine.counts(store.db)
    counts: dict[str, list[int]] = {}
    rows = store.db.execute_sql(
        "SELECT workspace_id, deleted_at IS NULL, COUNT(*) FROM time_entries "
        "GROUP BY workspace_id, deleted_at IS NULL"
    )
    for ws, live, n in rows.fetchall():
        counts.setdefault(ws, [0, 0])[0 if live else 1] += n
    last_scan = dict(
        store.db.execute_sql(
            "SELECT workspace_id, MAX(scanned_at) FROM window_scans GROUP BY workspace_id"
        ).fetchall()
    )
    workspaces = []
    for ws in m.Workspace.select().order_by(m.Workspace.name, m.Workspace.id):
        state = store.workspace_state(ws.id)
        live, gone = counts.get(ws.id, [0, 0])
        workspaces.append(
            {
                "id": ws.id,
                "name": ws.name,
                "live_entries": live,
                "tombstoned_entries": gone,
                "quarantined_entries": quarantined.get(ws.id, 0),
                "last_scan_at": last_scan.get(ws.id),
                "backfill_complete": state.backfill_complete,
                "backfill_before": state.backfill_before,
                "oldest_date": state.oldest_date,
                "reconcile_before": state.reconcile_before,
                "last_hot_scan_at": state.last_hot_scan_at,
                "last_reconcile_at": state.last_reconcile_at,
            }
        )
    last = m.SyncRun.select().order_by(m.SyncRun.id.desc()).dicts().first()
    hooks = dict(
        m.WebhookEventRow.select(m.WebhookEventRow.outcome, fn.COUNT(m.WebhookEventRow.id))
        .group_by(m.WebhookEventRow.outcome)
        .tuples()
    )
    last_delivery = m.WebhookEventRow.select(fn.MAX(m.WebhookEventRow.received_at)).scalar()
    return {
        "workspaces": workspaces,
        "last_run": last,
        "webhook_events": hooks,
        "last_webhook_at": last_delivery,
        "quarantined_entries": sum(quarantined.values()),
    }
