"""The command line as an operator meets it, in real processes: streams and log levels,
`init` and the default config places, `check-config --online`, errors a config must fix
(exit 2), `sql --nl/--tables/--schema`, and help on every option. Marked e2e as a whole
(tests/support/tiers.py)."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from syncd.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, cli
from syncd.config import load_config
from tests.support.config import emulator_sections, write_config
from tests.support.emulator import emulator_process
from tests.support.environment import clean_env

ETC_CONFIG = Path("/etc/syncd/config.toml")


def syncd(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60):
    # never the developer's own config
    base = clean_env({"XDG_CONFIG_HOME": str(cwd / "xdg")})
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args],
        env={**base, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def log_events(stderr: str) -> list[dict]:
    """The JSON log lines of ``stderr`` (the lines that are not ``syncd: ...`` messages)."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def emulator() -> Iterator[dict]:
    # shared by many runs, each with its own mirror and budget: no rate limits
    with emulator_process(
        "--seed", "3", "--workspaces", "2", "--entries", "40", "--no-rate-limit"
    ) as ready:  # fmt: skip
        yield ready


def write(directory: Path, ready: dict | None, extra: str = "", name: str = "syncd.toml") -> Path:
    """A config for the emulator ``ready`` (or an upstream that refuses connections)."""
    refusing = {"api_url": "http://127.0.0.1:9/v1", "app_url": "http://127.0.0.1:9"}
    (directory / "key").write_text("k\n", encoding="utf-8")
    path = write_config(directory / name, emulator_sections(ready or refusing, key_file="key"))
    with path.open("a", encoding="utf-8") as config:
        config.write(extra)
    return path


# --------------------------------------------------------------------------- streams, levels


def test_once_levels_go_to_stderr_and_sql_only_with_log_sql(tmp_path, emulator):
    write(tmp_path, emulator)
    first = syncd("--once", cwd=tmp_path)  # ./syncd.toml is found without -c
    assert first.returncode == EXIT_OK, first.stderr
    assert [json.loads(line)["event"] for line in first.stdout.splitlines()] == ["sync_finished"]
    info = {e["level"] for e in log_events(first.stderr)}
    assert "info" in info
    assert "debug" not in info

    quiet = syncd("-q", "--once", cwd=tmp_path)
    assert quiet.returncode == EXIT_OK
    assert quiet.stderr == ""  # a healthy run says nothing at warning level
    assert json.loads(quiet.stdout)["ok"] is True

    verbose = syncd("-v", "--once", cwd=tmp_path)
    events = log_events(verbose.stderr)
    assert any(e["level"] == "debug" for e in events)
    assert not [e for e in events if e["logger"] == "peewee"]  # no SQL at -v

    with_sql = syncd("--log-sql", "--log-level", "warning", "--once", cwd=tmp_path)
    sql_lines = [e for e in log_events(with_sql.stderr) if e["logger"] == "peewee"]
    assert sql_lines
    assert all(e["level"] == "debug" for e in sql_lines)
    assert not [e for e in log_events(with_sql.stderr) if e["level"] == "info"]

    both = syncd("-q", "-v", "--once", cwd=tmp_path)
    assert both.returncode == EXIT_USAGE
    assert "contradict" in both.stderr


def test_config_logging_level_applies_and_the_command_line_overrides_it(tmp_path, emulator):
    write(tmp_path, emulator, 'level = "warning"\n')  # in [logging], the last table
    quiet = syncd("--once", cwd=tmp_path)
    assert quiet.returncode == EXIT_OK
    assert quiet.stderr == ""
    loud = syncd("--log-level", "INFO", "--once", cwd=tmp_path)
    assert any(e["level"] == "info" for e in log_events(loud.stderr))


def test_each_retried_attempt_is_logged_once_and_the_failure_printed_once(tmp_path):
    write(tmp_path, None, "", name="syncd.toml")
    text = (tmp_path / "syncd.toml").read_text()
    text = text.replace('key_file = "key"\n', 'key_file = "key"\nmax_attempts = 3\n')
    (tmp_path / "syncd.toml").write_text(text)
    result = syncd("--once", cwd=tmp_path)
    assert result.returncode == EXIT_FAILED
    events = log_events(result.stderr)
    attempts = [e["attempt"] for e in events if e["event"] == "api_transport_error"]
    assert attempts == [1, 2, 3]
    # one naming style for every event: lower-case words joined by underscores
    assert all(re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", e["event"]) for e in events), events
    assert not [e for e in events if e["logger"].startswith("stamina")]
    assert [e["level"] for e in events if e["level"] in ("warning", "error")] == ["warning"] * 3
    printed = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert len(printed) == 1
    assert printed[0].startswith("syncd: cannot reach upstream")
    (summary,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert (summary["event"], summary["ok"]) == ("sync_finished", False)


def on_terminal(*args: str, cwd: Path, answers: bytes = b"") -> tuple[int, str]:
    """Run syncd with stdin, stdout and stderr on one pseudo-terminal; the exit code and
    everything it showed."""
    controller, terminal = pty.openpty()
    env = clean_env({"XDG_CONFIG_HOME": str(cwd / "xdg")})
    with subprocess.Popen(
        [sys.executable, "-m", "syncd", *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        cwd=cwd,
        env=env,
    ) as process:
        os.close(terminal)
        if answers:
            os.write(controller, answers)
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the terminal is closed and drained
            while chunk := os.read(controller, 4096):
                shown += chunk
        code = process.wait(timeout=60)
    os.close(controller)
    return code, shown.decode("utf-8", "replace")


def test_a_failed_once_on_a_terminal_says_its_error_once(tmp_path):
    write(tmp_path, None)
    config = tmp_path / "syncd.toml"
    text = config.read_text().replace('key_file = "key"\n', 'key_file = "key"\nmax_attempts = 1\n')
    config.write_text(text.replace('format = "json"', 'format = "console"'))
    code, shown = on_terminal("--once", cwd=tmp_path)
    assert code == EXIT_FAILED
    assert "sync_finished" in shown
    # One log line for the one attempt, one message at the end; the summary names no error.
    assert shown.count("Connect call failed") == 2
    assert shown.rstrip().splitlines()[-1].startswith("syncd: cannot reach upstream")


# --------------------------------------------------------------------------- init, config places


def test_bare_syncd_without_a_config_prints_help_and_exits_2(tmp_path):
    if ETC_CONFIG.exists():
        pytest.skip(f"{ETC_CONFIG} exists on this machine")
    result = syncd(cwd=tmp_path)
    assert result.returncode == EXIT_USAGE
    assert result.stdout == ""
    assert "Usage: syncd" in result.stderr
    assert "syncd init" in result.stderr.splitlines()[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no mirror made


def test_init_without_a_terminal_writes_placeholders_and_never_overwrites(tmp_path):
    result = syncd("init", cwd=tmp_path)
    assert result.returncode == EXIT_OK, result.stderr
    written = (tmp_path / "syncd.toml").read_text(encoding="utf-8")
    assert 'key_file = "/REPLACE-ME/path/to/api_key"' in written
    assert 'path = "/REPLACE-ME/path/to/mirror.sqlite"' in written
    assert "# REPLACE-ME: replace every REPLACE-ME value" in written
    assert 'listen = ""' in written  # webhooks off
    check = syncd("check-config", cwd=tmp_path)  # found as ./syncd.toml
    assert check.returncode == EXIT_USAGE
    assert "api.key_file: /REPLACE-ME/path/to/api_key does not exist" in check.stderr

    (tmp_path / "syncd.toml").write_text("# mine\n", encoding="utf-8")
    again = syncd("init", cwd=tmp_path)
    assert again.returncode == EXIT_USAGE
    assert "already exists" in again.stderr
    assert (tmp_path / "syncd.toml").read_text(encoding="utf-8") == "# mine\n"


def test_init_on_a_terminal_asks_for_what_it_was_not_given(tmp_path):
    code, shown = on_terminal(
        "init", "--database", "m.sqlite", cwd=tmp_path, answers=b"secret/api_key\n"
    )
    assert code == EXIT_OK
    assert "File holding the API key" in shown
    assert "Mirror database file" not in shown  # given as an option
    written = (tmp_path / "syncd.toml").read_text(encoding="utf-8")
    assert f'key_file = "{tmp_path / "secret" / "api_key"}"' in written
    assert f'path = "{tmp_path / "m.sqlite"}"' in written
    assert "REPLACE-ME" not in written


def test_init_with_options_writes_a_config_that_checks_out(tmp_path):
    (tmp_path / "api_key").write_text("tt_live_0123456789\n", encoding="utf-8")
    (tmp_path / "data").mkdir()
    target = tmp_path / "xdg" / "syncd" / "config.toml"  # the XDG place, made as needed
    result = syncd(
        "init", str(target), "--key-file", "api_key", "--database", "data/m.sqlite", cwd=tmp_path
    )
    assert result.returncode == EXIT_OK, result.stderr
    config = load_config(target, env={})
    assert config.api.key_value() == "tt_live_0123456789"
    assert config.database.path == tmp_path / "data" / "m.sqlite"
    assert not config.webhooks.listen
    check = syncd("check-config", cwd=tmp_path)  # found in $XDG_CONFIG_HOME/syncd/
    assert check.returncode == EXIT_OK, check.stderr
    assert str(target) in check.stderr


def test_syncd_config_comes_before_the_working_directory(tmp_path):
    write(tmp_path, None, "\n[sync]\nhot_window_days = 3\n")
    other = write(tmp_path, None, "\n[sync]\nhot_window_days = 9\n", name="other.toml")
    local = syncd("check-config", cwd=tmp_path)
    assert json.loads(local.stdout)["sync"]["hot_window_days"] == 3
    chosen = syncd("check-config", cwd=tmp_path, env={"SYNCD_CONFIG": str(other)})
    assert json.loads(chosen.stdout)["sync"]["hot_window_days"] == 9


# --------------------------------------------------------------------------- check-config, errors


def test_check_config_catches_a_missing_database_directory(tmp_path):
    config = write(tmp_path, None)
    config.write_text(config.read_text().replace("mirror.sqlite", "nowhere/mirror.sqlite"))
    for args in (["check-config"], ["--once"]):
        result = syncd(*args, cwd=tmp_path)
        assert result.returncode == EXIT_USAGE, args
        assert f"the directory {tmp_path / 'nowhere'} does not exist" in result.stderr
        assert "mkdir -p" in result.stderr
    assert not (tmp_path / "nowhere").exists()


def test_check_config_online_lists_the_workspaces_the_key_sees(tmp_path, emulator):
    write(tmp_path, emulator)
    result = syncd("check-config", "--online", cwd=tmp_path)
    assert result.returncode == EXIT_OK, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header == "id\tname"
    assert len(rows) == 2
    ids = [row.split("\t")[0] for row in rows]
    assert "upstream accepts the key (2 workspaces)" in result.stderr
    assert not (tmp_path / "mirror.sqlite").exists()  # checked, not created

    config = tmp_path / "syncd.toml"
    config.write_text(config.read_text() + f'[sync]\nworkspaces = ["{ids[0]}", "nope"]\n')
    unknown = syncd("check-config", "--online", cwd=tmp_path)
    assert unknown.returncode == EXIT_USAGE
    assert "sync.workspaces: the key sees no workspace 'nope'" in unknown.stderr

    config.write_text(config.read_text().replace('"k"', '"wrong-key-9876"'))
    (tmp_path / "key").write_text("wrong-key-9876\n")
    refused = syncd("check-config", "--online", cwd=tmp_path)
    assert refused.returncode == EXIT_FAILED
    assert "refused the API key" in refused.stderr
    assert "wrong-key-9876" not in refused.stdout + refused.stderr


def test_a_taken_listen_port_is_a_configuration_error(tmp_path, emulator):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        write(tmp_path, emulator, f'[webhooks]\nlisten = "127.0.0.1:{port}"\n')
        for args in (["check-config", "--online"], ["run"]):
            result = syncd(*args, cwd=tmp_path)
            assert result.returncode == EXIT_USAGE, (args, result.stderr)
            assert f"webhooks.listen: 127.0.0.1:{port} is already in use" in result.stderr
            assert "unexpected error" not in result.stderr
            assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- sql and report


@pytest.fixture(scope="module")
def synced(tmp_path_factory, emulator) -> Path:
    directory = tmp_path_factory.mktemp("synced")
    write(directory, emulator)
    assert syncd("-q", "--once", cwd=directory).returncode == EXIT_OK
    return directory


def test_sql_refusals_say_the_mirror_is_read_only(synced):
    for query in ("DELETE FROM time_entries", "INSERT INTO workspaces VALUES ('x', 'y', NULL)"):
        result = syncd("sql", query, cwd=synced)
        assert result.returncode == EXIT_USAGE
        assert result.stderr.startswith("syncd: the mirror is opened read-only")
        assert result.stdout == ""


def test_sql_nl_tables_and_schema(synced):
    nl = syncd("sql", "--nl", "SELECT id, name FROM workspaces ORDER BY id", cwd=synced)
    records = [json.loads(line) for line in nl.stdout.splitlines()]
    assert len(records) == 2
    assert set(records[0]) == {"id", "name"}

    tables = syncd("sql", "--tables", cwd=synced)
    rows = [line.split("\t") for line in tables.stdout.splitlines()]
    assert rows[0] == ["name", "type"]
    assert ["time_entries", "table"] in rows
    assert ["live_time_entries", "view"] in rows

    schema = syncd("sql", "--schema", "workspaces", cwd=synced)
    assert schema.returncode == EXIT_OK
    assert schema.stdout.startswith("CREATE TABLE workspaces")
    assert "time_entries" not in schema.stdout
    everything = syncd("sql", "--schema", cwd=synced)
    assert "CREATE VIEW live_time_entries" in everything.stdout
    missing = syncd("sql", "--schema", "nope", cwd=synced)
    assert missing.returncode == EXIT_USAGE
    assert "--tables" in missing.stderr
    both = syncd("sql", "--tables", "SELECT 1", cwd=synced)
    assert both.returncode == EXIT_USAGE


def test_report_for_an_unknown_workspace_exits_2(synced):
    result = syncd(
        "report", "hours", "--by", "day", "--since", "2020-01-01", "--workspace", "nope",
        cwd=synced,
    )  # fmt: skip
    assert result.returncode == EXIT_USAGE
    assert "the mirror has no workspace 'nope'" in result.stderr
    assert result.stdout == ""


# --------------------------------------------------------------------------- help


def _commands(
    group: click.Group, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple, click.Command]]:
    for name, command in group.commands.items():
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


def test_every_option_of_every_command_has_help():
    from syncd.emulator.command import emulator_command

    everything = [((), cli), *_commands(cli), (("emulator",), emulator_command)]
    missing = [
        f"{' '.join(path) or 'syncd'} {param.opts[0]}"
        for path, command in everything
        for param in command.params
        if isinstance(param, click.Option) and not param.help
    ]
    assert missing == []


@pytest.mark.parametrize(
    "args",
    [[], ["init"], ["run"], ["check-config"], ["sql"], ["report", "hours"], ["webhooks"],
     ["webhooks", "remove"], ["status"], ["rebuild"], ["emulator"]],
)  # fmt: skip
def test_dash_h_everywhere(tmp_path, args):
    result = syncd(*args, "-h", cwd=tmp_path)
    assert result.returncode == EXIT_OK, result.stderr
    assert result.stdout.startswith("Usage: syncd")
