"""AsyncStore: the MirrorStore seam on one DB thread."""

from __future__ import annotations

import asyncio
import contextvars
import threading

from syncd.records import Source, Workspace
from syncd.seams import MirrorStore
from syncd.store import AsyncStore

from .factory import WS, entry, ts, window

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


async def test_async_store_round_trip(mirror_location: str) -> None:
    store = await AsyncStore.open(mirror_location)
    seam: MirrorStore = store  # type-checks as the seam the sync engine uses
    try:
        await seam.upsert_workspaces([Workspace(WS, "Main")], ts("2024-06-01"))
        out = await seam.apply_window(window([entry("a"), entry("b")], "2024-03-01", "2024-03-31"))
        assert out.inserted == 2
        assert await seam.count_live_entries(WS) == 2
        assert await seam.apply_pushed_entry(entry("c"), Source.WEBHOOK, ts("2024-06-01")) == (
            "inserted"
        )
        assert await seam.tombstone_entry("c", ts("2024-06-02")) is True
        assert (await seam.workspace_state(WS)).workspace_id == WS
        run_id = await seam.start_run("once", ts("2024-06-01"))
        assert run_id >= 1
        assert len(await store.mirror_snapshot(WS)) == 2
        assert (await store.status()).workspaces[0].name == "Main"
    finally:
        await store.close()
    await store.close()  # idempotent


async def test_calls_run_on_one_thread_with_the_callers_context(db_path) -> None:
    async with await AsyncStore.open(db_path) as store:
        request_id.set("r-42")

        def where() -> tuple[str, str]:
            return threading.current_thread().name, request_id.get()

        results = await asyncio.gather(*(store.call(where) for _ in range(20)))
        assert {name for name, _ in results} == {results[0][0]}
        assert results[0][0] != threading.current_thread().name
        assert {rid for _, rid in results} == {"r-42"}


async def test_budget_calls_go_before_queued_store_work(db_path) -> None:
    """A rate-budget call waits only for the call running on the DB thread, not for the
    window commits queued behind it."""
    async with await AsyncStore.open(db_path) as store:
        release = threading.Event()
        ran: list[str] = []
        running = asyncio.ensure_future(store.call(release.wait, 10))
        queued = [asyncio.ensure_future(store.call(ran.append, f"commit-{i}")) for i in range(3)]
        await asyncio.sleep(0.05)  # all four are with the DB thread now
        budget = asyncio.ensure_future(store.call_budget(ran.append, "grant"))
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(running, budget, *queued)
        assert ran == ["grant", "commit-0", "commit-1", "commit-2"]
