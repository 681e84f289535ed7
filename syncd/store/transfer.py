"""Copying a SQLite mirror into an empty PostgreSQL database (``syncd migrate-to``).

The source is checked first and opened read-only: a file that is not a syncd mirror, or was
migrated by a newer syncd, is refused before anything is written; a mirror of an older schema
is migrated in place first (as any syncd run would). The target is migrated with
``pg_schema.migrate`` and must hold no rows in any table of the mirror.

Then, in one PostgreSQL transaction (the target's tables locked against writers), every
table of the published schema and the bookkeeping is copied from one read snapshot of the
mirror in batches with ``COPY``, ids and ``time_entries.rowid`` kept as they are, so tag links,
scan history and runs still point at the same rows. Identity sequences are then set past the
largest id ever handed out (``sqlite_sequence`` included), and the copy is verified: every
table's row count and the live entries' total hours (from ``time_entries`` and from
``daily_project_totals``) must equal the mirror's, or nothing is committed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peewee
import psycopg
from peewee import Database, SqliteDatabase

from syncd.database_url import redact
from syncd.errors import NoDatabase, StoreError, UsageError
from syncd.store import migrations, pg_schema
from syncd.store.backend import open_postgres

#: The mirror's tables in the order they are copied (a table after those it refers to).
TABLES: tuple[str, ...] = (
    "workspaces",
    "tags",
    "team_members",
    "clients",
    "projects",
    "tasks",
    "time_entries",
    "time_entry_tag_links",
    "daily_project_totals",
    "sync_runs",
    "window_scans",
    "sync_state",
    "webhook_events",
    "rejected_entries",
    "installation",
    "budget_grants",
    "budget_state",
    "leases",
)
#: SQLite tables that are not copied: the ledger (PostgreSQL keeps its own), the search index
#: (PostgreSQL generates ``description_search``) and SQLite's own.
NOT_COPIED_PREFIXES = ("sqlite_", "time_entries_fts")
LEDGER = "schema_migrations"
#: Rows read from the mirror and written per batch.
BATCH_ROWS = 5000
#: Live entries' stopped time, the figure both databases must agree on.
SECONDS_SQL = "SELECT COALESCE(SUM(duration_seconds), 0) FROM time_entries WHERE deleted_at IS NULL"
_EXISTS = "SELECT EXISTS (SELECT 1 FROM {})"
TOTALS_SECONDS_SQL = "SELECT COALESCE(SUM(seconds), 0) FROM daily_project_totals"


@dataclass(frozen=True)
class TransferResult:
    """What ``migrate-to`` copied: rows per table, live entries and their stopped hours."""

    source: str
    target: str  # the URL, password masked
    rows: dict[str, int]
    live_entries: int
    seconds: int
    elapsed_seconds: float

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def summary(self) -> str:
        """The one-line result ``migrate-to`` prints."""
        return (
            f"copied {self.total_rows} rows in {len(self.rows)} tables "
            f"({self.rows.get('time_entries', 0)} entries, {self.live_entries} live, "
            f"{self.seconds / 3600:.2f} hours) from {self.source} to {self.target} "
            f"in {self.elapsed_seconds:.1f} s; counts and hours verified"
        )


def copy_to_postgres(
    source: str | Path, url: str, *, batch_rows: int = BATCH_ROWS
) -> TransferResult:
    """Copy the SQLite mirror at ``source`` into the PostgreSQL database at ``url`` and verify
    the copy; returns what was copied.

    Raises ``NoDatabase`` (no file at ``source``), ``UsageError`` (the source is not a syncd
    mirror or is newer than this syncd; the target already holds a mirror's rows),
    ``ConfigError`` (a malformed URL), ``SchemaTooNew`` (the target was migrated by a newer
    syncd) and ``StoreError`` (either database failed, or the copy did not verify; then
    nothing is committed).
    """
    started = time.monotonic()
    path = str(source)
    _prepare_source(path)
    shown = redact(url)
    target = open_postgres(url)
    try:
        pg_schema.migrate(target)
        src = _open_read_only(path)
        try:
            with src.atomic():  # one read snapshot of the mirror for the whole copy
                rows, live, seconds = _copy(src, target, shown, batch_rows)
        finally:
            src.close()
        # Planner statistics now, not when autovacuum gets round to it (if it is on): the
        # first reports read the whole copy.
        target.execute_sql("ANALYZE")
    except (peewee.DatabaseError, psycopg.Error) as exc:
        detail = " ".join(str(exc).split())
        raise StoreError(f"copying {path} to {shown} failed, nothing was kept: {detail}") from exc
    finally:
        target.close()
    return TransferResult(path, shown, rows, live, seconds, time.monotonic() - started)


def _prepare_source(path: str) -> None:
    """Check that ``path`` is a syncd mirror this syncd knows; migrate an older one in place.

    Raises ``NoDatabase``, ``UsageError`` and ``StoreError``.
    """
    if not Path(path).is_file():
        raise NoDatabase(path)
    db = _open_read_only(path)
    try:
        names = {name for (name,) in db.execute_sql("SELECT name FROM sqlite_schema")}
        if LEDGER not in names or "time_entries" not in names:
            raise UsageError(f"{path} is not a syncd mirror (it has no {LEDGER} ledger)")
        applied = set(migrations.applied_migrations(db))
    except peewee.DatabaseError as exc:
        raise UsageError(f"{path} is not a syncd mirror ({' '.join(str(exc).split())})") from exc
    finally:
        db.close()
    unknown = sorted(applied - set(migrations.known_names()))
    if unknown:
        raise UsageError(
            f"{path} was migrated by a newer syncd (unknown migrations: {', '.join(unknown)}); "
            "upgrade syncd before migrating it"
        )
    if set(migrations.known_names()) - applied:
        from syncd.store.mirror import Store  # brings an older mirror to this schema

        Store(path).close()


def _open_read_only(path: str) -> SqliteDatabase:
    """A read-only connection to the mirror file (never creates one). Raises
    ``peewee.DatabaseError``."""
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    db = SqliteDatabase(uri, uri=True, timeout=30)
    db.connect()
    return db


def _copy(
    src: SqliteDatabase, target: Database, shown: str, batch_rows: int
) -> tuple[dict[str, int], int, int]:
    """Copy every table inside one target transaction; returns rows per table, live entries
    and their seconds. Raises ``UsageError`` (target not empty) or ``StoreError`` (the
    schemas differ, or the copy does not verify)."""
    _check_tables(src, target)
    expected = {table: _count(src, table) for table in TABLES}
    with target.atomic():
        tables = ", ".join(_quote(t) for t in TABLES)
        target.execute_sql(f"LOCK TABLE {tables} IN EXCLUSIVE MODE")
        filled = [t for t in TABLES if _scalar(target, _EXISTS.format(_quote(t)))]
        if filled:
            raise UsageError(
                f"the database at {shown} already holds a syncd mirror (rows in "
                f"{', '.join(filled)}); migrate-to copies only into an empty database"
            )
        for table in TABLES:
            _copy_table(src, target, table, batch_rows)
        _reset_identities(src, target)
        copied = {table: _count(target, table) for table in TABLES}
        if copied != expected:
            wrong = ", ".join(
                f"{t}: {expected[t]} in the mirror, {copied[t]} copied"
                for t in TABLES
                if copied[t] != expected[t]
            )
            raise StoreError(f"the copy does not match the mirror ({wrong}); nothing was kept")
        seconds = _scalar(src, SECONDS_SQL)
        for sql in (SECONDS_SQL, TOTALS_SECONDS_SQL):
            if _scalar(src, sql) != _scalar(target, sql):
                raise StoreError(
                    "the copy's hours do not match the mirror's "
                    f"({_scalar(src, sql)} s in the mirror, {_scalar(target, sql)} s copied, "
                    f"by {sql!r}); nothing was kept"
                )
        live = _scalar(target, "SELECT COUNT(*) FROM time_entries WHERE deleted_at IS NULL")
    return copied, int(live), int(seconds)


def _check_tables(src: SqliteDatabase, target: Database) -> None:
    """Raises ``StoreError`` when the mirror has a table this copy does not know, either
    database lacks one it copies, or a copied table's columns differ between them."""
    mirror = {
        name
        for (name,) in src.execute_sql("SELECT name FROM sqlite_schema WHERE type = 'table'")
        if name != LEDGER and not name.startswith(NOT_COPIED_PREFIXES)
    }
    server = {
        name
        for (name,) in target.execute_sql(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        )
        if name != LEDGER
    }
    # Every table of the mirror is copied (one this syncd does not know would be lost); the
    # database may hold tables of its own beside syncd's.
    for where, names, extra in (
        ("the mirror", mirror, sorted(mirror - set(TABLES))),
        ("PostgreSQL", server, []),
    ):
        missing = sorted(set(TABLES) - names)
        if extra or missing:
            raise StoreError(
                f"{where} does not hold the tables this syncd copies "
                f"(unknown: {', '.join(extra) or 'none'}; missing: {', '.join(missing) or 'none'})"
            )
    for table in TABLES:
        theirs = set(_source_columns(src, table))
        ours = set(_target_columns(target, table))
        if theirs != ours:
            raise StoreError(
                f"table {table} differs between the mirror and PostgreSQL (only in the mirror: "
                f"{', '.join(sorted(theirs - ours)) or 'none'}; only in PostgreSQL: "
                f"{', '.join(sorted(ours - theirs)) or 'none'})"
            )


def _source_columns(src: SqliteDatabase, table: str) -> list[str]:
    """The mirror table's columns, with ``rowid`` for ``time_entries`` (PostgreSQL keeps it as
    a column of its own)."""
    columns = [row[1] for row in src.execute_sql(f"PRAGMA table_info({_quote(table)})")]
    return ["rowid", *columns] if table == "time_entries" else columns


def _target_columns(target: Database, table: str) -> list[str]:
    """The PostgreSQL table's columns a row is written to (generated ones left out)."""
    cursor = target.execute_sql(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = "
        "current_schema() AND table_name = %s AND is_generated = 'NEVER' ORDER BY ordinal_position",
        (table,),
    )
    return [name for (name,) in cursor]


def _copy_table(src: SqliteDatabase, target: Database, table: str, batch_rows: int) -> None:
    """Stream ``table`` from the mirror into PostgreSQL with ``COPY``, ``batch_rows`` at a time."""
    listed = ", ".join(_quote(c) for c in _target_columns(target, table))
    reader = src.execute_sql(f"SELECT {listed} FROM {_quote(table)}")  # noqa: S608
    with target.cursor().copy(f"COPY {_quote(table)} ({listed}) FROM STDIN") as copy:
        for batch in _batches(reader, batch_rows):
            for row in batch:
                copy.write_row(row)


def _batches(cursor: Any, size: int) -> Iterator[Sequence[Any]]:
    while batch := cursor.fetchmany(size):
        yield batch


def _reset_identities(src: SqliteDatabase, target: Database) -> None:
    """Set every identity sequence past the largest id the mirror ever handed out (its rows'
    and, for AUTOINCREMENT tables, ``sqlite_sequence``'s), so new rows never reuse an id."""
    handed_out = dict(src.execute_sql("SELECT name, seq FROM sqlite_sequence").fetchall())
    identities = target.execute_sql(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND is_identity = 'YES'"
    ).fetchall()
    for table, column in identities:
        (largest,) = target.execute_sql(
            f"SELECT COALESCE(MAX({_quote(column)}), 0) FROM {_quote(table)}"  # noqa: S608
        ).fetchone()
        after = max(int(largest), int(handed_out.get(table, 0) if column == "id" else 0))
        target.execute_sql(
            "SELECT setval(pg_get_serial_sequence(%s, %s), %s, false)",
            (_quote(table), column, after + 1),
        )


def _count(db: Database, table: str) -> int:
    return int(_scalar(db, f"SELECT COUNT(*) FROM {_quote(table)}"))  # noqa: S608


def _scalar(db: Database, sql: str) -> Any:
    (value,) = db.execute_sql(sql).fetchone()
    return value


def _quote(name: str) -> str:
    """``name`` as a quoted SQL identifier (both backends)."""
    return '"' + name.replace('"', '""') + '"'
