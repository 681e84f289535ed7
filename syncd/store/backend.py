"""Which database a mirror lives in: SQLite (a file path) or PostgreSQL (a ``postgresql://`` URL).

``open_postgres`` connects peewee's ``PostgresqlDatabase`` through psycopg 3. Peewee 4.5 picks
psycopg 3 when psycopg2 is absent or when asked with ``prefer_psycopg3=True`` (always asked
here), switches the connection to ``autocommit`` and issues ``BEGIN`` itself in ``atomic()``:
outside a transaction every statement commits on its own, exactly as the store's SQLite
connection behaves. Peewee hands a URL to psycopg as a conninfo string only when it starts
with ``postgresql://``, so ``postgres://`` is rewritten to that form.

Differences from SQLite a caller must mind: placeholders are ``%s`` (``db.param``) instead of
``?``; a statement executed with parameters (peewee always passes some, even ``()``) treats
every ``%`` as a placeholder, so a literal ``%`` is written ``%%``; and ``atomic()`` takes no
``"IMMEDIATE"`` (peewee would send ``BEGIN TRANSACTION ISOLATION LEVEL IMMEDIATE``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import psycopg
from peewee import Database, DatabaseError, PostgresqlDatabase, SqliteDatabase
from psycopg import conninfo

from syncd import database_url
from syncd.database_url import redact
from syncd.errors import ConfigError, StoreError

SQLITE: Final = "sqlite"
POSTGRESQL: Final = "postgresql"
KEY: Final = "database.url"
APPLICATION_NAME: Final = "syncd"
#: No JIT: the report views' plans are estimated dear (a running timer's subquery that seldom
#: runs), so JIT would compile them on every call; measured on 1,000,000 entries, a year's
#: report by project took 690 ms with JIT and 26 ms without.
SESSION_OPTIONS: Final = "-c jit=off"


def postgres_conninfo(url: str) -> str:
    """``url`` checked and spelled ``postgresql://…`` (the form peewee passes to psycopg).

    Raises ``ConfigError`` (key ``database.url``) naming the problem (see
    :func:`syncd.database_url.problem`).
    """
    wrong = database_url.problem(url)
    if wrong is not None:
        raise ConfigError([f"{KEY}: {wrong}"])
    return database_url.normalised(url)


def open_postgres(url: str, *, connect_timeout: float = 10.0) -> PostgresqlDatabase:
    """A connected peewee database for the PostgreSQL ``url``, in autocommit between
    ``atomic()`` blocks (like the store's SQLite connection).

    Raises ``ConfigError`` for a malformed URL and ``StoreError`` (password redacted) when
    the server cannot be reached or refuses the connection.
    """
    target = postgres_conninfo(url)
    options = conninfo.conninfo_to_dict(target)
    params: dict[str, object] = {}
    if "connect_timeout" not in options:
        params["connect_timeout"] = max(1, round(connect_timeout))
    if "application_name" not in options:
        params["application_name"] = APPLICATION_NAME
    if "options" not in options:
        params["options"] = SESSION_OPTIONS
    db = PostgresqlDatabase(target, prefer_psycopg3=True, **params)
    try:
        db.connect()
    except (DatabaseError, psycopg.Error) as exc:
        detail = " ".join(str(exc).split())
        raise StoreError(f"cannot connect to PostgreSQL at {redact(url)}: {detail}") from exc
    return db


def backend_name(db: Database) -> str:
    """``"postgresql"`` or ``"sqlite"``: the backend ``db`` speaks.

    Raises ``StoreError`` for any other kind of database.
    """
    if isinstance(db, PostgresqlDatabase):
        return POSTGRESQL
    if isinstance(db, SqliteDatabase):
        return SQLITE
    raise StoreError(f"unsupported database backend {type(db).__name__}")


def is_postgres(db: Database) -> bool:
    """Whether ``db`` is a PostgreSQL database."""
    return isinstance(db, PostgresqlDatabase)


def write_transaction(db: Database) -> Any:
    """A write transaction: ``BEGIN IMMEDIATE`` on SQLite (the write lock is taken up front,
    so two writers never deadlock on an upgrade), a plain ``BEGIN`` on PostgreSQL (row locks
    serialise writers)."""
    return db.atomic() if is_postgres(db) else db.atomic("IMMEDIATE")


def portable(db: Database, sql: str) -> str:
    """``sql`` written with ``?`` placeholders, in the placeholder style of ``db``: unchanged
    on SQLite; on PostgreSQL each ``?`` becomes ``%s`` and a literal ``%`` becomes ``%%``.
    The text must hold no ``?`` or ``%`` inside string literals."""
    if not is_postgres(db):
        return sql
    return sql.replace("%", "%%").replace("?", "%s")


def execute(db: Database, sql: str, params: Sequence[Any] = ()) -> Any:
    """Run ``sql`` (``?`` placeholders) on ``db``; returns the cursor."""
    return db.execute_sql(portable(db, sql), tuple(params))


def drop_if_broken(db: Database) -> bool:
    """Forget ``db``'s connection when the server closed it or it broke mid-statement (a
    PostgreSQL restart, a network cut), so the next statement connects anew; whether it did.

    A SQLite connection never breaks this way: always False there.
    """
    if not is_postgres(db) or db.is_closed():
        return False
    conn = db._state.conn
    if not (getattr(conn, "closed", False) or getattr(conn, "broken", False)):
        return False
    try:
        conn.close()
    except psycopg.Error:
        pass
    db.dispose()
    return True
