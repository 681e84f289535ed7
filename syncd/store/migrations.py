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


# Daily totals per project, kept exact by triggers, so the weekly and monthly views and the
# reports read a few rows per day instead of every entry.
#
# ``daily_project_totals`` holds one row per (day, workspace, project, client) that has live
# entries. A project or client of none is stored as '' (a primary key column cannot be NULL;
# upstream ids are never empty) and the views turn it back into NULL. ``seconds`` adds
# ``IFNULL(duration_seconds, 0)``, which is what ``live_time_entries`` gives every entry but a
# running timer. A running timer (no duration, no end, a start) adds 0 there and 1 to
# ``running``: its length depends on the clock, so the views compute it at query time from
# ``time_entries`` through the tiny ``time_entries_running`` index, only for rows where
# ``running > 0``. Each view is a plain aggregate over the table, so SQLite pushes a date, week
# or month bound down to an index of it. Names are the current ones from ``projects`` and
# ``clients``.
#
# One trigger per change adds and subtracts with one upsert each; a row whose count drops to
# zero is deleted. (Per-member totals were left out: a second upsert per written entry cost
# about 7% of write throughput, and ``hours_per_day_per_member`` meets its target without.)
# Shared with the store's upsert of the totals of the entries it inserts.
TOTALS_KEY = "date, workspace_id, project_id, client_id"
# Mirrored by ``rows.totals_of``.
RUNNING = "{e}.duration_seconds IS NULL AND {e}.end_time IS NULL AND {e}.start_time IS NOT NULL"


def _count(e: str, sign: str) -> str:
    """Upsert the contribution of entry ``e`` (``new`` or ``old``): added, or with ``-`` taken."""
    return f"""
        INSERT INTO daily_project_totals
            ({TOTALS_KEY}, entries, running, seconds, billable_seconds)
        SELECT {e}.date, {e}.workspace_id, IFNULL({e}.project_id, ''), IFNULL({e}.client_id, ''),
            {sign}1, {sign}({RUNNING.format(e=e)}), {sign}IFNULL({e}.duration_seconds, 0),
            {sign}(CASE WHEN {e}.billable THEN IFNULL({e}.duration_seconds, 0) ELSE 0 END)
        WHERE {e}.deleted_at IS NULL
        ON CONFLICT ({TOTALS_KEY}) DO UPDATE SET
            entries = entries + excluded.entries,
            running = running + excluded.running,
            seconds = seconds + excluded.seconds,
            billable_seconds = billable_seconds + excluded.billable_seconds;"""


_DROP_EMPTY = """
        DELETE FROM daily_project_totals
        WHERE date = old.date AND workspace_id = old.workspace_id
          AND project_id = IFNULL(old.project_id, '') AND client_id = IFNULL(old.client_id, '')
          AND entries = 0;"""

# What decides an entry's contribution: liveness, key, duration, billable, running or not.
_CONTRIBUTION_CHANGED = "\n        OR ".join(
    [
        f"old.{c} IS NOT new.{c}"
        for c in ("date", "workspace_id", "project_id", "client_id", "duration_seconds", "billable")
    ]
    + [
        f"(old.{c} IS NULL) IS NOT (new.{c} IS NULL)"
        for c in ("deleted_at", "end_time", "start_time")
    ]
)


def _live_seconds(billable: bool = False) -> str:
    """Seconds of totals row ``t`` up to now: its stopped entries plus, when it holds running
    timers, their lengths so far (read through ``time_entries_running``)."""
    counted = "t.billable_seconds" if billable else "t.seconds"
    so_far = """MAX(0, CAST(strftime('%s', 'now') AS INTEGER)
                               - CAST(strftime('%s', e.start_time) AS INTEGER))"""
    if billable:
        so_far = f"CASE WHEN e.billable THEN {so_far} ELSE 0 END"
    return f"""({counted} + CASE WHEN t.running = 0 THEN 0 ELSE (
            SELECT IFNULL(SUM({so_far}), 0)
            FROM time_entries AS e INDEXED BY time_entries_running
            WHERE e.workspace_id = t.workspace_id AND e.date = t.date
              AND IFNULL(e.project_id, '') = t.project_id
              AND IFNULL(e.client_id, '') = t.client_id
              AND e.end_time IS NULL AND e.deleted_at IS NULL
              AND {RUNNING.format(e="e")}) END)"""  # noqa: S608 (built from constants only)


_WEEK = "date(t.date, '-6 days', 'weekday 1')"

DAILY_TOTALS = (
    """
    CREATE TABLE daily_project_totals (
        date TEXT NOT NULL,
        workspace_id TEXT NOT NULL,
        project_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        entries INTEGER NOT NULL,
        running INTEGER NOT NULL,
        seconds INTEGER NOT NULL,
        billable_seconds INTEGER NOT NULL,
        PRIMARY KEY (date, workspace_id, project_id, client_id)
    ) WITHOUT ROWID""",
    f"""
    INSERT INTO daily_project_totals
        ({TOTALS_KEY}, entries, running, seconds, billable_seconds)
    SELECT e.date, e.workspace_id, IFNULL(e.project_id, ''), IFNULL(e.client_id, ''),
        COUNT(*), SUM({RUNNING.format(e="e")}), SUM(IFNULL(e.duration_seconds, 0)),
        SUM(CASE WHEN e.billable THEN IFNULL(e.duration_seconds, 0) ELSE 0 END)
    FROM time_entries AS e
    WHERE e.deleted_at IS NULL
    GROUP BY 1, 2, 3, 4""",  # noqa: S608
    f"""
    CREATE TRIGGER daily_project_totals_insert AFTER INSERT ON time_entries
    WHEN new.deleted_at IS NULL
    BEGIN{_count("new", "")}
    END""",
    f"""
    CREATE TRIGGER daily_project_totals_delete AFTER DELETE ON time_entries
    WHEN old.deleted_at IS NULL
    BEGIN{_count("old", "-")}{_DROP_EMPTY}
    END""",
    # The new version is added before the old one is taken away: when the key stays (say only
    # the duration changed) the row never reaches zero and is kept.
    f"""
    CREATE TRIGGER daily_project_totals_update AFTER UPDATE ON time_entries
    WHEN (old.deleted_at IS NULL OR new.deleted_at IS NULL) AND (
        {_CONTRIBUTION_CHANGED})
    BEGIN{_count("new", "")}{_count("old", "-")}{_DROP_EMPTY}
    END""",
    "DROP VIEW hours_per_week_per_project",
    "DROP VIEW billable_hours_per_month",
    f"""
    CREATE VIEW hours_per_week_per_project AS
    SELECT
        w.workspace_id, w.week_start, w.project_id,
        p.name AS project_name,
        w.client_id,
        c.name AS client_name,
        w.entries, w.seconds, w.hours, w.billable_hours
    FROM (
        SELECT
            t.workspace_id AS workspace_id,
            {_WEEK} AS week_start,
            NULLIF(t.project_id, '') AS project_id,
            NULLIF(MAX(t.client_id), '') AS client_id,
            SUM(t.entries) AS entries,
            SUM({_live_seconds()}) AS seconds,
            SUM({_live_seconds()}) / 3600.0 AS hours,
            SUM({_live_seconds(billable=True)}) / 3600.0 AS billable_hours
        FROM daily_project_totals AS t
        GROUP BY t.workspace_id, {_WEEK}, t.project_id
    ) AS w
    LEFT JOIN projects AS p ON p.id = w.project_id
    LEFT JOIN clients AS c ON c.id = w.client_id""",  # noqa: S608
    f"""
    CREATE VIEW billable_hours_per_month AS
    SELECT
        t.workspace_id AS workspace_id,
        substr(t.date, 1, 7) AS month,
        SUM(t.entries) AS entries,
        SUM({_live_seconds()}) / 3600.0 AS hours,
        SUM({_live_seconds(billable=True)}) / 3600.0 AS billable_hours,
        SUM({_live_seconds()} - {_live_seconds(billable=True)}) / 3600.0 AS non_billable_hours
    FROM daily_project_totals AS t
    GROUP BY t.workspace_id, substr(t.date, 1, 7)""",  # noqa: S608
    # The weekly and monthly views filter on a derived column: index it on the (small) totals
    # rather than on every live entry, where the two indexes cost write throughput.
    "CREATE INDEX daily_project_totals_week ON daily_project_totals "
    "(date(date, '-6 days', 'weekday 1'))",
    "CREATE INDEX daily_project_totals_month ON daily_project_totals (substr(date, 1, 7))",
    "DROP INDEX time_entries_live_week",
    "DROP INDEX time_entries_live_month",
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


# Entry-tag links keyed by the entry's rowid instead of its text id. A backfill inserts entries
# with ever larger rowids, so new links are appended to the end of both B-trees; keyed by the
# random upstream ids, every window rewrote pages all over them. ``time_entry_tags`` stays, as
# a view with the same columns, for every query written against it.
TAG_LINKS_BY_ROWID = (
    """
    CREATE TABLE time_entry_tag_links (
        entry_rowid INTEGER NOT NULL,
        tag_id TEXT NOT NULL REFERENCES tags (id),
        PRIMARY KEY (entry_rowid, tag_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX time_entry_tag_links_tag ON time_entry_tag_links (tag_id)",
    """
    INSERT INTO time_entry_tag_links (entry_rowid, tag_id)
    SELECT e.rowid, t.tag_id
    FROM time_entry_tags AS t JOIN time_entries AS e ON e.id = t.time_entry_id""",
    "DROP TABLE time_entry_tags",
    """
    CREATE VIEW time_entry_tags AS
    SELECT e.id AS time_entry_id, l.tag_id
    FROM time_entry_tag_links AS l JOIN time_entries AS e ON e.rowid = l.entry_rowid""",
    """
    CREATE TRIGGER time_entries_unlink AFTER DELETE ON time_entries
    BEGIN
        DELETE FROM time_entry_tag_links WHERE entry_rowid = old.rowid;
    END""",
)

# The store adds the entries it inserts to ``daily_project_totals`` itself, one upsert per
# (day, project, client) of a window (``rows.totals_of``), instead of one trigger run per row,
# which cost about a sixth of a backfill's write time. Updates and deletes, by syncd or by any
# other tool, are still counted by the two remaining triggers.
TOTALS_OF_INSERTS_BY_STORE = ("DROP TRIGGER daily_project_totals_insert",)

# A delivery on the token path that syncd cannot use is kept in the ledger as refused, with
# why and what it carried (the first 4 KiB of the body, and its full size), and never written
# to the mirror.
WEBHOOK_LEDGER_REFUSALS = (
    "ALTER TABLE webhook_events ADD COLUMN reason TEXT",
    "ALTER TABLE webhook_events ADD COLUMN body TEXT",
    "ALTER TABLE webhook_events ADD COLUMN body_bytes INTEGER",
)

# Upstream entries syncd could not store as given (quarantined): stored with the offending
# fields cleared, or not at all; one row per entry (or, without a usable id, per distinct body),
# counted each time a scan brings it back, and removed once a scan finds it clean or gone.
REJECTED_ENTRIES = (
    """
    CREATE TABLE rejected_entries (
        workspace_id TEXT NOT NULL,
        entry_key TEXT NOT NULL,
        id TEXT,
        date TEXT,
        reason TEXT NOT NULL,
        stored INTEGER NOT NULL CHECK (stored IN (0, 1)),
        raw TEXT NOT NULL,
        raw_bytes INTEGER NOT NULL,
        first_seen_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        seen_count INTEGER NOT NULL DEFAULT 1,
        PRIMARY KEY (workspace_id, entry_key)
    ) WITHOUT ROWID""",
    "CREATE INDEX rejected_entries_date ON rejected_entries (workspace_id, date)",
)

# Migration 0005 spelled the index's options ``content = 'time_entries'``; Datasette detects
# an FTS table of a table only by the spellings sqlite-utils writes (``content=[name]`` or
# ``content="name"``, no spaces), so it showed no search box. The index is declared again in
# that form and rebuilt from the live rows; what it holds and how the store keeps it in step
# are unchanged.
SEARCH_FOR_DATASETTE = (
    "DROP TABLE time_entries_fts",
    """
    CREATE VIRTUAL TABLE time_entries_fts USING fts5(
        description,
        content=[time_entries],
        content_rowid=[rowid],
        tokenize='unicode61 remove_diacritics 2'
    )""",
    SEARCH[1],
)

# The verification tiers: per workspace, the warm sweep's cursor, when each tier's current
# pass began and when its last complete pass began (every window of the tier verified since),
# and the cursor and start of a ``syncd --once --full`` in progress, so a killed one resumes.
VERIFICATION_TIERS = tuple(
    f"ALTER TABLE sync_state ADD COLUMN {column} TEXT"
    for column in (
        "warm_before",
        "warm_pass_at",
        "warm_verified_at",
        "cold_pass_at",
        "cold_verified_at",
        "full_before",
        "full_started_at",
    )
)

# Expiring leases, one row per name (see ``leases.py``), so several syncd processes can share
# one key's work; times are seconds since the epoch by the database's clock.
LEASES = (
    """
    CREATE TABLE leases (
        name TEXT PRIMARY KEY NOT NULL,
        holder TEXT NOT NULL,
        acquired_at REAL NOT NULL,
        expires_at REAL NOT NULL
    ) WITHOUT ROWID""",
)

# The pushes no scan has confirmed yet (``source = 'webhook'``), oldest first: every poll reads
# them per workspace, and without this index that read walks the whole workspace.
UNCONFIRMED_PUSHES = (
    """CREATE INDEX time_entries_unconfirmed_pushes ON time_entries (workspace_id, synced_at)
       WHERE source = 'webhook' AND deleted_at IS NULL""",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration("0001_core_tables", CORE_TABLES),
    Migration("0002_bookkeeping", BOOKKEEPING_TABLES),
    Migration("0003_rate_budget", BUDGET_TABLES),
    Migration("0004_report_views", REPORT_VIEWS),
    Migration("0005_description_search", SEARCH),
    Migration("0006_daily_totals", DAILY_TOTALS),
    Migration("0007_tag_links_by_entry_rowid", TAG_LINKS_BY_ROWID),
    Migration("0008_totals_of_inserts_by_store", TOTALS_OF_INSERTS_BY_STORE),
    Migration("0009_webhook_ledger_refusals", WEBHOOK_LEDGER_REFUSALS),
    Migration("0010_rejected_entries", REJECTED_ENTRIES),
    Migration("0011_search_declared_for_datasette", SEARCH_FOR_DATASETTE),
    Migration("0012_verification_tiers", VERIFICATION_TIERS),
    Migration("0013_leases", LEASES),
    Migration("0014_unconfirmed_pushes", UNCONFIRMED_PUSHES),
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
