"""The daemon next to a ``--once`` run on the same key and mirror, and SIGTERM in the middle
of a backfill; both also with the mirror in PostgreSQL."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from tests.support.daemon import mirror_differences, wait_for
from tests.support.mirror import BACKENDS


@pytest.mark.parametrize("backend", BACKENDS)
def test_daemon_and_concurrent_once_share_the_budget_without_429(
    emulator_factory, daemon_factory, backend
):
    # The emulator enforces the documented limits (10/s, 100/min); syncd is configured with
    # them too. Small windows make both processes walk the history in many requests.
    emu = emulator_factory(entries=800, days=40)
    daemon = daemon_factory(
        emu,
        overrides={
            "limits": {"per_second": 10, "per_minute": 100, "per_day": 10_000},
            "sync": {"window_max_days": 4, "window_target_entries": 50},
        },
    )
    daemon.start(wait_poll=False)
    wait_for(
        lambda: daemon.scalar("SELECT COUNT(*) FROM budget_grants") >= 1,
        15,
        what="the daemon's first request",
    )
    once = subprocess.Popen(
        daemon.command("--once"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=daemon.env()
    )
    out, _ = once.communicate(timeout=60)
    assert once.returncode == 0, out.decode()[-3000:]
    daemon.wait_job("poll", timeout=60)

    stats = emu.key_stats()
    assert stats["rate_limited"] == 0
    assert stats["max_in_any_second"] <= 10
    assert stats["max_in_any_minute"] <= 100

    runs = {r["kind"]: r for r in daemon.query("SELECT * FROM sync_runs WHERE ok = 1")}
    for kind in ("once", "poll"):
        assert runs[kind]["requests"] > 0
        assert runs[kind]["rate_limited"] == 0
    # Both processes took grants from the one persisted budget, at the same time.
    spans = daemon.query(
        "SELECT pid, COUNT(*) AS n, MIN(granted_at) AS first, MAX(granted_at) AS last "
        "FROM budget_grants GROUP BY pid"
    )
    assert len(spans) == 2, [dict(s) for s in spans]
    a, b = spans
    assert a["first"] < b["last"], "the runs did not overlap"
    assert b["first"] < a["last"], "the runs did not overlap"
    assert sum(s["n"] for s in spans) == stats["requests"]
    assert mirror_differences(daemon, emu.truth()) == []
    assert daemon.stop()[0] == 0


def _backfill_windows(daemon) -> int:
    return daemon.scalar("SELECT COUNT(*) FROM window_scans WHERE source = 'backfill'")


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigterm_mid_backfill_exits_cleanly_and_a_restart_converges(
    emulator_factory, daemon_factory, backend
):
    # 3-day windows at 10 requests a second (no minute or day limit): the backfill takes
    # several seconds, and the rest fits in one poll after the restart (at most 20 windows per
    # workspace and poll).
    emu = emulator_factory(
        "--rate-per-second",
        "10",
        "--rate-per-minute",
        "0",
        "--rate-per-day",
        "0",
        entries=600,
        days=36,
    )
    daemon = daemon_factory(
        emu,
        overrides={
            "limits": {"per_second": 10, "per_minute": 1000, "safety_margin": 0.0},
            "sync": {"window_max_days": 3, "interval_seconds": 10},
        },
    )
    daemon.start(wait_poll=False)
    wait_for(lambda: _backfill_windows(daemon) >= 4, 20, what="the backfill to be under way")
    code, seconds = daemon.stop(signal.SIGTERM, timeout=15)
    assert code == 0
    assert seconds < 10, f"took {seconds:.1f}s to stop"
    events = [e["event"] for e in daemon.log_events()]
    assert "daemon_stopped" in events
    # Stopped in the middle: history is incomplete, every run is closed, nothing half-written.
    incomplete = daemon.scalar("SELECT COUNT(*) FROM sync_state WHERE backfill_complete = 0")
    assert incomplete >= 1
    assert daemon.scalar("SELECT COUNT(*) FROM sync_runs WHERE finished_at IS NULL") == 0
    if backend == "sqlite":
        assert daemon.scalar("PRAGMA integrity_check") == "ok"
    windows_before = _backfill_windows(daemon)

    daemon.start(wait_poll=False)
    wait_for(
        lambda: daemon.scalar("SELECT COUNT(*) FROM sync_state WHERE backfill_complete = 0") == 0,
        60,
        interval=0.2,
        what="the backfill to complete after the restart",
    )
    assert _backfill_windows(daemon) > windows_before
    # The restart continued where the first run stopped: no window was walked twice.
    walked = daemon.query(
        "SELECT workspace_id, date_from, date_to, COUNT(*) AS n FROM window_scans "
        "WHERE source = 'backfill' GROUP BY 1, 2, 3 HAVING COUNT(*) > 1"
    )
    assert [dict(w) for w in walked] == []
    truth = emu.truth()
    wait_for(lambda: not mirror_differences(daemon, truth), 15, what="convergence")
    assert emu.key_stats()["rate_limited"] == 0
    assert daemon.stop()[0] == 0


def test_sigterm_while_waiting_for_the_minute_budget_exits_promptly(
    emulator_factory, daemon_factory
):
    """A backfill that has used its share of the minute waits for the window to roll over;
    a stop request must not wait for that (up to a minute) before exiting."""
    emu = emulator_factory("--rate-per-minute", "20", "--rate-per-day", "0", entries=600, days=36)
    daemon = daemon_factory(
        emu,
        overrides={
            "limits": {"per_minute": 20, "safety_margin": 0.0},
            "sync": {"window_max_days": 2, "window_target_entries": 10},
        },
    )
    daemon.start(wait_poll=False)

    def waiting_for_budget():
        # 20/min with the backfill's 80 % share: 16 grants, then a wait of most of a minute.
        return daemon.scalar("SELECT COUNT(*) FROM budget_grants") >= 16

    wait_for(waiting_for_budget, 20, what="the minute budget to be used up")
    time.sleep(1.0)
    code, seconds = daemon.stop(signal.SIGTERM, timeout=12)
    assert code == 0
    assert seconds < 10, f"took {seconds:.1f}s to stop"


def test_sighup_does_not_kill_the_daemon(emulator_factory, daemon_factory):
    """docs/operations.md: SIGHUP is "not supported: restart to apply a changed
    configuration". It must not end the process the way an unhandled SIGHUP does (no clean
    stop, and systemd's Restart=on-failure treats a SIGHUP death as clean: no restart)."""
    emu = emulator_factory(entries=200, days=30)
    daemon = daemon_factory(emu, subscribe=False).start()
    daemon.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert daemon.proc.poll() is None, f"the daemon died of SIGHUP ({daemon.proc.returncode})"
    assert daemon.healthz().status == 200
    assert daemon.stop()[0] == 0
