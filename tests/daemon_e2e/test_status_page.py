"""A running daemon serves its status page at ``/``, logs what it runs on at start, exposes
every counter from the start, and stops calling a recovered error current."""

from __future__ import annotations

import re
import sqlite3

from syncd import __version__
from tests.support.daemon import http, wait_for

LONG_KEY = "tt-live-key-4f9a8b7c6d5e4f3a2b1c"
SECRET = "webhook-signing-secret-9e8d7c"


def _text(html: str) -> str:
    html = re.sub(r"<style.*?</style>", "", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _daemon(emulator_factory, daemon_factory):
    emu = emulator_factory(keys=(LONG_KEY,), entries=400, days=60)
    emu.api_key = LONG_KEY
    daemon = daemon_factory(emu, overrides={"webhooks": {"secret": SECRET}})
    return emu, daemon


def test_the_daemon_serves_the_status_page_without_secrets(emulator_factory, daemon_factory):
    _emu, daemon = _daemon(emulator_factory, daemon_factory)
    daemon.start()
    reply = http("GET", f"{daemon.base_url}/")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in reply.headers["Content-Security-Policy"]
    html = reply.body.decode()
    text = _text(html)
    with sqlite3.connect(f"file:{daemon.db_path}?mode=ro", uri=True) as db:
        counts = dict(
            db.execute(
                "SELECT w.name, COUNT(e.id) FROM workspaces AS w LEFT JOIN time_entries AS e "
                "ON e.workspace_id = w.id AND e.deleted_at IS NULL GROUP BY w.id"
            ).fetchall()
        )
    assert len(counts) == 2
    for name, count in counts.items():
        escaped = name.replace("&", "&amp;")
        assert re.search(
            rf"{re.escape(escaped)}\s*</h3>\s*<dl>\s*<dt>entries</dt><dd[^>]*>"
            rf"{count:,}<",
            html,
        ), name
    assert "Daemon: ok" in text
    assert html.count("<svg") == 2
    assert "<script" not in html.lower()
    token = (daemon.workdir / "mirror.sqlite.webhook-token").read_text().strip()
    for secret in (LONG_KEY, SECRET, token):
        assert secret not in html
    assert http("HEAD", f"{daemon.base_url}/").status == 200
    assert daemon.stop()[0] == 0


def test_start_is_logged_with_what_the_daemon_runs_on_and_counters_start_at_zero(
    emulator_factory, daemon_factory
):
    _emu, daemon = _daemon(emulator_factory, daemon_factory)
    daemon.start()
    started = next(e for e in daemon.log_events() if e["event"] == "daemon_started")
    assert started["version"] == __version__
    assert started["config"] == str(daemon.config_path.resolve())
    assert started["database"] == str(daemon.db_path)
    assert started["listen"] == f"127.0.0.1:{daemon.port}"
    metrics = daemon.metrics()
    assert metrics[f'syncd_build_info{{python="{_python()}",version="{__version__}"}}'] == 1
    assert metrics["process_resident_memory_bytes"] > 0
    assert metrics['syncd_webhook_events_total{outcome="refused"}'] == 0
    assert metrics['syncd_sync_failures_total{kind="poll"}'] == 0
    assert metrics['syncd_api_requests_total{outcome="rate_limited"}'] == 0
    assert daemon.stop()[0] == 0


def test_a_recovered_error_is_kept_but_no_longer_current(emulator_factory, daemon_factory):
    emu = emulator_factory(entries=200, days=30)
    daemon = daemon_factory(emu, overrides={"sync": {"interval_seconds": 10}})
    daemon.start()
    # The next poll's two attempts (api.max_attempts = 2) fail; the one after succeeds.
    emu.control("POST", "/faults", {"status": 500, "count": 2})
    failed = wait_for(
        lambda: (h := daemon.healthz().json())["last_error"] and h,
        25,
        interval=0.1,
        what="a poll to fail",
    )
    assert failed["last_error_current"] is True
    assert "ServerError" in failed["last_error"]
    recovered = wait_for(
        lambda: (h := daemon.healthz().json())["last_error_current"] is False and h,
        25,
        interval=0.1,
        what="a later poll to succeed",
    )
    assert recovered["status"] == "ok"
    assert recovered["last_error"] == failed["last_error"]
    assert recovered["last_error_at"] == failed["last_error_at"]
    assert recovered["last_success_at"] > recovered["last_error_at"]
    page = _text(http("GET", f"{daemon.base_url}/").body.decode())
    assert "Last error (recovered since)" in page
    assert daemon.stop()[0] == 0


def _python() -> str:
    import platform

    return platform.python_version()
