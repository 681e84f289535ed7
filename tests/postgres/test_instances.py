"""Three syncd daemons on one key and one PostgreSQL database share the key's work.

Real processes against the emulator (documented limits: 10 requests a second, 100 a minute):
no 429, each workspace synced by one daemon at a time (from the daemons' ``window_synced``
log lines), one webhook subscription upstream, and after ``kill -9`` of the daemon holding a
workspace, another one syncs it within the lease time plus one poll interval. Each daemon has
a configured instance id, as on hosts of their own: a killed one's leases must expire (on one
host they would be taken over at once).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.config import emulator_sections, merge, write_config
from tests.support.daemon import LoggedDaemon, epoch
from tests.support.emulator import SYNCD, EmulatorProcess
from tests.support.environment import clean_env
from tests.support.net import free_port

pytestmark = pytest.mark.e2e

LEASE_SECONDS = 5
INTERVAL_SECONDS = 10  # the shortest poll interval the config allows
NAMES = ("syncd-a", "syncd-b", "syncd-c")


class Daemon(LoggedDaemon):
    """One ``syncd`` daemon process with its config and its JSON log file."""

    def scans(self, after: float = 0.0, source: str | None = None) -> list[tuple[float, str]]:
        """(when, workspace) of every window (of ``source``) this daemon committed after
        ``after`` (epoch seconds)."""
        return [
            (when, e["workspace_id"])
            for e in self.events("window_synced")
            if (when := epoch(e["timestamp"])) > after and source in (None, e["source"])
        ]


def _rounds(moments: Iterable[float]) -> int:
    """How many polls the scan times come from: scans closer than half an interval are one."""
    rounds, last = 0, None
    for moment in sorted(moments):
        if last is None or moment - last > INTERVAL_SECONDS / 2:
            rounds += 1
        last = moment
    return rounds


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    emu = EmulatorProcess.start(
        "--workspaces", "3", "--entries", "600", "--days", "90",
        "--rate-per-second", "10", "--rate-per-minute", "100", "--rate-per-day", "0",
        "--allow-http-webhooks",
        log=tmp_path / "emulator.log",
    )  # fmt: skip
    try:
        yield emu
    finally:
        emu.stop()


def test_three_daemons_share_one_keys_work_and_take_over_a_killed_ones(
    tmp_path: Path, postgres_url: str, emulator: EmulatorProcess
) -> None:
    ports = [free_port() for _ in NAMES]
    public_url = f"http://127.0.0.1:{ports[0]}"  # (a load balancer in front of all three)
    state = tmp_path / "state"  # one webhook token for all: any of them takes a delivery
    state.mkdir(mode=0o700)
    env = clean_env({"STATE_DIRECTORY": str(state)})
    daemons: list[Daemon] = []
    for name, port in zip(NAMES, ports, strict=True):
        sections = merge(
            emulator_sections(emulator),
            {
                "database": {"url": postgres_url},
                "logging": {"format": "json", "level": "debug"},
                "limits": {"per_second": 10, "per_minute": 100, "per_day": 1_000_000},
                "sync": {
                    "interval_seconds": INTERVAL_SECONDS,
                    "lease_seconds": LEASE_SECONDS,
                    "instance_id": name,
                },
                "webhooks": {"listen": f"127.0.0.1:{port}", "public_url": public_url},
            },
        )
        del sections["database"]["path"]
        config = write_config(tmp_path / f"{name}.toml", sections)
        daemons.append(Daemon(name, config, tmp_path / f"{name}.log", env))
    by_name = {d.name: d for d in daemons}
    workspaces = emulator.workspace_ids()

    def leases() -> dict[str, str]:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT name, holder FROM leases "
                "WHERE expires_at > extract(epoch FROM clock_timestamp())"
            ).fetchall()
        return dict(rows)

    def holders() -> dict[str, str]:
        return {
            name.rsplit(":", 1)[1]: holder
            for name, holder in leases().items()
            if name.startswith("workspace:")
        }

    try:
        # Every daemon polls: the history is walked, and the share settles (one each).
        wait_for(
            lambda: (
                all(d.events("job_finished") or d.scans() for d in daemons)
                and sorted(set(holders().values())) == sorted(NAMES)
                and len(holders()) == len(workspaces)
            ),
            120,
            "each daemon to hold one workspace",
        )
        settled = time.time()
        time.sleep(3 * INTERVAL_SECONDS)  # three rounds
        owner = holders()
        for workspace in workspaces:
            synced_by = {d.name for d in daemons for _, w in d.scans(settled) if w == workspace}
            assert synced_by == {owner[workspace]}, (workspace, synced_by, owner)
            rounds = _rounds(
                t for d in daemons for t, w in d.scans(settled, "poll") if w == workspace
            )
            assert 2 <= rounds <= 4, (workspace, rounds)  # one hot scan a round, not three

        # One daemon leads: one subscription upstream, made by it alone.
        wait_for(lambda: emulator.subscriptions(), 30, "the subscription")
        assert len(emulator.subscriptions()) == 1
        leader = leases()[next(n for n in leases() if n.startswith("leader:"))]
        subscribed = [d.name for d in daemons if d.events("webhook_subscribed")]
        assert subscribed == [leader]

        status = subprocess.run(
            [*SYNCD, "-c", str(daemons[0].config), "status", "--json"],
            capture_output=True, text=True, env=env, timeout=60, check=True,
        )  # fmt: skip
        sharing = json.loads(status.stdout)["sharing"]
        assert sorted(i["what"] for i in sharing["instances"]) == sorted(NAMES)
        assert sharing["leader"]["holder"] == leader
        assert {w["what"]: w["holder"] for w in sharing["workspaces"]} == owner

        # kill -9 the leader and the workspace it holds goes to another daemon.
        (victim_ws,) = [w for w, h in owner.items() if h == leader]
        victim = by_name[leader]
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait()
        killed = time.time()
        taker = wait_for(
            lambda: next(
                (d.name for d in daemons if d is not victim for _, w in d.scans(killed)
                 if w == victim_ws),
                None,
            ),
            60,
            f"another daemon to sync {victim_ws}",
        )  # fmt: skip
        took = time.time() - killed
        bound = LEASE_SECONDS + INTERVAL_SECONDS + 5  # expiry, the next round, its request
        assert took <= bound, f"{victim_ws} was synced again {took:.1f} s after the kill"
        assert holders()[victim_ws] == taker
        new_leader = wait_for(
            lambda: next((h for n, h in leases().items() if n.startswith("leader:")), None),
            LEASE_SECONDS + 5,
            "a new leader",
        )
        assert new_leader != leader
        time.sleep(2)
        assert len(emulator.subscriptions()) == 1

        stats = emulator.key_stats()
        assert stats["rate_limited"] == 0, stats
        for daemon in daemons:
            if daemon is not victim:
                assert daemon.stop() == 0, daemon.log.read_text()[-3000:]
        assert leases() == {}  # stopped daemons give their leases back
    finally:
        for daemon in daemons:
            if daemon.process.poll() is None:
                daemon.process.kill()
                daemon.process.wait()
