"""How syncd processes on one key share its work through leases (on SQLite, no subprocess):
a daemon keeps its share of the workspaces, a one-shot run takes what is free, a lease of a
process that is gone or expired is taken over, one daemon leads."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from peewee import SqliteDatabase

from syncd.instances import gone_locally, new_instance_id
from syncd.store import Store
from syncd.store.leases import Leases, WorkShare

WORKSPACES = ["ws-1", "ws-2", "ws-3"]


@pytest.fixture
def share(tmp_path: Path) -> Iterator[Callable[..., WorkShare]]:
    """Makes a ``WorkShare`` of one process, each on its own connection to one mirror."""
    path = tmp_path / "mirror.sqlite"
    Store(path).close()
    opened: list[SqliteDatabase] = []

    def make(holder: str, *, ttl: float = 60.0, daemon: bool = True, gone=None) -> WorkShare:
        db = SqliteDatabase(str(path), timeout=10)
        db.connect()
        opened.append(db)
        return WorkShare(
            Leases(db), "key-1", holder, ttl, daemon=daemon, gone=gone or (lambda _h: False)
        )

    yield make
    for db in opened:
        db.close()


def owners(one: WorkShare) -> dict[str, str]:
    """Workspace id -> holder of its live lease."""
    prefix = "workspace:key-1:"
    return {
        lease.name.removeprefix(prefix): lease.holder
        for lease in one.leases.holders()
        if lease.name.startswith(prefix)
    }


def test_a_process_alone_on_its_key_always_holds_every_workspace(share) -> None:
    alone = share("a")
    assert alone.claim(WORKSPACES) == WORKSPACES
    assert alone.claim(WORKSPACES) == WORKSPACES  # renewed, not refused
    assert all(alone.renew(w) for w in WORKSPACES)
    assert owners(alone) == dict.fromkeys(WORKSPACES, "a")


def test_daemons_split_the_workspaces_and_a_later_one_gets_its_share(share) -> None:
    a, b = share("a"), share("b")
    assert a.claim(WORKSPACES) == WORKSPACES  # alone so far: everything
    assert b.claim(WORKSPACES) == []  # every workspace is a's this round
    assert not b.renew("ws-1")  # nor can b renew one it does not hold
    # a sees two daemons: it keeps its share (2 of 3) and leaves the rest.
    kept = a.claim(WORKSPACES)
    assert kept == ["ws-1", "ws-2"]
    assert b.claim(WORKSPACES) == ["ws-3"]
    held = owners(a)
    assert held == {"ws-1": "a", "ws-2": "a", "ws-3": "b"}
    # Rounds go on: each keeps its own, no workspace changes hands or is held twice.
    for _ in range(3):
        assert a.claim(WORKSPACES) == ["ws-1", "ws-2"]
        assert b.claim(WORKSPACES) == ["ws-3"]
    assert owners(a) == held


def test_a_one_shot_run_takes_what_is_free_and_no_daemon_gives_work_to_it(share) -> None:
    daemon, once = share("d"), share("o", daemon=False)
    assert daemon.claim(["ws-1"]) == ["ws-1"]
    assert once.claim(WORKSPACES) == ["ws-2", "ws-3"]
    assert daemon.claim(WORKSPACES) == ["ws-1"]  # still its own: the run is not a daemon
    once.release_all()
    assert daemon.claim(WORKSPACES) == WORKSPACES
    assert {lease.name for lease in once.leases.holders()} == {
        "instance:d",
        *(f"workspace:key-1:{w}" for w in WORKSPACES),
    }


def test_one_shot_runs_started_together_split_the_workspaces(share) -> None:
    first, second = share("o1", daemon=False), share("o2", daemon=False)
    first.beat()
    second.beat()  # both registered, as each does when it starts
    assert first.claim(WORKSPACES) == ["ws-1", "ws-2"]
    assert second.claim(WORKSPACES) == ["ws-3"]
    first.release_all()
    assert second.claim(WORKSPACES) == WORKSPACES  # alone again: the rest is free


def test_an_expired_lease_is_taken_over_and_its_old_holder_stops(share) -> None:
    killed, survivor = share("k", ttl=0.3), share("s")
    assert killed.claim(WORKSPACES) == WORKSPACES
    assert survivor.claim(WORKSPACES) == []
    time.sleep(0.4)  # the killed process renews nothing: its leases lapse
    assert survivor.claim(WORKSPACES) == WORKSPACES
    assert not killed.renew("ws-1")  # a process that comes back finds its work taken
    assert killed.held == {"ws-2", "ws-3"}


def test_a_heartbeat_notices_a_workspace_whose_holder_died(share) -> None:
    """The survivor's heartbeat sees the dead process's workspaces without a live lease, so the
    daemon can poll at once instead of at its next scheduled round (up to 15 min later)."""
    killed, survivor = share("k", ttl=0.3), share("s")
    assert killed.claim(WORKSPACES) == WORKSPACES
    assert survivor.claim(WORKSPACES) == []
    survivor.beat()
    assert not survivor.unheld  # every workspace has a live holder
    time.sleep(0.4)  # the killed process renews nothing: its leases lapse
    assert survivor.look()  # a read between renewals notices it
    survivor.beat()
    assert survivor.unheld
    assert survivor.claim(WORKSPACES) == WORKSPACES
    survivor.beat()
    assert not survivor.unheld


def test_the_leases_of_a_process_known_to_be_gone_are_taken_over_at_once(share) -> None:
    crashed = share("host:1:dead")
    crashed.claim(WORKSPACES)
    crashed.beat(lead=True)
    restarted = share("host:2:new", gone=lambda holder: holder == "host:1:dead")
    assert restarted.claim(WORKSPACES) == WORKSPACES
    assert restarted.beat(lead=True)
    stranger = share("other:3:x")
    assert stranger.claim(WORKSPACES) == []


def test_one_daemon_leads_until_it_stops(share) -> None:
    a, b = share("a"), share("b")
    assert a.beat(lead=True)
    assert not b.beat(lead=True)
    assert a.beat(lead=True)  # renewed
    a.release_all()
    assert b.beat(lead=True)
    assert not a.beat(lead=True)


def test_a_heartbeat_renews_the_workspaces_held_and_forgets_lost_ones(share) -> None:
    a = share("a", ttl=0.5)
    a.claim(WORKSPACES)
    for _ in range(3):
        time.sleep(0.25)
        a.beat()
    b = share("b")
    assert b.claim(WORKSPACES) == []  # a's leases lived on through its heartbeat
    a.leases.release("workspace:key-1:ws-2", "a")  # (as if it lapsed and b took it)
    assert b.claim(WORKSPACES) == ["ws-2"]
    a.beat()
    assert a.held == {"ws-1", "ws-3"}


def test_an_instance_id_names_the_host_and_process_and_differs_per_start() -> None:
    first, second = new_instance_id(host="db1"), new_instance_id(host="db1")
    assert first.startswith(f"db1:{os.getpid()}:")
    assert first != second


def test_a_process_of_this_host_that_ended_is_gone_and_a_live_one_is_not() -> None:
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    pid = int(ended.stdout)
    assert gone_locally(new_instance_id(pid=pid))
    assert not gone_locally(new_instance_id())  # this process
    assert not gone_locally(new_instance_id(pid=os.getppid()))  # a live one
    assert not gone_locally(new_instance_id(host="elsewhere", pid=pid))  # not this host
    assert not gone_locally("syncd-a")  # a configured id says nothing about a process
