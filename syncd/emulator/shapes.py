"""Every documented representation of every resource (casing quirks included)."""

from __future__ import annotations

from .timefmt import fmt_ms, fmt_ms_or_none
from .world import (
    NO_PROJECT_FRAG,
    NO_TASK_FRAG,
    Client,
    Entry,
    Member,
    Project,
    Tag,
    Task,
    World,
    js,
)


def hours(seconds: int | float | None):
    """Seconds to hours the way the service prints them (8 for 28800, 2.5 for 9000)."""
    if seconds is None:
        return None
    h = round(seconds / 3600, 2)
    return int(h) if h == int(h) else h


_CACHE_LIMIT = 200_000


class EntryJsonCache:
    """Bounded cache of find-shape JSON per entry id (oldest dropped first)."""

    def __init__(self, limit: int = _CACHE_LIMIT) -> None:
        self.limit = limit
        self.data: dict[str, str] = {}

    def get(self, e: Entry) -> str:
        s = self.data.get(e.id)
        if s is None:
            s = entry_json(e)
            data = self.data
            data[e.id] = s
            if len(data) > self.limit:
                del data[next(iter(data))]
        return s

    def forget(self, entry_id: str) -> None:
        self.data.pop(entry_id, None)

    def clear(self) -> None:
        self.data.clear()


def entry_json(e: Entry, camel_stamps: bool = True) -> str:
    """The flat time-entry record as JSON text.

    ``camel_stamps`` gives ``createdAt``/``updatedAt`` (find) instead of
    ``created_at``/``updated_at`` (create).
    """
    p = e.project
    t = e.task
    d = e.duration
    if d is None:
        dur = '"duration":null,"duration_hours":null,'
    else:
        h = round(d / 3600, 2)
        dur = f'"duration":{d},"duration_hours":{int(h) if h == int(h) else h},'
    return "".join(
        (
            '{"id":',
            _js_id(e.id),
            ',"date":"',
            fmt_ms(e.date),
            '","description":',
            js(e.description),
            ',"start_time":',
            "null" if e.start is None else '"' + fmt_ms(e.start) + '"',
            ',"end_time":',
            "null" if e.end is None else '"' + fmt_ms(e.end) + '"',
            ",",
            dur,
            '"billable":true,' if e.billable else '"billable":false,',
            '"manually_entered":true,' if e.manual else '"manually_entered":false,',
            e.member.frag,
            ",",
            NO_PROJECT_FRAG if p is None else p.frag,
            ",",
            NO_TASK_FRAG if t is None else t.frag,
            ',"timesheet_id":null,"timesheet_status":null,',
            e.tagset.frag,
            ',"createdAt":"' if camel_stamps else ',"created_at":"',
            fmt_ms(e.created),
            '","updatedAt":"' if camel_stamps else '","updated_at":"',
            fmt_ms(e.updated),
            '"}',
        )
    )


def _js_id(s: str) -> str:
    return '"' + s + '"' if s.isascii() and '"' not in s and "\\" not in s else js(s)


def entries_json(entries: list[Entry], cache: EntryJsonCache | None = None) -> str:
    if cache is None:
        return "[" + ",".join([entry_json(e) for e in entries]) + "]"
    get = cache.get
    return "[" + ",".join([get(e) for e in entries]) + "]"


def ref(obj) -> dict | None:
    return None if obj is None else {"id": obj.id, "name": obj.name}


def entry_event(e: Entry, action: str) -> dict:
    """Nested camelCase payload of the time-entry webhook events."""
    d: dict = {
        "id": e.id,
        "description": e.description,
        "date": fmt_ms(e.date),
        "startTime": fmt_ms_or_none(e.start),
    }
    if action != "start_timer":
        d["endTime"] = fmt_ms_or_none(e.end)
        d["duration"] = e.duration
    d.update(
        billable=e.billable,
        action=action,
        workspace=e.ws.ref(),
        teamMember=ref(e.member),
        project=ref(e.project),
        task=ref(e.task),
        tags=[{"id": t.id, "name": t.name} for t in e.tagset.tags],
        createdAt=fmt_ms(e.created),
        updatedAt=fmt_ms(e.updated),
    )
    return d


def entry_deleted_event(e: Entry, now_ms: int) -> dict:
    return {
        "id": e.id,
        "action": "delete_entry",
        "workspace": e.ws.ref(),
        "updatedAt": fmt_ms(now_ms),
    }


# --- clients -------------------------------------------------------------------------
def client_find(c: Client) -> dict:
    return {
        "id": c.id,
        "name": c.name,
        "type": c.type,
        "status": c.status,
        "email": c.email,
        "phone": c.phone,
        "address": c.address,
        "note": c.note,
        "currency": c.currency,
        "created_at": fmt_ms(c.created),
        "updated_at": fmt_ms(c.updated),
    }


def client_full(c: Client) -> dict:
    d = client_find(c)
    created_at, updated_at = d.pop("created_at"), d.pop("updated_at")
    ws = c.ws
    d["workspaces"] = [ws.ref()]
    d["projects"] = [
        {
            "id": p.id,
            "name": p.name,
            "status": p.status,
            "workspace_id": ws.id,
            "workspace_name": ws.name,
        }
        for p in c.projects
    ]
    d["project_count"] = len(c.projects)
    d["workspace_count"] = 1
    d["created_at"] = created_at
    d["updated_at"] = updated_at
    return d


def client_brief(c: Client | None) -> dict | None:
    if c is None:
        return None
    return {
        "id": c.id,
        "name": c.name,
        "email": c.email,
        "phone": c.phone,
        "status": c.status,
        "type": c.type,
    }


def client_event(c: Client) -> dict:
    return {
        "id": c.id,
        "name": c.name,
        "email": c.email,
        "phone": c.phone,
        "address": c.address,
        "status": c.status,
        "type": c.type,
        "workspace": c.ws.ref(),
        "createdAt": fmt_ms(c.created),
        "updatedAt": fmt_ms(c.updated),
    }


# --- projects ------------------------------------------------------------------------
def project_create(p: Project) -> dict:
    c = p.client
    return {
        "id": p.id,
        "name": p.name,
        "description": p.description,
        "status": p.status,
        "isPrivate": p.is_private,
        "defaultBillableRate": p.rate,
        "defaultBillable": p.default_billable,
        "estimatedHours": p.estimated_hours,
        "estimatedBudget": p.estimated_budget,
        "workspaceId": p.ws.id,
        "workspaceName": p.ws.name,
        "clientId": c.id if c else None,
        "clientName": c.name if c else None,
        "createdAt": fmt_ms(p.created),
        "updatedAt": fmt_ms(p.updated),
    }


def project_find(p: Project, world: World) -> dict:
    c = p.client
    members = {m.id for t in p.tasks for m in t.assignees}
    return {
        "id": p.id,
        "name": p.name,
        "description": p.description,
        "status": p.status,
        "is_private": p.is_private,
        "default_billable_rate": p.rate,
        "default_billable": p.default_billable,
        "estimated_hours": p.estimated_hours,
        "estimated_budget": p.estimated_budget,
        "workspace_id": p.ws.id,
        "workspace_name": p.ws.name,
        "client_id": c.id if c else None,
        "client_name": c.name if c else None,
        "task_count": len(p.tasks),
        "time_entry_count": p.entry_count,
        "member_count": len(members),
        "created_at": fmt_ms(p.created),
        "updated_at": fmt_ms(p.updated),
    }


def project_event(p: Project) -> dict:
    return {
        "id": p.id,
        "name": p.name,
        "description": p.description,
        "status": p.status,
        "workspace": p.ws.ref(),
        "client": client_brief(p.client),
        "defaultBillable": p.default_billable,
        "defaultBillableRate": p.rate,
        "estimatedHours": p.estimated_hours,
        "estimatedBudget": p.estimated_budget,
        "isPrivate": p.is_private,
        "createdAt": fmt_ms(p.created),
        "updatedAt": fmt_ms(p.updated),
    }


# --- tasks ---------------------------------------------------------------------------
def task_record(t: Task) -> dict:
    p = t.project
    c = p.client
    return {
        "id": t.id,
        "name": t.name,
        "description": t.description,
        "status": t.status,
        "priority": t.priority,
        "estimated_hours": t.estimated_hours,
        "actual_hours": t.actual_hours,
        "due_date": fmt_ms_or_none(t.due_date),
        "project_id": p.id,
        "project_name": p.name,
        "project_status": p.status,
        "workspace_id": p.ws.id,
        "workspace_name": p.ws.name,
        "client_id": c.id if c else None,
        "client_name": c.name if c else None,
        "assignees": [
            {
                "id": m.id,
                "user_id": m.user.id if m.user else None,
                "user_name": m.name,
                "user_email": m.email,
                "role_name": m.role[1],
            }
            for m in t.assignees
        ],
        "time_entries_count": t.entry_count,
        "created_at": fmt_ms(t.created),
        "updated_at": fmt_ms(t.updated),
    }


def member_event(m: Member) -> dict:
    return {
        "id": m.id,
        "name": m.name,
        "email": m.email,
        "avatar": f"https://example.com/avatars/{m.id}.png",
        "designation": m.designation,
        "department": m.department,
        "status": "active",
        "role": {"id": m.role[0], "name": m.role[1], "description": m.role[2]},
        "billableRate": m.billable_rate,
        "currency": "USD",
    }


def task_event(t: Task) -> dict:
    p = t.project
    return {
        "id": t.id,
        "name": t.name,
        "description": t.description,
        "project": ref(p),
        "client": client_brief(p.client),
        "workspace": p.ws.ref(),
        "teamMembers": [member_event(m) for m in t.assignees],
        "status": t.status.replace("-", "_"),
        "priority": t.priority,
        "estimatedHours": t.estimated_hours,
        "dueDate": fmt_ms_or_none(t.due_date),
        "createdAt": fmt_ms(t.created),
        "updatedAt": fmt_ms(t.updated),
    }


# --- tags ----------------------------------------------------------------------------
def tag_record(t: Tag) -> dict:
    return {
        "id": t.id,
        "name": t.name,
        "color": t.color,
        "description": t.description,
        "workspace_id": t.ws.id,
        "created_at": fmt_ms(t.created),
        "updated_at": fmt_ms(t.updated),
    }


# --- fixed samples (returned by the fallbacks when there is no real data) -------------
_SAMPLE_TAGS = [
    {"id": "ghi11111-e89b-12d3-a456-426614174005", "name": "sample"},
    {"id": "jkl22222-e89b-12d3-a456-426614174006", "name": "development"},
]


def sample_entry(action: str) -> dict:
    d: dict = {
        "id": "123e4567-e89b-12d3-a456-426614174000",
        "description": "Working on sample task implementation",
        "date": "2024-01-15T00:00:00.000Z",
        "startTime": "2024-01-15T10:00:00.000Z",
    }
    if action != "start_timer":
        d["endTime"] = "2024-01-15T12:30:00.000Z"
        d["duration"] = 9000
    d.update(
        billable=True,
        action=action,
        workspace={"id": "abc12345-e89b-12d3-a456-426614174003", "name": "Sample Development Team"},
        teamMember={"id": "def67890-e89b-12d3-a456-426614174004", "name": "Sample Developer"},
        project={"id": "456e7890-e89b-12d3-a456-426614174001", "name": "Sample Project"},
        task={"id": "789e0123-e89b-12d3-a456-426614174002", "name": "Sample Task"},
        tags=[dict(t) for t in _SAMPLE_TAGS],
        createdAt="2024-01-15T10:00:00.000Z",
        updatedAt="2024-01-15T10:00:00.000Z"
        if action == "start_timer"
        else "2024-01-15T12:30:00.000Z",
    )
    return d


SAMPLE_CLIENT = {
    "id": "123e4567-e89b-12d3-a456-426614174000",
    "name": "Sample Tech Startup Inc.",
    "email": "contact@sample.com",
    "phone": "+1-555-0123",
    "address": "123 Sample Street, Sample City, SC 12345",
    "status": "active",
    "type": "company",
    "workspace": {"id": "456e7890-e89b-12d3-a456-426614174001", "name": "Sample Workspace"},
    "createdAt": "2024-01-15T10:30:00Z",
    "updatedAt": "2024-01-15T10:30:00Z",
}

SAMPLE_PROJECT = {
    "id": "123e4567-e89b-12d3-a456-426614174000",
    "name": "Sample Mobile App Project",
    "description": "Development of a sample mobile application",
    "status": "active",
    "workspace": {"id": "345e6789-e89b-12d3-a456-426614174004", "name": "Sample Development Team"},
    "client": {
        "id": "456e7890-e89b-12d3-a456-426614174001",
        "name": "Sample Tech Startup Inc.",
        "email": "contact@sample.com",
        "phone": "+1-555-0123",
        "status": "active",
        "type": "company",
    },
    "defaultBillable": True,
    "defaultBillableRate": 75.0,
    "estimatedHours": 200.0,
    "estimatedBudget": 15000.0,
    "isPrivate": False,
    "createdAt": "2024-01-15T10:00:00.000Z",
    "updatedAt": "2024-01-15T10:00:00.000Z",
}

SAMPLE_TASK = {
    "id": "123e4567-e89b-12d3-a456-426614174000",
    "name": "Sample Task Implementation",
    "description": "Add sample functionality to the application",
    "project": {"id": "456e7890-e89b-12d3-a456-426614174001", "name": "Sample Project"},
    "client": {
        "id": "789e0123-e89b-12d3-a456-426614174002",
        "name": "Sample Client",
        "email": "contact@sample.com",
        "phone": "+1-555-0123",
        "status": "active",
        "type": "company",
    },
    "workspace": {"id": "abc12345-e89b-12d3-a456-426614174003", "name": "Sample Workspace"},
    "teamMembers": [
        {
            "id": "def67890-e89b-12d3-a456-426614174004",
            "name": "Sample Developer",
            "email": "developer@sample.com",
            "avatar": "https://example.com/avatar.jpg",
            "designation": "Developer",
            "department": "Engineering",
            "status": "active",
            "role": {
                "id": "ghi11111-e89b-12d3-a456-426614174005",
                "name": "Developer",
                "description": "Software development role",
            },
            "billableRate": 75.0,
            "currency": "USD",
        }
    ],
    "status": "todo",
    "priority": "medium",
    "estimatedHours": 8.0,
    "dueDate": "2024-01-25T23:59:59.000Z",
    "createdAt": "2024-01-15T10:00:00.000Z",
    "updatedAt": "2024-01-15T10:00:00.000Z",
}
