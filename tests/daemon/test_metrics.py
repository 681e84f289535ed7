"""Metrics: own registry per instance, helper methods, exposition."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncd.daemon.metrics import Metrics
from syncd.records import WindowOutcome


def samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_each_instance_has_its_own_registry():
    a, b = Metrics(), Metrics()
    a.request("ok")
    assert samples(a)[("syncd_api_requests_total", (("outcome", "ok"),))] == 1
    assert samples(b)[("syncd_api_requests_total", (("outcome", "ok"),))] == 0


def test_updates_show_in_the_exposition():
    remaining = {"second": 9, "minute": 87, "day": 8123}
    m = Metrics(budget_source=lambda: remaining)
    m.request("ok", 3)
    m.request("rate_limited")
    m.window_applied(WindowOutcome(inserted=2, updated=1, revived=1, tombstoned=4, unchanged=9))
    m.sync_finished("poll", 1.5, ok=True, at=1_700_000_000.0)
    m.sync_finished("reconcile", 0.5, ok=False, at=1_700_000_100.0)
    m.webhook("applied", 0.004)
    m.webhook("not_found")
    m.set_budget_remaining("day", 100)  # overridden by budget_source at scrape time
    got = samples(m)
    assert got[("syncd_api_requests_total", (("outcome", "ok"),))] == 3
    assert got[("syncd_rate_limited_total", ())] == 1
    assert got[("syncd_entries_upserted_total", ())] == 4
    assert got[("syncd_entries_tombstoned_total", ())] == 4
    assert got[("syncd_last_success_timestamp_seconds", ())] == 1_700_000_000.0
    assert got[("syncd_sync_failures_total", (("kind", "reconcile"),))] == 1
    assert got[("syncd_sync_duration_seconds_count", (("kind", "poll"),))] == 1
    assert got[("syncd_webhook_events_total", (("outcome", "applied"),))] == 1
    assert got[("syncd_webhook_to_mirror_seconds_count", ())] == 1
    assert got[("syncd_budget_remaining", (("window", "day"),))] == 8123
    assert got[("syncd_budget_remaining", (("window", "second"),))] == 9


def test_unknown_budget_window_is_refused():
    with pytest.raises(ValueError):
        Metrics().set_budget_remaining("hour", 1)


def test_every_counter_is_present_at_zero_before_any_event():
    got = samples(Metrics())
    for outcome in ("ok", "rate_limited", "server_error", "transport_error"):
        assert got[("syncd_api_requests_total", (("outcome", outcome),))] == 0
    for outcome in ("inserted", "updated", "duplicate", "refused", "not_found", "unauthorized"):
        assert got[("syncd_webhook_events_total", (("outcome", outcome),))] == 0
    for kind in ("poll", "reconcile", "refresh"):
        assert got[("syncd_sync_failures_total", (("kind", kind),))] == 0
        assert got[("syncd_sync_duration_seconds_count", (("kind", kind),))] == 0
    assert got[("syncd_rate_limited_total", ())] == 0
    assert got[("syncd_entries_upserted_total", ())] == 0


def test_build_info_and_the_process_and_platform_collectors_are_exposed():
    import platform

    from syncd import __version__

    got = samples(Metrics())
    build = (("python", platform.python_version()), ("version", __version__))
    assert got[("syncd_build_info", build)] == 1
    assert got[("process_resident_memory_bytes", ())] > 0
    assert got[("process_start_time_seconds", ())] > 0
    assert any(name == "python_info" for name, _labels in got)


def test_verified_ages_come_from_the_typed_freshness():
    """``set_freshness`` takes the verified times as ``syncd.status.verified_times`` reads
    them; an unknown time removes the series."""
    now = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)
    m = Metrics(now=now.timestamp)
    m.set_freshness({"ws-1": {"hot": datetime(2026, 12, 4, 15, 50, tzinfo=UTC), "cold": None}})
    got = samples(m)
    assert got[("syncd_verified_age_seconds", (("tier", "hot"), ("workspace", "ws-1")))] == 600
    assert ("syncd_verified_age_seconds", (("tier", "cold"), ("workspace", "ws-1"))) not in got
    m.set_freshness({"ws-1": {"hot": None}})
    assert ("syncd_verified_age_seconds", (("tier", "hot"), ("workspace", "ws-1"))) not in (
        samples(m)
    )
