"""Restarts keep exactly one upstream subscription; a disabled one is replaced;
``syncd webhooks remove`` deletes it."""

from __future__ import annotations

import json
import signal

from tests.support.daemon import wait_for

EXPECTED_EVENTS = {
    "TIMER_STARTED",
    "TIMER_STOPPED",
    "MANUAL_TIME_ADDED",
    "CLIENT_CREATED",
    "PROJECT_CREATED",
    "TASK_CREATED",
}


def _housekeeping_done(daemon) -> None:
    daemon.wait_job("housekeeping", timeout=15)


def test_restarts_keep_one_subscription_disabled_is_replaced_and_remove_deletes(
    emulator_factory, daemon_factory
):
    emu = emulator_factory("--webhook-retry-delays", "none", entries=200, days=30)
    daemon = daemon_factory(emu)
    ids = []
    for _ in range(3):
        daemon.start(wait_poll=False)
        _housekeeping_done(daemon)
        url = daemon.hook_url
        ours = emu.subscriptions(url)
        assert [s["status"] for s in ours] == ["ACTIVE"], ours
        assert set(ours[0]["events"]) == EXPECTED_EVENTS
        ids.append(ours[0]["id"])
        code, _ = daemon.stop(signal.SIGTERM)
        assert code == 0
    assert len(set(ids)) == 1  # reused, never re-created
    assert len(emu.subscriptions()) == 1

    # The documented list endpoint agrees.
    listed = emu.zapier("GET", "/webhooks/subscribe").json()["webhooks"]
    assert [(w["url"], w["status"]) for w in listed] == [(url, "ACTIVE")]

    # While the daemon is down a delivery fails; without retries the subscription turns
    # DISABLED. The next start replaces it.
    workspace = emu.workspace_ids()[0]
    emu.control("POST", "/timers/start", {"workspace_id": workspace})
    wait_for(
        lambda: [s["status"] for s in emu.subscriptions(url)] == ["DISABLED"],
        10,
        what="the subscription to be disabled",
    )
    daemon.start(wait_poll=False)
    _housekeeping_done(daemon)
    ours = emu.subscriptions(url)
    assert [s["status"] for s in ours] == ["ACTIVE"], ours
    assert ours[0]["id"] != ids[0]
    assert len(emu.subscriptions()) == 1  # the disabled one was deleted, not left behind
    stored = json.loads(daemon.setting("webhook_subscription"))
    assert stored["id"] == ours[0]["id"]
    assert stored["status"] == "ACTIVE"
    # ... and it works: the next event arrives.
    entry = emu.control("POST", "/timers/stop", {"workspace_id": workspace})
    wait_for(
        lambda: daemon.scalar("SELECT end_time FROM time_entries WHERE id = ?", entry["id"]),
        2,
        what="a delivery on the new subscription",
    )
    assert daemon.stop()[0] == 0

    result = daemon.cli("webhooks", "remove")
    assert result.returncode == 0, result.stderr.decode()
    assert emu.subscriptions() == []
    assert daemon.setting("webhook_subscription") is None


def test_subscriptions_left_by_an_earlier_mirror_are_removed_at_start(
    emulator_factory, daemon_factory
):
    emu = emulator_factory(entries=50, days=10)
    daemon = daemon_factory(emu)
    events = sorted(EXPECTED_EVENTS)
    # Three mirrors made here before (each with its own token), and two subscriptions of
    # other installations on the same key, which stay.
    stale = [f"{daemon.base_url}/hooks/{c * 43}" for c in "abc"]
    others = [f"{daemon.base_url}/elsewhere/hooks/{'d' * 43}", "http://127.0.0.1:9/hooks/x"]
    for url in stale + others:
        reply = emu.zapier("POST", "/webhooks/subscribe", {"url": url, "events": events})
        assert reply.status == 200, reply.body

    daemon.start(wait_poll=False)
    _housekeeping_done(daemon)
    left = {s["url"]: s["status"] for s in emu.subscriptions()}
    assert left == {daemon.hook_url: "ACTIVE", **dict.fromkeys(others, "ACTIVE")}
    removed = [e for e in daemon.log_events() if e["event"] == "webhook_unsubscribed"]
    assert [e["reason"] for e in removed] == ["another_token"] * 3
    assert {e["url"] for e in removed} == {f"{daemon.base_url}/hooks/<token>"}
    assert daemon.stop()[0] == 0

    # `webhooks remove` takes this installation's subscription only.
    result = daemon.cli("webhooks", "remove")
    assert result.returncode == 0, result.stderr.decode()
    assert {s["url"] for s in emu.subscriptions()} == set(others)
