"""The long-running service: scheduler, webhook receiver, subscription, systemd, status.

``Daemon.run`` builds the same :class:`~syncd.service.Runtime` as ``--once`` (one store,
one session, one budget, one client, one engine) and adds the APScheduler jobs (hot poll,
reconciliation sweep, push refresh, housekeeping), the aiohttp receiver with ``/healthz``
and ``/metrics``, the upstream webhook subscription, and systemd notifications. The first
SIGTERM/SIGINT stops taking new work, lets the window in flight commit and exits 0.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import structlog

from syncd import plan as planning
from syncd import systemd
from syncd.budget import BudgetLimits
from syncd.config import Config
from syncd.errors import SyncdError
from syncd.metrics import Metrics
from syncd.records import EventKind, RunReport, WebhookEvent
from syncd.scheduler import DaemonScheduler, Intervals
from syncd.service import (
    Runtime,
    StopSignals,
    budget_for,
    open_runtime,
    recorded_run,
    timestamp,
    utc_now,
)
from syncd.store import Store
from syncd.webhook import (
    create_receiver_app,
    new_token,
    redact_path,
    start_receiver,
    webhook_url,
)

log = structlog.get_logger("syncd.daemon")

SUBSCRIBED_EVENTS = (
    EventKind.TIMER_STARTED,
    EventKind.TIMER_STOPPED,
    EventKind.MANUAL_TIME_ADDED,
    EventKind.CLIENT_CREATED,
    EventKind.PROJECT_CREATED,
    EventKind.TASK_CREATED,
)
TOKEN_SETTING = "webhook_token"
SUBSCRIPTION_SETTING = "webhook_subscription"
PLAN_SETTING = "daemon_plan"
HEARTBEAT_SETTING = "daemon_heartbeat"
STOP_WAIT_SECONDS = 60.0
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

    @property
    def rt(self) -> Runtime:
        assert self.runtime is not None, "daemon not started"
        return self.runtime

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT.

        Raises ``ConfigError``, ``StoreError`` or ``OSError`` (listen address) on start-up.
        """
        config = self.config
        signals = StopSignals()
        signals.install()
        try:
            async with open_runtime(
                config,
                daily_share=config.limits.daemon_share,
                stop=signals.event,
                should_stop=self._should_stop,
                on_outcome=self.metrics.request,
            ) as runtime:
                self.runtime = runtime
                await self._serve(signals)
        finally:
            signals.uninstall()

    async def _serve(self, signals: StopSignals) -> None:
        config = self.config
        self.scheduler = DaemonScheduler(
            poll=self._poll,
            reconcile=self._reconcile,
            refresh=self._refresh,
            housekeeping=self._housekeeping,
            intervals=Intervals(
                poll_seconds=config.sync.interval_seconds,
                reconcile_seconds=config.sync.interval_seconds,
            ),
            debounce_seconds=config.webhooks.debounce_seconds,
            metrics=self.metrics,
        )
        runner = None
        if config.webhooks.listen:
            runner = await self._start_receiver()
        await self.scheduler.start()
        await self._write_heartbeat(started=True)
        systemd.notify_ready("syncd started; first poll running")
        watchdog = systemd.start_watchdog()
        log.info("daemon_started", listen=config.webhooks.listen or None, pid=os.getpid())
        try:
            await signals.event.wait()
        finally:
            systemd.notify_stopping("finishing the window in flight")
            clean = await self.scheduler.stop(STOP_WAIT_SECONDS)
            if watchdog is not None:
                watchdog.cancel()
            if runner is not None:
                await runner.cleanup()
            await self._write_heartbeat(stopped=True)
            log.info("daemon_stopped", clean=clean)

    def _should_stop(self) -> bool:
        return self.scheduler is not None and self.scheduler.should_stop()

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
        await self.rt.budget.prune()
        await self._refresh_budget_view()
        await self._update_plan()
        if self.config.webhooks.public_url and self.config.webhooks.listen:
            try:
                await ensure_subscription(self.rt, self._subscription_url(await self._token()))
            except SyncdError as exc:
                log.warning("webhook_subscription_failed", error=str(exc))
        await self._write_heartbeat()

    async def _after_cycle(self, report: RunReport) -> None:
        self.metrics.window_applied(report.outcome)
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
        token = await self.rt.store.get_setting(TOKEN_SETTING)
        if not token:
            token = new_token()
            await self.rt.store.set_setting(TOKEN_SETTING, token)
        return token

    def _subscription_url(self, token: str) -> str:
        return webhook_url(self.config.webhooks.public_url, token)

    async def _start_receiver(self) -> Any:
        webhooks = self.config.webhooks
        secret = webhooks.secret.get_secret_value() if webhooks.secret else ""
        app = create_receiver_app(
            token=await self._token(),
            secret=secret or None,
            max_body_bytes=webhooks.max_body_bytes,
            on_event=self._on_event,
            health=self._health,
            metrics=self.metrics,
            metrics_handler=self._metrics,
        )
        runner, port = await start_receiver(app, webhooks.listen_host, webhooks.listen_port)
        log.info("webhook_receiver_listening", host=webhooks.listen_host, port=port)
        return runner

    async def _on_event(self, event: WebhookEvent) -> str:
        """Record and apply a delivery, queue its confirming re-scan; never calls upstream."""
        outcome, window = await self.rt.engine.apply_event(event)
        if outcome != "duplicate":
            await self.rt.store.set_webhook_outcome(event.dedupe_key, outcome)
        if window is not None and self.scheduler is not None:
            self.scheduler.request_refresh(*window)
        return outcome

    async def _metrics(self, request: Any) -> Any:
        """``/metrics``: the budget gauge is read at scrape time (other processes spend too)."""
        await self._refresh_budget_view()
        return await self.metrics.handler(request)

    def _health(self) -> tuple[bool, dict]:
        assert self.scheduler is not None
        ok, details = self.scheduler.health()
        if self.plan is not None:
            details["plan"] = {
                "poll_interval_seconds": self.plan.poll_interval_seconds,
                "planned_per_day": round(self.plan.planned_per_day),
            }
        return ok, details

    # -- plan, budget, heartbeat ---------------------------------------------------------

    def _budget_remaining(self) -> dict[str, float]:
        return dict(self._budget_view)

    async def _refresh_budget_view(self) -> None:
        snapshot = await self.rt.budget.snapshot()
        self._budget_view = snapshot.remaining()

    async def _update_plan(self) -> None:
        """Recompute the daily request plan and stretch the job intervals to fit it."""
        config = self.config
        status = await self.rt.store.status()
        workspaces = status["workspaces"]
        if self.config.sync.workspaces:
            workspaces = [w for w in workspaces if w["id"] in self.config.sync.workspaces]
        hot_from = (utc_now().date() - timedelta(days=config.sync.hot_window_days - 1)).isoformat()
        running = 0  # running timers older than the hot window cost a scan each per poll
        for workspace in workspaces:
            dates = await self.rt.store.running_entry_dates(workspace["id"])
            running += len({d for d in dates if d < hot_from})
        oldest = [w["oldest_date"] for w in workspaces if w.get("oldest_date")]
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
            reconcile_period_days=config.sync.reconcile_period_days,
            # Push refreshes are PUSH priority, which the budget serves from the share the
            # daemon leaves to others; the plan need not reserve them again.
            push_reserve=0,
        )
        assert self.scheduler is not None
        self.scheduler.apply_plan(self.plan)
        # The sweep's slice per run follows the sweep's actual cadence.
        engine = self.rt.engine
        engine.settings = replace(
            engine.settings, interval_seconds=int(self.plan.reconcile_interval_seconds)
        )
        await self.rt.store.set_setting(PLAN_SETTING, json.dumps(self.plan.as_dict()))
        for warning in self.plan.warnings:
            log.warning("plan_warning", warning=warning)

    async def _write_heartbeat(self, *, started: bool = False, stopped: bool = False) -> None:
        previous = json.loads(await self.rt.store.get_setting(HEARTBEAT_SETTING) or "{}")
        beat = {
            "pid": os.getpid(),
            "started_at": timestamp() if started else previous.get("started_at"),
            "seen_at": timestamp(),
            "running": not stopped,
        }
        if self.scheduler is not None:
            beat["jobs"] = self.scheduler.status().get("jobs")
        await self.rt.store.set_setting(HEARTBEAT_SETTING, json.dumps(beat, default=str))


def _secret_digest(config: Config) -> str | None:
    secret = config.webhooks.secret.get_secret_value() if config.webhooks.secret else ""
    return hashlib.sha256(secret.encode()).hexdigest()[:16] if secret else None


async def ensure_subscription(runtime: Runtime, url: str) -> dict[str, Any]:
    """Keep exactly one active upstream subscription for ``url``.

    Reuses a matching active subscription, replaces a disabled one (or one made with another
    secret), deletes duplicates and the subscription of a previous address. Returns what is
    stored in the ``installation`` table. Raises ``ApiError`` or ``BudgetExhausted``.
    """
    store, client, config = runtime.store, runtime.client, runtime.config
    stored = json.loads(await store.get_setting(SUBSCRIPTION_SETTING) or "{}")
    digest = _secret_digest(config)
    wanted = {str(e) for e in SUBSCRIBED_EVENTS}
    subscriptions = await client.list_webhooks()
    keep = None
    if stored.get("secret_digest") == digest:
        keep = next(
            (
                s
                for s in subscriptions
                if s.url == url and s.status == "ACTIVE" and wanted <= set(s.events)
            ),
            None,
        )
    ours = {stored.get("url"), url}
    for subscription in subscriptions:
        if subscription.url in ours and subscription is not keep:
            await client.delete_webhook(subscription.id)
            log.info("webhook_unsubscribed", webhook_id=subscription.id, status=subscription.status)
    if keep is None:
        secret = config.webhooks.secret.get_secret_value() if config.webhooks.secret else ""
        keep = await client.subscribe_webhook(
            url, sorted(wanted), secret=secret or None, description="syncd mirror"
        )
        log.info("webhook_subscribed", webhook_id=keep.id)
    record = {
        "id": keep.id,
        "url": url,
        "status": keep.status,
        "events": sorted(keep.events),
        "secret_digest": digest,
        "checked_at": timestamp(),
    }
    await store.set_setting(SUBSCRIPTION_SETTING, json.dumps(record))
    return record


async def remove_subscriptions(runtime: Runtime) -> int:
    """Delete this installation's subscriptions upstream (``syncd webhooks remove``).

    Raises ``ApiError`` or ``BudgetExhausted``.
    """
    store, client = runtime.store, runtime.client
    stored = json.loads(await store.get_setting(SUBSCRIPTION_SETTING) or "{}")
    token = await store.get_setting(TOKEN_SETTING)
    ours = {stored.get("url")}
    if token and runtime.config.webhooks.public_url:
        ours.add(webhook_url(runtime.config.webhooks.public_url, token))
    removed = 0
    for subscription in await client.list_webhooks():
        if subscription.url in ours or subscription.id == stored.get("id"):
            await client.delete_webhook(subscription.id)
            removed += 1
    await store.set_setting(SUBSCRIPTION_SETTING, None)
    return removed


def describe_status(config: Config, store: Store) -> dict[str, Any]:
    """What ``syncd status`` reports; reads only the mirror (works while the daemon runs).

    Raises ``StoreError``.
    """
    data = store.status()
    now = utc_now()
    for workspace in data["workspaces"]:
        # Freshness is how long ago the hot window was last verified (a push re-scan of one
        # day does not make the whole recent past fresh).
        last = workspace.get("last_hot_scan_at") or workspace.get("last_scan_at")
        workspace["freshness_lag_seconds"] = (
            round((now - _parse_ts(last)).total_seconds()) if last else None
        )
    key = config.api.key
    budget: dict[str, Any] = {}
    if key is not None:
        snapshot = _budget_snapshot(config, store, key.get_secret_value())
        budget = {
            "used_this_minute": snapshot.used_this_minute,
            "used_today": snapshot.used_today,
            "per_day": snapshot.per_day,
            "remaining": snapshot.remaining(),
            "not_before": snapshot.not_before,
        }
    data["budget"] = budget
    data["plan"] = json.loads(store.get_setting(PLAN_SETTING) or "null")
    subscription = json.loads(store.get_setting(SUBSCRIPTION_SETTING) or "null")
    if subscription and subscription.get("url"):
        subscription["url"] = redact_path(subscription["url"])  # the token is a credential
    data["webhook_subscription"] = subscription
    data["daemon"] = json.loads(store.get_setting(HEARTBEAT_SETTING) or "null")
    return data


def _budget_snapshot(config: Config, store: Store, key: str) -> Any:
    budget = budget_for(
        config, store.db, key, daily_share=config.limits.daemon_share, runner=_inline
    )
    return asyncio.run(budget.snapshot())


async def _inline(fn: Any, *args: Any) -> Any:
    return fn(*args)


def _parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
