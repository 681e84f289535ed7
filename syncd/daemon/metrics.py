"""Prometheus metrics of one syncd process, served at ``GET /metrics`` by the receiver.

Every :class:`Metrics` owns its own ``CollectorRegistry`` (never the global one), so a test
can build as many as it likes and two daemons in one interpreter never share counters.

The metric names are part of the operations contract (``docs/operations.md``)::

    syncd_api_requests_total{outcome}          upstream requests by outcome
    syncd_rate_limited_total                   429 answers from upstream
    syncd_budget_remaining{window}             requests left in the second|minute|day window
    syncd_last_success_timestamp_seconds       end of the last successful sync cycle (epoch)
    syncd_entries_upserted_total               entries inserted, updated or revived
    syncd_entries_tombstoned_total             entries marked deleted
    syncd_webhook_events_total{outcome}        webhook deliveries by outcome
    syncd_webhook_to_mirror_seconds            receipt of a delivery → entry applied
    syncd_sync_duration_seconds{kind}          duration of one poll/reconcile/refresh cycle
    syncd_sync_failures_total{kind}            cycles that ended with an error
    syncd_refresh_pending                      push windows waiting for a confirming re-scan
    syncd_verified_age_seconds{workspace,tier} age of the least recently verified window
    syncd_build_info{version,python}           always 1; the running syncd and Python versions

plus the standard ``process_*`` (CPU, memory, open files, start time) and ``python_info``
collectors. Every labelled counter and histogram starts with its known labels at 0, so a
rate or an alert works before the first event.
"""

from __future__ import annotations

import contextlib
import platform
import time
from collections.abc import Callable, Mapping
from datetime import datetime

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from syncd import __version__
from syncd.records import WindowOutcome

#: The budget windows ``syncd_budget_remaining`` is labelled with.
BUDGET_WINDOWS = ("second", "minute", "day")
#: Outcomes of one upstream attempt (``syncd.client.outcome_of``), present at 0 from the start.
API_OUTCOMES = (
    "ok",
    "rate_limited",
    "server_error",
    "auth_error",
    "client_error",
    "malformed",
    "transport_error",
    "error",
)
#: Outcomes of a webhook delivery: what applying it did, or why it was not applied.
WEBHOOK_OUTCOMES = (
    "inserted",
    "updated",
    "revived",
    "duplicate",
    "stale",
    "ignored",
    "refused",
    "unavailable",
    "not_found",
    "method_not_allowed",
    "too_large",
    "unauthorized",
)
#: Kinds of sync cycle the daemon runs.
SYNC_KINDS = ("poll", "reconcile", "refresh")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SYNC_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)

BudgetSource = Callable[[], Mapping[str, float]]


class Metrics:
    """The process's metrics, with small methods for the places that update them.

    The metric objects are public attributes as well, for callers that need the full
    ``prometheus_client`` API.
    """

    def __init__(
        self,
        *,
        budget_source: BudgetSource | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        """``budget_source``, when given, is called at every scrape and returns the remaining
        requests per window (``{"second": 9, "minute": 87, "day": 8123}``), so the gauge also
        reflects requests spent by other processes sharing the key (a cron ``--once``).
        ``now`` (epoch seconds) dates the ages of ``syncd_verified_age_seconds``."""
        self.registry = CollectorRegistry(auto_describe=True)
        self._budget_source = budget_source
        self._now = now
        r = self.registry
        self.api_requests = Counter(
            "syncd_api_requests", "Upstream API requests by outcome.", ["outcome"], registry=r
        )
        self.rate_limited = Counter(
            "syncd_rate_limited", "Upstream answers with status 429.", registry=r
        )
        self.budget_remaining = Gauge(
            "syncd_budget_remaining",
            "Requests left in the shared rate budget, per window.",
            ["window"],
            registry=r,
        )
        self.last_success = Gauge(
            "syncd_last_success_timestamp_seconds",
            "Unix time at which the last sync cycle finished successfully.",
            registry=r,
        )
        self.entries_upserted = Counter(
            "syncd_entries_upserted", "Time entries inserted, updated or revived.", registry=r
        )
        self.entries_tombstoned = Counter(
            "syncd_entries_tombstoned", "Time entries marked deleted (tombstoned).", registry=r
        )
        self.webhook_events = Counter(
            "syncd_webhook_events", "Webhook deliveries by outcome.", ["outcome"], registry=r
        )
        self.webhook_to_mirror = Histogram(
            "syncd_webhook_to_mirror_seconds",
            "Time from receiving a webhook delivery to its entry being applied in the mirror.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.sync_duration = Histogram(
            "syncd_sync_duration_seconds",
            "Duration of one sync cycle, by kind (poll, reconcile, refresh).",
            ["kind"],
            buckets=_SYNC_BUCKETS,
            registry=r,
        )
        self.sync_failures = Counter(
            "syncd_sync_failures",
            "Sync cycles that ended with an error, by kind.",
            ["kind"],
            registry=r,
        )
        self.refresh_pending = Gauge(
            "syncd_refresh_pending",
            "Date windows waiting for a push-triggered confirming re-scan.",
            registry=r,
        )
        self.verified_age = Gauge(
            "syncd_verified_age_seconds",
            "Seconds since the least recently verified window of a workspace's tier "
            "(hot, warm, cold) was scanned.",
            ["workspace", "tier"],
            registry=r,
        )
        self._verified_at: dict[tuple[str, str], float] = {}
        self.build_info = Gauge(
            "syncd_build_info",
            "Always 1; labelled with the running syncd and Python versions.",
            ["version", "python"],
            registry=r,
        )
        self.build_info.labels(version=__version__, python=platform.python_version()).set(1)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        for window in BUDGET_WINDOWS:
            self.budget_remaining.labels(window=window)
        for outcome in API_OUTCOMES:
            self.api_requests.labels(outcome=outcome)
        for outcome in WEBHOOK_OUTCOMES:
            self.webhook_events.labels(outcome=outcome)
        for kind in SYNC_KINDS:
            self.sync_duration.labels(kind=kind)
            self.sync_failures.labels(kind=kind)

    # ---------------------------------------------------------------- updates

    def request(self, outcome: str, count: int = 1) -> None:
        """Count upstream requests (``outcome``: ok, rate_limited, server_error, ...)."""
        self.api_requests.labels(outcome=outcome).inc(count)
        if outcome == "rate_limited":
            self.rate_limited.inc(count)

    def set_budget_remaining(self, window: str, remaining: float) -> None:
        """Set the remaining requests of one window; raises ``ValueError`` for an unknown one."""
        if window not in BUDGET_WINDOWS:
            raise ValueError(f"unknown budget window {window!r}")
        self.budget_remaining.labels(window=window).set(remaining)

    def window_applied(self, outcome: WindowOutcome) -> None:
        """Count what one applied window scan changed."""
        self.entries_upserted.inc(outcome.inserted + outcome.updated + outcome.revived)
        self.entries_tombstoned.inc(outcome.tombstoned)

    def sync_finished(self, kind: str, seconds: float, *, ok: bool, at: float) -> None:
        """Record one finished cycle; a success also moves the last-success timestamp."""
        self.sync_duration.labels(kind=kind).observe(seconds)
        if ok:
            self.last_success.set(at)
        else:
            self.sync_failures.labels(kind=kind).inc()

    def set_verified(self, workspace: str, tier: str, at: float | None) -> None:
        """When (epoch seconds) a tier's least recently verified window was scanned; the
        gauge shows its age at every scrape. None removes the series (unknown)."""
        if at is None:
            if self._verified_at.pop((workspace, tier), None) is not None:
                with contextlib.suppress(KeyError):  # not scraped since it was set
                    self.verified_age.remove(workspace, tier)
            return
        self._verified_at[(workspace, tier)] = at

    def set_freshness(self, freshness: Mapping[str, Mapping[str, datetime | None]]) -> None:
        """:meth:`set_verified` for every workspace and tier of the engine's ``freshness``
        setting as :func:`syncd.status.verified_times` reads it (aware datetimes, None when
        unknown)."""
        for workspace, tiers in freshness.items():
            for tier, at in tiers.items():
                self.set_verified(workspace, tier, None if at is None else at.timestamp())

    def webhook(self, outcome: str, seconds: float | None = None) -> None:
        """Count one delivery; ``seconds`` (receipt → applied) for accepted ones."""
        self.webhook_events.labels(outcome=outcome).inc()
        if seconds is not None:
            self.webhook_to_mirror.observe(seconds)

    # ---------------------------------------------------------------- exposition

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric.

        Raises whatever ``budget_source`` raises (the handler turns it into a 500).
        """
        if self._budget_source is not None:
            for window, remaining in self._budget_source().items():
                if window in BUDGET_WINDOWS:
                    self.budget_remaining.labels(window=window).set(remaining)
        now = self._now()
        for (workspace, tier), at in self._verified_at.items():
            self.verified_age.labels(workspace=workspace, tier=tier).set(max(0.0, now - at))
        return generate_latest(self.registry)

    async def handler(self, request: web.Request) -> web.Response:
        """aiohttp handler for ``GET /metrics``."""
        response = web.Response(body=self.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response
