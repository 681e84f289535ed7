"""Fixtures of the sync engine tests: the injected clock, the fake upstream, the real store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog

from syncd.store import AsyncStore

from .fakes import Clock, FakeUpstream


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def upstream(clock: Clock) -> FakeUpstream:
    return FakeUpstream(clock)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "m.sqlite"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[AsyncStore]:
    async with await AsyncStore.open(db_path) as opened:
        yield opened


@pytest.fixture(autouse=True)
def quiet_logs() -> Iterator[list[dict]]:
    """Capture structlog events instead of printing one line per window."""
    with structlog.testing.capture_logs() as captured:
        yield captured
