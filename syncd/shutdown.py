"""The stop request of one process, which every part of a run watches.

The composition root (:mod:`syncd.service`) makes one :class:`Shutdown` per process and the
signal handlers request it. Everything that runs sync work watches that one object:

- the engine checks it before each request, so the window in flight is always committed;
- the client lets an exchange on the wire finish, but ends a call that is waiting (for the
  budget, or out a backoff) at once, and starts no retry;
- the rate budget waits with :meth:`Shutdown.sleep`, which ends as soon as a stop arrives;
- the daemon's scheduler starts no job once a stop was requested.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from syncd.errors import ShutdownRequested

STOP_REQUESTED = "stop requested"


class ShutdownCheck(Protocol):
    """What the sync engine needs of a shutdown: a check before each request."""

    def check(self, reason: str = STOP_REQUESTED) -> None:
        """Raises ``ShutdownRequested`` (with ``reason``) once a stop was requested."""
        ...


class Shutdown:
    """A stop request: made once, seen by everyone who checks, waits or sleeps on it.

    Needs no running event loop to be made; its waits run on the loop that awaits them.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    @property
    def requested(self) -> bool:
        """True once :meth:`request` was called."""
        return self._event.is_set()

    def request(self) -> None:
        """Ask for a stop (again is harmless). Never raises."""
        self._event.set()

    def check(self, reason: str = STOP_REQUESTED) -> None:
        """Returns while no stop was requested; raises ``ShutdownRequested`` (``reason``)
        once one was."""
        if self._event.is_set():
            raise ShutdownRequested(reason)

    async def wait(self) -> None:
        """Returns once a stop was requested (at once if it already was)."""
        await self._event.wait()

    async def sleep(self, seconds: float, *, reason: str = "stop requested while waiting") -> None:
        """``asyncio.sleep(seconds)`` that a stop ends early: returns after the whole time,
        raises ``ShutdownRequested`` (``reason``) as soon as a stop was (or had been)
        requested."""
        self.check(reason)
        try:
            await asyncio.wait_for(self._event.wait(), timeout=seconds)
        except TimeoutError:
            return  # slept the whole time
        raise ShutdownRequested(reason)
