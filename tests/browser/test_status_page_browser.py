"""The status page as a person sees it: headless Debian chromium driven by Playwright.

The daemon runs as a real process against the bundled emulator; the page is opened at its
listener and as the file ``syncd status --html`` writes. A screenshot of each is written
under the test's tmp dir and its path printed. Without ``/usr/bin/chromium`` the tests skip
(``make install`` installs it), except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.daemon import DaemonProc, start_emulator

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LONG_KEY = "tt-live-key-browser-7a6b5c4d3e2f1a0b"
SECRET = "webhook-signing-secret-browser-1234"


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing in CI; `make install` installs it")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium); browser test skipped")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def daemon(tmp_path: Path):
    emu = start_emulator(keys=(LONG_KEY,), entries=400, days=60, log_path=tmp_path / "emulator.log")
    emu.api_key = LONG_KEY
    proc = DaemonProc(emu, tmp_path / "daemon", overrides={"webhooks": {"secret": SECRET}})
    try:
        yield proc.start()
    finally:
        proc.kill()
        emu.stop()


def _workspaces(db_path: Path) -> dict[str, int]:
    import sqlite3

    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        return dict(
            db.execute(
                "SELECT w.name, COUNT(e.id) FROM workspaces AS w LEFT JOIN time_entries AS e "
                "ON e.workspace_id = w.id AND e.deleted_at IS NULL GROUP BY w.id"
            ).fetchall()
        )


def _check_what_a_person_sees(page, daemon: DaemonProc, secrets: tuple[str, ...]) -> None:
    counts = _workspaces(daemon.db_path)
    assert len(counts) == 2
    cards = page.locator("section.workspace")
    assert cards.count() == 2
    for i in range(cards.count()):
        card = cards.nth(i)
        name = card.locator("h3").inner_text()
        assert name in counts
        assert card.locator("dd.entries").inner_text() == f"{counts[name]:,}"
    charts = page.locator("svg.chart")
    assert charts.count() == 2
    for i in range(2):
        box = charts.nth(i).bounding_box()
        assert box is not None
        assert box["width"] > 200
        assert box["height"] > 50
    assert page.locator("svg.requests rect").count() == 24
    visible = page.locator("body").inner_text()
    assert "Requests over the last 24 hours" in visible
    assert "Hours per day" in visible
    assert re.search(r"\d+ requests in 24 h", visible)
    for secret in secrets:
        assert secret not in visible
        assert secret not in page.content()


def test_the_status_page_in_a_browser(browser, daemon: DaemonProc, tmp_path: Path, capsys):
    token = (daemon.workdir / "mirror.sqlite.webhook-token").read_text().strip()
    secrets = (LONG_KEY, SECRET, token)
    scripts: list[str] = []
    requests: list[str] = []

    phone = browser.new_page(viewport={"width": 390, "height": 844})
    phone.on("request", lambda r: requests.append(r.url))
    phone.on("console", lambda m: scripts.append(m.text))
    phone.goto(f"{daemon.base_url}/")
    _check_what_a_person_sees(phone, daemon, secrets)
    assert "Daemon: ok" in phone.locator("body").inner_text()
    assert requests == [f"{daemon.base_url}/"], "the page loads nothing else"
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px phone"
    shot = tmp_path / "status-page-phone.png"
    phone.screenshot(path=str(shot), full_page=True)
    with capsys.disabled():  # the path belongs in the test output, passed or not
        print(f"\nscreenshot: {shot}")
    assert shot.stat().st_size > 10_000

    out = tmp_path / "status.html"
    done = subprocess.run(
        daemon.command("status", "--html", str(out)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    desktop = browser.new_page(viewport={"width": 1280, "height": 900}, java_script_enabled=False)
    desktop.goto(out.as_uri())
    _check_what_a_person_sees(desktop, daemon, secrets)
    shot = tmp_path / "status-page-file.png"
    desktop.screenshot(path=str(shot), full_page=True)
    with capsys.disabled():
        print(f"screenshot: {shot}")
