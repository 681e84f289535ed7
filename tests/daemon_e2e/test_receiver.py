"""Bad webhook requests to a running daemon get their status and write nothing; signed
deliveries from the emulator are accepted."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from .conftest import http, wait_for

SECRET = "s3cret-for-the-e2e-test"


def _sign(body: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Timetracker-Signature": f"sha256={digest}"}


def _ledger(daemon) -> tuple:
    """What a refused request must not change."""
    return (
        daemon.scalar("SELECT COUNT(*) FROM webhook_events"),
        daemon.scalar("SELECT COUNT(*) FROM time_entries"),
        daemon.scalar("SELECT MAX(synced_at) FROM time_entries"),
        daemon.scalar("SELECT COUNT(*) FROM sync_runs"),
        daemon.scalar("SELECT COUNT(*) FROM budget_grants"),
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
    wait_for(lambda: daemon.healthz().json()["pending_refresh_windows"] == 0, 5)
    wait_for(lambda: not daemon.healthz().json()["jobs"]["refresh"]["running"], 5)

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

    def signed(body: bytes) -> dict[str, str]:
        return {**json_headers, **_sign(body)}

    oversize = b'{"id": "' + b"x" * 4096 + b'"}'
    no_workspace = b'{"action": "start_timer", "id": "e1", "startTime": "2026-01-01T00:00:00Z"}'
    wrong_shape = b'{"action": "start_timer", "id": 12}'
    base = daemon.base_url
    # name: (method, url, body, headers, expected status)
    cases = {
        "wrong token": ("POST", f"{base}/hooks/not-the-token", valid, signed(valid), 404),
        "no token": ("POST", f"{base}/hooks/", valid, signed(valid), 404),
        "GET": ("GET", url, None, {}, 405),
        "PUT": ("PUT", url, valid, signed(valid), 405),
        "text/plain": ("POST", url, valid, {"Content-Type": "text/plain", **_sign(valid)}, 415),
        "no content type": ("POST", url, valid, _sign(valid), 415),
        "oversize": ("POST", url, oversize, signed(oversize), 413),
        "missing signature": ("POST", url, valid, json_headers, 401),
        "wrong signature": ("POST", url, valid, {**json_headers, **_sign(valid, "other")}, 401),
        "malformed signature": (
            "POST",
            url,
            valid,
            {**json_headers, "X-Timetracker-Signature": "md5=abc"},
            401,
        ),
        "not JSON": ("POST", url, b"{nope", signed(b"{nope"), 400),
        "JSON array": ("POST", url, b"[1, 2]", signed(b"[1, 2]"), 400),
        "wrong shape": ("POST", url, wrong_shape, signed(wrong_shape), 400),
        "entry without workspace": ("POST", url, no_workspace, signed(no_workspace), 400),
    }
    before = _ledger(daemon)
    metrics_before = daemon.metrics()
    got = {}
    for name, (method, target, body, headers, _) in cases.items():
        reply = http(method, target, data=body, headers=headers)
        got[name] = reply.status
        if name == "GET":
            assert reply.headers.get("Allow") == "POST"
    assert got == {name: case[-1] for name, case in cases.items()}
    assert _ledger(daemon) == before
    row = daemon.query("SELECT * FROM time_entries WHERE id = ?", entry["id"])[0]
    assert row["description"] == ""  # the forged change was never applied
    metrics = daemon.metrics()
    refused = {
        "not_found": 1,  # a path without a token is not a delivery at all
        "method_not_allowed": 2,
        "unsupported_media_type": 2,
        "too_large": 1,
        "unauthorized": 3,
        "invalid": 4,
    }
    for outcome, count in refused.items():
        key = f'syncd_webhook_events_total{{outcome="{outcome}"}}'
        assert metrics.get(key, 0) - metrics_before.get(key, 0) == count, outcome
