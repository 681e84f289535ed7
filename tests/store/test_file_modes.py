"""A new mirror and its -wal/-shm files are 0640 whatever the umask; an existing one keeps
the mode its operator gave it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from syncd.store import Store


def modes(path: Path) -> dict[str, str]:
    return {
        p.name: oct(stat.S_IMODE(p.stat().st_mode))
        for p in sorted(path.parent.iterdir())
        if p.name.startswith(path.name)
    }


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_a_fresh_mirror_and_its_side_files_are_0640(tmp_path, umask):
    path = tmp_path / "mirror.sqlite"
    previous = os.umask(umask)
    try:
        store = Store(path, checkpoint_in_background=True)
        try:
            store.set_setting("probe", "1")  # the writer's -wal and -shm exist now
            assert modes(path) == {
                "mirror.sqlite": "0o640",
                "mirror.sqlite-shm": "0o640",
                "mirror.sqlite-wal": "0o640",
            }
        finally:
            store.close()
    finally:
        os.umask(previous)


def test_an_existing_mirror_keeps_its_mode(tmp_path):
    path = tmp_path / "mirror.sqlite"
    Store(path).close()
    path.chmod(0o600)
    store = Store(path)
    try:
        store.set_setting("probe", "1")
        assert set(modes(path).values()) == {"0o600"}
    finally:
        store.close()
