"""Pushes: the webhook ledger (``webhook_events``) and applying a pushed entry, inside the
caller's write transaction.

**A push never resurrects what a later scan removed.** A pushed version revives a tombstone
only when its ``updated_at`` is strictly later than the tombstone's ``deleted_at`` (the
version was written after the scan that missed it); otherwise it is "stale" and the next scan
of its window decides.
"""

from __future__ import annotations

from syncd.records import Source, TimeEntry, WebhookEvent
from syncd.store import models as m
from syncd.store.entries import EntryWriter
from syncd.store.rows import at_least_as_new, is_newer


def apply_entry(writer: EntryWriter, entry: TimeEntry, source: Source, synced_at: str) -> str:
    """Upsert one pushed entry unless the mirror holds a version at least as new.

    Returns "inserted", "updated", "revived" (a tombstone older than the pushed
    ``updated_at``), "stale" (the mirror already has this or a newer version, or a scan
    after this version found the entry gone) or "ignored" (a workspace the mirror does not
    hold; nothing is written).
    """
    if not writer.has_workspace(entry.workspace_id):
        return "ignored"
    held = writer.load([entry.id]).get(entry.id)
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
    writer.write([entry], source, synced_at, {} if held is None else {entry.id: held})
    return result


def apply_push(
    writer: EntryWriter,
    event: WebhookEvent,
    received_at: str,
    entry: TimeEntry | None,
    outcome: str,
) -> str:
    """Ledger ``event``, apply ``entry`` (if any) and set the event's outcome.

    Returns "duplicate" (nothing written) when the event's key was seen, else what
    :func:`apply_entry` returned, or ``outcome`` when there is no entry.
    """
    if not record_event(event, received_at):
        return "duplicate"
    if entry is not None:
        outcome = apply_entry(writer, entry, Source.WEBHOOK, received_at)
    set_outcome(event.dedupe_key, outcome)
    return outcome


def unconfirmed_push_days(workspace_id: str, limit: int) -> list[tuple[str, str | None]]:
    """The ``(date, creation day or None)`` of at most ``limit`` live rows of the workspace
    written by a push that no scan has rewritten since (``source = 'webhook'``), the earliest
    received first."""
    TE = m.TimeEntry
    query = (
        TE.select(TE.date, TE.created_at)
        .where(
            (TE.workspace_id == workspace_id)
            & TE.deleted_at.is_null()
            & (TE.source == str(Source.WEBHOOK))
        )
        .order_by(TE.synced_at, TE.id)
        .limit(limit)
        .tuples()
    )
    return [(day, created[:10] if created else None) for day, created in query]


def record_event(event: WebhookEvent, received_at: str) -> bool:
    """Add the event to the ledger; False (and nothing written) if its key was seen."""
    inserted = (
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
    return inserted == 1


def set_outcome(dedupe_key: str, outcome: str) -> None:
    """Record what applying a ledgered event did (e.g. "inserted", "stale", "failed")."""
    W = m.WebhookEventRow
    W.update(outcome=outcome).where(W.dedupe_key == dedupe_key).execute()


def record_refused(
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
    False (and nothing written) if its key was seen."""
    inserted = (
        m.WebhookEventRow.insert(
            dedupe_key=dedupe_key,
            kind=kind,
            object_id=object_id,
            workspace_id=workspace_id,
            received_at=received_at,
            outcome="refused",
            delivery_id=delivery_id,
            reason=reason,
            body=body,
            body_bytes=body_bytes,
        )
        .on_conflict_ignore()
        .as_rowcount()
        .execute()
    )
    return inserted == 1
