"""The syncd exception hierarchy.

Library modules raise these; only the CLI (and the daemon's supervisor) turns them
into messages and exit codes.

    SyncdError
    ├── ConfigError            invalid configuration; ``problems`` lists "key.path: message"
    ├── UsageError             a command used wrongly (bad SQL for ``syncd sql``, bad flags)
    ├── ApiError               talking to upstream failed
    │   ├── TransportError     no usable response: connection refused/reset, timeout
    │   └── ResponseError      a response arrived but is an error; ``status``, ``body``
    │       ├── AuthError          401/403: the key is wrong or lacks permission
    │       ├── RateLimited        429; ``retry_after`` seconds
    │       ├── ServerError        5xx
    │       └── MalformedResponse  2xx whose body is not what the contract says
    ├── BudgetExhausted        the daily request quota (or the plan's share) is spent
    ├── StoreError             the mirror database cannot be used
    │   ├── SchemaTooNew       the database was migrated by a newer syncd
    │   ├── NoDatabase         there is no mirror at the configured path (``path``)
    │   └── StorageError       a failure named by its cause; ``where``, ``detail``
    │       ├── CorruptDatabase    damaged, or not a database: ``syncd rebuild``
    │       ├── DiskFull           SQLITE_FULL: no room left on the disk (or in the file)
    │       ├── ReadOnlyDatabase   SQLITE_READONLY: file, directory or file system read-only
    │       └── StorageIOError     SQLITE_IOERR: the disk or file system failed
    ├── QueryTimeout           ``syncd sql`` ran past its ``--timeout``; ``seconds``
    ├── MassDeleteError        a scan would tombstone more than the configured share
    ├── ShutdownRequested      a stop signal arrived; the work in flight was committed
    └── InvalidWebhook         a webhook request is refused; ``status`` is the answer (4xx)
"""

from __future__ import annotations


class SyncdError(Exception):
    """Base class of every error syncd raises on purpose."""


class ConfigError(SyncdError):
    """The configuration is invalid; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        super().__init__(f"invalid configuration{where}: " + "; ".join(self.problems))


class UsageError(SyncdError):
    """A command was used wrongly (for example a query that is not read-only)."""


class ApiError(SyncdError):
    """Talking to the upstream API failed."""


class TransportError(ApiError):
    """No usable response arrived (connection error, timeout, cut-off body)."""


class ResponseError(ApiError):
    """Upstream answered with an error status."""

    def __init__(self, message: str, *, status: int, body: str = "", url: str = "") -> None:
        self.status = status
        self.body = body
        self.url = url
        super().__init__(message)


class AuthError(ResponseError):
    """401/403: the API key is missing, wrong, revoked or lacks permission."""


class RateLimited(ResponseError):
    """429: upstream refused the request; ``retry_after`` is in seconds."""

    def __init__(self, message: str, *, retry_after: float, **kwargs) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class ServerError(ResponseError):
    """5xx from upstream."""


class MalformedResponse(ResponseError):
    """A success status whose body does not match the documented shape."""


class BudgetExhausted(SyncdError):
    """The daily request quota (or this process's share of it) is spent."""

    def __init__(self, message: str, *, resets_at: float | None = None) -> None:
        self.resets_at = resets_at
        super().__init__(message)


class StoreError(SyncdError):
    """The mirror database cannot be opened or written."""


class NoDatabase(StoreError):
    """There is no mirror database at ``path`` (commands that only read never create one);
    ``key`` is the setting that names it (``database.path`` or ``database.url``)."""

    def __init__(self, path: str, key: str = "database.path") -> None:
        self.path = str(path)
        super().__init__(
            f"no mirror database at {self.path}; check {key} "
            "(`syncd --once` or the daemon creates the mirror)"
        )


class StorageError(StoreError):
    """A storage failure named by its cause; ``where`` is what failed (for example
    "mirror database /var/lib/syncd/mirror.sqlite") and ``detail`` SQLite's own message."""

    cause = "the database failed"
    advice = ""

    #: What to do when the database is a PostgreSQL server rather than a file.
    server_advice = ""

    def __init__(self, where: str, detail: str, *, server: bool = False) -> None:
        self.where = where
        self.detail = detail
        text = self.server_advice if server else self.advice
        advice = f"; {text}" if text else ""
        super().__init__(f"{where}: {self.cause} ({detail}){advice}")


class CorruptDatabase(StorageError):
    """The database file is damaged (SQLITE_CORRUPT, SQLITE_NOTADB, or problems found by
    ``PRAGMA quick_check``): syncing stops until ``syncd rebuild`` replaces it."""

    cause = "the database file is damaged"
    advice = (
        "syncing stopped; stop the daemon and the timer, then run `syncd -c CONFIG rebuild` "
        "to move the file aside and backfill a new mirror (see Recovery in docs/operations.md)"
    )
    server_advice = (
        "syncing stopped; the PostgreSQL server reported damaged data: check its log, restore "
        "the database from a backup or empty it and let syncd backfill"
    )


class DiskFull(StorageError):
    """SQLITE_FULL: the file system (or the database's page limit) has no room left; the
    failed transaction was rolled back."""

    cause = "the disk is full"
    advice = (
        "nothing of the failed transaction was kept; free space on the file system that "
        "holds the mirror and its -wal file, then run again"
    )
    server_advice = (
        "nothing of the failed transaction was kept; free space on the PostgreSQL server, "
        "then run again"
    )


class ReadOnlyDatabase(StorageError):
    """SQLITE_READONLY: the file, its directory or its file system cannot be written."""

    cause = "the database is read-only"
    advice = (
        "syncd needs write access to the file and to its directory (for the -wal and -shm "
        "files), on a file system mounted read-write"
    )
    server_advice = (
        "the PostgreSQL session is read-only: point database.url at the primary (not a "
        "standby) and check default_transaction_read_only for syncd's role"
    )


class StorageIOError(StorageError):
    """SQLITE_IOERR: the operating system failed a read or write of the database files."""

    cause = "disk I/O error"
    advice = (
        "the disk or file system failed; check the kernel log (dmesg) and free space, then "
        "run again, or `syncd rebuild` if the mirror is damaged"
    )


class SchemaTooNew(StoreError):
    """The database carries migrations this version of syncd does not know."""

    def __init__(self, unknown: list[str]) -> None:
        self.unknown = list(unknown)
        super().__init__(
            "database was migrated by a newer syncd (unknown migrations: "
            + ", ".join(self.unknown)
            + "); upgrade syncd"
        )


class QueryTimeout(SyncdError):
    """A ``syncd sql`` query ran longer than its time limit and was interrupted."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(
            f"query interrupted after {seconds:g} s (--timeout); narrow it, or allow more "
            "time with --timeout SECONDS (0 for no limit)"
        )


class MassDeleteError(SyncdError):
    """A complete scan would tombstone more than the allowed share of live entries."""

    def __init__(
        self, *, workspace_id: str, would_delete: int, live: int, threshold: float
    ) -> None:
        self.workspace_id = workspace_id
        self.would_delete = would_delete
        self.live = live
        self.threshold = threshold
        super().__init__(
            f"refusing to tombstone {would_delete} of {live} live entries in workspace "
            f"{workspace_id} within a day (more than {threshold:.0%}); if upstream really "
            "lost them, run again with --force-delete"
        )


def timed_out(exc: BaseException) -> bool:
    """Whether a failed request took too long to answer: a 504 from a gateway, or a request
    that timed out on the wire (a smaller window may succeed where a retry would not)."""
    if isinstance(exc, ServerError):
        return exc.status == 504
    return isinstance(exc, TransportError) and str(exc).startswith("timed out")


class UpstreamEmptyError(ApiError):
    """Every answer for a workspace came back empty while the mirror holds its entries."""

    def __init__(self, *, workspace_id: str, live: int) -> None:
        self.workspace_id = workspace_id
        self.live = live
        super().__init__(
            f"upstream answered every request for workspace {workspace_id} with no entries "
            f"while the mirror holds {live} live entries there; nothing was tombstoned. If "
            "the workspace really was emptied, run again with --force-delete"
        )


class ShutdownRequested(SyncdError):
    """A stop signal arrived; the window in flight was committed before stopping."""


class InvalidWebhook(SyncdError):
    """A webhook request was refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, *, status: int) -> None:
        self.status = status
        super().__init__(message)
