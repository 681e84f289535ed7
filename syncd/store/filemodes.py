"""File modes of the mirror: created 0640, whatever the process's umask.

The owner (syncd) reads and writes; a readers group (``Group=`` of the unit, see
``docs/operations.md``) may read; nobody else may. SQLite creates the ``-wal`` and ``-shm``
files with the mode of the database file, so creating the database file ahead with this mode
covers all three. An existing mirror keeps the mode it has (the operator may have chosen it).
"""

from __future__ import annotations

import os
from pathlib import Path

MIRROR_MODE = 0o640


def create_mirror_file(path: str | Path) -> bool:
    """Create an empty mirror file with mode 0640 unless ``path`` exists; True if created.

    SQLite takes an empty file for a new database. Any failure (no such directory, no
    permission) is left for SQLite to report when it opens the path; this never raises.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, MIRROR_MODE)
    except OSError:  # it exists, or SQLite will name the problem when it opens the path
        return False
    try:
        os.fchmod(fd, MIRROR_MODE)  # the umask may have taken the group's read bit
    finally:
        os.close(fd)
    return True
