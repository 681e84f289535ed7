"""Convergence as a property: random upstream histories, lossy pushes and window scans.

The model is the upstream's set of entries. Pushes are drawn from the full history of
versions and deletions (so they arrive dropped, duplicated and out of order); scans are
complete scans of random windows; crashes abort a window at its last statement. After a final
reconciliation of every window the mirror's live entries must equal the model exactly, and no
scan may ever tombstone an entry outside its window.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from syncd.errors import MassDeleteError, StoreError
from syncd.records import Source, TimeEntry
from syncd.seams import MassDeletePolicy
from syncd.store import Store
from syncd.store.rows import CONTENT_COLUMNS, content_of
from tests.support.examples import examples

from .factory import FORCED, WS, day, entry, window

DAYS = 20
EPOCH = datetime(2024, 2, 1)
days = st.integers(min_value=0, max_value=DAYS - 1)
words = st.sampled_from(["invoice", "review", "café", "standup", "東京", ""])


def expected(e: TimeEntry) -> dict:
    row = dict(zip(CONTENT_COLUMNS, content_of(e), strict=True))
    row["billable"] = bool(row["billable"])
    row["manually_entered"] = bool(row["manually_entered"])
    row["tags"] = []
    return row


class MirrorConvergence(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="syncd-prop-"))
        self.path = self.dir / "mirror.sqlite"
        self.store = Store(self.path)
        self.model: dict[str, TimeEntry] = {}
        self.log: list[tuple[str, TimeEntry | str, int]] = []  # ("put"|"delete", what, time)
        self.clock = 0
        self.next_id = 0

    def now(self) -> str:
        self.clock += 1
        return (EPOCH + timedelta(seconds=self.clock)).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def put(self, e: TimeEntry) -> None:
        self.model[e.id] = e
        self.log.append(("put", e, self.clock))

    def version(self, entry_id: str, d: int, description: str, running: bool) -> TimeEntry:
        return entry(
            entry_id,
            day=day(d, "2024-01-01"),
            description=description,
            running=running,
            seconds=None if running else 600 + d,
            updated_at=self.now(),
        )

    @initialize()
    def start(self) -> None:
        self.store.apply_window(window([], None, day(DAYS, "2024-01-01"), scanned_at=self.now()))

    @rule(d=days, text=words)
    def create(self, d: int, text: str) -> None:
        self.next_id += 1
        self.put(self.version(f"e{self.next_id:04d}", d, text, running=False))

    @rule(d=days)
    def start_timer(self, d: int) -> None:
        self.next_id += 1
        self.put(self.version(f"e{self.next_id:04d}", d, "timer", running=True))

    @precondition(lambda self: self.model)
    @rule(data=st.data(), d=days, text=words)
    def edit(self, data: st.DataObject, d: int, text: str) -> None:
        """Edit an entry, perhaps moving it into another window (or stopping its timer)."""
        target = data.draw(st.sampled_from(sorted(self.model)))
        self.put(self.version(target, d, text, running=False))

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        target = data.draw(st.sampled_from(sorted(self.model)))
        del self.model[target]
        self.now()
        self.log.append(("delete", target, self.clock))

    @precondition(lambda self: self.log)
    @rule(data=st.data())
    def deliver_push(self, data: st.DataObject) -> None:
        """Deliver any past event: old ones arrive late, some twice, others never."""
        kind, what, at = data.draw(st.sampled_from(self.log))
        received = self.now()
        if kind == "put":
            assert isinstance(what, TimeEntry)
            self.store.apply_pushed_entry(what, Source.WEBHOOK, received)
        else:
            assert isinstance(what, str)
            stamp = (EPOCH + timedelta(seconds=at)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            self.store.tombstone_entry(what, stamp)

    def scan(self, lo: int, hi: int, *, force: bool = False) -> None:
        date_from, date_to = day(lo, "2024-01-01"), day(hi, "2024-01-01")
        found = [e for e in self.model.values() if date_from <= e.date <= date_to]
        before = {r["id"]: r for r in self.store.mirror_snapshot(WS)}
        try:
            self.store.apply_window(
                window(found, date_from, date_to, scanned_at=self.now()),
                MassDeletePolicy(force=force),
            )
        except MassDeleteError:
            assert {r["id"]: r for r in self.store.mirror_snapshot(WS)} == before
            return
        after = {r["id"]: r for r in self.store.mirror_snapshot(WS)}
        for gone in before.keys() - after.keys():
            assert date_from <= before[gone]["date"] <= date_to, "tombstoned outside the window"
            upstream = self.model.get(gone)
            assert upstream is None or not date_from <= upstream.date <= date_to
        for e in found:
            assert e.id in after, "a complete scan left an upstream entry of its window dead"

    @rule(a=days, b=days)
    def scan_window(self, a: int, b: int) -> None:
        self.scan(min(a, b), max(a, b))

    @rule(a=days, b=days)
    def crash_during_window(self, a: int, b: int) -> None:
        """The window fails at its last statement: nothing of it may remain."""
        with sqlite3.connect(self.path) as conn:
            conn.execute(
                "CREATE TRIGGER crash BEFORE INSERT ON window_scans "
                "BEGIN SELECT RAISE(ABORT, 'crash'); END"
            )
        before = self.store.mirror_snapshot(WS)
        lo, hi = min(a, b), max(a, b)
        found = [
            e
            for e in self.model.values()
            if day(lo, "2024-01-01") <= e.date <= day(hi, "2024-01-01")
        ]
        try:
            with pytest.raises(StoreError, match="crash"):
                self.store.apply_window(
                    window(
                        found,
                        day(lo, "2024-01-01"),
                        day(hi, "2024-01-01"),
                        scanned_at=self.now(),
                    ),
                    FORCED,
                )
        finally:
            with sqlite3.connect(self.path) as conn:
                conn.execute("DROP TRIGGER crash")
        assert self.store.mirror_snapshot(WS) == before

    @invariant()
    def tombstones_never_hard_delete(self) -> None:
        with sqlite3.connect(self.path) as conn:
            (n,) = conn.execute("SELECT count(*) FROM time_entries").fetchone()
        assert n <= self.next_id

    def teardown(self) -> None:
        try:
            for lo in range(0, DAYS, 5):  # a reconciliation of every window
                self.scan(lo, lo + 4, force=True)
            mirror = {r["id"]: r for r in self.store.mirror_snapshot(WS)}
            assert mirror == {i: expected(e) for i, e in self.model.items()}
            running = {e.date for e in self.model.values() if e.running}
            assert set(self.store.running_entry_dates(WS)) == running
        finally:
            self.store.close()
            shutil.rmtree(self.dir, ignore_errors=True)


MirrorConvergence.TestCase.settings = settings(
    max_examples=examples(50),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMirrorConvergence = MirrorConvergence.TestCase
