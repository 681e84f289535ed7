"""peewee models of the mirror's tables (the published schema lives in ``migrations.py``).

The models are bound to a database per call (``Store`` binds them with ``bind_ctx``) and keep
that binding in a thread-local (``ThreadSafeDatabaseMetadata``), so several stores (for
example two test databases, or the daemon's store and a ``--once`` check) can live in one
process. ``database`` is the unbound default; binding it globally is only for scripts.

The models describe the tables; they never create them: ``migrations.py`` owns the DDL.
"""

from __future__ import annotations

from peewee import (
    AutoField,
    BooleanField,
    CompositeKey,
    DatabaseProxy,
    FloatField,
    IntegerField,
    Model,
    TextField,
)
from playhouse.shortcuts import ThreadSafeDatabaseMetadata

database = DatabaseProxy()


class FlagField(BooleanField):
    """A boolean kept as the integer 0 or 1 (the published schema's booleans): PostgreSQL
    refuses a ``boolean`` parameter for an ``INTEGER`` column, SQLite stores either alike."""

    field_type = "INTEGER"

    def db_value(self, value: object) -> int | None:
        return None if value is None else int(bool(value))


class BaseModel(Model):
    class Meta:
        database = database
        model_metadata_class = ThreadSafeDatabaseMetadata
        legacy_table_names = False


class Workspace(BaseModel):
    id = TextField(primary_key=True)
    name = TextField(null=True)
    synced_at = TextField(null=True)

    class Meta:
        table_name = "workspaces"


class TimeEntry(BaseModel):
    # ``workspace_id`` is a plain column here (the FK lives in the DDL) so writes never
    # have to load a Workspace instance.
    id = TextField(primary_key=True)
    workspace_id = TextField()
    date = TextField()
    start_time = TextField(null=True)
    end_time = TextField(null=True)
    duration_seconds = IntegerField(null=True)
    description = TextField()
    billable = FlagField()
    manually_entered = FlagField()
    team_member_id = TextField(null=True)
    team_member_name = TextField(null=True)
    project_id = TextField(null=True)
    project_name = TextField(null=True)
    client_id = TextField(null=True)
    client_name = TextField(null=True)
    task_id = TextField(null=True)
    task_name = TextField(null=True)
    created_at = TextField(null=True)
    updated_at = TextField(null=True)
    deleted_at = TextField(null=True)
    synced_at = TextField()
    source = TextField()
    raw = TextField()

    class Meta:
        table_name = "time_entries"


class Tag(BaseModel):
    id = TextField(primary_key=True)
    workspace_id = TextField()
    name = TextField(null=True)
    color = TextField(null=True)

    class Meta:
        table_name = "tags"


class TimeEntryTagLink(BaseModel):
    """An entry's tag, keyed by the entry's rowid (the ``time_entry_tags`` view names the id)."""

    entry_rowid = IntegerField()
    tag_id = TextField()

    class Meta:
        table_name = "time_entry_tag_links"
        primary_key = CompositeKey("entry_rowid", "tag_id")


class TeamMember(BaseModel):
    id = TextField(primary_key=True)
    workspace_id = TextField()
    name = TextField(null=True)
    email = TextField(null=True)

    class Meta:
        table_name = "team_members"


class Project(BaseModel):
    id = TextField(primary_key=True)
    workspace_id = TextField()
    name = TextField(null=True)
    client_id = TextField(null=True)

    class Meta:
        table_name = "projects"


class Client(BaseModel):
    id = TextField(primary_key=True)
    workspace_id = TextField()
    name = TextField(null=True)

    class Meta:
        table_name = "clients"


class Task(BaseModel):
    id = TextField(primary_key=True)
    workspace_id = TextField()
    project_id = TextField(null=True)
    name = TextField(null=True)

    class Meta:
        table_name = "tasks"


class SyncRun(BaseModel):
    id = AutoField()
    kind = TextField()
    started_at = TextField()
    finished_at = TextField(null=True)
    ok = FlagField(null=True)
    error = TextField(null=True)
    workspaces = IntegerField(default=0)
    windows = IntegerField(default=0)
    inserted = IntegerField(default=0)
    updated = IntegerField(default=0)
    unchanged = IntegerField(default=0)
    tombstoned = IntegerField(default=0)
    revived = IntegerField(default=0)
    requests = IntegerField(default=0)
    rate_limited = IntegerField(default=0)

    class Meta:
        table_name = "sync_runs"


class WindowScanRow(BaseModel):
    id = AutoField()
    workspace_id = TextField()
    date_from = TextField(null=True)
    date_to = TextField()
    scanned_at = TextField()
    source = TextField()
    entries = IntegerField()
    inserted = IntegerField()
    updated = IntegerField()
    tombstoned = IntegerField()
    revived = IntegerField()
    run_id = IntegerField(null=True)

    class Meta:
        table_name = "window_scans"


class SyncState(BaseModel):
    workspace_id = TextField(primary_key=True)
    backfill_before = TextField(null=True)
    backfill_complete = FlagField(default=False)
    oldest_date = TextField(null=True)
    reconcile_before = TextField(null=True)
    window_days = IntegerField(null=True)
    last_hot_scan_at = TextField(null=True)
    last_reconcile_at = TextField(null=True)
    warm_before = TextField(null=True)
    warm_pass_at = TextField(null=True)
    warm_verified_at = TextField(null=True)
    cold_pass_at = TextField(null=True)
    cold_verified_at = TextField(null=True)
    full_before = TextField(null=True)
    full_started_at = TextField(null=True)

    class Meta:
        table_name = "sync_state"


class WebhookEventRow(BaseModel):
    id = AutoField()
    dedupe_key = TextField(unique=True)
    kind = TextField()
    object_id = TextField()
    workspace_id = TextField(null=True)
    updated_at = TextField(null=True)
    received_at = TextField()
    outcome = TextField(null=True)
    delivery_id = TextField(null=True)
    reason = TextField(null=True)  # why a refused delivery was refused
    body = TextField(null=True)  # the first 4 KiB of a refused delivery's body
    body_bytes = IntegerField(null=True)

    class Meta:
        table_name = "webhook_events"


class Installation(BaseModel):
    key = TextField(primary_key=True)
    value = TextField()

    class Meta:
        table_name = "installation"


class BudgetGrant(BaseModel):
    id = AutoField()
    key_id = TextField()
    granted_at = FloatField()  # epoch seconds
    priority = IntegerField()
    pid = IntegerField(null=True)

    class Meta:
        table_name = "budget_grants"


class BudgetState(BaseModel):
    key_id = TextField(primary_key=True)
    not_before = FloatField(default=0)  # epoch seconds
    server_remaining = IntegerField(null=True)
    server_reset = FloatField(null=True)  # epoch seconds
    server_seen_at = FloatField(null=True)  # epoch seconds

    class Meta:
        table_name = "budget_state"


class SchemaMigration(BaseModel):
    name = TextField(primary_key=True)
    applied_at = TextField()

    class Meta:
        table_name = "schema_migrations"


ALL_MODELS: tuple[type[BaseModel], ...] = (
    Workspace,
    TimeEntry,
    Tag,
    TimeEntryTagLink,
    TeamMember,
    Project,
    Client,
    Task,
    SyncRun,
    WindowScanRow,
    SyncState,
    WebhookEventRow,
    Installation,
    BudgetGrant,
    BudgetState,
    SchemaMigration,
)
