"""Failing storage is loud: real ``syncd`` processes on damaged, full, failing and read-only
mirrors, a bounded ``syncd sql``, and ``syncd rebuild``.

Everything runs as real subprocesses against the bundled emulator over a real socket and on
real SQLite files. The disk fills for real: a file-size limit (``RLIMIT_FSIZE``, everywhere)
and a tiny tmpfs (where this user may mount one).
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from tests.support.emulator import emulator_process

ENV_NAMES = ("SYNCD_API_KEY", "SYNCD_CONFIG", "CREDENTIALS_DIRECTORY")
RUNAWAY = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


def syncd(*args: str, timeout: float = 120, **kwargs: object) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )


def events(stdout: str, name: str) -> list[dict]:
    return [
        e
        for e in (json.loads(line) for line in stdout.splitlines() if line.startswith("{"))
        if e.get("event") == name
    ]


@pytest.fixture(scope="module")
def emulator() -> Iterator[dict]:
    with emulator_process(
        "--seed", "3", "--workspaces", "1", "--entries", "400", "--no-rate-limit"
    ) as ready:  # fmt: skip
        yield ready


def write_config(directory: Path, emulator: dict, database: Path | str) -> Path:
    path = directory / "syncd.toml"
    path.write_text(
        f'[api]\nurl = "{emulator["api_url"]}"\napp_url = "{emulator["app_url"]}"\nkey = "k"\n'
        f'[database]\npath = "{database}"\n[logging]\nformat = "json"\n',
        encoding="utf-8",
    )
    return path


def overwrite_pages(path: Path, count: int = 4, seed: int = 1) -> None:
    """Overwrite ``count`` random pages past the first tenth of the file with random bytes."""
    page = 4096
    pages = path.stat().st_size // page
    rng = random.Random(seed)
    with path.open("r+b") as f:
        for n in rng.sample(range(pages // 10, pages - 1), count):
            f.seek(n * page)
            f.write(rng.randbytes(page))


def assert_named(result: subprocess.CompletedProcess, *phrases: str) -> None:
    """Exit 1 with one ``syncd:`` line naming the cause, and a failed run summary."""
    assert result.returncode == EXIT_FAILED, result.stdout[-2000:] + result.stderr
    # After the log (JSON lines), the one message.
    assert result.stderr.splitlines()[-1].startswith("syncd: database: "), result.stderr
    for phrase in phrases:
        assert phrase in result.stderr
    assert "cannot rollback" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- corruption


def test_a_damaged_mirror_fails_every_run_until_rebuilt(tmp_path, emulator) -> None:
    config = str(write_config(tmp_path, emulator, "mirror.sqlite"))
    mirror = tmp_path / "mirror.sqlite"
    first = syncd("-c", config, "--once")
    assert first.returncode == EXIT_OK, first.stdout[-2000:] + first.stderr
    (summary,) = events(first.stdout, "sync_finished")
    synced = summary["inserted"]
    assert synced > 0

    overwrite_pages(mirror)
    for _ in range(2):  # never "ok" while the file is damaged, however often it runs
        again = syncd("-c", config, "--once")
        assert_named(again, "is damaged", "syncd -c CONFIG rebuild")
        (summary,) = events(again.stdout, "sync_finished")
        assert summary["ok"] is False
        assert summary["error_type"] == "CorruptDatabase"
    status = syncd("-c", config, "status", "--json")
    assert_named(status, "is damaged", "rebuild")

    rebuilt = syncd("-c", config, "rebuild")
    assert rebuilt.returncode == EXIT_OK, rebuilt.stdout[-2000:] + rebuilt.stderr
    (aside,) = tmp_path.glob("mirror.sqlite.damaged-*")
    assert f"moved the mirror aside to {aside}" in rebuilt.stderr
    (summary,) = events(rebuilt.stdout, "sync_finished")
    assert (summary["ok"], summary["inserted"]) == (True, synced)

    status = syncd("-c", config, "status", "--json")
    assert status.returncode == EXIT_OK, status.stderr
    assert json.loads(status.stdout)["workspaces"][0]["live_entries"] == synced
    after = syncd("-c", config, "--once")
    assert after.returncode == EXIT_OK, after.stderr
    # healthy again: a rebuild is refused unless forced
    refused = syncd("-c", config, "rebuild", "--no-sync")
    assert refused.returncode == EXIT_USAGE
    assert "passed the integrity check" in refused.stderr
    assert list(tmp_path.glob("mirror.sqlite.damaged-*")) == [aside]


def test_the_daemon_refuses_to_start_on_a_damaged_mirror(tmp_path, emulator) -> None:
    config = str(write_config(tmp_path, emulator, "mirror.sqlite"))
    assert syncd("-c", config, "--once").returncode == EXIT_OK
    overwrite_pages(tmp_path / "mirror.sqlite", seed=2)
    daemon = syncd("-c", config, timeout=60)
    assert_named(daemon, "is damaged", "rebuild")
    assert not events(daemon.stderr, "daemon_started")  # the log is on stderr


def test_the_daemon_checks_the_mirror_when_it_starts(tmp_path, emulator) -> None:
    config = str(write_config(tmp_path, emulator, "mirror.sqlite"))
    daemon = subprocess.Popen(
        [sys.executable, "-m", "syncd", "-c", config],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in ENV_NAMES},
    )
    try:
        assert daemon.stderr is not None
        seen = []
        for line in daemon.stderr:  # the log
            seen.append(json.loads(line)["event"])
            if seen[-1] == "daemon_started":
                break
        assert "integrity_checked" in seen
        assert seen.index("integrity_checked") < seen.index("daemon_started")
        checked = sqlite3.connect(f"file:{tmp_path / 'mirror.sqlite'}?mode=ro", uri=True).execute(
            "SELECT value FROM installation WHERE key = 'integrity_checked_at'"
        )
        assert checked.fetchone() is not None
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == EXIT_OK
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


def test_rebuild_without_a_mirror_names_the_path(tmp_path, emulator) -> None:
    config = str(write_config(tmp_path, emulator, "data/mirror.sqlite"))
    result = syncd("-c", config, "rebuild", "--no-sync")
    assert result.returncode == EXIT_USAGE
    assert f"no mirror database at {tmp_path / 'data' / 'mirror.sqlite'}" in result.stderr
    assert not (tmp_path / "data").exists()


# ------------------------------------------------------------------ full, failing, read-only


def _file_size_limit(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return apply


def test_a_write_the_disk_refuses_is_named_not_misreported(tmp_path, emulator) -> None:
    """Past the file-size limit the commit fails and SQLite rolls the transaction back; the
    error names the failed write, not the "cannot rollback" of the rollback that follows."""
    config = str(write_config(tmp_path, emulator, "mirror.sqlite"))
    result = syncd("-c", config, "--once", preexec_fn=_file_size_limit(400_000))
    assert_named(result, "disk I/O error", "check the kernel log")
    (summary,) = events(result.stdout, "sync_finished")
    assert summary["error_type"] == "StorageIOError"


@pytest.fixture
def tiny_tmpfs(tmp_path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    tool = shutil.which("mount")
    made = tool and subprocess.run(
        [tool, "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True
    )
    if not made or made.returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_named(tmp_path, tiny_tmpfs, emulator) -> None:
    config = str(write_config(tmp_path, emulator, tiny_tmpfs / "mirror.sqlite"))
    result = syncd("-c", config, "--once")
    assert_named(result, "the disk is full (database or disk is full)", "free space")
    (summary,) = events(result.stdout, "sync_finished")
    assert summary["error_type"] == "DiskFull"


@pytest.fixture
def read_only_mirror(tmp_path, emulator) -> Iterator[Path]:
    """A synced mirror in a directory this process cannot write: a read-only bind mount for
    root (which ignores file modes), file modes for anyone else."""
    source = tmp_path / "source"
    source.mkdir()
    config = str(write_config(source, emulator, "mirror.sqlite"))
    assert syncd("-c", config, "--once").returncode == EXIT_OK
    if os.geteuid() != 0:
        (source / "mirror.sqlite").chmod(0o444)
        source.chmod(0o555)
        try:
            yield source
        finally:
            source.chmod(0o755)
        return
    view = tmp_path / "view"
    view.mkdir()
    if subprocess.run(["mount", "--bind", str(source), str(view)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_a_read_only_mirror_is_named(tmp_path, read_only_mirror, emulator) -> None:
    config = str(write_config(tmp_path, emulator, read_only_mirror / "mirror.sqlite"))
    result = syncd("-c", config, "--once")
    assert_named(result, "the database is read-only", "write access")


# --------------------------------------------------------------------------- bounded SQL


@pytest.fixture
def small_mirror(tmp_path) -> Path:
    from syncd.store import Store

    with Store(tmp_path / "mirror.sqlite"):
        pass
    (tmp_path / "syncd.toml").write_text('[database]\npath = "mirror.sqlite"\n')
    return tmp_path / "syncd.toml"


def test_sql_stops_a_runaway_query_at_its_timeout(small_mirror) -> None:
    started = time.monotonic()
    result = syncd("-c", str(small_mirror), "sql", "--timeout", "1", RUNAWAY, timeout=30)
    assert result.returncode == EXIT_FAILED, result.stderr
    assert result.stderr == (
        "syncd: query interrupted after 1 s (--timeout); narrow it, or allow more time with "
        "--timeout SECONDS (0 for no limit)\n"
    )
    assert result.stdout == ""
    assert time.monotonic() - started < 15  # 1 s of query plus the interpreter's start


def test_sql_stops_on_ctrl_c(small_mirror) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "syncd", "-c", str(small_mirror), "-v", "sql", RUNAWAY],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in ENV_NAMES},
    )
    try:
        assert process.stderr is not None
        started = json.loads(process.stderr.readline())
        assert started["event"] == "sql_query_started"
        assert started["timeout_seconds"] == 30.0  # the default
        time.sleep(0.3)  # inside SQLite now
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == EXIT_INTERRUPTED
        assert time.monotonic() - sent < 5
        assert process.stderr.read() == "syncd: interrupted\n"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_read_only_query_does_not_count_as_damage(small_mirror) -> None:
    """A bad query still exits 2 with SQLite's message; only a damaged file is named so."""
    result = syncd("-c", str(small_mirror), "sql", "SELECT * FROM no_such_table")
    assert result.returncode == EXIT_USAGE
    assert "no such table" in result.stderr
    assert sqlite3.connect(small_mirror.parent / "mirror.sqlite").execute(
        "PRAGMA quick_check"
    ).fetchone() == ("ok",)
