"""Raw SQL on a mirror of either backend, for tests that look behind the store's back, and a
migrated PostgreSQL database shared by many tests.

``location`` is what ``Store`` was opened with: a SQLite file path or a PostgreSQL URL. Each
call opens a connection of its own (as ``sqlite3`` or ``psql`` would) and closes it again.
SQL is written once, with ``?`` placeholders, for both.

Creating and dropping a PostgreSQL database costs seconds, emptying one milliseconds: tests
of the store's behaviour share one migrated database (:func:`create_database`) and empty it
before each test (:func:`empty_database`); tests of the schema itself use ``postgres_url``.
"""

from __future__ import annotations

import atexit
import os
import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql

from syncd.database_url import is_postgres_url
from syncd.store.mirror import Store
from tests.support.postgres import admin_url, server_of, url_of_database


def _is_postgres(location: str | Path) -> bool:
    return is_postgres_url(str(location))


def rows(location: str | Path, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    """The rows ``sql`` returns (none for a statement), as tuples; commits."""
    if _is_postgres(location):
        with psycopg.connect(str(location), autocommit=True) as conn:
            cursor = conn.execute(sql.replace("%", "%%").replace("?", "%s"), tuple(params))
            return [tuple(r) for r in cursor.fetchall()] if cursor.description else []
    conn = sqlite3.connect(location, isolation_level=None)
    try:
        return [tuple(r) for r in conn.execute(sql, tuple(params)).fetchall()]
    finally:
        conn.close()


def dict_rows(location: str | Path, sql: str, params: Sequence[Any] = ()) -> list[dict]:
    """The rows ``sql`` returns, as dicts by column name."""
    if _is_postgres(location):
        with psycopg.connect(str(location), autocommit=True) as conn:
            cursor = conn.execute(sql.replace("%", "%%").replace("?", "%s"), tuple(params))
            names = [c.name for c in cursor.description or ()]
            return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    conn = sqlite3.connect(location)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, tuple(params)).fetchall()]
    finally:
        conn.close()


@contextmanager
def failing_inserts(
    location: str | Path, table: str, message: str, when: str = "TRUE"
) -> Iterator[None]:
    """While inside, an insert into ``table`` whose ``NEW`` row meets ``when`` fails with
    ``message`` (a trigger, dropped on leaving)."""
    name = f"fail_{message}"
    if _is_postgres(location):
        rows(
            location,
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{message}'; END $$",
        )
        rows(
            location,
            f"CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW WHEN ({when}) "
            f"EXECUTE FUNCTION {name}()",
        )
    else:
        condition = "" if when == "TRUE" else f"WHEN {when} "
        rows(
            location,
            f"CREATE TRIGGER {name} BEFORE INSERT ON {table} {condition}"
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END",
        )
    try:
        yield
    finally:
        if _is_postgres(location):
            rows(location, f"DROP TRIGGER {name} ON {table}")
            rows(location, f"DROP FUNCTION {name}()")
        else:
            rows(location, f"DROP TRIGGER {name}")


def _admin() -> psycopg.Connection:
    """An autocommit connection to the test server's admin database; skips (fails under CI)
    when the server cannot be reached, as ``postgres_url`` does."""
    url = admin_url()
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split())
        message = f"PostgreSQL at {server_of(url)} unreachable: {reason}; PostgreSQL tests skipped"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def create_database() -> str:
    """The URL of a new database on the test server, migrated by ``Store``."""
    name = f"syncd_test_{secrets.token_hex(6)}"
    with _admin() as conn:
        conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    url = url_of_database(admin_url(), name)
    Store(url).close()
    return url


def drop_database(url: str) -> None:
    """Drop the database of ``url`` (closing whatever is still connected to it)."""
    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    with _admin() as conn:
        conn.execute(
            pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name))
        )


def empty_database(url: str) -> None:
    """Delete every row of the mirror at ``url`` but its schema ledger, and restart its
    numbering, as if it had just been migrated (``DELETE`` of a few rows is much faster than
    ``TRUNCATE``, which makes new files for every table and index)."""
    with psycopg.connect(url) as conn:
        conn.execute("SET lock_timeout = '10s'")
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "AND tablename <> 'schema_migrations' "
                "ORDER BY tablename <> 'time_entry_tag_links', tablename <> 'time_entries'"
            )
        ]
        for table in tables:
            conn.execute(pgsql.SQL("DELETE FROM {}").format(pgsql.Identifier(table)))
        conn.execute(
            "SELECT setval(pg_get_serial_sequence(c.table_name, c.column_name), 1, false) "
            "FROM information_schema.columns AS c "
            "WHERE c.table_schema = current_schema() AND c.is_identity = 'YES'"
        )


class PostgresReader(sqlite3.Connection):
    """A reader for code that queries a mirror through ``sqlite3.Connection.execute`` (``?``
    placeholders, ``fetchall``) that answers from the PostgreSQL database at ``url``."""

    def __init__(self, url: str) -> None:
        super().__init__(":memory:")
        self._conn = psycopg.connect(url, autocommit=True)

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:  # type: ignore[override]
        # PostgreSQL cannot type a bare parameter tested for NULL.
        sql = sql.replace("%", "%%").replace("? IS NULL", "CAST(? AS TEXT) IS NULL")
        return self._conn.execute(sql.replace("?", "%s"), tuple(parameters))

    def close(self) -> None:
        self._conn.close()
        super().close()


class SharedDatabase:
    """One migrated PostgreSQL database for a test class, made on first use and dropped when
    the process ends."""

    def __init__(self) -> None:
        self._url: str | None = None

    def emptied(self) -> str:
        """The database's URL, every row deleted (created on the first call)."""
        if self._url is None:
            self._url = create_database()
            atexit.register(drop_database, self._url)
        empty_database(self._url)
        return self._url
