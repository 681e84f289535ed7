"""Applying a complete window scan: upserts, revivals, tombstones, the mass-delete guard, and
the scan's own record, inside the caller's one write transaction.

Update rules:

* **updatedAt wins.** An incoming version replaces the stored one when its ``updated_at`` is
  not older (``>=``; equal timestamps with different content still update, so a renamed
  project reaches old entries). An older version never overwrites a newer one.
* **A complete scan is the truth for its window.** Entries in the scan are upserted (a
  tombstoned row in the scan is revived whatever its timestamps); live rows of the workspace
  whose stored ``date`` lies in the window and that the scan lacks are tombstoned with
  ``deleted_at = scan.scanned_at``.
* **A push is provisional.** A pushed version the scan's request left after is replaced by
  the scan's, whatever the timestamps say.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from peewee import fn

from syncd.errors import MassDeleteError
from syncd.records import TimeEntry, WindowOutcome, WindowScan, format_timestamp
from syncd.seams import MassDeletePolicy
from syncd.store import bookkeeping, quarantine, settings
from syncd.store import models as m
from syncd.store.entries import EntryWriter
from syncd.store.reports import LOW_DATE
from syncd.store.rows import at_least_as_new, dedupe_entries


def apply_window(writer: EntryWriter, scan: WindowScan, policy: MassDeletePolicy) -> WindowOutcome:
    """Apply one complete window scan (see module doc); the caller holds the transaction.

    Raises ``MassDeleteError`` (the caller rolls back) when the tombstones would pass what
    ``policy`` allows.
    """
    outcome = WindowOutcome()
    entries = dedupe_entries(scan.entries)
    writer.ensure_workspaces({scan.workspace_id, *(e.workspace_id for e in entries)})
    stored = writer.load([e.id for e in entries])
    to_write: list[TimeEntry] = []
    for entry in entries:
        held = stored.get(entry.id)
        if held is None:
            outcome.inserted += 1
            to_write.append(entry)
        elif held.deleted_at is not None:
            if _removed_after(scan, held.deleted_at, entry.date):
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
    candidates, maybe = _live_ids_in(writer, scan)
    gone = [i for i in candidates if i not in seen] if scan.proves_absence else []
    outcome.unresolved = tuple(u for u in maybe if u[0] not in seen)
    if gone and not policy.force:
        _guard_mass_delete(writer, scan, len(gone), policy)
    elif gone:  # forced: later scans count deletions from here on
        settings.put(_forced_key(scan.workspace_id), scan.scanned_at)

    writer.write(to_write, scan.source, scan.requested_at or scan.scanned_at, stored)
    outcome.tombstoned = writer.tombstone(gone, scan.scanned_at)
    outcome.quarantined = quarantine.record(writer.db, scan, entries, gone)
    bookkeeping.record_scan(scan, len(entries), outcome)
    if scan.state is not None:
        bookkeeping.save_state(scan.state)
    return outcome


def _live_ids_in(
    writer: EntryWriter, scan: WindowScan
) -> tuple[list[str], list[tuple[str, str, str]]]:
    """The live rows of the scan's range it may tombstone, and (while the window's field
    is unproven) those inside it under one reading only, as ``(id, date, created day)``.

    Rows written after the scan's request was sent are newer than its answer: neither.
    """
    low, high = scan.date_from or LOW_DATE, scan.date_to
    if scan.tombstone_by == "none":
        return [], []
    cursor = writer.db.cursor()
    if scan.tombstone_by == "date":
        params = (scan.workspace_id, low, high, scan.requested_at, scan.requested_at)
        cursor.execute(writer.sql.live_ids_in_window, params)
        return [i for (i,) in cursor], []
    cursor.execute(
        writer.sql.live_rows_either_reading,
        (
            scan.workspace_id,
            low,
            high,
            low,
            bookkeeping.next_day(high),
            scan.requested_at,
            scan.requested_at,
        ),
    )
    candidates: list[str] = []
    unresolved: list[tuple[str, str, str]] = []
    for entry_id, day, created in cursor.fetchall():
        by_date = low <= day <= high
        by_created = by_date if created is None else low <= created <= high
        both = scan.tombstone_by == "both"
        if by_created and (by_date or not both):
            candidates.append(entry_id)
        elif both:
            unresolved.append((entry_id, day, created))
    return candidates, unresolved


def _removed_after(scan: WindowScan, deleted_at: str, day: str) -> bool:
    """Whether a tombstone made after ``scan``'s request was sent must stand.

    It stands when a delete event made it (no scan recorded at that moment) or a newer
    scan covering the entry's date did; a newer scan of another window (the entry's date
    moved) does not count.
    """
    if scan.requested_at is None or deleted_at <= scan.requested_at:
        return False
    W = m.WindowScanRow
    windows = (
        W.select(W.date_from, W.date_to)
        .where((W.workspace_id == scan.workspace_id) & (W.scanned_at == deleted_at))
        .tuples()
    )
    return any((f is None or f <= day) and day <= t for f, t in windows)


def _guard_mass_delete(
    writer: EntryWriter, scan: WindowScan, gone: int, policy: MassDeletePolicy
) -> None:
    """Raise ``MassDeleteError`` when this scan's tombstones, added to those scans made in
    the workspace over the last day (since the last ``--force-delete``), pass the share
    of the workspace's live entries. Counting recent scans keeps the guard meaningful when
    a mass deletion is split over many small windows, runs or processes."""
    since = _minus_day(scan.scanned_at)
    forced = settings.get(_forced_key(scan.workspace_id))
    if forced is not None and forced > since:
        since = forced
    W = m.WindowScanRow
    recent = (
        W.select(fn.COALESCE(fn.SUM(W.tombstoned), 0))
        .where((W.workspace_id == scan.workspace_id) & (W.scanned_at > since))
        .scalar()
    )
    total = gone + int(recent)
    if total < policy.minimum:
        return
    live = writer.count_live(scan.workspace_id) + int(recent)
    if total > policy.share * live:
        raise MassDeleteError(
            workspace_id=scan.workspace_id,
            would_delete=total,
            live=live,
            threshold=policy.share,
        )


def _forced_key(workspace_id: str) -> str:
    """The setting recording when deletions were last forced in a workspace."""
    return f"mass_delete_forced_at:{workspace_id}"


def _minus_day(timestamp: str) -> str:
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00")) - timedelta(days=1)
    return format_timestamp(moment)
