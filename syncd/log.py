"""Logging: structured events through structlog, one renderer for everything.

Our own events (``structlog.get_logger().info("window_scanned", ...)``) and the stdlib logs
of aiohttp and APScheduler pass through the same ``ProcessorFormatter``, so every line has
the same shape: ISO 8601 UTC timestamp, level, logger, event, bound context
(``structlog.contextvars``). Output is JSON lines when the stream is not a terminal (systemd,
cron, pipes) and a readable console format on a terminal. The log goes to stderr: stdout
carries only a command's result.

Secrets never reach the output: a redaction step masks any value equal to a configured
secret (and, for secrets of 8 characters or more, any occurrence inside a longer text),
including exception texts. Secrets made while running (the webhook path token) are added with
:func:`register_secret`. Tracebacks are rendered without local variables.

peewee logs every SQL statement at DEBUG as ``(sql, params)``. The parameters are the values
written and read (settings, the subscription record, people's names and descriptions), so
only the statement text is logged, with the number of parameters withheld: peewee binds every
value as a parameter, so the text carries none. The statements are logged only with
``log_sql`` (``syncd --log-sql``), whatever the level: debug output is syncd's own events.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog
from structlog.processors import ExceptionRenderer
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor

MASK = "**********"
# Shorter secrets are masked only where a value equals them, so that a short test key
# like "k" does not blank out every "k" in the log.
MIN_SUBSTRING_SECRET = 8

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# Chatty third-party loggers and the level they are held at unless we log at debug level.
# APScheduler logs every job start and finish at INFO.
QUIET_LOGGERS = {"apscheduler": logging.WARNING}
#: peewee's logger: every SQL statement at DEBUG, shown only with ``log_sql``.
SQL_LOGGER = "peewee"

# Secrets known only at run time, masked by every redactor (see register_secret).
_registered: frozenset[str] = frozenset()


def register_secret(value: str) -> None:
    """Mask ``value`` in every event from now on, in every :class:`SecretRedactor`, including
    those already configured (for secrets made at run time, such as the webhook token)."""
    global _registered
    if value and value not in _registered:
        _registered = _registered | {value}


def clear_registered_secrets() -> None:
    """Forget the secrets given to :func:`register_secret` (for tests)."""
    global _registered
    _registered = frozenset()


class SqlParametersWithheld(logging.Filter):
    """Rewrites peewee's ``(sql, params)`` debug records to the SQL text alone."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, tuple) and len(record.msg) == 2:
            sql, params = record.msg
            sized = isinstance(params, list | tuple | dict)
            count = len(params) if sized else int(params is not None)
            record.msg = f"{sql} -- {count} parameters not logged"
            record.args = None
        return True


_SQL_FILTER = SqlParametersWithheld()


class SecretRedactor:
    """A structlog processor that masks secrets anywhere in an event (nested values too):
    the ``secrets`` given and every secret passed to :func:`register_secret`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._own = frozenset(s for s in secrets if s)
        self._seen: frozenset[str] | None = None
        self._all: tuple[str, ...] = ()

    @property
    def _secrets(self) -> tuple[str, ...]:
        registered = _registered
        if registered is not self._seen:
            self._all = tuple(sorted(self._own | registered, key=len, reverse=True))
            self._seen = registered
        return self._all

    def __call__(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        if not self._secrets:
            return event_dict
        for key, value in list(event_dict.items()):
            event_dict[key] = self.redact(value)
        return event_dict

    def redact(self, value: Any) -> Any:
        """``value`` with every secret masked (strings, and inside dicts, lists, tuples)."""
        if not self._secrets:
            return value
        if isinstance(value, str):
            for secret in self._secrets:
                if value == secret:
                    return MASK
                if len(secret) >= MIN_SUBSTRING_SECRET and secret in value:
                    value = value.replace(secret, MASK)
            return value
        if isinstance(value, MutableMapping):
            return {k: self.redact(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.redact(v) for v in value)
        return value


def configure_logging(
    level: str = "info",
    fmt: str = "auto",
    *,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    log_sql: bool = False,
) -> None:
    """Route structlog and stdlib logging through one formatter writing to ``stream``.

    ``level`` is one of debug, info, warning, error; ``fmt`` is auto (console on a terminal,
    JSON otherwise), json or console. ``stream`` defaults to stderr. ``secrets`` are masked
    in every event. SQL statements are logged only with ``log_sql`` (at any level). May be
    called again (for example once the config is loaded); the last call wins.

    Raises ``ValueError`` for an unknown level or format.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}")
    if fmt not in ("auto", "json", "console"):
        raise ValueError(f"unknown log format {fmt!r}")
    stream = stream if stream is not None else sys.stderr
    console = fmt == "console" or (fmt == "auto" and _isatty(stream))

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    redact = SecretRedactor(secrets)
    final: list[Processor]
    if console:
        final = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Render the traceback to text before redaction, so its message is redacted too.
            structlog.processors.format_exc_info,
            redact,
            structlog.dev.ConsoleRenderer(
                colors=_isatty(stream), exception_formatter=structlog.dev.plain_traceback
            ),
        ]
    else:
        final = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            redact,
            structlog.processors.JSONRenderer(),
        ]

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: the configuration changes once the config file is read, and
        # structlog.testing.capture_logs only sees loggers that are not cached.
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    numeric = LEVELS[level]
    logging.basicConfig(handlers=[handler], level=numeric, force=True)
    # On the logger, so no handler (ours or anyone's) ever sees peewee's parameters.
    logging.getLogger(SQL_LOGGER).addFilter(_SQL_FILTER)
    logging.getLogger(SQL_LOGGER).setLevel(logging.DEBUG if log_sql else logging.WARNING)
    for name, quiet_level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(
            logging.NOTSET if numeric <= logging.DEBUG else quiet_level
        )


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or the stream is closed
        return False
