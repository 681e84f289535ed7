"""Switches for the readings the upstream docs leave open, over real sockets: which field
find's date window filters, whether its bounds include, silent caps, gateway timeouts,
webhook headers and content type; each set at start or on a running emulator."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import Z

DAY = "T00:00:00.000Z"


async def _entries(emu, ws_id: str) -> list[dict]:
    return await emu.cjson("GET", f"/time-entries?workspace_id={ws_id}")


async def _found(emu, body: dict) -> list[dict]:
    resp = await emu.find(body)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _set(emu, **changes) -> dict:
    return await emu.cjson("PATCH", "/settings", json=changes)


def _days_after(e: dict) -> int:
    from datetime import date

    return (date.fromisoformat(e["createdAt"][:10]) - date.fromisoformat(e["date"][:10])).days


# --- seeded data -----------------------------------------------------------------------
async def test_seed_holds_backdated_and_planned_entries(make_emulator):
    emu = await make_emulator(entries=3000, days=120)
    for ws in await emu.workspaces():
        es = await _entries(emu, ws["id"])
        late = [e for e in es if 1 <= _days_after(e) <= 60]
        planned = [e for e in es if e["createdAt"] < e["date"]]
        assert len(late) >= 0.05 * len(es)
        assert any(_days_after(e) > 7 for e in late)  # not only last week's timesheet
        assert len({e["createdAt"] for e in late}) == len(late)  # none piled up at "now"
        assert 1 <= len(planned) <= 0.02 * len(es)
        assert all(e["manually_entered"] for e in late + planned)
        assert all(e["updatedAt"] >= e["createdAt"] for e in es)
        assert all(e["createdAt"] <= "2026-11-27T12:00:00.000Z" for e in es)
        # still sorted newest created first, running timers untouched
        keys = [(e["createdAt"], e["id"]) for e in es]
        assert keys == sorted(keys, reverse=True)
        running = [e for e in es if e["end_time"] is None]
        assert len(running) == 2
        assert all(e["createdAt"] == e["start_time"] for e in running)


async def test_late_entries_were_entered_after_they_ended(make_emulator):
    emu = await make_emulator(entries=600)
    for ws in await emu.workspaces():
        late = [e for e in await _entries(emu, ws["id"]) if _days_after(e) >= 1]
        assert late
        assert all(e["start_time"][:10] == e["date"][:10] for e in late)
        assert all(e["createdAt"] > e["end_time"] for e in late)


# --- which field the window filters -----------------------------------------------------
async def test_date_filter_field_created_at_filters_on_creation_time(make_emulator):
    emu = await make_emulator(entries=900, date_filter_field="created_at")
    ws = (await emu.workspaces())[0]
    es = await _entries(emu, ws["id"])
    e = next(e for e in es if _days_after(e) >= 3)
    created_day = e["createdAt"][:10]
    window = {
        "workspace_id": ws["id"],
        "date_after": created_day + DAY,
        "date_before": created_day + "T23:59:59.999Z",
    }
    found = await _found(emu, window)
    assert e["id"] in [f["id"] for f in found]
    assert all(f["createdAt"][:10] == created_day for f in found)
    # flipped at runtime: the same window now means the entry's date
    await _set(emu, date_filter_field="date")
    found = await _found(emu, window)
    assert e["id"] not in [f["id"] for f in found]
    assert all(f["date"][:10] == created_day for f in found)


# --- whether the bounds include ----------------------------------------------------------
async def test_exclusive_bounds_drop_the_bound_days_entries(emu):
    ws = (await emu.workspaces())[0]
    es = await _entries(emu, ws["id"])
    day = es[20]["date"]
    next_day = next(e["date"] for e in sorted(es, key=lambda e: e["date"]) if e["date"] > day)
    window = {"workspace_id": ws["id"], "date_after": day, "date_before": next_day}
    inclusive = await _found(emu, window)
    assert {f["date"] for f in inclusive} == {day, next_day}
    settings = await _set(emu, date_bounds="exclusive")
    assert settings["date_bounds"] == "exclusive"
    assert await _found(emu, window) == []  # every seeded date is a midnight
    wider = {**window, "date_after": day[:10] + "T00:00:00.000+00:01"}  # 1 min earlier
    assert {f["date"] for f in await _found(emu, wider)} == {day}


async def test_exclusive_bounds_apply_to_creation_time_too(make_emulator):
    emu = await make_emulator(date_filter_field="created_at", date_bounds="exclusive")
    ws = (await emu.workspaces())[0]
    e = (await _entries(emu, ws["id"]))[30]
    at = {"workspace_id": ws["id"], "date_after": e["createdAt"], "date_before": e["createdAt"]}
    assert e["id"] not in [f["id"] for f in await _found(emu, at)]
    await _set(emu, date_bounds="inclusive")
    assert e["id"] in [f["id"] for f in await _found(emu, at)]


# --- silent caps and gateway timeouts ----------------------------------------------------
async def test_find_cap_silently_keeps_the_first_n_in_order(emu):
    ws = (await emu.workspaces())[0]
    body = {"workspace_id": ws["id"]}
    full = await _found(emu, body)
    assert len(full) == 100
    await _set(emu, find_cap=37)
    capped = await emu.find(body)
    assert capped.status == 200
    assert await capped.json() == full[:37]
    narrow = await _found(emu, {**body, "date_after": full[0]["date"]})
    assert len(narrow) <= 37
    await _set(emu, find_cap=0)
    assert await _found(emu, body) == full


async def test_find_over_the_threshold_times_out_like_a_gateway(emu):
    ws = (await emu.workspaces())[0]
    body = {"workspace_id": ws["id"]}
    full = await _found(emu, body)
    await _set(emu, find_timeout_above=len(full) - 1, find_timeout_delay=0.15)
    t0 = time.monotonic()
    resp = await emu.find(body)
    took = time.monotonic() - t0
    assert resp.status == 504
    assert resp.content_type == "text/html"
    assert "504 Gateway Time-out" in await resp.text()
    assert took >= 0.15
    # a window matching no more than the threshold is answered
    await _set(emu, find_timeout_above=len(full))
    assert await _found(emu, body) == full


async def test_timeout_counts_matches_before_the_cap(emu):
    ws = (await emu.workspaces())[0]
    await _set(emu, find_cap=10, find_timeout_above=50, find_timeout_delay=0)
    resp = await emu.find({"workspace_id": ws["id"]})
    assert resp.status == 504


# --- webhook deliveries ------------------------------------------------------------------
async def _deliver_one(emu, receiver, **subscribe) -> dict:
    resp = await emu.api(
        "POST",
        f"{Z}/webhooks/subscribe",
        json={"url": receiver.url, "events": ["TIMER_STARTED"], **subscribe},
    )
    assert resp.status == 200, await resp.text()
    ws = (await emu.workspaces())[0]
    await emu.cjson("POST", "/timers/start", json={"workspace_id": ws["id"]})
    for _ in range(500):
        if receiver.received:
            break
        await asyncio.sleep(0.01)
    assert receiver.received, "no delivery arrived"
    return receiver.received[0]


async def test_default_deliveries_carry_the_invented_headers(emu, receiver):
    got = await _deliver_one(emu, receiver, secret="s3cret")
    h = got["headers"]
    assert h["Content-Type"] == "application/json"
    assert h["X-Timetracker-Event"] == "TIMER_STARTED"
    expected = hmac.new(b"s3cret", got["raw"], hashlib.sha256).hexdigest()
    assert h["X-Timetracker-Signature"] == "sha256=" + expected


async def test_webhook_headers_none_sends_no_extras_and_no_signature(make_emulator, receiver):
    emu = await make_emulator(webhook_headers="none", webhook_content_type="text/plain")
    got = await _deliver_one(emu, receiver, secret="s3cret")
    assert got["headers"]["Content-Type"] == "text/plain"
    assert not [k for k in got["headers"] if k.lower().startswith("x-timetracker-")]
    assert json.loads(got["raw"])["action"] == "start_timer"  # the body is unchanged


async def test_webhook_switches_flip_on_a_running_emulator(emu, receiver):
    await _set(
        emu, webhook_headers="none", webhook_content_type="application/x-www-form-urlencoded"
    )
    got = await _deliver_one(emu, receiver, secret="s3cret")
    assert got["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert "X-Timetracker-Signature" not in got["headers"]
    deliveries = await emu.cjson("GET", "/webhook-deliveries")
    assert deliveries[0]["status"] == 200
    assert deliveries[0]["delivery_id"]


# --- the settings control API ------------------------------------------------------------
async def test_settings_read_and_patch(emu):
    settings = await emu.cjson("GET", "/settings")
    assert settings["date_filter_field"] == "date"
    assert settings["date_bounds"] == "inclusive"
    assert settings["find_cap"] == 0
    assert settings["find_timeout_above"] == 0
    assert settings["webhook_headers"] == "full"
    assert settings["webhook_content_type"] == "application/json"
    changed = await _set(emu, **{"find-cap": 5, "webhook_retry_delays": [0, 1]})
    assert changed["find_cap"] == 5
    assert changed["webhook_retry_delays"] == [0.0, 1.0]
    assert (await emu.cjson("GET", "/settings")) == changed


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"find_cap": -1}, "find_cap must be a non-negative integer"),
        ({"find_cap": True}, "find_cap must be a non-negative integer"),
        ({"find_timeout_delay": "soon"}, "find_timeout_delay must be a non-negative number"),
        ({"date_bounds": "maybe"}, "date_bounds must be one of inclusive, exclusive"),
        ({"date_filter_field": "start_time"}, "date_filter_field must be one of date"),
        ({"webhook_headers": "some"}, "webhook_headers must be one of full, none"),
        ({"webhook_content_type": "text/plain\r\nX-Evil: 1"}, "webhook_content_type must be"),
        ({"webhook_content_type": ""}, "webhook_content_type must be"),
        ({"lenient_auth": "yes"}, "lenient_auth must be true or false"),
        ({"seed": 7}, "seed is fixed at start"),
        ({"rate_per_minute": 5}, "rate_per_minute is fixed at start"),
        ({"window_size": 5}, "unknown setting: window_size"),
    ],
)
async def test_bad_settings_are_refused_by_name_and_nothing_changes(emu, body, message):
    resp = await emu.control("PATCH", "/settings", json={"find_cap": 3, **body})
    assert resp.status == 400
    assert message in (await resp.json())["error"]
    assert (await emu.cjson("GET", "/settings"))["find_cap"] == 0


def test_settings_out_of_range_are_refused_in_process():
    from syncd.emulator import EmulatorSettings

    with pytest.raises(ValueError, match="find_timeout_above"):
        EmulatorSettings(find_timeout_above=-3)
    with pytest.raises(ValueError, match="webhook_content_type"):
        EmulatorSettings(webhook_content_type="a\nb")


# --- the command line --------------------------------------------------------------------
def _run(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "syncd.emulator", "--port", "0", "--entries", "60", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.e2e
def test_command_line_switches_reach_the_running_emulator():
    proc = _run(
        "--no-rate-limit",
        "--date-filter-field",
        "created_at",
        "--date-bounds",
        "exclusive",
        "--find-cap",
        "7",
        "--find-timeout-above",
        "500",
        "--find-timeout-delay",
        "0.05",
        "--webhook-headers",
        "none",
        "--webhook-content-type",
        "text/plain; charset=utf-8",
    )
    try:
        url = json.loads(proc.stdout.readline())["url"]
        with urllib.request.urlopen(url + "/__emulator/settings", timeout=5) as resp:
            settings = json.loads(resp.read())
        assert settings["date_filter_field"] == "created_at"
        assert settings["date_bounds"] == "exclusive"
        assert settings["find_cap"] == 7
        assert settings["find_timeout_above"] == 500
        assert settings["find_timeout_delay"] == 0.05
        assert settings["webhook_headers"] == "none"
        assert settings["webhook_content_type"] == "text/plain; charset=utf-8"
        with urllib.request.urlopen(url + "/__emulator/workspaces", timeout=5) as resp:
            ws_id = json.loads(resp.read())[0]["id"]
        req = urllib.request.Request(
            url + f"{Z}/triggers/time-entries/find",
            data=json.dumps({"workspace_id": ws_id}).encode(),
            headers={"Authorization": "Bearer demo-key", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert len(json.loads(resp.read())) == 7
    finally:
        proc.kill()
        proc.communicate(timeout=10)


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--find-cap", "-1"), "--find-cap"),
        (("--date-bounds", "open"), "--date-bounds"),
        (("--webhook-headers", "some"), "--webhook-headers"),
        (("--webhook-content-type", ""), "--webhook-content-type"),
    ],
)
def test_command_line_refuses_bad_values_by_name(args, message):
    proc = _run(*args)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert message in err
    assert out == ""
