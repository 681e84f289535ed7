"""Processes that create the same new mirror at the same moment (two cron runs) all open it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

OPEN_AT = textwrap.dedent(
    """
    import sys, time
    from syncd.store import Store
    path, start = sys.argv[1], float(sys.argv[2])
    while time.time() < start:
        pass
    Store(path).close()
    print("opened")
    """
)


@pytest.mark.e2e  # starts Python processes
def test_processes_creating_one_mirror_together_all_open_it(tmp_path) -> None:
    """Switching a new file to WAL answers "locked" at once instead of waiting; without the
    retry, most of these rounds failed one of the two processes."""
    for round_no in range(4):
        path = tmp_path / f"mirror-{round_no}.sqlite"
        start = time.time() + 1.5  # after both interpreters have imported syncd
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", OPEN_AT, str(path), str(start)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            assert out.strip().splitlines()[-1] == "opened"
