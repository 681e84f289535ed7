"""The ``postgres_url`` fixture: a skip with one clear line when the server is unreachable,
a failure under CI, and the admin URL from the environment."""

from __future__ import annotations

import psycopg
import pytest

from tests.support import postgres

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/test"


def test_an_unreachable_server_skips_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(postgres.ADMIN_URL_VARIABLE, UNREACHABLE)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as caught:
        postgres._admin_connection(postgres.admin_url())
    message = str(caught.value.msg)
    assert message.startswith("PostgreSQL at 127.0.0.1:1 unreachable: ")
    assert message.endswith("; PostgreSQL tests skipped")
    assert "\n" not in message


def test_an_unreachable_server_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(postgres.ADMIN_URL_VARIABLE, UNREACHABLE)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"PostgreSQL at 127\.0\.0\.1:1 unreachable"):
        postgres._admin_connection(postgres.admin_url())


def test_the_url_names_a_fresh_database_on_the_admin_server(postgres_url: str) -> None:
    assert postgres_url.rsplit("/", 1)[1].startswith("syncd_test_")
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone() == (0,)


def test_the_admin_url_defaults_to_the_local_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(postgres.ADMIN_URL_VARIABLE, raising=False)
    assert postgres.admin_url() == "postgresql://postgres@127.0.0.1:5432/test"
    assert postgres.url_of_database("postgresql://u@h:5/a?sslmode=disable", "b") == (
        "postgresql://u@h:5/b?sslmode=disable"
    )
