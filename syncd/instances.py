"""Several syncd processes on one key: who this process is, and its share of the key's work.

Every process has an instance id (host name, process id and a short random suffix, or
``[sync] instance_id``), logged when it starts. :class:`SharedWork` keeps its leases
(``syncd.store.leases.WorkShare``) on the store's DB thread: its own lease, renewed by a
heartbeat so ``syncd status`` lists it; a lease per workspace it syncs, taken by the engine at
the start of every round and renewed with every window (an instance that cannot take one skips
that workspace); and, for the daemon keeping the webhook subscription, the key's leader lease.
A killed process's leases expire within ``[sync] lease_seconds``, or at once when it ran on
this host; a stopped one gives them back. With one process, every lease is always taken.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from contextlib import suppress

import structlog

from syncd.errors import StoreError
from syncd.store import AsyncStore
from syncd.store.leases import Leases, WorkShare

log = structlog.get_logger("syncd.instances")

#: How often a daemon looks for a workspace whose holder died (a read), so that its work is
#: taken over within this of the lease expiring; leases are renewed every third of their life.
LOOK_SECONDS = 5.0


def new_instance_id(host: str | None = None, pid: int | None = None) -> str:
    """``host:pid:suffix``: this host's name, this process's id and 6 random hex digits."""
    host = (host or socket.gethostname() or "localhost").replace(":", "-")
    return f"{host}:{os.getpid() if pid is None else pid}:{secrets.token_hex(3)}"


def gone_locally(holder: str, *, host: str | None = None) -> bool:
    """Whether ``holder`` is an instance id of this host whose process no longer runs (its
    leases can be taken over at once). False for another host or an id of another shape."""
    here = (host or socket.gethostname() or "localhost").replace(":", "-")
    name, sep, rest = holder.partition(":")
    pid_text, sep2, _suffix = rest.partition(":")
    if not sep or not sep2 or name != here or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # this process, under another id: not gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it runs, as another user
    return False


class SharedWork:
    """This process's leases on the work of API key ``key_id`` (implements
    ``syncd.seams.WorkLeases`` for the engine). Use ``async with``: the heartbeat runs every
    third of ``ttl_seconds`` and every lease is given back at the end.

    ``daemon=False`` (a one-shot run) takes free workspaces up to its share and never leads;
    ``wants_lead`` (a daemon that subscribes to webhooks) takes the leader lease when it is
    free, and ``on_lead`` is called when this process becomes the leader.
    """

    def __init__(
        self,
        store: AsyncStore,
        *,
        key_id: str,
        instance_id: str,
        ttl_seconds: float,
        daemon: bool,
        wants_lead: bool = False,
        on_lead: Callable[[], object] | None = None,
        on_unheld: Callable[[], object] | None = None,
    ) -> None:
        self.store = store
        self.instance_id = instance_id
        self.ttl_seconds = ttl_seconds
        self.wants_lead = wants_lead and daemon
        self.on_lead = on_lead
        self.on_unheld = on_unheld
        self.share = WorkShare(
            Leases(store.store.db),
            key_id,
            instance_id,
            ttl_seconds,
            daemon=daemon,
            gone=gone_locally,
        )
        self._beating: asyncio.Task[None] | None = None

    @property
    def leading(self) -> bool:
        """Whether this process keeps the key's webhook subscription now."""
        return self.share.leading

    # -- WorkLeases
    async def claim(self, workspace_ids: Sequence[str]) -> list[str]:
        """The workspaces of ``workspace_ids`` this process syncs this round (see
        ``WorkShare.claim``). Raises ``StoreError``."""
        return await self.store.call_budget(self.share.claim, list(workspace_ids))

    async def renew(self, workspace_id: str) -> bool:
        """Renew the workspace's lease; False when another instance has it now. Raises
        ``StoreError``."""
        return await self.store.call_budget(self.share.renew, workspace_id)

    # -- lifecycle
    async def beat(self) -> bool:
        """Renew this process's leases now (and take the leader lease when free and wanted);
        returns whether it leads. Raises ``StoreError``."""
        was, was_unheld = self.share.leading, self.share.unheld
        leading = await self.store.call_budget(self.share.beat, lead=self.wants_lead)
        self._noticed(was_unheld)
        if leading and not was:
            log.info("instance_leads", instance=self.instance_id)
            if self.on_lead is not None:
                self.on_lead()
        elif was and not leading:
            log.warning("instance_lost_lead", instance=self.instance_id)
        return leading

    async def look(self) -> None:
        """Look (a read, no write) for a workspace whose holder died. Raises ``StoreError``."""
        was_unheld = self.share.unheld
        await self.store.call_budget(self.share.look)
        self._noticed(was_unheld)

    def _noticed(self, was_unheld: bool) -> None:
        if self.share.unheld and not was_unheld and self.on_unheld is not None:
            log.info("workspace_lease_free", instance=self.instance_id)
            self.on_unheld()  # a holder died: take its work at once, not at the next round

    async def __aenter__(self) -> SharedWork:
        await self.beat()
        self._beating = asyncio.ensure_future(self._heartbeat())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._beating is not None:
            self._beating.cancel()
            with suppress(asyncio.CancelledError):
                await self._beating
        with suppress(StoreError, RuntimeError):  # unreleased leases expire by themselves
            await self.store.call_budget(self.share.release_all)

    async def _heartbeat(self) -> None:
        renew_every = max(0.5, self.ttl_seconds / 3)
        tick = min(renew_every, LOOK_SECONDS) if self.on_unheld is not None else renew_every
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            try:
                if time.monotonic() - renewed >= renew_every - tick / 2:
                    await self.beat()
                    renewed = time.monotonic()
                else:
                    await self.look()
            except StoreError as exc:
                log.warning("instance_heartbeat_failed", error=str(exc))
