"""The interfaces the sync engine is written against.

``sync.py`` sees upstream only through :class:`Client`, the mirror only through
:class:`MirrorStore` and the other syncd processes on the same key only through
:class:`WorkLeases`; the real implementations live in ``client.py`` (aiohttp),
``store/`` (peewee) and ``instances.py``, and tests may pass in-memory ones. This module
imports none of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from syncd.records import (
    Priority,
    RunReport,
    TimeEntry,
    WebhookEvent,
    WebhookSubscription,
    WindowOutcome,
    WindowScan,
    Workspace,
    WorkspaceState,
)


class Client(Protocol):
    """Upstream, as the sync engine needs it. Every call spends rate budget.

    Methods raise ``ApiError`` subclasses once retries are exhausted, and
    ``BudgetExhausted`` when the daily quota does not allow the request.
    """

    async def list_workspaces(self, *, priority: Priority = Priority.HOT) -> list[Workspace]: ...

    async def find_time_entries(
        self,
        workspace_id: str,
        *,
        date_from: str | None,
        date_to: str | None,
        priority: Priority,
        retry_timeouts: bool = True,
    ) -> list[TimeEntry]:
        """Every entry upstream puts in the find window ``[date_from, date_to]`` (YYYY-MM-DD,
        sent as ``date_after``/``date_before``; which field that filters on, and whether the
        bounds include, is for the caller to learn: see ``syncd.window_reading``).

        ``None`` leaves that side open. Upstream does not paginate, and documents no cap.
        ``retry_timeouts=False`` raises a 504 or a timed-out request at once (the caller
        splits the window instead).
        """
        ...

    async def list_webhooks(self) -> list[WebhookSubscription]: ...

    async def subscribe_webhook(
        self, url: str, events: Sequence[str], *, secret: str | None, description: str | None
    ) -> WebhookSubscription: ...

    async def delete_webhook(self, webhook_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class MassDeletePolicy:
    """When a window's tombstones are refused: past ``share`` of the workspace's live entries
    and at least ``minimum`` of them, counted over a rolling day, unless ``force``."""

    share: float = 0.5
    minimum: int = 10
    force: bool = False


class MirrorStore(Protocol):
    """The mirror database, as the sync engine needs it (async; runs on the DB thread).

    Methods raise ``StoreError`` when the database cannot be used.
    """

    async def upsert_workspaces(self, workspaces: Sequence[Workspace], synced_at: str) -> None: ...

    async def workspace_state(self, workspace_id: str) -> WorkspaceState: ...

    async def apply_window(
        self, scan: WindowScan, policy: MassDeletePolicy = MassDeletePolicy()
    ) -> WindowOutcome:
        """Upsert the scan's entries, tombstone the window's missing ones, revive reappearing
        ones, record the scan and write ``scan.state``, all in one transaction.

        Raises ``MassDeleteError`` (and writes nothing) when the tombstones would exceed what
        ``policy`` allows.
        """
        ...

    async def save_state(self, state: WorkspaceState) -> None:
        """Write a workspace's sync progress on its own (no window attached)."""
        ...

    async def oldest_entry_date(self, workspace_id: str) -> str | None:
        """The oldest ``date`` of any entry of the workspace, tombstones included."""
        ...

    async def last_scan_covering(self, workspace_id: str, day: str) -> str | None:
        """When ``day`` of the workspace was last scanned, or None when it never was."""
        ...

    async def count_live_entries(
        self,
        workspace_id: str,
        date_from: str | None = None,
        date_to: str | None = None,
        by: str = "date",
    ) -> int:
        """Live entries whose ``date``, creation day or both (``by``) lie in the range."""
        ...

    async def running_entry_dates(self, workspace_id: str) -> list[str]:
        """Dates (YYYY-MM-DD) of entries the mirror holds as running timers."""
        ...

    async def apply_push(
        self,
        event: WebhookEvent,
        received_at: str,
        entry: TimeEntry | None = None,
        *,
        outcome: str = "recorded",
    ) -> str:
        """Ledger the event, upsert ``entry`` (if any) unless the mirror holds a newer
        ``updated_at``, and record the outcome, in one transaction.

        Returns ``"duplicate"`` (nothing written) when the event was seen before, else the
        entry's outcome (``"inserted"``, ``"updated"``, ``"revived"``, ``"stale"``, or
        ``"ignored"`` for a workspace the mirror does not hold), or ``outcome`` when there is
        no entry.
        """
        ...

    async def unconfirmed_push_days(
        self, workspace_id: str, limit: int
    ) -> list[tuple[str, str | None]]:
        """``(date, creation day or None)`` of at most ``limit`` live rows of the workspace
        written by a push no scan has confirmed since, the earliest received first."""
        ...

    async def get_setting(self, key: str) -> str | None: ...

    async def set_setting(self, key: str, value: str | None) -> None: ...

    async def start_run(self, kind: str, started_at: str) -> int: ...

    async def finish_run(self, run_id: int, report: RunReport) -> None: ...


class WorkLeases(Protocol):
    """Which workspaces this process syncs, when several share one key (leases in the mirror
    database, renewed while the work goes on). Methods raise ``StoreError``."""

    async def claim(self, workspace_ids: Sequence[str]) -> list[str]:
        """The workspaces of ``workspace_ids`` (every workspace mirrored) this process syncs
        this round, their leases taken or renewed; the others are another instance's."""
        ...

    async def renew(self, workspace_id: str) -> bool:
        """Renew the workspace's lease before or after a window; False when another instance
        has it now (this one stops working on it)."""
        ...


class SoleInstance:
    """``WorkLeases`` of a process alone on its key: every workspace is always its own."""

    async def claim(self, workspace_ids: Sequence[str]) -> list[str]:
        return list(workspace_ids)

    async def renew(self, workspace_id: str) -> bool:
        return True
