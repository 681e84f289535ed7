"""Read-only access for ``syncd sql`` and ``syncd report`` (stdlib ``sqlite3``).

The file is opened with ``mode=ro`` (SQLite cannot write through this connection, and a reader
on a WAL database never blocks the daemon's writer), ``PRAGMA query_only`` is set, and an
authorizer refuses every action that is not a read: writes, schema changes, ATTACH/DETACH,
transactions and any PRAGMA outside a short list of informational ones.

A query runs on a thread of its own while the calling thread waits, so a time limit and
Ctrl-C both stop it (``Connection.interrupt``), even one stuck in a runaway recursive CTE.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from syncd.errors import NoDatabase, QueryTimeout, StorageError, UsageError
from syncd.store import reports
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
    """A read-only connection to the mirror at ``path``.

    Raises ``NoDatabase`` when the file does not exist (nothing is created), and
    ``StoreError`` (``CorruptDatabase``, ``StorageIOError``, ...) when it is not a readable
    SQLite database.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
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

        ``timeout`` (seconds; None or 0 for none) bounds the statement and the reading of its
        rows. Raises ``UsageError`` with SQLite's message for bad SQL, several statements, or
        any statement that is not a read; ``QueryTimeout`` past ``timeout``;
        ``KeyboardInterrupt`` on Ctrl-C (the statement is stopped first); ``CorruptDatabase``,
        ``StorageIOError`` and the like when the file fails.
        """
        if not sql.strip():
            raise UsageError("empty query")

        def run() -> Result:
            cursor = self._conn.execute(sql, params)
            rows = cursor.fetchall()
            return [d[0] for d in cursor.description or ()], rows

        try:
            return self._bounded(run, timeout)
        except (sqlite3.Error, sqlite3.Warning) as exc:
            error = storage_error(exc, f"mirror database {self.path}", self.path)
            if isinstance(error, StorageError):
                raise error from exc
            raise UsageError(f"query failed: {exc}") from exc

    def _bounded(self, fn: Callable[[], T], timeout: float | None) -> T:
        """Run ``fn`` on a worker thread; interrupt it past ``timeout`` or on Ctrl-C.

        The calling thread waits in an interruptible wait, so SIGINT reaches Python even while
        SQLite is busy in C. Raises what ``fn`` raises, ``QueryTimeout`` or
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
                    self._conn.interrupt()
                    done.wait()
        except KeyboardInterrupt:
            self._conn.interrupt()
            done.wait()
            raise
        error = outcome.get("error")
        if error is not None:
            if timed_out and "interrupt" in str(error):
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
            reports.hours_report_sql(by), reports.hours_report_params(since, until, workspace_id)
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
        """Live entries whose description matches the FTS5 query ``text``; ``UsageError``
        for a malformed search expression."""
        return self.query(
            reports.SEARCH_SQL, reports.search_params(text, since, until, workspace_id, limit)
        )


def run_readonly_query(
    path: str | Path, sql: str, params: tuple[Any, ...] = (), *, timeout: float | None = None
) -> Result:
    """Open the mirror read-only, run one query (bounded by ``timeout`` seconds), close.

    Raises ``UsageError``, ``QueryTimeout``, ``KeyboardInterrupt`` or ``StoreError``
    (``NoDatabase`` when there is no mirror at ``path``).
    """
    with ReadOnlyMirror(path) as mirror:
        return mirror.query(sql, params, timeout=timeout)
