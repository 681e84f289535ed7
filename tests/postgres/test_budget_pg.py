"""The rate budget's ledger on PostgreSQL: the SQLite ledger's decisions, shared by processes."""

from __future__ import annotations

import secrets
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import peewee
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.budget_ledger import DAY, SECOND_SPAN, BudgetLedger, Caps, Observation
from syncd.errors import StoreError
from syncd.store import open_store, pg_schema
from syncd.store.backend import open_postgres
from syncd.store.budget import SqliteBudgetLedger
from syncd.store.budget_pg import PostgresBudgetLedger
from syncd.store.ledgers import budget_ledger, ledger_for
from syncd.store.migrations import BUDGET_TABLES
from tests.support.examples import examples

KEY_ID = "0123456789abcdef"
# 100 s before a UTC midnight, so a scenario crosses into the next day.
MIDNIGHT = datetime(2026, 3, 11, tzinfo=UTC).timestamp()
T0 = MIDNIGHT - 100
CAPS = Caps(per_second=3, per_minute=8, per_day=10, daily_cap=None)
SHARE = Caps(per_second=3, per_minute=8, per_day=10, daily_cap=5)


@pytest.fixture
def pg(postgres_url: str) -> Iterator[peewee.PostgresqlDatabase]:
    db = open_postgres(postgres_url)
    pg_schema.migrate(db)
    try:
        yield db
    finally:
        db.close()


def sqlite_db() -> peewee.SqliteDatabase:
    db = peewee.SqliteDatabase(":memory:")
    for ddl in BUDGET_TABLES:
        db.execute_sql(ddl)
    return db


def grant_times(db: peewee.Database, key_id: str = KEY_ID) -> list[float]:
    p = db.param
    rows = db.execute_sql(
        f"SELECT granted_at FROM budget_grants WHERE key_id = {p} ORDER BY granted_at",
        (key_id,),
    )
    return [float(t) for (t,) in rows]


def max_in_window(times: list[float], span: float) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - span:
            j += 1
        best = max(best, i - j + 1)
    return best


# --------------------------------------------------------------------------- same decisions

# A step: ("acquire", at, caps, observed, give back the grant of step N or None),
# ("defer", at, until), ("observe", at, observation), ("usage", at), ("prune", at).
Step = tuple[Any, ...]


def play(ledger: BudgetLedger, steps: list[Step]) -> list[Any]:
    """What ``ledger`` answers to each step, with each grant's id replaced by True."""
    answers: list[Any] = []
    ids: dict[int, int | None] = {}
    for index, (op, at, *rest) in enumerate(steps):
        if op == "acquire":
            caps, observed, give_back = rest
            decision = ledger.acquire(
                at,
                caps,
                priority=2,
                pid=4242,
                observed=observed,
                give_back=None if give_back is None else ids[give_back],
            )
            ids[index] = decision.grant_id
            answers.append(
                (
                    decision.granted,
                    decision.wait,
                    decision.reason,
                    decision.exhausted_until,
                    decision.grant_id is not None,
                )
            )
        elif op == "defer":
            answers.append(ledger.defer(rest[0]))
        elif op == "observe":
            answers.append(ledger.observe(rest[0]))
        elif op == "usage":
            answers.append(ledger.usage(at))
        else:
            answers.append(ledger.prune(at))
    return answers


def scenario() -> list[Step]:
    """Every way a request is granted or refused, in one day and into the next."""
    t = T0
    return [
        *[("acquire", t + d, CAPS, None, None) for d in (0, 0.01, 0.02)],  # granted at once
        ("acquire", t + 0.03, CAPS, None, None),  # per_second, slot too far to reserve
        ("acquire", t + 0.9, CAPS, None, None),  # reserved for t + 1.1
        ("acquire", t + 1.2, CAPS, None, None),
        ("acquire", t + 1.25, CAPS, None, None),
        ("acquire", t + 2.5, CAPS, None, None),
        ("acquire", t + 2.6, CAPS, None, None),  # eight in the minute
        ("acquire", t + 2.7, CAPS, None, None),  # per_minute
        ("usage", t + 2.7),
        ("defer", t + 3, t + 5),
        ("defer", t + 3, t + 4),  # an earlier deadline changes nothing
        ("acquire", t + 4, CAPS, None, None),  # not_before
        ("acquire", t + 61, CAPS, Observation(1, t + 90, t + 60.5), None),
        ("acquire", t + 61.5, CAPS, None, None),  # server_remaining
        ("observe", t + 62, Observation(7, t + 80, t + 50)),  # older: kept out
        ("usage", t + 62),
        ("acquire", t + 95, SHARE, None, None),  # daily_share
        ("acquire", t + 95, CAPS, None, None),  # the tenth today
        ("acquire", t + 96, CAPS, None, None),  # per_day
        ("acquire", t + 101, CAPS, Observation(3, None, t + 100.5), None),  # a new day
        ("acquire", t + 101.01, CAPS, None, 21),  # gives step 21's grant back
        ("observe", t + 102, Observation(4, t + 101.5, t + 101)),  # the server's second
        ("acquire", t + 102, CAPS, None, None),
        ("usage", t + 102),
        ("usage", t + 30),
        ("prune", t + 101 + DAY),
        ("usage", t + 102),
        ("prune", t + 102 + 2 * DAY),
        ("usage", t + 102),
    ]


def test_postgres_decides_as_sqlite_on_a_scenario_of_every_reason(pg) -> None:
    steps = scenario()
    sqlite = sqlite_db()
    on_sqlite = play(SqliteBudgetLedger(sqlite, KEY_ID), steps)
    on_postgres = play(PostgresBudgetLedger(pg, KEY_ID), steps)
    for step, lite, post in zip(steps, on_sqlite, on_postgres, strict=True):
        assert post == lite, step
    assert grant_times(pg) == grant_times(sqlite)
    reasons = {answer[2] for answer in on_sqlite if isinstance(answer, tuple)}
    assert reasons == {
        "",
        "reserved",
        "per_second",
        "per_minute",
        "not_before",
        "server_remaining",
        "daily_share",
        "per_day",
    }


caps_strategy = st.builds(
    Caps,
    per_second=st.integers(1, 4),
    per_minute=st.integers(1, 12),
    per_day=st.integers(1, 30),
    daily_cap=st.none() | st.integers(1, 20),
)
observation = st.builds(
    Observation,
    remaining=st.integers(0, 5),
    reset=st.none() | st.floats(0.5, 90),
    seen_at=st.floats(-5, 0),
)
step_strategy = st.one_of(
    st.tuples(
        st.just("acquire"),
        st.floats(0, 0.7),
        caps_strategy,
        st.none() | observation,
        st.booleans(),
    ),
    st.tuples(st.just("acquire"), st.floats(30, 70), caps_strategy, st.none(), st.just(False)),
    st.tuples(st.just("defer"), st.floats(0, 1), st.floats(-1, 3)),
    st.tuples(st.just("observe"), st.floats(0, 1), observation),
    st.tuples(st.just("usage"), st.floats(0, 1)),
)


def absolute(moves: list[tuple[Any, ...]]) -> list[Step]:
    """Steps at moments that only move forward; observations and deadlines relative to
    them; "give back" names the last grant asked for, if any."""
    steps: list[Step] = []
    at = T0
    last_acquire: int | None = None
    for op, step, *rest in moves:
        at += step
        if op == "acquire":
            caps, observed, give_back = rest
            if observed is not None:
                reset = None if observed.reset is None else at + observed.reset
                observed = Observation(observed.remaining, reset, at + observed.seen_at)
            back = last_acquire if give_back else None
            steps.append(("acquire", at, caps, observed, back))
            last_acquire = len(steps) - 1
        elif op == "defer":
            steps.append(("defer", at, at + rest[0]))
        elif op == "observe":
            seen = rest[0]
            reset = None if seen.reset is None else at + seen.reset
            steps.append(("observe", at, Observation(seen.remaining, reset, at + seen.seen_at)))
        else:
            steps.append(("usage", at))
    return steps


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(moves=st.lists(step_strategy, min_size=1, max_size=30))
def test_postgres_decides_as_sqlite_on_any_sequence(pg, moves) -> None:
    """Each example counts for a key of its own, so the database needs no cleaning."""
    steps = absolute(moves)
    key_id = secrets.token_hex(8)
    sqlite = sqlite_db()
    on_sqlite = play(SqliteBudgetLedger(sqlite, key_id), steps)
    on_postgres = play(PostgresBudgetLedger(pg, key_id), steps)
    assert on_postgres == on_sqlite
    assert grant_times(pg, key_id) == grant_times(sqlite, key_id)


# --------------------------------------------------------------------------- PostgreSQL only


def test_ledger_for_picks_the_ledger_of_the_database(pg) -> None:
    assert isinstance(ledger_for(pg, KEY_ID), PostgresBudgetLedger)
    assert isinstance(ledger_for(sqlite_db(), KEY_ID), SqliteBudgetLedger)
    assert ledger_for(pg, KEY_ID).key_id == KEY_ID
    with pytest.raises(StoreError, match="unsupported database backend"):
        ledger_for(peewee.MySQLDatabase("mirror"), KEY_ID)


def test_budget_ledger_is_the_ledger_of_a_stores_database(pg, tmp_path) -> None:
    store = open_store(tmp_path / "mirror.sqlite")
    try:
        on_sqlite = budget_ledger(store, KEY_ID)
        assert isinstance(on_sqlite, SqliteBudgetLedger)
        assert on_sqlite.acquire(T0, CAPS, priority=2, pid=1).granted
    finally:
        store.close()
    on_postgres = budget_ledger(SimpleNamespace(db=pg), KEY_ID)
    assert isinstance(on_postgres, PostgresBudgetLedger)
    assert on_postgres.acquire(T0, CAPS, priority=2, pid=1).granted


def test_missing_tables_raise_store_error(postgres_url: str) -> None:
    db = open_postgres(postgres_url)
    try:
        ledger = PostgresBudgetLedger(db, KEY_ID)
        with pytest.raises(StoreError, match="rate budget"):
            ledger.acquire(T0, CAPS, priority=2, pid=1)
        with pytest.raises(StoreError, match="rate budget"):
            ledger.usage(T0)
    finally:
        db.close()


def test_a_transaction_aborted_as_a_serialization_failure_is_run_again(postgres_url, pg):
    """CockroachDB runs every transaction SERIALIZABLE; so does this connection. A grant
    waiting for the state row that another transaction changes and commits meanwhile is
    aborted (SQLSTATE 40001) and asked again, not reported as a failure."""
    serializable = open_postgres(
        postgres_url + "?options=-c%20default_transaction_isolation%3Dserializable"
    )
    ledger = PostgresBudgetLedger(serializable, KEY_ID)
    assert ledger.acquire(T0, CAPS, priority=2, pid=1).granted  # creates the state row
    blocker = psycopg.connect(postgres_url)
    try:
        blocker.execute(
            "UPDATE budget_state SET not_before = not_before + 0 WHERE key_id = %s", (KEY_ID,)
        )
        answers: list[Any] = []

        def ask() -> None:
            try:
                answers.append(ledger.acquire(T0 + 0.1, CAPS, priority=2, pid=1))
            except Exception as exc:  # the assertion below names it
                answers.append(exc)

        asking = threading.Thread(target=ask)
        asking.start()
        time.sleep(0.5)  # the grant is waiting for the row lock
        assert not answers
        blocker.commit()
        asking.join(10)
        (answer,) = answers
        assert not isinstance(answer, Exception), answer
        assert answer.granted
        assert grant_times(pg) == [T0, T0 + 0.1]
    finally:
        blocker.close()
        serializable.close()


# --------------------------------------------------------------------------- processes

PER_SECOND = 10
PER_MINUTE = 18
WORKER = textwrap.dedent(
    f"""
    import asyncio, sys, time
    from syncd.budget import BudgetLimits, RateBudget
    from syncd.records import Priority
    from syncd.store.backend import open_postgres
    from syncd.store.ledgers import ledger_for

    url, start, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    db = open_postgres(url)
    limits = BudgetLimits(
        per_second={PER_SECOND}, per_minute={PER_MINUTE}, per_day=100000, safety_margin=0
    )

    async def main():
        budget = RateBudget(ledger_for(db, {KEY_ID!r}), limits=limits)
        await asyncio.sleep(max(0.0, start - time.time()))
        end = start + seconds
        while (left := end - time.time()) > 0:
            try:
                await asyncio.wait_for(budget.acquire(Priority.PUSH), left)
            except TimeoutError:
                break
        print(budget.granted)

    asyncio.run(main())
    """
)


@pytest.mark.e2e
def test_three_processes_share_the_second_and_the_minute(postgres_url, pg):
    """Three processes take grants as fast as the budget allows for 3 s: no span of a
    second ever holds more than the per-second cap, and the minute fills exactly once."""
    start = time.time() + 4.0  # all three start together, after their imports
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, postgres_url, str(start), "3.0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    granted = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        granted.append(int(out.strip().splitlines()[-1]))
    rows = list(
        pg.execute_sql(
            "SELECT granted_at, pid FROM budget_grants WHERE key_id = %s ORDER BY granted_at",
            (KEY_ID,),
        )
    )
    times = [t for t, _ in rows]
    # A grant whose request was cut off by the end of the run is recorded yet not counted.
    assert sum(granted) <= len(times) <= sum(granted) + len(procs)
    assert all(n > 0 for n in granted), granted
    assert max_in_window(times, 1.0) <= PER_SECOND
    assert max_in_window(times, SECOND_SPAN) <= PER_SECOND
    assert max_in_window(times, 60.0) <= PER_MINUTE
    assert len(times) == PER_MINUTE, "the minute filled within the run"
    assert len({pid for _, pid in rows}) == len(procs)
    # the processes really competed: some second holds grants of more than one
    assert any(
        rows[i][1] != rows[j][1]
        for i in range(len(rows))
        for j in range(i + 1, len(rows))
        if rows[j][0] - rows[i][0] < 1.0
    )
