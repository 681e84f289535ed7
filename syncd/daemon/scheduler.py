"""The daemon's job loop on APScheduler 3.11 (``AsyncIOScheduler``).

Four jobs, all ``async`` and all serialised by one priority lock (one sync at a time per
process; when the lock frees, a push refresh goes before a poll, a poll before a sweep):

- ``poll``: the hot-window poll, an interval job;
- ``reconcile``: one slice of the reconciliation sweep, an interval job;
- ``refresh``: confirming re-scans of the ``(workspace_id, date)`` windows named by webhook
  deliveries. :meth:`DaemonScheduler.request_refresh` adds a window to a pending set and
  schedules one debounced run; the run drains the set in a loop until it is empty, so a
  window that arrives while a refresh or a poll runs is picked up, never lost, and repeated
  requests for one window cost one re-scan;
- ``housekeeping``: budget pruning, subscription checks and the like, an interval job.

APScheduler pitfalls handled here (see the design notes): the scheduler is created and
started inside the running loop; ``coalesce=True``/``max_instances=1`` with a misfire grace
of one interval; stopping pauses, waits for the job in flight and only then shuts down,
because ``AsyncIOExecutor.shutdown`` cancels running coroutine jobs whatever ``wait`` says.

A job that raises is logged as a structlog event and recorded for ``/healthz``; the next
runs happen as planned. ``ShutdownRequested`` from a job is a clean early end.

The scheduler watches the process's :class:`~syncd.shutdown.Shutdown` (the one the engine,
the client and the budget watch): once a stop is requested no job starts, and
:meth:`DaemonScheduler.stop` waits for the job in flight.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from syncd.errors import ShutdownRequested
from syncd.records import Priority
from syncd.shutdown import Shutdown

if TYPE_CHECKING:
    from syncd.daemon.metrics import Metrics
    from syncd.daemon.plan import Plan

log = structlog.get_logger("syncd.scheduler")

Window = tuple[str, str]  # (workspace_id, YYYY-MM-DD)
JobFn = Callable[[], Awaitable[object]]
RefreshFn = Callable[[set[Window]], Awaitable[object]]

POLL, RECONCILE, REFRESH, HOUSEKEEPING = "poll", "reconcile", "refresh", "housekeeping"
SYNC_JOBS = (POLL, RECONCILE, REFRESH)
_PRIORITY = {
    REFRESH: Priority.PUSH,
    POLL: Priority.HOT,
    RECONCILE: Priority.RECONCILE,
    HOUSEKEEPING: Priority.CONTROL,
}


@dataclass(frozen=True, slots=True)
class Intervals:
    """Seconds between runs of the interval jobs."""

    poll_seconds: float
    reconcile_seconds: float
    housekeeping_seconds: float = 3_600.0


@dataclass(frozen=True, slots=True)
class Health:
    """The scheduler's health for ``/healthz`` (times are epoch seconds of its clock)."""

    reason: str | None  # None: healthy
    now: float
    started_at: float | None
    last_success: float | None  # the latest successful sync job
    last_error: str | None
    last_error_at: float | None
    failures_in_row: int
    stale_after: float
    pending_refresh_windows: int
    stopping: bool
    jobs: dict[str, dict]

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def last_error_current(self) -> bool:
        """Whether the last error is still the latest news: no sync succeeded after it (the
        error and its time are reported either way)."""
        if self.last_error_at is None:
            return False
        return self.last_success is None or self.last_success <= self.last_error_at

    def as_json(self) -> dict:
        """The ``/healthz`` body (without the daemon's plan)."""
        last_ok = self.last_success
        return {
            "started_at": _iso(self.started_at),
            "last_success_at": _iso(last_ok),
            "last_success_age_s": None if last_ok is None else round(self.now - last_ok, 1),
            "last_error": self.last_error,
            "last_error_at": _iso(self.last_error_at),
            "last_error_current": self.last_error_current,
            "failures_in_row": self.failures_in_row,
            "stale_after_s": self.stale_after,
            "pending_refresh_windows": self.pending_refresh_windows,
            "stopping": self.stopping,
            "jobs": self.jobs,
            "status": "ok" if self.ok else "unhealthy",
            "reason": self.reason,
        }


@dataclass(slots=True)
class JobStatus:
    """What ``/healthz`` and ``syncd status`` report about one job (epoch seconds)."""

    name: str
    runs: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    running: bool = False
    last_started: float | None = None
    last_success: float | None = None
    last_failure: float | None = None
    last_error: str | None = None
    last_duration: float | None = None

    def as_dict(self) -> dict:
        return {
            "runs": self.runs,
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "running": self.running,
            "last_started": _iso(self.last_started),
            "last_success": _iso(self.last_success),
            "last_failure": _iso(self.last_failure),
            "last_error": self.last_error,
            "last_duration_s": None if self.last_duration is None else round(self.last_duration, 3),
        }


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


class PriorityLock:
    """A non-reentrant asyncio lock granted to the waiter with the lowest priority value
    (FIFO among equals). Cancelling a waiter is safe."""

    def __init__(self) -> None:
        self._locked = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def locked(self) -> bool:
        return self._locked

    async def acquire(self, priority: int) -> None:
        """Wait for the lock; raises ``CancelledError`` (without holding it) if cancelled."""
        if not self._locked and not self._live_waiters():
            self._locked = True
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # it was handed to us just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        """Hand the lock to the next waiter, or unlock. Raises ``RuntimeError`` if unlocked."""
        if not self._locked:
            raise RuntimeError("release of an unlocked PriorityLock")
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)  # stays locked: ownership moves to that waiter
                return
        self._locked = False

    def _live_waiters(self) -> bool:
        while self._waiters and self._waiters[0][2].done():
            heapq.heappop(self._waiters)
        return bool(self._waiters)


@dataclass(slots=True)
class _RefreshState:
    pending: set[Window] = field(default_factory=set)
    attempts: dict[Window, int] = field(default_factory=dict)
    scheduled: bool = False  # a date job is waiting to fire
    active: bool = False  # a refresh run is waiting for the lock or draining
    failed: bool = False  # the last drain raised
    job_ids: Callable[[], int] = field(default_factory=lambda: itertools.count().__next__)


class DaemonScheduler:
    """Runs the daemon's jobs; see the module docstring.

    All job functions are coroutine functions taking no argument except ``refresh``, which
    receives the set of windows to re-scan. They may raise anything: the exception is logged
    and recorded, and the job runs again at its next time. Long jobs end early by raising
    ``ShutdownRequested`` once ``shutdown`` is requested, and report each committed window
    to :meth:`progress` (``/healthz`` counts it like a success).
    """

    def __init__(
        self,
        *,
        poll: JobFn,
        reconcile: JobFn,
        refresh: RefreshFn,
        housekeeping: JobFn,
        intervals: Intervals,
        debounce_seconds: float = 1.0,
        refresh_retry_seconds: float = 60.0,
        max_refresh_attempts: int = 3,
        first_poll_delay: float = 0.0,
        first_reconcile_delay: float | None = None,
        first_housekeeping_delay: float = 0.0,
        stale_after: float | None = None,
        max_consecutive_failures: int = 3,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        shutdown: Shutdown | None = None,
    ) -> None:
        """``first_reconcile_delay=None`` starts the sweep one interval after start.
        ``shutdown`` is the process's stop request (default: one of its own, which
        :meth:`stop` requests).
        ``stale_after`` (seconds without a successful sync or progress before ``/healthz``
        turns 503) defaults to three poll intervals, at least 5 minutes."""
        self._fns: dict[str, JobFn] = {
            POLL: poll,
            RECONCILE: reconcile,
            HOUSEKEEPING: housekeeping,
            REFRESH: self._drain,
        }
        self._refresh_fn = refresh
        self._intervals = intervals
        self._debounce = debounce_seconds
        self._retry = refresh_retry_seconds
        self._max_attempts = max_refresh_attempts
        self._first = {
            POLL: first_poll_delay,
            RECONCILE: first_reconcile_delay,
            HOUSEKEEPING: first_housekeeping_delay,
        }
        self._stale_after = stale_after
        self._max_failures = max_consecutive_failures
        self._metrics = metrics
        self._clock = clock
        self._scheduler: AsyncIOScheduler | None = None
        self._lock = PriorityLock()
        self._refresh = _RefreshState()
        self._status = {name: JobStatus(name) for name in (*SYNC_JOBS, HOUSEKEEPING)}
        self._shutdown = shutdown or Shutdown()
        self._stop_logged = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: set[asyncio.Task] = set()
        self._started_at: float | None = None
        self._last_progress: float | None = None
        self._sync_failures_in_row = 0

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Create the APScheduler instance on the running loop, add the jobs and start.

        Raises ``RuntimeError`` when already started.
        """
        if self._scheduler is not None:
            raise RuntimeError("DaemonScheduler.start() called twice")
        asyncio.get_running_loop()  # must be inside the loop (APScheduler 3.11)
        self._scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
        )
        now = datetime.now(UTC)
        seconds = {
            POLL: self._intervals.poll_seconds,
            RECONCILE: self._intervals.reconcile_seconds,
            HOUSEKEEPING: self._intervals.housekeeping_seconds,
        }
        for name, every in seconds.items():
            delay = self._first[name]
            first_run = {} if delay is None else {"next_run_time": now + timedelta(seconds=delay)}
            # (an explicit next_run_time=None would add the job paused; leaving it out lets
            # the trigger place the first run one interval from now)
            self._scheduler.add_job(
                self._job,
                IntervalTrigger(seconds=every, timezone=UTC),
                args=(name,),
                id=name,
                name=name,
                misfire_grace_time=_grace(every),
                **first_run,
            )
        self._started_at = self._clock()
        self._scheduler.start()
        if self._refresh.pending:
            self._schedule_refresh(self._debounce)
        log.info("scheduler_started", **{f"{k}_s": v for k, v in seconds.items()})

    @property
    def started(self) -> bool:
        return self._scheduler is not None

    @property
    def stopping(self) -> bool:
        """True once a stop was requested (or :meth:`stop` called); long jobs end after the
        window in flight."""
        return self._shutdown.requested

    def progress(self) -> None:
        """Note that a long job made progress (a window committed): ``/healthz`` counts it
        like a success. Never raises."""
        self._last_progress = self._clock()

    async def stop(self, wait_seconds: float = 60.0) -> bool:
        """Graceful stop: request the shutdown (no new work starts, a long job ends after
        the window in flight), wait for the job in flight for up to ``wait_seconds`` (it is
        not cancelled), then shut APScheduler down.

        Returns True when every job ended by itself, False when some had to be cancelled
        after the timeout. Pending refresh windows are dropped (the next poll after a
        restart covers them). Safe to call more than once. Never raises on its own.
        """
        self._shutdown.request()
        scheduler = self._scheduler
        if scheduler is None:
            return True
        if not self._stop_logged:
            self._stop_logged = True
            log.info(
                "scheduler_stopping",
                in_flight=len(self._tasks),
                pending_windows=len(self._refresh.pending),
            )
        if scheduler.running:
            scheduler.pause()
        finished = True
        if not self._idle.is_set():
            try:
                await asyncio.wait_for(self._idle.wait(), wait_seconds)
            except TimeoutError:
                finished = False
                log.warning(
                    "scheduler_stop_timeout", wait_s=wait_seconds, in_flight=len(self._tasks)
                )
        if scheduler.running:
            scheduler.shutdown(wait=False)
        await asyncio.sleep(0)  # APScheduler shuts down through call_soon_threadsafe
        if not finished:
            await self.abort()
        self._refresh.pending.clear()
        self._update_pending_gauge()
        return finished

    async def abort(self, wait_seconds: float = 5.0) -> int:
        """Cancel every job in flight (the second stop signal) and wait up to ``wait_seconds``
        seconds for them to unwind. Returns how many were cancelled. Never raises."""
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=wait_seconds)
        return len(tasks)

    # ---------------------------------------------------------------- requests

    def request_refresh(self, workspace_id: str, date: str) -> bool:
        """Queue a confirming re-scan of ``(workspace_id, date)``; False once stopping.

        Never waits and never raises; repeated requests for one window are coalesced.
        """
        if self.stopping:
            return False
        self._refresh.pending.add((workspace_id, date))
        self._update_pending_gauge()
        if self._scheduler is not None:
            self._schedule_refresh(self._debounce)
        return True

    @property
    def pending_windows(self) -> frozenset[Window]:
        return frozenset(self._refresh.pending)

    def run_now(self, name: str) -> None:
        """Pull the next run of ``poll``/``reconcile``/``housekeeping`` forward to now (a run
        that is already in flight is not repeated). Raises ``KeyError`` for another name
        and ``RuntimeError`` before :meth:`start`."""
        if name not in (POLL, RECONCILE, HOUSEKEEPING):
            raise KeyError(name)
        self._require_started().modify_job(name, next_run_time=datetime.now(UTC))

    def reschedule(
        self,
        *,
        poll_seconds: float | None = None,
        reconcile_seconds: float | None = None,
        housekeeping_seconds: float | None = None,
    ) -> bool:
        """Change interval(s); an unchanged value keeps the job's next run time. Returns True
        when something changed. Raises ``ValueError`` for a non-positive interval."""
        wanted = {
            POLL: poll_seconds,
            RECONCILE: reconcile_seconds,
            HOUSEKEEPING: housekeeping_seconds,
        }
        current = {
            POLL: self._intervals.poll_seconds,
            RECONCILE: self._intervals.reconcile_seconds,
            HOUSEKEEPING: self._intervals.housekeeping_seconds,
        }
        changed = {}
        for name, value in wanted.items():
            if value is None or value == current[name]:
                continue
            if value <= 0:
                raise ValueError(f"{name} interval must be positive")
            changed[name] = value
        if not changed:
            return False
        self._intervals = Intervals(
            poll_seconds=changed.get(POLL, current[POLL]),
            reconcile_seconds=changed.get(RECONCILE, current[RECONCILE]),
            housekeeping_seconds=changed.get(HOUSEKEEPING, current[HOUSEKEEPING]),
        )
        if self._scheduler is not None:
            for name, value in changed.items():
                self._scheduler.reschedule_job(
                    name, trigger=IntervalTrigger(seconds=value, timezone=UTC)
                )
                self._scheduler.modify_job(name, misfire_grace_time=_grace(value))
        log.info("scheduler_rescheduled", **{f"{k}_s": v for k, v in changed.items()})
        return True

    def apply_plan(self, plan: Plan) -> bool:
        """Reschedule poll and sweep to the plan's intervals (see :meth:`reschedule`)."""
        return self.reschedule(
            poll_seconds=plan.poll_interval_seconds,
            reconcile_seconds=plan.reconcile_interval_seconds,
        )

    @property
    def intervals(self) -> Intervals:
        return self._intervals

    # ---------------------------------------------------------------- health

    def health(self) -> Health:
        """What ``/healthz`` says: ok while the last sync succeeded (or a long job made
        progress) within ``stale_after`` seconds and fewer than ``max_consecutive_failures``
        sync runs failed in a row. Never raises."""
        now = self._clock()
        stale_after = self._stale_after or max(300.0, 3 * self._intervals.poll_seconds)
        successes = [self._status[n].last_success for n in SYNC_JOBS]
        last_ok = max((s for s in successes if s is not None), default=None)
        fresh = max((t for t in (last_ok, self._last_progress) if t is not None), default=None)
        errors = [s for s in self._status.values() if s.last_failure is not None]
        last_error = max(errors, key=lambda s: s.last_failure or 0.0) if errors else None
        reason: str | None = None
        if self.stopping:
            reason = "stopping"
        elif self._scheduler is None:
            reason = "scheduler not started"
        elif self._sync_failures_in_row >= self._max_failures:
            reason = f"{self._sync_failures_in_row} sync runs failed in a row"
        elif fresh is None:
            if now - (self._started_at or now) > stale_after:
                reason = f"no successful sync in {now - (self._started_at or now):.0f}s"
        elif now - fresh > stale_after:
            reason = f"no successful sync for {now - fresh:.0f}s (limit {stale_after:.0f}s)"
        if reason and last_error and reason != "stopping":
            reason += f"; last error: {last_error.last_error}"
        return Health(
            reason=reason,
            now=now,
            started_at=self._started_at,
            last_success=last_ok,
            last_error=last_error.last_error if last_error else None,
            last_error_at=last_error.last_failure if last_error else None,
            failures_in_row=self._sync_failures_in_row,
            stale_after=stale_after,
            pending_refresh_windows=len(self._refresh.pending),
            stopping=self.stopping,
            jobs={name: st.as_dict() for name, st in self._status.items()},
        )

    def status(self) -> dict:
        """Job states and intervals, JSON-ready."""
        return {
            "intervals": {
                "poll_s": self._intervals.poll_seconds,
                "reconcile_s": self._intervals.reconcile_seconds,
                "housekeeping_s": self._intervals.housekeeping_seconds,
            },
            "jobs": {name: st.as_dict() for name, st in self._status.items()},
            "pending_refresh_windows": len(self._refresh.pending),
        }

    # ---------------------------------------------------------------- internals

    def _require_started(self) -> AsyncIOScheduler:
        if self._scheduler is None:
            raise RuntimeError("scheduler not started")
        return self._scheduler

    def _schedule_refresh(self, delay: float) -> None:
        state = self._refresh
        if state.scheduled or state.active or self._scheduler is None or self.stopping:
            return  # a queued or running refresh will drain the set
        state.scheduled = True
        # A fresh id per run: APScheduler's max_instances is per id and would drop a run
        # that fires while the previous one is still finishing.
        self._scheduler.add_job(
            self._refresh_job,
            "date",
            run_date=datetime.now(UTC) + timedelta(seconds=delay),
            id=f"{REFRESH}-{state.job_ids()}",
            name=REFRESH,
            misfire_grace_time=None,  # run however late
        )

    async def _refresh_job(self) -> None:
        state = self._refresh
        state.scheduled = False
        state.active = True
        try:
            await self._job(REFRESH)
        finally:
            state.active = False
            if state.pending and not self.stopping:
                self._schedule_refresh(self._retry if state.failed else self._debounce)

    async def _drain(self) -> None:
        """Re-scan pending windows until none is left; failed windows are re-queued (up to
        ``max_refresh_attempts``) and the exception re-raised."""
        state = self._refresh
        state.failed = False
        while state.pending and not self.stopping:
            batch, state.pending = state.pending, set()
            self._update_pending_gauge()
            try:
                await self._refresh_fn(set(batch))
            except BaseException:
                state.failed = True
                self._requeue(batch)
                raise
            for window in batch:
                state.attempts.pop(window, None)

    def _requeue(self, batch: set[Window]) -> None:
        state = self._refresh
        dropped = []
        for window in batch:
            tries = state.attempts.get(window, 0) + 1
            if tries >= self._max_attempts:
                state.attempts.pop(window, None)
                dropped.append(window)
            else:
                state.attempts[window] = tries
                state.pending.add(window)
        if dropped:
            log.warning(
                "refresh_windows_dropped", windows=sorted(dropped), attempts=self._max_attempts
            )
        self._update_pending_gauge()

    async def _job(self, name: str) -> None:
        """Run one job under the lock, recording and logging its outcome."""
        if self.stopping:
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._idle.clear()
        try:
            await self._lock.acquire(_PRIORITY[name])
            try:
                if not self.stopping:
                    await self._run_recorded(name)
            finally:
                self._lock.release()
        finally:
            if task is not None:
                self._tasks.discard(task)
            if not self._tasks:
                self._idle.set()
            if name != REFRESH and self._refresh.pending:
                self._schedule_refresh(self._debounce)

    async def _run_recorded(self, name: str) -> None:
        st = self._status[name]
        st.running = True
        st.runs += 1
        st.last_started = self._clock()
        started = time.monotonic()
        ok: bool | None = None
        try:
            await self._fns[name]()
            ok = True
        except ShutdownRequested:
            log.info("job_stopped", job=name)
        except Exception as exc:
            ok = False
            st.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("job_failed", job=name, error=st.last_error)
        finally:
            st.running = False
            st.last_duration = time.monotonic() - started
        now = self._clock()
        if ok:
            st.last_success = now
            st.consecutive_failures = 0
        elif ok is False:
            st.last_failure = now
            st.failures += 1
            st.consecutive_failures += 1
        if name in SYNC_JOBS and ok is not None:
            self._sync_failures_in_row = 0 if ok else self._sync_failures_in_row + 1
            if self._metrics is not None:
                self._metrics.sync_finished(name, st.last_duration, ok=ok, at=now)

    def _update_pending_gauge(self) -> None:
        if self._metrics is not None:
            self._metrics.refresh_pending.set(len(self._refresh.pending))


def _grace(interval: float) -> int:
    """Misfire grace for an interval job: a run up to one interval late still happens
    (later ones are coalesced into the next run anyway), never less than 30 s."""
    return max(30, int(interval))
