"""The suite's two tiers: which tests are end-to-end, and in-process tests kept in-process."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support.tiers import (
    END_TO_END_PATHS,
    END_TO_END_TESTS,
    TESTS,
    InProcessOnly,
    is_end_to_end,
    starts_syncd,
)


def test_an_in_process_test_cannot_start_syncd(request):
    assert request.node.get_closest_marker("e2e") is None
    with pytest.raises(InProcessOnly, match="test_an_in_process_test_cannot_start_syncd"):
        subprocess.run([sys.executable, "-m", "syncd", "--help"], check=False)
    with pytest.raises(InProcessOnly):
        subprocess.Popen((sys.executable, "-m", "syncd.emulator", "--port", "0"))


def test_an_in_process_test_may_start_other_programs():
    assert subprocess.run(["true"], check=False).returncode == 0
    helper = subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True, text=True)
    assert helper.stdout == "1\n"


def test_what_counts_as_starting_syncd():
    assert starts_syncd([sys.executable, "-m", "syncd", "-c", "f.toml", "--once"])
    assert starts_syncd([sys.executable, "-X", "dev", "-m", "syncd.demo"])
    assert not starts_syncd([sys.executable, "-c", "import syncd"])
    assert not starts_syncd(["systemd-analyze", "verify", "-m", "syncd"])
    assert not starts_syncd(f"{sys.executable} -m syncd")  # a shell string is not run here


@pytest.mark.e2e
def test_an_end_to_end_test_starts_syncd():
    done = subprocess.run([sys.executable, "-m", "syncd", "--help"], capture_output=True)
    assert done.returncode == 0


def test_directories_files_and_single_tests_are_end_to_end_by_path():
    assert is_end_to_end(TESTS / "e2e" / "test_once.py", "test_anything")
    assert is_end_to_end(TESTS / "daemon_e2e" / "test_push.py", "test_anything")
    assert is_end_to_end(TESTS / "test_cli_operator.py", "test_anything")
    assert is_end_to_end(
        TESTS / "daemon" / "test_status_page.py", "test_status_html_writes_the_page_for_cron"
    )
    assert not is_end_to_end(TESTS / "daemon" / "test_status_page.py", "test_other")
    assert not is_end_to_end(TESTS / "daemon" / "test_plan.py", "test_anything")
    assert not is_end_to_end(TESTS / "test_e2e_lookalike.py", "test_anything")


def test_every_listed_path_and_test_exists():
    for path in END_TO_END_PATHS:
        assert (TESTS / path).exists(), path
    for test in END_TO_END_TESTS:
        path, name = test.split("::")
        source = (TESTS / path).read_text(encoding="utf-8")
        assert re.search(rf"^(async )?def {name}\(", source, re.M), test
