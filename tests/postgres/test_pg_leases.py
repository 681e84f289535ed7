"""Expiring leases on SQLite and PostgreSQL: contention, renewal, expiry, release."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from peewee import Database, SqliteDatabase

from syncd.store import pg_schema
from syncd.store.backend import open_postgres
from syncd.store.leases import Leases

# The SQLite ledger's step for the table (its text belongs in syncd/store/migrations.py).
SQLITE_LEASES_DDL = """
    CREATE TABLE leases (
        name TEXT PRIMARY KEY NOT NULL,
        holder TEXT NOT NULL,
        acquired_at REAL NOT NULL,
        expires_at REAL NOT NULL
    ) WITHOUT ROWID"""


@pytest.fixture(params=["sqlite", "postgresql"])
def connect(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Database]]:
    """Opens another connection to one database holding the ``leases`` table."""
    opened: list[Database] = []
    if request.param == "sqlite":
        path = str(tmp_path / "leases.sqlite")

        def open_one() -> Database:
            database = SqliteDatabase(path, timeout=10, pragmas={"journal_mode": "wal"})
            database.connect()
            opened.append(database)
            return database

        open_one().execute_sql(SQLITE_LEASES_DDL)
    else:
        url = request.getfixturevalue("postgres_url")

        def open_one() -> Database:
            opened.append(open_postgres(url))
            return opened[-1]

        pg_schema.migrate(open_one())
    try:
        yield open_one
    finally:
        for database in opened:
            database.close()


@pytest.fixture
def db(connect: Callable[[], Database]) -> Database:
    return connect()


def test_two_holders_contend_and_one_wins(connect: Callable[[], Database]) -> None:
    a, b = Leases(connect()), Leases(connect())
    assert a.acquire("subscription", "a", 30)
    assert not b.acquire("subscription", "b", 30)
    assert a.acquire("subscription", "a", 30), "the holder renews"
    (lease,) = b.holders()
    assert (lease.name, lease.holder) == ("subscription", "a")
    assert 30 <= lease.expires_at - lease.acquired_at < 35, "renewed for 30 s from now"
    assert abs(lease.acquired_at - time.time()) < 5, "epoch seconds by the database's clock"


def test_renewal_keeps_the_lease_and_moves_its_expiry(db: Database) -> None:
    leases = Leases(db)
    assert leases.acquire("poll", "a", 1)
    (first,) = leases.holders()
    time.sleep(0.05)
    assert leases.acquire("poll", "a", 60)
    (renewed,) = leases.holders()
    assert renewed.holder == "a"
    assert renewed.acquired_at == first.acquired_at
    assert renewed.expires_at > first.expires_at + 50
    time.sleep(1.1)
    assert not leases.acquire("poll", "b", 60), "the renewal outlives the first term"


def test_expiry_hands_the_lease_over(db: Database) -> None:
    leases = Leases(db)
    assert leases.acquire("poll", "a", 0.3)
    assert not leases.acquire("poll", "b", 30)
    time.sleep(0.4)
    assert leases.holders() == [], "an expired lease is held by no one"
    assert leases.acquire("poll", "b", 30)
    (lease,) = leases.holders()
    assert lease.holder == "b"
    assert not leases.acquire("poll", "a", 30)
    assert not leases.release("poll", "a"), "a holder that lost it cannot release it"
    assert [x.holder for x in leases.holders()] == ["b"]


def test_release_frees_only_the_holders_own_lease(db: Database) -> None:
    leases = Leases(db)
    assert leases.acquire("poll", "a", 30)
    assert leases.acquire("reconcile", "b", 30)
    assert not leases.release("poll", "b")
    assert leases.release("poll", "a")
    assert not leases.release("poll", "a")
    assert [(x.name, x.holder) for x in leases.holders()] == [("reconcile", "b")]
    assert leases.acquire("poll", "b", 30)


def test_a_ttl_must_be_positive(db: Database) -> None:
    with pytest.raises(ValueError, match="positive"):
        Leases(db).acquire("poll", "a", 0)


def test_many_holders_at_once_on_postgres_yield_one_winner(postgres_url: str) -> None:
    setup = open_postgres(postgres_url)
    pg_schema.migrate(setup)
    setup.close()
    won: list[str] = []
    start = threading.Barrier(6)

    def contend(holder: str) -> None:
        db = open_postgres(postgres_url)
        try:
            start.wait()
            if Leases(db).acquire("subscription", holder, 30):
                won.append(holder)
        finally:
            db.close()

    threads = [threading.Thread(target=contend, args=(f"h{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
