"""WAL checkpoints on a thread of their own, so the writer never waits for one.

SQLite runs a checkpoint inside the commit that takes the WAL past ``wal_autocheckpoint``
pages: that commit copies the log into the database file and syncs it, and the thread that
committed waits (about 100 ms in a backfill, one window in seven). ``Checkpointer`` does the
copying on its own thread and connection shortly after commits, in PASSIVE mode, which never
blocks the writer or readers. The writer's autocheckpoint stays on as a backstop, and finds
little left to copy.
"""

from __future__ import annotations

import sqlite3
import threading

import structlog

log = structlog.get_logger("syncd.store")

#: Least time between two checkpoints while commits keep coming.
CHECKPOINT_EVERY = 0.5


class Checkpointer:
    """A thread checkpointing the WAL of the database at ``path`` after commits.

    Call :meth:`committed` after each write transaction and :meth:`close` before the
    writer's connection closes (which then checkpoints what is left and removes the WAL).
    """

    def __init__(self, path: str, *, every: float = CHECKPOINT_EVERY, timeout: float = 30.0):
        self._path = path
        self._every = every
        self._timeout = timeout
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="syncd-checkpoint", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """Note that a transaction was committed (a checkpoint follows soon)."""
        self._wake.set()

    def close(self) -> None:
        """Stop the thread and close its connection (idempotent)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, timeout=self._timeout)
        try:
            while True:
                self._wake.wait()
                if self._stop.is_set():
                    return
                self._wake.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the writer's own checkpoints still run
                    log.warning("checkpoint_failed", path=self._path, error=str(exc))
                if self._stop.wait(self._every):
                    return
        finally:
            conn.close()
