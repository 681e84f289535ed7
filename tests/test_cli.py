"""The command line: exit codes, error messages, output formats, secrets kept out.

Fast tests run in-process through ``click.testing.CliRunner``; the exit-code contract is
also checked with real subprocesses (``python -m syncd``).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
import structlog
from click.testing import CliRunner
from structlog.testing import capture_logs

from syncd.cli import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    REPORT_GROUPINGS,
    SyncdGroup,
    cli,
    handle_cli_error,
    summarize,
    write_rows,
)
from syncd.errors import (
    AuthError,
    BudgetExhausted,
    ConfigError,
    CorruptDatabase,
    DiskFull,
    MassDeleteError,
    NoDatabase,
    QueryTimeout,
    RateLimited,
    SchemaTooNew,
    ServerError,
    ShutdownRequested,
    StoreError,
    TransportError,
    UsageError,
)
from syncd.log import MASK
from syncd.records import RunReport, Source, TimeEntry, WindowOutcome, Workspace
from tests.support.config import emulator_sections, write_config
from tests.support.emulator import emulator_process
from tests.support.environment import SYNCD_ENV, clean_env

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config.example.toml"
SECRET = "tt_live_s3cr3t-value-0042"

BAD_CONFIG = """
[api]
url = "ftp://example.com"
[limits]
per_minute = 0
[sync]
unknown_key = 1
window_min_days = 100
window_max_days = 30
[logging]
level = "loud"
"""
BAD_PROBLEMS = [
    "api.url: must be an http:// or https:// URL with a host",
    "limits.per_minute: Input should be greater than 0",
    "sync.unknown_key: unknown key",
    "sync.window_min_days: must not exceed sync.window_max_days",
    "logging.level: Input should be 'debug', 'info', 'warning' or 'error'",
    "api.key: no API key: set api.key, api.key_file, SYNCD_API_KEY "
    "or a systemd credential syncd_api_key",
]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for name in SYNCD_ENV:
        monkeypatch.delenv(name, raising=False)
    yield
    # The CLI configures logging onto the runner's streams; put logging back.
    structlog.reset_defaults()
    logging.basicConfig(handlers=[logging.NullHandler()], level=logging.WARNING, force=True)
    logging.getLogger("apscheduler").setLevel(logging.NOTSET)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def write_toml(directory: Path, text: str) -> Path:
    """Writes ``text`` as ``syncd.toml`` in ``directory``; returns its path."""
    path = directory / "syncd.toml"
    path.write_text(text, encoding="utf-8")
    return path


def make_entry(
    entry_id: str, day: str, seconds: int, project: str, description: str = ""
) -> TimeEntry:
    return TimeEntry(
        id=entry_id,
        workspace_id="ws-1",
        date=day,
        start_time=f"{day}T09:00:00.000Z",
        end_time=f"{day}T09:00:00.000Z"
        if seconds == 0
        else f"{day}T{9 + seconds // 3600:02d}:{seconds % 3600 // 60:02d}:00.000Z",
        duration_seconds=seconds,
        description=description,
        billable=True,
        manually_entered=False,
        team_member_id="m-1",
        team_member_name="Ann",
        project_id=f"p-{project.lower()}",
        project_name=project,
        client_id="c-1",
        client_name="Acme",
        task_id=None,
        task_name=None,
        created_at=f"{day}T09:00:00.000Z",
        updated_at=f"{day}T18:00:00.000Z",
    )


@pytest.fixture
def mirror(tmp_path) -> Path:
    """A small mirror written through the store, and a config pointing at it (no key)."""
    if importlib.util.find_spec("syncd.store") is None:
        pytest.skip("syncd.store is not there yet")
    from syncd.store import open_store

    path = tmp_path / "mirror.sqlite"
    synced = "2024-03-10T00:00:00.000Z"
    with open_store(path) as store:
        store.upsert_workspaces([Workspace("ws-1", "Main")], synced)
        for entry in (
            make_entry("e1", "2024-03-04", 5400, "Apollo", "design\treview"),
            make_entry("e2", "2024-03-05", 3600, "Apollo", "naïve café ☕"),
            make_entry("e3", "2024-03-05", 1800, "Zeus"),
        ):
            store.apply_pushed_entry(entry, Source.WEBHOOK, synced)
    write_toml(tmp_path, '[database]\npath = "mirror.sqlite"\n')
    return path


# --------------------------------------------------------------------------- in-process


def test_help_lists_the_commands(runner):
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == EXIT_OK
    for command in ("run", "check-config", "status", "sql", "report", "webhooks", "emulator"):
        assert command in result.stdout
    assert "SYNCD_CONFIG" in result.stdout
    assert "Exit codes" in result.stdout


def example_config(directory: Path) -> Path:
    """config.example.toml with its database in ``directory`` (/var/lib/syncd is not here)."""
    text = EXAMPLE.read_text(encoding="utf-8")
    old = 'path = "/var/lib/syncd/mirror.sqlite"'
    assert old in text
    return write_toml(directory, text.replace(old, 'path = "mirror.sqlite"'))


def test_check_config_prints_the_config_with_the_key_masked(runner, tmp_path):
    config = example_config(tmp_path)
    result = runner.invoke(cli, ["-c", str(config), "check-config"], env={"SYNCD_API_KEY": SECRET})
    assert result.exit_code == EXIT_OK, result.stderr
    shown = json.loads(result.stdout)
    assert shown["api"]["key"] == MASK
    assert shown["api"]["key_source"] == "SYNCD_API_KEY"
    assert shown["limits"]["per_day"] == 10_000
    assert SECRET not in result.stdout + result.stderr
    assert "configuration OK" in result.stderr


def test_config_path_from_syncd_config(runner, tmp_path):
    config = write_toml(
        tmp_path,
        f'[api]\nkey = "{SECRET}"\n[database]\npath = "m.sqlite"\n[sync]\nhot_window_days = 5\n',
    )
    result = runner.invoke(cli, ["check-config"], env={"SYNCD_CONFIG": str(config)})
    assert result.exit_code == EXIT_OK, result.stderr
    assert json.loads(result.stdout)["sync"]["hot_window_days"] == 5
    assert SECRET not in result.stdout + result.stderr


def test_bad_config_lists_every_problem_and_exits_2(runner, tmp_path):
    config = write_toml(tmp_path, BAD_CONFIG)
    for args in (["check-config"], ["--once"], ["run"], ["webhooks", "remove"]):
        result = runner.invoke(cli, ["-c", str(config), *args])
        assert result.exit_code == EXIT_USAGE, (args, result.stderr)
        lines = result.stderr.splitlines()
        assert lines[0] == f"syncd: invalid configuration in {config}:"
        assert sorted(line.strip() for line in lines[1:]) == sorted(BAD_PROBLEMS)
        assert "Traceback" not in result.stdout + result.stderr


def test_missing_config_file_exits_2(runner, tmp_path):
    result = runner.invoke(cli, ["-c", str(tmp_path / "nope.toml"), "check-config"])
    assert result.exit_code == EXIT_USAGE
    assert "config file not found" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["bogus"],
        ["--once", "status"],
        ["--force-delete", "check-config"],
        ["--force-delete"],
        ["run", "--force-delete"],
        ["sql"],
        ["report", "hours", "--by", "year", "--since", "2024-01-01"],
        ["report", "hours", "--by", "day"],
        ["report", "hours", "--by", "day", "--since", "yesterday"],
        ["report", "hours", "--by", "day", "--since", "2024-02-01", "--until", "2024-01-01"],
        ["sql", "SELECT 1", "--tsv"],
    ],
)
def test_usage_errors_exit_2(runner, args):
    result = runner.invoke(cli, args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert "Traceback" not in result.output


def test_report_groupings_match_the_store():
    if importlib.util.find_spec("syncd.store") is None:
        pytest.skip("syncd.store is not there yet")
    from syncd.store.reports import REPORT_KINDS

    assert set(REPORT_GROUPINGS) == set(REPORT_KINDS)


def test_emulator_subcommand_forwards_its_arguments(runner):
    if importlib.util.find_spec("syncd.emulator.command") is None:
        pytest.skip("syncd.emulator.command is not there yet")
    result = runner.invoke(cli, ["emulator", "--help"])
    assert result.exit_code == EXIT_OK
    assert "Usage: syncd emulator" in result.stdout
    assert "--api-key" in result.stdout


# --------------------------------------------------------------------------- sql and report


def test_sql_prints_tab_separated_rows_off_a_terminal(runner, mirror):
    config = mirror.parent / "syncd.toml"
    query = "SELECT id, description, duration_seconds, task_id FROM time_entries ORDER BY id"
    result = runner.invoke(cli, ["-c", str(config), "sql", query])
    assert result.exit_code == EXIT_OK, result.stderr
    assert result.stdout.splitlines() == [
        "id\tdescription\tduration_seconds\ttask_id",
        "e1\tdesign\\treview\t5400\t",
        "e2\tnaïve café ☕\t3600\t",
        "e3\t\t1800\t",
    ]


def test_sql_json_and_csv(runner, mirror):
    config = str(mirror.parent / "syncd.toml")
    query = "SELECT id, duration_seconds, task_id FROM time_entries ORDER BY id"
    as_json = runner.invoke(cli, ["-c", config, "sql", query, "--json"])
    assert as_json.exit_code == EXIT_OK, as_json.stderr
    assert json.loads(as_json.stdout) == [
        {"id": "e1", "duration_seconds": 5400, "task_id": None},
        {"id": "e2", "duration_seconds": 3600, "task_id": None},
        {"id": "e3", "duration_seconds": 1800, "task_id": None},
    ]
    as_csv = runner.invoke(cli, ["-c", config, "sql", query, "--csv"])
    assert as_csv.exit_code == EXIT_OK
    assert list(csv.reader(io.StringIO(as_csv.stdout))) == [
        ["id", "duration_seconds", "task_id"],
        ["e1", "5400", ""],
        ["e2", "3600", ""],
        ["e3", "1800", ""],
    ]


def test_sql_reads_the_query_from_stdin(runner, mirror):
    config = str(mirror.parent / "syncd.toml")
    result = runner.invoke(
        cli, ["-c", config, "sql", "-"], input="SELECT count(*) AS n FROM time_entries"
    )
    assert result.exit_code == EXIT_OK
    assert result.stdout.splitlines() == ["n", "3"]


def test_sql_needs_no_api_key_and_refuses_writes(runner, mirror):
    config = str(mirror.parent / "syncd.toml")
    result = runner.invoke(cli, ["-c", config, "sql", "DELETE FROM time_entries"])
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.startswith("syncd: ")
    assert "Traceback" not in result.stderr
    broken = runner.invoke(cli, ["-c", config, "sql", "SELEC nonsense"])
    assert broken.exit_code == EXIT_USAGE
    assert "syntax error" in broken.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["sql", "SELECT 1"],
        ["status"],
        ["status", "--json"],
        ["report", "hours", "--by", "day", "--since", "2024-01-01"],
    ],
)
def test_reading_commands_never_create_a_missing_database(runner, tmp_path, args):
    config = write_toml(tmp_path, '[database]\npath = "data/missing.sqlite"\n')
    result = runner.invoke(cli, ["-c", str(config), *args])
    assert result.exit_code == EXIT_USAGE, result.stderr
    assert result.stderr.startswith("syncd: database: no mirror database at ")
    assert str(tmp_path / "data" / "missing.sqlite") in result.stderr
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["syncd.toml"]


def test_report_hours(runner, mirror):
    config = str(mirror.parent / "syncd.toml")
    result = runner.invoke(
        cli, ["-c", config, "report", "hours", "--by", "project", "--since", "2024-03-01", "--json"]
    )
    assert result.exit_code == EXIT_OK, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["project"], r["hours"]) for r in rows] == [("Apollo", 2.5), ("Zeus", 0.5)]

    result = runner.invoke(
        cli,
        ["-c", config, "report", "hours", "--by", "day", "--since", "2024-03-05",
         "--until", "2024-03-05", "--csv"],
    )  # fmt: skip
    assert result.exit_code == EXIT_OK, result.stderr
    table = list(csv.reader(io.StringIO(result.stdout)))
    assert table[0][0] == "day"
    assert [row[0] for row in table[1:]] == ["2024-03-05"]


# --------------------------------------------------------------------------- one error handler


@pytest.mark.parametrize(
    ("error", "code", "text"),
    [
        (ConfigError(["a.b: wrong", "c: unknown key"], source="f.toml"), EXIT_USAGE,
         "syncd: invalid configuration in f.toml:\n  a.b: wrong\n  c: unknown key\n"),
        (UsageError("query failed: no such table: x"), EXIT_USAGE,
         "syncd: query failed: no such table: x\n"),
        (MassDeleteError(workspace_id="ws-1", would_delete=40, live=50, threshold=0.5),
         EXIT_FAILED, "--force-delete"),
        (AuthError("invalid key", status=401), EXIT_FAILED,
         "syncd: upstream refused the API key (HTTP 401): invalid key\n"),
        (RateLimited("slow down", status=429, retry_after=3.0), EXIT_FAILED,
         "syncd: upstream answered HTTP 429: slow down\n"),
        (ServerError("bad gateway", status=502), EXIT_FAILED, "HTTP 502"),
        (TransportError("connection refused"), EXIT_FAILED,
         "syncd: cannot reach upstream: connection refused\n"),
        (BudgetExhausted("daily budget spent", resets_at=1_700_000_000), EXIT_FAILED,
         "syncd: daily budget spent (the budget frees up at "),
        (StoreError("disk I/O error"), EXIT_FAILED, "syncd: database: disk I/O error\n"),
        (SchemaTooNew(["0009_future"]), EXIT_FAILED, "upgrade syncd"),
        (NoDatabase("/var/lib/syncd/mirror.sqlite"), EXIT_USAGE,
         "syncd: database: no mirror database at /var/lib/syncd/mirror.sqlite; "),
        (CorruptDatabase("mirror database m.sqlite", "database disk image is malformed"),
         EXIT_FAILED, "syncd: database: mirror database m.sqlite: the database file is damaged "
         "(database disk image is malformed); syncing stopped; stop the daemon and the timer, "
         "then run `syncd -c CONFIG rebuild`"),
        (DiskFull("mirror database m.sqlite", "database or disk is full"), EXIT_FAILED,
         "syncd: database: mirror database m.sqlite: the disk is full (database or disk is "
         "full); nothing of the failed transaction was kept; free space"),
        (QueryTimeout(2.5), EXIT_FAILED, "syncd: query interrupted after 2.5 s (--timeout)"),
        (ShutdownRequested("stopped by SIGTERM"), EXIT_FAILED, "syncd: stopped by SIGTERM\n"),
        (KeyboardInterrupt(), EXIT_INTERRUPTED, "syncd: interrupted\n"),
    ],
)  # fmt: skip
def test_handle_cli_error(capsys, error, code, text):
    assert handle_cli_error(error) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    assert text in captured.err
    assert len(captured.err.splitlines()) == (3 if isinstance(error, ConfigError) else 1)


def test_unexpected_errors_are_logged_with_their_traceback(capsys):
    try:
        raise RuntimeError("bug")
    except RuntimeError as exc:
        error = exc
    with capture_logs() as logs:
        code = handle_cli_error(error)
    assert code == EXIT_FAILED
    assert logs[0]["event"] == "unexpected_error"
    assert logs[0]["log_level"] == "error"
    assert isinstance(logs[0]["exc_info"], RuntimeError)
    assert "RuntimeError: bug" in capsys.readouterr().err


def test_printed_errors_never_show_secrets(capsys):
    handle_cli_error(TransportError(f"cannot connect with {SECRET}"), secrets=[SECRET])
    handle_cli_error(ConfigError([f"x: {SECRET}"]), secrets=[SECRET])
    err = capsys.readouterr().err
    assert SECRET not in err
    assert MASK in err


def test_errors_raised_in_any_command_reach_the_handler(runner):
    @click.group(cls=SyncdGroup)
    def group() -> None:
        pass

    @group.command()
    def crash() -> None:
        raise RuntimeError("bug")

    @group.command()
    def interrupt() -> None:
        raise KeyboardInterrupt

    @group.command()
    def refuse() -> None:
        raise MassDeleteError(workspace_id="w", would_delete=9, live=10, threshold=0.5)

    @group.command()
    def exits() -> None:
        raise click.exceptions.Exit(3)

    results = {
        name: runner.invoke(group, [name]) for name in ("crash", "interrupt", "refuse", "exits")
    }
    assert results["crash"].exit_code == EXIT_FAILED
    assert "unexpected error (RuntimeError: bug)" in results["crash"].stderr
    assert results["interrupt"].exit_code == EXIT_INTERRUPTED
    assert results["refuse"].exit_code == EXIT_FAILED
    assert "--force-delete" in results["refuse"].stderr
    assert results["exits"].exit_code == 3
    assert all(r.exception is None or isinstance(r.exception, SystemExit) for r in results.values())


# --------------------------------------------------------------------------- output helpers


def test_write_rows_formats():
    columns = ["id", "blob", "note"]
    rows = [("a", b"\x00\xff", None), ("b", None, "line\nbreak")]
    out = io.StringIO()
    write_rows(columns, rows, None, out)
    assert out.getvalue() == "id\tblob\tnote\na\t00ff\t\nb\t\tline\\nbreak\n"
    out = io.StringIO()
    write_rows(columns, rows, "json", out)
    assert json.loads(out.getvalue()) == [
        {"id": "a", "blob": "00ff", "note": None},
        {"id": "b", "blob": None, "note": "line\nbreak"},
    ]
    out = io.StringIO()
    write_rows(columns, rows, "csv", out)
    assert list(csv.reader(io.StringIO(out.getvalue()))) == [
        ["id", "blob", "note"],
        ["a", "00ff", ""],
        ["b", "", "line\nbreak"],
    ]


def test_write_rows_draws_a_table_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    write_rows(["project", "hours"], [("Apollo", 2.5), ("Zeus", None)], None, out)
    text = out.getvalue()
    for expected in ("project", "Apollo", "2.5"):
        assert expected in text
    empty = Terminal()
    write_rows(["n"], [], None, empty)
    assert "(no rows)" in empty.getvalue()


def test_summary_fields():
    report = RunReport(
        kind="once",
        started_at="2024-01-01T00:00:00.000Z",
        workspaces=2,
        windows=5,
        outcome=WindowOutcome(inserted=10, updated=2, unchanged=7, tombstoned=1, revived=1),
        requests=6,
        rate_limited=1,
        ok=True,
    )
    assert summarize(report, duration_seconds=1.23456) == {
        "workspaces": 2,
        "windows": 5,
        "inserted": 10,
        "updated": 2,
        "tombstoned": 1,
        "revived": 1,
        "requests": 6,
        "rate_limited": 1,
        "duration_seconds": 1.235,
        "ok": True,
    }
    report.ok, report.error = False, "upstream answered HTTP 502"
    assert summarize(report, duration_seconds=0)["error"] == "upstream answered HTTP 502"
    # A run that left workspaces to another syncd process says so; one that did not is silent.
    assert "leased_elsewhere" not in summarize(report, duration_seconds=0)
    report.leased_elsewhere = 2
    assert summarize(report, duration_seconds=0)["leased_elsewhere"] == 2
    assert "confirmed_pushes" not in summarize(report, duration_seconds=0)
    report.confirmed_pushes = 3
    assert summarize(report, duration_seconds=0)["confirmed_pushes"] == 3


# --------------------------------------------------------------------------- real processes


def syncd(*args: str, env: dict[str, str] | None = None, timeout: float = 60, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args],
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


@pytest.mark.e2e
def test_process_bad_config_exits_2_listing_every_problem(tmp_path):
    config = write_toml(tmp_path, BAD_CONFIG)
    result = syncd("-c", str(config), "--once")
    assert result.returncode == EXIT_USAGE
    for problem in BAD_PROBLEMS:
        assert f"  {problem}\n" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.e2e
def test_process_check_config_on_the_example(tmp_path):
    config = example_config(tmp_path)
    result = syncd("-c", str(config), "check-config", env={"SYNCD_API_KEY": SECRET})
    assert result.returncode == EXIT_OK, result.stderr
    assert json.loads(result.stdout)["api"]["key"] == MASK
    assert SECRET not in result.stdout + result.stderr
    unknown = syncd("frobnicate")
    assert unknown.returncode == EXIT_USAGE
    assert "No such command" in unknown.stderr


@pytest.mark.e2e
def test_process_sql(mirror):
    config = str(mirror.parent / "syncd.toml")
    result = syncd(
        "-c", config, "sql", "SELECT project_name, count(*) FROM time_entries GROUP BY 1"
    )
    assert result.returncode == EXIT_OK, result.stderr
    assert result.stdout.splitlines() == ["project_name\tcount(*)", "Apollo\t2", "Zeus\t1"]
    refused = syncd("-c", config, "sql", "DROP TABLE time_entries")
    assert refused.returncode == EXIT_USAGE
    assert refused.stdout == ""
    assert "Traceback" not in refused.stderr


# --------------------------------------------------------------------------- against the emulator

needs_service = pytest.mark.skipif(
    importlib.util.find_spec("syncd.service") is None
    or importlib.util.find_spec("syncd.emulator.command") is None,
    reason="syncd.service (run_once / run_daemon) is not there yet",
)


@pytest.fixture
def emulator():
    with emulator_process("--seed", "1", "--workspaces", "1", "--entries", "50") as ready:
        yield ready


def emulator_config(tmp_path: Path, ready: dict, key: str = "k") -> Path:
    return write_config(tmp_path / "syncd.toml", emulator_sections(ready, key=key))


def events(stdout: str, name: str) -> list[dict]:
    found = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == name:
                found.append(event)
    return found


@pytest.mark.e2e
@needs_service
def test_once_against_the_emulator(tmp_path, emulator):
    config = emulator_config(tmp_path, emulator)
    first = syncd("-c", str(config), "--once", timeout=120)
    assert first.returncode == EXIT_OK, first.stdout + first.stderr
    # stdout (not a terminal) carries the summary line and nothing else; the log is on stderr.
    assert len(first.stdout.splitlines()) == 1
    (summary,) = events(first.stdout, "sync_finished")
    logged = [json.loads(line)["event"] for line in first.stderr.splitlines()]
    assert "backfill_complete" in logged
    assert "sync_finished" not in logged
    assert summary["ok"] is True
    assert summary["workspaces"] == 1
    assert summary["inserted"] > 0
    assert summary["rate_limited"] == 0
    count = syncd("-c", str(config), "sql", "SELECT count(*) FROM time_entries")
    assert count.stdout.splitlines()[1] == str(summary["inserted"])

    second = syncd("-c", str(config), "run", "--once", timeout=120)
    assert second.returncode == EXIT_OK, second.stdout + second.stderr
    (summary,) = events(second.stdout, "sync_finished")
    assert (summary["inserted"], summary["tombstoned"]) == (0, 0)


@pytest.mark.e2e
@needs_service
def test_once_with_a_wrong_key_exits_1(tmp_path, emulator):
    config = emulator_config(tmp_path, emulator, key="wrong-key-123456")
    result = syncd("-c", str(config), "--once", timeout=120)
    assert result.returncode == EXIT_FAILED
    # The failure is printed once, as the last line of stderr, after the log.
    printed = [line for line in result.stderr.splitlines() if line.startswith("syncd: ")]
    assert printed == [result.stderr.splitlines()[-1]]
    assert "refused the API key" in printed[0]
    assert "Traceback" not in result.stderr
    assert "wrong-key-123456" not in result.stdout + result.stderr
    (summary,) = events(result.stdout, "sync_finished")
    assert summary["ok"] is False


@pytest.mark.e2e
@needs_service
def test_daemon_stops_cleanly_on_sigterm(tmp_path, emulator):
    config = emulator_config(tmp_path, emulator)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "syncd", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            probe = syncd("-c", str(config), "sql", "SELECT count(*) FROM time_entries")
            if probe.returncode == EXIT_OK and probe.stdout.splitlines()[1] != "0":
                break
            time.sleep(0.5)
        else:
            pytest.fail("the daemon did not fill the mirror within 60 s")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == EXIT_OK
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
