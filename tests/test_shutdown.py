"""``Shutdown``: one stop request that checks, waits and sleeps all see."""

from __future__ import annotations

import asyncio
import time

import pytest

from syncd.errors import ShutdownRequested
from syncd.shutdown import Shutdown


def test_check_passes_until_a_stop_is_requested() -> None:
    shutdown = Shutdown()  # made outside any event loop, like the engine's default
    assert not shutdown.requested
    shutdown.check()
    shutdown.request()
    shutdown.request()  # again is harmless
    assert shutdown.requested
    with pytest.raises(ShutdownRequested, match="the window is kept"):
        shutdown.check("stop requested; the window is kept")


async def test_wait_returns_once_requested() -> None:
    shutdown = Shutdown()
    waiter = asyncio.ensure_future(shutdown.wait())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    shutdown.request()
    await asyncio.wait_for(waiter, 1)
    await asyncio.wait_for(shutdown.wait(), 1)  # at once when already requested


async def test_sleep_sleeps_the_whole_time_without_a_stop() -> None:
    started = time.monotonic()
    await Shutdown().sleep(0.05)
    assert time.monotonic() - started >= 0.04


async def test_a_stop_ends_a_sleep_at_once() -> None:
    shutdown = Shutdown()
    asyncio.get_running_loop().call_later(0.05, shutdown.request)
    started = time.monotonic()
    with pytest.raises(ShutdownRequested, match="rate budget"):
        await shutdown.sleep(60, reason="stop requested while waiting for the rate budget")
    assert time.monotonic() - started < 5


async def test_a_sleep_after_the_stop_raises_even_for_no_time() -> None:
    shutdown = Shutdown()
    shutdown.request()
    with pytest.raises(ShutdownRequested):
        await shutdown.sleep(0)
