"""PostgreSQL tests: each gets a fresh database from ``postgres_url``."""

from tests.support.postgres import postgres_url  # noqa: F401 (a fixture, found by name)
