"""Deterministic seeded data: the same seed and start time give byte-identical worlds."""

from __future__ import annotations

import math
import random

from .timefmt import DAY_MS
from .world import (
    Client,
    Entry,
    Member,
    Project,
    Tag,
    Task,
    User,
    Workspace,
    World,
    new_uuid,
)

WORKSPACE_NAMES = [
    "Acme Engineering",
    "Atelier Müller & Söhne",
    "東京デザインチーム",
    "Café Olé Studio ☕",
    "Nordlys Analytics",
    "Équipe Produit",
    "Rocket Launch Crew 🚀",
    "São Paulo Ops",
]
FIRST = [
    "José",
    "Zoë",
    "Amélie",
    "Björn",
    "Ana-María",
    "Łukasz",
    "Chloé",
    "Søren",
    "Ingrid",
    "Mateo",
    "Priya",
    "Oluwaseun",
    "Hana",
    "Noah",
    "Émile",
    "Yuki",
]
LAST = [
    "Álvarez",
    "Kowalski",
    "Núñez",
    "Øster",
    "Dubois",
    "Müller",
    "Smith",
    "O'Brien",
    "Nakamura",
    "García",
    "Rossi",
    "Fischer",
    "Okafor",
    "Lindqvist",
]
CJK_NAMES = ["山田 太郎", "佐藤 花子", "김민준", "王芳", "李伟"]
ROLES = [
    ("Developer", "Software development role", "Engineering"),
    ("Designer", "Product and visual design", "Design"),
    ("Project Manager", "Plans and tracks delivery", "Management"),
    ("QA Engineer", "Testing and quality", "Engineering"),
    ("Consultant", "Client-facing advisory work", "Services"),
]
CLIENT_NAMES = [
    "Globex Corporation",
    "Initech",
    "Umbrella Ltd",
    "Société Générale de Test",
    "Müller Maschinenbau GmbH",
    "株式会社サンプル",
    "Soylent Foods",
    "Hooli",
    "Pied Piper",
    "Stark Industries",
    "Wayne Enterprises",
    "Café Central",
]
PROJECT_NAMES = [
    "Website Relaunch",
    "Mobile App",
    "Data Warehouse",
    "Brand Refresh",
    "API Platform",
    "Migration 2.0",
    "Onboarding Revamp",
    "Rapport annuel",
    "Kundenportal",
    "社内ツール",
    "Growth Experiments",
    "Security Audit",
]
TASK_NAMES = [
    "Design",
    "Implementation",
    "Code review",
    "Testing",
    "Deployment",
    "Meeting",
    "Documentation",
    "Bug fixing",
    "Research",
    "Planning",
    "Réunion client",
    "Fehlerbehebung",
]
TAG_NAMES = [
    "billable-review",
    "urgent",
    "meeting",
    "deep-work",
    "support",
    "bugfix",
    "research",
    "travel",
    "réunion",
    "重要",
    "🔥 hot",
    "internal",
]
COLORS = ["#3B82F6", "#EF4444", "#10B981", "#F59E0B", "#8B5CF6", "#EC4899", "blue", "green"]
DESCRIPTIONS = [
    "Worked on the login flow",
    "Refactored the sync module",
    "Weekly planning meeting",
    "Code review for pull requests",
    "Fixed flaky integration tests",
    "Customer call about invoices",
    "Wrote documentation",
    "Deployed release to staging",
    "Réunion d'équipe — points ouverts",
    "Überarbeitung der Präsentation",
    "コードレビューとテスト",
    "数据迁移脚本",
    "Sprint retro 🎉",
    "Debugging production issue 🐛",
    "Café ☕ & architecture chat",
    "Research: «naïve» caching strategies",
    "Pairing session with Zoë",
    "",
    "Email and admin",
    "Design review with the client",
]

RUNNING_PER_WORKSPACE = 2
BACKDATED_SHARE = 0.07  # entries created 1-60 days after their date (late timesheets)
PLANNED_SHARE = 0.005  # entries created 1-14 days before their date (planned)


def _person(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return rng.choice(CJK_NAMES)
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def _email(name: str, n: int) -> str:
    local = "".join(ch for ch in name.lower() if ch.isascii() and ch.isalnum()) or "member"
    return f"{local}{n}@example.com"


def seed_world(
    *,
    seed: int,
    workspaces: int,
    entries: int,
    days: int,
    api_keys: tuple[str, ...],
    now_ms: int,
) -> World:
    rng = random.Random(seed)
    world = World(random.Random(f"{seed}:live"))
    days = max(1, days)
    today = now_ms // DAY_MS
    origin = (today - days - 30) * DAY_MS + 9 * 3_600_000  # when the account was set up
    per_ws = (
        [entries // workspaces + (1 if i < entries % workspaces else 0) for i in range(workspaces)]
        if workspaces
        else []
    )
    member_seq = 0

    for w in range(workspaces):
        base = WORKSPACE_NAMES[w % len(WORKSPACE_NAMES)]
        name = base if w < len(WORKSPACE_NAMES) else f"{base} {w // len(WORKSPACE_NAMES) + 1}"
        ws = Workspace(new_uuid(rng), name, origin)
        world.workspaces[ws.id] = ws
        # team members (users of their own, not API keys)
        for _ in range(rng.randint(3, 8)):
            member_seq += 1
            pname = _person(rng)
            role = rng.choice(ROLES)
            user = User(new_uuid(rng), pname, _email(pname, member_seq))
            world.users[user.id] = user
            m = Member(
                new_uuid(rng),
                ws,
                user,
                pname,
                user.email,
                (new_uuid(rng), role[0], role[1]),
                role[0],
                role[2],
                float(rng.choice([50, 60, 75, 90, 120])),
            )
            ws.members.append(m)
            world.members[m.id] = m
        t0 = origin + rng.randrange(3_600_000)
        tags = []
        for i, tname in enumerate(rng.sample(TAG_NAMES, rng.randint(6, 10))):
            tag = Tag(new_uuid(rng), ws, tname, rng.choice(COLORS), None, t0 + i * 60_000)
            world.tags[tag.id] = tag
            tags.append(tag)
        clients = []
        for i, cname in enumerate(rng.sample(CLIENT_NAMES, rng.randint(3, 6))):
            ctype = rng.choice(["company", "company", "individual"])
            c = Client(
                new_uuid(rng),
                ws,
                cname,
                type=ctype,
                email=_email(cname, i) if rng.random() < 0.8 else None,
                phone=f"+1-555-{rng.randrange(10000):04d}" if rng.random() < 0.6 else None,
                address=f"{rng.randint(1, 999)} Main Street" if rng.random() < 0.5 else None,
                currency=rng.choice(["USD", "USD", "EUR", "JPY"]),
                created=t0 + 3_600_000 + i * 60_000,
            )
            world.clients[c.id] = c
            clients.append(c)
        projects = []
        pnames = rng.sample(PROJECT_NAMES, min(len(PROJECT_NAMES), len(clients) + 2))
        for i, pname in enumerate(pnames):
            client = clients[i] if i < len(clients) else None
            p = Project(
                new_uuid(rng),
                ws,
                client,
                pname,
                description=f"{pname} for {client.name}" if client else pname,
                status=rng.choice(["active", "active", "active", "completed"]),
                rate=float(rng.choice([75, 90, 110, 150])),
                default_billable=client is not None,
                estimated_hours=float(rng.choice([40, 120, 200, 500])),
                estimated_budget=float(rng.choice([5000, 15000, 40000])),
                created=t0 + 7_200_000 + i * 60_000,
            )
            if client is not None:
                client.projects.append(p)
            world.projects[p.id] = p
            projects.append(p)
            for j, tname in enumerate(rng.sample(TASK_NAMES, rng.randint(2, 5))):
                t = Task(
                    new_uuid(rng),
                    p,
                    tname,
                    description=f"{tname} ({pname})",
                    status=rng.choice(["todo", "in-progress", "completed"]),
                    priority=rng.choice(["low", "medium", "high"]),
                    estimated_hours=float(rng.choice([4, 8, 16, 40])),
                    assignees=rng.sample(ws.members, rng.randint(0, min(3, len(ws.members)))),
                    created=p.created + (j + 1) * 1000,
                )
                p.tasks.append(t)
                world.tasks[t.id] = t
        tagsets = [world.empty_tagset] * 6 + [
            world.tagset(tuple(rng.sample(tags, rng.randint(1, 3)))) for _ in range(14)
        ]
        _seed_entries(world, rng, ws, projects, tagsets, per_ws[w], days, today, now_ms)
        _backdate(world, random.Random(f"{seed}:backdate:{w}"), ws, now_ms)

    _seed_key_users(world, seed, api_keys)
    return world


def _seed_entries(world, rng, ws, projects, tagsets, n, days, today, now_ms) -> None:
    members = ws.members
    running = min(RUNNING_PER_WORKSPACE, len(members), n)
    rand = rng.random
    randrange = rng.randrange
    choice = rng.choice
    descs = DESCRIPTIONS
    midnight: dict[int, int] = {}
    add = world.add_entry
    for _ in range(n - running):
        member = choice(members)
        day = today - randrange(days)
        duration = int(rng.triangular(900, 28_800, 5_400))
        start = day * DAY_MS + 25_200_000 + randrange(39_600) * 1000 + randrange(1000)
        if start + duration * 1000 > now_ms - 60_000:
            day -= 1
            start -= DAY_MS
        end = start + duration * 1000
        manual = rand() < 0.1
        created = min(now_ms - 1000, end + randrange(10_800_000)) if manual else start
        updated = created if manual else end
        if rand() < 0.05:
            updated = min(now_ms - 1000, updated + randrange(3 * DAY_MS))
        project = choice(projects) if rand() < 0.9 else None
        task = choice(project.tasks) if project is not None and rand() < 0.8 else None
        billable = (project.default_billable if project else False) and rand() < 0.85
        date = midnight.get(day)
        if date is None:
            date = midnight[day] = day * DAY_MS
        add(
            Entry(
                _uuid(rng),
                ws,
                date,
                start,
                end,
                duration,
                choice(descs),
                billable,
                manual,
                member,
                project,
                task,
                choice(tagsets),
                created,
                updated,
            )
        )
    for member in rng.sample(members, running):
        start = now_ms - randrange(60_000, 3 * 3_600_000)
        project = choice(projects)
        day = start // DAY_MS
        add(
            Entry(
                _uuid(rng),
                ws,
                day * DAY_MS,
                start,
                None,
                None,
                choice(descs),
                project.default_billable,
                False,
                member,
                project,
                None,
                world.empty_tagset,
                start,
                start,
            )
        )


def _backdate(world: World, rng: random.Random, ws: Workspace, now_ms: int) -> None:
    """Move the creation time of some finished entries away from their date.

    ``BACKDATED_SHARE`` of them were entered 1-60 days after their date (most within a
    week: last week's timesheet), ``PLANNED_SHARE`` 1-14 days before it. Both kinds are
    manual entries; manual entries are chosen first, so the share of manual entries barely
    moves. An edit after the last write stays an edit (``updated`` keeps its distance), and
    ``updated`` is never before ``created``. Draws only from ``rng``, so every other seeded
    value is the same as without this.
    """
    done = [e for day in ws.day_keys for e in ws.days[day] if e.end is not None]
    if not done:
        return
    latest_day = (now_ms - 1000) // DAY_MS - 1  # a later day must have begun by now
    manual = [e for e in done if e.manual]
    others = [e for e in done if not e.manual]
    rng.shuffle(manual)
    want_late = math.ceil(len(done) * BACKDATED_SHARE)
    want_planned = math.ceil(len(done) * PLANNED_SHARE)
    extra = want_late + want_planned - len(manual)
    pool = manual + (rng.sample(others, min(extra, len(others))) if extra > 0 else [])
    late = [e for e in pool if e.date // DAY_MS <= latest_day][:want_late]
    chosen = {id(e) for e in late}
    planned = [e for e in pool if id(e) not in chosen][:want_planned]
    hour = 3_600_000
    for e in late:
        day = e.date // DAY_MS
        r = rng.random()
        after = (
            rng.randint(1, 7) if r < 0.7 else rng.randint(8, 21) if r < 0.9 else rng.randint(22, 60)
        )
        on = day + min(after, latest_day + 1 - day)  # never a day that has not begun
        at = max(on * DAY_MS + rng.randrange(8 * hour, 19 * hour), (e.end or 0) + 60_000)
        if at > now_ms - 1000:  # later today than now: some moment of today so far
            at = rng.randrange(max(on * DAY_MS, (e.end or 0) + 1000), now_ms - 999)
        _recreate(e, at, now_ms)
    for e in planned:
        day = e.date // DAY_MS
        at = (day - rng.randint(1, 14)) * DAY_MS + rng.randrange(8 * hour, 19 * hour)
        _recreate(e, max(ws.created, at), now_ms)
    ws.by_created = ws.created_keys = None
    world.invalidate_latest()


def _recreate(e: Entry, created: int, now_ms: int) -> None:
    """Make ``e`` a manual entry created at ``created``, keeping any later edit."""
    last_write = e.created if e.manual else (e.end or e.created)
    edited = max(0, e.updated - last_write)
    e.manual = True
    e.created = created
    e.updated = max(created, min(now_ms - 1000, created + edited))


def _uuid(rng: random.Random) -> str:
    return new_uuid(rng)


def _seed_key_users(world: World, seed: int, api_keys: tuple[str, ...]) -> None:
    """Each API key belongs to a user who is a member of every seeded workspace."""
    for n, key in enumerate(api_keys):
        if key in world.keys:
            continue
        krng = random.Random(f"{seed}:key:{key}")
        name = _person(krng)
        user = User(new_uuid(krng), name, _email(name, 1000 + n))
        world.users[user.id] = user
        world.keys[key] = user
        for ws in world.workspaces.values():
            role = ROLES[0]
            m = Member(
                new_uuid(krng),
                ws,
                user,
                name,
                user.email,
                (new_uuid(krng), role[0], role[1]),
                "Senior Developer",
                role[2],
                100.0,
            )
            ws.members.append(m)
            world.members[m.id] = m
            if user.default_workspace is None:
                user.default_workspace = ws
