"""Fixtures of the end-to-end suite (helpers live in :mod:`.harness`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import Emulator, OnceProcess


@pytest.fixture
def start_emulator(tmp_path: Path) -> Iterator[Any]:
    """``start_emulator(*args)`` → a running :class:`Emulator`, stopped after the test."""
    started: list[Emulator] = []

    def start(*args: str, api_key: str = "k") -> Emulator:
        emulator = Emulator.start(
            *args, log=tmp_path / f"emulator-{len(started)}.log", api_key=api_key
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
