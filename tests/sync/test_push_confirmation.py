"""A push no scan has confirmed is re-scanned by the next poll of its workspace's holder,
whichever instance received it and whether or not its refresh ever ran (fake upstream, real
SQLite shared by two engines)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from syncd.records import Priority, RunReport
from syncd.seams import WorkLeases
from syncd.store import AsyncStore
from syncd.sync import PUSH_WINDOWS_PER_POLL, SyncEngine, SyncSettings

from . import mirror_rows as mirror
from .fakes import Clock, FakeUpstream


class Elsewhere:
    """``WorkLeases`` of an instance whose every workspace another one holds."""

    async def claim(self, workspace_ids: Sequence[str]) -> list[str]:
        return []

    async def renew(self, workspace_id: str) -> bool:
        return False


def make_engine(
    upstream: FakeUpstream,
    store: AsyncStore,
    clock: Clock,
    leases: WorkLeases | None = None,
    **settings: object,
) -> SyncEngine:
    # The window field pinned to the date (unless a test says otherwise): the hot scans leave
    # no entry undecided, whose verification would confirm old pushes too.
    settings = {"history_start": clock.days_ago(120), "window_field": "date", **settings}
    return SyncEngine(
        upstream, store, SyncSettings.from_config(**settings), clock=clock, leases=leases
    )


def report(clock: Clock, kind: str = "poll") -> RunReport:
    return RunReport(kind=kind, started_at=clock.stamp())


def pushed_windows(upstream: FakeUpstream) -> list[tuple[str | None, str | None]]:
    return [(f.date_from, f.date_to) for f in upstream.finds if f.priority is Priority.PUSH]


async def received_elsewhere(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, **settings: object
) -> None:
    """Deliver every push upstream sent so far to an instance holding no workspace: it
    applies them, and its refresh scans nothing."""
    other = make_engine(upstream, store, clock, Elsewhere(), **settings)
    await other.refresh_workspaces(report(clock, "push"))
    windows = [w for e in upstream.events for w in (await other.apply_event(e))[1]]
    upstream.events.clear()
    await other.refresh(windows, report(clock, "push"))
    assert pushed_windows(upstream) == []


async def test_an_old_push_received_elsewhere_and_deleted_since_is_tombstoned_by_the_next_poll(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    kept = upstream.add(clock.days_ago(1))
    holder = make_engine(upstream, store, clock)
    await holder.run_once(report(clock, "once"))
    upstream.events.clear()
    entry = upstream.add(clock.days_ago(40))
    await received_elsewhere(upstream, store, clock)
    assert mirror.live(db_path) == mirror.expected([kept, entry])

    upstream.delete(entry.id)
    clock.advance(minutes=15)
    upstream.reset_counts()
    polled = await holder.poll(report(clock))

    assert mirror.live(db_path) == mirror.expected([kept])
    # its date (its creation day is hot), then around it: an empty answer is asked again
    assert pushed_windows(upstream)[0] == (entry.date, entry.date)
    assert all(f <= entry.date <= t for f, t in pushed_windows(upstream))  # type: ignore[operator]
    assert polled.confirmed_pushes == 1
    assert polled.outcome.tombstoned == 1


async def test_a_push_confirmed_unchanged_costs_the_next_poll_nothing(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    holder = make_engine(upstream, store, clock)
    await holder.run_once(report(clock, "once"))
    entry = upstream.add(clock.days_ago(30))
    inside = upstream.add(clock.days_ago(1))  # in the hot window: its scan confirms it
    await received_elsewhere(upstream, store, clock)
    clock.advance(minutes=15)
    upstream.reset_counts()

    first = await holder.poll(report(clock))
    assert pushed_windows(upstream) == [(entry.date, entry.date)]
    assert first.confirmed_pushes == 1
    assert first.outcome.updated == 0
    assert first.outcome.tombstoned == 0
    assert mirror.row(db_path, entry.id)["source"] == "push_rescan"
    assert mirror.row(db_path, inside.id)["source"] == "poll"

    clock.advance(minutes=15)
    upstream.reset_counts()
    second = await holder.poll(report(clock))
    assert pushed_windows(upstream) == []
    assert second.confirmed_pushes == 0
    assert upstream.find_calls == 1  # the hot window alone
    assert mirror.live(db_path) == mirror.expected(upstream.entries)


async def test_a_poll_rescans_a_few_windows_of_pushes_the_earliest_received_first(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """Adjacent days share a window; past the cap, the later pushes wait for the next poll;
    ``run_once`` confirms them too."""
    holder = make_engine(upstream, store, clock)
    await holder.run_once(report(clock, "once"))
    for n in (20, 50, 49, 45, 40, 35, 30):
        upstream.add(clock.days_ago(n))
    await received_elsewhere(upstream, store, clock)
    clock.advance(minutes=15)
    upstream.reset_counts()
    assert PUSH_WINDOWS_PER_POLL == 4

    first = await holder.poll(report(clock))
    days = [clock.days_ago(n) for n in (50, 49, 45, 40, 20)]
    assert pushed_windows(upstream) == [
        (days[0], days[1]),
        (days[2], days[2]),
        (days[3], days[3]),
        (days[4], days[4]),
    ]
    assert first.confirmed_pushes == 4

    upstream.reset_counts()
    second = await holder.run_once(report(clock, "once"))
    assert pushed_windows(upstream) == [(clock.days_ago(35),) * 2, (clock.days_ago(30),) * 2]
    assert second.confirmed_pushes == 2

    upstream.reset_counts()
    await holder.poll(report(clock))
    assert pushed_windows(upstream) == []
    assert mirror.live(db_path) == mirror.expected(upstream.entries)


@pytest.mark.parametrize(("window_field", "creation_day_too"), [("auto", True), ("date", False)])
async def test_the_creation_day_is_rescanned_unless_the_date_is_proven_the_window_field(
    upstream: FakeUpstream,
    store: AsyncStore,
    clock: Clock,
    window_field: str,
    creation_day_too: bool,
) -> None:
    holder = make_engine(upstream, store, clock, window_field=window_field)
    await holder.run_once(report(clock, "once"))
    entry = upstream.add(clock.days_ago(60))
    await received_elsewhere(upstream, store, clock, window_field=window_field)
    created = clock.days_ago(0)
    clock.advance(days=20)  # the creation day has left the hot window
    upstream.reset_counts()

    await holder.poll(report(clock))

    expected = [(entry.date, entry.date)]
    if creation_day_too:
        expected.append((created, created))
    assert pushed_windows(upstream) == expected
