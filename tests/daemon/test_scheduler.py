"""DaemonScheduler on a real APScheduler with tiny intervals."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from syncd.daemon.metrics import Metrics
from syncd.daemon.plan import make_plan
from syncd.daemon.scheduler import DaemonScheduler, Intervals, PriorityLock
from syncd.shutdown import Shutdown

LONG = 3600.0


async def until(cond: Callable[[], bool], within: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


class Jobs:
    """Job functions that record their calls; each can be made to block or fail."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {"poll": 0, "reconcile": 0, "housekeeping": 0}
        self.refreshes: list[set[tuple[str, str]]] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.active = 0
        self.max_active = 0
        self.order: list[str] = []

    def gate(self, name: str) -> asyncio.Event:
        self.gates[name] = asyncio.Event()
        return self.gates[name]

    async def _body(self, name: str) -> None:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.order.append(name)
        try:
            if name in self.gates:
                await self.gates[name].wait()
            await asyncio.sleep(0)
        finally:
            self.active -= 1

    async def poll(self) -> None:
        self.calls["poll"] += 1
        await self._body("poll")

    async def reconcile(self) -> None:
        self.calls["reconcile"] += 1
        await self._body("reconcile")

    async def housekeeping(self) -> None:
        self.calls["housekeeping"] += 1
        await self._body("housekeeping")

    async def refresh(self, windows: set[tuple[str, str]]) -> None:
        self.refreshes.append(set(windows))
        await self._body("refresh")


def make(jobs: Jobs, *, poll=LONG, reconcile=LONG, housekeeping=LONG, **kwargs) -> DaemonScheduler:
    kwargs.setdefault("debounce_seconds", 0.02)
    kwargs.setdefault("first_housekeeping_delay", LONG)
    return DaemonScheduler(
        poll=jobs.poll,
        reconcile=jobs.reconcile,
        refresh=jobs.refresh,
        housekeeping=jobs.housekeeping,
        intervals=Intervals(poll, reconcile, housekeeping),
        **kwargs,
    )


@pytest.fixture
async def started():
    """Start schedulers inside the test's loop and always stop them."""
    made: list[DaemonScheduler] = []

    async def start(sched: DaemonScheduler) -> DaemonScheduler:
        await sched.start()
        made.append(sched)
        return sched

    yield start
    for sched in made:
        await sched.stop(2)


async def test_refresh_requested_during_a_poll_is_not_lost(started):
    jobs = Jobs()
    poll_gate = jobs.gate("poll")
    sched = await started(make(jobs))
    await until(lambda: jobs.active == 1)  # the first poll runs at start and blocks
    assert sched.request_refresh("ws1", "2024-01-15")
    await asyncio.sleep(0.1)  # debounce elapsed: the refresh waits for the lock
    assert jobs.refreshes == []
    poll_gate.set()
    await until(lambda: len(jobs.refreshes) == 1)
    assert jobs.refreshes == [{("ws1", "2024-01-15")}]
    assert jobs.max_active == 1
    assert sched.pending_windows == frozenset()


async def test_duplicate_requests_are_coalesced_per_window(started):
    jobs = Jobs()
    sched = await started(make(jobs, first_poll_delay=LONG, debounce_seconds=0.05))
    for _ in range(5):
        sched.request_refresh("ws1", "2024-01-15")
    for _ in range(3):
        sched.request_refresh("ws2", "2024-01-16")
    await until(lambda: len(jobs.refreshes) == 1)
    await asyncio.sleep(0.15)
    assert jobs.refreshes == [{("ws1", "2024-01-15"), ("ws2", "2024-01-16")}]


async def test_windows_arriving_during_a_refresh_are_drained_by_it(started):
    jobs = Jobs()
    gate = jobs.gate("refresh")
    sched = await started(make(jobs, first_poll_delay=LONG))
    sched.request_refresh("ws1", "2024-01-15")
    await until(lambda: len(jobs.refreshes) == 1)
    sched.request_refresh("ws1", "2024-01-16")
    sched.request_refresh("ws1", "2024-01-16")
    sched.request_refresh("ws2", "2024-01-17")
    gate.set()
    await until(lambda: len(jobs.refreshes) == 2)
    await asyncio.sleep(0.1)
    assert jobs.refreshes == [
        {("ws1", "2024-01-15")},
        {("ws1", "2024-01-16"), ("ws2", "2024-01-17")},
    ]
    assert sched.status()["jobs"]["refresh"]["runs"] == 1  # one run drained both batches


async def test_all_jobs_are_serialised_and_push_goes_first(started):
    jobs = Jobs()
    gate = jobs.gate("poll")
    sched = await started(make(jobs, first_reconcile_delay=0.0))
    await until(lambda: jobs.active == 1 and jobs.order == ["poll"])
    await asyncio.sleep(0.05)  # reconcile is now waiting for the lock
    sched.request_refresh("ws1", "2024-01-15")
    await asyncio.sleep(0.1)  # so is the refresh
    gate.set()
    await until(lambda: jobs.calls["reconcile"] == 1 and len(jobs.refreshes) == 1)
    assert jobs.order == ["poll", "refresh", "reconcile"]
    assert jobs.max_active == 1


async def test_a_failing_job_does_not_stop_later_runs(started, logs):
    jobs = Jobs()
    failures = {"left": 2}

    async def flaky_poll() -> None:
        jobs.calls["poll"] += 1
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("upstream said 503")

    metrics = Metrics()
    sched = make(jobs, poll=0.05, metrics=metrics)
    sched._fns["poll"] = flaky_poll
    await started(sched)
    await until(lambda: jobs.calls["poll"] >= 4)
    status = sched.status()["jobs"]["poll"]
    assert status["failures"] == 2
    assert status["consecutive_failures"] == 0
    assert status["last_error"] == "RuntimeError: upstream said 503"
    health = sched.health()
    assert health.ok, health
    assert health.last_error == "RuntimeError: upstream said 503"
    failed = [e for e in logs if e["event"] == "job_failed"]
    assert len(failed) == 2
    assert failed[0]["job"] == "poll"
    assert failed[0]["log_level"] == "error"
    text = metrics.render().decode()
    assert 'syncd_sync_failures_total{kind="poll"} 2.0' in text
    assert "syncd_last_success_timestamp_seconds 1." in text


async def test_health_turns_503_after_failures_in_a_row(started):
    jobs = Jobs()

    async def broken() -> None:
        raise ConnectionError("refused")

    sched = make(jobs, poll=0.03, max_consecutive_failures=3)
    sched._fns["poll"] = broken
    health = sched.health()
    assert not health.ok
    assert health.reason == "scheduler not started"
    await started(sched)
    await until(lambda: sched.status()["jobs"]["poll"]["failures"] >= 3)
    health = sched.health()
    assert not health.ok
    assert "failed in a row" in health.reason
    assert "ConnectionError: refused" in health.reason
    assert health.as_json()["status"] == "unhealthy"


async def test_health_turns_503_when_no_sync_succeeded_recently(started):
    jobs = Jobs()
    now = {"t": 1_000_000.0}
    sched = await started(make(jobs, stale_after=60, clock=lambda: now["t"]))
    await until(lambda: jobs.calls["poll"] == 1)
    await until(lambda: sched.status()["jobs"]["poll"]["last_success"] is not None)
    assert sched.health().ok
    now["t"] += 61
    health = sched.health()
    assert not health.ok
    assert "no successful sync for 61s" in health.reason
    sched.progress()  # a window committed by a long job counts
    assert sched.health().ok


async def test_stop_waits_for_the_job_in_flight_without_cancelling_it(started):
    jobs = Jobs()
    finished = {"poll": False, "cancelled": False}

    async def slow_poll() -> None:
        jobs.calls["poll"] += 1
        try:
            await asyncio.sleep(0.3)
        except asyncio.CancelledError:
            finished["cancelled"] = True
            raise
        finished["poll"] = True

    sched = make(jobs, poll=0.05)
    sched._fns["poll"] = slow_poll
    await started(sched)
    await until(lambda: jobs.calls["poll"] == 1)
    assert await sched.stop(5) is True
    assert finished == {"poll": True, "cancelled": False}
    assert sched.stopping
    assert not sched.request_refresh("ws1", "2024-01-15")
    calls = jobs.calls["poll"]
    await asyncio.sleep(0.2)
    assert jobs.calls["poll"] == calls  # nothing runs after stop
    assert sched.health().reason == "stopping"


async def test_stop_lets_a_long_job_end_after_the_window_in_flight(started):
    jobs = Jobs()
    committed: list[int] = []
    shutdown = Shutdown()

    async def backfill() -> None:
        for window in range(1000):
            shutdown.check()  # as the engine does before each request
            await asyncio.sleep(0.01)  # fetch + commit one window
            committed.append(window)

    sched = make(jobs, shutdown=shutdown)
    sched._fns["poll"] = backfill
    await started(sched)
    await until(lambda: len(committed) >= 3)
    assert await sched.stop(5) is True
    assert shutdown.requested  # the engine, client and budget watching it stop too
    assert len(committed) < 1000
    poll = sched.status()["jobs"]["poll"]
    assert poll["failures"] == 0
    assert poll["last_error"] is None


async def test_a_requested_shutdown_starts_no_job_and_ends_the_one_in_flight(started):
    """A stop signal requests the process's shutdown before the daemon stops the
    scheduler: from then on no job starts, the long job in flight ends after its window,
    and no refresh is queued."""
    jobs = Jobs()
    committed: list[int] = []
    shutdown = Shutdown()

    async def backfill() -> None:
        for window in range(1000):
            shutdown.check()
            await asyncio.sleep(0.01)
            committed.append(window)

    sched = make(jobs, poll=0.05, shutdown=shutdown)
    sched._fns["poll"] = backfill
    await started(sched)
    await until(lambda: len(committed) >= 3)
    shutdown.request()  # the signal handler; stop() is not called yet
    assert sched.stopping
    await until(lambda: not sched.status()["jobs"]["poll"]["running"])
    runs = sched.status()["jobs"]["poll"]["runs"]
    assert sched.status()["jobs"]["poll"]["failures"] == 0
    assert not sched.request_refresh("ws1", "2024-01-15")
    await asyncio.sleep(0.2)  # several poll intervals
    assert sched.status()["jobs"]["poll"]["runs"] == runs
    assert len(committed) < 1000
    assert sched.health().reason == "stopping"
    assert await sched.stop(5) is True


async def test_stop_cancels_only_after_the_timeout(started):
    jobs = Jobs()
    state = {"cancelled": False}

    async def stuck() -> None:
        try:
            await asyncio.sleep(LONG)
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise

    sched = make(jobs)
    sched._fns["poll"] = stuck
    await started(sched)
    await asyncio.sleep(0.05)
    assert await sched.stop(0.1) is False
    assert state["cancelled"]


async def test_a_failed_refresh_is_retried_then_dropped(started):
    jobs = Jobs()
    attempts: list[set] = []

    async def failing(windows) -> None:
        attempts.append(set(windows))
        raise TimeoutError("upstream timed out")

    sched = make(jobs, first_poll_delay=LONG, refresh_retry_seconds=0.02, max_refresh_attempts=3)
    sched._refresh_fn = failing
    await started(sched)
    sched.request_refresh("ws1", "2024-01-15")
    await until(lambda: len(attempts) == 3)
    await asyncio.sleep(0.15)
    assert len(attempts) == 3
    assert sched.pending_windows == frozenset()


async def test_reschedule_and_apply_plan(started):
    jobs = Jobs()
    sched = await started(make(jobs, first_poll_delay=LONG))
    assert sched.reschedule(poll_seconds=LONG) is False
    assert sched.reschedule(poll_seconds=0.05) is True
    await until(lambda: jobs.calls["poll"] >= 2)
    with pytest.raises(ValueError):
        sched.reschedule(reconcile_seconds=0)
    plan = make_plan(workspaces=3, requests_per_poll=9, interval_seconds=60, history_days=365)
    assert sched.apply_plan(plan) is True
    assert sched.intervals.poll_seconds == plan.poll_interval_seconds
    assert sched.intervals.reconcile_seconds == plan.reconcile_interval_seconds
    assert sched.apply_plan(plan) is False


async def test_run_now_and_requests_before_start(started):
    jobs = Jobs()
    sched = make(jobs, first_poll_delay=LONG)
    sched.request_refresh("ws1", "2024-01-15")  # kept until start
    with pytest.raises(RuntimeError):
        sched.run_now("poll")
    await started(sched)
    await until(lambda: len(jobs.refreshes) == 1)
    sched.run_now("poll")
    await until(lambda: jobs.calls["poll"] == 1)
    with pytest.raises(KeyError):
        sched.run_now("refresh")
    with pytest.raises(RuntimeError):
        await sched.start()


async def test_priority_lock_orders_waiters_and_survives_cancellation():
    lock = PriorityLock()
    order: list[str] = []
    await lock.acquire(5)

    async def waiter(name: str, prio: int) -> None:
        await lock.acquire(prio)
        order.append(name)
        lock.release()

    low = asyncio.create_task(waiter("low", 3))
    gone = asyncio.create_task(waiter("gone", 0))
    high = asyncio.create_task(waiter("high", 1))
    same = asyncio.create_task(waiter("low2", 3))
    await asyncio.sleep(0.01)
    gone.cancel()
    await asyncio.sleep(0.01)
    lock.release()
    await asyncio.gather(low, high, same)
    assert order == ["high", "low", "low2"]
    assert not lock.locked()
    with pytest.raises(RuntimeError):
        lock.release()
