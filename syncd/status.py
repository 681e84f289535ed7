"""What ``syncd status`` reports, read from the mirror alone (it works while the daemon runs):
per workspace state and freshness, the key's budget, the daemon's plan and heartbeat, the
webhook subscription, what syncd has learned about the upstream's find window, and the syncd
instances sharing the key's work (their leases).

:func:`describe_status` reads it as one typed :class:`MirrorStatus`; ``status`` (text and
``--json``), the status page and the daemon all read that object. The plan, the heartbeat
and the subscription are kept in the mirror as JSON settings and read into their types here,
once (``from_json`` beside each type).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from syncd.budget import BudgetSnapshot, key_id_for
from syncd.config import Config
from syncd.errors import NoDatabase
from syncd.records import WorkspaceState, format_timestamp
from syncd.secrets import redact_path
from syncd.service import budget_for, utc_now
from syncd.store import Store
from syncd.store.leases import INSTANCE, LEADER, ONCE, WORKSPACE, Lease, held_now
from syncd.store.status_reads import MirrorCounts, RunRecord, WorkspaceCounts
from syncd.sync import FRESHNESS_SETTING
from syncd.window_reading import SETTING as READING_SETTING
from syncd.window_reading import WindowReading

PLAN_SETTING = "daemon_plan"
HEARTBEAT_SETTING = "daemon_heartbeat"
SUBSCRIPTION_SETTING = "webhook_subscription"

#: Per workspace id and tier, when its least recently verified window was scanned (None:
#: not known yet); the engine's ``freshness`` setting, read by :func:`verified_times`.
VerifiedTimes = Mapping[str, Mapping[str, datetime | None]]


@dataclass(frozen=True, slots=True)
class WorkspaceStatus:
    """One workspace: its counts and sync progress, how long ago its recent past was last
    verified (``freshness_lag_seconds``, None: never) and, per tier, the age of its least
    recently verified window (None: not known yet)."""

    id: str
    name: str | None
    progress: WorkspaceState  # as committed with the last window (fresh when none was)
    live_entries: int = 0
    tombstoned_entries: int = 0
    quarantined_entries: int = 0
    last_scan_at: str | None = None
    freshness_lag_seconds: int | None = None
    verified_age_seconds: Mapping[str, int | None] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The workspace as ``status --json`` shows it."""
        counts = WorkspaceCounts(
            id=self.id,
            name=self.name,
            live_entries=self.live_entries,
            tombstoned_entries=self.tombstoned_entries,
            quarantined_entries=self.quarantined_entries,
            last_scan_at=self.last_scan_at,
            progress=self.progress,
        )
        return counts.as_dict() | {
            "freshness_lag_seconds": self.freshness_lag_seconds,
            "verified_age_seconds": dict(self.verified_age_seconds),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WorkspaceStatus:
        """The workspace of a ``status --json`` document (missing keys read as unknown)."""
        progress = _known(WorkspaceState, data, workspace_id=data["id"])
        return _known(cls, data, name=data.get("name"), progress=progress)


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """The key's shared request budget now: requests used this minute and today, the
    effective daily limit, what is left per window and, after a 429, the epoch second
    before which nothing is sent (None when not in force)."""

    used_this_minute: int = 0
    used_today: int = 0
    per_day: int = 0
    remaining: Mapping[str, int] = field(default_factory=dict)
    not_before: float | None = None

    @classmethod
    def from_snapshot(cls, snapshot: BudgetSnapshot) -> BudgetStatus:
        """The figures ``status`` shows of a budget snapshot."""
        return cls(
            used_this_minute=snapshot.used_this_minute,
            used_today=snapshot.used_today,
            per_day=snapshot.per_day,
            remaining=snapshot.remaining(),
            not_before=snapshot.not_before,
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"remaining": dict(self.remaining)}


@dataclass(frozen=True, slots=True)
class TierPromise:
    """What the daemon's plan promises one verification tier (hot, warm or cold)."""

    windows: int = 0
    period_seconds: float = 0.0
    promised_seconds: float | None = None  # None: the plan cannot afford it at all
    requests_per_day: float = 0.0
    stretched: bool = False


@dataclass(frozen=True, slots=True)
class DaemonPlan:
    """The daemon's daily request plan as it stored it (``syncd.daemon.plan.Plan.as_dict``):
    intervals, requests a day per part, and the promise per tier."""

    per_day: int = 0
    daemon_share: float = 0.0
    daemon_budget: int = 0
    left_for_others: int = 0
    workspaces: int = 0
    requests_per_poll: int = 0
    configured_interval_seconds: float = 0.0
    poll_interval_seconds: float | None = None
    poll_stretched: bool = False
    reconcile_windows: int = 0
    reconcile_interval_seconds: float | None = None
    reconcile_windows_per_slice: int = 0
    reconcile_period_days: float = 0.0
    achieved_period_days: float | None = None
    period_achievable: bool = True
    poll_per_day: float = 0.0
    reconcile_per_day: float = 0.0
    push_reserve: int = 0
    fixed_per_day: int = 0
    warnings: tuple[str, ...] = ()
    tiers: Mapping[str, TierPromise] = field(default_factory=dict)
    planned_per_day: float | None = None

    def as_json(self) -> dict[str, Any]:
        """The plan as stored and as ``status --json`` shows it."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["warnings"] = list(self.warnings)
        data["tiers"] = {name: asdict(tier) for name, tier in self.tiers.items()}
        return data

    @classmethod
    def from_json(cls, text: str | Mapping[str, Any] | None) -> DaemonPlan | None:
        """The stored plan (JSON text or its parsed document); None when there is none or
        it cannot be read."""
        data = _document(text)
        if data is None:
            return None
        tiers = {
            str(name): _known(TierPromise, tier)
            for name, tier in (data.get("tiers") or {}).items()
            if isinstance(tier, Mapping)
        }
        return _known(cls, data, warnings=tuple(data.get("warnings") or ()), tiers=tiers)

    def tier_periods(self) -> dict[str, float]:
        """Per tier, the period the plan verifies it at (seconds, as configured)."""
        return {name: t.period_seconds for name, t in self.tiers.items() if t.period_seconds}


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The daemon's last sign of life in the mirror: its pid, when it started, when it was
    last seen, whether it is running, and its jobs' states as the scheduler reports them."""

    pid: int | None = None
    started_at: str | None = None
    seen_at: str | None = None
    running: bool = False
    jobs: Mapping[str, Any] | None = None  # job name -> the scheduler's JSON of that job

    def to_json(self) -> str:
        """The heartbeat as the mirror stores it."""
        return json.dumps(self.as_json(), default=str)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "pid": self.pid,
            "started_at": self.started_at,
            "seen_at": self.seen_at,
            "running": self.running,
        }
        if self.jobs is not None:
            data["jobs"] = dict(self.jobs)
        return data

    @classmethod
    def from_json(cls, text: str | Mapping[str, Any] | None) -> Heartbeat | None:
        """The stored heartbeat; None when there is none or it cannot be read."""
        data = _document(text)
        return None if data is None else _known(cls, data)


@dataclass(frozen=True, slots=True)
class Subscription:
    """The upstream webhook subscription as last checked; the URL never holds the token."""

    id: str | None = None
    url: str | None = None
    status: str | None = None
    events: tuple[str, ...] = ()
    secret_verifier: str | None = None  # a salted verifier, never the secret
    checked_at: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"events": list(self.events)}

    @classmethod
    def from_json(cls, text: str | Mapping[str, Any] | None) -> Subscription | None:
        """The stored subscription with the token taken out of its URL; None when there is
        none or it cannot be read."""
        data = _document(text)
        if not data:
            return None
        url = data.get("url")
        return _known(
            cls,
            data,
            url=redact_path(url) if isinstance(url, str) and url else url,
            events=tuple(data.get("events") or ()),
        )


@dataclass(frozen=True, slots=True)
class UpstreamReading:
    """What syncd has learned about the find window, in words (``WindowReading.describe``)."""

    window_field: str = ""
    window_field_evidence: str | None = None
    conflicting_evidence: str | None = None
    bounds: str = ""
    answer_cap: int | None = None
    answer_cap_evidence: str | None = None
    timeout_above: int | None = None
    timeout_evidence: str | None = None

    @classmethod
    def of(cls, reading: WindowReading) -> UpstreamReading:
        return _known(cls, reading.describe())


@dataclass(frozen=True, slots=True)
class HeldLease:
    """A lease held now: ``what`` it guards (an instance id or a workspace id), its holder (an
    instance id), when that holder took it and when it lapses unless renewed (timestamps)."""

    what: str
    holder: str
    acquired_at: str
    expires_at: str
    kind: str = ""  # of an instance: "daemon" or "once"


@dataclass(frozen=True, slots=True)
class Sharing:
    """The syncd instances sharing the key's work: the live ones, which holds each
    workspace's lease, and which keeps the webhook subscription (the leader)."""

    instances: tuple[HeldLease, ...] = ()
    workspaces: tuple[HeldLease, ...] = ()
    leader: HeldLease | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "instances": [asdict(i) for i in self.instances],
            "workspaces": [asdict(w) for w in self.workspaces],
            "leader": None if self.leader is None else asdict(self.leader),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Sharing:
        data = data or {}
        leader = data.get("leader")
        return cls(
            instances=tuple(_known(HeldLease, i) for i in data.get("instances") or ()),
            workspaces=tuple(_known(HeldLease, w) for w in data.get("workspaces") or ()),
            leader=None if not leader else _known(HeldLease, leader),
        )

    @classmethod
    def of(cls, leases: list[Lease], key_id: str | None) -> Sharing:
        """The sharing of the key ``key_id`` (every key's when None) that ``leases`` show."""

        def held(lease: Lease, what: str, kind: str = "") -> HeldLease:
            return HeldLease(
                what, lease.holder, _epoch(lease.acquired_at), _epoch(lease.expires_at), kind
            )

        instances, workspaces, leader = [], [], None
        for lease in leases:
            name = lease.name
            if name.startswith(INSTANCE):
                instances.append(held(lease, name.removeprefix(INSTANCE), "daemon"))
            elif name.startswith(ONCE):
                instances.append(held(lease, name.removeprefix(ONCE), "once"))
            elif name.startswith(WORKSPACE):
                key, _, workspace = name.removeprefix(WORKSPACE).partition(":")
                if key_id is None or key == key_id:
                    workspaces.append(held(lease, workspace))
            elif name.startswith(LEADER) and key_id in (None, name.removeprefix(LEADER)):
                leader = held(lease, name.removeprefix(LEADER))
        return cls(tuple(instances), tuple(workspaces), leader)


@dataclass(frozen=True, slots=True)
class MirrorStatus:
    """Everything ``syncd status`` reports. ``budget`` is None without an API key; ``plan``,
    ``daemon`` and ``webhook_subscription`` are None until a daemon wrote them."""

    workspaces: tuple[WorkspaceStatus, ...] = ()
    last_run: RunRecord | None = None
    webhook_events: Mapping[str, int] = field(default_factory=dict)  # outcome -> deliveries
    last_webhook_at: str | None = None
    quarantined_entries: int = 0
    budget: BudgetStatus | None = None
    plan: DaemonPlan | None = None
    webhook_subscription: Subscription | None = None
    daemon: Heartbeat | None = None
    upstream_reading: UpstreamReading = field(default_factory=UpstreamReading)
    sharing: Sharing = field(default_factory=Sharing)

    def as_json(self) -> dict[str, Any]:
        """The ``syncd status --json`` document."""
        return {
            "workspaces": [w.as_json() for w in self.workspaces],
            "last_run": None if self.last_run is None else self.last_run.as_dict(),
            "webhook_events": dict(self.webhook_events),
            "last_webhook_at": self.last_webhook_at,
            "quarantined_entries": self.quarantined_entries,
            "budget": {} if self.budget is None else self.budget.as_json(),
            "plan": None if self.plan is None else self.plan.as_json(),
            "webhook_subscription": (
                None if self.webhook_subscription is None else self.webhook_subscription.as_json()
            ),
            "daemon": None if self.daemon is None else self.daemon.as_json(),
            "upstream_reading": asdict(self.upstream_reading),
            "sharing": self.sharing.as_json(),
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> MirrorStatus:
        """The status a ``status --json`` document describes (missing keys read as unknown).
        Raises ``KeyError`` for a workspace without an id."""
        last = document.get("last_run")
        budget = document.get("budget")
        return cls(
            workspaces=tuple(WorkspaceStatus.from_json(w) for w in document.get("workspaces", ())),
            last_run=None if not last else _known(RunRecord, last, **_run_defaults(last)),
            webhook_events=dict(document.get("webhook_events") or {}),
            last_webhook_at=document.get("last_webhook_at"),
            quarantined_entries=document.get("quarantined_entries") or 0,
            budget=_known(BudgetStatus, budget) if budget else None,
            plan=DaemonPlan.from_json(document.get("plan")),
            webhook_subscription=Subscription.from_json(document.get("webhook_subscription")),
            daemon=Heartbeat.from_json(document.get("daemon")),
            upstream_reading=_known(UpstreamReading, document.get("upstream_reading") or {}),
            sharing=Sharing.from_json(document.get("sharing")),
        )


def mirror_status(
    counts: MirrorCounts,
    *,
    now: datetime,
    verified: VerifiedTimes,
    budget: BudgetSnapshot | None,
    plan: DaemonPlan | None,
    heartbeat: Heartbeat | None,
    subscription: Subscription | None,
    reading: WindowReading,
    sharing: Sharing | None = None,
) -> MirrorStatus:
    """The status of a mirror holding ``counts`` at ``now`` (aware): freshness is how long
    ago each workspace's hot window was last verified (a push re-scan of one day does not
    make the whole recent past fresh), and per tier the age of its least recently verified
    window."""

    def age(moment: datetime | None) -> int | None:
        return None if moment is None else round((now - moment).total_seconds())

    workspaces = []
    for ws in counts.workspaces:
        last = ws.progress.last_hot_scan_at or ws.last_scan_at
        workspaces.append(
            WorkspaceStatus(
                id=ws.id,
                name=ws.name,
                live_entries=ws.live_entries,
                tombstoned_entries=ws.tombstoned_entries,
                quarantined_entries=ws.quarantined_entries,
                last_scan_at=ws.last_scan_at,
                progress=ws.progress,
                freshness_lag_seconds=age(parse_timestamp(last)) if last else None,
                verified_age_seconds={
                    tier: age(at) for tier, at in verified.get(ws.id, {}).items()
                },
            )
        )
    return MirrorStatus(
        workspaces=tuple(workspaces),
        last_run=counts.last_run,
        webhook_events=dict(counts.webhook_events),
        last_webhook_at=counts.last_webhook_at,
        quarantined_entries=counts.quarantined_entries,
        budget=None if budget is None else BudgetStatus.from_snapshot(budget),
        plan=plan,
        webhook_subscription=subscription,
        daemon=heartbeat,
        upstream_reading=UpstreamReading.of(reading),
        sharing=sharing or Sharing(),
    )


def status(config: Config) -> MirrorStatus:
    """What ``syncd status`` shows, read from the mirror (works while the daemon runs).

    Raises ``NoDatabase`` when there is no mirror (none is created), ``StoreError`` when
    the database cannot be opened.
    """
    store = open_existing_mirror(config)
    try:
        return describe_status(config, store)
    finally:
        store.close()


def open_existing_mirror(config: Config, *, migrate: bool = True) -> Store:
    """The mirror at ``config.database.location``, never created: a SQLite file that exists,
    or a PostgreSQL database whose schema ledger does. With ``migrate``, an older schema is
    brought up to date (as any syncd run would).

    Raises ``NoDatabase`` (no mirror there, named by ``database.shown``: a URL's password
    masked), ``StoreError`` (it cannot be opened, or the server cannot be reached) and
    ``SchemaTooNew``.
    """
    database = config.database
    if not database.postgres:
        if not Path(database.path).is_file():
            raise NoDatabase(database.shown)
        return Store(database.path, migrate=migrate)
    store = Store(database.location, migrate=False)
    try:
        if not store.applied_migrations():
            raise NoDatabase(database.shown, key="database.url")
    except BaseException:
        store.close()
        raise
    if not migrate:
        return store
    store.close()
    return Store(database.location)


def describe_status(config: Config, store: Store) -> MirrorStatus:
    """What ``syncd status`` reports; reads only the mirror (works while the daemon runs).

    Raises ``StoreError``, and ``ValueError`` for a malformed timestamp in the mirror.
    """
    key = config.api.key
    pinned = config.api.window_field
    return mirror_status(
        store.status(),
        now=utc_now(),
        verified=verified_times(store.get_setting(FRESHNESS_SETTING)),
        budget=None if key is None else _budget_snapshot(config, store, key.get_secret_value()),
        plan=DaemonPlan.from_json(store.get_setting(PLAN_SETTING)),
        heartbeat=Heartbeat.from_json(store.get_setting(HEARTBEAT_SETTING)),
        subscription=Subscription.from_json(store.get_setting(SUBSCRIPTION_SETTING)),
        reading=WindowReading.from_json(
            store.get_setting(READING_SETTING),
            pinned=None if pinned == "auto" else pinned,  # type: ignore[arg-type]
        ),
        sharing=Sharing.of(
            held_now(store.db), None if key is None else key_id_for(key.get_secret_value())
        ),
    )


def _budget_snapshot(config: Config, store: Store, key: str) -> BudgetSnapshot:
    budget = budget_for(config, store, key, daily_share=config.limits.daemon_share)
    return budget.read_snapshot()


def _epoch(seconds: float) -> str:
    return format_timestamp(datetime.fromtimestamp(seconds, UTC))


def verified_times(text: str | None) -> dict[str, dict[str, datetime | None]]:
    """The engine's ``freshness`` setting (``{workspace: {tier: ISO timestamp | None}}``) as
    aware datetimes; empty for None. Raises ``ValueError`` for a malformed timestamp."""
    data = json.loads(text or "{}")
    return {
        workspace: {tier: None if at is None else parse_timestamp(at) for tier, at in tiers.items()}
        for workspace, tiers in data.items()
    }


def parse_timestamp(text: str) -> datetime:
    """A stored ISO 8601 timestamp as an aware UTC datetime. Raises ``ValueError``."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _document(text: str | Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """A stored JSON object (or one already parsed); None for nothing or unreadable text."""
    if text is None or isinstance(text, Mapping):
        return text
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, Mapping) else None


def _known(cls: Any, data: Mapping[str, Any], **given: Any) -> Any:
    """``cls`` built from the keys of ``data`` it has fields for, and ``given``."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names} | given)


def _run_defaults(data: Mapping[str, Any]) -> dict[str, Any]:
    """The columns a ``sync_runs`` row always has, for a document that lacks them."""
    return {
        key: data.get(key, empty) for key, empty in (("id", 0), ("kind", ""), ("started_at", ""))
    }
