"""A mirror on PostgreSQL fails loudly and recovers: server errors become the named
``StoreError`` kinds, messages name the database by its URL without the password, a lost
connection is replaced on the next call, and the integrity check is the server's answer and a
complete schema ledger."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest

from syncd.errors import (
    CorruptDatabase,
    DiskFull,
    ReadOnlyDatabase,
    SchemaTooNew,
    StoreError,
    UsageError,
)
from syncd.store import AsyncStore, Store
from syncd.store.integrity import CHECKED_AT_SETTING, check, rebuild

from .backends import empty_database, rows
from .factory import WS, entry, window

MARCH = ("2024-03-01", "2024-03-31")


@pytest.fixture
def url(shared_postgres_url: str) -> str:
    """The shared test database, emptied, named with a password (the server trusts anyone,
    so it is never checked) that no message may show."""
    empty_database(shared_postgres_url)
    parts = urlsplit(shared_postgres_url)
    netloc = f"{parts.username}:s3cret-pw@{parts.hostname}:{parts.port or 5432}"
    return parts._replace(netloc=netloc).geturl()


def raising(url: str, sqlstate: str) -> None:
    """Make every insert into ``window_scans`` fail with ``sqlstate``."""
    rows(
        url,
        "CREATE OR REPLACE FUNCTION fail_scan() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{sqlstate}'; END $$",
    )
    rows(url, "DROP TRIGGER IF EXISTS fail_scan ON window_scans")
    rows(
        url,
        "CREATE TRIGGER fail_scan BEFORE INSERT ON window_scans "
        "FOR EACH ROW EXECUTE FUNCTION fail_scan()",
    )


@pytest.mark.parametrize(
    ("sqlstate", "kind", "says"),
    [
        ("53100", DiskFull, "disk is full"),
        ("25006", ReadOnlyDatabase, "read-only"),
        ("XX001", CorruptDatabase, "damaged"),
        ("57014", StoreError, "timed out"),
        ("40001", StoreError, "serialization failure"),
        ("08006", StoreError, "connection to PostgreSQL failed or was lost"),
    ],
)
def test_server_errors_are_named_and_the_window_is_not_written(
    url: str, sqlstate: str, kind: type[StoreError], says: str
) -> None:
    raising(url, sqlstate)
    try:
        with Store(url) as store:
            with pytest.raises(kind, match=says) as info:
                store.apply_window(window([entry("a")], *MARCH))
            message = str(info.value)
            assert "s3cret-pw" not in message
            # The advice is for a server, not for a file beside the mirror.
            assert "-wal" not in message
            assert "syncd -c CONFIG rebuild" not in message
            assert "postgres:***@" in message
            assert rows(url, "SELECT count(*) FROM time_entries") == [(0,)]
            # The store stays usable.
            assert store.count_live_entries(WS) == 0
    finally:
        rows(url, "DROP TRIGGER fail_scan ON window_scans")


def test_a_lost_connection_is_named_and_the_next_call_reconnects(url: str) -> None:
    with Store(url) as store:
        store.apply_window(window([entry("a")], *MARCH))
        (pid,) = store.db.execute_sql("SELECT pg_backend_pid()").fetchone()
        rows(url, "SELECT pg_terminate_backend(?)", (pid,))
        with pytest.raises(StoreError) as info:
            store.count_live_entries(WS)
        assert "s3cret-pw" not in str(info.value)
        assert "postgres:***@" in str(info.value)
        assert store.count_live_entries(WS) == 1  # a new connection
        assert store.apply_window(window([entry("b")], *MARCH)).inserted == 1


def test_an_unreachable_server_is_named_without_the_password() -> None:
    with pytest.raises(StoreError, match="cannot connect") as info:
        Store("postgresql://postgres:s3cret-pw@127.0.0.1:1/mirror", timeout=2)
    assert "s3cret-pw" not in str(info.value)


async def test_the_integrity_check_is_the_servers_answer_and_a_complete_ledger(url: str) -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    async with await AsyncStore.open(url) as store:
        await check(store, now=now)
        assert await store.get_setting(CHECKED_AT_SETTING) == "2026-06-01T00:00:00.000Z"
        rows(url, "DELETE FROM schema_migrations WHERE name = '0007_leases'")
        try:
            with pytest.raises(StoreError, match="lacks 0007_leases"):
                await check(store, now=now)
            rows(url, "INSERT INTO schema_migrations VALUES ('9999_future', '2030-01-01')")
            with pytest.raises(SchemaTooNew):
                await check(store, now=now)
        finally:
            rows(url, "DELETE FROM schema_migrations WHERE name = '9999_future'")
            rows(url, "INSERT INTO schema_migrations VALUES ('0007_leases', '2024-01-01')")


def test_rebuild_is_for_sqlite_only(url: str) -> None:
    with pytest.raises(UsageError, match="SQLite") as info:
        rebuild(url, now=datetime(2026, 6, 1, tzinfo=UTC), force=True)
    assert "s3cret-pw" not in str(info.value)
