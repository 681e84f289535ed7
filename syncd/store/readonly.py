"""Read-only access for ``syncd sql`` and ``syncd report`` (stdlib ``sqlite3``).

The file is opened with ``mode=ro`` (SQLite cannot write through this connection, and a reader
on a WAL database never blocks the daemon's writer), ``PRAGMA query_only`` is set, and an
authorizer refuses every action that is not a read: writes, schema changes, ATTACH/DETACH,
transactions and any PRAGMA outside a short list of informational ones.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from syncd.errors import StoreError, UsageError
from syncd.store import reports

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

    Raises ``StoreError`` when the file does not exist or is not a readable SQLite database.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise StoreError(f"no mirror database at {self.path}")
        uri = self.path.resolve().as_uri() + "?mode=ro"
        try:
            self._conn = sqlite3.connect(uri, uri=True, timeout=5.0)
            self._conn.execute("PRAGMA query_only = 1")
            # Reports read a large share of the file: a bigger page cache and memory-mapped
            # reads (no read() call per page) make year-long reports several times faster.
            self._conn.execute(f"PRAGMA cache_size = {-CACHE_KIB}")
            self._conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
            self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read mirror database {self.path}: {exc}") from exc
        self._conn.set_authorizer(_authorize)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ReadOnlyMirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> Result:
        """Run one read-only statement and return ``(columns, rows)``.

        Raises ``UsageError`` with SQLite's message for bad SQL, several statements, or any
        statement that is not a read.
        """
        if not sql.strip():
            raise UsageError("empty query")
        try:
            cursor = self._conn.execute(sql, params)
            rows = cursor.fetchall()
        except (sqlite3.Error, sqlite3.Warning) as exc:
            raise UsageError(f"query failed: {exc}") from exc
        columns = [d[0] for d in cursor.description or ()]
        return columns, rows

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


def run_readonly_query(path: str | Path, sql: str, params: tuple[Any, ...] = ()) -> Result:
    """Open the mirror read-only, run one query, close. Raises ``UsageError``/``StoreError``."""
    with ReadOnlyMirror(path) as mirror:
        return mirror.query(sql, params)
