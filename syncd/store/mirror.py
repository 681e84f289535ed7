"""The mirror store: every read and write the daemon and the CLI make (synchronous peewee).

All writes run in ``BEGIN IMMEDIATE`` transactions (the write lock is taken up front, so a
concurrent writer waits on the busy timeout instead of failing half-way). ``AsyncStore``
(``asyncstore.py``) runs these methods on one dedicated thread for asyncio callers.

Update rules, in one place:

* **updatedAt wins.** An incoming version replaces the stored one when its ``updated_at`` is
  not older (``>=``; equal timestamps with different content still update, so a renamed
  project reaches old entries). An older version never overwrites a newer one.
* **A complete scan is the truth for its window.** Entries in the scan are upserted (a
  tombstoned row in the scan is revived whatever its timestamps); live rows of the workspace
  whose stored ``date`` lies in the window and that the scan lacks are tombstoned with
  ``deleted_at = scan.scanned_at``.
* **A push never resurrects what a later scan removed.** A pushed version revives a tombstone
  only when its ``updated_at`` is strictly later than the tombstone's ``deleted_at``
  (the version was written after the scan that missed it); otherwise it is "stale" and the
  next scan of its window decides.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import peewee
import stamina
from peewee import SqliteDatabase, chunked, fn

from syncd.errors import MassDeleteError, SchemaTooNew
from syncd.records import (
    RunReport,
    Source,
    TimeEntry,
    WebhookEvent,
    WindowOutcome,
    WindowScan,
    Workspace,
    WorkspaceState,
    format_timestamp,
)
from syncd.store import migrations, quarantine, reports, status_reads
from syncd.store import models as m
from syncd.store.checkpoint import Checkpointer
from syncd.store.failures import storage_error
from syncd.store.filemodes import create_mirror_file
from syncd.store.rows import (
    CONTENT_COLUMNS,
    Row,
    at_least_as_new,
    content_of,
    dedupe_entries,
    description_of,
    is_newer,
    row_of,
    tag_ids,
    totals_of,
    updated_at_of,
)
from syncd.store.statements import REF_COLUMNS, build

P = ParamSpec("P")
T = TypeVar("T")

CHUNK = 500  # rows per insert_many statement (well below SQLite's bound-variable limit)
WAL_SIZE_LIMIT = 8 * 2**20  # bytes of WAL file kept once a checkpoint has copied it
PRAGMAS: dict[str, Any] = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "foreign_keys": 1,
    "cache_size": -64000,  # KiB
    "temp_store": "memory",
    # Checkpoint the WAL every ~32 MB instead of every ~4 MB: a backfill commits thousands of
    # rows per window, and each checkpoint is an fsync of the database.
    "wal_autocheckpoint": 8000,
    # Once a checkpoint has copied the WAL, the next write starts it over and cuts the file
    # back to this size: a backfill's WAL does not stay on disk for the daemon's lifetime.
    "journal_size_limit": WAL_SIZE_LIMIT,
}
#: With checkpoints in the background, the writer checkpoints only past this many WAL pages
#: (64 MB): what the background has not copied yet, after which the WAL starts over.
BACKSTOP_CHECKPOINT_PAGES = 16_000
REFERENCE_KINDS = tuple(REF_COLUMNS)
#: The verification tiers' progress, kept in ``sync_state`` (migration 0012).
TIER_FIELDS = (
    "warm_before",
    "warm_pass_at",
    "warm_verified_at",
    "cold_pass_at",
    "cold_verified_at",
    "full_before",
    "full_started_at",
)

_CONTENT_FIELDS = [getattr(m.TimeEntry, c) for c in CONTENT_COLUMNS]


def _store_call(method: Callable[P, T]) -> Callable[P, T]:
    """Bind the models to this store's database and turn SQLite failures into StoreError."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        self = args[0]
        try:
            with self.db.bind_ctx(m.ALL_MODELS, bind_refs=False, bind_backrefs=False):  # type: ignore[attr-defined]
                return method(*args, **kwargs)
        except (peewee.DatabaseError, sqlite3.Error) as exc:
            raise storage_error(exc, f"mirror database {self.path}", self.path) from exc  # type: ignore[attr-defined]

    return wrapper


class Store:
    """The mirror database at ``path`` (created and migrated on open).

    With ``checkpoint_in_background`` a thread copies the WAL into the database after
    commits, so no write waits for a checkpoint (see ``checkpoint.py``).

    Raises ``SchemaTooNew`` when the file was migrated by a newer syncd and ``StoreError``
    when it cannot be opened (not a database, unwritable directory, locked for longer than
    ``timeout`` seconds).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        timeout: float = 30.0,
        migrate: bool = True,
        checkpoint_in_background: bool = False,
    ) -> None:
        self.path = str(path)
        if migrate:
            create_mirror_file(self.path)  # 0640; SQLite gives -wal and -shm the same mode
        self.db = SqliteDatabase(self.path, timeout=timeout, pragmas=PRAGMAS)
        self._checkpointer: Checkpointer | None = None
        try:
            # Switching a new file to WAL takes an exclusive lock, and SQLite answers "locked"
            # at once instead of waiting out the busy timeout: two processes creating the
            # mirror together retry here (jittered) until ``timeout``.
            for attempt in stamina.retry_context(
                on=_locked, attempts=None, timeout=timeout, wait_initial=0.02, wait_max=0.5
            ):
                with attempt:
                    self.db.connect(reuse_if_open=True)
            if migrate:
                migrations.migrate(self.db)
            else:
                migrations.check_not_too_new(self.db)
            with self.db.bind_ctx(m.ALL_MODELS, bind_refs=False, bind_backrefs=False):
                self._sql = build(self.db)
            if checkpoint_in_background:
                self.db.execute_sql(f"PRAGMA wal_autocheckpoint = {BACKSTOP_CHECKPOINT_PAGES}")
                self._checkpointer = Checkpointer(self.path, timeout=timeout)
        except SchemaTooNew:
            self.db.close()
            raise
        except (peewee.DatabaseError, sqlite3.Error) as exc:
            self.db.close()
            raise storage_error(exc, f"cannot open mirror database {self.path}", self.path) from exc

    def close(self) -> None:
        """Close this thread's connection (idempotent), after the checkpoint thread's."""
        if self._checkpointer is not None:
            self._checkpointer.close()
        if not self.db.is_closed():
            self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[None]:
        with self.db.atomic("IMMEDIATE"):
            yield
        if self._checkpointer is not None:
            self._checkpointer.committed()

    # ------------------------------------------------------------------ workspaces, state

    @_store_call
    def upsert_workspaces(self, workspaces: Sequence[Workspace], synced_at: str) -> None:
        rows = [(w.id, w.name, synced_at) for w in workspaces]
        if not rows:
            return
        with self._write():
            for chunk in chunked(rows, CHUNK):
                (
                    m.Workspace.insert_many(
                        chunk, fields=[m.Workspace.id, m.Workspace.name, m.Workspace.synced_at]
                    )
                    .on_conflict(
                        conflict_target=[m.Workspace.id],
                        preserve=[m.Workspace.name, m.Workspace.synced_at],
                    )
                    .execute()
                )

    @_store_call
    def workspace_state(self, workspace_id: str) -> WorkspaceState:
        row = m.SyncState.get_or_none(m.SyncState.workspace_id == workspace_id)
        if row is None:
            return WorkspaceState(workspace_id=workspace_id)
        return WorkspaceState(
            workspace_id=row.workspace_id,
            backfill_before=row.backfill_before,
            backfill_complete=bool(row.backfill_complete),
            oldest_date=row.oldest_date,
            reconcile_before=row.reconcile_before,
            window_days=row.window_days,
            last_hot_scan_at=row.last_hot_scan_at,
            last_reconcile_at=row.last_reconcile_at,
            **{name: getattr(row, name) for name in TIER_FIELDS},
        )

    @_store_call
    def save_state(self, state: WorkspaceState) -> None:
        with self._write():
            self._save_state(state)

    def _save_state(self, state: WorkspaceState) -> None:
        values = {
            "workspace_id": state.workspace_id,
            "backfill_before": state.backfill_before,
            "backfill_complete": state.backfill_complete,
            "oldest_date": state.oldest_date,
            "reconcile_before": state.reconcile_before,
            "window_days": state.window_days,
            "last_hot_scan_at": state.last_hot_scan_at,
            "last_reconcile_at": state.last_reconcile_at,
            **{name: getattr(state, name) for name in TIER_FIELDS},
        }
        preserve = [getattr(m.SyncState, k) for k in values if k != "workspace_id"]
        m.SyncState.insert(values).on_conflict(
            conflict_target=[m.SyncState.workspace_id], preserve=preserve
        ).execute()

    @_store_call
    def oldest_entry_date(self, workspace_id: str) -> str | None:
        """The oldest ``date`` of any entry of the workspace, tombstones included."""
        TE = m.TimeEntry
        return TE.select(fn.MIN(TE.date)).where(TE.workspace_id == workspace_id).scalar()

    @_store_call
    def last_scan_covering(self, workspace_id: str, day: str) -> str | None:
        """When ``day`` of the workspace was last verified by a walk (the newest backfill,
        poll or reconciliation row of ``window_scans`` whose range holds it; a re-scan after
        a push is left out), or None when it never was."""
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

    @_store_call
    def count_live_entries(
        self,
        workspace_id: str,
        date_from: str | None = None,
        date_to: str | None = None,
        by: str = "date",
    ) -> int:
        """Live entries of the workspace whose ``date`` (``by="date"``), creation day
        (``"created_at"``) or both (``"both"``) lie in ``[date_from, date_to]``."""
        TE = m.TimeEntry
        low, high = date_from or reports.LOW_DATE, date_to or reports.HIGH_DATE
        where = (TE.workspace_id == workspace_id) & TE.deleted_at.is_null()
        if by in ("date", "both"):
            where &= (TE.date >= low) & (TE.date <= high)
        if by in ("created_at", "both"):
            where &= (TE.created_at >= low) & (TE.created_at < _next_day(high))
        return int(TE.select(fn.COUNT(TE.id)).where(where).scalar() or 0)

    @_store_call
    def running_entry_dates(self, workspace_id: str) -> list[str]:
        """Dates (YYYY-MM-DD, ascending, distinct) of live entries held as running timers."""
        cursor = self.db.execute_sql(
            "SELECT DISTINCT date FROM running_timers WHERE workspace_id = ? ORDER BY date",
            (workspace_id,),
        )
        return [d for (d,) in cursor.fetchall()]

    # ------------------------------------------------------------------ entries

    @_store_call
    def apply_window(self, scan: WindowScan) -> WindowOutcome:
        """Apply one complete window scan in one IMMEDIATE transaction (see module doc).

        Raises ``MassDeleteError`` (nothing written) when the tombstones would exceed
        ``scan.mass_delete_share`` of the workspace's live entries and number at least
        ``scan.mass_delete_min``, unless ``scan.force_delete``; ``StoreError`` when the
        database fails (nothing written either).
        """
        outcome = WindowOutcome()
        entries = dedupe_entries(scan.entries)
        with self._write():
            self._ensure_workspaces({scan.workspace_id, *(e.workspace_id for e in entries)})
            stored = self._load_stored([e.id for e in entries])
            to_write: list[TimeEntry] = []
            for entry in entries:
                held = stored.get(entry.id)
                if held is None:
                    outcome.inserted += 1
                    to_write.append(entry)
                elif held.deleted_at is not None:
                    if self._removed_after(scan, held.deleted_at, entry.date):
                        outcome.unchanged += 1  # gone since this answer was read: stays gone
                        continue
                    outcome.revived += 1
                    to_write.append(entry)
                elif held.pushed_before(scan.requested_at):
                    # A push is provisional: the scan's version wins whatever the timestamps.
                    if held.same_as(entry):
                        outcome.unchanged += 1
                    else:
                        outcome.updated += 1
                    to_write.append(entry)
                elif not at_least_as_new(entry.updated_at, held.updated_at) or held.same_as(entry):
                    outcome.unchanged += 1
                else:
                    outcome.updated += 1
                    to_write.append(entry)

            seen = {e.id for e in entries} | scan.dropped_ids  # quarantined: rows kept as they are
            candidates, maybe = self._live_ids_in(scan)
            gone = [i for i in candidates if i not in seen] if scan.proves_absence else []
            outcome.unresolved = tuple(u for u in maybe if u[0] not in seen)
            if gone and not scan.force_delete:
                self._guard_mass_delete(scan, len(gone))
            elif gone:  # forced: later scans count deletions from here on
                self.db.execute_sql(
                    "INSERT INTO installation (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (_ack_key(scan.workspace_id), scan.scanned_at),
                )

            self._write_entries(to_write, scan.source, scan.requested_at or scan.scanned_at, stored)
            outcome.tombstoned = self._tombstone(gone, scan.scanned_at)
            outcome.quarantined = quarantine.record(self.db, scan, entries, gone)
            m.WindowScanRow.insert(
                workspace_id=scan.workspace_id,
                date_from=scan.date_from,
                date_to=scan.date_to,
                scanned_at=scan.scanned_at,
                source=str(scan.source),
                entries=len(entries),
                inserted=outcome.inserted,
                updated=outcome.updated,
                tombstoned=outcome.tombstoned,
                revived=outcome.revived,
                run_id=scan.run_id,
            ).execute()
            if scan.state is not None:
                self._save_state(scan.state)
        return outcome

    @_store_call
    def apply_pushed_entry(self, entry: TimeEntry, source: Source, synced_at: str) -> str:
        """Upsert one pushed entry unless the mirror holds a version at least as new.

        Returns "inserted", "updated", "revived" (a tombstone older than the pushed
        ``updated_at``), "stale" (the mirror already has this or a newer version, or a
        scan after this version found the entry gone) or "ignored" (a workspace the mirror
        does not hold; nothing is written).
        """
        with self._write():
            if not m.Workspace.select().where(m.Workspace.id == entry.workspace_id).exists():
                return "ignored"  # a workspace the mirror does not hold: nothing is written
            held = self._load_stored([entry.id]).get(entry.id)
            if held is None:
                result = "inserted"
            elif held.deleted_at is not None:
                if not is_newer(entry.updated_at, held.deleted_at):
                    return "stale"
                result = "revived"
            elif not at_least_as_new(entry.updated_at, held.updated_at) or held.same_as(entry):
                return "stale"
            else:
                result = "updated"
            self._write_entries(
                [entry], source, synced_at, {} if held is None else {entry.id: held}
            )
            return result

    @_store_call
    def tombstone_entry(self, entry_id: str, deleted_at: str) -> bool:
        """Tombstone one live entry (a delete event); False if unknown or already gone."""
        with self._write():
            return self._tombstone([entry_id], deleted_at) > 0

    @_store_call
    def upsert_reference(self, kind: str, workspace_id: str, obj: Mapping[str, Any]) -> None:
        """Upsert a client, project, task, team member or tag (e.g. from a create event).

        ``obj`` holds snake_case keys: ``id`` and optionally ``name``, ``client_id``,
        ``project_id``, ``email``, ``color``; missing values keep what is stored.
        Raises ``ValueError`` for an unknown ``kind`` or a missing ``id``.
        """
        if kind not in REFERENCE_KINDS:
            raise ValueError(f"unknown reference kind {kind!r}")
        if not obj.get("id"):
            raise ValueError("reference object without an id")
        values = {**obj, "id": str(obj["id"]), "workspace_id": workspace_id}
        row = tuple(values.get(c) for c in REF_COLUMNS[kind])
        with self._write():
            self._upsert_refs(kind, [row])

    # ------------------------------------------------------------------ internals

    def _ensure_workspaces(self, ids: Iterable[str]) -> None:
        rows = [(i, None, None) for i in sorted(set(ids))]
        m.Workspace.insert_many(
            rows, fields=[m.Workspace.id, m.Workspace.name, m.Workspace.synced_at]
        ).on_conflict_ignore().execute()

    def _load_stored(self, ids: Sequence[str]) -> dict[str, _Stored]:
        if not ids:
            return {}
        cursor = self.db.cursor()
        arg = json.dumps(list(ids))
        stored = {
            row[0]: _Stored(row[:-4], *row[-4:])
            for row in cursor.execute(self._sql.select_stored, (arg,))
        }
        if stored:
            by_rowid = {held.rowid: held for held in stored.values()}
            arg = json.dumps(list(by_rowid))
            for rowid, tag_id in cursor.execute(self._sql.select_links, (arg,)):
                by_rowid[rowid].tags.append(tag_id)
        return stored

    def _live_ids_in(self, scan: WindowScan) -> tuple[list[str], list[tuple[str, str, str]]]:
        """The live rows of the scan's range it may tombstone, and (while the window's field
        is unproven) those inside it under one reading only, as ``(id, date, created day)``.

        Rows written after the scan's request was sent are newer than its answer: neither.
        """
        low, high = scan.date_from or reports.LOW_DATE, scan.date_to
        if scan.tombstone_by == "none":
            return [], []
        if scan.tombstone_by == "date":
            params = (scan.workspace_id, low, high, scan.requested_at, scan.requested_at)
            cursor = self.db.cursor().execute(self._sql.live_ids_in_window, params)
            return [i for (i,) in cursor], []
        rows = self.db.execute_sql(
            "SELECT id, date, substr(created_at, 1, 10) FROM time_entries "
            "WHERE workspace_id = ? AND deleted_at IS NULL "
            "AND ((date >= ? AND date <= ?) OR (created_at >= ? AND created_at < ?)) "
            "AND (? IS NULL OR synced_at IS NULL OR synced_at <= ?)",
            (
                scan.workspace_id,
                low,
                high,
                low,
                _next_day(high),
                scan.requested_at,
                scan.requested_at,
            ),
        ).fetchall()
        candidates: list[str] = []
        unresolved: list[tuple[str, str, str]] = []
        for entry_id, day, created in rows:
            by_date = low <= day <= high
            by_created = by_date if created is None else low <= created <= high
            both = scan.tombstone_by == "both"
            if by_created and (by_date or not both):
                candidates.append(entry_id)
            elif both:
                unresolved.append((entry_id, day, created))
        return candidates, unresolved

    def _removed_after(self, scan: WindowScan, deleted_at: str, day: str) -> bool:
        """Whether a tombstone made after ``scan``'s request was sent must stand.

        It stands when a delete event made it (no scan recorded at that moment) or a newer
        scan covering the entry's date did; a newer scan of another window (the entry's date
        moved) does not count.
        """
        if scan.requested_at is None or deleted_at <= scan.requested_at:
            return False
        windows = self.db.execute_sql(
            "SELECT date_from, date_to FROM window_scans WHERE workspace_id = ? AND scanned_at = ?",
            (scan.workspace_id, deleted_at),
        ).fetchall()
        return any((f is None or f <= day) and day <= t for f, t in windows)

    def _guard_mass_delete(self, scan: WindowScan, gone: int) -> None:
        """Raise ``MassDeleteError`` when this scan's tombstones, added to those scans made in
        the workspace over the last day (since the last ``--force-delete``), pass the share
        of the workspace's live entries. Counting recent scans keeps the guard meaningful when
        a mass deletion is split over many small windows, runs or processes."""
        since = _minus_day(scan.scanned_at)
        row = self.db.execute_sql(
            "SELECT value FROM installation WHERE key = ?", (_ack_key(scan.workspace_id),)
        ).fetchone()
        if row is not None and row[0] > since:
            since = row[0]
        recent = self.db.execute_sql(
            "SELECT COALESCE(SUM(tombstoned), 0) FROM window_scans "
            "WHERE workspace_id = ? AND scanned_at > ?",
            (scan.workspace_id, since),
        ).fetchone()[0]
        total = gone + int(recent)
        if total < scan.mass_delete_min:
            return
        live = self._count_live(scan.workspace_id) + int(recent)
        if total > scan.mass_delete_share * live:
            raise MassDeleteError(
                workspace_id=scan.workspace_id,
                would_delete=total,
                live=live,
                threshold=scan.mass_delete_share,
            )

    def _count_live(self, workspace_id: str) -> int:
        TE = m.TimeEntry
        query = TE.select(fn.COUNT(TE.id)).where(
            (TE.workspace_id == workspace_id) & TE.deleted_at.is_null()
        )
        return int(query.scalar() or 0)

    def _tombstone(self, ids: Sequence[str], deleted_at: str) -> int:
        if not ids:
            return 0
        cursor = self.db.cursor()
        cursor.execute(self._sql.unindex_ids, (json.dumps(list(ids)),))
        cursor.executemany(self._sql.tombstone, [(deleted_at, i) for i in ids])
        return cursor.rowcount

    def _write_entries(
        self,
        entries: Sequence[TimeEntry],
        source: Source | str,
        synced_at: str,
        stored: Mapping[str, _Stored],
    ) -> None:
        """Upsert rows, their tag links and the reference tables they name."""
        if not entries:
            return
        cursor = self.db.cursor()
        self._upsert_refs_of(entries)
        # A new entry gets the next free rowid here, so its links need no lookup (and a
        # backfill appends to the link B-trees instead of rewriting pages all over them).
        next_rowid = cursor.execute("SELECT IFNULL(MAX(rowid), 0) FROM time_entries").fetchone()[0]
        source = str(source)
        rows, rowids, relinked, unindex, reindex = [], [], [], [], []
        inserted: list[TimeEntry] = []
        for e in entries:
            held = stored.get(e.id)
            if held is None:
                next_rowid += 1
                rowid = next_rowid
                rows.append(row_of(e, source, synced_at, rowid))
                inserted.append(e)
                reindex.append(rowid)
            else:
                rowid = held.rowid
                rows.append(row_of(e, source, synced_at))
                if held.tags:
                    relinked.append((rowid,))
                if held.deleted_at is not None:
                    reindex.append(rowid)
                elif held.description != (e.description or ""):
                    unindex.append(e.id)
                    reindex.append(rowid)
            rowids.append(rowid)
        if relinked:
            cursor.executemany(self._sql.delete_links, relinked)
        if unindex:
            cursor.execute(self._sql.unindex_ids, (json.dumps(unindex),))
        cursor.executemany(self._sql.upsert_entry, rows)
        if inserted:  # updates and revivals are counted by triggers
            cursor.executemany(self._sql.add_totals, totals_of(inserted))
        if reindex:
            cursor.execute(self._sql.index_rowids, (json.dumps(reindex),))
        links = [(r, t) for r, e in zip(rowids, entries, strict=True) for t in tag_ids(e)]
        if links:
            cursor.executemany(self._sql.insert_link, links)

    def _upsert_refs_of(self, entries: Sequence[TimeEntry]) -> None:
        members: dict[str, tuple] = {}
        projects: dict[str, tuple] = {}
        clients: dict[str, tuple] = {}
        tasks: dict[str, tuple] = {}
        tags: dict[str, tuple] = {}
        for e in entries:
            ws = e.workspace_id
            if e.team_member_id:
                members[e.team_member_id] = (
                    e.team_member_id,
                    ws,
                    e.team_member_name,
                    e.team_member_email,
                )
            if e.client_id:
                clients[e.client_id] = (e.client_id, ws, e.client_name)
            if e.project_id:
                projects[e.project_id] = (e.project_id, ws, e.project_name, e.client_id)
            if e.task_id:
                tasks[e.task_id] = (e.task_id, ws, e.project_id, e.task_name)
            for t in e.tags:
                tags[t.id] = (t.id, ws, t.name, t.color)
        for kind, rows in (
            ("team_member", members),
            ("client", clients),
            ("project", projects),
            ("task", tasks),
            ("tag", tags),
        ):
            if rows:
                self._upsert_refs(kind, list(rows.values()))

    def _upsert_refs(self, kind: str, rows: list[tuple]) -> None:
        """Upsert reference rows; on conflict a NULL incoming value keeps the stored one."""
        self.db.cursor().executemany(self._sql.upsert_ref[kind], rows)

    # ------------------------------------------------------------------ webhooks, runs

    @_store_call
    def record_webhook_event(self, event: WebhookEvent, received_at: str) -> bool:
        """Add the event to the ledger; False (and nothing written) if its key was seen."""
        with self._write():
            cursor = (
                m.WebhookEventRow.insert(
                    dedupe_key=event.dedupe_key,
                    kind=str(event.kind),
                    object_id=event.object_id,
                    workspace_id=event.workspace_id,
                    updated_at=event.updated_at,
                    received_at=received_at,
                    outcome="received",
                    delivery_id=event.delivery_id,
                )
                .on_conflict_ignore()
                .as_rowcount()
                .execute()
            )
        return cursor == 1

    @_store_call
    def set_webhook_outcome(self, dedupe_key: str, outcome: str) -> None:
        """Record what applying a ledgered event did (e.g. "inserted", "stale", "failed")."""
        with self._write():
            m.WebhookEventRow.update(outcome=outcome).where(
                m.WebhookEventRow.dedupe_key == dedupe_key
            ).execute()

    @_store_call
    def record_refused_webhook(
        self,
        *,
        dedupe_key: str,
        kind: str,
        object_id: str,
        workspace_id: str | None,
        delivery_id: str | None,
        reason: str,
        body: str,
        body_bytes: int,
        received_at: str,
    ) -> bool:
        """Ledger a delivery syncd will not use (outcome ``refused``); writes nothing else.
        False (and nothing written) if its key was seen. Raises ``StoreError``."""
        with self._write():
            cursor = self.db.execute_sql(
                "INSERT OR IGNORE INTO webhook_events (dedupe_key, kind, object_id, "
                "workspace_id, received_at, outcome, delivery_id, reason, body, body_bytes) "
                "VALUES (?, ?, ?, ?, ?, 'refused', ?, ?, ?, ?)",
                (
                    dedupe_key,
                    kind,
                    object_id,
                    workspace_id,
                    received_at,
                    delivery_id,
                    reason,
                    body,
                    body_bytes,
                ),
            )
        return cursor.rowcount == 1

    @_store_call
    def workspace_ids(self) -> set[str]:
        """Ids of every workspace the mirror knows."""
        return {i for (i,) in self.db.execute_sql("SELECT id FROM workspaces").fetchall()}

    @_store_call
    def start_run(self, kind: str, started_at: str) -> int:
        with self._write():
            return int(m.SyncRun.insert(kind=kind, started_at=started_at).execute())

    @_store_call
    def finish_run(self, run_id: int, report: RunReport) -> None:
        o = report.outcome
        with self._write():
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

    # ------------------------------------------------------------------ settings, status

    @_store_call
    def get_setting(self, key: str) -> str | None:
        row = m.Installation.get_or_none(m.Installation.key == key)
        return None if row is None else row.value

    @_store_call
    def set_setting(self, key: str, value: str | None) -> None:
        """Store a setting; ``None`` removes it."""
        with self._write():
            if value is None:
                m.Installation.delete().where(m.Installation.key == key).execute()
            else:
                m.Installation.insert(key=key, value=value).on_conflict(
                    conflict_target=[m.Installation.key], preserve=[m.Installation.value]
                ).execute()

    @_store_call
    def status(self) -> dict[str, Any]:
        """What the mirror holds and how far syncd got (see :mod:`syncd.store.status_reads`)."""
        return status_reads.read(self)

    @_store_call
    def mirror_snapshot(self, workspace_id: str) -> list[dict[str, Any]]:
        """Every live entry of the workspace as a dict (content columns + sorted ``tags``)."""
        TE = m.TimeEntry
        out: dict[str, dict[str, Any]] = {}
        query = (
            TE.select(*_CONTENT_FIELDS)
            .where((TE.workspace_id == workspace_id) & TE.deleted_at.is_null())
            .order_by(TE.id)
            .dicts()
        )
        for row in query:
            row["billable"] = bool(row["billable"])
            row["manually_entered"] = bool(row["manually_entered"])
            row["tags"] = []
            out[row["id"]] = row
        links = self.db.execute_sql(
            "SELECT e.id, l.tag_id FROM time_entry_tag_links AS l "
            "JOIN time_entries AS e ON e.rowid = l.entry_rowid "
            "WHERE e.workspace_id = ? AND e.deleted_at IS NULL ORDER BY e.id, l.tag_id",
            (workspace_id,),
        )
        for entry_id, tag_id in links:
            out[entry_id]["tags"].append(tag_id)
        return list(out.values())

    @_store_call
    def search(
        self,
        text: str,
        *,
        since: str | None = None,
        until: str | None = None,
        workspace_id: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Live entries whose description matches the FTS5 query ``text``, newest first."""
        cursor = self.db.execute_sql(
            reports.SEARCH_SQL, reports.search_params(text, since, until, workspace_id, limit)
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    @_store_call
    def report_hours(
        self,
        by: str,
        since: str | None = None,
        until: str | None = None,
        workspace_id: str | None = None,
    ) -> tuple[list[str], list[tuple]]:
        """Hours grouped by project/client/member/day/week/month; raises ``UsageError``."""
        cursor = self.db.execute_sql(
            reports.hours_report_sql(by), reports.hours_report_params(since, until, workspace_id)
        )
        return [d[0] for d in cursor.description], cursor.fetchall()

    @_store_call
    def rebuild_search(self) -> None:
        """Rebuild the description index from the live rows (after external tools edit rows)."""
        with self._write():
            for sql in reports.REBUILD_SEARCH:
                self.db.execute_sql(sql)

    @_store_call
    def applied_migrations(self) -> list[str]:
        return migrations.applied_migrations(self.db)


class _Stored:
    """What the mirror holds for one entry: comparable content, tombstone, tag ids, and
    where and when it came from."""

    __slots__ = ("content", "deleted_at", "rowid", "source", "synced_at", "tags")

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
        return self.content == content_of(entry) and tuple(sorted(self.tags)) == tag_ids(entry)


def _next_day(day: str) -> str:
    """The day after ``day`` as text that sorts after every timestamp of ``day``."""
    if day >= "9999-12-31":
        return "9999-12-32"
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def _locked(exc: Exception) -> bool:
    return isinstance(exc, peewee.OperationalError) and "locked" in str(exc)


def _ack_key(workspace_id: str) -> str:
    """The ``installation`` key recording when deletions were last forced in a workspace."""
    return f"mass_delete_forced_at:{workspace_id}"


def _minus_day(timestamp: str) -> str:
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00")) - timedelta(days=1)
    return format_timestamp(moment)


def open_store(path: str | Path, *, timeout: float = 30.0) -> Store:
    """Open (creating and migrating if needed) the mirror at ``path``.

    Raises ``SchemaTooNew`` or ``StoreError``.
    """
    return Store(path, timeout=timeout)
