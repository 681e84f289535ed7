"""Shared fixtures of the daemon tests."""

from __future__ import annotations

import pytest
import structlog


@pytest.fixture(autouse=True)
def logs():
    """Capture structlog events as dicts (and skip rendering tracebacks to the terminal)."""
    with structlog.testing.capture_logs() as captured:
        yield captured
