"""A workspace's live entries as plain dicts: what tests and benchmarks compare with
upstream."""

from __future__ import annotations

from typing import Any

from peewee import Database

from syncd.store import models as m
from syncd.store.rows import CONTENT_COLUMNS
from syncd.store.statements import Statements


def mirror_snapshot(db: Database, sql: Statements, workspace_id: str) -> list[dict[str, Any]]:
    """Every live entry of the workspace as a dict (content columns + sorted ``tags``),
    ordered by id."""
    TE = m.TimeEntry
    out: dict[str, dict[str, Any]] = {}
    query = (
        TE.select(*[getattr(TE, c) for c in CONTENT_COLUMNS])
        .where((TE.workspace_id == workspace_id) & TE.deleted_at.is_null())
        .order_by(TE.id)
        .dicts()
    )
    for row in query:
        row["billable"] = bool(row["billable"])
        row["manually_entered"] = bool(row["manually_entered"])
        row["tags"] = []
        out[row["id"]] = row
    for entry_id, tag_id in db.execute_sql(sql.snapshot_tags, (workspace_id,)):
        out[entry_id]["tags"].append(tag_id)
    return list(out.values())
