"""Opening a PostgreSQL database from a URL: validation, psycopg 3, autocommit semantics."""

from __future__ import annotations

import psycopg
import pytest
from peewee import PostgresqlDatabase, SqliteDatabase

from syncd import database_url
from syncd.errors import ConfigError, StoreError
from syncd.store import backend


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://h/db", "has scheme 'mysql'; expected postgresql:// or postgres://"),
        ("/var/lib/syncd/mirror.sqlite", "has no scheme; expected postgresql://"),
        ("postgresql://h:port/db", "is not a valid URL"),
        ("postgresql://h", "names no database"),
        ("postgresql://h/", "names no database"),
        ("postgresql://u:hunter2@h/db?colour=blue", 'invalid URI query parameter: "colour"'),
    ],
)
def test_a_bad_url_is_refused_naming_the_problem(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        backend.postgres_conninfo(url)
    assert problem in str(caught.value)
    assert "database.url" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_both_schemes_are_accepted_and_spelled_postgresql() -> None:
    assert backend.postgres_conninfo("postgres://u@h:5433/db") == "postgresql://u@h:5433/db"
    assert backend.postgres_conninfo(" postgresql://h/db ") == "postgresql://h/db"
    assert database_url.is_postgres_url("POSTGRES://h/db")
    assert not database_url.is_postgres_url("mirror.sqlite")


def test_redact_hides_only_the_password() -> None:
    assert database_url.redact("postgresql://u:s3cret@h/db") == "postgresql://u:***@h/db"
    assert database_url.redact("postgresql://u@h/db") == "postgresql://u@h/db"


def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError) as caught:
        backend.open_postgres("postgresql://u:s3cret@127.0.0.1:1/db", connect_timeout=2)
    message = str(caught.value)
    assert message.startswith("cannot connect to PostgreSQL at postgresql://u:***@127.0.0.1:1/db")
    assert "s3cret" not in message


def test_backend_name_names_the_database_kind(tmp_path) -> None:
    assert backend.backend_name(SqliteDatabase(str(tmp_path / "m.sqlite"))) == "sqlite"
    assert backend.backend_name(PostgresqlDatabase("x", prefer_psycopg3=True)) == "postgresql"


def test_open_postgres_speaks_psycopg3_in_autocommit(postgres_url: str) -> None:
    db = backend.open_postgres(postgres_url.replace("postgresql://", "postgres://", 1))
    other = psycopg.connect(postgres_url, autocommit=True)
    try:
        assert isinstance(db.connection(), psycopg.Connection)
        assert backend.backend_name(db) == "postgresql"
        (app,) = db.execute_sql("SELECT current_setting('application_name')").fetchone()
        assert app == "syncd"
        assert db.execute_sql("SHOW jit").fetchone() == ("off",)  # see SESSION_OPTIONS
        db.execute_sql("CREATE TABLE t (v INTEGER)")
        # Outside atomic() a statement commits on its own, as on the store's SQLite connection.
        db.execute_sql(f"INSERT INTO t VALUES ({db.param})", (1,))
        assert other.execute("SELECT count(*) FROM t").fetchone() == (1,)
        # Inside atomic() nothing is seen until commit, and an exception rolls back.
        seen_inside: list[tuple] = []

        def fail_half_way() -> None:
            with db.atomic():
                db.execute_sql("INSERT INTO t VALUES (2)")
                seen_inside.append(other.execute("SELECT count(*) FROM t").fetchone())
                raise RuntimeError

        with pytest.raises(RuntimeError):
            fail_half_way()
        assert seen_inside == [(1,)]
        assert other.execute("SELECT count(*) FROM t").fetchone() == (1,)
        with db.atomic():
            db.execute_sql("INSERT INTO t VALUES (3)")
        assert other.execute("SELECT count(*) FROM t").fetchone() == (2,)
        # Peewee always binds parameters, so psycopg reads every '%' as a placeholder.
        assert db.execute_sql("SELECT 'a%%'").fetchone() == ("a%",)
    finally:
        other.close()
        db.close()


def test_a_url_without_a_server_side_database_is_a_store_error(postgres_url: str) -> None:
    missing = postgres_url.rsplit("/", 1)[0] + "/syncd_no_such_database"
    with pytest.raises(StoreError, match="syncd_no_such_database"):
        backend.open_postgres(missing)
