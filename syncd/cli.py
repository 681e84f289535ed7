"""The ``syncd`` command line.

This is the only module that talks to the user: it parses arguments, loads the config,
configures logging, calls ``syncd.service`` (sync, daemon, status) or
``syncd.store.readonly`` (sql, report), prints results, and turns every error into a
message and an exit code in one place, :func:`handle_cli_error`.

Exit codes: 0 success, 1 the sync (or another operation) failed, 2 configuration or usage
error (including a mirror that does not exist for a command that only reads), 130
interrupted (Ctrl-C).

The heavy modules (service, store, rich) are imported inside the commands that need them,
so ``syncd --help`` and ``syncd check-config`` stay fast.
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

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

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

REPORT_GROUPINGS = ("project", "client", "member", "day", "week", "month")
#: ``syncd sql --timeout``'s default: a query running longer is stopped.
SQL_TIMEOUT_SECONDS = 30.0

# Subcommands whose stdout is data (JSON, tables, CSV): their logs go to stderr so that
# `syncd sql ... --json | jq` never sees a log line. The sync itself logs to stdout.
DATA_COMMANDS = frozenset({"check-config", "status", "sql", "report"})

log = structlog.get_logger("syncd.cli")


@dataclass
class CliState:
    """What the top-level options decided, shared with every subcommand (``ctx.obj``)."""

    config_path: Path | None
    verbose: bool = False
    once: bool = False
    force_delete: bool = False
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
            "debug" if self.verbose else config.logging.level,
            config.logging.format,
            secrets=self.secrets,
            stream=self.log_stream,
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
    epilog="Exit codes: 0 success, 1 sync failed, 2 configuration or usage error, 130 interrupted.",
)
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SYNCD_CONFIG",
    show_envvar=True,
    help="TOML config file (see config.example.toml). Without one, syncd runs on the "
    "defaults and takes the API key from the environment.",
)
@click.option("--once", is_flag=True, help="Run one sync cycle and exit (for cron).")
@click.option(
    "--force-delete",
    is_flag=True,
    help="With --once: apply scans even when they would tombstone more than "
    "sync.mass_delete_share of a workspace's entries.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log at debug level.")
@click.version_option(__version__, prog_name="syncd")
@click.pass_context
def cli(
    ctx: click.Context, config_path: Path | None, once: bool, force_delete: bool, verbose: bool
) -> None:
    """Keep a local SQLite mirror of a Timetracker account.

    Without a command, runs the daemon (same as `syncd run`); with --once, runs one sync
    cycle and exits.
    """
    subcommand = ctx.invoked_subcommand
    if subcommand == "emulator":
        return  # the emulator has its own options and logging
    if (once or force_delete) and subcommand not in (None, "run"):
        raise click.UsageError(f"--once and --force-delete do not apply to '{subcommand}'")
    stream = sys.stderr if subcommand in DATA_COMMANDS else sys.stdout
    ctx.obj = CliState(
        config_path=config_path,
        verbose=verbose,
        once=once,
        force_delete=force_delete,
        log_stream=stream,
    )
    # Until the config is loaded (or if it cannot be), log with the defaults.
    configure_logging("debug" if verbose else "info", "auto", stream=stream)
    if subcommand is None:
        ctx.invoke(run)


@cli.command()
@click.option("--once", is_flag=True, help="Run one sync cycle and exit (for cron).")
@click.option(
    "--force-delete", is_flag=True, help="With --once: allow mass tombstoning (see syncd --help)."
)
@click.pass_obj
def run(state: CliState, once: bool, force_delete: bool) -> None:
    """Run the daemon: poll, reconcile and receive webhooks until stopped by a signal.

    With --once, run one sync cycle, log a `sync_finished` summary and exit
    (0 ok, 1 failed).
    """
    once = once or state.once
    force_delete = force_delete or state.force_delete
    if force_delete and not once:
        raise click.UsageError("--force-delete applies only to --once")
    config = state.load_config()
    if once:
        code = run_once(config, force_delete=force_delete)
        if code:
            raise click.exceptions.Exit(code)
        return
    from syncd import service

    asyncio.run(service.run_daemon(config))


def run_once(config: Config, *, force_delete: bool) -> int:
    """Run one sync cycle, log the one ``sync_finished`` summary, and return the exit code.

    Raises whatever ``service.run_once`` raises (after logging the summary).
    """
    from syncd import service

    started = time.monotonic()
    try:
        report = asyncio.run(service.run_once(config, force_delete=force_delete))
    except (SyncdError, KeyboardInterrupt) as exc:
        log.error(
            "sync_finished",
            ok=False,
            error=describe_error(exc) if isinstance(exc, SyncdError) else "interrupted",
            error_type=type(exc).__name__,
            duration_seconds=round(time.monotonic() - started, 3),
        )
        raise
    summary = summarize(report, duration_seconds=time.monotonic() - started)
    if report.ok:
        log.info("sync_finished", **summary)
        return EXIT_OK
    log.error("sync_finished", **summary)
    click.echo(f"syncd: sync failed: {report.error or 'see the log'}", err=True)
    return EXIT_FAILED


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
    if report.error:
        summary["error"] = report.error
    return summary


@cli.command("check-config")
@click.pass_obj
def check_config(state: CliState) -> None:
    """Validate the config; print it (secrets masked) as JSON, or every problem (exit 2)."""
    config = state.load_config()
    click.echo(json.dumps(config.redacted(), indent=2))
    where = config.source or "defaults and environment"
    click.echo(f"syncd: configuration OK ({where})", err=True)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def status(state: CliState, as_json: bool) -> None:
    """Show freshness, counts, the request budget and the webhook subscription.

    Works while the daemon runs; needs no API key.
    """
    config = state.load_config(require_key=False)
    from syncd import service

    data = service.status(config)
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        print_status(data)


def _output_format_options(func: Any) -> Any:
    func = click.option("--json", "fmt", flag_value="json", help="Print a JSON array of objects.")(
        func
    )
    return click.option("--csv", "fmt", flag_value="csv", help="Print CSV with a header row.")(func)


@cli.command()
@click.argument("query")
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
def sql(state: CliState, query: str, fmt: str | None, timeout: float) -> None:
    """Run a read-only SQL QUERY on the mirror ('-' reads it from stdin).

    Prints a table on a terminal and tab-separated lines otherwise. The database is opened
    read-only, so a query can never block or change what the daemon writes. A query that
    fails or tries to write exits with 2, one stopped by --timeout with 1, one stopped by
    Ctrl-C with 130; a missing mirror is an error (exit 2), never created.
    """
    if query == "-":
        query = sys.stdin.read()
    config = state.load_config(require_key=False)
    from syncd.store.readonly import run_readonly_query

    log.debug("sql_query_started", timeout_seconds=timeout or None)
    columns, rows = run_readonly_query(config.database.path, query, timeout=timeout or None)
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
    """Hours tracked per project, client, member, day, week or month."""
    if until is not None and until < since:
        raise click.BadParameter("must not be before --since", param_hint="--until")
    config = state.load_config(require_key=False)
    from syncd.store.readonly import ReadOnlyMirror

    with ReadOnlyMirror(config.database.path) as mirror:
        columns, rows = mirror.report_hours(
            by,
            since.date().isoformat(),
            until.date().isoformat() if until else None,
            workspace_id,
        )
    if fmt is None:
        from syncd.render import print_report

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


@cli.group()
def webhooks() -> None:
    """Manage the upstream webhook subscription."""


@webhooks.command("remove")
@click.pass_obj
def webhooks_remove(state: CliState) -> None:
    """Delete syncd's webhook subscription upstream (for example before uninstalling)."""
    config = state.load_config()
    from syncd import service

    removed = asyncio.run(service.remove_webhooks(config))
    log.info("webhooks_removed", count=removed)
    click.echo(f"removed {removed} webhook subscription{'s' if removed != 1 else ''}")


@cli.command(
    "emulator",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.pass_context
def emulator(ctx: click.Context) -> None:
    """Run the bundled Timetracker emulator (see docs/emulator.md)."""
    from syncd.emulator.command import emulator_command

    emulator_command.main(args=ctx.args, prog_name="syncd emulator", standalone_mode=True)


def write_rows(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    fmt: str | None,
    out: TextIO | None = None,
) -> None:
    """Print a result set: ``fmt`` csv, json, or None (a table on a terminal, tab-separated
    lines otherwise). NULL prints as an empty field, blobs as hex."""
    out = out if out is not None else sys.stdout
    if fmt == "json":
        records = [dict(zip(columns, (_jsonable(v) for v in row), strict=False)) for row in rows]
        out.write(json.dumps(records, indent=2, ensure_ascii=False) + "\n")
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


def print_status(data: dict[str, Any], out: TextIO | None = None) -> None:
    """Render ``service.status`` for people (see ``syncd.render``)."""
    from syncd.render import print_status as render_status

    render_status(data, out if out is not None else sys.stdout)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``syncd`` console script and ``python -m syncd``; exits the process
    with the exit code (see the module docstring)."""
    cli.main(args=argv, prog_name="syncd")
