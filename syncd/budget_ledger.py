"""What the rate budget keeps in the shared database, as a protocol: the budget ledger.

:class:`~syncd.budget.RateBudget` decides, waits and keeps time; a :class:`BudgetLedger`
holds the grants and the shared deadlines of one API key, for every process using the same
database. Each ledger method is one short transaction (SQLite: ``BEGIN IMMEDIATE``;
PostgreSQL: row locks held only for the call), so a call either happens whole or not at all.
The methods are synchronous; the budget runs them off the event loop (the store's DB thread)
and ``syncd status`` calls :meth:`BudgetLedger.usage` directly.

This module holds the protocol, the values it passes and the window spans every
implementation counts with. It imports nothing of the database (see ``syncd/store/budget.py``
for the SQLite ledger).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Protocol

SECOND = 1.0
#: The span the per-second cap is counted over: a second plus the time a request may take
#: from its grant to the moment the server counts it (the event loop, the network, and a
#: server still busy answering the requests that arrived just before; against the
#: emulator, 1.05 s let eleven land in one of its seconds once in about fifteen backfills).
SECOND_SPAN = SECOND + 0.1
#: A server ``Reset`` at most this far after the observation is its per-second window's
#: (one second, plus up to one more as ``Reset`` is given in whole seconds).
SERVER_SECOND_RESET = 2 * SECOND
#: How far ahead a per-second slot may be reserved (see :meth:`BudgetLedger.acquire`).
#: Short, since a request of higher priority arriving meanwhile waits behind the reservation.
RESERVE_AHEAD = 0.25
MINUTE = 60.0
DAY = 86_400.0
#: Grants older than this are deleted by :meth:`BudgetLedger.prune`.
KEEP_GRANTS = 2 * DAY


def day_start(now: float) -> float:
    """Epoch seconds of the UTC midnight at or before ``now``."""
    return math.floor(now / DAY) * DAY


@dataclass(frozen=True, slots=True)
class Caps:
    """What one request of a given priority may use, in requests (margins already applied)."""

    per_second: int
    per_minute: int  # this priority's share of the minute window
    per_day: int  # this priority's share of the day window
    daily_cap: int | None  # this process's share of the day; None: no extra cap


class Observation(NamedTuple):
    """The server's ``X-RateLimit-Remaining``/``Reset`` as seen at ``seen_at`` (epoch s)."""

    remaining: int
    reset: float | None
    seen_at: float


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer of :meth:`BudgetLedger.acquire`.

    ``granted``: a grant was recorded, for ``wait`` seconds from now (0: at once; more: a
    slot of the per-second window reserved ahead). Otherwise ``wait`` seconds until it may
    be worth asking again and ``reason`` names the binding window; ``exhausted_until``
    (epoch seconds) is set when only the next UTC day frees the budget.
    """

    granted: bool
    wait: float = 0.0  # refused: when to ask again; granted: how long until the slot comes
    reason: str = ""
    exhausted_until: float | None = None
    grant_id: int | None = None  # the grant, when granted (for ``give_back``)


@dataclass(frozen=True, slots=True)
class Usage:
    """Grants in the current second, minute and UTC day of one key, and its shared state.

    ``not_before`` is 0.0 when no deadline was ever written.
    """

    second: int
    minute: int
    day: int
    not_before: float
    server_remaining: int | None
    server_reset: float | None
    server_seen_at: float | None


class BudgetLedger(Protocol):
    """The shared grants and deadlines of one API key (``key_id``).

    Every method is one short transaction and raises ``StoreError`` when the database
    cannot be used (for example when it stays locked past its busy timeout).
    """

    @property
    def key_id(self) -> str:
        """The key this ledger counts for (a hash prefix, never the key)."""
        ...

    def acquire(
        self,
        now: float,
        caps: Caps,
        *,
        priority: int,
        pid: int,
        observed: Observation | None = None,
        give_back: int | None = None,
    ) -> Decision:
        """Record one request at ``now`` if every window allows it; else say when to retry.

        In one transaction: drop the grant ``give_back`` (one that could not be used in
        time), record ``observed`` as :meth:`observe` would, check the ``not_before``
        deadline, the day (and ``caps.daily_cap``), second (over ``SECOND_SPAN``) and
        minute windows and the server's last view, then record the grant. When only the
        per-second window refuses and frees a slot within ``RESERVE_AHEAD``, the grant is
        recorded for that moment if every window allows it then, and the decision's
        ``wait`` says how long until it comes. Every window counts later grants too, so a
        reservation never overfills one.
        """
        ...

    def defer(self, until: float) -> float:
        """Move the shared "not before" deadline to ``until`` unless it is already later.

        Returns the deadline in force (epoch seconds).
        """
        ...

    def observe(self, observed: Observation) -> None:
        """Keep the server's view unless a newer one is kept already.

        :meth:`acquire` then refuses once the grants made after ``observed.seen_at`` have
        used up ``observed.remaining``, until ``observed.reset``.
        """
        ...

    def usage(self, now: float) -> Usage:
        """The grants in the second, minute and UTC day around ``now``, and the shared state.

        A read: it writes nothing, so it may be called from any thread that may use the
        database (``syncd status`` calls it directly).
        """
        ...

    def prune(self, now: float, keep: float = KEEP_GRANTS) -> int:
        """Delete grants older than ``keep`` seconds; returns how many went."""
        ...
