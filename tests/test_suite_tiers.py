"""The suite's two tiers: which tests are end-to-end, and in-process tests kept in-process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.tiers import (
    END_TO_END_PATHS,
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


def test_directories_and_files_are_end_to_end_by_path():
    assert is_end_to_end(TESTS / "e2e" / "test_once.py")
    assert is_end_to_end(TESTS / "daemon_e2e" / "test_push.py")
    assert is_end_to_end(TESTS / "test_cli_operator.py")
    assert is_end_to_end(TESTS / "sync" / "test_full_resume.py")
    # A file of in-process tests: its single end-to-end tests carry the marker themselves.
    assert not is_end_to_end(TESTS / "daemon" / "test_status_page.py")
    assert not is_end_to_end(TESTS / "daemon" / "test_plan.py")
    assert not is_end_to_end(TESTS / "test_e2e_lookalike.py")
    assert not is_end_to_end(TESTS.parent / "bench" / "e2e" / "test_once.py")


def test_every_listed_path_exists():
    for path in END_TO_END_PATHS:
        assert (TESTS / path).exists(), path


@pytest.mark.e2e  # starts Python processes
def test_a_marked_test_in_an_in_process_file_is_left_out_of_the_fast_tier():
    """``make test-fast`` (``-m "not e2e"``) leaves out exactly the marked tests of a file
    whose other tests run in-process."""
    page = "tests/daemon/test_status_page.py"
    collect = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(
        [*collect, "-m", "e2e", page], cwd=TESTS.parent, capture_output=True, text=True
    )
    marked = {line.split("::")[-1] for line in done.stdout.splitlines() if "::" in line}
    assert marked == {
        "test_status_html_writes_the_page_for_cron",
        "test_status_html_into_a_missing_directory_names_the_problem",
        "test_status_html_without_a_mirror_creates_none",
    }, done.stdout + done.stderr
    done = subprocess.run(
        [*collect, "-m", "not e2e", page], cwd=TESTS.parent, capture_output=True, text=True
    )
    fast = {line.split("::")[-1] for line in done.stdout.splitlines() if "::" in line}
    assert fast, done.stdout + done.stderr
    assert not fast & marked
