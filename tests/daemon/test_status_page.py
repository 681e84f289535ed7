"""The status page built from a real mirror file: what it shows, what it never shows, and
``syncd status --html`` as a real subprocess."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncd import status_page
from syncd.budget import Priority
from syncd.config import parse_config
from syncd.daemon.scheduler import Health
from syncd.records import (
    EventKind,
    RunReport,
    Source,
    TimeEntry,
    WebhookEvent,
    WindowOutcome,
    WindowScan,
    Workspace,
)
from syncd.service import budget_for
from syncd.store import Store

KEY = "sk-live-do-not-show-0123456789"
SECRET = "hook-secret-never-shown-42"
NOW = datetime.now(UTC).replace(microsecond=0)
TODAY = NOW.date()


def _day(back: int) -> str:
    return (TODAY - timedelta(days=back)).isoformat()


def entry(
    entry_id: str, *, ws: str = "ws-1", day: str, seconds: int = 3600, running: bool = False
) -> TimeEntry:
    start = f"{day}T01:00:00.000Z"
    end = None if running else f"{day}T{1 + seconds // 3600:02d}:00:00.000Z"
    return TimeEntry(
        id=entry_id,
        workspace_id=ws,
        date=day,
        start_time=start,
        end_time=end,
        duration_seconds=None if running else seconds,
        description="",
        billable=False,
        manually_entered=False,
        team_member_id="m-1",
        team_member_name="Ann",
        project_id="p-1",
        project_name="Apollo",
        client_id=None,
        client_name=None,
        task_id=None,
        task_name=None,
        created_at=start,
        updated_at=start,
        tags=(),
        raw="{}",
    )


def window(entries: list[TimeEntry], date_from: str, date_to: str, *, ws: str = "ws-1"):
    stamp = NOW.isoformat().replace("+00:00", "Z")
    return WindowScan(ws, date_from, date_to, tuple(entries), Source.POLL, stamp)


def _config(tmp_path: Path, db: Path):
    text = (
        f'[api]\nkey = "{KEY}"\n[database]\npath = "{db}"\n'
        "[limits]\nper_second = 50\nper_minute = 100\nper_day = 2400\n"
        f'[webhooks]\nlisten = "127.0.0.1:0"\nsecret = "{SECRET}"\n'
    )
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path, parse_config(text, base_dir=tmp_path, env={})


@pytest.fixture
def mirror(tmp_path: Path):
    """A mirror with two workspaces, entries over the last days, a running timer, one run,
    one webhook delivery and five granted requests."""
    db = tmp_path / "mirror.sqlite"
    path, config = _config(tmp_path, db)
    store = Store(db)
    stamp = NOW.isoformat().replace("+00:00", "Z")
    store.upsert_workspaces(
        [Workspace("ws-1", "Acme <b>Engineering</b>"), Workspace("ws-2", "Beta")], stamp
    )
    entries = [entry(f"e-{n}", day=_day(n % 5), seconds=3600 * (1 + n % 3)) for n in range(12)]
    entries.append(entry("run-1", day=_day(0), running=True))
    store.apply_window(window(entries, _day(6), _day(0)))
    store.apply_window(window([entry("b-1", ws="ws-2", day=_day(1))], _day(6), _day(0), ws="ws-2"))
    run = store.start_run("poll", stamp)
    store.finish_run(
        run,
        RunReport(
            kind="poll",
            started_at=stamp,
            finished_at=stamp,
            outcome=WindowOutcome(inserted=14),
            requests=5,
            ok=False,
            error="TransportError: upstream unreachable",
        ),
    )
    event = WebhookEvent(
        kind=EventKind.TIMER_STARTED,
        object_id="e-99",
        workspace_id="ws-1",
        updated_at=stamp,
        dedupe_key="timer_started:e-99:x",
    )
    store.record_webhook_event(event, stamp)
    store.set_webhook_outcome(event.dedupe_key, "inserted")

    async def inline(fn, *args):
        return fn(*args)

    budget = budget_for(config, store, KEY, daily_share=1.0, runner=inline)

    async def spend() -> None:
        for _ in range(5):
            await budget.acquire(Priority.HOT)

    asyncio.run(spend())
    yield path, config, store
    store.close()


def _text(html: str) -> str:
    """Roughly what a reader sees: the page without tags, style or entities."""
    html = re.sub(r"<style.*?</style>", "", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_page_shows_workspaces_counts_runs_events_and_two_charts(mirror):
    _path, config, store = mirror
    html = status_page.build(config, store, now=datetime.now(UTC))
    text = _text(html)
    assert "Acme &lt;b&gt;Engineering&lt;/b&gt;" in html  # names are escaped, never markup
    assert "Beta" in text
    assert re.search(r"entries\s+13\b", text)  # 12 finished entries and the running timer
    assert "Running timers (1)" in text
    assert "failed" in text
    assert "TransportError: upstream unreachable" in text
    assert "TIMER_STARTED" in text
    assert "e-99" in text
    assert "5 requests in 24 h" in text
    assert html.count("<svg") == 2
    bars = re.findall(r'<rect [^>]*height="([\d.]+)"', html)
    assert len(bars) == 24 + status_page.HISTORY_DAYS
    assert any(float(h) > 0 for h in bars[:24]), "the last hour's requests are drawn"
    assert any(float(h) > 0 for h in bars[24:]), "the recent days' hours are drawn"
    assert "daily limit pace: 90/h" in text  # 2,400/day less the 10 % margin, over 24 h
    assert "window filters on" in text


def test_the_page_needs_nothing_from_outside_and_runs_no_script(mirror):
    _path, config, store = mirror
    html = status_page.build(config, store, now=NOW)
    assert "<script" not in html.lower()
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<link" not in html.lower()
    assert 'name="viewport"' in html


def test_no_secret_reaches_the_page_even_inside_an_error_text(mirror):
    _path, config, store = mirror
    run = store.start_run("poll", "2026-01-01T00:00:00Z")
    store.finish_run(
        run,
        RunReport(
            kind="poll",
            started_at="2026-01-01T00:00:00Z",
            ok=False,
            error=f"ResponseError: key {KEY} refused at /hooks/AbCdEfGhIjKlMnOp1234",
        ),
    )
    html = status_page.build(config, store, now=NOW, token="tok-secret-token-value")
    assert KEY not in html
    assert SECRET not in html
    assert "AbCdEfGhIjKlMnOp1234" not in html
    assert status_page.MASK in html


@pytest.mark.e2e
def test_status_html_writes_the_page_for_cron(mirror, tmp_path):
    path, _config_obj, store = mirror
    store.close()
    out = tmp_path / "page.html"
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "-c", str(path), "status", "--html", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    html = out.read_text()
    assert "Acme &lt;b&gt;Engineering&lt;/b&gt;" in html
    assert "<svg" in html
    assert KEY not in html


@pytest.mark.e2e
def test_status_html_into_a_missing_directory_names_the_problem(mirror, tmp_path):
    path, _config_obj, _store = mirror
    out = tmp_path / "nowhere" / "page.html"
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "-c", str(path), "status", "--html", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert f"cannot write the status page to {out}" in done.stderr
    assert "No such file or directory" in done.stderr


@pytest.mark.e2e
def test_status_html_without_a_mirror_creates_none(tmp_path):
    path, _config_obj = _config(tmp_path, tmp_path / "absent.sqlite")
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "-c", str(path), "status", "--html", "p.html"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert not (tmp_path / "absent.sqlite").exists()
    assert not (tmp_path / "p.html").exists()


def test_an_error_followed_by_a_success_is_kept_but_no_longer_current():
    error_at = 1_796_378_400.0  # 2026-12-04T10:00:00Z

    def health(last_success: float | None, last_error_at: float | None) -> Health:
        return Health(
            reason=None,
            now=error_at + 600,
            started_at=error_at - 600,
            last_success=last_success,
            last_error="RateLimited: 429" if last_error_at else None,
            last_error_at=last_error_at,
            failures_in_row=0,
            stale_after=300.0,
            pending_refresh_windows=0,
            stopping=False,
            jobs={},
        )

    later_success = health(error_at + 300, error_at).as_json()
    assert later_success["last_error"] == "RateLimited: 429"
    assert later_success["last_error_at"] == "2026-12-04T10:00:00.000Z"
    assert later_success["last_error_current"] is False
    assert health(error_at - 300, error_at).as_json()["last_error_current"] is True
    assert health(None, error_at).as_json()["last_error_current"] is True
    assert health(error_at, None).as_json()["last_error_current"] is False


def test_each_tier_says_how_long_ago_it_was_all_verified(mirror):
    _path, config, store = mirror
    two_hours_ago = (NOW - timedelta(hours=2, minutes=5)).isoformat().replace("+00:00", "Z")
    store.set_setting("freshness", json.dumps({"ws-1": {"hot": None, "warm": two_hours_ago}}))
    text = _text(status_page.build(config, store, now=NOW))
    assert "hot (recent days) verified not yet" in text
    assert re.search(r"warm \(recent weeks\) verified 2 h [56] min ago", text)
