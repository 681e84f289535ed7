from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.store import Store
from tests.support.postgres import postgres_url  # noqa: F401 (a fixture, found by name)

from .backends import create_database, drop_database, empty_database


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "mirror.sqlite"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store(db_path) as s:
        yield s


@pytest.fixture(scope="session")
def shared_postgres_url() -> Iterator[str]:
    """A migrated PostgreSQL database for the whole session, dropped at its end."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def mirror_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a mirror lives: a new SQLite file, or an emptied PostgreSQL database (skipped,
    with one line saying why, when the server cannot be reached outside CI)."""
    if request.param == "sqlite":
        return str(tmp_path / "mirror.sqlite")
    url = request.getfixturevalue("shared_postgres_url")
    empty_database(url)
    return url


@pytest.fixture
def mirror(mirror_location: str) -> Iterator[Store]:
    """A store on ``mirror_location``, on either backend."""
    with Store(mirror_location) as s:
        yield s
