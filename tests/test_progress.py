"""The terminal progress of a sync: history covered and left, entries, requests, budget waits
in words; nothing at all when stderr is not a terminal."""

from __future__ import annotations

import io
import os
import select
from datetime import date

import pytest

from syncd.cli.progress import SyncProgress
from syncd.records import Source
from syncd.sync import ScanProgress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def backfill(date_from: str | None, date_to: str, entries: int, ws: str = "ws-1") -> ScanProgress:
    return ScanProgress(ws, Source.BACKFILL, date_from, date_to, entries)


def test_history_covered_and_left_as_dates_and_a_share() -> None:
    progress = SyncProgress(enabled=False, history_start=date(2026, 1, 1))
    progress.window(ScanProgress("ws-1", Source.POLL, "2026-11-20", "2026-12-04", 40))
    progress.window(backfill("2026-07-01", "2026-11-19", 1200))
    progress.window(backfill("2026-03-15", "2026-06-30", 900))
    for _ in range(7):
        progress.outcome("ok")
    assert progress.lines() == [
        "ws-1: history covered 2026-03-15..2026-11-19 (77 %), 2026-01-01..2026-03-15 left, "
        "2,140 entries",
        "7 requests used",
    ]


def test_the_time_left_follows_the_pace_so_far() -> None:
    clock = Clock()
    progress = SyncProgress(enabled=False, history_start=date(2026, 1, 1), clock=clock)
    clock.now += 30  # 30 s for the newest half of the history ...
    progress.window(backfill("2026-06-16", "2026-11-30", 900))
    (line, _footer) = progress.lines()
    assert line.endswith("left, about 30 s to go, 900 entries"), line  # ... 30 s for the rest


def test_without_a_known_start_the_share_waits_for_the_end_and_the_open_window_is_named() -> None:
    progress = SyncProgress(enabled=False)
    progress.window(backfill("2026-07-01", "2026-11-19", 10))
    assert progress.lines()[0] == (
        "ws-1: history covered 2026-07-01..2026-11-19, older left (its start is found at the "
        "end), 10 entries"
    )
    progress.window(backfill(None, "2026-06-30", 5))  # the open-ended last window
    assert progress.lines()[0] == "ws-1: history covered to 2026-11-19 (100 %), 15 entries"


async def test_a_long_budget_wait_says_what_it_waits_for_and_how_long() -> None:
    clock = Clock()
    progress = SyncProgress(enabled=False, clock=clock)
    seen: list[str] = []

    async def sleep(seconds: float) -> None:
        step = min(4.0, seconds)
        clock.now += step
        seen.append(progress.lines()[-1])
        clock.now += seconds - step

    waiting = progress.budget_sleep(sleep)
    progress.outcome("ok")
    await waiting(0.3)  # per-second pacing: not shown
    await waiting(27)
    assert seen == [
        "1 request used",
        "1 request used · waiting for the per-minute limit, 23 s",
    ]
    assert progress.lines()[-1] == "1 request used"  # gone once the wait is over
    progress.outcome("rate_limited")
    await waiting(10)
    assert seen[-1] == "2 requests used · waiting out upstream's 429, 6 s"


def test_nothing_is_drawn_when_stderr_is_not_a_terminal() -> None:
    stream = io.StringIO()
    with SyncProgress(stream=stream) as progress:
        assert not progress.enabled
        progress.window(backfill("2026-07-01", "2026-11-19", 10))
    assert stream.getvalue() == ""


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_a_terminal_sees_the_workspace_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    leader, follower = os.openpty()
    stream = os.fdopen(follower, "w", encoding="utf-8")
    try:
        with SyncProgress(stream=stream) as progress:
            assert progress.enabled
            progress.window(backfill("2026-07-01", "2026-11-19", 1234))
        stream.flush()
        drawn = b""
        while select.select([leader], [], [], 0.5)[0]:
            chunk = os.read(leader, 65536)
            if not chunk:
                break
            drawn += chunk
    finally:
        stream.close()
        os.close(leader)
    assert b"ws-1: history covered 2026-07-01..2026-11-19" in drawn
    assert b"1,234 entries" in drawn
