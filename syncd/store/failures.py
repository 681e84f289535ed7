"""What a database failure means: :func:`storage_error` turns it into the ``StoreError`` that
names its cause.

SQLite: ``CorruptDatabase`` (SQLITE_CORRUPT, SQLITE_NOTADB), ``DiskFull``
(SQLITE_FULL), ``ReadOnlyDatabase`` (SQLITE_READONLY, or a file SQLite cannot open because its
directory or file system is read-only) and ``StorageIOError`` (SQLITE_IOERR). When a commit
fails, SQLite may already have rolled the transaction back, and the rollback that follows fails
with "cannot rollback - no transaction is active": the error is named after the failed commit,
never after that rollback.

PostgreSQL (psycopg errors, by SQLSTATE): disk full (``53100``) is ``DiskFull``, a read-only
transaction or server (``25006``) ``ReadOnlyDatabase``, damaged data (``XX001``, ``XX002``)
``CorruptDatabase``; a refused or lost connection, a statement timeout, a serialization
failure or deadlock become a ``StoreError`` saying so. ``where`` names the database by its URL
with the password hidden (``syncd.database_url.redact``).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import peewee
import psycopg

from syncd.errors import CorruptDatabase, DiskFull, ReadOnlyDatabase, StorageIOError, StoreError

#: What a database failure can raise: peewee's wrapped errors, and the drivers' own.
DATABASE_ERRORS = (peewee.DatabaseError, sqlite3.Error, psycopg.Error)

_PRIMARY = {
    sqlite3.SQLITE_CORRUPT: CorruptDatabase,
    sqlite3.SQLITE_NOTADB: CorruptDatabase,
    sqlite3.SQLITE_FULL: DiskFull,
    sqlite3.SQLITE_READONLY: ReadOnlyDatabase,
    sqlite3.SQLITE_IOERR: StorageIOError,
}
# Python's sqlite3 sets ``sqlite_errorcode`` on the errors it raises; these messages are
# SQLite's own texts for the same codes, for errors that reach us without it.
_BY_MESSAGE = (
    ("database disk image is malformed", CorruptDatabase),
    ("file is not a database", CorruptDatabase),
    ("database or disk is full", DiskFull),
    ("readonly database", ReadOnlyDatabase),
    ("disk i/o error", StorageIOError),
)
_MASKING = ("no transaction is active",)

# PostgreSQL's SQLSTATEs with a kind of their own ...
_PG_KINDS = {
    "53100": DiskFull,  # disk_full
    "25006": ReadOnlyDatabase,  # read_only_sql_transaction
    "XX001": CorruptDatabase,  # data_corrupted
    "XX002": CorruptDatabase,  # index_corrupted
}
# ... and those that are a plain StoreError saying what happened.
_PG_CAUSES = {
    "57014": "the statement timed out",  # query_canceled (statement_timeout)
    "40001": "a concurrent transaction conflicted (serialization failure); run again",
    "40P01": "a concurrent transaction deadlocked with this one; run again",
    "57P01": "the PostgreSQL server shut the connection down",  # admin_shutdown
    "57P02": "the PostgreSQL server crashed",  # crash_shutdown
    "57P03": "the PostgreSQL server is not accepting connections yet",  # cannot_connect_now
    "53300": "the PostgreSQL server has too many connections",  # too_many_connections
}
_CONNECTION = "the connection to PostgreSQL failed or was lost"


def storage_error(exc: BaseException, where: str, path: str | Path | None = None) -> StoreError:
    """The ``StoreError`` naming the cause of the SQLite failure ``exc``.

    ``where`` names what failed (e.g. "mirror database /var/lib/syncd/mirror.sqlite");
    ``path``, when given, lets a file SQLite could not open be explained (read-only
    directory or file system, missing directory). Errors other than the named kinds become
    a plain ``StoreError`` carrying SQLite's message.
    """
    cause = _original(exc)
    if isinstance(cause, psycopg.Error):
        return _postgres_error(cause, where)
    detail = str(cause)
    code = _code(cause)
    kind = _PRIMARY.get(code & 0xFF) if code is not None else None
    if kind is None:
        lowered = detail.lower()
        kind = next((k for text, k in _BY_MESSAGE if text in lowered), None)
    if kind is None and code is not None and code & 0xFF == sqlite3.SQLITE_CANTOPEN:
        return _cannot_open(where, detail, path)
    if kind is None:
        return StoreError(f"{where}: {detail}")
    return kind(where, detail)


def _postgres_error(exc: psycopg.Error, where: str) -> StoreError:
    """The ``StoreError`` naming the cause of the psycopg failure ``exc``."""
    detail = " ".join(str(exc).split()) or type(exc).__name__
    code = exc.sqlstate
    kind = _PG_KINDS.get(code or "")
    if kind is not None:
        return kind(where, detail, server=True)
    cause = _PG_CAUSES.get(code or "")
    lost = code is None and isinstance(exc, psycopg.OperationalError)  # no answer at all
    if cause is None and ((code or "").startswith("08") or lost):  # connection_exception
        cause = _CONNECTION
    if cause is None:
        return StoreError(f"{where}: {detail}")
    return StoreError(f"{where}: {cause} ({detail})")


def _original(exc: BaseException) -> BaseException:
    """The failure behind ``exc``: a failed rollback after a failed commit reports the
    commit's error (SQLite had rolled the transaction back already)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if not any(text in str(current) for text in _MASKING):
            return getattr(current, "orig", None) or current
        current = current.__cause__ or current.__context__
    return getattr(exc, "orig", None) or exc


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code if isinstance(code, int) else None


def _cannot_open(where: str, detail: str, path: str | Path | None) -> StoreError:
    if path is None:
        return StoreError(f"{where}: {detail}")
    directory = Path(path).resolve().parent
    if not directory.is_dir():
        return StoreError(f"{where}: {detail} (the directory {directory} does not exist)")
    if _read_only_file_system(directory) or not os.access(directory, os.W_OK):
        return ReadOnlyDatabase(where, f"{detail}: cannot write in {directory}")
    return StoreError(f"{where}: {detail}")


def _read_only_file_system(directory: Path) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return False
