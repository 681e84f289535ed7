"""Failing storage made loud: integrity checks, errors named by their cause, rebuilds.

* SQLite failures are named by their cause in :mod:`syncd.store.failures`.
* :func:`quick_check` runs ``PRAGMA quick_check`` on a connection of its own (a WAL reader:
  it never blocks the writer). The daemon checks at start and then whenever the last passed
  check is more than :data:`CHECK_EVERY` old (:func:`check_if_due`, from its hourly
  housekeeping); ``--once`` checks before every run, so a run never reports success on a
  mirror whose damage ``syncd status`` would show (the check reads every page once: about
  a second on a mirror of a million entries). A passed check is recorded in the mirror's
  ``installation`` table (:data:`CHECKED_AT_SETTING`).
* :func:`rebuild` moves a damaged mirror and its ``-wal``/``-shm`` files aside under a
  timestamped name and creates a new, empty mirror in its place.

On PostgreSQL there is no file to read page by page and ``quick_check`` has no equivalent:
the check there (:func:`verify_postgres`) is that the server answers and that the schema
ledger is complete and not newer than this syncd. ``rebuild`` is for SQLite only.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from syncd.database_url import is_postgres_url, redact
from syncd.errors import (
    CorruptDatabase,
    NoDatabase,
    SchemaTooNew,
    StoreError,
    UsageError,
)
from syncd.records import format_timestamp
from syncd.store import pg_schema
from syncd.store.failures import storage_error

if TYPE_CHECKING:
    from syncd.store.asyncstore import AsyncStore
    from syncd.store.mirror import Store

log = structlog.get_logger("syncd.store")

#: How old the last passed check may be before the daemon's housekeeping runs another.
CHECK_EVERY = timedelta(days=1)
#: The ``installation`` key holding when the mirror last passed ``PRAGMA quick_check``.
CHECKED_AT_SETTING = "integrity_checked_at"
#: At most this many problems are listed by a failed check.
MAX_PROBLEMS = 10
#: The files SQLite keeps beside the database (WAL, shared memory index, rollback journal).
SIDE_SUFFIXES = ("-wal", "-shm", "-journal")
#: Every connection to a WAL database holds a shared lock on this byte of the ``-shm`` file
#: while it is open (SQLite's "DMS" lock; see the WAL-index format in SQLite's docs).
_SHM_DMS_BYTE = 128

# ---------------------------------------------------------------------------- checks


def quick_check(path: str | Path, *, timeout: float = 30.0) -> list[str]:
    """Run ``PRAGMA quick_check`` on the database at ``path``; the problems found ([] when
    the check passes), at most :data:`MAX_PROBLEMS` of them.

    A file too damaged for the check to run (not a database, a damaged schema) counts as a
    problem. Raises ``NoDatabase`` when there is no file, ``StoreError`` (``DiskFull``,
    ``StorageIOError``, ...) when the check cannot be run for another reason.
    """
    path = Path(path)
    if not path.is_file():
        raise NoDatabase(str(path))
    try:
        conn = sqlite3.connect(path, timeout=timeout)
    except sqlite3.Error as exc:
        raise storage_error(exc, f"mirror database {path}", path) from exc
    try:
        rows = conn.execute(f"PRAGMA quick_check({MAX_PROBLEMS})").fetchall()
    except sqlite3.DatabaseError as exc:
        error = storage_error(exc, f"mirror database {path}", path)
        if isinstance(error, CorruptDatabase):
            return [str(exc)]
        raise error from exc
    finally:
        conn.close()
    problems = [str(row[0]) for row in rows]
    return [] if problems == ["ok"] else problems


def verify(path: str | Path) -> None:
    """Run :func:`quick_check` and raise ``CorruptDatabase`` listing what it found."""
    started = time.perf_counter()
    problems = quick_check(path)
    seconds = round(time.perf_counter() - started, 3)
    if problems:
        log.error("integrity_check_failed", path=str(path), problems=problems, seconds=seconds)
        raise CorruptDatabase(f"mirror database {path}", "quick_check: " + "; ".join(problems))
    log.info("integrity_checked", path=str(path), seconds=seconds)


def verify_postgres(store: Store) -> None:
    """Check a PostgreSQL mirror: the server answers, and its schema ledger holds every step
    this syncd knows and none it does not.

    Raises ``SchemaTooNew`` (a newer syncd migrated it) or ``StoreError`` (no answer, or
    steps missing from the ledger).
    """
    started = time.perf_counter()
    missing = store.missing_migrations()  # asks the server; raises StoreError without one
    unknown = sorted(set(store.applied_migrations()) - set(pg_schema.known_names()))
    if unknown:
        raise SchemaTooNew(unknown)
    if missing:
        log.error("integrity_check_failed", path=store.path, missing=missing)
        raise StoreError(
            f"mirror database {store.path}: the schema ledger lacks {', '.join(missing)}; "
            "run syncd once with write access to migrate it"
        )
    log.info("integrity_checked", path=store.path, seconds=round(time.perf_counter() - started, 3))


async def check(store: AsyncStore, *, now: datetime) -> None:
    """Check the mirror behind ``store`` now and record when it passed: ``quick_check`` off
    the DB thread on SQLite, :func:`verify_postgres` on PostgreSQL.

    Raises ``CorruptDatabase`` (nothing is recorded then) or another ``StoreError``.
    """
    if store.store.is_postgres:
        await store.call(verify_postgres, store.store)
    else:
        await asyncio.to_thread(verify, store.store.path)
    await store.set_setting(CHECKED_AT_SETTING, format_timestamp(now))


async def check_if_due(store: AsyncStore, *, now: datetime, every: timedelta = CHECK_EVERY) -> bool:
    """Run :func:`check` when the mirror's last passed check is older than ``every`` (or
    was never run, or is dated after ``now``); whether it ran.

    Raises ``CorruptDatabase`` or another ``StoreError``.
    """
    last = await store.get_setting(CHECKED_AT_SETTING)
    if last is not None:
        try:
            checked_at = datetime.fromisoformat(last.replace("Z", "+00:00"))
        except ValueError:
            checked_at = None
        if checked_at is not None and now - every < checked_at <= now:
            return False
    await check(store, now=now)
    return True


# ---------------------------------------------------------------------------- rebuild


def side_files(path: str | Path) -> list[Path]:
    """The database at ``path`` and those of its side files that exist."""
    base = Path(path)
    return [p for p in (base, *(Path(f"{base}{s}") for s in SIDE_SUFFIXES)) if p.exists()]


def ensure_not_open(path: str | Path) -> None:
    """Raise ``UsageError`` when another process has the WAL database at ``path`` open
    (the daemon, a ``--once`` run, or a reader such as Datasette)."""
    shm = Path(f"{path}-shm")
    try:
        fd = os.open(shm, os.O_RDWR)
    except FileNotFoundError:
        return  # no WAL index: no connection is open
    except OSError as exc:
        raise StoreError(f"cannot tell whether {path} is in use: {exc}") from exc
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _SHM_DMS_BYTE, os.SEEK_SET)
    except OSError as exc:
        raise UsageError(
            f"the mirror {path} is open in another process (the daemon, a --once run or a "
            "reader): stop it first (systemctl stop syncd syncd-once.timer)"
        ) from exc
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, _SHM_DMS_BYTE, os.SEEK_SET)
    finally:
        os.close(fd)


def move_aside(path: str | Path, now: datetime) -> list[Path]:
    """Rename the database at ``path`` and its side files to
    ``<name>.damaged-<UTC timestamp>`` (``-wal``/``-shm`` keep their suffix, so the set still
    opens for salvage); the new names, database first.

    The side files go first: a ``-wal`` left beside a new database would be read into it.
    Raises ``NoDatabase`` when there is no file at ``path``.
    """
    base = Path(path)
    if not base.is_file():
        raise NoDatabase(str(base))
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    target = base.with_name(f"{base.name}.damaged-{stamp}")
    n = 1
    while side_files(target):
        n += 1
        target = base.with_name(f"{base.name}.damaged-{stamp}-{n}")
    moved: list[Path] = []
    for suffix in (*SIDE_SUFFIXES, ""):
        source = Path(f"{base}{suffix}")
        if source.exists():
            destination = Path(f"{target}{suffix}")
            os.replace(source, destination)
            moved.append(destination)
    return moved[-1:] + moved[:-1]


def rebuild(path: str | Path, *, now: datetime, force: bool = False) -> list[Path]:
    """Move the mirror at ``path`` aside and create a new, empty one there; the moved files.

    Without ``force`` a mirror that passes ``quick_check`` is left alone. Raises
    ``NoDatabase`` (no file), ``UsageError`` (a PostgreSQL URL, the file is open in another
    process, or it passed the check and ``force`` is not set), or ``StoreError`` (the new
    mirror cannot be created).
    """
    from syncd.store.mirror import Store  # mirror imports this module

    if is_postgres_url(str(path)):
        raise UsageError(
            f"syncd rebuild replaces a SQLite mirror file; {redact(str(path))} is a PostgreSQL "
            "database, which has no file to move aside: restore it from a backup, or drop and "
            "recreate the database and let syncd backfill it"
        )
    if not Path(path).is_file():
        raise NoDatabase(str(path))
    ensure_not_open(path)
    if not force:
        try:
            problems = quick_check(path)
        except CorruptDatabase as exc:
            problems = [str(exc)]
        if not problems:
            raise UsageError(
                f"the mirror {path} passed the integrity check (PRAGMA quick_check); "
                "nothing to rebuild (--force rebuilds it anyway)"
            )
    moved = move_aside(path, now)
    log.warning("mirror_moved_aside", path=str(path), moved_to=[str(p) for p in moved])
    Store(path).close()
    return moved
