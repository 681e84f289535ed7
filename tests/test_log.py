"""Logging: one format for our events and stdlib logs, JSON off a terminal, no secrets."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
import structlog
from structlog.testing import capture_logs

from syncd.log import (
    MASK,
    SecretRedactor,
    clear_registered_secrets,
    configure_logging,
    register_secret,
)

SECRET = "tt_live_s3cr3t-value-0042"


@pytest.fixture(autouse=True)
def _restore_logging():
    yield
    clear_registered_secrets()
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    logging.basicConfig(handlers=[logging.NullHandler()], level=logging.WARNING, force=True)
    logging.getLogger("apscheduler").setLevel(logging.NOTSET)


def json_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_for_our_events_and_stdlib_logs():
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    structlog.contextvars.bind_contextvars(run_id=7)
    structlog.get_logger("syncd.sync").info("window_scanned", entries=3)
    logging.getLogger("aiohttp.access").info("GET %s", "/healthz")
    first, second = json_lines(out)
    assert first["event"] == "window_scanned"
    assert first["entries"] == 3
    assert first["run_id"] == 7  # merged from contextvars
    assert first["level"] == "info"
    assert first["logger"] == "syncd.sync"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", first["timestamp"])
    assert second["event"] == "GET /healthz"
    assert second["logger"] == "aiohttp.access"
    assert second["run_id"] == 7
    assert set(first) >= {"timestamp", "level", "logger", "event"}
    assert set(second) >= {"timestamp", "level", "logger", "event"}


def test_auto_is_json_when_not_a_terminal():
    out = io.StringIO()  # not a TTY
    configure_logging("info", "auto", stream=out)
    structlog.get_logger().info("hello")
    assert json_lines(out)[0]["event"] == "hello"


def test_auto_is_console_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    configure_logging("info", "auto", stream=out)
    structlog.get_logger().info("hello", n=1)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())  # colours on a terminal
    assert "hello" in text
    assert "n=1" in text
    assert not text.lstrip().startswith("{")


def test_level_filters_and_apscheduler_is_quiet_unless_debug():
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    structlog.get_logger().debug("hidden")
    logging.getLogger("apscheduler.executors.default").info("Job executed successfully")
    logging.getLogger("apscheduler.scheduler").warning("Run time of job was missed")
    assert [line["event"] for line in json_lines(out)] == ["Run time of job was missed"]

    out = io.StringIO()
    configure_logging("debug", "json", stream=out)
    structlog.get_logger().debug("shown")
    logging.getLogger("apscheduler.executors.default").info("Job executed successfully")
    assert [line["event"] for line in json_lines(out)] == ["shown", "Job executed successfully"]


def test_secrets_are_redacted_everywhere():
    out = io.StringIO()
    configure_logging("info", "json", secrets=[SECRET, "", "k"], stream=out)
    log = structlog.get_logger()
    log.info("request", key=SECRET, header=f"Bearer {SECRET}", nested={"a": [SECRET]}, one="k")
    logging.getLogger("aiohttp.client").warning("sent %s", SECRET)
    try:
        api_key = SECRET  # a local variable: tracebacks are rendered without locals
        raise RuntimeError(f"upstream echoed {api_key}")
    except RuntimeError:
        log.exception("request_failed")
    text = out.getvalue()
    assert SECRET not in text
    request, stdlib_line, failure = json_lines(out)
    assert request["key"] == MASK
    assert request["header"] == f"Bearer {MASK}"
    assert request["nested"] == {"a": [MASK]}
    assert request["one"] == MASK  # equal to a (short) secret
    assert stdlib_line["event"] == f"sent {MASK}"
    assert failure["exception"][0]["exc_value"] == f"upstream echoed {MASK}"
    assert "locals" not in failure["exception"][0]["frames"][0]


def test_console_tracebacks_are_redacted_too():
    out = io.StringIO()
    configure_logging("info", "console", secrets=[SECRET], stream=out)
    try:
        raise RuntimeError(f"upstream echoed {SECRET}")
    except RuntimeError:
        structlog.get_logger().exception("request_failed")
    assert "RuntimeError: upstream echoed " + MASK in out.getvalue()
    assert SECRET not in out.getvalue()


def test_short_secrets_are_not_masked_inside_other_words():
    redactor = SecretRedactor(["k"])
    assert redactor.redact("k") == MASK
    assert redactor.redact("bookkeeping") == "bookkeeping"
    assert SecretRedactor([]).redact({"a": 1}) == {"a": 1}
    assert SecretRedactor([SECRET]).redact((f"x{SECRET}y", 3)) == (f"x{MASK}y", 3)


def test_reconfiguring_replaces_the_previous_setup():
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "json", stream=first)
    configure_logging("warning", "json", secrets=[SECRET], stream=second)
    structlog.get_logger().info("dropped")
    structlog.get_logger().warning("kept", key=SECRET)
    assert first.getvalue() == ""
    assert json_lines(second) == [
        {**json_lines(second)[0], "event": "kept", "key": MASK, "level": "warning"}
    ]
    assert len(logging.getLogger().handlers) == 1


def test_capture_logs_still_works_after_configuration():
    configure_logging("info", "json", stream=io.StringIO())
    with capture_logs() as logs:
        structlog.get_logger("syncd.sync").info("window_scanned", entries=2)
    assert logs == [{"event": "window_scanned", "entries": 2, "log_level": "info"}]


@pytest.mark.parametrize(("level", "fmt"), [("verbose", "json"), ("info", "xml")])
def test_unknown_level_or_format(level, fmt):
    with pytest.raises(ValueError, match="unknown log"):
        configure_logging(level, fmt)


def test_sql_is_logged_only_with_log_sql_whatever_the_level(tmp_path):
    import peewee

    out = io.StringIO()
    configure_logging("debug", "json", stream=out)
    db = peewee.SqliteDatabase(str(tmp_path / "m.sqlite"))
    db.execute_sql("CREATE TABLE t (x)")
    db.close()
    structlog.get_logger("syncd.test").debug("own_event")
    assert [line["event"] for line in json_lines(out)] == ["own_event"]

    out = io.StringIO()
    configure_logging("warning", "json", stream=out, log_sql=True)
    db = peewee.SqliteDatabase(str(tmp_path / "m.sqlite"))
    db.execute_sql("SELECT x FROM t")
    db.close()
    structlog.get_logger("syncd.test").info("hidden")
    (line,) = json_lines(out)
    assert line["event"] == "SELECT x FROM t -- 0 parameters not logged"


def test_the_log_goes_to_stderr_by_default(capsys):
    configure_logging("info", "json")
    structlog.get_logger("syncd.test").info("somewhere")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert json.loads(captured.err)["event"] == "somewhere"


def test_sql_debug_lines_show_statements_but_never_their_parameters(tmp_path):
    import peewee

    out = io.StringIO()
    configure_logging("debug", "json", stream=out, log_sql=True)
    db = peewee.SqliteDatabase(str(tmp_path / "m.sqlite"))
    db.execute_sql("CREATE TABLE installation (key TEXT PRIMARY KEY, value TEXT)")
    db.execute_sql("INSERT INTO installation VALUES (?, ?)", ("webhook_token", SECRET))
    db.close()
    text = out.getvalue()
    assert SECRET not in text
    assert "webhook_token" not in text
    events = [line["event"] for line in json_lines(out) if line["logger"] == "peewee"]
    assert "INSERT INTO installation VALUES (?, ?) -- 2 parameters not logged" in events


def test_a_secret_registered_at_run_time_is_masked_by_every_redactor():
    token = "Zr8n1lY0w2-hook-path-token_Q"
    out = io.StringIO()
    configure_logging("info", "json", secrets=["k"], stream=out)
    made_before = SecretRedactor([])
    register_secret(token)
    structlog.get_logger().info("subscribed", url=f"https://x.example/hooks/{token}")
    logging.getLogger("aiohttp.server").error("bad request to /hooks/%s", token)
    assert token not in out.getvalue()
    first, second = json_lines(out)
    assert first["url"] == f"https://x.example/hooks/{MASK}"
    assert second["event"] == f"bad request to /hooks/{MASK}"
    assert made_before.redact(f"echoed {token}") == f"echoed {MASK}"
