"""The read-only role that docs/operations.md ("Readers on PostgreSQL") sets up reads every
view and table, also ones created later, and can write nothing."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import errors

from syncd.errors import UsageError
from syncd.store import Store
from syncd.store.readonly import run_readonly_query

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
PASSWORD = "change-me"


def documented_statements() -> str:
    """The ```postgresql block of the section "Readers on PostgreSQL"."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("### Readers on PostgreSQL\n", 1)[1].split("\n#", 1)[0]
    (block,) = re.findall(r"```postgresql\n(.*?)```", section, re.DOTALL)
    return block


def test_the_documented_reader_role_reads_and_cannot_write(postgres_url: str) -> None:
    Store(postgres_url).close()
    parts = urlsplit(postgres_url)
    database = parts.path.lstrip("/")
    role = f"syncd_reader_{secrets.token_hex(4)}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        (owner,) = admin.execute("SELECT current_user").fetchone()
        statements = (
            documented_statements()
            .replace("syncd_reader", role)
            .replace("DATABASE syncd ", f'DATABASE "{database}" ')
            .replace("FOR ROLE syncd ", f'FOR ROLE "{owner}" ')
        )
        assert PASSWORD in statements
        admin.execute("INSERT INTO workspaces (id, name) VALUES ('w1', 'Main')")
        try:
            admin.execute(statements)
            admin.execute("CREATE TABLE added_later (x INTEGER)")  # as syncd would, later
            reader_url = parts._replace(
                netloc=f"{role}:{PASSWORD}@{parts.hostname}:{parts.port or 5432}"
            ).geturl()
            check_reader(reader_url)
        finally:
            admin.execute(f'DROP OWNED BY "{role}"')
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def check_reader(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as reader:
        for view in ("live_time_entries", "hours_per_day_per_member", "running_timers"):
            reader.execute(f"SELECT * FROM {view}").fetchall()
        assert reader.execute("SELECT id, name FROM workspaces").fetchall() == [("w1", "Main")]
        assert reader.execute("SELECT count(*) FROM added_later").fetchone() == (0,)
        assert reader.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        assert reader.execute("SHOW statement_timeout").fetchone() == ("1min",)
        with pytest.raises(errors.ReadOnlySqlTransaction):
            reader.execute("INSERT INTO workspaces (id) VALUES ('w2')")
        reader.execute("SET default_transaction_read_only = off")
        for write in (
            "INSERT INTO workspaces (id) VALUES ('w2')",
            "UPDATE time_entries SET description = 'x'",
            "DELETE FROM budget_grants",
            "DROP TABLE time_entries",
            "TRUNCATE installation",
        ):
            with pytest.raises(errors.InsufficientPrivilege):
                reader.execute(write)
        with pytest.raises(errors.InsufficientPrivilege):
            reader.execute("CREATE TABLE mine (x INTEGER)")
    # syncd sql works with the reader's URL as its database.url.
    assert run_readonly_query(url, "SELECT count(*) FROM live_time_entries")[1] == [(0,)]
    with pytest.raises(UsageError):
        run_readonly_query(url, "DELETE FROM workspaces")
