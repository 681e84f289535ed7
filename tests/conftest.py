"""Suite-wide: the ``e2e`` marker by path (see :mod:`tests.support.tiers`), and in-process
tests kept from starting Python processes."""

from __future__ import annotations

import pytest

from tests.support.tiers import mark_end_to_end, refuse_processes


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_end_to_end(items)


@pytest.fixture(autouse=True)
def _in_process_unless_e2e(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """An in-process test that starts syncd or the emulator fails, naming itself."""
    if request.node.get_closest_marker("e2e") is None:
        refuse_processes(monkeypatch, request.node.nodeid)
