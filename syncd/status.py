"""What ``syncd status`` reports, read from the mirror alone (it works while the daemon runs):
per workspace state and freshness, the key's budget, the daemon's plan and heartbeat, the
webhook subscription and what syncd has learned about the upstream's find window.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from syncd.config import Config
from syncd.errors import NoDatabase
from syncd.secrets import redact_path
from syncd.service import budget_for, utc_now
from syncd.store import Store
from syncd.sync import FRESHNESS_SETTING
from syncd.window_reading import SETTING as READING_SETTING
from syncd.window_reading import WindowReading

PLAN_SETTING = "daemon_plan"
HEARTBEAT_SETTING = "daemon_heartbeat"
SUBSCRIPTION_SETTING = "webhook_subscription"


def status(config: Config) -> dict[str, Any]:
    """What ``syncd status`` shows, read from the mirror (works while the daemon runs).

    Raises ``NoDatabase`` when there is no mirror (none is created), ``StoreError`` when
    the database cannot be opened.
    """
    if not Path(config.database.path).is_file():
        raise NoDatabase(str(config.database.path))
    store = Store(config.database.path)
    try:
        return describe_status(config, store)
    finally:
        store.close()


def describe_status(config: Config, store: Store) -> dict[str, Any]:
    """What ``syncd status`` reports; reads only the mirror (works while the daemon runs).

    Raises ``StoreError``.
    """
    data = store.status()
    now = utc_now()
    freshness = json.loads(store.get_setting(FRESHNESS_SETTING) or "{}")
    for workspace in data["workspaces"]:
        # Freshness is how long ago the hot window was last verified (a push re-scan of one
        # day does not make the whole recent past fresh).
        last = workspace.get("last_hot_scan_at") or workspace.get("last_scan_at")
        workspace["freshness_lag_seconds"] = (
            round((now - parse_timestamp(last)).total_seconds()) if last else None
        )
        # Per tier, the age of its least recently verified window (None: not known yet).
        verified = freshness.get(workspace["id"], {})
        workspace["verified_age_seconds"] = {
            tier: round((now - parse_timestamp(at)).total_seconds()) if at else None
            for tier, at in verified.items()
        }
    key = config.api.key
    budget: dict[str, Any] = {}
    if key is not None:
        snapshot = _budget_snapshot(config, store, key.get_secret_value())
        budget = {
            "used_this_minute": snapshot.used_this_minute,
            "used_today": snapshot.used_today,
            "per_day": snapshot.per_day,
            "remaining": snapshot.remaining(),
            "not_before": snapshot.not_before,
        }
    data["budget"] = budget
    data["plan"] = json.loads(store.get_setting(PLAN_SETTING) or "null")
    subscription = json.loads(store.get_setting(SUBSCRIPTION_SETTING) or "null")
    if subscription and subscription.get("url"):
        subscription["url"] = redact_path(subscription["url"])  # the token is a credential
    data["webhook_subscription"] = subscription
    data["daemon"] = json.loads(store.get_setting(HEARTBEAT_SETTING) or "null")
    pinned = config.api.window_field
    reading = WindowReading.from_json(
        store.get_setting(READING_SETTING),
        pinned=None if pinned == "auto" else pinned,  # type: ignore[arg-type]
    )
    data["upstream_reading"] = reading.describe()
    return data


def _budget_snapshot(config: Config, store: Store, key: str) -> Any:
    budget = budget_for(config, store, key, daily_share=config.limits.daemon_share)
    return budget.read_snapshot()


def parse_timestamp(text: str) -> datetime:
    """A stored ISO 8601 timestamp as an aware UTC datetime. Raises ``ValueError``."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
