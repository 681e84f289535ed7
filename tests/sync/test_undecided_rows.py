"""Rows a scan could not decide on while the window's field is unproven.

A scan whose window holds a row's date but not its creation day (or the reverse) cannot tell
whether upstream lacks the row: under the other reading it was never asked for. Such a row is
decided by a later scan of a window holding both days, however far apart they are, asked in
requests no wider than ``window_max_days``. These rows mostly come from pushes (a scan that
returns one proves the field), and a push must not outlive the scans of its window.
"""

from __future__ import annotations

import itertools
from datetime import date
from pathlib import Path

import pytest

from syncd.records import Priority, RunReport
from syncd.store import AsyncStore
from syncd.sync import SyncEngine, SyncSettings

from . import mirror_rows as mirror
from . import test_convergence
from .fakes import Clock, FakeUpstream
from .test_convergence import EngineConvergence


def report(clock: Clock, kind: str = "once") -> RunReport:
    return RunReport(kind=kind, started_at=clock.stamp())


def test_deleted_entry_pushed_with_a_date_moved_92_days_back_does_not_survive_the_sweep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The engine machine's sequence: an entry moved 92 days back and then deleted upstream
    reaches the mirror only through a late push of the move; its date and creation day are
    92 days apart, more than a window holds, and the final full sweep must still tombstone
    it."""
    monkeypatch.setattr(test_convergence, "event", lambda *_args: None)  # no Hypothesis run
    machine = EngineConvergence()
    try:
        for _ in range(6):
            machine.upstream.add(machine.clock.days_ago(0), workspace_id="ws-a")
        for entry_id in ("te-00001", "te-00002", "te-00003"):
            machine.upstream.delete(entry_id)
        machine.upstream.add(machine.clock.days_ago(0), workspace_id="ws-a", running=True)
        moved = machine.upstream.edit("te-00004", description="!", date=machine.clock.days_ago(92))
        machine.interrupted_run(kind="once", elapsed=0, after=1, fault="5xx")
        machine.upstream.delete("te-00004")
        machine.upstream.delete("te-00005")
        (push,) = [e for e in machine.upstream.events if e.entry == moved]

        outcome, windows = machine.run(machine.engine.apply_event(push))

        assert outcome == "inserted"
        assert windows == (("ws-a", moved.date), ("ws-a", machine.clock.days_ago(0)))
        machine.mirror_holds_only_upstream_versions()
        machine.converge()  # the mirror's live rows equal upstream's entries
        assert "te-00004" in mirror.tombstones(machine.db)
    finally:
        machine.db.close()
        machine.run(machine.store.close())
        machine.loop.close()


async def test_row_whose_days_are_further_apart_than_a_window_is_decided_in_window_sized_requests(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """A pushed entry dated 200 days before its creation, deleted upstream before any scan:
    a run tombstones it with one window holding both days, asked in pieces of at most
    ``window_max_days`` (each a day wider on either side)."""
    kept = upstream.add(clock.days_ago(0))
    gone = upstream.add(clock.days_ago(200))
    engine = SyncEngine(upstream, store, SyncSettings.from_config(window_max_days=30), clock=clock)
    await engine.refresh_workspaces(report(clock))
    pushed = upstream.events[1]
    assert (await engine.apply_event(pushed))[0] == "inserted"
    upstream.delete(gone.id)
    upstream.reset_counts()

    await engine.run_once(report(clock))

    assert mirror.live(db_path) == mirror.expected([kept])
    assert mirror.tombstones(db_path).keys() == {gone.id}
    closed = [f for f in upstream.finds if f.asked_from is not None and f.asked_to is not None]
    assert closed
    for call in closed:
        width = (date.fromisoformat(call.asked_to) - date.fromisoformat(call.asked_from)).days
        assert width + 1 <= 30 + 2, call
    verifying = [f for f in closed if f.priority is Priority.RECONCILE]
    assert verifying[0].date_from == gone.date
    assert verifying[-1].date_to == clock.days_ago(0)
    assert all(a.date_to < b.date_from for a, b in itertools.pairwise(verifying))


async def test_full_verification_decides_the_rows_its_walk_could_not(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock, db_path: Path
) -> None:
    """``--full`` re-verifies every window; a row whose date and creation day fell into two
    of its windows (a late push of an entry deleted since) is decided before it ends."""
    first = upstream.add(clock.days_ago(0))
    clock.advance(days=36)
    late = upstream.add(clock.days_ago(3))  # dated three days before its creation
    pushed = upstream.events[-1]
    upstream.delete(late.id)
    clock.advance(days=41)  # the full walk's 10-day windows end 74, 64, ... 34 days ago
    engine = SyncEngine(upstream, store, SyncSettings.from_config(window_max_days=10), clock=clock)
    await engine.run_once(report(clock))
    assert (await engine.apply_event(pushed))[0] == "inserted"
    assert mirror.live(db_path) == mirror.expected([first, pushed.entry])

    await engine.full(report(clock))

    assert mirror.live(db_path) == mirror.expected([first])
    assert mirror.tombstones(db_path).keys() == {late.id}
    (deciding,) = [s for s in mirror.scans(db_path) if s.tombstoned]
    assert deciding.covers(late.date)
    assert deciding.covers(late.created_at[:10])
    walked = [s for s in mirror.scans(db_path) if s.source == "reconcile" and s != deciding]
    assert not any(s.covers(late.date) and s.covers(late.created_at[:10]) for s in walked)
