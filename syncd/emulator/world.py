"""The emulated service's data: entities, indexes and the mutations users can make."""

from __future__ import annotations

import bisect
import random
from json.encoder import encode_basestring as _js
from operator import attrgetter

from .timefmt import DAY_MS, fmt_ms

# ``_js`` is json's fast string encoder (quotes included, non-ASCII kept as is).


def js(value: str | None) -> str:
    return "null" if value is None else _js(value)


def new_uuid(rng: random.Random) -> str:
    """A lowercase UUIDv4 string drawn from a seeded generator."""
    n = rng.getrandbits(128)
    n = (n & ~(0xF000 << 64)) | (0x4000 << 64)  # version 4
    n = (n & ~(0xC000 << 48)) | (0x8000 << 48)  # RFC 4122 variant
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Workspace:
    __slots__ = (
        "by_created",
        "count",
        "created",
        "created_keys",
        "day_keys",
        "days",
        "id",
        "members",
        "name",
    )

    def __init__(self, id: str, name: str, created: int) -> None:
        self.id = id
        self.name = name
        self.created = created
        self.days: dict[int, list[Entry]] = {}  # day number -> entries whose date is that day
        self.day_keys: list[int] = []  # sorted day numbers present in ``days``
        self.count = 0
        self.members: list[Member] = []
        # entries sorted by ``created`` and their keys, built on demand (None: rebuild)
        self.by_created: list[Entry] | None = None
        self.created_keys: list[int] | None = None

    def ref(self) -> dict:
        return {"id": self.id, "name": self.name}


class User:
    __slots__ = ("default_workspace", "email", "id", "name")

    def __init__(self, id: str, name: str, email: str) -> None:
        self.id = id
        self.name = name
        self.email = email
        self.default_workspace: Workspace | None = None


class Member:
    __slots__ = (
        "billable_rate",
        "department",
        "designation",
        "email",
        "frag",
        "id",
        "name",
        "role",
        "running",
        "user",
        "ws",
    )

    def __init__(self, id, ws, user, name, email, role, designation, department, rate) -> None:
        self.id = id
        self.ws = ws
        self.user = user
        self.name = name
        self.email = email
        self.role = role  # (id, name, description)
        self.designation = designation
        self.department = department
        self.billable_rate = rate
        self.running: Entry | None = None
        self.frag = (
            f'"workspace_id":{js(ws.id)},"workspace_name":{js(ws.name)},'
            f'"team_member_id":{js(id)},"team_member_name":{js(name)},'
            f'"team_member_email":{js(email)},"team_member_role":{js(role[1])}'
        )


class Client:
    __slots__ = (
        "address",
        "created",
        "currency",
        "email",
        "id",
        "name",
        "note",
        "phone",
        "projects",
        "status",
        "type",
        "updated",
        "ws",
    )

    def __init__(
        self,
        id,
        ws,
        name,
        *,
        type="individual",
        status="active",
        email=None,
        phone=None,
        address=None,
        note=None,
        currency="USD",
        created=0,
    ) -> None:
        self.id = id
        self.ws = ws
        self.name = name
        self.type = type
        self.status = status
        self.email = email
        self.phone = phone
        self.address = address
        self.note = note
        self.currency = currency
        self.created = created
        self.updated = created
        self.projects: list[Project] = []


class Project:
    __slots__ = (
        "client",
        "created",
        "default_billable",
        "description",
        "entry_count",
        "estimated_budget",
        "estimated_hours",
        "frag",
        "id",
        "is_private",
        "name",
        "rate",
        "status",
        "tasks",
        "updated",
        "ws",
    )

    def __init__(
        self,
        id,
        ws,
        client,
        name,
        *,
        description=None,
        status="active",
        is_private=False,
        rate=None,
        default_billable=True,
        estimated_hours=None,
        estimated_budget=None,
        created=0,
    ) -> None:
        self.id = id
        self.ws = ws
        self.client = client
        self.name = name
        self.description = description
        self.status = status
        self.is_private = is_private
        self.rate = rate
        self.default_billable = default_billable
        self.estimated_hours = estimated_hours
        self.estimated_budget = estimated_budget
        self.created = created
        self.updated = created
        self.tasks: list[Task] = []
        self.entry_count = 0
        c = client
        self.frag = (
            f'"project_id":{js(id)},"project_name":{js(name)},"project_status":{js(status)},'
            f'"client_id":{js(c.id if c else None)},"client_name":{js(c.name if c else None)}'
        )


NO_PROJECT_FRAG = (
    '"project_id":null,"project_name":null,"project_status":null,'
    '"client_id":null,"client_name":null'
)
NO_TASK_FRAG = '"task_id":null,"task_name":null,"task_status":null'


class Task:
    __slots__ = (
        "actual_hours",
        "assignees",
        "created",
        "description",
        "due_date",
        "entry_count",
        "estimated_hours",
        "frag",
        "id",
        "name",
        "priority",
        "project",
        "status",
        "updated",
    )

    def __init__(
        self,
        id,
        project,
        name,
        *,
        description=None,
        status="todo",
        priority="medium",
        estimated_hours=None,
        actual_hours=None,
        due_date=None,
        assignees=(),
        created=0,
    ) -> None:
        self.id = id
        self.project = project
        self.name = name
        self.description = description
        self.status = status
        self.priority = priority
        self.estimated_hours = estimated_hours
        self.actual_hours = actual_hours
        self.due_date = due_date
        self.assignees: list[Member] = list(assignees)
        self.created = created
        self.updated = created
        self.entry_count = 0
        self.frag = f'"task_id":{js(id)},"task_name":{js(name)},"task_status":{js(status)}'


class Tag:
    __slots__ = ("color", "created", "description", "id", "name", "updated", "ws")

    def __init__(self, id, ws, name, color="#3B82F6", description=None, created=0) -> None:
        self.id = id
        self.ws = ws
        self.name = name
        self.color = color
        self.description = description
        self.created = created
        self.updated = created


class TagSet:
    """An immutable, shared set of tags with its JSON fragment built once."""

    __slots__ = ("frag", "tags")

    def __init__(self, tags: tuple[Tag, ...]) -> None:
        self.tags = tags
        items = ",".join(
            f'{{"id":{js(t.id)},"name":{js(t.name)},"color":{js(t.color)}}}' for t in tags
        )
        self.frag = f'"tags":[{items}],"tag_count":{len(tags)}'


class Entry:
    __slots__ = (
        "billable",
        "created",
        "date",
        "description",
        "duration",
        "end",
        "id",
        "manual",
        "member",
        "project",
        "start",
        "tagset",
        "task",
        "updated",
        "ws",
    )

    def __init__(
        self,
        id,
        ws,
        date,
        start,
        end,
        duration,
        description,
        billable,
        manual,
        member,
        project,
        task,
        tagset,
        created,
        updated,
    ) -> None:
        self.id = id
        self.ws = ws
        self.date = date  # epoch ms (midnight UTC unless given otherwise)
        self.start = start  # epoch ms or None
        self.end = end  # epoch ms or None (running timer)
        self.duration = duration  # seconds or None (running timer)
        self.description = description
        self.billable = billable
        self.manual = manual
        self.member = member
        self.project = project
        self.task = task
        self.tagset = tagset
        self.created = created
        self.updated = updated


_SORT_KEY = attrgetter("created", "id")


def sort_newest_first(entries: list) -> list:
    """Newest ``created`` first, ties broken on ``id`` (descending)."""
    entries.sort(key=_SORT_KEY, reverse=True)
    return entries


class Webhook:
    __slots__ = (
        "created",
        "description",
        "events",
        "id",
        "key",
        "secret",
        "status",
        "updated",
        "url",
        "user",
    )

    def __init__(self, id, user, key, url, events, description, secret, created) -> None:
        self.id = id
        self.user = user
        self.key = key
        self.url = url
        self.events = events
        self.status = "ACTIVE"
        self.description = description
        self.secret = secret
        self.created = created
        self.updated = created


class World:
    """All data of the emulated account, with the indexes the read paths need."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng  # ids for objects created after seeding
        self.workspaces: dict[str, Workspace] = {}
        self.users: dict[str, User] = {}
        self.keys: dict[str, User | None] = {}  # API key -> user (None: key without user)
        self.members: dict[str, Member] = {}
        self.clients: dict[str, Client] = {}
        self.projects: dict[str, Project] = {}
        self.tasks: dict[str, Task] = {}
        self.tags: dict[str, Tag] = {}
        self.entries: dict[str, Entry] = {}
        self.webhooks: dict[str, Webhook] = {}
        self._tagsets: dict[tuple[str, ...], TagSet] = {}
        self.empty_tagset = TagSet(())
        # most recent real items for the fallback endpoints (None: recompute)
        self._latest: dict[str, object] = {}
        self.json_cache = None  # object with ``forget(entry_id)``, set by the app

    # --- lookups -----------------------------------------------------------------
    def member_of(self, user: User, ws: Workspace) -> Member | None:
        for m in ws.members:
            if m.user is user:
                return m
        return None

    def user_workspaces(self, user: User) -> list[Workspace]:
        return [ws for ws in self.workspaces.values() if self.member_of(user, ws)]

    def tagset(self, tags) -> TagSet:
        if not tags:
            return self.empty_tagset
        key = tuple(t.id for t in tags)
        ts = self._tagsets.get(key)
        if ts is None:
            ts = self._tagsets[key] = TagSet(tuple(tags))
        return ts

    # --- entry index ---------------------------------------------------------------
    def _index(self, e: Entry) -> None:
        ws = e.ws
        day = e.date // DAY_MS
        bucket = ws.days.get(day)
        if bucket is None:
            bucket = ws.days[day] = []
            bisect.insort(ws.day_keys, day)
        bucket.append(e)
        ws.count += 1
        ws.by_created = ws.created_keys = None

    def _unindex(self, e: Entry) -> None:
        ws = e.ws
        day = e.date // DAY_MS
        bucket = ws.days[day]
        bucket.remove(e)
        if not bucket:
            del ws.days[day]
            ws.day_keys.pop(bisect.bisect_left(ws.day_keys, day))
        ws.count -= 1
        ws.by_created = ws.created_keys = None

    def add_entry(self, e: Entry) -> Entry:
        self.entries[e.id] = e
        self._index(e)
        if e.project is not None:
            e.project.entry_count += 1
        if e.task is not None:
            e.task.entry_count += 1
        if e.end is None:
            e.member.running = e
        self._latest.clear()
        return e

    def remove_entry(self, e: Entry) -> None:
        if self.json_cache is not None:
            self.json_cache.forget(e.id)
        del self.entries[e.id]
        self._unindex(e)
        if e.project is not None:
            e.project.entry_count -= 1
        if e.task is not None:
            e.task.entry_count -= 1
        if e.member.running is e:
            e.member.running = None
        self._latest.clear()

    def update_entry(self, e: Entry, changes: dict, now_ms: int) -> None:
        """Apply attribute ``changes`` to an entry, keeping every index right."""
        self.remove_entry(e)
        for k, v in changes.items():
            setattr(e, k, v)
        e.updated = max(now_ms, e.updated + 1)
        self.add_entry(e)

    def window(
        self, ws: Workspace, lo_ms: int | None, hi_ms: int | None, *, exclusive: bool = False
    ) -> list[Entry]:
        """Entries of ``ws`` whose ``date`` lies in [lo_ms, hi_ms], or in (lo_ms, hi_ms) when
        ``exclusive`` (either bound optional)."""
        keys = ws.day_keys
        i = 0 if lo_ms is None else bisect.bisect_left(keys, lo_ms // DAY_MS)
        j = len(keys) if hi_ms is None else bisect.bisect_right(keys, hi_ms // DAY_MS)
        out: list[Entry] = []
        days = ws.days
        for day in keys[i:j]:
            out.extend(days[day])
        if exclusive:
            if lo_ms is not None and out:
                out = [e for e in out if e.date > lo_ms]
            if hi_ms is not None and out:
                out = [e for e in out if e.date < hi_ms]
            return out
        if lo_ms is not None and out and lo_ms % DAY_MS:
            out = [e for e in out if e.date >= lo_ms]
        if hi_ms is not None and out:
            out = [e for e in out if e.date <= hi_ms]
        return out

    def created_window(
        self, ws: Workspace, lo_ms: int | None, hi_ms: int | None, *, exclusive: bool = False
    ) -> list[Entry]:
        """Entries of ``ws`` whose ``created`` lies in [lo_ms, hi_ms], or in (lo_ms, hi_ms)
        when ``exclusive`` (either bound optional)."""
        if ws.by_created is None or ws.created_keys is None:
            ordered = sorted(self.all_entries(ws), key=attrgetter("created"))
            ws.by_created = ordered
            ws.created_keys = [e.created for e in ordered]
        keys = ws.created_keys
        if lo_ms is None:
            i = 0
        else:
            i = (bisect.bisect_right if exclusive else bisect.bisect_left)(keys, lo_ms)
        if hi_ms is None:
            j = len(keys)
        else:
            j = (bisect.bisect_left if exclusive else bisect.bisect_right)(keys, hi_ms)
        return ws.by_created[i:j]

    def all_entries(self, ws: Workspace) -> list[Entry]:
        return self.window(ws, None, None)

    # --- fallbacks ---------------------------------------------------------------
    def latest(self, kind: str, workspaces: list[Workspace]):
        """Most recent item of a kind among ``workspaces`` (None when there is none)."""
        cache_key = kind + ":" + ",".join(ws.id for ws in workspaces)
        if cache_key in self._latest:
            return self._latest[cache_key]
        wss = set(id(ws) for ws in workspaces)
        best = None
        if kind in ("start", "stop", "manual"):
            for e in self.entries.values():
                if id(e.ws) not in wss:
                    continue
                if kind == "manual" and not e.manual:
                    continue
                if kind == "start" and e.manual:
                    continue
                if kind == "stop" and (e.manual or e.end is None):
                    continue
                k = (e.end if kind == "stop" else e.created, e.id)
                if best is None or k > best[0]:
                    best = (k, e)
        else:
            table = {"client": self.clients, "project": self.projects, "task": self.tasks}[kind]
            for obj in table.values():
                ws = obj.project.ws if kind == "task" else obj.ws
                if id(ws) in wss:
                    k = (obj.created, obj.id)
                    if best is None or k > best[0]:
                        best = (k, obj)
        result = None if best is None else best[1]
        self._latest[cache_key] = result
        return result

    def invalidate_latest(self) -> None:
        self._latest.clear()


def entry_day_ms(start_ms: int) -> int:
    return start_ms - start_ms % DAY_MS


__all__ = ["Entry", "World", "fmt_ms"]
