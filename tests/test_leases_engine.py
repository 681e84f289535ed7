"""The engine syncs only the workspaces whose lease it holds, renews the lease around every
window and leaves a workspace whose lease another process took (fake upstream, real SQLite)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from syncd.records import Priority, RunReport
from syncd.store import AsyncStore
from syncd.sync import SyncEngine, SyncSettings
from tests.sync.fakes import Clock, FakeUpstream, days_back


class Leases:
    """``WorkLeases`` that refuse ``theirs`` and lose ``lost_after`` renewals into a run."""

    def __init__(self, theirs: Sequence[str] = (), lost_after: dict[str, int] | None = None):
        self.theirs = set(theirs)
        self.lost_after = dict(lost_after or {})
        self.renewals: dict[str, int] = {}

    async def claim(self, workspace_ids: Sequence[str]) -> list[str]:
        return [w for w in workspace_ids if w not in self.theirs]

    async def renew(self, workspace_id: str) -> bool:
        self.renewals[workspace_id] = self.renewals.get(workspace_id, 0) + 1
        limit = self.lost_after.get(workspace_id)
        if workspace_id in self.theirs or (
            limit is not None and self.renewals[workspace_id] > limit
        ):
            self.theirs.add(workspace_id)
            return False
        return True


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def upstream(clock: Clock) -> FakeUpstream:
    fake = FakeUpstream(clock, workspaces=("ws-a", "ws-b"))
    for workspace in ("ws-a", "ws-b"):
        fake.add_many(days_back(clock.today(), 0, 2, 30, 90, 200, 380), workspace_id=workspace)
    return fake


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AsyncStore]:
    async with await AsyncStore.open(tmp_path / "m.sqlite") as opened:
        yield opened


def engine(upstream: FakeUpstream, store: AsyncStore, clock: Clock, leases: Leases) -> SyncEngine:
    settings = SyncSettings.from_config(window_max_days=30, history_start=clock.days_ago(400))
    return SyncEngine(upstream, store, settings, clock=clock, leases=leases)


def scanned(upstream: FakeUpstream) -> set[str]:
    return {f.workspace_id for f in upstream.finds}


async def test_a_workspace_leased_by_another_instance_is_skipped_and_counted(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock
) -> None:
    leases = Leases(theirs=["ws-b"])
    report = await engine(upstream, store, clock, leases).run_once(
        RunReport(kind="once", started_at=clock.stamp())
    )
    assert scanned(upstream) == {"ws-a"}
    assert report.leased_elsewhere == 1
    assert (await store.workspace_state("ws-a")).backfill_complete
    assert not (await store.workspace_state("ws-b")).backfill_complete
    # renewed before every window was asked for and after it was committed
    assert leases.renewals["ws-a"] == 2 * report.windows


async def test_a_lease_lost_part_way_stops_that_workspace_after_the_window_in_flight(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock
) -> None:
    leases = Leases(lost_after={"ws-b": 3})
    report = await engine(upstream, store, clock, leases).run_once(
        RunReport(kind="once", started_at=clock.stamp())
    )
    assert report.leased_elsewhere == 1
    b_finds = [f for f in upstream.finds if f.workspace_id == "ws-b"]
    assert 1 <= len(b_finds) <= 2  # what it asked while it held the lease, no more
    assert (await store.workspace_state("ws-a")).backfill_complete
    assert not (await store.workspace_state("ws-b")).backfill_complete


async def test_pushed_windows_are_rescanned_only_by_the_workspaces_holder(
    upstream: FakeUpstream, store: AsyncStore, clock: Clock
) -> None:
    leases = Leases(theirs=["ws-b"])
    sync = engine(upstream, store, clock, leases)
    day = clock.days_ago(1)
    report = RunReport(kind="push", started_at=clock.stamp())
    await sync.refresh({("ws-a", day), ("ws-b", day)}, report)
    assert [(f.workspace_id, f.priority) for f in upstream.finds] == [("ws-a", Priority.PUSH)]
    assert report.leased_elsewhere == 1


async def test_shared_work_keeps_one_leader_and_gives_everything_back_when_it_ends(
    tmp_path: Path,
) -> None:
    from syncd.instances import SharedWork

    path = tmp_path / "shared.sqlite"
    led: list[str] = []
    async with await AsyncStore.open(path) as first_store, await AsyncStore.open(path) as second:

        def work(store: AsyncStore, name: str) -> SharedWork:
            return SharedWork(
                store,
                key_id="key",
                instance_id=name,
                ttl_seconds=30,
                daemon=True,
                wants_lead=True,
                on_lead=lambda: led.append(name),
            )

        later = work(second, "b")
        async with work(first_store, "a") as first:
            assert first.leading
            assert await first.claim(["ws-1", "ws-2"]) == ["ws-1", "ws-2"]
            async with later:
                assert not later.leading
                assert await later.claim(["ws-1", "ws-2"]) == []
                assert await first.claim(["ws-1", "ws-2"]) == ["ws-1"]  # its share of two
                assert await later.claim(["ws-1", "ws-2"]) == ["ws-2"]
                assert led == ["a"]
            # b stopped: its lease went back at once, so a takes ws-2 and still leads
            assert await first.claim(["ws-1", "ws-2"]) == ["ws-1", "ws-2"]
        assert led == ["a"]
        async with work(second, "c") as third:
            assert third.leading  # a ended: the leader lease is free at once
        assert led == ["a", "c"]
