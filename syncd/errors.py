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
    │   └── SchemaTooNew       the database was migrated by a newer syncd
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


class SchemaTooNew(StoreError):
    """The database carries migrations this version of syncd does not know."""

    def __init__(self, unknown: list[str]) -> None:
        self.unknown = list(unknown)
        super().__init__(
            "database was migrated by a newer syncd (unknown migrations: "
            + ", ".join(self.unknown)
            + "); upgrade syncd"
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


class ShutdownRequested(SyncdError):
    """A stop signal arrived; the window in flight was committed before stopping."""


class InvalidWebhook(SyncdError):
    """A webhook request was refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, *, status: int) -> None:
        self.status = status
        super().__init__(message)
