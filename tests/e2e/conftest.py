"""Fixtures of the end-to-end suite (helpers live in :mod:`.harness` and
:mod:`tests.support`). Every test here runs syncd and the emulator as processes: marked e2e
(tests/conftest.py).

A test runs on a SQLite mirror unless it is parametrized over ``backend``
(``@pytest.mark.parametrize("backend", BACKENDS)``, :data:`tests.support.mirror.BACKENDS`);
``database`` is then the mirror to write in its config: ``mirror.sqlite`` beside the config,
or a new PostgreSQL database of its own (``postgres_url``: skipped with one line when the
server is unreachable, outside CI)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.emulator import EmulatorProcess
from tests.support.postgres import postgres_url  # noqa: F401 (a fixture, found by name)

from .harness import OnceProcess


@pytest.fixture
def backend() -> str:
    """The mirror's backend: SQLite, unless the test is parametrized over ``backend``."""
    return "sqlite"


@pytest.fixture
def database(backend: str, request: pytest.FixtureRequest) -> str:
    """The mirror a test's config names (``database=`` of :func:`.harness.write_config`):
    ``mirror.sqlite`` (beside the config) on SQLite, a fresh database's URL on PostgreSQL."""
    if backend == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    assert backend == "sqlite", backend
    return "mirror.sqlite"


@pytest.fixture
def start_emulator(tmp_path: Path) -> Iterator[Any]:
    """``start_emulator(*args)`` → a running :class:`EmulatorProcess`, stopped after the
    test."""
    started: list[EmulatorProcess] = []

    def start(*args: str, api_key: str = "k") -> EmulatorProcess:
        emulator = EmulatorProcess.start(
            *args, api_keys=(api_key,), log=tmp_path / f"emulator-{len(started)}.log"
        )
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        assert emulator.stop() == 0, emulator.log.read_text()


@pytest.fixture
def once_processes() -> Iterator[list[OnceProcess]]:
    """Background runs registered here are killed if a test leaves them running."""
    processes: list[OnceProcess] = []
    yield processes
    for p in processes:
        if p.process.poll() is None:
            p.process.kill()
            p.process.communicate()
