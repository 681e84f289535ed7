"""What users do in the emulated service, with the webhook events each action fires."""

from __future__ import annotations

from . import shapes
from .state import Emulator
from .timefmt import midnight_ms
from .world import Client, Entry, Member, Project, Tag, Task, Workspace, new_uuid


def new_id(emu: Emulator) -> str:
    return new_uuid(emu.world.rng)


def create_entry(
    emu: Emulator,
    *,
    ws: Workspace,
    member: Member,
    start: int | None,
    end: int | None,
    duration: int | None = None,
    date: int | None = None,
    description: str = "",
    billable: bool = True,
    manual: bool = True,
    project: Project | None = None,
    task: Task | None = None,
    tags=(),
    created: int | None = None,
    fire: bool = True,
) -> Entry:
    now = emu.now_ms()
    if duration is None and start is not None and end is not None:
        duration = (end - start) // 1000
    if date is None:
        date = midnight_ms(start if start is not None else now)
    created = now if created is None else created
    e = Entry(
        new_id(emu),
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
        emu.world.tagset(tuple(tags)),
        created,
        created,
    )
    emu.world.add_entry(e)
    if fire and manual:
        emu.dispatcher.emit("MANUAL_TIME_ADDED", ws, shapes.entry_event(e, "manual_entry"))
    return e


def stop_timer(emu: Emulator, member: Member) -> Entry | None:
    e = member.running
    if e is None:
        return None
    now = emu.now_ms()
    end = max(now, (e.start or now))
    emu.world.update_entry(e, {"end": end, "duration": (end - e.start) // 1000}, end)
    emu.dispatcher.emit("TIMER_STOPPED", e.ws, shapes.entry_event(e, "stop_timer"))
    return e


def start_timer(
    emu: Emulator,
    member: Member,
    *,
    description: str = "",
    project: Project | None = None,
    task: Task | None = None,
    billable: bool | None = None,
    tags=(),
) -> Entry:
    """Start a timer; a member's running timer is stopped first (one per member)."""
    stop_timer(emu, member)
    now = emu.now_ms()
    if billable is None:
        billable = project.default_billable if project is not None else False
    e = create_entry(
        emu,
        ws=member.ws,
        member=member,
        start=now,
        end=None,
        description=description,
        billable=billable,
        manual=False,
        project=project,
        task=task,
        tags=tags,
        created=now,
        fire=False,
    )
    emu.dispatcher.emit("TIMER_STARTED", e.ws, shapes.entry_event(e, "start_timer"))
    return e


def edit_entry(emu: Emulator, e: Entry, changes: dict) -> Entry:
    emu.world.update_entry(e, changes, emu.now_ms())
    emu.dispatcher.emit("TIME_ENTRY_UPDATED", e.ws, shapes.entry_event(e, "update_entry"))
    return e


def delete_entry(emu: Emulator, e: Entry) -> None:
    emu.world.remove_entry(e)
    emu.dispatcher.emit("TIME_ENTRY_DELETED", e.ws, shapes.entry_deleted_event(e, emu.now_ms()))


def create_client(emu: Emulator, ws: Workspace, name: str, **fields) -> Client:
    c = Client(new_id(emu), ws, name, created=emu.now_ms(), **fields)
    emu.world.clients[c.id] = c
    emu.world.invalidate_latest()
    emu.dispatcher.emit("CLIENT_CREATED", ws, shapes.client_event(c))
    return c


def create_project(
    emu: Emulator, ws: Workspace, client: Client | None, name: str, **fields
) -> Project:
    p = Project(new_id(emu), ws, client, name, created=emu.now_ms(), **fields)
    emu.world.projects[p.id] = p
    if client is not None:
        client.projects.append(p)
    emu.world.invalidate_latest()
    emu.dispatcher.emit("PROJECT_CREATED", ws, shapes.project_event(p))
    return p


def create_task(emu: Emulator, project: Project, name: str, **fields) -> Task:
    t = Task(new_id(emu), project, name, created=emu.now_ms(), **fields)
    emu.world.tasks[t.id] = t
    project.tasks.append(t)
    emu.world.invalidate_latest()
    emu.dispatcher.emit("TASK_CREATED", project.ws, shapes.task_event(t))
    return t


def create_tag(emu: Emulator, ws: Workspace, name: str, color: str, description) -> Tag:
    tag = Tag(new_id(emu), ws, name, color, description, emu.now_ms())
    emu.world.tags[tag.id] = tag
    return tag
