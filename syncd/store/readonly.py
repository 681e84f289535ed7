"""Read-only access for ``syncd sql`` and ``syncd report``, on SQLite (stdlib ``sqlite3``) and
PostgreSQL (psycopg 3).

SQLite: the file is opened with ``mode=ro`` (SQLite cannot write through this connection, and
a reader on a WAL database never blocks the daemon's writer), ``PRAGMA query_only`` is set, and
an authorizer refuses every action that is not a read: writes, schema changes, ATTACH/DETACH,
transactions and any PRAGMA outside a short list of informational ones.

PostgreSQL: a connection of its own (not the store's), whose every query runs alone (the
extended protocol: one statement, never several) in a ``BEGIN READ ONLY`` transaction that is
rolled back afterwards, with ``statement_timeout`` set for that transaction; the session's
``default_transaction_read_only`` is on too. The server refuses every write in it (SQLSTATE
25006), which is reported as the same ``UsageError`` as SQLite's refusal; a statement that ends
the transaction itself is refused too. This guards against mistakes, not against a hostile
user: the boundary for people is a read-only role (docs/operations.md, "Readers on
PostgreSQL").

A query runs on a thread of its own while the calling thread waits, so a time limit and
Ctrl-C both stop it (``Connection.interrupt`` on SQLite, ``Connection.cancel`` on
PostgreSQL), even one stuck in a runaway recursive CTE.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus
from psycopg.types.numeric import FloatLoader
from psycopg.types.string import TextLoader

from syncd.database_url import is_postgres_url, redact
from syncd.errors import NoDatabase, QueryTimeout, StorageError, StoreError, UsageError
from syncd.store import reports
from syncd.store.backend import SESSION_OPTIONS, postgres_conninfo
from syncd.store.failures import storage_error

T = TypeVar("T")

_READ_ACTIONS = frozenset(
    {
        sqlite3.SQLITE_SELECT,
        sqlite3.SQLITE_READ,
        sqlite3.SQLITE_FUNCTION,
        sqlite3.SQLITE_RECURSIVE,
    }
)
# PRAGMAs whose argument names the thing to report on (``PRAGMA table_info(t)``).
_REPORTING_PRAGMAS = frozenset(
    {
        "table_info",
        "table_xinfo",
        "table_list",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
        "collation_list",
        "function_list",
        "database_list",
        "compile_options",
    }
)
# PRAGMAs that set something when given a value; allowed only without one (a read).
_SETTING_PRAGMAS = frozenset(
    {
        "user_version",
        "schema_version",
        "application_id",
        "data_version",
        "page_count",
        "page_size",
        "freelist_count",
        "journal_mode",
        "encoding",
        "query_only",
        "foreign_keys",
    }
)

CACHE_KIB = 65536
MMAP_BYTES = 1 << 30

#: ``application_name`` of a reader's PostgreSQL connection (``pg_stat_activity`` shows it).
PG_APPLICATION_NAME = "syncd-reader"
#: Seconds a PostgreSQL reader waits for the server to answer a connection.
PG_CONNECT_TIMEOUT = 10
#: Seconds past ``statement_timeout`` after which the reader cancels a query itself (the
#: server normally stops it first; this bounds a stuck network too).
PG_CANCEL_GRACE = 2.0
#: Types read as PostgreSQL's own text, so every value is one a table, CSV or JSON can show;
#: ``numeric`` is read as a float (SQLite's REAL).
_PG_TEXT_TYPES = (
    "date",
    "time",
    "timetz",
    "timestamp",
    "timestamptz",
    "interval",
    "json",
    "jsonb",
    "uuid",
    "inet",
    "cidr",
)

Result = tuple[list[str], list[tuple[Any, ...]]]


def _authorize(action: int, arg1: str | None, arg2: str | None, *_: object) -> int:
    if action in _READ_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA:
        name = (arg1 or "").lower()
        if name in _REPORTING_PRAGMAS or (name in _SETTING_PRAGMAS and arg2 is None):
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY
    # SQLite itself reports schema-table updates while it connects a virtual table (FTS5);
    # the connection is read-only anyway, so nothing can be written through them.
    if action == sqlite3.SQLITE_UPDATE and arg1 == "sqlite_master":
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


class ReadOnlyMirror:
    """A read-only connection to the mirror at ``location``: a SQLite file's path, or a
    ``postgresql://`` (``postgres://``) URL.

    Raises ``NoDatabase`` when the SQLite file does not exist (nothing is created),
    ``StoreError`` (``CorruptDatabase``, ``StorageIOError``, ...) when it is not a readable
    SQLite database or the PostgreSQL server cannot be reached (password redacted), and
    ``ConfigError`` for a malformed PostgreSQL URL.

    ``postgres`` says which backend it reads, ``shown`` where (a URL's password as ``***``);
    ``path`` is the SQLite file (empty on PostgreSQL).
    """

    def __init__(self, location: str | Path) -> None:
        self.postgres = isinstance(location, str) and is_postgres_url(location)
        if self.postgres:
            assert isinstance(location, str)
            self.path = Path()
            self.shown = redact(location)
            self._pg = _connect_postgres(location)
            return
        self.path = Path(location)
        self.shown = str(self.path)
        if not self.path.is_file():
            raise NoDatabase(str(self.path))
        uri = self.path.resolve().as_uri() + "?mode=ro"
        try:
            # Queries run on a worker thread (see ``_bounded``), one at a time.
            self._conn = sqlite3.connect(uri, uri=True, timeout=5.0, check_same_thread=False)
            self._conn.execute("PRAGMA query_only = 1")
            # Reports read a large share of the file: a bigger page cache and memory-mapped
            # reads (no read() call per page) make year-long reports several times faster.
            self._conn.execute(f"PRAGMA cache_size = {-CACHE_KIB}")
            self._conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
            self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise storage_error(exc, f"cannot read mirror database {self.path}", self.path) from exc
        self._conn.set_authorizer(_authorize)

    def close(self) -> None:
        if self.postgres:
            self._pg.close()
        else:
            self._conn.close()

    def __enter__(self) -> ReadOnlyMirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(
        self,
        sql: str,
        params: tuple[Any, ...] | dict[str, Any] = (),
        *,
        timeout: float | None = None,
    ) -> Result:
        """Run one read-only statement and return ``(columns, rows)``.

        ``params`` are bound as the backend's placeholders (``?`` on SQLite, ``%s`` or
        ``%(name)s`` on PostgreSQL). ``timeout`` (seconds; None or 0 for none) bounds the
        statement and the reading of its rows. Raises ``UsageError`` with the database's
        message for bad SQL, several statements, or any statement that is not a read;
        ``QueryTimeout`` past ``timeout``; ``KeyboardInterrupt`` on Ctrl-C (the statement is
        stopped first); ``CorruptDatabase``, ``StorageIOError``, ``StoreError`` and the like
        when the database fails.
        """
        if not sql.strip():
            raise UsageError("empty query")
        if self.postgres:
            return self._query_postgres(sql, params, timeout)

        def run() -> Result:
            cursor = self._conn.execute(sql, params)
            rows = cursor.fetchall()
            return [d[0] for d in cursor.description or ()], rows

        try:
            return self._bounded(run, timeout, self._conn.interrupt)
        except (sqlite3.Error, sqlite3.Warning) as exc:
            error = storage_error(exc, f"mirror database {self.path}", self.path)
            if isinstance(error, StorageError):
                raise error from exc
            raise UsageError(f"query failed: {exc}") from exc

    def _query_postgres(
        self, sql: str, params: tuple[Any, ...] | dict[str, Any], timeout: float | None
    ) -> Result:
        """``query`` on PostgreSQL: one statement in a read-only transaction, rolled back."""
        conn = self._pg

        def run() -> Result:
            with conn.cursor() as cursor:
                cursor.execute("BEGIN READ ONLY")
                # A SELECT takes the snapshot: from here the transaction cannot be made
                # read-write any more.
                cursor.execute(
                    "SELECT set_config('statement_timeout', %s, true)",
                    (str(max(1, round(timeout * 1000))) if timeout else "0",),
                )
                # Prepared (extended protocol) even without parameters: one statement only.
                cursor.execute(sql, params or None, prepare=True)
                columns = [d.name for d in cursor.description or ()]
                rows = _plain_rows(cursor.fetchall()) if columns else []
                ended = conn.info.transaction_status != TransactionStatus.INTRANS
            conn.rollback()
            if ended:
                raise UsageError(
                    "query failed: a read runs in a transaction of its own; "
                    "transaction control (COMMIT, ROLLBACK, ...) is not allowed"
                )
            return columns, rows

        deadline = timeout + PG_CANCEL_GRACE if timeout else None
        try:
            return self._bounded(run, deadline, conn.cancel)
        except QueryTimeout:
            self._recover()
            raise QueryTimeout(timeout or 0) from None
        except psycopg.Error as exc:
            self._recover()
            if isinstance(exc, pg_errors.QueryCanceled) and timeout:
                raise QueryTimeout(timeout) from exc
            if isinstance(exc, psycopg.OperationalError) and not isinstance(
                exc, pg_errors.QueryCanceled
            ):
                detail = " ".join(str(exc).split())
                raise StoreError(f"mirror database {self.shown}: {detail}") from exc
            raise UsageError(f"query failed: {' '.join(str(exc).split())}") from exc
        except BaseException:
            self._recover()
            raise

    def _recover(self) -> None:
        """Roll back whatever a failed or stopped PostgreSQL query left open."""
        if not self._pg.closed and self._pg.info.transaction_status != TransactionStatus.IDLE:
            try:
                self._pg.rollback()
            except psycopg.Error:
                self._pg.close()

    def _bounded(self, fn: Callable[[], T], timeout: float | None, stop: Callable[[], Any]) -> T:
        """Run ``fn`` on a worker thread; ``stop`` it past ``timeout`` or on Ctrl-C.

        The calling thread waits in an interruptible wait, so SIGINT reaches Python even while
        the database is busy in C. Raises what ``fn`` raises, ``QueryTimeout`` or
        ``KeyboardInterrupt``.
        """
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                outcome["value"] = fn()
            except BaseException as exc:  # handed to the waiting thread
                outcome["error"] = exc
            finally:
                done.set()

        threading.Thread(target=work, name="syncd-query", daemon=True).start()
        deadline = time.monotonic() + timeout if timeout else None
        timed_out = False
        try:
            while not done.wait(None if deadline is None else deadline - time.monotonic()):
                if deadline is not None and time.monotonic() >= deadline:
                    timed_out = True
                    stop()
                    done.wait()
        except KeyboardInterrupt:
            stop()
            done.wait()
            raise
        error = outcome.get("error")
        if error is not None:
            if timed_out and _stopped(error):
                raise QueryTimeout(timeout or 0) from error
            raise error
        return outcome["value"]

    def report_hours(
        self,
        by: str,
        since: str | None = None,
        until: str | None = None,
        workspace_id: str | None = None,
    ) -> Result:
        """Hours grouped by ``by`` (project, client, member, day, week or month) over
        ``[since, until]`` (YYYY-MM-DD, inclusive, either side open). Raises ``UsageError``."""
        return self.query(
            reports.hours_report_sql(by, postgres=self.postgres),
            reports.hours_report_params(since, until, workspace_id, postgres=self.postgres),
        )

    def search(
        self,
        text: str,
        *,
        since: str | None = None,
        until: str | None = None,
        workspace_id: str | None = None,
        limit: int = 100,
    ) -> Result:
        """Live entries whose description matches ``text``, accents and case folded: an FTS5
        query on SQLite; on PostgreSQL plain words (``invoice review``, ``invoi*``) find what
        they find on SQLite, and anything else is read as a ``tsquery`` (``invoice & !draft``).
        Raises ``UsageError`` for a malformed search expression."""
        return self.query(
            reports.search_sql(postgres=self.postgres),
            reports.search_params(text, since, until, workspace_id, limit, postgres=self.postgres),
        )

    def workspaces(self) -> list[tuple[str, str | None]]:
        """``(id, name)`` of every workspace the mirror holds, by id. Raises ``StoreError``."""
        order = 'id COLLATE "C"' if self.postgres else "id"
        sql = f"SELECT id, name FROM workspaces ORDER BY {order}"  # noqa: S608 (constants)
        return [(row[0], row[1]) for row in self.query(sql)[1]]


def _stopped(error: BaseException) -> bool:
    """Whether ``error`` is a query stopped by ``interrupt`` or ``cancel``."""
    return "interrupt" in str(error) or isinstance(error, pg_errors.QueryCanceled)


_PLAIN = (bool, int, float, str, bytes)


def _plain_rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``rows`` as a table, CSV or JSON can show them: lists and other Python objects a
    PostgreSQL type came in as become their text. A column's values share one type, so the
    columns to convert are told once from their first value that is not NULL, and rows with
    none are returned as they are."""
    if not rows:
        return rows
    odd = []
    for i in range(len(rows[0])):
        first = next((row[i] for row in rows if row[i] is not None), None)
        if first is not None and not isinstance(first, _PLAIN):
            odd.append(i)
    if not odd:
        return rows
    return [
        tuple(
            str(v) if i in odd and v is not None and not isinstance(v, _PLAIN) else v
            for i, v in enumerate(row)
        )
        for row in rows
    ]


def _connect_postgres(url: str) -> psycopg.Connection:
    """A reader's own connection to the PostgreSQL ``url``: autocommit (each query opens its
    own read-only transaction), ``default_transaction_read_only`` on.

    Raises ``ConfigError`` for a malformed URL and ``StoreError`` (password redacted) when the
    server cannot be reached or refuses the connection.
    """
    target = postgres_conninfo(url)
    try:
        conn = psycopg.connect(
            target,
            autocommit=True,
            connect_timeout=PG_CONNECT_TIMEOUT,
            application_name=PG_APPLICATION_NAME,
            options=f"-c default_transaction_read_only=on {SESSION_OPTIONS}",
        )
    except psycopg.Error as exc:
        detail = " ".join(str(exc).split())
        raise StoreError(f"cannot connect to PostgreSQL at {redact(url)}: {detail}") from exc
    conn.adapters.register_loader("numeric", FloatLoader)
    for name in _PG_TEXT_TYPES:
        conn.adapters.register_loader(name, TextLoader)
    return conn


def run_readonly_query(
    location: str | Path,
    sql: str,
    params: tuple[Any, ...] | dict[str, Any] = (),
    *,
    timeout: float | None = None,
) -> Result:
    """Open the mirror at ``location`` (a SQLite path or a PostgreSQL URL) read-only, run one
    query (bounded by ``timeout`` seconds), close.

    Raises ``UsageError``, ``QueryTimeout``, ``KeyboardInterrupt``, ``ConfigError`` (a
    malformed URL) or ``StoreError`` (``NoDatabase`` when there is no SQLite mirror at
    ``location``).
    """
    with ReadOnlyMirror(location) as mirror:
        return mirror.query(sql, params, timeout=timeout)
