"""The two tiers of the suite: end-to-end tests (marker ``e2e``) start syncd, its daemon or
the emulator as a process (``python -m syncd...``), or a browser; every other test runs
in-process and is what ``make test-fast`` runs (``pytest -m "not e2e"``).

Whole directories and files are end-to-end by their path (:data:`END_TO_END_PATHS`); a single
end-to-end test in a file of in-process tests carries ``@pytest.mark.e2e`` itself.
:func:`refuse_processes` keeps any other test from starting syncd.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parents[1]

#: Directories and files (relative to tests/) every test of which is end-to-end.
END_TO_END_PATHS = frozenset(
    {
        "e2e",
        "daemon_e2e",
        "browser",
        "test_cli_operator.py",
        "test_failing_storage.py",
        "emulator/test_emulator_command.py",
        "sync/test_full_resume.py",
    }
)


def is_end_to_end(path: Path) -> bool:
    """Returns whether every test of the file ``path`` is end-to-end by
    :data:`END_TO_END_PATHS` (the file or a directory above it is listed)."""
    try:
        relative = path.resolve().relative_to(TESTS)
    except ValueError:
        return False
    prefixes = {"/".join(relative.parts[: i + 1]) for i in range(len(relative.parts))}
    return bool(prefixes & END_TO_END_PATHS)


def mark_end_to_end(items: list[pytest.Item]) -> None:
    """Adds the ``e2e`` marker to every item in a file :func:`is_end_to_end` names."""
    for item in items:
        if is_end_to_end(item.path):
            item.add_marker(pytest.mark.e2e)


class InProcessOnly(RuntimeError):
    """A test not marked e2e started syncd, its daemon or the emulator."""


def starts_syncd(args: Any) -> bool:
    """Returns whether the command line ``args`` runs ``python -m syncd...`` (the CLI, the
    daemon, the emulator, the demo)."""
    if not isinstance(args, list | tuple) or not args or str(args[0]) != sys.executable:
        return False
    words = [str(a) for a in args]
    return any(
        word == "-m" and module.split(".")[0] == "syncd"
        for word, module in itertools.pairwise(words)
    )


def refuse_processes(monkeypatch: pytest.MonkeyPatch, nodeid: str) -> None:
    """Makes ``subprocess.Popen`` (and so ``run``) raise InProcessOnly for a command line
    :func:`starts_syncd` names, for the rest of the test ``nodeid``; other programs (helper
    scripts included) still start."""
    original = subprocess.Popen

    class Guarded(original):  # type: ignore[misc, valid-type]
        def __init__(self, args: Any, *rest: Any, **kwargs: Any) -> None:
            if starts_syncd(args):
                raise InProcessOnly(
                    f"{nodeid} starts {' '.join(map(str, args))[:200]}; a test that starts "
                    "syncd is end-to-end: mark it @pytest.mark.e2e (or list its file in "
                    "tests/support/tiers.py)"
                )
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Guarded)
