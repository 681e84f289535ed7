"""Checkpoints in the background: the database file catches up with the WAL by itself."""

from __future__ import annotations

import os
import time
from pathlib import Path

from syncd.store import Store

from .factory import day, entry, window


def _wait_for(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _fill(store: Store, windows: int) -> None:
    for w in range(windows):
        entries = [entry(f"e-{w}-{i}", day=day(w), description="x" * 500) for i in range(300)]
        store.apply_window(window(entries, day(w), day(w)))


def test_commits_reach_the_database_file_without_the_writer_checkpointing(
    db_path: Path,
) -> None:
    """A few megabytes of commits, far below the writer's own checkpoint threshold, are
    copied from the WAL into the database file by the background thread."""
    with Store(db_path, checkpoint_in_background=True) as store:
        before = os.path.getsize(db_path)
        _fill(store, 6)
        assert _wait_for(lambda: os.path.getsize(db_path) > before + 1_000_000)
    assert not Path(f"{db_path}-wal").exists()  # closing checkpoints the rest


def test_without_the_thread_the_writer_keeps_the_commits_in_the_wal(db_path: Path) -> None:
    """The comparison that makes the test above mean something."""
    with Store(db_path) as store:
        before = os.path.getsize(db_path)
        _fill(store, 6)
        time.sleep(1.0)
        assert os.path.getsize(db_path) < before + 1_000_000
