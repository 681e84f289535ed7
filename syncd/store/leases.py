"""Expiring leases in rows: which instance holds a named piece of work, and until when.

One row per lease name in the table ``leases(name, holder, acquired_at, expires_at)`` (times
in seconds since the epoch, read from the database's clock so that instances whose clocks
disagree still agree on expiry). Taking, renewing and handing over a lease is one
``INSERT … ON CONFLICT … DO UPDATE … WHERE … RETURNING`` statement, atomic on SQLite
(3.35 or newer), PostgreSQL and CockroachDB alike; no advisory locks. Run outside a
transaction (each call commits on its own) so a lease is visible to others at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from peewee import Database

from syncd.errors import StoreError
from syncd.store.backend import POSTGRESQL, backend_name
from syncd.store.failures import DATABASE_ERRORS

#: Lease names: a daemon's, a one-shot run's, a workspace's work and a key's subscription.
INSTANCE, ONCE, WORKSPACE, LEADER = "instance:", "once:", "workspace:", "leader:"

# The database's clock in seconds since the epoch (fractional).
_NOW = {
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
    POSTGRESQL: "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)",
}


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease held now: ``expires_at`` and ``acquired_at`` are epoch seconds (database clock);
    ``acquired_at`` is when this holder took it (renewals keep it)."""

    name: str
    holder: str
    acquired_at: float
    expires_at: float


class Leases:
    """Leases kept in ``db`` (SQLite or PostgreSQL), in the table ``leases``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._now = _NOW[backend_name(db)]

    def acquire(
        self, name: str, holder: str, ttl_seconds: float, *, replacing: str | None = None
    ) -> bool:
        """Take ``name`` for ``holder`` for ``ttl_seconds`` if it is free or expired (or held by
        ``replacing``, a holder known to be gone), or renew it if ``holder`` has it; return
        whether ``holder`` holds it now.

        Raises ``ValueError`` for a ``ttl_seconds`` that is not positive.
        """
        if not ttl_seconds > 0:
            raise ValueError(f"a lease lasts a positive number of seconds, not {ttl_seconds!r}")
        p = self.db.param
        sql = (
            "INSERT INTO leases (name, holder, acquired_at, expires_at) "  # noqa: S608 (constants)
            f"SELECT {p}, {p}, now, now + {p} FROM (SELECT {self._now} AS now) AS clock "
            "WHERE TRUE "
            "ON CONFLICT (name) DO UPDATE SET "
            "holder = excluded.holder, "
            "acquired_at = CASE WHEN leases.holder = excluded.holder "
            "THEN leases.acquired_at ELSE excluded.acquired_at END, "
            "expires_at = excluded.expires_at "
            "WHERE leases.holder = excluded.holder OR leases.expires_at <= excluded.acquired_at "
            f"OR leases.holder = {p} "
            "RETURNING holder"
        )
        params = (name, holder, float(ttl_seconds), replacing)
        row = self.db.execute_sql(sql, params).fetchone()
        return row is not None

    def release(self, name: str, holder: str) -> bool:
        """Give up ``name`` if ``holder`` has it; return whether it did (an expired lease of
        ``holder`` counts, a lease another holder took over does not)."""
        p = self.db.param
        cursor = self.db.execute_sql(
            f"DELETE FROM leases WHERE name = {p} AND holder = {p}",  # noqa: S608
            (name, holder),
        )
        return cursor.rowcount > 0

    def holders(self) -> list[Lease]:
        """The leases held now (not expired), by name."""
        rows = self.db.execute_sql(
            "SELECT name, holder, acquired_at, expires_at FROM leases "  # noqa: S608
            f"WHERE expires_at > {self._now} ORDER BY name"
        ).fetchall()
        return [Lease(n, h, float(a), float(e)) for n, h, a, e in rows]


@dataclass(slots=True)
class WorkShare:
    """One process's leases on one API key's work, kept in ``leases``: its own
    (``instance:<holder>`` for a daemon, ``once:<holder>`` for a one-shot run), one per
    workspace it syncs (``workspace:<key id>:<workspace id>``) and, for the daemon keeping the
    webhook subscription, ``leader:<key id>``. Every lease lasts ``ttl_seconds``.

    ``gone(holder)`` tells whether a holder is known to have ended (a process of this host that
    no longer runs): its leases are taken over at once instead of after they expire.
    Synchronous: call it on the store's DB thread. Methods raise ``StoreError``.
    """

    leases: Leases
    key_id: str
    holder: str
    ttl_seconds: float
    daemon: bool = True
    gone: Callable[[str], bool] = lambda _holder: False
    held: set[str] = field(default_factory=set)  # workspace ids
    leading: bool = False
    known: set[str] = field(default_factory=set)  # the key's workspaces at the last claim
    unheld: bool = False  # at the last beat, one of them had no live lease (a holder died)

    @property
    def own_name(self) -> str:
        return f"{INSTANCE if self.daemon else ONCE}{self.holder}"

    @property
    def leader_name(self) -> str:
        return f"{LEADER}{self.key_id}"

    def workspace_name(self, workspace_id: str) -> str:
        return f"{WORKSPACE}{self.key_id}:{workspace_id}"

    def claim(self, workspace_ids: Sequence[str]) -> list[str]:
        """The workspaces of ``workspace_ids`` (the key's whole list) this process syncs now,
        their leases taken or renewed: those it holds and free ones. A daemon keeps at most its
        share (the workspaces over the live daemons, rounded up) and gives back what it holds
        beyond it, so daemons that start later get work; a one-shot run takes free ones up to
        its share of the live daemons and one-shot runs.
        """
        return self._guarded(self._claim, list(workspace_ids))

    def renew(self, workspace_id: str) -> bool:
        """Renew the workspace's lease; False (and forgotten) when another holder has it."""
        return self._guarded(self._renew, workspace_id)

    def beat(self, *, lead: bool = False) -> bool:
        """Renew this process's lease and every workspace lease it holds (a lost one is
        forgotten); with ``lead``, take or keep the leader lease. Returns whether this process
        leads (keeps the subscription) now."""
        return self._guarded(self._beat, lead)

    def look(self) -> bool:
        """Whether one of the key's workspaces (as of the last claim) has no live lease now (its
        holder died); reads only. Kept in ``unheld``."""
        return self._guarded(self._find_unheld)

    def _find_unheld(self) -> bool:
        names = {lease.name for lease in self.leases.holders()}
        self.unheld = any(self.workspace_name(w) not in names for w in self.known)
        return self.unheld

    def release_all(self) -> None:
        """Give back every lease of this process (at a clean end), so others take over now."""
        self._guarded(self._release_all)

    # -- on the DB thread, errors not yet turned into StoreError --------------------------

    def _claim(self, workspace_ids: list[str]) -> list[str]:
        self._acquire(self.own_name)
        current = {lease.name: lease for lease in self.leases.holders()}
        for name, lease in list(current.items()):  # processes known to be gone: no more
            if (
                name.startswith((INSTANCE, ONCE))
                and not self._ours(lease)
                and self.gone(lease.holder)
            ):
                self.leases.release(name, lease.holder)
                del current[name]
        mine = [w for w in workspace_ids if self._ours(current.get(self.workspace_name(w)))]
        # A daemon's share counts the daemons; a one-shot run's counts the one-shot runs too
        # (so runs started together split the work), and no daemon gives work away to one.
        sharing = (INSTANCE,) if self.daemon else (INSTANCE, ONCE)
        instances = sum(1 for name in current if name.startswith(sharing))
        quota = math.ceil(len(workspace_ids) / max(1, instances))
        kept, given_back = mine[:quota], mine[quota:]
        for workspace_id in given_back:  # beyond the share: left for another daemon
            self.leases.release(self.workspace_name(workspace_id), self.holder)
        taken: list[str] = []
        for workspace_id in kept + [w for w in workspace_ids if w not in mine]:
            if len(taken) >= quota:
                break
            lease = current.get(self.workspace_name(workspace_id))
            if self._take(self.workspace_name(workspace_id), lease):
                taken.append(workspace_id)
        self.held = (self.held - set(workspace_ids)) | set(taken)
        self.known = set(workspace_ids)
        return [w for w in workspace_ids if w in taken]

    def _renew(self, workspace_id: str) -> bool:
        if self._acquire(self.workspace_name(workspace_id)):
            self.held.add(workspace_id)
            return True
        self.held.discard(workspace_id)
        return False

    def _beat(self, lead: bool) -> bool:
        self._acquire(self.own_name)
        for workspace_id in sorted(self.held):
            self._renew(workspace_id)
        if lead:
            current = next((x for x in self.leases.holders() if x.name == self.leader_name), None)
            self.leading = self._take(self.leader_name, current)
        if self.daemon:
            self._find_unheld()
        return self.leading

    def _release_all(self) -> None:
        for workspace_id in sorted(self.held):
            self.leases.release(self.workspace_name(workspace_id), self.holder)
        self.held.clear()
        if self.leading:
            self.leases.release(self.leader_name, self.holder)
            self.leading = False
        self.leases.release(self.own_name, self.holder)

    def _take(self, name: str, lease: Lease | None) -> bool:
        """Take or renew ``name``, held now as ``lease``: not while another live holder has it,
        at once from a holder that is gone."""
        replacing = None
        if lease is not None and not self._ours(lease):
            if not self.gone(lease.holder):
                return False
            replacing = lease.holder
        return self._acquire(name, replacing=replacing)

    def _acquire(self, name: str, *, replacing: str | None = None) -> bool:
        return self.leases.acquire(name, self.holder, self.ttl_seconds, replacing=replacing)

    def _ours(self, lease: Lease | None) -> bool:
        return lease is not None and lease.holder == self.holder

    def _guarded(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except DATABASE_ERRORS as exc:
            raise StoreError(f"leases: {' '.join(str(exc).split())}") from exc


def held_now(db: Database) -> list[Lease]:
    """The leases held now in ``db`` (``syncd status``), by name. Raises ``StoreError``."""
    try:
        return Leases(db).holders()
    except DATABASE_ERRORS as exc:
        raise StoreError(f"leases: {' '.join(str(exc).split())}") from exc
