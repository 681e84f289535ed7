"""How many examples a property test runs: all of them in ``make test`` (and CI), a quarter in
``make test-fast``, which sets ``SYNCD_FAST_TESTS=1`` to stay quick while iterating. Every
property still runs in the fast tier; only the number of generated examples shrinks."""

from __future__ import annotations

import os

FAST = os.environ.get("SYNCD_FAST_TESTS") == "1"


def examples(full: int) -> int:
    """``full`` in the full suite; a quarter of it (at least 3) in the fast tier."""
    return max(3, full // 4) if FAST else full
