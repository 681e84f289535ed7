"""Quarantined upstream entries: the ``rejected_entries`` table.

An entry syncd cannot store as given (``api.check_time_entry``) is stored with the offending
fields cleared, or not at all, and recorded here with its reason and the start of its JSON.
A row is keyed by workspace and entry id (an entry without a usable id by a digest of its
body), counted each time a scan brings the entry back quarantined, and removed once a scan
finds the entry clean or gone. Everything here runs inside ``Store.apply_window``'s
transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence

from peewee import Database

from syncd.records import Rejection, TimeEntry, WindowScan
from syncd.store import reports
from syncd.store.backend import execute, portable
from syncd.store.statements import json_values

_UPSERT = """
    INSERT INTO rejected_entries (
        workspace_id, entry_key, id, date, reason, stored, raw, raw_bytes,
        first_seen_at, last_seen_at, seen_count
    ) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)
    ON CONFLICT (workspace_id, entry_key) DO UPDATE SET
        id = excluded.id, date = excluded.date, reason = excluded.reason,
        stored = excluded.stored, raw = excluded.raw, raw_bytes = excluded.raw_bytes,
        last_seen_at = excluded.last_seen_at, seen_count = rejected_entries.seen_count + 1"""
_FORGET_IDS = """
    DELETE FROM rejected_entries
    WHERE workspace_id = ? AND entry_key IN ({ids})"""
_FORGET_IN_WINDOW = """
    DELETE FROM rejected_entries
    WHERE workspace_id = ? AND date >= ? AND date <= ? AND last_seen_at < ?"""


def entry_key(rejection: Rejection) -> str:
    """The row key of a rejection: the entry id, or ``sha256:`` and a digest of the kept body
    and its size for an entry without a usable id."""
    if rejection.entry_id is not None:
        return rejection.entry_id
    digest = hashlib.sha256(f"{rejection.raw_bytes}:{rejection.raw}".encode()).hexdigest()
    return f"sha256:{digest[:32]}"


def record(
    db: Database, scan: WindowScan, entries: Iterable[TimeEntry], gone: Sequence[str]
) -> frozenset[str]:
    """Record ``scan.rejected`` and forget the workspace's entries the scan found clean
    (``entries`` without a rejection), tombstoned (``gone``) or, dated in its window, no longer
    quarantined. Returns the entries the scan quarantined, as ``workspace/key``.

    Raises ``peewee.DatabaseError`` (``apply_window`` turns it into ``StoreError``).
    """
    ws = scan.workspace_id
    if not scan.rejected:
        held = execute(
            db, "SELECT 1 FROM rejected_entries WHERE workspace_id = ? LIMIT 1", (ws,)
        ).fetchone()
        if held is None:  # the common case: nothing quarantined, nothing to forget
            return frozenset()
    at = scan.scanned_at
    keys: dict[str, tuple] = {}
    for r in scan.rejected:
        key = entry_key(r)
        keys[key] = (
            r.workspace_id or ws,
            key,
            r.entry_id,
            r.date,
            r.reason,
            1 if r.stored else 0,
            r.raw,
            r.raw_bytes,
            at,
            at,
        )
    if keys:
        db.cursor().executemany(portable(db, _UPSERT), list(keys.values()))
    forget = [e.id for e in entries if e.id not in keys]
    forget.extend(i for i in gone if i not in keys)
    if forget:
        execute(db, _FORGET_IDS.format(ids=json_values(db)), (ws, json.dumps(forget)))
    execute(db, _FORGET_IN_WINDOW, (ws, scan.date_from or reports.LOW_DATE, scan.date_to, at))
    return frozenset(f"{row[0]}/{key}" for key, row in keys.items())


def counts(db: Database) -> dict[str, int]:
    """Quarantined entries per workspace id."""
    rows = db.execute_sql(
        "SELECT workspace_id, COUNT(*) FROM rejected_entries GROUP BY workspace_id"
    ).fetchall()
    return dict(rows)
