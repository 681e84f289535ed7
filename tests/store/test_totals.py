"""``daily_project_totals`` and everything read from it equal a direct computation.

The totals table is kept by triggers; the weekly and monthly views and the hours reports read
it (adding running timers up to now). Random sequences of inserts, edits (date, project,
client, billable, duration, a timer stopped or restarted), tombstones, revivals and hard
deletes, made through the store and behind its back, must leave the table equal to a GROUP BY
of the live rows computed here in Python, and the views and reports equal to the same numbers
summed entry by entry. Reads use a connection whose ``strftime('%s', 'now')`` is a fixed
instant, so running timers have an exact length.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from peewee import SqliteDatabase

from syncd.records import Source, TimeEntry, Workspace
from syncd.store import Store, migrations, reports
from tests.support.examples import examples

from .backends import dict_rows, rows
from .factory import FORCED, WS, entry, window

NOW = datetime(2024, 3, 5, 18, 0, tzinfo=UTC)  # timers on the last day may start later
FIRST_DAY = date(2024, 2, 25)  # a Sunday: the days below span three weeks and two months
DAYS = 10
WORKSPACES = ("ws-1", "ws-2")
PROJECTS = (None, ("p-1", "Apollo"), ("p-2", "Zeus"))
CLIENTS = (None, ("c-1", "Acme"), ("c-2", "Globex"))
MEMBERS = (None, ("m-1", "Ann"), ("m-2", "Bob"))

days = st.integers(min_value=0, max_value=DAYS - 1)


def day(n: int) -> str:
    return (FIRST_DAY + timedelta(days=n)).isoformat()


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def epoch(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp())


def _strftime(fmt: str, value: str | None) -> str | None:
    """``strftime('%s', x)`` with 'now' pinned to ``NOW`` (the only form the schema uses)."""
    assert fmt == "%s", fmt
    if value is None:
        return None
    return str(int(NOW.timestamp()) if value == "now" else epoch(value))


def reader(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.create_function("strftime", 2, _strftime)
    conn.row_factory = sqlite3.Row
    return conn


# ---------------------------------------------------------------------- direct computation


def live_rows(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute("SELECT * FROM time_entries WHERE deleted_at IS NULL").fetchall()


def is_running(r: sqlite3.Row | dict[str, Any]) -> bool:
    return r["duration_seconds"] is None and r["end_time"] is None and r["start_time"] is not None


def live_seconds(r: sqlite3.Row) -> int:
    """What ``live_time_entries.live_duration_seconds`` is, computed here."""
    if r["duration_seconds"] is not None:
        return r["duration_seconds"]
    if is_running(r):
        return max(0, int(NOW.timestamp()) - epoch(r["start_time"]))
    return 0


def monday(d: str) -> str:
    day_ = date.fromisoformat(d)
    return (day_ - timedelta(days=day_.weekday())).isoformat()


def expected_totals(conn: sqlite3.Connection) -> dict[tuple, tuple[int, int, int, int]]:
    out: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in live_rows(conn):
        key = (r["date"], r["workspace_id"], r["project_id"] or "", r["client_id"] or "")
        seconds = r["duration_seconds"] or 0
        row = out[key]
        row[0] += 1
        row[1] += is_running(r)
        row[2] += seconds
        row[3] += seconds if r["billable"] else 0
    return {k: tuple(v) for k, v in out.items()}  # type: ignore[misc]


def stored_totals(conn: sqlite3.Connection) -> dict[tuple, tuple[int, int, int, int]]:
    return {
        tuple(r[:4]): tuple(r[4:])
        for r in conn.execute(
            "SELECT date, workspace_id, project_id, client_id, "
            "entries, running, seconds, billable_seconds FROM daily_project_totals"
        )
    }


def names(conn: sqlite3.Connection, table: str) -> dict[str, str | None]:
    return dict(conn.execute(f"SELECT id, name FROM {table}").fetchall())


class Group:
    def __init__(self) -> None:
        self.entries = 0
        self.seconds = 0
        self.billable = 0
        self.clients: set[str] = set()
        self.members: set[str] = set()

    def add(self, r: sqlite3.Row) -> None:
        seconds = live_seconds(r)
        self.entries += 1
        self.seconds += seconds
        self.billable += seconds if r["billable"] else 0
        if r["client_id"] is not None:
            self.clients.add(r["client_id"])
        if r["team_member_name"] is not None:
            self.members.add(r["team_member_name"])

    @property
    def client(self) -> str | None:
        return max(self.clients, default=None)


def grouped(rows: list[sqlite3.Row], key: Any) -> dict[Any, Group]:
    out: dict[Any, Group] = defaultdict(Group)
    for r in rows:
        out[key(r)].add(r)
    return out


def expected_weekly(conn: sqlite3.Connection) -> dict[tuple, tuple]:
    projects, clients = names(conn, "projects"), names(conn, "clients")
    groups = grouped(
        live_rows(conn), lambda r: (r["workspace_id"], monday(r["date"]), r["project_id"])
    )
    return {
        k: (
            projects.get(k[2]),
            g.client,
            clients.get(g.client),  # type: ignore[arg-type]
            g.entries,
            g.seconds,
            g.seconds / 3600.0,
            g.billable / 3600.0,
        )
        for k, g in groups.items()
    }


def actual_weekly(conn: sqlite3.Connection) -> dict[tuple, tuple]:
    return {
        (r["workspace_id"], r["week_start"], r["project_id"]): (
            r["project_name"],
            r["client_id"],
            r["client_name"],
            r["entries"],
            r["seconds"],
            r["hours"],
            r["billable_hours"],
        )
        for r in conn.execute("SELECT * FROM hours_per_week_per_project")
    }


def expected_monthly(conn: sqlite3.Connection) -> dict[tuple, tuple]:
    groups = grouped(live_rows(conn), lambda r: (r["workspace_id"], r["date"][:7]))
    return {
        k: (
            g.entries,
            g.seconds / 3600.0,
            g.billable / 3600.0,
            (g.seconds - g.billable) / 3600.0,
        )
        for k, g in groups.items()
    }


def actual_monthly(conn: sqlite3.Connection) -> dict[tuple, tuple]:
    return {
        (r["workspace_id"], r["month"]): (
            r["entries"],
            r["hours"],
            r["billable_hours"],
            r["non_billable_hours"],
        )
        for r in conn.execute("SELECT * FROM billable_hours_per_month")
    }


_REPORT_KEYS = {
    "project": lambda r: (r["workspace_id"], r["project_id"]),
    "client": lambda r: (r["workspace_id"], r["client_id"]),
    "member": lambda r: (r["workspace_id"], r["team_member_id"]),
    "day": lambda r: r["date"],
    "week": lambda r: monday(r["date"]),
    "month": lambda r: r["date"][:7],
}
_PER_WORKSPACE = ("project", "client", "member")


def expected_report(
    conn: sqlite3.Connection, by: str, since: str | None, until: str | None, ws: str | None
) -> dict[Any, tuple]:
    rows = [
        r
        for r in live_rows(conn)
        if (since or "") <= r["date"] <= (until or "9") and (ws is None or r["workspace_id"] == ws)
    ]
    projects, clients = names(conn, "projects"), names(conn, "clients")
    workspaces = names(conn, "workspaces")
    out = {}
    for k, g in grouped(rows, _REPORT_KEYS[by]).items():
        labels: tuple = ()
        if by in _PER_WORKSPACE:  # keyed by (workspace name, id) as the report shows them
            ws_id, k = k
            k = (workspaces.get(ws_id) or ws_id, k)
        elif by == "week":  # a week starting before the range is labelled by its first day
            k = max(k, since or "")
        if by == "project":
            labels = (projects.get(k[1]), clients.get(g.client))  # type: ignore[arg-type]
        elif by == "client":
            labels = (clients.get(k[1]),)
        elif by == "member":
            labels = (max(g.members, default=None),)
        out[k] = (*labels, g.entries, g.seconds / 3600.0, g.billable / 3600.0)
    return out


def actual_report(
    conn: sqlite3.Connection, by: str, since: str | None, until: str | None, ws: str | None
) -> dict[Any, tuple]:
    rows = conn.execute(
        reports.hours_report_sql(by), reports.hours_report_params(since, until, ws)
    ).fetchall()
    hours = [r["hours"] for r in rows]
    if by in ("project", "client", "member"):
        assert hours == sorted(hours, reverse=True)
    else:
        assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    if by in _PER_WORKSPACE:
        return {(r["workspace"], r[0]): tuple(r[1:-1]) for r in rows}
    return {r[0]: tuple(r[1:]) for r in rows}


def assert_close(actual: dict, expected: dict, *, places: float = 1e-9) -> None:
    """Equal keys, equal ints and strings, floats within ``places``."""
    assert actual.keys() == expected.keys()
    for key, row in expected.items():
        assert len(actual[key]) == len(row), key
        for got, want in zip(actual[key], row, strict=True):
            if isinstance(want, float):
                assert got == pytest.approx(want, abs=places), (key, actual[key], row)
            else:
                assert got == want, (key, actual[key], row)


def check_everything(conn: sqlite3.Connection) -> None:
    assert stored_totals(conn) == expected_totals(conn)
    assert_close(actual_weekly(conn), expected_weekly(conn))
    assert_close(actual_monthly(conn), expected_monthly(conn))
    for by in reports.REPORT_KINDS:
        for since, until, ws in (
            (None, None, None),
            (day(2), day(6), None),
            (day(4), None, "ws-2"),
        ):
            # Reports round hours to 2 places; summing per entry or per day may tip a half.
            assert_close(
                actual_report(conn, by, since, until, ws),
                expected_report(conn, by, since, until, ws),
                places=0.0051,
            )


# ---------------------------------------------------------------------- random histories


class TotalsStayExact(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="syncd-totals-"))
        self.path = self.dir / "mirror.sqlite"
        self.store = Store(self.path)
        self.conn = reader(self.path)
        self.entries: dict[str, TimeEntry] = {}  # last version written, per id
        self.clock = datetime(2024, 4, 1, tzinfo=UTC)

    def tick(self) -> str:
        self.clock += timedelta(seconds=1)
        return stamp(self.clock)

    def version(self, data: st.DataObject, entry_id: str) -> TimeEntry:
        ws = WORKSPACES[int(entry_id[1:]) % 2]
        running = data.draw(st.booleans(), label="running")
        return entry(
            entry_id,
            ws=ws,
            day=day(data.draw(days, label="day")),
            start_hour=data.draw(st.integers(0, 23), label="hour"),
            running=running,
            seconds=None if running else data.draw(st.integers(0, 20_000), label="seconds"),
            billable=data.draw(st.booleans(), label="billable"),
            project=data.draw(st.sampled_from(PROJECTS), label="project"),
            client=data.draw(st.sampled_from(CLIENTS), label="client"),
            member=data.draw(st.sampled_from(MEMBERS), label="member"),
            updated_at=self.tick(),
        )

    def pick(self, data: st.DataObject) -> str:
        return data.draw(st.sampled_from(sorted(self.entries)), label="entry")

    @initialize()
    def start(self) -> None:
        for ws in WORKSPACES:
            self.store.apply_window(window([], None, day(DAYS), ws=ws, scanned_at=self.tick()))

    @rule(data=st.data())
    def push_new(self, data: st.DataObject) -> None:
        entry_id = f"e{len(self.entries):03d}"
        self.entries[entry_id] = self.version(data, entry_id)
        self.store.apply_pushed_entry(self.entries[entry_id], Source.WEBHOOK, self.tick())

    @precondition(lambda self: self.entries)
    @rule(data=st.data())
    def push_edit(self, data: st.DataObject) -> None:
        """An edit (new day, project, client, member, billable, duration, timer state); it
        revives the entry when it was tombstoned."""
        entry_id = self.pick(data)
        self.entries[entry_id] = self.version(data, entry_id)
        self.store.apply_pushed_entry(self.entries[entry_id], Source.WEBHOOK, self.tick())

    @precondition(lambda self: self.entries)
    @rule(data=st.data())
    def tombstone(self, data: st.DataObject) -> None:
        self.store.tombstone_entry(self.pick(data), self.tick())

    @precondition(lambda self: self.entries)
    @rule(data=st.data(), a=days, b=days, ws=st.sampled_from(WORKSPACES))
    def scan(self, data: st.DataObject, a: int, b: int, ws: str) -> None:
        """A complete scan that finds some of the window's entries: the others are
        tombstoned, tombstoned ones it finds are revived."""
        lo, hi = day(min(a, b)), day(max(a, b))
        inside = [e for e in self.entries.values() if e.workspace_id == ws and lo <= e.date <= hi]
        found = (
            data.draw(st.lists(st.sampled_from(inside), unique_by=lambda e: e.id)) if inside else []
        )
        self.store.apply_window(window(found, lo, hi, ws=ws, scanned_at=self.tick()), FORCED)

    @precondition(lambda self: self.entries)
    @rule(
        data=st.data(),
        change=st.sampled_from(
            [
                ("duration_seconds", st.none() | st.integers(0, 20_000)),
                ("end_time", st.none() | st.just("2024-02-26T10:00:00.000Z")),
                ("start_time", st.none() | st.just("2024-02-29T08:30:00.000Z")),
                ("billable", st.sampled_from([0, 1])),
                ("date", days.map(day)),
                ("project_id", st.sampled_from([None, "p-1", "p-2"])),
                ("client_id", st.sampled_from([None, "c-1", "c-2"])),
            ]
        ),
    )
    def edit_behind_the_store(self, data: st.DataObject, change: tuple) -> None:
        """A tool writing the table directly, even into shapes the store never writes (a
        stopped entry without a duration, a timer without a start)."""
        column, values = change
        with self.store.db.atomic():
            self.store.db.execute_sql(
                f"UPDATE time_entries SET {column} = ? WHERE id = ?",
                (data.draw(values, label=column), self.pick(data)),
            )

    @precondition(lambda self: self.entries)
    @rule(data=st.data())
    def hard_delete(self, data: st.DataObject) -> None:
        entry_id = self.pick(data)
        del self.entries[entry_id]
        with self.store.db.atomic():
            for sql in (
                "INSERT INTO time_entries_fts (time_entries_fts, rowid, description) "
                "SELECT 'delete', rowid, description FROM time_entries "
                "WHERE id = ? AND deleted_at IS NULL",
                "DELETE FROM time_entries WHERE id = ?",
            ):
                self.store.db.execute_sql(sql, (entry_id,))

    @invariant()
    def totals_views_and_reports_are_exact(self) -> None:
        check_everything(self.conn)

    def teardown(self) -> None:
        self.conn.close()
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)


TotalsStayExact.TestCase.settings = settings(
    max_examples=examples(60),
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestTotalsStayExact = TotalsStayExact.TestCase


# ---------------------------------------------------------------------- upgrade


def test_migrating_a_filled_0005_database_fills_the_totals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mirror created before the totals existed gets them from its rows, tombstones and
    running timers included, and then keeps them exact."""
    path = tmp_path / "old.sqlite"
    old = [m for m in migrations.MIGRATIONS if m.name < "0006"]
    assert [m.name for m in old][-1] == "0005_description_search"
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "MIGRATIONS", tuple(old))
        db = SqliteDatabase(str(path))
        assert migrations.migrate(db)[-1] == "0005_description_search"
        db.close()
    with sqlite3.connect(path) as conn:
        conn.executemany("INSERT INTO workspaces (id) VALUES (?)", [(w,) for w in WORKSPACES])
        conn.executemany(
            "INSERT INTO projects (id, workspace_id, name) VALUES (?, 'ws-1', ?)",
            [("p-1", "Apollo"), ("p-2", "Zeus")],
        )
        conn.executemany(
            "INSERT INTO clients (id, workspace_id, name) VALUES (?, 'ws-1', ?)",
            [("c-1", "Acme"), ("c-2", "Globex")],
        )
        rows = []
        for n in range(300):
            project = PROJECTS[n % 3]
            start = f"{day(n % DAYS)}T{n % 24:02d}:00:00.000Z"
            running = n % 17 == 0
            rows.append(
                (
                    f"e{n}",
                    WORKSPACES[n % 2],
                    day(n % DAYS),
                    start,
                    None if running else start,
                    None if running else 60 * n,
                    n % 4 == 0,
                    project and project[0],
                    CLIENTS[n % 2 + 1][0] if project else None,
                    "2024-03-20T00:00:00.000Z" if n % 11 == 0 else None,
                )
            )
        conn.executemany(
            "INSERT INTO time_entries (id, workspace_id, date, start_time, end_time, "
            "duration_seconds, billable, project_id, client_id, deleted_at, synced_at, source) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '2024-03-20T00:00:00.000Z', 'backfill')",
            rows,
        )
        before = {
            view: conn.execute(f"SELECT count(*) FROM {view}").fetchone()
            for view in ("hours_per_week_per_project", "billable_hours_per_month")
        }
    with Store(path) as store:
        assert "0006_daily_totals" in store.applied_migrations()
        conn = reader(path)
        try:
            assert sum(e for e, *_ in stored_totals(conn).values()) == 300 - len(
                [r for r in rows if r[-1]]
            )
            assert any(running for _, running, *_ in stored_totals(conn).values())
            check_everything(conn)
            for view, count in before.items():
                assert conn.execute(f"SELECT count(*) FROM {view}").fetchone()[0] == count[0]
            # Kept exact afterwards: stop a timer, move an entry, tombstone one.
            store.apply_pushed_entry(
                entry("e0", day=day(3), seconds=999, updated_at="2024-03-21T00:00:00.000Z"),
                Source.WEBHOOK,
                "2024-03-21T00:00:00.000Z",
            )
            store.tombstone_entry("e1", "2024-03-21T00:00:01.000Z")
            check_everything(conn)
        finally:
            conn.close()


def test_empty_rows_are_removed(mirror: Store) -> None:
    """On both backends."""
    store = mirror
    store.upsert_workspaces([Workspace(WS, "Main")], "2024-06-01T00:00:00.000Z")
    store.apply_pushed_entry(
        entry("a", day="2024-03-04"), Source.WEBHOOK, "2024-06-01T00:00:00.000Z"
    )
    moved = entry("a", day="2024-03-05", updated_at="2024-06-02T00:00:00.000Z")
    store.apply_pushed_entry(moved, Source.WEBHOOK, "2024-06-02T00:00:00.000Z")
    totals = "SELECT date, workspace_id, project_id, client_id FROM daily_project_totals"
    assert rows(store.location, totals) == [("2024-03-05", "ws-1", "p-1", "c-1")]
    store.tombstone_entry("a", "2024-06-03T00:00:00.000Z")
    assert rows(store.location, totals) == []
    assert rows(store.location, "SELECT count(*) FROM hours_per_week_per_project") == [(0,)]


def test_totals_follow_the_stores_writes(mirror: Store) -> None:
    """Inserts, moves, edits, stopped timers, tombstones and revivals through the store leave
    ``daily_project_totals`` equal to a GROUP BY of the live rows, on both backends."""
    store = mirror
    scan = "2024-06-0{}T00:00:00.000Z".format
    first = [
        entry("a", day="2024-03-04", seconds=600, billable=True),
        entry("b", day="2024-03-04", seconds=300, project=None),
        entry("c", day="2024-03-05", running=True, client=("c-2", "Globex")),
        entry("d", day="2024-03-05", seconds=60, billable=True),
    ]
    store.apply_window(window(first, "2024-03-01", "2024-03-31", scanned_at=scan(1)), FORCED)
    later = "2024-06-01T12:00:00.000Z"
    second = [
        entry("a", day="2024-03-06", seconds=900, billable=True, updated_at=later),
        entry("b", day="2024-03-04", seconds=300, billable=True, updated_at=later),
        entry("c", day="2024-03-05", seconds=120, client=("c-2", "Globex"), updated_at=later),
        entry("e", day="2024-03-04", seconds=30),
    ]
    store.apply_window(window(second, "2024-03-01", "2024-03-31", scanned_at=scan(2)), FORCED)
    assert_totals_exact(store)
    store.tombstone_entry("e", scan(3))
    store.apply_window(
        window([*second, first[3]], "2024-03-01", "2024-03-31", scanned_at=scan(4)), FORCED
    )
    assert_totals_exact(store)
    live = rows(store.location, "SELECT count(*) FROM time_entries WHERE deleted_at IS NULL")
    assert live == [(5,)]


def assert_totals_exact(store: Store) -> None:
    expected: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in dict_rows(store.location, "SELECT * FROM time_entries WHERE deleted_at IS NULL"):
        key = (r["date"], r["workspace_id"], r["project_id"] or "", r["client_id"] or "")
        seconds = r["duration_seconds"] or 0
        expected[key][0] += 1
        expected[key][1] += is_running(r)
        expected[key][2] += seconds
        expected[key][3] += seconds if r["billable"] else 0
    stored = rows(
        store.location,
        "SELECT date, workspace_id, project_id, client_id, "
        "entries, running, seconds, billable_seconds FROM daily_project_totals",
    )
    assert {tuple(r[:4]): list(r[4:]) for r in stored} == dict(expected)


def test_running_timers_count_up_to_now(store: Store, db_path: Path) -> None:
    """Timers of one project and day under different clients each count once, up to now (and
    not below zero when they start after it); stopping one moves it into the stored seconds."""
    timers = [
        entry("t1", day="2024-03-04", start_hour=10, running=True, billable=True),
        entry("t2", day="2024-03-04", start_hour=11, running=True, client=("c-2", "Globex")),
        entry("t3", day="2024-03-04", start_hour=12, running=True, client=None),
        entry("t4", day="2024-03-05", start_hour=20, running=True),  # starts after NOW
        entry("s1", day="2024-03-04", seconds=600, billable=True),
    ]
    store.apply_window(window(timers, "2024-03-04", "2024-03-05"))
    conn = reader(db_path)
    try:
        [week] = conn.execute(
            "SELECT entries, seconds, billable_hours FROM hours_per_week_per_project"
        ).fetchall()
        since_start = [
            int((NOW - datetime(2024, 3, 4, h, tzinfo=UTC)).total_seconds()) for h in (10, 11, 12)
        ]
        assert tuple(week) == (5, 600 + sum(since_start), (600 + since_start[0]) / 3600)
        check_everything(conn)
        stopped = entry(
            "t1",
            day="2024-03-04",
            start_hour=10,
            seconds=60,
            billable=True,
            updated_at="2024-06-02T00:00:00.000Z",
        )
        store.apply_pushed_entry(stopped, Source.WEBHOOK, "2024-06-02T00:00:00.000Z")
        assert tuple(
            conn.execute("SELECT sum(running), sum(seconds) FROM daily_project_totals").fetchone()
        ) == (3, 660)
        check_everything(conn)
    finally:
        conn.close()
