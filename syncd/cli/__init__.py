"""The ``syncd`` command line.

This is the only module that talks to the user: it parses arguments, loads the config,
configures logging, calls ``syncd.service`` (sync, daemon, status) or
``syncd.store.readonly`` (sql, report), prints results, and turns every error into a
message and an exit code in one place, :func:`handle_cli_error`.

Exit codes: 0 success, 1 the sync (or another operation) failed, 2 configuration or usage
error (including a mirror that does not exist for a command that only reads, a missing
database directory and a taken listen port), 130 interrupted (Ctrl-C).

Streams: the log goes to stderr; stdout carries only a command's result (rows, reports,
status, the ``--once`` summary line when stdout is not a terminal).

The heavy modules (service, store, rich) are imported inside the commands that need them,
so ``syncd --help`` and ``syncd check-config`` stay fast.
"""

from __future__ import annotations

import asyncio
import csv
import errno
import json
import os
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

import click
import structlog

from syncd import __version__
from syncd.errors import (
    ApiError,
    AuthError,
    BudgetExhausted,
    ConfigError,
    MassDeleteError,
    NoDatabase,
    ResponseError,
    StoreError,
    SyncdError,
    TransportError,
    UsageError,
)
from syncd.log import SecretRedactor, configure_logging

if TYPE_CHECKING:
    from syncd.config import Config
    from syncd.records import RunReport
    from syncd.status import MirrorStatus

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

REPORT_GROUPINGS = ("project", "client", "member", "day", "week", "month")
#: ``syncd sql --timeout``'s default: a query running longer is stopped.
SQL_TIMEOUT_SECONDS = 30.0

#: ``--log-level`` choices, quietest last.
LOG_LEVELS = ("debug", "info", "warning", "error")
#: Commands that read or write no config: ``init`` writes one, the emulator has its own.
NO_CONFIG_COMMANDS = frozenset({"init", "emulator"})

log = structlog.get_logger("syncd.cli")


@dataclass
class CliState:
    """What the top-level options decided, shared with every subcommand (``ctx.obj``)."""

    config_path: Path | None
    log_level: str | None = None  # from -q, -v or --log-level; None: the config decides
    log_sql: bool = False
    once: bool = False
    force_delete: bool = False
    full: bool = False
    log_stream: TextIO | None = None
    secrets: tuple[str, ...] = field(default=())

    def load_config(self, *, require_key: bool = True) -> Config:
        """Load the config and reconfigure logging from it.

        Raises ``ConfigError`` listing every problem.
        """
        from syncd.config import load_config

        config = load_config(self.config_path, require_key=require_key)
        self.secrets = config.secret_values()
        configure_logging(
            self.log_level or config.logging.level,
            config.logging.format,
            secrets=self.secrets,
            stream=self.log_stream,
            log_sql=self.log_sql,
        )
        return config


class SyncdGroup(click.Group):
    """A click group that sends every error raised by a command to :func:`handle_cli_error`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, BrokenPipeError):
            raise  # click's own: usage errors (exit 2), --help, and a closed pipe
        except (Exception, KeyboardInterrupt) as exc:
            state = ctx.obj if isinstance(ctx.obj, CliState) else None
            ctx.exit(handle_cli_error(exc, secrets=state.secrets if state else ()))


def handle_cli_error(exc: BaseException, *, secrets: Sequence[str] = ()) -> int:
    """Print what went wrong on stderr and return the exit code.

    ``ConfigError`` → every problem, one per line, 2; ``UsageError`` and ``NoDatabase`` → 2;
    ``MassDeleteError`` and every other ``SyncdError`` → one line, 1; ``KeyboardInterrupt``
    → 130. Anything else is a bug: logged with its traceback at error level, 1.
    Secrets are masked in everything printed.
    """
    redactor = SecretRedactor(secrets)

    def say(text: str) -> None:
        click.echo(redactor.redact(text), err=True)

    if isinstance(exc, KeyboardInterrupt):
        say("syncd: interrupted")
        return EXIT_INTERRUPTED
    if isinstance(exc, ConfigError):
        where = f" in {exc.source}" if exc.source else ""
        say(f"syncd: invalid configuration{where}:")
        for problem in exc.problems:
            say(f"  {problem}")
        return EXIT_USAGE
    if isinstance(exc, UsageError):
        say(f"syncd: {exc}")
        return EXIT_USAGE
    if isinstance(exc, NoDatabase):
        say(f"syncd: {describe_error(exc)}")
        return EXIT_USAGE
    if isinstance(exc, SyncdError):
        say(f"syncd: {describe_error(exc)}")
        return EXIT_FAILED
    log.error("unexpected_error", error=f"{type(exc).__name__}: {exc}", exc_info=exc)
    say(f"syncd: unexpected error ({type(exc).__name__}: {exc}); the log has the traceback")
    return EXIT_FAILED


def describe_error(exc: SyncdError) -> str:
    """One line for an expected error, with the facts its attributes carry."""
    if isinstance(exc, MassDeleteError):
        return str(exc)  # names --force-delete
    if isinstance(exc, AuthError):
        return f"upstream refused the API key (HTTP {exc.status}): {exc}"
    if isinstance(exc, ResponseError):
        return f"upstream answered HTTP {exc.status}: {exc}"
    if isinstance(exc, TransportError):
        return f"cannot reach upstream: {exc}"
    if isinstance(exc, ApiError):
        return f"upstream: {exc}"
    if isinstance(exc, BudgetExhausted):
        if exc.resets_at is not None:
            resets = (
                datetime.fromtimestamp(exc.resets_at).astimezone().isoformat(timespec="seconds")
            )
            return f"{exc} (the budget frees up at {resets})"
        return str(exc)
    if isinstance(exc, StoreError):
        return f"database: {exc}"
    return str(exc)


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(
    cls=SyncdGroup,
    invoke_without_command=True,
    context_settings=CONTEXT_SETTINGS,
    epilog="Exit codes: 0 success, 1 sync failed, 2 configuration or usage error, 130 "
    "interrupted. The log goes to stderr, results to stdout. Without -c, the config is the "
    "first of $SYNCD_CONFIG, ./syncd.toml, $XDG_CONFIG_HOME/syncd/config.toml (default "
    "~/.config) and /etc/syncd/config.toml; `syncd init` writes one.",
)
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SYNCD_CONFIG",
    show_envvar=True,
    help="TOML config file (see config.example.toml). Without it, the first file found in "
    "the default places (below); with none, syncd runs on the defaults and takes the API "
    "key from the environment.",
)
@click.option("--once", is_flag=True, help="Run one sync cycle and exit (for cron).")
@click.option(
    "--force-delete",
    is_flag=True,
    help="With --once: apply scans even when they would tombstone more than "
    "sync.mass_delete_share of a workspace's entries.",
)
@click.option(
    "--full",
    is_flag=True,
    help="With --once: also re-verify every window of the history now, within the budget; "
    "a --full that was stopped or killed is continued by the next.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log at debug level (syncd's own events).")
@click.option("-q", "--quiet", is_flag=True, help="Log only warnings and errors.")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    help="Log at this level; overrides -v, -q and [logging] level.",
)
@click.option(
    "--log-sql", is_flag=True, help="Also log every SQL statement (text only, never values)."
)
@click.version_option(__version__, "-V", "--version", prog_name="syncd")
@click.pass_context
def cli(
    ctx: click.Context,
    config_path: Path | None,
    once: bool,
    force_delete: bool,
    full: bool,
    verbose: bool,
    quiet: bool,
    log_level: str | None,
    log_sql: bool,
) -> None:
    """Keep a local SQLite mirror of a Timetracker account.

    Without a command, runs the daemon (same as `syncd run`); with --once, runs one sync
    cycle and exits. Start with `syncd init` to write a config.
    """
    subcommand = ctx.invoked_subcommand
    if subcommand == "emulator":
        return  # the emulator has its own options and logging
    if (once or force_delete or full) and subcommand not in (None, "run"):
        raise click.UsageError(f"--once, --force-delete and --full do not apply to '{subcommand}'")
    if verbose and quiet:
        raise click.UsageError("-v and -q contradict each other; give one (or --log-level)")
    level = log_level.lower() if log_level else "debug" if verbose else "warning" if quiet else None
    if config_path is None and subcommand not in NO_CONFIG_COMMANDS:
        from syncd.config import find_config

        config_path = find_config()
        if config_path is None and subcommand is None and not once:
            click.echo(ctx.get_help(), err=True)
            click.echo(
                "\nsyncd: no config file found; write one with `syncd init`, or pass -c FILE",
                err=True,
            )
            ctx.exit(EXIT_USAGE)
    ctx.obj = CliState(
        config_path=config_path,
        log_level=level,
        log_sql=log_sql,
        once=once,
        force_delete=force_delete,
        full=full,
        log_stream=sys.stderr,
    )
    # Until the config is loaded (or if it cannot be), log with the defaults.
    configure_logging(level or "info", "auto", stream=sys.stderr, log_sql=log_sql)
    if subcommand is None:
        ctx.invoke(run)


@cli.command()
@click.option("--once", is_flag=True, help="Run one sync cycle and exit (for cron).")
@click.option(
    "--force-delete", is_flag=True, help="With --once: allow mass tombstoning (see syncd --help)."
)
@click.option("--full", is_flag=True, help="With --once: re-verify all history (see syncd --help).")
@click.pass_obj
def run(state: CliState, once: bool, force_delete: bool, full: bool) -> None:
    """Run the daemon: poll, reconcile and receive webhooks until stopped by a signal.

    With --once, run one sync cycle, log a `sync_finished` summary and exit
    (0 ok, 1 failed).
    """
    once = once or state.once
    force_delete = force_delete or state.force_delete
    full = full or state.full
    if force_delete and not once:
        raise click.UsageError("--force-delete applies only to --once")
    if full and not once:
        raise click.UsageError("--full applies only to --once")
    config = state.load_config()
    check_database_directory(config)
    if once:
        code = run_once(config, force_delete=force_delete, full=full)
        if code:
            raise click.exceptions.Exit(code)
        return
    from syncd.daemon.runner import run_daemon

    try:
        asyncio.run(run_daemon(config))
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL) and config.webhooks.listen:
            raise listen_address_error(config, exc) from exc
        raise


def check_database_directory(config: Config) -> None:
    """Raises ``ConfigError`` when the directory of ``database.path`` does not exist (a
    SQLite mirror only)."""
    problem = database_directory_problem(config)
    if problem:
        raise ConfigError([problem], source=str(config.source) if config.source else None)


def database_directory_problem(config: Config, *, writable: bool = False) -> str | None:
    """The problem with ``database.path``'s directory (missing; with ``writable``, also not
    writable by this user), or None (also for a mirror in PostgreSQL)."""
    if config.database.postgres:
        return None
    directory = config.database.path.parent
    if not directory.is_dir():
        return (
            f"database.path: the directory {directory} does not exist; create it "
            f"(mkdir -p {directory}) or set database.path to a file in an existing directory"
        )
    if writable and not os.access(directory, os.W_OK | os.X_OK):
        return (
            f"database.path: the directory {directory} is not writable by this user; "
            "run syncd as its owner or change its permissions"
        )
    return None


def database_server_problem(config: Config) -> str | None:
    """Whether the PostgreSQL server of ``database.url`` answers (one connection, nothing
    written), as the problem to print, or None (also for a SQLite mirror)."""
    if not config.database.postgres:
        return None
    from syncd.store.backend import open_postgres

    try:
        open_postgres(str(config.database.location)).close()
    except StoreError as exc:
        return f"database.url: {exc}"
    return None


def listen_address_error(config: Config, exc: OSError) -> ConfigError:
    """The ``ConfigError`` for a listen address that cannot be bound (``exc``)."""
    listen = config.webhooks.listen
    if exc.errno == errno.EADDRINUSE:
        text = (
            f"webhooks.listen: {listen} is already in use by another process; stop that "
            "process or set webhooks.listen to a free port"
        )
    else:
        text = (
            f"webhooks.listen: {listen} is not an address of this machine; set "
            "webhooks.listen to one of its addresses (127.0.0.1 behind a reverse proxy)"
        )
    return ConfigError([text], source=str(config.source) if config.source else None)


def listen_address_problem(config: Config) -> str | None:
    """Whether the daemon could listen on ``webhooks.listen`` now (a test bind), as the
    problem to print, or None (also when nothing listens)."""
    host, port = config.webhooks.listen_host, config.webhooks.listen_port
    if not config.webhooks.listen or not port:
        return None
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"webhooks.listen: cannot resolve {host!r}: {exc.strerror}"
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
                    return listen_address_error(config, exc).problems[0]
                return f"webhooks.listen: cannot listen on {config.webhooks.listen}: {exc}"
    return None


def run_once(config: Config, *, force_delete: bool, full: bool = False) -> int:
    """Run one sync cycle, emit the one ``sync_finished`` summary (see :func:`emit_summary`),
    and return the exit code.

    Raises whatever ``service.run_once`` raises (after emitting the summary).
    """
    from syncd import service
    from syncd.cli.progress import SyncProgress

    started = time.monotonic()
    start = config.sync.history_start
    try:
        with SyncProgress(history_start=date.fromisoformat(start) if start else None) as progress:
            watchers = service.RunWatchers(
                on_window=progress.window,
                on_outcome=progress.outcome,
                wrap_sleep=progress.budget_sleep,
            )
            report = asyncio.run(
                service.run_once(config, force_delete=force_delete, full=full, watchers=watchers)
            )
    except (SyncdError, KeyboardInterrupt) as exc:
        emit_summary(
            {
                "ok": False,
                "error": describe_error(exc) if isinstance(exc, SyncdError) else "interrupted",
                "error_type": type(exc).__name__,
                "duration_seconds": round(time.monotonic() - started, 3),
            }
        )
        raise
    summary = summarize(report, duration_seconds=time.monotonic() - started)
    emit_summary(summary)
    if report.ok:
        return EXIT_OK
    click.echo(f"syncd: sync failed: {report.error or 'see the log'}", err=True)
    return EXIT_FAILED


def emit_summary(summary: dict[str, Any], out: TextIO | None = None) -> None:
    """The ``sync_finished`` summary: the command's result, one JSON line on stdout when it is
    not a terminal (cron, the systemd timer, a pipe); on a terminal, a log line on stderr,
    without the error text, which the ``syncd: ...`` message that follows says once."""
    out = out if out is not None else sys.stdout
    ok = summary.get("ok", False)
    if _isatty(out):
        fields = {k: v for k, v in summary.items() if ok or k != "error"}
        (log.info if ok else log.error)("sync_finished", **fields)
        return
    line = {
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "level": "info" if ok else "error",
        "event": "sync_finished",
        **summary,
    }
    ctx = click.get_current_context(silent=True)
    secrets = ctx.obj.secrets if ctx is not None and isinstance(ctx.obj, CliState) else ()
    out.write(SecretRedactor(secrets).redact(json.dumps(line, default=str)) + "\n")
    out.flush()


def summarize(report: RunReport, *, duration_seconds: float) -> dict[str, Any]:
    """The fields of the ``sync_finished`` event for ``report``."""
    summary: dict[str, Any] = {
        "workspaces": report.workspaces,
        "windows": report.windows,
        "inserted": report.outcome.inserted,
        "updated": report.outcome.updated,
        "tombstoned": report.outcome.tombstoned,
        "revived": report.outcome.revived,
        "requests": report.requests,
        "rate_limited": report.rate_limited,
        "duration_seconds": round(duration_seconds, 3),
        "ok": report.ok,
    }
    if report.outcome.quarantined:  # upstream entries stored with fields cleared, or not at all
        summary["quarantined"] = len(report.outcome.quarantined)
    if report.outside_window:  # returned outside the asked range (e.g. by creation time)
        summary["outside_window"] = report.outside_window
    if report.leased_elsewhere:  # workspaces another syncd process was syncing
        summary["leased_elsewhere"] = report.leased_elsewhere
    if report.confirmed_pushes:  # windows re-scanned to confirm pushes no scan had seen
        summary["confirmed_pushes"] = report.confirmed_pushes
    if report.error:
        summary["error"] = report.error
    return summary


@cli.command("check-config")
@click.option(
    "--online",
    is_flag=True,
    help="Also check that the database directory is writable (or the PostgreSQL server of "
    "database.url answers), the listen port is free and upstream accepts the key (one "
    "request), and list the workspaces the key sees.",
)
@click.pass_obj
def check_config(state: CliState, online: bool) -> None:
    """Validate the config; print it (secrets masked) as JSON, or every problem (exit 2).

    Also checks that the database directory exists. With --online, prints the workspaces
    the key sees (id and name, tab-separated) instead, the ids `sync.workspaces` takes;
    a workspace id in `sync.workspaces` the key does not see is a problem (exit 2). A key
    upstream refuses, or an upstream that cannot be reached, exits with 1.
    """
    config = state.load_config()
    source = str(config.source) if config.source else None
    problem = database_directory_problem(config, writable=online)
    problems = [problem] if problem else []
    if online:
        problem = listen_address_problem(config)
        problems += [problem] if problem else []
        problem = database_server_problem(config)
        problems += [problem] if problem else []
    if problems:
        raise ConfigError(problems, source=source)
    where = config.source or "defaults and environment"
    if not online:
        click.echo(json.dumps(config.redacted(), indent=2))
        click.echo(f"syncd: configuration OK ({where})", err=True)
        return
    workspaces = asyncio.run(fetch_workspaces(config))
    seen = {ws.id for ws in workspaces}
    unknown = [ws for ws in config.sync.workspaces if ws not in seen]
    write_rows(("id", "name"), [(ws.id, ws.name) for ws in workspaces], None)
    if unknown:
        raise ConfigError(
            [
                f"sync.workspaces: the key sees no workspace {ws!r}; the ids it sees are "
                "listed above"
                for ws in unknown
            ],
            source=source,
        )
    click.echo(
        f"syncd: configuration OK ({where}); upstream accepts the key "
        f"({len(workspaces)} workspace{'s' if len(workspaces) != 1 else ''})",
        err=True,
    )


async def fetch_workspaces(config: Config) -> list[Any]:
    """One ``GET /workspaces`` with the configured key (no retry, outside the shared budget).

    Raises ``AuthError`` for a refused key, ``TransportError`` when upstream cannot be
    reached, other ``ApiError`` for any other answer.
    """
    import aiohttp

    from syncd import api
    from syncd.client import transport_error

    request = api.list_workspaces_request(
        config.api.url, config.api.key_value(), config.api.version or None
    )
    timeout = aiohttp.ClientTimeout(total=config.api.timeout_seconds, sock_connect=10)
    async with aiohttp.ClientSession(headers={"User-Agent": f"syncd/{__version__}"}) as session:
        try:
            async with session.get(
                request.url, headers=request.headers, timeout=timeout, allow_redirects=False
            ) as resp:
                status, headers, body = resp.status, resp.headers, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(exc, request) from exc
    return api.parse_workspaces(status, headers, body, request.url)


#: What ``syncd init`` writes where it was given no value and could not ask.
PLACEHOLDER = "REPLACE-ME"

INIT_TEMPLATE = """\
# syncd configuration, written by `syncd init`. Every key is documented, with its default,
# in config.example.toml. Relative paths are taken relative to this file's directory.
# Check this file with: syncd -c {config_path} check-config --online
{placeholder_note}
[api]
# A file holding the Timetracker API key and nothing else (chmod 600). Instead, the key
# may come from SYNCD_API_KEY or the systemd credential "syncd_api_key".
key_file = {key_file}

[database]
# The SQLite mirror. Its directory must exist and be writable by syncd.
path = {database}

[sync]
# The workspace ids to mirror; empty mirrors every workspace the key sees
# (`syncd check-config --online` lists them).
workspaces = []

[webhooks]
# Off: no listener and no subscription; the daemon polls. To receive pushes, set
# listen = "127.0.0.1:8787" and public_url to the HTTPS address a reverse proxy forwards
# to it (see docs/operations.md).
listen = ""
public_url = ""

[logging]
# debug, info, warning or error; -q, -v and --log-level override it.
level = "info"
"""


@cli.command()
@click.argument(
    "path", required=False, type=click.Path(dir_okay=False, path_type=Path), metavar="[PATH]"
)
@click.option(
    "--key-file",
    metavar="FILE",
    help="The file holding the API key (asked for on a terminal when not given).",
)
@click.option(
    "--database",
    metavar="FILE",
    help="The mirror's SQLite file (asked for on a terminal when not given).",
)
def init(path: Path | None, key_file: str | None, database: str | None) -> None:
    """Write a commented starting config to PATH (default: ./syncd.toml).

    Asks for the key file and the database path on a terminal unless given as options;
    without a terminal, what is not given is written as a REPLACE-ME placeholder. Never
    overwrites a file (exit 2 when PATH exists). Webhooks are off; the daemon polls.
    """
    target = path if path is not None else Path("syncd.toml")
    if target.exists():
        raise UsageError(f"{target} already exists; remove it first or give another PATH")
    interactive = _isatty(sys.stdin) and _isatty(sys.stdout)
    if key_file is None and interactive:
        key_file = click.prompt("File holding the API key", default="/etc/syncd/api_key")
    if database is None and interactive:
        database = click.prompt("Mirror database file", default="/var/lib/syncd/mirror.sqlite")
    placeholders = [
        name
        for name, value in (("api.key_file", key_file), ("database.path", database))
        if not value
    ]
    note = (
        f"#\n# {PLACEHOLDER}: replace every {PLACEHOLDER} value below ("
        + ", ".join(placeholders)
        + ") before running syncd.\n"
        if placeholders
        else ""
    )
    text = INIT_TEMPLATE.format(
        config_path=target,
        placeholder_note=note,
        key_file=_toml_path(key_file, f"/{PLACEHOLDER}/path/to/api_key"),
        database=_toml_path(database, f"/{PLACEHOLDER}/path/to/mirror.sqlite"),
    )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise UsageError(f"{target} already exists; remove it first or give another PATH") from None
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
    click.echo(f"syncd: wrote {target}", err=True)
    if placeholders:
        click.echo(f"syncd: put real values where it says {PLACEHOLDER}, then run:", err=True)
    else:
        click.echo("syncd: next, check it against upstream:", err=True)
    click.echo(f"  syncd -c {target} check-config --online", err=True)


def _toml_path(value: str | None, placeholder: str) -> str:
    """``value`` as a TOML string (made absolute against the working directory), or the
    placeholder."""
    if not value:
        return json.dumps(placeholder)
    return json.dumps(str(Path.cwd() / Path(value).expanduser()))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Write the status page (the daemon's GET /) to FILE instead; prints nothing.",
)
@click.pass_obj
def status(state: CliState, as_json: bool, html_path: str | None) -> None:
    """Show freshness, counts, the request budget and the webhook subscription.

    Works while the daemon runs; needs no API key.
    """
    config = state.load_config(require_key=False)
    from syncd import service

    if html_path is not None:
        from syncd import status_page

        status_page.write(config, html_path, now=service.utc_now())
        return
    from syncd.status import status as read_status

    mirror = read_status(config)
    if as_json:
        click.echo(json.dumps(mirror.as_json(), indent=2, default=str))
    else:
        print_status(mirror)


def _output_format_options(func: Any) -> Any:
    func = click.option(
        "--nl", "fmt", flag_value="nl", help="Print one JSON object per line (JSON Lines)."
    )(func)
    func = click.option("--json", "fmt", flag_value="json", help="Print a JSON array of objects.")(
        func
    )
    return click.option("--csv", "fmt", flag_value="csv", help="Print CSV with a header row.")(func)


TABLES_SQL = (
    "SELECT name, type FROM sqlite_schema WHERE type IN ('table', 'view') "
    "AND name NOT LIKE 'sqlite_%' ORDER BY type, name"
)
SCHEMA_SQL = (
    "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
    "AND (? IS NULL OR tbl_name = ?) ORDER BY tbl_name, type DESC, name"
)
# The same on PostgreSQL, which keeps no CREATE text: tables are described from the catalog
# (columns, types, NOT NULL), views and indexes by the server's own definitions.
PG_TABLES_SQL = (
    "SELECT table_name AS name, CASE table_type WHEN 'VIEW' THEN 'view' ELSE 'table' END "
    "AS type FROM information_schema.tables WHERE table_schema = current_schema() "
    'ORDER BY 2, table_name COLLATE "C"'
)
PG_SCHEMA_SQL = """
SELECT sql FROM (
    SELECT c.relname AS tbl, 0 AS kind, c.relname AS name,
        'CREATE TABLE ' || c.relname || E' (\\n    ' || string_agg(
            a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
            || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
            E',\\n    ' ORDER BY a.attnum) || E'\\n)' AS sql
    FROM pg_class AS c
    JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE c.relkind = 'r'
      AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
    GROUP BY c.relname
    UNION ALL
    SELECT viewname, 0, viewname, 'CREATE VIEW ' || viewname || E' AS\\n' || definition
    FROM pg_views WHERE schemaname = current_schema()
    UNION ALL
    SELECT tablename, 1, indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()
) AS s
WHERE CAST(%s AS TEXT) IS NULL OR tbl = %s
ORDER BY tbl COLLATE "C", kind, name COLLATE "C"
"""


@cli.command()
@click.argument("query", required=False)
@click.option("--tables", is_flag=True, help="List the tables and views instead of a query.")
@click.option(
    "--schema",
    "schema",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[TABLE]",
    help="Print the CREATE statements (of TABLE and its indexes, triggers; else of all).",
)
@_output_format_options
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=SQL_TIMEOUT_SECONDS,
    show_default=True,
    metavar="SECONDS",
    help="Stop the query after this long (exit 1); 0 for no limit.",
)
@click.pass_obj
def sql(
    state: CliState,
    query: str | None,
    tables: bool,
    schema: str | None,
    fmt: str | None,
    timeout: float,
) -> None:
    """Run a read-only SQL QUERY on the mirror ('-' reads it from stdin).

    Prints a table on a terminal and tab-separated lines otherwise. The database is opened
    read-only, so a query can never block or change what the daemon writes (on PostgreSQL:
    its own connection, a read-only transaction, statement_timeout from --timeout). A query that
    fails or tries to write exits with 2, one stopped by --timeout with 1, one stopped by
    Ctrl-C with 130; a missing mirror is an error (exit 2), never created. --tables and
    --schema [TABLE] show what there is to query (docs/schema.md explains it).
    """
    chosen = [name for name, on in (("QUERY", query), ("--tables", tables)) if on]
    chosen += ["--schema"] if schema is not None else []
    if len(chosen) != 1:
        raise click.UsageError("give one of QUERY, --tables or --schema [TABLE]")
    config = state.load_config(require_key=False)
    postgres = config.database.postgres
    params: tuple[Any, ...] = ()
    if tables:
        query = PG_TABLES_SQL if postgres else TABLES_SQL
    elif schema is not None:
        query = PG_SCHEMA_SQL if postgres else SCHEMA_SQL
        params = (schema or None, schema or None)
    elif query == "-":
        query = sys.stdin.read()
    assert query is not None
    from syncd.store.readonly import run_readonly_query

    log.debug("sql_query_started", timeout_seconds=timeout or None)
    try:
        columns, rows = run_readonly_query(
            config.database.location, query, params, timeout=timeout or None
        )
    except UsageError as exc:
        if "not authorized" in str(exc) or "readonly" in str(exc).replace("-", ""):
            reads = "SHOW" if postgres else "reporting PRAGMAs"
            where = "in a read-only transaction" if postgres else "read-only"
            raise UsageError(
                f"the mirror is opened {where} here, so syncd sql runs only reads "
                f"(SELECT, WITH, EXPLAIN, {reads}); syncd itself writes the mirror"
            ) from exc
        raise
    if schema is not None and fmt is None:
        if schema and not rows:
            raise UsageError(f"no table or view named {schema!r}; `syncd sql --tables` lists them")
        for (statement,) in rows:
            click.echo(statement.rstrip(";") + ";")
        return
    write_rows(columns, rows, fmt)


@cli.group()
def report() -> None:
    """Ready-made reports on the mirror (tombstoned entries excluded)."""


@report.command("hours")
@click.option("--by", type=click.Choice(REPORT_GROUPINGS), required=True, help="Group by.")
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d"]),
    required=True,
    help="First day (YYYY-MM-DD), included.",
)
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Last day (YYYY-MM-DD), included.")
@click.option("--workspace", "workspace_id", metavar="ID", help="Only this workspace.")
@_output_format_options
@click.pass_obj
def report_hours(
    state: CliState,
    by: str,
    since: datetime,
    until: datetime | None,
    workspace_id: str | None,
    fmt: str | None,
) -> None:
    """Hours tracked per project, client, member, day, week or month.

    A --workspace the mirror does not know is an error (exit 2).
    """
    if until is not None and until < since:
        raise click.BadParameter("must not be before --since", param_hint="--until")
    config = state.load_config(require_key=False)
    from syncd.store.readonly import ReadOnlyMirror

    with ReadOnlyMirror(config.database.location) as mirror:
        if workspace_id is not None:
            known = mirror.workspaces()
            if workspace_id not in {row[0] for row in known}:
                listed = ", ".join(f"{row[0]} ({row[1]})" for row in known) or "none yet"
                raise UsageError(f"the mirror has no workspace {workspace_id!r}; it has: {listed}")
        columns, rows = mirror.report_hours(
            by,
            since.date().isoformat(),
            until.date().isoformat() if until else None,
            workspace_id,
        )
    if fmt is None:
        from syncd.cli.render import print_report

        print_report(columns, rows, sys.stdout)
    else:
        write_rows(columns, rows, fmt)


@cli.command()
@click.option("--force", is_flag=True, help="Rebuild also a mirror that passes the check.")
@click.option(
    "--no-sync",
    is_flag=True,
    help="Only move the mirror aside and create an empty one; the next run backfills it.",
)
@click.pass_obj
def rebuild(state: CliState, force: bool, no_sync: bool) -> None:
    """Move a damaged mirror aside and backfill a new one.

    Renames the database and its -wal/-shm files to NAME.damaged-<UTC time> (kept for
    salvage), creates an empty mirror and runs one sync cycle, the first backfill, with the
    exit codes of --once. Stop the daemon and the timer first: a mirror open in another
    process is refused. A mirror that passes PRAGMA quick_check is left alone unless --force.
    """
    config = state.load_config(require_key=not no_sync)
    if config.database.postgres:
        raise UsageError(
            f"rebuild replaces a damaged SQLite file; the mirror is in PostgreSQL "
            f"({config.database.shown}), whose server keeps its own integrity: restore it "
            "from a backup, or empty the database and let the next run backfill it"
        )
    from syncd.store.integrity import rebuild as rebuild_mirror

    moved = rebuild_mirror(config.database.path, now=datetime.now(UTC), force=force)
    log.warning("mirror_rebuilt", path=str(config.database.path), moved_to=str(moved[0]))
    click.echo(
        f"syncd: moved the mirror aside to {moved[0]} (with its side files) and created an "
        f"empty one at {config.database.path}",
        err=True,
    )
    if no_sync:
        click.echo("syncd: the next sync (the daemon or --once) backfills it", err=True)
        return
    click.echo("syncd: backfilling the new mirror (one sync cycle, as --once)", err=True)
    code = run_once(config, force_delete=False)
    if code:
        raise click.exceptions.Exit(code)


@cli.command("migrate-to")
@click.argument("url", metavar="URL")
@click.pass_obj
def migrate_to(state: CliState, url: str) -> None:
    """Copy the SQLite mirror (database.path) into the empty PostgreSQL database at URL.

    URL is postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME (the database must exist). Every
    table, ids and bookkeeping included, is copied in one transaction and verified (rows per
    table, total hours); then point the config's [database] url at URL and remove path: the
    next run continues where the mirror stopped. Stop the daemon and the timer first. A
    database already holding a mirror's rows, or a file that is not a syncd mirror, is
    refused (exit 2). Prints one line on success.
    """
    from syncd import database_url
    from syncd.log import register_secret

    url = url.strip()
    problem = database_url.problem(url)
    if problem:
        raise click.BadParameter(problem, param_hint="URL")
    config = state.load_config(require_key=False)
    password = urlsplit(url).password
    for secret in (url, password or ""):
        register_secret(secret)
    state.secrets = (*state.secrets, url, *([password] if password else []))
    if config.database.postgres:
        raise UsageError(
            f"the config names a PostgreSQL database ({config.database.shown}); migrate-to "
            "copies the SQLite mirror at database.path: run it with the config that names "
            "the mirror"
        )
    from syncd.store.transfer import copy_to_postgres

    result = copy_to_postgres(config.database.path, url)
    log.info(
        "mirror_migrated",
        source=result.source,
        target=result.target,
        rows=result.total_rows,
        seconds=round(result.elapsed_seconds, 3),
    )
    click.echo(f"syncd: {result.summary()}")
    click.echo(
        "syncd: next, set [database] url to this URL (and remove path), or SYNCD_DATABASE_URL",
        err=True,
    )


@cli.group()
def webhooks() -> None:
    """Manage the upstream webhook subscription."""


@webhooks.command("remove")
@click.pass_obj
def webhooks_remove(state: CliState) -> None:
    """Delete syncd's webhook subscription upstream (for example before uninstalling)."""
    config = state.load_config()
    from syncd.daemon.subscriptions import remove_webhooks

    removed = asyncio.run(remove_webhooks(config))
    log.info("webhooks_removed", count=removed)
    click.echo(f"removed {removed} webhook subscription{'s' if removed != 1 else ''}")


@cli.command(
    "emulator",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.pass_context
def emulator(ctx: click.Context) -> None:
    """Run the bundled Timetracker emulator (see docs/emulator.md; -h lists its options)."""
    from syncd.emulator.command import emulator_command

    emulator_command.main(
        args=ctx.args,
        prog_name="syncd emulator",
        standalone_mode=True,
        help_option_names=CONTEXT_SETTINGS["help_option_names"],
        max_content_width=CONTEXT_SETTINGS["max_content_width"],
    )


def write_rows(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    fmt: str | None,
    out: TextIO | None = None,
) -> None:
    """Print a result set: ``fmt`` csv, json, nl (one JSON object per line), or None (a table
    on a terminal, tab-separated lines otherwise). NULL prints as an empty field (null in
    JSON), blobs as hex."""
    out = out if out is not None else sys.stdout
    if fmt == "json":
        records = [dict(zip(columns, (_jsonable(v) for v in row), strict=False)) for row in rows]
        out.write(json.dumps(records, indent=2, ensure_ascii=False) + "\n")
    elif fmt == "nl":
        for row in rows:
            record = dict(zip(columns, (_jsonable(v) for v in row), strict=False))
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_text(v) for v in row] for row in rows])
    elif _isatty(out):
        _print_table(columns, rows, out)
    else:
        out.write("\t".join(_tsv(c) for c in columns) + "\n")
        for row in rows:
            out.write("\t".join(_tsv(_text(v)) for v in row) + "\n")
    out.flush()


def _jsonable(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes | bytearray | memoryview) else value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def _tsv(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    for index, name in enumerate(columns):
        sample = next((row[index] for row in rows if row[index] is not None), None)
        numeric = isinstance(sample, int | float) and not isinstance(sample, bool)
        table.add_column(name, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(_text(v) for v in row))
    Console(file=out).print(table)
    if not rows:
        out.write("(no rows)\n")


def print_status(status: MirrorStatus, out: TextIO | None = None) -> None:
    """Render ``syncd.status.status`` for people (see ``syncd.cli.render``)."""
    from syncd.cli.render import print_status as render_status

    render_status(status, out if out is not None else sys.stdout)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``syncd`` console script and ``python -m syncd``; exits the process
    with the exit code (see the module docstring)."""
    cli.main(args=argv, prog_name="syncd")
