"""Writing time entries: what the mirror holds for a set of ids, and upserts and tombstones
that keep the tag links, the reference tables, the daily totals and (on SQLite) the
description index in step.

Scans (``windows.py``) and pushes (``pushes.py``) both write through :class:`EntryWriter`;
they decide *whether* a version is written, this module *how*. Every method runs inside the
caller's write transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence

from peewee import Database, fn

from syncd.records import Source, TimeEntry
from syncd.store import models as m
from syncd.store.rows import (
    Row,
    content_of,
    description_of,
    row_of,
    tag_ids,
    totals_of,
    updated_at_of,
)
from syncd.store.statements import REF_COLUMNS, Statements


class Stored:
    """What the mirror holds for one entry: comparable content, tombstone, tag ids, and
    where and when it came from."""

    __slots__ = ("content", "deleted_at", "rowid", "source", "storable", "synced_at", "tags")

    def __init__(
        self,
        content: Row,
        rowid: int,
        deleted_at: str | None,
        source: str | None = None,
        synced_at: str | None = None,
    ) -> None:
        self.content = content
        self.rowid = rowid
        self.deleted_at = deleted_at
        self.source = source
        self.synced_at = synced_at
        self.tags: list[str] = []
        #: How the backend stores rows (``Statements.storable``), to compare like with like.
        self.storable: Callable[[list[Row]], list[Row]] | None = None

    def pushed_before(self, moment: str | None) -> bool:
        """Whether this version came from a push received before ``moment`` (a scan's
        request): a scan answered after the push overrides it."""
        return (
            self.source == Source.WEBHOOK
            and self.synced_at is not None
            and (moment is None or self.synced_at < moment)
        )

    @property
    def updated_at(self) -> str | None:
        return updated_at_of(self.content)

    @property
    def description(self) -> str:
        return description_of(self.content)

    def same_as(self, entry: TimeEntry) -> bool:
        """Whether ``entry`` holds what the mirror holds, as the backend would store it."""
        content = content_of(entry)
        if self.storable is not None:
            [content] = self.storable([content])
        return self.content == content and tuple(sorted(self.tags)) == tag_ids(entry)


class EntryWriter:
    """Reads and writes ``time_entries`` rows (and what hangs off them) in ``db``."""

    def __init__(self, db: Database, sql: Statements) -> None:
        self.db = db
        self.sql = sql

    def ensure_workspaces(self, ids: Iterable[str]) -> None:
        """Add a nameless ``workspaces`` row for every id the mirror lacks."""
        rows = [(i, None, None) for i in sorted(set(ids))]
        m.Workspace.insert_many(
            rows, fields=[m.Workspace.id, m.Workspace.name, m.Workspace.synced_at]
        ).on_conflict_ignore().execute()

    def has_workspace(self, workspace_id: str) -> bool:
        return m.Workspace.select().where(m.Workspace.id == workspace_id).exists()

    def load(self, ids: Sequence[str]) -> dict[str, Stored]:
        """What the mirror holds for ``ids`` (tombstones included), by id."""
        if not ids:
            return {}
        cursor = self.db.cursor()
        arg = json.dumps(list(ids))
        stored = {
            row[0]: Stored(row[:-4], *row[-4:])
            for row in cursor.execute(self.sql.select_stored, (arg,))
        }
        for held in stored.values():
            held.storable = self.sql.storable
        if stored:
            by_rowid = {held.rowid: held for held in stored.values()}
            arg = json.dumps(list(by_rowid))
            for rowid, tag_id in cursor.execute(self.sql.select_links, (arg,)):
                by_rowid[rowid].tags.append(tag_id)
        return stored

    def count_live(self, workspace_id: str) -> int:
        TE = m.TimeEntry
        query = TE.select(fn.COUNT(TE.id)).where(
            (TE.workspace_id == workspace_id) & TE.deleted_at.is_null()
        )
        return int(query.scalar() or 0)

    def tombstone(self, ids: Sequence[str], deleted_at: str) -> int:
        """Set ``deleted_at`` on the live rows of ``ids``; returns how many there were."""
        if not ids:
            return 0
        cursor = self.db.cursor()
        if self.sql.unindex_ids is not None:
            cursor.execute(self.sql.unindex_ids, (json.dumps(list(ids)),))
        cursor.executemany(self.sql.tombstone, [(deleted_at, i) for i in ids])
        return cursor.rowcount

    def write(
        self,
        entries: Sequence[TimeEntry],
        source: Source | str,
        synced_at: str,
        stored: Mapping[str, Stored],
    ) -> None:
        """Upsert rows (live), their tag links and the reference rows they name; ``stored``
        is what :meth:`load` returned for them."""
        if not entries:
            return
        cursor = self.db.cursor()
        self._upsert_refs_of(entries)
        # A new entry gets a fresh rowid here, so its links need no lookup (and a backfill
        # appends to the link B-trees instead of rewriting pages all over them).
        fresh = iter(self._new_rowids(sum(1 for e in entries if e.id not in stored)))
        source = str(source)
        rows, rowids, relinked, unindex, reindex = [], [], [], [], []
        inserted: list[TimeEntry] = []
        for e in entries:
            held = stored.get(e.id)
            if held is None:
                rowid = next(fresh)
                rows.append(row_of(e, source, synced_at, rowid))
                inserted.append(e)
                reindex.append(rowid)
            else:
                rowid = held.rowid
                rows.append(row_of(e, source, synced_at, rowid))
                if held.tags:
                    relinked.append((rowid,))
                if held.deleted_at is not None:
                    reindex.append(rowid)
                elif held.description != (e.description or ""):
                    unindex.append(e.id)
                    reindex.append(rowid)
            rowids.append(rowid)
        if relinked:
            cursor.executemany(self.sql.delete_links, relinked)
        if unindex and self.sql.unindex_ids is not None:
            cursor.execute(self.sql.unindex_ids, (json.dumps(unindex),))
        cursor.executemany(self.sql.upsert_entry, self.sql.storable(rows))
        if inserted:  # updates and revivals are counted by triggers
            cursor.executemany(self.sql.add_totals, totals_of(inserted))
        if reindex and self.sql.index_rowids is not None:
            cursor.execute(self.sql.index_rowids, (json.dumps(reindex),))
        links = [(r, t) for r, e in zip(rowids, entries, strict=True) for t in tag_ids(e)]
        if links:
            cursor.executemany(self.sql.insert_link, self.sql.storable(links))

    def _new_rowids(self, n: int) -> list[int]:
        """``n`` rowids no row of ``time_entries`` has, ascending."""
        if n == 0:
            return []
        cursor = self.db.cursor()
        cursor.execute(self.sql.new_rowids, (n,))
        return [rowid for (rowid,) in cursor.fetchall()]

    def _upsert_refs_of(self, entries: Sequence[TimeEntry]) -> None:
        """Upsert the members, clients, projects, tasks and tags the entries name; on
        conflict a NULL incoming value keeps the stored one."""
        refs: dict[str, dict[str, dict[str, object]]] = {kind: {} for kind in REF_COLUMNS}
        for e in entries:
            ws = e.workspace_id
            if e.team_member_id:
                refs["team_member"][e.team_member_id] = {
                    "id": e.team_member_id,
                    "workspace_id": ws,
                    "name": e.team_member_name,
                    "email": e.team_member_email,
                }
            if e.client_id:
                refs["client"][e.client_id] = {
                    "id": e.client_id,
                    "workspace_id": ws,
                    "name": e.client_name,
                }
            if e.project_id:
                refs["project"][e.project_id] = {
                    "id": e.project_id,
                    "workspace_id": ws,
                    "name": e.project_name,
                    "client_id": e.client_id,
                }
            if e.task_id:
                refs["task"][e.task_id] = {
                    "id": e.task_id,
                    "workspace_id": ws,
                    "project_id": e.project_id,
                    "name": e.task_name,
                }
            for t in e.tags:
                refs["tag"][t.id] = {
                    "id": t.id,
                    "workspace_id": ws,
                    "name": t.name,
                    "color": t.color,
                }
        cursor = self.db.cursor()
        for kind, by_id in refs.items():
            if by_id:
                columns = REF_COLUMNS[kind]
                rows = [tuple(ref[c] for c in columns) for ref in by_id.values()]
                cursor.executemany(self.sql.upsert_ref[kind], self.sql.storable(rows))
