"""Fixtures of the end-to-end suite (helpers live in :mod:`.harness` and
:mod:`tests.support`). Every test here runs syncd and the emulator as processes: marked e2e
(tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.emulator import EmulatorProcess

from .harness import OnceProcess


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
