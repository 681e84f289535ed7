"""Prepared statement texts of the entry write path, and the SQL peewee cannot express.

Rendering a 500-row ``insert_many`` through peewee's query builder costs more than SQLite
executing it, so the store asks peewee for the *one-row* ``INSERT ... ON CONFLICT`` text once
and feeds it every row through ``cursor.executemany`` (SQLite reuses the prepared statement).
Reads by many ids bind one JSON array (``json_each``) instead of building ``IN (?, ?, ...)``.

This is the one place of the write path with SQLite-only SQL (``rowid``, ``json_each``, the
FTS5 description index, ``INSERT OR IGNORE``-style upserts): another backend renders its own
``Statements`` and keeps the modules that use them.
"""

from __future__ import annotations

from dataclasses import dataclass

from peewee import EXCLUDED, Database, fn

from syncd.store import models as m
from syncd.store.migrations import TOTALS_KEY
from syncd.store.rows import CONTENT_COLUMNS, ENTRY_COLUMNS

_REF_MODELS: dict[str, type[m.BaseModel]] = {
    "team_member": m.TeamMember,
    "client": m.Client,
    "project": m.Project,
    "task": m.Task,
    "tag": m.Tag,
}
#: The columns of each reference table, as its model declares them (id first).
REF_COLUMNS: dict[str, tuple[str, ...]] = {
    kind: tuple(model._meta.sorted_field_names) for kind, model in _REF_MODELS.items()
}


@dataclass(frozen=True, slots=True)
class Statements:
    upsert_entry: str
    upsert_ref: dict[str, str]
    insert_link: str
    delete_links: str
    tombstone: str
    select_stored: str
    select_links: str
    live_ids_in_window: str
    unindex_ids: str
    index_rowids: str
    add_totals: str
    next_rowid: str
    live_rows_either_reading: str
    running_dates: str
    snapshot_tags: str
    rebuild_search: tuple[str, ...]


def _one_row_sql(query: object) -> str:
    sql, _params = query.sql()  # type: ignore[attr-defined]
    return sql


def build(db: Database) -> Statements:
    """Render the statements for ``db``'s dialect (the models must be bound to it)."""
    TE, TL = m.TimeEntry, m.TimeEntryTagLink
    fields = [getattr(TE, c) for c in ENTRY_COLUMNS]
    # The first parameter is the rowid: the store picks it for a new entry (so the entry's tag
    # links can be written without looking it up) and passes NULL for a stored one (the
    # conflict on ``id`` keeps the stored rowid).
    upsert_entry = _one_row_sql(
        TE.insert_many([tuple("x" for _ in fields)], fields=fields).on_conflict(
            conflict_target=[TE.id], preserve=[f for f in fields if f is not TE.id]
        )
    ).replace('INSERT INTO "time_entries" (', 'INSERT INTO "time_entries" (rowid, ', 1)
    upsert_entry = upsert_entry.replace("VALUES (", "VALUES (?, ", 1)
    upsert_ref = {}
    for kind, model in _REF_MODELS.items():
        cols = [getattr(model, c) for c in REF_COLUMNS[kind]]
        update = {c: fn.COALESCE(getattr(EXCLUDED, c.column_name), c) for c in cols[1:]}
        upsert_ref[kind] = _one_row_sql(
            model.insert_many([tuple("x" for _ in cols)], fields=cols).on_conflict(
                conflict_target=[model._meta.primary_key], update=update
            )
        )
    insert_link = _one_row_sql(
        TL.insert_many([(0, "x")], fields=[TL.entry_rowid, TL.tag_id]).on_conflict_ignore()
    )
    delete_links = _one_row_sql(TL.delete().where(TL.entry_rowid == 0))
    tombstone = _one_row_sql(
        TE.update(deleted_at="x").where((TE.id == "x") & TE.deleted_at.is_null())
    )
    content = ", ".join(f'"{c}"' for c in CONTENT_COLUMNS)
    select_stored = (
        f"SELECT {content}, rowid, deleted_at, source, synced_at FROM time_entries "  # noqa: S608 (constants)
        "WHERE id IN (SELECT value FROM json_each(?))"
    )
    select_links = (
        "SELECT entry_rowid, tag_id FROM time_entry_tag_links "
        "WHERE entry_rowid IN (SELECT value FROM json_each(?))"
    )
    live_ids_in_window = (
        "SELECT id FROM time_entries WHERE workspace_id = ? AND date >= ? AND date <= ? "
        "AND deleted_at IS NULL AND (? IS NULL OR synced_at IS NULL OR synced_at <= ?)"
    )
    # Keep the description index in step, one statement per batch of ids (a JSON array).
    unindex_ids = (
        "INSERT INTO time_entries_fts (time_entries_fts, rowid, description) "
        "SELECT 'delete', rowid, description FROM time_entries "
        "WHERE id IN (SELECT value FROM json_each(?)) AND deleted_at IS NULL"
    )
    index_rowids = (
        "INSERT INTO time_entries_fts (rowid, description) "
        "SELECT rowid, description FROM time_entries "
        "WHERE rowid IN (SELECT value FROM json_each(?)) AND deleted_at IS NULL"
    )
    # New entries are added to the daily totals with one upsert per (day, project, client)
    # the window touches (updates and deletes are counted by triggers; see migration 0008).
    add_totals = f"""
        INSERT INTO daily_project_totals
            ({TOTALS_KEY}, entries, running, seconds, billable_seconds)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT ({TOTALS_KEY}) DO UPDATE SET
            entries = entries + excluded.entries,
            running = running + excluded.running,
            seconds = seconds + excluded.seconds,
            billable_seconds = billable_seconds + excluded.billable_seconds"""  # noqa: S608
    # The rowid a new entry gets (the store numbers new rows itself, see ``upsert_entry``).
    next_rowid = "SELECT IFNULL(MAX(rowid), 0) FROM time_entries"
    # Live rows of a range under either reading of the window's field (its ``date``, its
    # creation day), with both days, unless written after the scan's request.
    live_rows_either_reading = (
        "SELECT id, date, substr(created_at, 1, 10) FROM time_entries "
        "WHERE workspace_id = ? AND deleted_at IS NULL "
        "AND ((date >= ? AND date <= ?) OR (created_at >= ? AND created_at < ?)) "
        "AND (? IS NULL OR synced_at IS NULL OR synced_at <= ?)"
    )
    running_dates = "SELECT DISTINCT date FROM running_timers WHERE workspace_id = ? ORDER BY date"
    snapshot_tags = (
        "SELECT e.id, l.tag_id FROM time_entry_tag_links AS l "
        "JOIN time_entries AS e ON e.rowid = l.entry_rowid "
        "WHERE e.workspace_id = ? AND e.deleted_at IS NULL ORDER BY e.id, l.tag_id"
    )
    rebuild_search = (
        "INSERT INTO time_entries_fts (time_entries_fts) VALUES ('delete-all')",
        "INSERT INTO time_entries_fts (rowid, description) "
        "SELECT rowid, description FROM time_entries WHERE deleted_at IS NULL",
    )
    return Statements(
        next_rowid=next_rowid,
        live_rows_either_reading=live_rows_either_reading,
        running_dates=running_dates,
        snapshot_tags=snapshot_tags,
        rebuild_search=rebuild_search,
        add_totals=add_totals,
        unindex_ids=unindex_ids,
        index_rowids=index_rowids,
        upsert_entry=upsert_entry,
        upsert_ref=upsert_ref,
        insert_link=insert_link,
        delete_links=delete_links,
        tombstone=tombstone,
        select_stored=select_stored,
        select_links=select_links,
        live_ids_in_window=live_ids_in_window,
    )
