"""Emulator benchmark: find latency for a ~1,000-entry window with 1,000,000 entries loaded,
and peak memory.

    .venv/bin/python bench/bench_emulator.py [--entries 1000000] [--calls 50] [--days 330]

Prints plain ``name: value`` lines.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time

import aiohttp
from aiohttp import web

from syncd.emulator import EmulatorSettings, create_app
from syncd.emulator.state import EMU
from syncd.emulator.timefmt import DAY_MS, fmt_ms

FIND = "/api/integrations/zapier/triggers/time-entries/find"


def windows(world, ws, target: int, n: int) -> list[tuple[str, str, int]]:
    """Up to ``n`` distinct day windows of ``ws`` holding about ``target`` entries each."""
    keys = ws.day_keys
    out = []
    i = len(keys) - 1
    while i >= 0 and len(out) < n:
        j, size = i, 0
        while j >= 0 and size < target:
            nxt = len(ws.days[keys[j]])
            if size and abs(size + nxt - target) > abs(size - target):
                break  # one more day would take the window further from the target
            size += nxt
            j -= 1
        lo, hi = keys[j + 1], keys[i]
        out.append((fmt_ms(lo * DAY_MS), fmt_ms(hi * DAY_MS), size))
        i = j
    return out


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


async def main(entries: int, calls: int, days: int) -> None:
    t0 = time.perf_counter()
    app = create_app(
        EmulatorSettings(
            entries=entries, workspaces=3, days=days, rate_limit=False, api_keys=("bench",)
        )
    )
    seed_s = time.perf_counter() - t0
    world = app[EMU].world
    ws = next(iter(world.workspaces.values()))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}{FIND}"
    headers = {"Authorization": "Bearer bench"}
    cold_windows = windows(world, ws, 1000, calls)
    sizes = [w[2] for w in cold_windows]

    async with aiohttp.ClientSession() as http:

        async def find(lo: str, hi: str) -> tuple[float, int]:
            body = {"workspace_id": ws.id, "date_after": lo, "date_before": hi}
            t = time.perf_counter()
            async with http.post(url, json=body, headers=headers) as resp:
                data = await resp.read()
                assert resp.status == 200, resp.status
            return (time.perf_counter() - t) * 1000, data.count(b'"createdAt"')

        cold = [await find(lo, hi) for lo, hi, _ in cold_windows]  # first time each window
        lo, hi, _ = cold_windows[0]
        warm = [await find(lo, hi) for _ in range(calls)]  # the same window again and again
    await runner.cleanup()
    cold_ms = [c[0] for c in cold]
    warm_ms = [w[0] for w in warm]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"entries_loaded: {len(world.entries)}")
    print(f"seed_seconds: {seed_s:.1f}")
    print(
        f"window_entries: median {statistics.median(sizes):.0f} (min {min(sizes)}, "
        f"max {max(sizes)}) over {len(sizes)} windows"
    )
    print(
        f"find_ms_first_call_per_window: median {statistics.median(cold_ms):.1f} "
        f"p95 {pct(cold_ms, 95):.1f}"
    )
    print(
        f"find_ms_repeated_window: median {statistics.median(warm_ms):.1f} "
        f"p95 {pct(warm_ms, 95):.1f}"
    )
    print(f"peak_rss_mb: {rss_mb:.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=50)
    # 1,000,000 entries over 3 workspaces and 330 days: about 1,000 entries per workspace-day
    parser.add_argument("--days", type=int, default=330)
    args = parser.parse_args()
    asyncio.run(main(args.entries, args.calls, args.days))
    sys.exit(0)
