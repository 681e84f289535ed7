"""The receiver of a running daemon: a documented delivery is applied whatever its headers;
wrong path, method, size and signature get their status and write nothing; every other
delivery on the token path is answered 2xx, ledgered as refused with its reason, and never
reaches the mirror."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from tests.support.daemon import API_KEY, http, wait_for

SECRET = "s3cret-for-the-e2e-test"


def _sign(body: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Timetracker-Signature": f"sha256={digest}"}


def _content(daemon) -> tuple:
    """What an unusable delivery must not change (a re-scan may refresh ``synced_at``)."""
    return (
        daemon.scalar("SELECT COUNT(*) FROM time_entries"),
        daemon.scalar("SELECT COUNT(*) FROM time_entries WHERE deleted_at IS NOT NULL"),
        daemon.scalar("SELECT SUM(duration_seconds) FROM time_entries"),
        daemon.scalar("SELECT MAX(updated_at) FROM time_entries"),
        daemon.scalar("SELECT COUNT(*) FROM workspaces"),
    )


def _mirror(daemon) -> tuple:
    """What a refused request must not change."""
    return (*_content(daemon), daemon.scalar("SELECT MAX(synced_at) FROM time_entries"))


def _settled(daemon) -> bool:
    health = daemon.healthz().json()
    jobs = health["jobs"]
    return (
        health["pending_refresh_windows"] == 0
        and not jobs["refresh"]["running"]
        and not jobs["poll"]["running"]
        and not jobs["reconcile"]["running"]
    )


def test_bad_webhook_requests_get_their_status_and_write_nothing(emulator_factory, daemon_factory):
    emu = emulator_factory(entries=300, days=60)
    daemon = daemon_factory(
        emu, overrides={"webhooks": {"secret": SECRET, "max_body_bytes": 2048}}
    ).start()
    url = daemon.hook_url
    wait_for(lambda: emu.subscriptions(url), 10, what="the subscription")
    (subscription,) = emu.subscriptions(url)
    assert subscription["secret"] == SECRET  # subscribed with the configured secret

    # A real, signed delivery from the emulator is accepted (the checks below are not
    # refusing everything).
    workspace = emu.workspace_ids()[0]
    entry = emu.control("POST", "/timers/start", {"workspace_id": workspace})
    wait_for(
        lambda: daemon.scalar("SELECT source FROM time_entries WHERE id = ?", entry["id"]),
        2,
        what="the signed delivery",
    )
    time.sleep(0.6)  # let the confirming re-scan finish before taking the snapshot
    wait_for(lambda: _settled(daemon), 5)

    payload = dict(emu.control("GET", f"/time-entries/{entry['id']}"))
    valid = json.dumps(
        {
            "id": payload["id"],
            "action": "start_timer",
            "startTime": payload["start_time"],
            "description": "changed by a forged delivery",
            "workspace": {"id": workspace, "name": "x"},
            "updatedAt": "2099-01-01T00:00:00.000Z",
        }
    ).encode()
    json_headers = {"Content-Type": "application/json"}
    oversize = b'{"id": "' + b"x" * 4096 + b'"}'
    base = daemon.base_url
    # name: (method, url, body, headers, expected status)
    cases = {
        "wrong token": ("POST", f"{base}/hooks/not-the-token", valid, _sign(valid), 404),
        "no token": ("POST", f"{base}/hooks/", valid, _sign(valid), 404),
        "GET": ("GET", url, None, {}, 405),
        "PUT": ("PUT", url, valid, _sign(valid), 405),
        "oversize": ("POST", url, oversize, _sign(oversize), 413),
        "wrong signature": ("POST", url, valid, {**json_headers, **_sign(valid, "other")}, 401),
        "malformed signature": (
            "POST",
            url,
            valid,
            {**json_headers, "X-Timetracker-Signature": "md5=abc"},
            401,
        ),
    }
    before = (_mirror(daemon), daemon.scalar("SELECT COUNT(*) FROM webhook_events"))
    metrics_before = daemon.metrics()
    got = {}
    for name, (method, target, body, headers, _) in cases.items():
        reply = http(method, target, data=body, headers=headers)
        got[name] = reply.status
        if name == "GET":
            assert reply.headers.get("Allow") == "POST"
    assert got == {name: case[-1] for name, case in cases.items()}
    assert (_mirror(daemon), daemon.scalar("SELECT COUNT(*) FROM webhook_events")) == before
    row = daemon.query("SELECT * FROM time_entries WHERE id = ?", entry["id"])[0]
    assert row["description"] == ""  # the forged change was never applied
    metrics = daemon.metrics()
    refused = {
        "not_found": 1,  # a path without a token is not a delivery at all
        "method_not_allowed": 2,
        "too_large": 1,
        "unauthorized": 2,
    }
    for outcome, count in refused.items():
        key = f'syncd_webhook_events_total{{outcome="{outcome}"}}'
        assert metrics.get(key, 0) - metrics_before.get(key, 0) == count, outcome


def _hostile(entry: dict, workspace: str) -> dict[str, bytes]:
    """Deliveries a holder of the token path might send: forged, impossible or broken."""
    stop = {
        "id": entry["id"],
        "description": "forged",
        "date": entry["date"],
        "startTime": entry["start_time"],
        "endTime": entry["end_time"],
        "duration": 60,
        "billable": True,
        "action": "stop_timer",
        "workspace": {"id": workspace, "name": "x"},
        "tags": [],
        "createdAt": entry["createdAt"],
        "updatedAt": "2099-01-01T00:00:00.000Z",
    }

    def body(**changes: object) -> bytes:
        return json.dumps({**stop, **changes}).encode()

    deliveries = {
        "negative duration dated 2099": body(duration=-1_000_000_000_000),
        "duration of 10^23": body(duration=10**23),
        "10^30 integer": body(estimate=10**30),
        "forged delete_entry": json.dumps(
            {"id": entry["id"], "action": "delete_entry", "workspace": {"id": workspace}}
        ).encode(),
        "unknown workspace": body(workspace={"id": "ws-unknown"}),
        "year 9999": body(endTime="9999-12-31T23:59:59.000Z"),
        "year 9999 with an offset": body(endTime="9999-12-31T23:59:59-05:00"),
        "deep nesting": b'{"id": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
        "invalid UTF-8": b'{"id": "\xff\xfe\xfd", "action": "stop_timer"}',
        "not JSON": b"{nope",
        "JSON array": b"[1, 2, 3]",
        "empty": b"",
    }
    # 200 deliveries with 30 KB ids grew the mirror by 50 MB.
    for i in range(200):
        deliveries[f"30 KB id {i}"] = body(id=f"{i:03d}" + "x" * 30_000)
    return deliveries


def test_hostile_deliveries_are_answered_2xx_ledgered_as_refused_and_write_nothing(
    emulator_factory, daemon_factory
):
    emu = emulator_factory(entries=300, days=60)
    daemon = daemon_factory(
        emu, subscribe=False, overrides={"webhooks": {"secret": SECRET}}
    ).start()
    wait_for(lambda: _settled(daemon), 10, what="the first poll")
    workspace = emu.workspace_ids()[0]
    old = next(e for e in emu.entries(workspace) if e["end_time"] and e["duration"])
    hostile = _hostile(old, workspace)
    before = _content(daemon)
    pages_before = daemon.scalar("PRAGMA page_count") * daemon.scalar("PRAGMA page_size")
    pushes_before = daemon.scalar("SELECT COUNT(*) FROM sync_runs WHERE kind = 'push'")

    answers = {}
    for name, body in hostile.items():  # unsigned: accepted without require_signature
        reply = daemon.post_hook(body, {"Content-Type": "text/plain"})
        answers[name] = (reply.status, reply.json()["status"])
    assert set(answers.values()) == {(202, "refused")}, answers

    rows = daemon.query(
        "SELECT kind, object_id, workspace_id, outcome, reason, body, body_bytes "
        "FROM webhook_events WHERE outcome = 'refused'"
    )
    assert len(rows) == len(hostile)
    assert all(row["reason"] for row in rows)
    assert all(len(row["body"].encode()) <= 4 * 4096 for row in rows)  # \xNN takes 4
    assert max(row["body_bytes"] for row in rows) > 30_000
    assert all(len(row["object_id"]) <= 255 for row in rows)
    by_kind = {row["kind"]: row["reason"] for row in rows}
    assert "not one syncd subscribes to" in by_kind["TIME_ENTRY_DELETED"]
    assert any("ws-unknown" in row["reason"] for row in rows)
    # At most one debounced re-scan of the hot window follows; nothing else is written.
    wait_for(
        lambda: daemon.scalar("SELECT COUNT(*) FROM sync_runs WHERE kind = 'push'") > pushes_before,
        5,
        what="the hot-window re-scan",
    )
    wait_for(lambda: _settled(daemon), 10, what="the re-scan to end")
    assert daemon.scalar("SELECT COUNT(*) FROM sync_runs WHERE kind = 'push'") == pushes_before + 1
    assert _content(daemon) == before
    assert daemon.scalar("SELECT deleted_at FROM time_entries WHERE id = ?", old["id"]) is None
    assert daemon.scalar("SELECT COUNT(*) FROM workspaces WHERE id = 'ws-unknown'") == 0
    grown = daemon.scalar("PRAGMA page_count") * daemon.scalar("PRAGMA page_size") - pages_before
    assert grown < 3_000_000, grown
    log = daemon.log_text()
    assert "Traceback" not in log
    assert '"status": 500' not in log


def test_a_documented_delivery_is_applied_whatever_its_headers(
    emulator_factory, daemon_factory, capture_server
):
    """Upstream documents no content type, header or signature: a real delivery stripped of
    all of them, sent as text/plain to a daemon with a secret set, is applied."""
    emu = emulator_factory(entries=300, days=60, keys=(API_KEY, "capture"))
    daemon = daemon_factory(
        emu, subscribe=False, overrides={"webhooks": {"secret": SECRET}}
    ).start()
    reply = emu.zapier(
        "POST",
        "/webhooks/subscribe",
        {"url": capture_server.url, "events": ["TIMER_STARTED", "TIMER_STOPPED"]},
        key="capture",
    )
    assert reply.status == 200, reply.body
    workspace = emu.workspace_ids()[0]
    entry = emu.control("POST", "/timers/start", {"workspace_id": workspace})
    wait_for(lambda: capture_server.deliveries, 5, what="the captured delivery")
    ((_, body),) = capture_server.deliveries
    assert json.loads(body)["id"] == entry["id"]

    for headers in ({"Content-Type": "text/plain"}, {"Content-Type": ""}):
        reply = http("POST", daemon.hook_url, data=body, headers=headers)
        assert reply.status == 202, reply.body
    assert reply.json()["status"] == "duplicate"  # the first one was applied
    row = daemon.query("SELECT * FROM time_entries WHERE id = ?", entry["id"])[0]
    assert row["source"] in ("webhook", "push_rescan")
    assert row["end_time"] is None
    assert daemon.scalar("SELECT COUNT(*) FROM webhook_events WHERE outcome = 'refused'") == 0
