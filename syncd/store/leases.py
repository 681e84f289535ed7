"""Expiring leases in rows: which instance holds a named piece of work, and until when.

One row per lease name in the table ``leases(name, holder, acquired_at, expires_at)`` (times
in seconds since the epoch, read from the database's clock so that instances whose clocks
disagree still agree on expiry). Taking, renewing and handing over a lease is one
``INSERT … ON CONFLICT … DO UPDATE … WHERE … RETURNING`` statement, atomic on SQLite
(3.35 or newer), PostgreSQL and CockroachDB alike; no advisory locks. Run outside a
transaction (each call commits on its own) so a lease is visible to others at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from peewee import Database

from syncd.store.backend import POSTGRESQL, backend_name

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

    def acquire(self, name: str, holder: str, ttl_seconds: float) -> bool:
        """Take ``name`` for ``holder`` for ``ttl_seconds`` if it is free or expired, or renew it
        if ``holder`` has it; return whether ``holder`` holds it now.

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
            "RETURNING holder"
        )
        row = self.db.execute_sql(sql, (name, holder, float(ttl_seconds))).fetchone()
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
