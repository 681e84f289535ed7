"""The two tiers of the suite: end-to-end tests (marker ``e2e``) start syncd, its daemon or
the emulator as a process (``python -m syncd...``), or a browser; every other test runs
in-process and is what ``make test-fast`` runs (``pytest -m "not e2e"``).

Whole directories and files are end-to-end by their path (:data:`END_TO_END_PATHS`); a few
single tests elsewhere by their id (:data:`END_TO_END_TESTS`). :func:`refuse_processes`
keeps a test outside them from starting syncd unmarked.
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

#: Single end-to-end tests in files whose other tests run in-process (ids relative to tests/,
#: without parameters).
END_TO_END_TESTS = frozenset(
    {
        "test_docs.py::test_the_readme_outputs_are_what_make_demo_prints",
        "test_render.py::test_report_by_client_names_the_workspace_when_a_name_repeats",
        "test_render.py::test_report_without_repeated_names_has_no_workspace_column",
        "test_render.py::test_weeks_are_labelled_within_the_range_with_two_decimals",
        "test_render.py::test_status_piped_is_plain_text_in_human_units",
        "daemon/test_status_page.py::test_status_html_writes_the_page_for_cron",
        "daemon/test_status_page.py::test_status_html_into_a_missing_directory_names_the_problem",
        "daemon/test_status_page.py::test_status_html_without_a_mirror_creates_none",
        "daemon/test_receiver_limits.py::test_a_full_file_table_is_logged_once_not_once_a_second",
        "emulator/test_emulator_readings.py::test_command_line_switches_reach_the_running_emulator",
        "emulator/test_emulator_readings.py::test_command_line_refuses_bad_values_by_name",
    }
)


def is_end_to_end(path: Path, name: str) -> bool:
    """Returns whether the test ``name`` (without parameters) of the file ``path`` is
    end-to-end by :data:`END_TO_END_PATHS` or :data:`END_TO_END_TESTS`."""
    try:
        relative = path.resolve().relative_to(TESTS)
    except ValueError:
        return False
    prefixes = {"/".join(relative.parts[: i + 1]) for i in range(len(relative.parts))}
    return bool(prefixes & END_TO_END_PATHS) or f"{relative.as_posix()}::{name}" in (
        END_TO_END_TESTS
    )


def mark_end_to_end(items: list[pytest.Item]) -> None:
    """Adds the ``e2e`` marker to every item :func:`is_end_to_end` names."""
    for item in items:
        name = getattr(item, "originalname", None) or item.name.split("[")[0]
        if is_end_to_end(item.path, name):
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
                    "syncd is end-to-end: list it in tests/support/tiers.py or mark it "
                    "@pytest.mark.e2e"
                )
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Guarded)
