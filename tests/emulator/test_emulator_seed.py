"""Seeded data: deterministic per seed and clock, and realistic."""

from __future__ import annotations

from collections import Counter

from conftest import NOW

from syncd.emulator import Clock


async def _dump(emu) -> tuple[list, list]:
    wss = await emu.workspaces()
    entries = [await emu.cjson("GET", f"/time-entries?workspace_id={w['id']}") for w in wss]
    return wss, entries


async def test_same_seed_and_now_give_identical_data(make_emulator):
    a = await make_emulator(seed=7, entries=500)
    b = await make_emulator(seed=7, entries=500)
    c = await make_emulator(seed=8, entries=500)
    assert await _dump(a) == await _dump(b)
    assert await _dump(a) != await _dump(c)
    ra = await a.client.get("/v1/workspaces", headers={"X-Api-Key": "demo-key"})
    rb = await b.client.get("/v1/workspaces", headers={"X-Api-Key": "demo-key"})
    assert await ra.read() == await rb.read()


async def test_data_is_relative_to_the_clock(make_emulator):
    a = await make_emulator(seed=7, entries=50)
    b = await make_emulator(seed=7, entries=50, clock=Clock(NOW + 86400, frozen=True))
    ea = (await _dump(a))[1][0]
    eb = (await _dump(b))[1][0]
    assert [e["id"] for e in ea] == [e["id"] for e in eb]
    assert ea[0]["createdAt"] < eb[0]["createdAt"]


async def test_seeded_data_is_realistic(make_emulator):
    emu = await make_emulator(entries=3000, days=90, api_keys=("demo-key", "other-key"))
    wss, per_ws = await _dump(emu)
    assert len(wss) == 3
    entries = [e for es in per_ws for e in es]
    assert len(entries) == 3000
    for ws, es in zip(wss, per_ws, strict=True):
        seeded = [m for m in ws["members"] if not m["api_keys"]]
        assert 3 <= len(seeded) <= 8
        keyed = {k for m in ws["members"] for k in m["api_keys"]}
        assert keyed == {"demo-key", "other-key"}
        running = Counter(e["team_member_id"] for e in es if e["end_time"] is None)
        assert running
        assert max(running.values()) == 1
        assert ws["clients"]
        assert ws["projects"]
        assert ws["tasks"]
        assert ws["tags"]
    done = [e for e in entries if e["end_time"] is not None]
    assert all(900 <= e["duration"] <= 28800 for e in done)
    assert all(e["start_time"] < e["end_time"] <= "2026-11-27T12:00:00.000Z" for e in done)
    manual = sum(e["manually_entered"] for e in entries) / len(entries)
    assert 0.06 < manual < 0.14
    days = {e["date"] for e in entries}
    assert len(days) > 80
    assert min(days) >= "2026-08-28"
    text = " ".join(e["description"] + e["team_member_name"] for e in entries)
    text += " ".join(w["name"] for w in wss)
    assert any(ord(ch) > 0x3000 for ch in text)  # CJK
    assert any(0x1F300 <= ord(ch) <= 0x1FAFF for ch in text)  # emoji
    assert any(ch in "éüøñ" for ch in text)  # accents
    assert len({e["id"] for e in entries}) == len(entries)
