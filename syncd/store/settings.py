"""The installation's key/value settings (the ``installation`` table): what syncd has learned
and decided about this mirror, one text value per key. Runs inside the caller's transaction
(reads) or write transaction (writes)."""

from __future__ import annotations

from syncd.store import models as m


def get(key: str) -> str | None:
    """The value stored under ``key``, or None."""
    row = m.Installation.get_or_none(m.Installation.key == key)
    return None if row is None else row.value


def put(key: str, value: str | None) -> None:
    """Store ``value`` under ``key``; ``None`` removes the key."""
    if value is None:
        m.Installation.delete().where(m.Installation.key == key).execute()
    else:
        m.Installation.insert(key=key, value=value).on_conflict(
            conflict_target=[m.Installation.key], preserve=[m.Installation.value]
        ).execute()
