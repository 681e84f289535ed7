"""The sync engine against an in-memory upstream and the real SQLite store.

Each test states behaviour a user of the mirror would notice: what ends up in the database,
how many requests it cost, and what survives a failure or a stop.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from syncd.errors import MassDeleteError, ServerError, ShutdownRequested, TransportError
from syncd.records import EventKind, Priority, Ref, RunReport, Source
from syncd.shutdown import Shutdown
from syncd.store import AsyncStore
from syncd.sync import ScanProgress, SyncEngine, SyncSettings

from . import mirror_rows as mirror
from .fakes import WS, Clock, FakeUpstream, FindCall, days_back, push_of


def make_engine(upstream: FakeUpstream, store: AsyncStore, clock: Clock, **settings) -> SyncEngine:
    return SyncEngine(upstream, store, SyncSettings.from_config(**settings), clock=clock)


async def run_once(engine: SyncEngine, clock: Clock) -> RunReport:
    return await engine.run_once(RunReport(kind="once", started_at=clock.stamp()))


def report(clock: Clock, kind: str = "once") -> RunReport:
    return RunReport(kind=kind, started_at=clock.stamp())


def finds(upstream: FakeUpstream, priority: Priority) -> list[FindCall]:
    return [f for f in upstream.finds if f.priority is priority and f.returned is not None]


def when(scan: mirror.Scan) -> datetime:
    return datetime.strptime(scan.scanned_at, "%Y-%m-%dT%H:%M:%S.%f%z")


# ---------------------------------------------------------------------------- first runs


async def test_first_run_mirrors_every_entry_field_by_field(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """A first ``run_once`` leaves the mirror equal to upstream, in every workspace."""
    upstream.add_workspace("ws-2")
    today = clock.today()
    upstream.add_many(days_back(today, 0, 1, 5, 40, 41, 200, 390), description="café ☕")
    upstream.add_many(days_back(today, 2, 70, 300), workspace_id="ws-2", manual=True)
    upstream.add(clock.days_ago(0), running=True, tags=(Ref("t-1", "deep work"),))

    result = await run_once(make_engine(upstream, store, clock), clock)

    assert mirror.live(db_path) == mirror.expected(upstream.entries)
    assert result.outcome.inserted == len(upstream.entries)
    assert result.workspaces == 2
    state = await store.workspace_state(WS)
    assert state.backfill_complete


async def test_second_run_without_changes_costs_a_list_and_a_hot_scan(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """With nothing changed upstream, a repeat ``--once`` spends exactly: one workspace list,
    and one hot-window scan per workspace: no older window is due for re-verification yet."""
    upstream.add_workspace("ws-2")
    today = clock.today()
    upstream.add_many(days_back(today, *range(0, 60, 3)))
    upstream.add_many(days_back(today, *range(1, 60, 7)), workspace_id="ws-2")
    engine = make_engine(upstream, store, clock, history_start=clock.days_ago(90))
    await run_once(engine, clock)
    before = mirror.live(db_path)
    upstream.reset_counts()

    clock.advance(minutes=15)
    result = await run_once(engine, clock)

    # The backfill verified every window a quarter of an hour ago: no sweep window is due.
    assert upstream.calls == {"list_workspaces": 1, "find_time_entries": 2}
    assert upstream.priorities == {Priority.HOT: 3}
    hot = finds(upstream, Priority.HOT)
    assert sorted(f.workspace_id for f in hot) == [WS, "ws-2"]
    assert mirror.live(db_path) == before
    outcome = result.outcome
    assert outcome.inserted == outcome.updated == outcome.tombstoned == outcome.revived == 0


async def test_dense_period_is_fetched_in_more_smaller_windows_under_the_response_cap(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """Busy weeks are fetched in small windows so no response grows past the cap (after the
    first window has shown how dense the data is); quiet months in large ones."""
    today = clock.today()
    for offset in range(60):  # 30 entries a day for two months ...
        upstream.add_many(days_back(today, *[offset] * 30))
    upstream.add_many(days_back(today, *range(60, 400, 5)))  # ... then one every 5 days
    engine = make_engine(
        upstream,
        store,
        clock,
        history_start=clock.days_ago(400),
        window_target_entries=100,
        window_max_entries=200,
    )

    await run_once(engine, clock)

    backfill = finds(upstream, Priority.BACKFILL)
    assert all(f.returned <= 200 for f in backfill[1:]), [f.returned for f in backfill]
    dense_from = clock.days_ago(59)

    def width(f: FindCall) -> int:
        return (date.fromisoformat(f.date_to) - date.fromisoformat(f.date_from)).days + 1

    dense = [width(f) for f in backfill if f.date_from >= dense_from]
    sparse = [width(f) for f in backfill if f.date_to < dense_from]
    # two busy months: many windows of a few days; eleven quiet months: a handful of
    # windows growing to the 92-day maximum
    assert len(dense) >= 15
    assert max(dense[1:]) <= 4
    assert len(sparse) <= 7
    assert max(sparse) == 92
    assert mirror.live(db_path) == mirror.expected(upstream.entries)


async def test_first_backfill_window_is_sized_from_the_hot_window(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """The first backfill window already holds about the target: its size comes from how
    many entries the hot window held, not from a small fixed start grown step by step."""
    today = clock.today()
    for offset in range(300):  # 10 entries a day
        upstream.add_many(days_back(today, *[offset] * 10))
    engine = make_engine(
        upstream, store, clock, history_start=clock.days_ago(299), window_target_entries=200
    )

    await run_once(engine, clock)

    backfill = finds(upstream, Priority.BACKFILL)
    assert 150 <= backfill[0].returned <= 250, [f.returned for f in backfill]
    # 2,970 entries below the hot window at about 200 a window
    assert len(backfill) <= math.ceil(2970 / 200) + 1, [f.returned for f in backfill]
    assert mirror.live(db_path) == mirror.expected(upstream.entries)


async def test_sparse_history_backfills_in_few_requests(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """Two years with an entry every two months cost about one request per 92-day window."""
    today = clock.today()
    upstream.add_many(days_back(today, *range(0, 730, 60)))
    engine = make_engine(upstream, store, clock, history_start=clock.days_ago(730))

    await run_once(engine, clock)

    backfill = finds(upstream, Priority.BACKFILL)
    assert len(backfill) <= math.ceil(730 / 92) + 3, [(f.date_from, f.date_to) for f in backfill]
    assert upstream.find_calls <= len(backfill) + 2  # + the hot scan and a reconcile slice
    assert mirror.live(db_path) == mirror.expected(upstream.entries)


async def test_history_start_bounds_the_backfill(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """Entries dated before ``history_start`` are never requested and never mirrored."""
    today = clock.today()
    start = clock.days_ago(100)
    kept = upstream.add_many(days_back(today, 3, 50, 100))
    upstream.add_many(days_back(today, 101, 150, 900))

    await run_once(make_engine(upstream, store, clock, history_start=start), clock)

    assert mirror.live(db_path) == mirror.expected(kept)
    assert all(f.date_from is not None and f.date_from >= start for f in upstream.finds)
    state = await store.workspace_state(WS)
    assert state.backfill_complete
    assert state.oldest_date == start


async def test_old_isolated_entry_is_found_by_the_open_ended_probe(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """Without ``history_start``, an entry three years back after a long quiet gap is still
    mirrored: once nothing turns up for a while, one open-ended request asks for the rest."""
    today = clock.today()
    upstream.add_many(days_back(today, 1, 10, 20))
    (ancient,) = upstream.add_many(days_back(today, 3 * 365))

    await run_once(make_engine(upstream, store, clock), clock)

    assert mirror.live(db_path) == mirror.expected(upstream.entries)
    backfill = finds(upstream, Priority.BACKFILL)
    assert backfill[-1].date_from is None
    assert backfill[-1].returned == 1
    assert len(backfill) <= 6
    state = await store.workspace_state(WS)
    assert state.backfill_complete
    assert state.oldest_date == ancient.date


async def test_entry_backdated_after_the_backfill_is_found_by_the_sweep(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """An entry added later but dated before everything the backfill found (an import of
    old timesheets) reaches the mirror within one reconciliation period."""
    today = clock.today()
    upstream.add_many(days_back(today, *range(0, 200, 10)))
    engine = make_engine(upstream, store, clock, interval_seconds=86400, reconcile_period_hours=168)
    await run_once(engine, clock)
    upstream.add(clock.days_ago(800))

    for _ in range(7):
        clock.advance(days=1)
        await run_once(engine, clock)

    assert mirror.live(db_path) == mirror.expected(upstream.entries)


async def test_backdated_entry_is_found_when_every_known_entry_is_hot(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """A workspace whose whole known history lies in the hot window (a young one, or one
    whose older entries were all deleted) still gets the once-per-period probe below the hot
    window, so an entry added there later reaches the mirror, at one request per period."""
    today = clock.today()
    upstream.add_many(days_back(today, 0, 0, 1))
    engine = make_engine(
        upstream, store, clock, hot_window_days=3, interval_seconds=3600,
        reconcile_period_hours=24,
    )  # fmt: skip
    await run_once(engine, clock)  # the backfill, which ends with its own probe below
    assert len(finds(upstream, Priority.RECONCILE)) == 0
    clock.advance(hours=1)
    await run_once(engine, clock)
    assert len(finds(upstream, Priority.RECONCILE)) == 0  # the backfill's probe counts
    clock.advance(hours=22)
    await run_once(engine, clock)
    assert len(finds(upstream, Priority.RECONCILE)) == 1  # the probe below the hot window
    clock.advance(hours=1)
    await run_once(engine, clock)
    assert len(finds(upstream, Priority.RECONCILE)) == 1  # not again within the period

    upstream.add(clock.days_ago(5))
    for _ in range(7):
        clock.advance(days=1)
        await run_once(engine, clock)
    assert mirror.live(db_path) == mirror.expected(upstream.entries)


# ---------------------------------------------------------------------------- reconciliation


async def test_reconcile_sweep_reverifies_all_history_within_the_period(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """Run at ``interval_seconds`` cadence, the sweep re-scans every date of history within
    ``reconcile_period_hours``, and no date goes unverified for longer than the period."""
    interval, period_days = 3600, 2
    today = clock.today()
    upstream.add_many(days_back(today, *range(0, 365, 9)))
    engine = make_engine(
        upstream, store, clock, interval_seconds=interval, reconcile_period_hours=period_days * 24
    )
    await run_once(engine, clock)
    state = await store.workspace_state(WS)
    oldest = date.fromisoformat(state.oldest_date)
    first_top = clock.today() - timedelta(days=3)  # the newest date outside the hot window
    started = clock.now
    period = timedelta(days=period_days)

    while clock.now < started + 2 * period:
        clock.advance(seconds=interval)
        await run_once(engine, clock)

    scans = mirror.scans(db_path)
    in_first_period = [
        s for s in scans if s.source == Source.RECONCILE and started < when(s) <= started + period
    ]
    history = [oldest + timedelta(days=n) for n in range((first_top - oldest).days + 1)]
    unswept = [d for d in history if not any(s.covers(d.isoformat()) for s in in_first_period)]
    assert unswept == []

    end = clock.now
    for day in history:
        times = sorted(when(s) for s in scans if s.covers(day.isoformat()))
        gaps = [b - a for a, b in zip(times, [*times[1:], end], strict=True)]
        assert max(gaps) <= period + timedelta(seconds=1), day


async def test_silent_old_edit_and_delete_reach_the_mirror_within_the_period(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """An edit and a delete of entries from most of a year ago, made without any webhook,
    show up in the mirror within ``reconcile_period_hours`` of daily runs."""
    today = clock.today()
    entries = upstream.add_many(days_back(today, *range(0, 400, 4)))
    engine = make_engine(upstream, store, clock, interval_seconds=86400, reconcile_period_hours=120)
    await run_once(engine, clock)
    edited = upstream.edit(entries[80].id, description="fixed typo")
    deleted = upstream.delete(entries[60].id)

    for _ in range(5):
        clock.advance(days=1)
        await run_once(engine, clock)

    assert mirror.live(db_path) == mirror.expected(upstream.entries)
    assert mirror.row(db_path, edited.id)["description"] == "fixed typo"
    assert mirror.row(db_path, deleted.id)["deleted_at"] is not None


# ---------------------------------------------------------------------------- tombstones


async def test_deleted_entry_is_tombstoned_not_removed(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """An entry deleted upstream stays in the table with ``deleted_at`` set (and its last
    content), and leaves the live set."""
    today = clock.today()
    keep, gone = upstream.add_many(days_back(today, 0, 1), description="standup")
    engine = make_engine(upstream, store, clock, history_start=clock.days_ago(30))
    await run_once(engine, clock)
    upstream.delete(gone.id)

    clock.advance(minutes=15)
    result = await run_once(engine, clock)

    assert result.outcome.tombstoned == 1
    assert set(mirror.live(db_path)) == {keep.id}
    row = mirror.row(db_path, gone.id)
    assert row is not None
    assert row["deleted_at"] is not None
    assert row["description"] == "standup"


@pytest.mark.parametrize("order", ["old date first", "new date first"])
async def test_entry_moved_to_another_window_ends_live_with_its_new_date(
    order: str, upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """Moving an entry's date into another window leaves it live with the new date, whichever
    of the two windows is scanned first (a scan of the old window may tombstone it; the scan
    of the new one revives it)."""
    old_day, new_day = clock.days_ago(200), clock.days_ago(100)
    moving = upstream.add(old_day)
    engine = make_engine(upstream, store, clock, history_start=clock.days_ago(365))
    await run_once(engine, clock)
    moved = upstream.edit(moving.id, date=new_day)

    days = [old_day, new_day] if order == "old date first" else [new_day, old_day]
    for day in days:
        await engine.refresh([(WS, day)], report(clock, "push"))

    assert mirror.live(db_path) == mirror.expected([moved])
    assert mirror.row(db_path, moved.id)["date"] == new_day


# ---------------------------------------------------------------------------- mass delete


async def test_mass_delete_guard_refuses_and_writes_nothing_unless_forced(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """A scan that would tombstone most of a workspace stops with ``MassDeleteError`` and
    leaves the mirror as it was; ``force_delete`` applies it."""
    today = clock.today()
    entries = upstream.add_many(days_back(today, *[0] * 20))
    settings = {"history_start": clock.days_ago(30), "mass_delete_share": 0.5}
    await run_once(make_engine(upstream, store, clock, **settings), clock)
    before_rows, before_scans = mirror.live(db_path), mirror.scans(db_path)
    for e in entries[:15]:
        upstream.delete(e.id)

    clock.advance(minutes=15)
    with pytest.raises(MassDeleteError) as refused:
        await run_once(make_engine(upstream, store, clock, **settings), clock)

    assert (refused.value.would_delete, refused.value.live) == (15, 20)
    assert mirror.live(db_path) == before_rows
    assert mirror.scans(db_path) == before_scans

    await run_once(make_engine(upstream, store, clock, **settings, force_delete=True), clock)
    assert mirror.live(db_path) == mirror.expected(upstream.entries)
    assert len(mirror.tombstones(db_path)) == 15


# ---------------------------------------------------------------------------- failures, stops


@pytest.mark.parametrize("fault", [ServerError, TransportError])
async def test_failure_mid_backfill_keeps_committed_windows_and_resumes_without_refetching(
    fault: type, upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """When upstream fails on the 5th request of a backfill, the windows already fetched stay
    in the mirror; the next run finishes the backfill without asking for them again and ends
    with the same mirror as an uninterrupted run."""
    today = clock.today()
    upstream.add_many(days_back(today, *range(0, 700, 2)))
    settings = {"history_start": clock.days_ago(700), "window_target_entries": 20}
    if fault is ServerError:
        upstream.fail_find(5)
    else:
        upstream.fail_transport(5)

    with pytest.raises(fault):
        await run_once(make_engine(upstream, store, clock, **settings), clock)

    committed = mirror.scans(db_path)
    assert len(committed) == 4  # the hot window and three backfill windows
    state = await store.workspace_state(WS)
    assert not state.backfill_complete
    assert state.backfill_before == min(s.date_from for s in committed)
    mirrored = mirror.live(db_path)
    assert mirrored == mirror.expected(
        e for e in upstream.entries.values() if e.date >= state.backfill_before
    )
    fetched = finds(upstream, Priority.BACKFILL)
    upstream.reset_counts()

    await run_once(make_engine(upstream, store, clock, **settings), clock)

    again = finds(upstream, Priority.BACKFILL)
    assert again
    assert all(f.date_to < min(done.date_from for done in fetched) for f in again)
    assert mirror.live(db_path) == mirror.expected(upstream.entries)
    assert (await store.workspace_state(WS)).backfill_complete


async def test_stop_request_commits_the_window_in_flight_then_raises(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """A stop signal arriving while the 3rd request is in flight: that window is still
    committed, nothing more is requested, and ``ShutdownRequested`` is raised; the next
    run carries on from there."""
    today = clock.today()
    upstream.add_many(days_back(today, *range(0, 500, 3)))
    shutdown = Shutdown()
    windows: list[ScanProgress] = []

    def signal_during_third_request(call: FindCall) -> None:
        if upstream.find_calls == 3:
            shutdown.request()

    upstream.on_find = signal_during_third_request
    settings = SyncSettings.from_config(history_start=clock.days_ago(500), window_target_entries=10)
    engine = SyncEngine(
        upstream,
        store,
        settings,
        clock=clock,
        shutdown=shutdown,
        on_window=windows.append,
    )

    with pytest.raises(ShutdownRequested):
        await run_once(engine, clock)

    assert upstream.find_calls == 3
    assert len(windows) == 3
    assert len(mirror.scans(db_path)) == 3
    third = windows[-1]
    assert third.entries > 0
    assert {
        e.id for e in upstream.entries.values() if third.date_from <= e.date <= third.date_to
    } <= set(mirror.live(db_path))

    upstream.on_find = None
    await run_once(SyncEngine(upstream, store, settings, clock=clock), clock)
    assert mirror.live(db_path) == mirror.expected(upstream.entries)


async def test_workspaces_are_synced_side_by_side(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """With two workspaces, requests for both are in flight at once (the budget, not the
    round trips of one workspace after the other, sets the pace), and the mirror ends equal
    to upstream."""
    upstream.add_workspace("ws-2")
    today = clock.today()
    for workspace_id in (WS, "ws-2"):
        upstream.add_many(days_back(today, *range(0, 300, 3)), workspace_id=workspace_id)
    in_flight: set[str] = set()
    overlaps = 0

    async def slow_answer(call: FindCall) -> None:
        nonlocal overlaps
        in_flight.add(call.workspace_id)
        await asyncio.sleep(0.002)
        overlaps += len(in_flight) > 1
        in_flight.discard(call.workspace_id)

    upstream.while_answering = slow_answer
    settings = {"history_start": clock.days_ago(300), "window_target_entries": 10}

    await run_once(make_engine(upstream, store, clock, **settings), clock)

    assert overlaps > 0
    assert mirror.live(db_path) == mirror.expected(upstream.entries)


async def test_failure_in_one_workspace_stops_the_others_after_their_window_in_flight(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """When a request for one workspace fails, the other workspace commits the window it
    has in flight and sends nothing more; the run raises the upstream error, and the next
    run ends with the mirror equal to upstream."""
    upstream.add_workspace("ws-2")
    today = clock.today()
    for workspace_id in (WS, "ws-2"):
        upstream.add_many(days_back(today, *range(0, 300, 3)), workspace_id=workspace_id)
    started: list[str] = []
    failed_at: int | None = None

    def fail_third_backfill_of_ws2(call: FindCall) -> None:
        nonlocal failed_at
        started.append(call.workspace_id)
        if (
            failed_at is None
            and call.workspace_id == "ws-2"
            and call.priority is Priority.BACKFILL
            and sum(1 for f in upstream.finds if f.workspace_id == "ws-2") == 3
        ):
            failed_at = len(started)
            upstream.fail_find(0)  # this very call

    async def slow_answer(call: FindCall) -> None:
        await asyncio.sleep(0.002)

    upstream.on_find = fail_third_backfill_of_ws2
    upstream.while_answering = slow_answer
    settings = {"history_start": clock.days_ago(300), "window_target_entries": 10}

    with pytest.raises(ServerError):
        await run_once(make_engine(upstream, store, clock, **settings), clock)

    assert failed_at is not None
    assert started[failed_at:] == []  # nothing was sent after the failure
    answered_ws1 = [f for f in upstream.finds if f.workspace_id == WS and f.returned is not None]
    committed_ws1 = [s for s in mirror.scans(db_path) if s.workspace_id == WS]
    assert len(committed_ws1) == len(answered_ws1)  # its window in flight was committed too

    upstream.on_find = None
    await run_once(make_engine(upstream, store, clock, **settings), clock)
    assert mirror.live(db_path) == mirror.expected(upstream.entries)


# ---------------------------------------------------------------------------- running timers


async def test_running_timer_is_mirrored_with_null_end(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """A timer that is still running has NULL ``end_time`` and ``duration_seconds``."""
    timer = upstream.add(clock.days_ago(0), running=True)

    await run_once(make_engine(upstream, store, clock, history_start=clock.days_ago(10)), clock)

    row = mirror.row(db_path, timer.id)
    assert row is not None
    assert (row["end_time"], row["duration_seconds"], row["deleted_at"]) == (None, None, None)


async def test_running_timer_older_than_the_hot_window_is_rescanned_every_poll(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """A timer left running since ten days ago is re-read by its date on every poll, so the
    mirror notices as soon as it is stopped (and stops asking after that)."""
    old_day = clock.days_ago(10)
    timer = upstream.add(old_day, running=True)
    upstream.add_many(days_back(clock.today(), 0, 30))
    engine = make_engine(upstream, store, clock, history_start=clock.days_ago(60))
    await run_once(engine, clock)
    upstream.reset_counts()

    for _ in range(3):
        clock.advance(minutes=15)
        await engine.poll(report(clock, "poll"))
    rescans = [f for f in finds(upstream, Priority.HOT) if f.date_from == f.date_to == old_day]
    assert len(rescans) == 3

    stopped = upstream.stop(timer.id)
    clock.advance(minutes=15)
    await engine.poll(report(clock, "poll"))
    row = mirror.row(db_path, timer.id)
    assert (row["end_time"], row["duration_seconds"]) == (stopped.end_time, 1800)

    upstream.reset_counts()
    clock.advance(minutes=15)
    await engine.poll(report(clock, "poll"))
    assert [f.date_from for f in upstream.finds] == [clock.days_ago(2)]


# ---------------------------------------------------------------------------- pushes


async def test_pushes_apply_at_once_and_duplicates_are_recognised(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """A pushed entry is in the mirror without any request; the same delivery again is
    reported as a duplicate; the pushed date and creation day are returned for confirming
    re-scans (either may be the window's field until one is proven)."""
    entry = upstream.add(clock.days_ago(40), manual=True)
    (event,) = upstream.events
    engine = make_engine(upstream, store, clock)
    await engine.refresh_workspaces(report(clock))
    upstream.reset_counts()

    assert await engine.apply_event(event) == (
        "inserted",
        ((WS, entry.date), (WS, clock.days_ago(0))),
    )
    assert await engine.apply_event(event) == ("duplicate", ())

    assert upstream.calls == {}
    assert mirror.live(db_path) == mirror.expected([entry])


async def test_older_push_never_overwrites_a_newer_row(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """Pushes arriving out of order: the mirror keeps the newest version."""
    entry = upstream.add(clock.days_ago(1), running=True)
    stopped = upstream.stop(entry.id)
    renamed = upstream.edit(entry.id, description="renamed")
    started, stopping, renaming = upstream.events
    engine = make_engine(upstream, store, clock)
    await engine.refresh_workspaces(report(clock))

    assert (await engine.apply_event(renaming))[0] == "inserted"
    assert (await engine.apply_event(started))[0] == "stale"
    assert (await engine.apply_event(stopping))[0] == "stale"

    assert mirror.live(db_path) == mirror.expected([renamed])
    assert stopped.updated_at < renamed.updated_at


async def test_refresh_confirms_pushes_with_one_scan_per_group_of_nearby_dates(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """Pushed dates a few days apart share one confirming scan; a distant date gets its own
    (here the creation day too: the entries were created today). The re-scan corrects what
    the pushes got wrong (here: an entry deleted since)."""
    a, b, c, far = (clock.days_ago(n) for n in (60, 58, 55, 20))
    entries = [upstream.add(d) for d in (a, b, c, far)]
    engine = make_engine(upstream, store, clock)
    await engine.refresh_workspaces(report(clock))
    windows = [w for e in upstream.events for w in (await engine.apply_event(e))[1]]
    upstream.delete(entries[1].id)

    await engine.refresh([*windows, windows[0]], report(clock, "push"))

    pushed = finds(upstream, Priority.PUSH)
    today = clock.days_ago(0)
    assert [(f.date_from, f.date_to) for f in pushed] == [(a, c), (far, far), (today, today)]
    assert mirror.live(db_path) == mirror.expected(upstream.entries)


async def test_delete_push_writes_nothing_and_the_next_scan_tombstones(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """syncd subscribes to no delete event: one that arrives anyway (forged, or an extension)
    changes nothing; the entry stays until a scan finds it gone, and then it is gone."""
    kept = upstream.add(clock.days_ago(1))
    entry = upstream.add(clock.days_ago(1))
    engine = make_engine(upstream, store, clock)
    await run_once(engine, clock)
    forged = upstream.delete(entry.id)
    upstream.entries[forged.id] = forged  # the delivery lies: the entry still exists
    deleted = upstream.events[-1]

    assert await engine.apply_event(deleted) == ("refused", ())
    assert mirror.live(db_path) == mirror.expected([kept, entry])

    upstream.delete(entry.id)
    clock.advance(minutes=15)
    await engine.poll(report(clock, "poll"))
    assert mirror.live(db_path) == mirror.expected([kept])


async def test_forged_push_is_undone_by_the_next_scan_whatever_its_timestamps(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """A push is provisional: one claiming a far-future ``updatedAt`` and an absurd duration
    is applied with its ``updated_at`` held to its arrival, and the next scan of its window
    puts back what upstream holds."""
    entry = upstream.add(clock.days_ago(1))
    engine = make_engine(upstream, store, clock)
    await run_once(engine, clock)
    forged = replace(entry, duration_seconds=-(10**12), updated_at="2099-01-01T00:00:00.000Z")
    event = push_of(EventKind.TIMER_STOPPED, forged)

    assert (await engine.apply_event(event))[0] == "updated"
    row = mirror.row(db_path, entry.id)
    assert row["duration_seconds"] == -(10**12)
    assert row["updated_at"] < "2027"  # held to the arrival time (plus a small skew)

    clock.advance(minutes=15)
    await engine.poll(report(clock, "poll"))
    assert mirror.live(db_path) == mirror.expected([entry])


# ---------------------------------------------------------------------------- gaps


async def test_pushes_from_workspaces_not_mirrored_are_ignored(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """With ``workspaces`` restricted, a push about another workspace (the subscription is
    per key, so they arrive) neither lands in the mirror, where nothing would ever verify
    it again, nor queues a re-scan that spends budget on that workspace."""
    upstream.add_workspace("ws-other")
    upstream.add(clock.days_ago(1), workspace_id="ws-other")
    (event,) = upstream.events
    engine = make_engine(upstream, store, clock, workspaces=(WS,))

    outcome, windows = await engine.apply_event(event)

    assert windows == ()
    assert outcome != "inserted"
    assert mirror.live(db_path) == {}


async def test_entry_dated_more_than_a_year_ahead_is_mirrored(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """An entry whose date was typed with the wrong year (two years ahead) is an entry
    upstream like any other: the mirror has it after a run, and keeps it on the next."""
    upstream.add(clock.days_ago(1))
    typo = upstream.add((clock.today() + timedelta(days=2 * 365)).isoformat())
    engine = make_engine(upstream, store, clock, history_start=clock.days_ago(30))

    await run_once(engine, clock)
    clock.advance(minutes=15)
    await run_once(engine, clock)

    assert typo.id in mirror.live(db_path)
    assert mirror.live(db_path) == mirror.expected(upstream.entries)


async def test_answer_older_than_a_tombstone_does_not_revive_the_entry(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """An entry deleted while this poll's response was on the wire, and tombstoned meanwhile
    (by a cron run's newer scan of the same window), stays tombstoned:
    the older answer still listing it must not bring it back (the mirror would show a
    deleted entry as live until the window's next scan)."""
    entry = upstream.add(clock.days_ago(0))
    settings = {"history_start": clock.days_ago(30)}
    await run_once(make_engine(upstream, store, clock, **settings), clock)
    daemon = make_engine(upstream, store, clock, **settings)
    cron = make_engine(upstream, store, clock, **settings)

    async def deleted_meanwhile(call: FindCall) -> None:
        upstream.while_answering = None
        clock.advance(seconds=1)
        upstream.delete(entry.id)
        await cron.poll(report(clock, "poll"))
        assert mirror.live(db_path) == {}

    upstream.while_answering = deleted_meanwhile
    clock.advance(minutes=15)
    await daemon.poll(report(clock, "poll"))

    assert mirror.live(db_path) == {}


async def test_moving_history_start_earlier_backfills_the_extra_history(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """Changing ``history_start`` to an earlier date after the backfill finished fetches the
    history between the two dates on the next run."""
    upstream.add_many(days_back(clock.today(), 5, 50, 150, 300))
    await run_once(make_engine(upstream, store, clock, history_start=clock.days_ago(100)), clock)
    assert len(mirror.live(db_path)) == 2

    clock.advance(minutes=15)
    await run_once(make_engine(upstream, store, clock, history_start=clock.days_ago(400)), clock)

    assert mirror.live(db_path) == mirror.expected(upstream.entries)
