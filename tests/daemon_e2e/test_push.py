"""The webhook path end to end: emulator deliveries reach the mirror within about a second,
then a confirming re-scan runs; a flood of duplicate, reordered and stale deliveries leaves
the mirror equal to the emulator and costs only a few requests. Both also with the mirror in
PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from tests.support.daemon import API_KEY, mirror_differences, wait_for
from tests.support.mirror import BACKENDS


def _row(daemon, entry_id):
    rows = daemon.query("SELECT * FROM time_entries WHERE id = ?", entry_id)
    return rows[0] if rows else None


DELIVERY_STYLES = {
    "as documented": ((), {}),
    # Deliveries without any X-Timetracker-* header or signature, as text/plain: what the docs
    # leave open. With a secret configured, an unsigned delivery is still accepted.
    "bare text/plain": (("--webhook-headers", "none", "--webhook-content-type", "text/plain"), {}),
    "bare, secret set": (
        ("--webhook-headers", "none"),
        {"webhooks": {"secret": "s3cret-for-signing"}},
    ),
}


@pytest.mark.parametrize(
    ("style", "backend"),
    [
        *(pytest.param(style, "sqlite", id=style) for style in DELIVERY_STYLES),
        pytest.param("as documented", "postgresql", id="as documented-postgresql"),
    ],
)
def test_timer_start_and_stop_reach_the_mirror_through_the_webhook(
    emulator_factory, daemon_factory, style, backend
):
    switches, overrides = DELIVERY_STYLES[style]
    emu = emulator_factory(*switches)
    daemon = daemon_factory(emu, overrides=overrides).start()
    url = daemon.hook_url
    wait_for(
        lambda: any(s["status"] == "ACTIVE" for s in emu.subscriptions(url)),
        10,
        what="the subscription",
    )
    workspace = emu.workspace_ids()[0]

    started = time.monotonic()
    entry = emu.control("POST", "/timers/start", {"workspace_id": workspace})
    row = wait_for(lambda: _row(daemon, entry["id"]), 1.0, interval=0.01, what="start row")
    start_latency = time.monotonic() - started
    assert row["source"] == "webhook"
    assert row["end_time"] is None
    assert row["deleted_at"] is None

    time.sleep(0.05)  # a stop in the same millisecond as the start carries the same updatedAt
    stopped_at = datetime.now(UTC) - timedelta(milliseconds=5)
    started = time.monotonic()
    stopped = emu.control("POST", "/timers/stop", {"workspace_id": workspace})
    assert stopped["id"] == entry["id"]
    row = wait_for(
        lambda: (r := _row(daemon, entry["id"])) is not None and r["end_time"] and r,
        1.0,
        interval=0.01,
        what="the stop to reach the mirror",
    )
    stop_latency = time.monotonic() - started
    assert row["end_time"] == stopped["end_time"]
    assert row["updated_at"] == stopped["updatedAt"]
    assert start_latency < 1.0
    assert stop_latency < 1.0

    # The confirming re-scan of the entry's date window follows the debounce.
    def confirming_rescan():
        rows = daemon.query(
            "SELECT * FROM sync_runs WHERE kind = 'push' AND ok = 1 AND windows >= 1 "
            "AND started_at >= ?",
            stopped_at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        )
        return rows

    runs = wait_for(confirming_rescan, 5, what="a push re-scan after the stop")
    assert runs[0]["requests"] >= 1
    scans = daemon.query(
        "SELECT * FROM window_scans WHERE source = 'push_rescan' AND workspace_id = ?", workspace
    )
    assert any(s["date_from"] <= row["date"] <= s["date_to"] for s in scans)
    events = daemon.query("SELECT kind, outcome FROM webhook_events ORDER BY id")
    assert [(e["kind"], e["outcome"]) for e in events] == [
        ("TIMER_STARTED", "inserted"),
        ("TIMER_STOPPED", "updated"),
    ]
    assert mirror_differences(daemon, emu.truth()) == []
    assert emu.key_stats()["rate_limited"] == 0


# The events the daemon subscribes to. The emulator's update and delete events are
# extensions the receiver refuses (the re-scans catch edits and deletions).
CAPTURE_EVENTS = ["TIMER_STARTED", "TIMER_STOPPED", "MANUAL_TIME_ADDED"]


def _make_history(emu, workspaces):
    """Timers started and stopped, manual entries on several dates, an edit and a delete:
    the emulator announces each of them."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for workspace in workspaces:
        for _ in range(3):
            emu.control("POST", "/timers/start", {"workspace_id": workspace})
            time.sleep(0.02)
            emu.control("POST", "/timers/stop", {"workspace_id": workspace})
            time.sleep(0.02)
        emu.control("POST", "/timers/start", {"workspace_id": workspace})  # left running
        manual = []
        for days_ago in (1, 10, 40):
            start = today - timedelta(days=days_ago, hours=-9)
            manual.append(
                emu.control(
                    "POST",
                    "/manual-entries",
                    {
                        "workspace_id": workspace,
                        "start_time": start.isoformat().replace("+00:00", "Z"),
                        "end_time": (start + timedelta(hours=2)).isoformat().replace("+00:00", "Z"),
                        "description": f"manual {days_ago}",
                    },
                )
            )
        time.sleep(0.02)
        emu.control("PATCH", f"/time-entries/{manual[0]['id']}", {"description": "edited"})
        time.sleep(0.02)
        emu.control("PATCH", f"/time-entries/{manual[0]['id']}", {"description": "edited twice"})
        emu.control("DELETE", f"/time-entries/{manual[1]['id']}")


async def _post_all(url, deliveries, concurrency=16):
    statuses = []
    queue = list(enumerate(deliveries))
    async with aiohttp.ClientSession() as session:

        async def worker():
            while queue:
                _, (headers, body) = queue.pop(0)
                async with session.post(url, data=body, headers=headers) as resp:
                    statuses.append((resp.status, (await resp.json())["status"]))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


@pytest.mark.parametrize("backend", BACKENDS)
def test_flood_of_duplicate_and_reordered_deliveries(
    emulator_factory, daemon_factory, capture_server, backend
):
    emu = emulator_factory(
        "--extensions", "updated-events,deleted-events", keys=(API_KEY, "capture")
    )
    # The daemon listens but is not subscribed: every event reaches it only through the flood.
    daemon = daemon_factory(emu, subscribe=False).start()
    reply = emu.zapier(
        "POST",
        "/webhooks/subscribe",
        {"url": capture_server.url, "events": CAPTURE_EVENTS},
        key="capture",
    )
    assert reply.status == 200, reply.body
    workspaces = emu.workspace_ids()
    _make_history(emu, workspaces)
    wait_for(lambda: emu.stats()["webhook_pending"] == 0, 10, what="deliveries")
    captured = list(capture_server.deliveries)
    kinds = {h["X-Timetracker-Event"] for h, _ in captured}
    assert kinds == set(CAPTURE_EVENTS)
    assert len(captured) == 2 * (3 * 2 + 1 + 3)

    def version(delivery):
        payload = json.loads(delivery[1])
        return payload.get("updatedAt") or ""

    # Newest versions first, so every older version arrives after a newer one; then random
    # duplicates in random order, with their original delivery headers.
    rng = random.Random(7)
    newest_first = sorted(captured, key=version, reverse=True)
    rest = [rng.choice(captured) for _ in range(1000 - len(captured))]
    rng.shuffle(rest)
    flood = [
        (
            {
                "Content-Type": "application/json",
                "X-Timetracker-Event": h["X-Timetracker-Event"],
                "X-Timetracker-Delivery": h["X-Timetracker-Delivery"],
            },
            body,
        )
        for h, body in newest_first + rest
    ]
    assert len(flood) == 1000

    before = emu.key_stats()["requests"]
    pushes_before = daemon.scalar("SELECT COUNT(*) FROM sync_runs WHERE kind = 'push'")
    started = time.monotonic()
    statuses = asyncio.run(_post_all(daemon.hook_url, flood))
    flood_seconds = time.monotonic() - started
    assert {status for status, _ in statuses} == {202}
    outcomes = [outcome for _, outcome in statuses]
    assert outcomes.count("duplicate") == 1000 - len(captured)
    assert "stale" in outcomes  # older versions after newer ones were recognised

    def settled():
        health = daemon.healthz().json()
        refresh = health["jobs"]["refresh"]
        return health["pending_refresh_windows"] == 0 and not refresh["running"]

    time.sleep(0.5)
    wait_for(settled, 10, what="the confirming re-scans")
    assert mirror_differences(daemon, emu.truth()) == []

    # Every delivery is in the ledger once; none of the refusals or retries made rows twice.
    assert daemon.scalar("SELECT COUNT(*) FROM webhook_events") == len(captured)

    # Debounce + coalescing: windows per workspace are {today-1..today}, {-10}, {-40}, so one
    # drain costs 6 requests; the flood may straddle a debounce boundary once or twice.
    spent = emu.key_stats()["requests"] - before
    pushes = daemon.scalar("SELECT COUNT(*) FROM sync_runs WHERE kind = 'push'") - pushes_before
    print(f"flood: {flood_seconds:.2f}s, {spent} upstream requests, {pushes} push re-scans")
    assert 1 <= pushes <= 3
    assert spent <= 18
    assert emu.key_stats()["rate_limited"] == 0
