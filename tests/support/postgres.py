"""A fresh PostgreSQL database per test: the ``postgres_url`` fixture.

The server is the one at 127.0.0.1:5432 (user ``postgres``, database ``test``), or the admin
URL in ``SYNCD_TEST_POSTGRES_URL``. Each test gets a database ``syncd_test_<random>`` of its
own, dropped ``WITH (FORCE)`` afterwards. When the server cannot be reached the test is
skipped with one line saying why, except under ``CI=true``, where it fails: CI always has
the server, so a skip there would hide a broken run.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
ADMIN_URL_VARIABLE = "SYNCD_TEST_POSTGRES_URL"


def admin_url() -> str:
    """The URL of a database on the test server that may create and drop databases."""
    return os.environ.get(ADMIN_URL_VARIABLE) or DEFAULT_ADMIN_URL


def server_of(url: str) -> str:
    """``host:port`` of ``url``, for messages (never the password)."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"


def url_of_database(url: str, name: str) -> str:
    """``url`` naming the database ``name`` instead of its own (query options kept)."""
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def _admin_connection(url: str) -> psycopg.Connection:
    """An autocommit connection to the admin database; skips (or fails under CI) when the
    server is unreachable."""
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split())
        message = f"PostgreSQL at {server_of(url)} unreachable: {reason}; PostgreSQL tests skipped"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a new, empty database, dropped when the test ends."""
    admin = admin_url()
    name = f"syncd_test_{secrets.token_hex(6)}"
    with _admin_connection(admin) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield url_of_database(admin, name)
    finally:
        with _admin_connection(admin) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
