"""Read what the mirror holds, the way an SQL user would (a plain sqlite3 connection).

Every reader takes the database path (a connection per call) or an open connection in
autocommit mode (``reader(path)``: each query sees the latest committed window).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from syncd.records import TimeEntry
from syncd.store.rows import CONTENT_COLUMNS, content_of

SYNCED = CONTENT_COLUMNS  # id .. updated_at: the fields a scan copies from upstream


@dataclass(frozen=True, slots=True)
class Scan:
    """One row of ``window_scans``."""

    workspace_id: str
    date_from: str | None
    date_to: str
    scanned_at: str
    source: str
    entries: int
    tombstoned: int

    def covers(self, day: str) -> bool:
        return (self.date_from is None or self.date_from <= day) and day <= self.date_to


Database = Path | sqlite3.Connection


def reader(path: Path) -> sqlite3.Connection:
    """A long-lived read connection (autocommit, so no snapshot is held between queries)."""
    return sqlite3.connect(path, isolation_level=None)


def _query(db: Database, sql: str, params: tuple = ()) -> list[tuple]:
    if isinstance(db, sqlite3.Connection):
        return db.execute(sql, params).fetchall()
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def scans(path: Database, source: str | None = None) -> list[Scan]:
    sql = (
        "SELECT workspace_id, date_from, date_to, scanned_at, source, entries, tombstoned "
        "FROM window_scans"
    )
    rows = _query(path, sql + " ORDER BY id")
    return [Scan(*r) for r in rows if source is None or r[4] == source]


def live(path: Database, workspace_id: str | None = None) -> dict[str, tuple]:
    """Live rows by id, as tuples of the synced columns."""
    columns = ", ".join(f'"{c}"' for c in SYNCED)
    rows = _query(
        path,
        f"SELECT {columns} FROM time_entries WHERE deleted_at IS NULL"
        " AND (? IS NULL OR workspace_id = ?)",
        (workspace_id, workspace_id),
    )
    return {r[0]: tuple(r) for r in rows}


def tombstones(path: Database) -> dict[str, tuple[str, str]]:
    """Tombstoned rows: id -> (stored date, deleted_at)."""
    return {i: (d, at) for i, (d, at, _created) in tombstones_created(path).items()}


def tombstones_created(path: Database) -> dict[str, tuple[str, str, str | None]]:
    """Tombstoned rows: id -> (stored date, deleted_at, creation day)."""
    rows = _query(
        path,
        "SELECT id, date, deleted_at, substr(created_at, 1, 10) FROM time_entries "
        "WHERE deleted_at IS NOT NULL",
    )
    return {i: (d, at, c) for i, d, at, c in rows}


def row(path: Path, entry_id: str) -> dict | None:
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        found = conn.execute("SELECT * FROM time_entries WHERE id = ?", (entry_id,)).fetchone()
    return None if found is None else dict(found)


def expected(entries: dict[str, TimeEntry] | list[TimeEntry]) -> dict[str, tuple]:
    """What ``live`` must return for these upstream entries."""
    values = entries.values() if isinstance(entries, dict) else entries
    return {e.id: content_of(e) for e in values}
