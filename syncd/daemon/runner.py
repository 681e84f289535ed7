"""The long-running service: scheduler, webhook receiver, subscription, systemd, status.

``Daemon.run`` builds the same :class:`~syncd.service.Runtime` as ``--once`` (one store,
one session, one budget, one client, one engine) and adds the APScheduler jobs (hot poll,
reconciliation sweep, push refresh, housekeeping), the aiohttp receiver with ``/healthz``,
``/metrics`` and the status page at ``/``, the upstream webhook subscription, and systemd
notifications. The first
SIGTERM/SIGINT stops taking new work, lets the window in flight commit and exits 0.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

import structlog
from aiohttp import web

from syncd import __version__, status_page
from syncd.budget import BudgetLimits
from syncd.config import Config, RetentionConfig
from syncd.daemon import plan as planning
from syncd.daemon import systemd
from syncd.daemon.metrics import Metrics
from syncd.daemon.scheduler import HOUSEKEEPING, POLL, DaemonScheduler, Intervals
from syncd.daemon.subscriptions import (
    SUBSCRIBED_EVENTS,
    ensure_subscription,
    move_secrets_out_of_mirror,
)
from syncd.daemon.webhook import (
    REFUSED_RESCAN_SECONDS,
    Refusal,
    create_receiver_app,
    new_token,
    start_receiver,
    webhook_url,
)
from syncd.errors import CorruptDatabase, InvalidWebhook, SyncdError
from syncd.log import register_secret
from syncd.records import RunReport, WebhookEvent
from syncd.secrets import keep_token
from syncd.service import (
    Runtime,
    StopSignals,
    open_runtime,
    recorded_run,
    timestamp,
    utc_now,
)
from syncd.shutdown import Shutdown
from syncd.status import (
    HEARTBEAT_SETTING,
    PLAN_SETTING,
    Heartbeat,
    parse_timestamp,
    verified_times,
)
from syncd.store import AsyncStore
from syncd.store.housekeeping import (
    PRUNE_CHUNK,
    SCAN_SPAN,
    delete_expired,
    expired_rows,
    last_rowid,
)
from syncd.store.integrity import check, check_if_due
from syncd.store.status_reads import WorkspaceCounts
from syncd.sync import FRESHNESS_SETTING

log = structlog.get_logger("syncd.daemon")

#: The mirror setting where older versions kept the webhook token (moved to a file at start).
RETENTION_SETTING = "retention_pruned_at"
#: The webhook ledger and old tombstones are pruned once per this interval.
PRUNE_INTERVAL = timedelta(days=1)
STOP_WAIT_SECONDS = 60.0
#: The status page loads nothing and runs no script; its CSS is inline.
PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
DEFAULT_HISTORY_DAYS = 365


class Daemon:
    """One daemon process; ``await Daemon(config).run()`` returns after a clean stop."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics(budget_source=self._budget_remaining)
        self.runtime: Runtime | None = None
        self.scheduler: DaemonScheduler | None = None
        self.plan: planning.Plan | None = None
        self._budget_view: dict[str, float] = {}
        self._workspace_count = 0
        self._stop: Shutdown | None = None
        self._damaged: CorruptDatabase | None = None
        self._webhook_token: str | None = None
        self._listening: str | None = None  # the bound listen address, once serving

    @property
    def rt(self) -> Runtime:
        assert self.runtime is not None, "daemon not started"
        return self.runtime

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT, or until the mirror is found damaged.

        Raises ``ConfigError``, ``StoreError`` or ``OSError`` (listen address) on start-up,
        ``CorruptDatabase`` when the integrity check at start (or the daily one, or any job)
        finds the mirror damaged.
        """
        config = self.config
        signals = StopSignals()
        signals.install()
        self._stop = signals.shutdown
        try:
            async with open_runtime(
                config,
                daily_share=config.limits.daemon_share,
                shutdown=signals.shutdown,
                on_window=self._progress,
                on_outcome=self.metrics.request,
                daemon=True,
                on_lead=self._became_leader if self._subscribes else None,
                on_unheld=self._work_freed,
            ) as runtime:
                self.runtime = runtime
                await check(runtime.store, now=utc_now())
                await self._serve(signals)
        finally:
            signals.uninstall()
        if self._damaged is not None:
            raise self._damaged

    async def _serve(self, signals: StopSignals) -> None:
        config = self.config
        await move_secrets_out_of_mirror(self.rt.store, config)
        self.scheduler = DaemonScheduler(
            poll=self._stops_when_damaged(self._poll),
            reconcile=self._stops_when_damaged(self._reconcile),
            refresh=self._stops_when_damaged(self._refresh),
            housekeeping=self._stops_when_damaged(self._housekeeping),
            intervals=Intervals(
                poll_seconds=config.sync.interval_seconds,
                reconcile_seconds=config.sync.interval_seconds,
            ),
            debounce_seconds=config.webhooks.debounce_seconds,
            metrics=self.metrics,
            shutdown=signals.shutdown,
        )
        runner = None
        if config.webhooks.listen:
            runner = await self._start_receiver()
        await self.scheduler.start()
        await self._write_heartbeat(started=True)
        systemd.notify_ready("syncd started; first poll running")
        watchdog = systemd.start_watchdog()
        log.info(
            "daemon_started",
            version=__version__,
            config=str(config.source) if config.source else None,
            database=str(config.database.path),
            listen=self._listening,
            pid=os.getpid(),
            instance=None if self.rt.work is None else self.rt.work.instance_id,
        )
        try:
            await signals.shutdown.wait()
        finally:
            systemd.notify_stopping("finishing the window in flight")
            clean = await self.scheduler.stop(STOP_WAIT_SECONDS)
            if watchdog is not None:
                watchdog.cancel()
            if runner is not None:
                await runner.cleanup()
            await self._write_heartbeat(stopped=True)
            log.info("daemon_stopped", clean=clean)

    @property
    def _subscribes(self) -> bool:
        """Whether this daemon keeps an upstream webhook subscription (when it leads)."""
        return bool(self.config.webhooks.public_url and self.config.webhooks.listen)

    def _became_leader(self) -> None:
        """This daemon took the key's leader lease: check the subscription now (at start,
        the first housekeeping run does)."""
        if self.scheduler is not None and self.scheduler.started and not self.scheduler.stopping:
            self.scheduler.run_now(HOUSEKEEPING)

    def _work_freed(self) -> None:
        """A workspace lost its holder (a dead instance's lease ran out): poll now, which
        takes it (within this daemon's share) and scans its hot window, instead of leaving it
        until the next scheduled poll."""
        if self.scheduler is not None and self.scheduler.started and not self.scheduler.stopping:
            self.scheduler.run_now(POLL)

    def _progress(self, _window: object) -> None:
        if self.scheduler is not None:
            self.scheduler.progress()

    def _stops_when_damaged(self, job: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        """``job``, stopping the daemon (which then exits 1) when it finds the mirror
        damaged: nothing more is written to a corrupt file."""

        async def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return await job(*args, **kwargs)
            except CorruptDatabase as exc:
                if self._damaged is None:
                    self._damaged = exc
                    log.error("mirror_damaged", error=str(exc))
                    if self._stop is not None:
                        self._stop.request()
                raise

        return guarded

    # -- jobs ----------------------------------------------------------------------------

    async def _poll(self) -> None:
        async with recorded_run(self.rt, "poll") as report:
            await self.rt.engine.poll(report)
        self._workspace_count = report.workspaces
        await self._after_cycle(report)

    async def _reconcile(self) -> None:
        async with recorded_run(self.rt, "reconcile") as report:
            await self.rt.engine.reconcile(report)
        await self._after_cycle(report)

    async def _refresh(self, windows: set[tuple[str, str]]) -> None:
        async with recorded_run(self.rt, "push") as report:
            await self.rt.engine.refresh(windows, report)
        await self._after_cycle(report)

    async def _housekeeping(self) -> None:
        await check_if_due(self.rt.store, now=utc_now())
        await self.rt.budget.prune()
        await self._refresh_budget_view()
        await self._update_plan()
        work = self.rt.work
        if self._subscribes and work is not None and not work.leading:
            log.debug("webhook_subscription_left_to_leader", instance=work.instance_id)
        elif self._subscribes:
            try:
                await ensure_subscription(self.rt, self._subscription_url(await self._token()))
            except SyncdError as exc:
                log.warning("webhook_subscription_failed", error=str(exc))
        await self._write_heartbeat()
        await prune_if_due(self.rt.store, self.config.retention, utc_now())

    async def _after_cycle(self, report: RunReport) -> None:
        self.metrics.window_applied(report.outcome)
        self.metrics.set_freshness(
            verified_times(await self.rt.store.get_setting(FRESHNESS_SETTING))
        )
        await self._refresh_budget_view()
        if self.plan is None or (report.workspaces and report.workspaces != self.plan.workspaces):
            await self._update_plan()
        await self._write_heartbeat()
        systemd.notify_status(
            f"{report.kind} at {report.finished_at}: +{report.outcome.inserted} "
            f"~{report.outcome.updated} -{report.outcome.tombstoned}, "
            f"{report.requests} requests, {report.rate_limited} 429s"
        )

    # -- webhooks ------------------------------------------------------------------------

    async def _token(self) -> str:
        """The webhook path token, from its file (made on first use); masked in every log
        line from then on. Raises ``StoreError`` when the file cannot be read or written."""
        if self._webhook_token is None:
            path = self.config.webhook_token_path
            token = await asyncio.to_thread(keep_token, path, new_token())
            register_secret(token)
            self._webhook_token = token
        return self._webhook_token

    def _subscription_url(self, token: str) -> str:
        return webhook_url(self.config.webhooks.public_url, token)

    async def _start_receiver(self) -> Any:
        webhooks = self.config.webhooks
        secret = webhooks.secret.get_secret_value() if webhooks.secret else ""
        app = create_receiver_app(
            token=await self._token(),
            secret=secret or None,
            require_signature=webhooks.require_signature,
            max_body_bytes=webhooks.max_body_bytes,
            accepted_kinds=frozenset(SUBSCRIBED_EVENTS),
            on_event=self._stops_when_damaged(self._on_push),
            on_refused=self._on_refused,
            health=self._health,
            metrics=self.metrics,
            metrics_handler=self._metrics,
            page=self._page,
        )
        runner, port = await start_receiver(app, webhooks.listen_host, webhooks.listen_port)
        host = webhooks.listen_host or "0.0.0.0"
        self._listening = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        log.info("webhook_receiver_listening", host=webhooks.listen_host, port=port)
        if not secret and not is_loopback(webhooks.listen_host or ""):
            log.warning(
                "webhook_receiver_exposed",
                host=webhooks.listen_host,
                port=port,
                advice="the listener takes connections from other hosts and no webhooks.secret "
                "is set: listen on 127.0.0.1 behind a reverse proxy, or set a secret",
            )
        return runner

    async def _on_event(self, event: WebhookEvent) -> str:
        """Record and apply a delivery, queue its confirming re-scan; never calls upstream."""
        outcome, windows = await self.rt.engine.apply_event(event)
        if self.scheduler is not None:
            for window in windows:
                self.scheduler.request_refresh(*window)
        return outcome

    async def _on_push(self, event: WebhookEvent) -> str:
        """``_on_event`` for a workspace the mirror holds. Raises ``InvalidWebhook`` (the
        receiver ledgers the delivery as refused) for a workspace not in ``sync.workspaces``
        or, when that is empty, one the mirror does not know."""
        workspace = event.workspace_id
        if workspace is not None and workspace not in await self._mirrored_workspaces():
            wanted = "in sync.workspaces" if self.config.sync.workspaces else "known to the mirror"
            raise InvalidWebhook(f"workspace {workspace} is not {wanted}", status=422)
        return await self._on_event(event)

    async def _on_refused(self, refusal: Refusal) -> None:
        """Ledger a refused delivery and, at most once per ``REFUSED_RESCAN_SECONDS``, queue
        a re-scan of every mirrored workspace's hot window (whatever the delivery announced).
        Raises ``StoreError``."""
        store = self.rt.store
        await store.call(
            store.store.record_refused_webhook,
            dedupe_key=refusal.dedupe_key,
            kind=refusal.kind,
            object_id=refusal.object_id,
            workspace_id=refusal.workspace_id,
            delivery_id=refusal.delivery_id,
            reason=refusal.reason,
            body=refusal.body_text,
            body_bytes=refusal.body_bytes,
            received_at=timestamp(),
        )
        now = asyncio.get_running_loop().time()
        if self.scheduler is None or now < self._refused_rescan_after:
            return
        self._refused_rescan_after = now + REFUSED_RESCAN_SECONDS
        today = utc_now().date()
        for workspace in sorted(await self._mirrored_workspaces()):
            for back in range(self.config.sync.hot_window_days):
                day = (today - timedelta(days=back)).isoformat()
                self.scheduler.request_refresh(workspace, day)

    _refused_rescan_after = 0.0

    async def _mirrored_workspaces(self) -> set[str]:
        """``sync.workspaces`` or, when that is empty, every workspace the mirror knows."""
        wanted = self.config.sync.workspaces
        if wanted:
            return set(wanted)
        store = self.rt.store
        return await store.call(store.store.workspace_ids)

    async def _metrics(self, request: Any) -> Any:
        """``/metrics``: the budget gauge is read at scrape time (other processes spend too)."""
        await self._refresh_budget_view()
        return await self.metrics.handler(request)

    async def _page(self, request: Any) -> Any:
        """``GET /``: the status page, built from the mirror and the health details in a
        worker thread on a read connection of its own (the counts take a while on a large
        mirror; the DB thread's commits and budget grants never wait behind them)."""
        _ok, health = self._health()
        html = await asyncio.to_thread(
            status_page.build_from_file,
            self.config,
            now=utc_now(),
            health=health,
            token=self._webhook_token,
        )
        return web.Response(
            text=html,
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": "no-store", "Content-Security-Policy": PAGE_POLICY},
        )

    def _health(self) -> tuple[bool, dict]:
        assert self.scheduler is not None
        health = self.scheduler.health()
        details = health.as_json()
        if self.plan is not None:
            details["plan"] = {
                "poll_interval_seconds": self.plan.poll_interval_seconds,
                "planned_per_day": round(self.plan.planned_per_day),
            }
        return health.ok, details

    # -- plan, budget, heartbeat ---------------------------------------------------------

    def _budget_remaining(self) -> dict[str, float]:
        return dict(self._budget_view)

    async def _refresh_budget_view(self) -> None:
        snapshot = await self.rt.budget.snapshot()
        self._budget_view = snapshot.remaining()

    async def _update_plan(self) -> None:
        """Recompute the daily request plan and stretch the job intervals to fit it."""
        config = self.config
        store = self.rt.store
        counts = await store.status()
        workspaces = list(counts.workspaces)
        if self.config.sync.workspaces:
            workspaces = [w for w in workspaces if w.id in self.config.sync.workspaces]
        hot_from = (utc_now().date() - timedelta(days=config.sync.hot_window_days - 1)).isoformat()
        running = 0  # running timers older than the hot window cost a scan each per poll
        for workspace in workspaces:
            dates = await store.running_entry_dates(workspace.id)
            running += len({d for d in dates if d < hot_from})
        oldest = [w.progress.oldest_date for w in workspaces if w.progress.oldest_date]
        history_days = (
            (utc_now().date() - date.fromisoformat(min(oldest))).days
            if oldest
            else DEFAULT_HISTORY_DAYS
        )
        per_day = BudgetLimits(
            per_day=config.limits.per_day, safety_margin=config.limits.safety_margin
        ).effective()[2]
        self.plan = planning.make_plan(
            per_day=per_day,
            daemon_share=config.limits.daemon_share,
            workspaces=max(1, len(workspaces)),
            # + 1: every poll lists the workspaces first
            requests_per_poll=planning.hot_requests_per_poll(max(1, len(workspaces)), running) + 1,
            interval_seconds=config.sync.interval_seconds,
            history_days=history_days,
            reconcile_period_days=config.sync.reconcile_period_hours / 24,
            warm_days=max(0, config.sync.warm_window_days - config.sync.hot_window_days),
            warm_period_minutes=config.sync.warm_period_minutes,
            window_days=_typical_window_days(config, workspaces, history_days),
            # Push refreshes are PUSH priority, which the budget serves from the share the
            # daemon leaves to others; the plan need not reserve them again.
            push_reserve=0,
        )
        assert self.scheduler is not None
        self.scheduler.apply_plan(self.plan)
        # The sweep's slice per run follows the sweep's actual cadence, and the tiers' passes
        # the periods the plan can pay for.
        engine = self.rt.engine
        promised = {t.name: t.promised_seconds for t in self.plan.tiers}
        engine.settings = replace(
            engine.settings,
            interval_seconds=int(self.plan.reconcile_interval_seconds),
            warm_period_minutes=max(
                config.sync.warm_period_minutes,
                math.ceil((promised.get("warm") or 0) / 60),
            ),
            reconcile_period_hours=max(
                config.sync.reconcile_period_hours,
                math.ceil((promised.get("cold") or 0) / 3600),
            ),
        )
        await self.rt.store.set_setting(PLAN_SETTING, json.dumps(self.plan.as_dict()))
        for warning in self.plan.warnings:
            log.warning("plan_warning", warning=warning)

    async def _write_heartbeat(self, *, started: bool = False, stopped: bool = False) -> None:
        previous = Heartbeat.from_json(await self.rt.store.get_setting(HEARTBEAT_SETTING))
        beat = Heartbeat(
            pid=os.getpid(),
            started_at=timestamp() if started else (previous.started_at if previous else None),
            seen_at=timestamp(),
            running=not stopped,
            jobs=None if self.scheduler is None else self.scheduler.status().get("jobs"),
        )
        await self.rt.store.set_setting(HEARTBEAT_SETTING, beat.to_json())


def _typical_window_days(
    config: Config, workspaces: list[WorkspaceCounts], history_days: int
) -> int:
    """The days a sweep window spans on average: the window target over the mirror's entries
    per workspace and day, within ``[window_min_days, window_max_days]``."""
    s = config.sync
    live = sum(w.live_entries for w in workspaces)
    per_day = live / max(1, len(workspaces)) / max(1, history_days)
    days = s.window_max_days if per_day == 0 else int(s.window_target_entries / per_day)
    return max(s.window_min_days, min(s.window_max_days, days))


def is_loopback(host: str) -> bool:
    """Whether a listener on ``host`` takes connections from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name may resolve to any interface


async def prune_if_due(
    store: AsyncStore, retention: RetentionConfig, now: datetime
) -> dict[str, int] | None:
    """Delete webhook ledger rows and tombstones older than ``[retention]`` says, when the
    last pruning (recorded in the mirror) is a day or more before ``now`` (or after it: the
    clock was set back). Returns the rows deleted per kind, or None when it was not due.

    Raises ``StoreError``.
    """
    last = await store.get_setting(RETENTION_SETTING)
    try:
        if last is not None and abs(now - parse_timestamp(last)) < PRUNE_INTERVAL:
            return None
    except ValueError:
        pass  # not a timestamp: prune, and write a good one
    pruned: dict[str, int] = {}
    for kind, days in (
        ("webhook_events", retention.webhook_events_days),
        ("tombstones", retention.tombstones_days),
    ):
        if days == 0:
            continue  # kept for ever
        before = timestamp(now - timedelta(days=days))
        pruned[kind] = 0
        top = await store.call(last_rowid, store.store, kind)
        for first in range(1, top + 1, SCAN_SPAN):
            last = first + SCAN_SPAN - 1
            rowids = await store.call(expired_rows, store.store, kind, before, first, last)
            for start in range(0, len(rowids), PRUNE_CHUNK):
                chunk = rowids[start : start + PRUNE_CHUNK]
                pruned[kind] += await store.call(delete_expired, store.store, kind, chunk, before)
    await store.set_setting(RETENTION_SETTING, timestamp(now))
    log.info("retention_pruned", **pruned)
    return pruned


async def run_daemon(config: Config) -> None:
    """Run the long-lived service until SIGTERM/SIGINT.

    Raises ``ConfigError``, ``StoreError`` or ``OSError`` (listen address) on start-up.
    """
    await Daemon(config).run()
