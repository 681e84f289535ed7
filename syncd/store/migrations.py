"""Ordered, ledgered schema migrations (the only place the mirror's DDL is written).

Each step is a named list of SQL statements applied inside one ``BEGIN IMMEDIATE``
transaction together with its row in the ``schema_migrations`` ledger. Steps are frozen once
released: change the schema by appending a step, never by editing one. A database whose ledger
names a step this code does not know was migrated by a newer syncd and is refused
(``SchemaTooNew``).

Why not ``playhouse.migrations`` (present in peewee 4.5.3): its ``Runner`` loads numbered
script files from a directory by file path (awkward inside an installed wheel), keeps its own
ledger shape (``schema_migration(id, name, applied)``) rather than the published
``schema_migrations(name, applied_at)``, and reports unknown applied names only as status rows
instead of refusing them. The ledger below is a few lines and does exactly what the house rules
ask. Later steps that alter tables can still use ``playhouse.migrate.SchemaMigrator`` inside a
step function.

SQL is plain SQLite: views and FTS5 are not expressible through peewee models anyway, and
the DDL is the published contract (``docs/schema.md``), so it is kept readable here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from peewee import Database

from syncd.errors import SchemaTooNew

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name TEXT PRIMARY KEY NOT NULL,
    applied_at TEXT NOT NULL
)"""

CORE_TABLES = (
    """
    CREATE TABLE workspaces (
        id TEXT PRIMARY KEY NOT NULL,
        name TEXT,
        synced_at TEXT
    )""",
    """
    CREATE TABLE time_entries (
        id TEXT PRIMARY KEY NOT NULL,
        workspace_id TEXT NOT NULL REFERENCES workspaces (id),
        date TEXT NOT NULL,
        start_time TEXT,
        end_time TEXT,
        duration_seconds INTEGER,
        description TEXT NOT NULL DEFAULT '',
        billable INTEGER NOT NULL DEFAULT 0 CHECK (billable IN (0, 1)),
        manually_entered INTEGER NOT NULL DEFAULT 0 CHECK (manually_entered IN (0, 1)),
        team_member_id TEXT,
        team_member_name TEXT,
        project_id TEXT,
        project_name TEXT,
        client_id TEXT,
        client_name TEXT,
        task_id TEXT,
        task_name TEXT,
        created_at TEXT,
        updated_at TEXT,
        deleted_at TEXT,
        synced_at TEXT NOT NULL,
        source TEXT NOT NULL,
        raw TEXT NOT NULL DEFAULT '{}'
    )""",
    # Window scans, tombstone candidates, per-workspace counts (live and tombstoned).
    "CREATE INDEX time_entries_workspace_date ON time_entries (workspace_id, date)",
    # Date-bounded queries across workspaces: every view, and ad-hoc SQL on the table.
    "CREATE INDEX time_entries_date ON time_entries (date)",
    # Running timers: a tiny partial index (the running_timers view names it explicitly).
    """CREATE INDEX time_entries_running ON time_entries (workspace_id, date)
       WHERE end_time IS NULL AND deleted_at IS NULL""",
    """
    CREATE TABLE tags (
        id TEXT PRIMARY KEY NOT NULL,
        workspace_id TEXT NOT NULL,
        name TEXT,
        color TEXT
    )""",
    """
    CREATE TABLE time_entry_tags (
        time_entry_id TEXT NOT NULL REFERENCES time_entries (id) ON DELETE CASCADE,
        tag_id TEXT NOT NULL REFERENCES tags (id),
        PRIMARY KEY (time_entry_id, tag_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX time_entry_tags_tag ON time_entry_tags (tag_id)",
    """
    CREATE TABLE team_members (
        id TEXT PRIMARY KEY NOT NULL,
        workspace_id TEXT NOT NULL,
        name TEXT,
        email TEXT
    )""",
    """
    CREATE TABLE clients (
        id TEXT PRIMARY KEY NOT NULL,
        workspace_id TEXT NOT NULL,
        name TEXT
    )""",
    """
    CREATE TABLE projects (
        id TEXT PRIMARY KEY NOT NULL,
        workspace_id TEXT NOT NULL,
        name TEXT,
        client_id TEXT
    )""",
    """
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY NOT NULL,
        workspace_id TEXT NOT NULL,
        project_id TEXT,
        name TEXT
    )""",
)

BOOKKEEPING_TABLES = (
    """
    CREATE TABLE sync_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        ok INTEGER,
        error TEXT,
        workspaces INTEGER NOT NULL DEFAULT 0,
        windows INTEGER NOT NULL DEFAULT 0,
        inserted INTEGER NOT NULL DEFAULT 0,
        updated INTEGER NOT NULL DEFAULT 0,
        unchanged INTEGER NOT NULL DEFAULT 0,
        tombstoned INTEGER NOT NULL DEFAULT 0,
        revived INTEGER NOT NULL DEFAULT 0,
        requests INTEGER NOT NULL DEFAULT 0,
        rate_limited INTEGER NOT NULL DEFAULT 0
    )""",
    """
    CREATE TABLE window_scans (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        workspace_id TEXT NOT NULL,
        date_from TEXT,
        date_to TEXT NOT NULL,
        scanned_at TEXT NOT NULL,
        source TEXT NOT NULL,
        entries INTEGER NOT NULL,
        inserted INTEGER NOT NULL,
        updated INTEGER NOT NULL,
        tombstoned INTEGER NOT NULL,
        revived INTEGER NOT NULL,
        run_id INTEGER
    )""",
    "CREATE INDEX window_scans_workspace ON window_scans (workspace_id, scanned_at)",
    """
    CREATE TABLE sync_state (
        workspace_id TEXT PRIMARY KEY NOT NULL,
        backfill_before TEXT,
        backfill_complete INTEGER NOT NULL DEFAULT 0,
        oldest_date TEXT,
        reconcile_before TEXT,
        window_days INTEGER,
        last_hot_scan_at TEXT,
        last_reconcile_at TEXT
    )""",
    """
    CREATE TABLE webhook_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        dedupe_key TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        object_id TEXT NOT NULL,
        workspace_id TEXT,
        updated_at TEXT,
        received_at TEXT NOT NULL,
        outcome TEXT,
        delivery_id TEXT
    )""",
    """
    CREATE TABLE installation (
        key TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    )""",
)

BUDGET_TABLES = (
    """
    CREATE TABLE budget_grants (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key_id TEXT NOT NULL,
        granted_at REAL NOT NULL,
        priority INTEGER NOT NULL,
        pid INTEGER
    )""",
    "CREATE INDEX budget_grants_key_time ON budget_grants (key_id, granted_at)",
    """
    CREATE TABLE budget_state (
        key_id TEXT PRIMARY KEY NOT NULL,
        not_before REAL NOT NULL DEFAULT 0,
        server_remaining INTEGER,
        server_reset REAL,
        server_seen_at REAL
    )""",
)

# Shared by every view: how long an entry counts for. A running timer counts up to now.
_LIVE_SECONDS = """CASE
            WHEN e.duration_seconds IS NOT NULL THEN e.duration_seconds
            WHEN e.end_time IS NULL AND e.start_time IS NOT NULL
                THEN MAX(0, CAST(strftime('%s', 'now') AS INTEGER)
                            - CAST(strftime('%s', e.start_time) AS INTEGER))
            ELSE 0
        END"""

REPORT_VIEWS = (
    f"""
    CREATE VIEW live_time_entries AS
    SELECT
        e.id, e.workspace_id, e.date, e.start_time, e.end_time, e.duration_seconds,
        e.description, e.billable, e.manually_entered,
        e.team_member_id, e.team_member_name, e.project_id, e.project_name,
        e.client_id, e.client_name, e.task_id, e.task_name,
        e.created_at, e.updated_at, e.synced_at, e.source,
        (e.end_time IS NULL AND e.start_time IS NOT NULL AND e.manually_entered = 0) AS running,
        {_LIVE_SECONDS} AS live_duration_seconds,
        ({_LIVE_SECONDS}) / 3600.0 AS hours
    FROM time_entries AS e
    WHERE e.deleted_at IS NULL""",  # noqa: S608 (built from constants only)
    """
    CREATE VIEW hours_per_day_per_member AS
    SELECT
        workspace_id, date, team_member_id,
        MAX(team_member_name) AS team_member_name,
        COUNT(*) AS entries,
        SUM(live_duration_seconds) AS seconds,
        SUM(hours) AS hours,
        SUM(CASE WHEN billable THEN hours ELSE 0 END) AS billable_hours
    FROM live_time_entries
    GROUP BY workspace_id, date, team_member_id""",
    """
    CREATE VIEW hours_per_week_per_project AS
    SELECT
        workspace_id,
        date(date, '-6 days', 'weekday 1') AS week_start,
        project_id,
        MAX(project_name) AS project_name,
        MAX(client_id) AS client_id,
        MAX(client_name) AS client_name,
        COUNT(*) AS entries,
        SUM(live_duration_seconds) AS seconds,
        SUM(hours) AS hours,
        SUM(CASE WHEN billable THEN hours ELSE 0 END) AS billable_hours
    FROM live_time_entries
    GROUP BY workspace_id, date(date, '-6 days', 'weekday 1'), project_id""",
    """
    CREATE VIEW billable_hours_per_month AS
    SELECT
        workspace_id,
        substr(date, 1, 7) AS month,
        COUNT(*) AS entries,
        SUM(hours) AS hours,
        SUM(CASE WHEN billable THEN hours ELSE 0 END) AS billable_hours,
        SUM(CASE WHEN billable THEN 0 ELSE hours END) AS non_billable_hours
    FROM live_time_entries
    GROUP BY workspace_id, substr(date, 1, 7)""",
    f"""
    CREATE VIEW running_timers AS
    SELECT
        e.id, e.workspace_id, e.date, e.start_time,
        e.team_member_id, e.team_member_name, e.project_id, e.project_name,
        e.client_name, e.task_name, e.description,
        {_LIVE_SECONDS} AS running_seconds
    FROM time_entries AS e INDEXED BY time_entries_running
    WHERE e.end_time IS NULL AND e.deleted_at IS NULL
      AND e.start_time IS NOT NULL AND e.manually_entered = 0""",  # noqa: S608
    # Week and month report queries filter on the derived column; these partial expression
    # indexes let SQLite seek instead of scanning every live row.
    """CREATE INDEX time_entries_live_week
       ON time_entries (date(date, '-6 days', 'weekday 1')) WHERE deleted_at IS NULL""",
    """CREATE INDEX time_entries_live_month
       ON time_entries (substr(date, 1, 7)) WHERE deleted_at IS NULL""",
)

# External-content FTS5 index over live descriptions. Its rowid is time_entries' rowid (VACUUM
# keeps it). The store keeps it in step in bulk, one statement per window, rather than with
# per-row triggers: an FTS5 insert fired from a trigger flushes the index on every row and cut
# write throughput to a third. Tombstoned rows are removed from the index.
# ``Store.rebuild_search`` rebuilds it from the live rows.
SEARCH = (
    """
    CREATE VIRTUAL TABLE time_entries_fts USING fts5(
        description,
        content = 'time_entries',
        content_rowid = 'rowid',
        tokenize = 'unicode61 remove_diacritics 2'
    )""",
    """
    INSERT INTO time_entries_fts (rowid, description)
    SELECT rowid, description FROM time_entries WHERE deleted_at IS NULL""",
)


@dataclass(frozen=True, slots=True)
class Migration:
    """One named step: SQL statements, or a function given the database."""

    name: str
    statements: Sequence[str] = ()
    function: Callable[[Database], None] | None = None

    def apply(self, db: Database) -> None:
        for sql in self.statements:
            db.execute_sql(sql)
        if self.function is not None:
            self.function(db)


MIGRATIONS: tuple[Migration, ...] = (
    Migration("0001_core_tables", CORE_TABLES),
    Migration("0002_bookkeeping", BOOKKEEPING_TABLES),
    Migration("0003_rate_budget", BUDGET_TABLES),
    Migration("0004_report_views", REPORT_VIEWS),
    Migration("0005_description_search", SEARCH),
)


def known_names() -> list[str]:
    return [m.name for m in MIGRATIONS]


def applied_migrations(db: Database) -> list[str]:
    """Names in the ledger (empty for a fresh database), in the order they were applied."""
    exists = db.execute_sql(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if not exists:
        return []
    rows = db.execute_sql("SELECT name FROM schema_migrations ORDER BY rowid")
    return [name for (name,) in rows.fetchall()]


def check_not_too_new(db: Database) -> None:
    """Raise ``SchemaTooNew`` if the ledger names a step this code does not know."""
    unknown = sorted(set(applied_migrations(db)) - set(known_names()))
    if unknown:
        raise SchemaTooNew(unknown)


def migrate(db: Database, now: Callable[[], str] | None = None) -> list[str]:
    """Apply every pending step, each in its own IMMEDIATE transaction; return their names.

    Safe to call from several processes at once: the ledger is re-read after the write lock
    is taken, so a step is applied exactly once. Raises ``SchemaTooNew`` (before writing
    anything) when the database was migrated by a newer syncd.
    """
    clock = now or _utc_now
    check_not_too_new(db)
    done: list[str] = []
    with db.atomic("IMMEDIATE"):
        db.execute_sql(LEDGER_DDL)
    for step in MIGRATIONS:
        with db.atomic("IMMEDIATE"):
            applied = set(applied_migrations(db))
            if step.name in applied:
                continue
            step.apply(db)
            db.execute_sql(
                "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                (step.name, clock()),
            )
            done.append(step.name)
    return done


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
