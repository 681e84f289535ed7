"""A bundled emulator in a process of its own, for the command-line tests at this level."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def emulator_process(*switches: str) -> Iterator[dict]:
    """``syncd emulator`` on a free port with API key ``k`` and ``switches``; yields its ready
    line (``url``, ``api_url``, ``app_url``, ...) and stops it afterwards."""
    process = subprocess.Popen(
        [sys.executable, "-m", "syncd", "emulator", "--port", "0", "--api-key", "k", *switches],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        assert ready["event"] == "emulator_ready"
        yield ready
    finally:
        process.terminate()
        process.wait(timeout=10)
