"""Backfill windows sized by the budget: they grow while answers come back fast and complete
(fewer, larger requests) up to ``window_max_entries``, and shrink on slow or oversized ones.

The time an answer takes comes from an injected timer that the fake upstream moves on.
"""

from __future__ import annotations

from pathlib import Path

from syncd.records import Priority, RunReport
from syncd.store import AsyncStore
from syncd.sync import SyncEngine, SyncSettings

from . import mirror_rows as mirror
from .fakes import Clock, FakeUpstream, FindCall, days_back

PER_DAY, DAYS = 10, 400


class Timer:
    """Seconds that pass only when an answer is sent: ``per_answer`` each."""

    def __init__(self, per_answer: float) -> None:
        self.now = 0.0
        self.per_answer = per_answer

    def __call__(self) -> float:
        return self.now

    def answered(self, _call: FindCall) -> None:
        self.now += self.per_answer


async def backfill(
    upstream: FakeUpstream, clock: Clock, path: Path, seconds_per_answer: float
) -> list[int]:
    """A first sync of the whole history; the sizes of its backfill answers."""
    timer = Timer(seconds_per_answer)
    upstream.on_find = timer.answered
    upstream.reset_counts()
    settings = SyncSettings.from_config(
        history_start=clock.days_ago(DAYS),
        window_target_entries=50,
        window_max_entries=800,
    )
    async with await AsyncStore.open(path) as store:
        engine = SyncEngine(upstream, store, settings, clock=clock, timer=timer)
        await engine.run_once(RunReport(kind="once", started_at=clock.stamp()))
    assert mirror.live(path) == mirror.expected(upstream.entries)
    return [f.returned or 0 for f in upstream.finds if f.priority is Priority.BACKFILL]


async def test_fast_answers_grow_the_windows_slow_ones_keep_them_small(
    upstream: FakeUpstream, clock: Clock, tmp_path: Path
) -> None:
    for offset in range(DAYS + 1):
        upstream.add_many(days_back(clock.today(), *[offset] * PER_DAY))

    fast = await backfill(upstream, clock, tmp_path / "fast.sqlite", 0.2)
    slow = await backfill(upstream, clock, tmp_path / "slow.sqlite", 15.0)

    # Fast: the aim doubles up to window_max_entries; the history takes a handful of
    # requests instead of one per 50 entries, and no answer passes the memory bound by more
    # than the two days of overlap a request carries.
    assert max(fast) > 400
    assert max(fast) <= 800 + 2 * PER_DAY
    assert len(fast) < len(slow) / 4
    # Slow: every answer took longer than SLOW_SECONDS: the aim never grows past the target.
    assert max(slow[1:]) <= 50 + 3 * PER_DAY
