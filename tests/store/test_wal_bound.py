"""The WAL file shrinks back after a large write, so a backfill's WAL does not stay on disk."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from syncd.store import Store
from syncd.store.mirror import WAL_SIZE_LIMIT

from .factory import entry, window


def test_the_wal_is_cut_back_once_checkpointed_and_written_again(db_path: Path) -> None:
    wal = db_path.with_name(db_path.name + "-wal")
    with Store(db_path) as store:
        big = [entry(f"e{i}", description="invoice " * 300) for i in range(5000)]
        store.apply_window(window(big, "2024-03-01", "2024-03-31"))
        assert wal.stat().st_size > WAL_SIZE_LIMIT  # a backfill-sized write
        with sqlite3.connect(db_path) as reader:  # what the background checkpoint does
            reader.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        store.apply_window(window([entry("late")], "2024-04-01", "2024-04-30"))
        assert wal.stat().st_size <= WAL_SIZE_LIMIT
