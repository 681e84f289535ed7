"""Composition root and lifecycle, shared by ``syncd --once`` and the daemon.

One process holds one :class:`Runtime`: one mirror store (with its DB thread), one
``aiohttp.ClientSession``, one persisted rate budget for the key, one HTTP client and one
sync engine, all watching one :class:`~syncd.shutdown.Shutdown`. ``run_once`` and
``run_daemon`` build it the same way and tear it down the same way; the daemon adds the
scheduler, the webhook receiver and systemd notifications (``syncd.daemon.runner``).
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import structlog

from syncd import __version__
from syncd.budget import BudgetLimits, PriorityShare, RateBudget, key_id_for
from syncd.client import HttpClient, RetryPolicy
from syncd.config import Config
from syncd.errors import ShutdownRequested, StoreError
from syncd.instances import SharedWork, new_instance_id
from syncd.records import Priority, RunReport, format_timestamp
from syncd.shutdown import Shutdown
from syncd.store import AsyncStore, Store
from syncd.store.integrity import check
from syncd.store.ledgers import budget_ledger
from syncd.sync import ScanProgress, SyncEngine, SyncSettings

log = structlog.get_logger("syncd.service")


def utc_now() -> datetime:
    return datetime.now(UTC)


def timestamp(moment: datetime | None = None) -> str:
    """``moment`` (default now) as ISO 8601 UTC text with milliseconds."""
    return format_timestamp(moment or utc_now())


#: A one-shot run has no pushes of its own to keep room for: its backfill and sweep may use
#: more of the minute than the daemon's (which keeps 20 %), leaving 5 % for a daemon's pushes
#: on the same key.
ONCE_SHARES = {
    Priority.BACKFILL: PriorityShare(minute=0.95, day=0.9),
    Priority.RECONCILE: PriorityShare(minute=0.95, day=0.85),
}


def budget_for(
    config: Config,
    store: Store,
    key: str,
    *,
    daily_share: float,
    runner: Any = None,
    shares: Mapping[Priority, PriorityShare] | None = None,
    shutdown: Shutdown | None = None,
    wrap_sleep: Callable[[Sleep], Sleep] | None = None,
) -> RateBudget:
    """The persisted rate budget of ``key`` in the mirror ``store``.

    With ``shutdown``, a wait for the budget ends with ``ShutdownRequested`` as soon as a
    stop is requested, so a stop signal is not held up by a spent minute. ``wrap_sleep`` wraps
    the budget's waits (the terminal progress shows the long ones).
    """
    limits = config.limits
    sleep: Sleep = asyncio.sleep
    if shutdown is not None:
        sleep = functools.partial(shutdown.sleep, reason=BUDGET_WAIT_STOPPED)
    return RateBudget(
        budget_ledger(store, key_id_for(key)),
        limits=BudgetLimits(
            per_second=limits.per_second,
            per_minute=limits.per_minute,
            per_day=limits.per_day,
            safety_margin=limits.safety_margin,
        ),
        daily_share=daily_share,
        runner=runner,
        shares=shares,
        sleep=sleep if wrap_sleep is None else wrap_sleep(sleep),
    )


Sleep = Callable[[float], Awaitable[None]]
BUDGET_WAIT_STOPPED = "stop requested while waiting for the rate budget"


@dataclass
class Runtime:
    """Everything one syncd process holds while it runs."""

    config: Config
    store: AsyncStore
    session: aiohttp.ClientSession
    budget: RateBudget
    client: HttpClient
    engine: SyncEngine
    work: SharedWork | None = None  # this process's leases on the key's work (None: alone)


class StopSignals:
    """SIGTERM/SIGINT handling: the first signal requests ``shutdown`` (a clean stop: the
    window in flight is committed), the second aborts. SIGHUP is logged and ignored
    (reloading the config is not supported).
    """

    def __init__(self, shutdown: Shutdown | None = None) -> None:
        self.shutdown = shutdown or Shutdown()
        self._installed: list[int] = []

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self._handle, signum)
                self._installed.append(signum)
        with suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self._reload_unsupported)
            self._installed.append(signal.SIGHUP)

    @staticmethod
    def _reload_unsupported() -> None:
        log.warning("sighup_ignored", reason="reloading the config is not supported; restart")

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in self._installed:
            loop.remove_signal_handler(signum)
        self._installed.clear()

    def _handle(self, signum: int) -> None:
        if self.shutdown.requested:
            log.warning("stop_aborted", signal=signal.Signals(signum).name)
            os._exit(130)  # a second signal aborts at once; WAL keeps the mirror intact
        log.info("stop_requested", signal=signal.Signals(signum).name)
        self.shutdown.request()


@asynccontextmanager
async def open_runtime(
    config: Config,
    *,
    daily_share: float = 1.0,
    shares: Mapping[Priority, PriorityShare] | None = None,
    shutdown: Shutdown | None = None,
    force_delete: bool = False,
    on_window: Callable[[ScanProgress], None] | None = None,
    on_outcome: Callable[[str], None] | None = None,
    wrap_sleep: Callable[[Sleep], Sleep] | None = None,
    daemon: bool = False,
    on_lead: Callable[[], object] | None = None,
    on_unheld: Callable[[], object] | None = None,
) -> AsyncIterator[Runtime]:
    """Open the store, the HTTP session, the budget, the client and the engine; close them.
    The budget's waits, the client and the engine all watch ``shutdown``.

    The process's leases on the key's work (:class:`~syncd.instances.SharedWork`) are kept
    while the runtime is open and given back when it closes: a ``daemon`` keeps its share of
    the workspaces between rounds; with ``on_lead`` it also competes for the key's webhook
    subscription and ``on_lead`` is called when it gets it; ``on_unheld`` is called when a
    heartbeat finds a workspace nobody holds (its holder died).

    Raises ``ConfigError`` (no API key), ``StoreError``/``SchemaTooNew`` (database).
    """
    key = config.api.key_value()
    store = await AsyncStore.open(config.database.location)
    try:
        budget = budget_for(
            config,
            store.store,
            key,
            daily_share=daily_share,
            runner=store.call_budget,
            shares=shares,
            shutdown=shutdown,
            wrap_sleep=wrap_sleep,
        )
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=10, limit_per_host=10, ttl_dns_cache=300),
            headers={"User-Agent": f"syncd/{__version__}"},
        )
        try:
            client = HttpClient(
                session,
                budget,
                api_key=key,
                api_url=config.api.url,
                app_url=config.api.app_url,
                version=config.api.version or None,
                retry=RetryPolicy(
                    max_attempts=config.api.max_attempts,
                    total_timeout=config.api.retry_timeout_seconds,
                ),
                timeout=aiohttp.ClientTimeout(
                    total=config.api.timeout_seconds,
                    sock_connect=min(10, config.api.timeout_seconds),
                ),
                on_outcome=on_outcome,
                shutdown=shutdown,
            )
            instance_id = config.sync.instance_id or new_instance_id()
            # (a one-shot run's stderr stays one line when it fails: its id is logged at debug)
            started = log.info if daemon else log.debug
            started("instance_started", instance=instance_id, pid=os.getpid(), daemon=daemon)
            async with SharedWork(
                store,
                key_id=key_id_for(key),
                instance_id=instance_id,
                ttl_seconds=config.sync.lease_seconds,
                daemon=daemon,
                wants_lead=on_lead is not None,
                on_lead=on_lead,
                on_unheld=on_unheld,
            ) as work:
                engine = SyncEngine(
                    client,
                    store,
                    SyncSettings.from_config(config, force_delete=force_delete),
                    clock=utc_now,
                    shutdown=shutdown,
                    on_window=on_window,
                    leases=work,
                )
                yield Runtime(config, store, session, budget, client, engine, work)
        finally:
            await session.close()
            with suppress(StoreError):  # the next grant's view is corrected anyway
                await budget.flush()
    finally:
        await store.close()


@asynccontextmanager
async def recorded_run(runtime: Runtime, kind: str) -> AsyncIterator[RunReport]:
    """Record a run in ``sync_runs``: what it changed, requests used, 429s, success.

    The run counts as successful when the body returns or stops on request
    (``ShutdownRequested`` is swallowed here: everything committed is kept). Other errors
    are recorded and re-raised.
    """
    report = RunReport(kind=kind, started_at=timestamp())
    stats = runtime.client.stats
    requests_before, limited_before = stats.requests, stats.rate_limited
    run_id = await runtime.store.start_run(kind, report.started_at)
    try:
        yield report
        report.ok = not report.unverified
        if report.unverified:
            shown = ", ".join(report.unverified[:5])
            more = len(report.unverified) - 5
            report.error = (
                f"{len(report.unverified)} window(s) could not be verified complete, nothing "
                f"was tombstoned there: {shown}" + (f" and {more} more" if more > 0 else "")
            )
    except ShutdownRequested as exc:
        report.ok = True
        report.error = str(exc)
    except Exception as exc:
        report.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        report.finished_at = timestamp()
        report.requests = stats.requests - requests_before
        report.rate_limited = stats.rate_limited - limited_before
        await asyncio.shield(runtime.store.finish_run(run_id, report))


@dataclass(frozen=True)
class RunWatchers:
    """What a caller watches a one-shot run with (the CLI's terminal progress): the engine's
    ``on_window``, the client's ``on_outcome`` and a wrapper of the budget's sleep."""

    on_window: Callable[[ScanProgress], None] | None = None
    on_outcome: Callable[[str], None] | None = None
    wrap_sleep: Callable[[Sleep], Sleep] | None = None


async def run_once(
    config: Config,
    *,
    force_delete: bool = False,
    full: bool = False,
    watchers: RunWatchers = RunWatchers(),
) -> RunReport:
    """One sync cycle (``syncd --once``); SIGTERM/SIGINT stop it after the current window.
    With ``full`` (``--once --full``), every window of the history is re-verified as well,
    continuing a ``--full`` that was stopped or killed.

    Returns the run's report (``ok`` also when stopped by a signal: every committed window
    is kept). Raises ``ApiError``, ``BudgetExhausted``, ``MassDeleteError``, ``StoreError``
    or ``ConfigError`` when the sync fails; ``CorruptDatabase`` before syncing when the
    mirror fails its integrity check (``PRAGMA quick_check``, run by every one-shot run).
    """
    signals = StopSignals()
    signals.install()
    try:
        async with open_runtime(
            config,
            shares=ONCE_SHARES,
            shutdown=signals.shutdown,
            force_delete=force_delete,
            on_window=watchers.on_window,
            on_outcome=watchers.on_outcome,
            wrap_sleep=watchers.wrap_sleep,
        ) as runtime:
            await check(runtime.store, now=utc_now())
            async with recorded_run(runtime, "once") as report:
                if full:
                    await runtime.engine.full(report)
                else:
                    await runtime.engine.run_once(report)
        return report
    finally:
        signals.uninstall()
