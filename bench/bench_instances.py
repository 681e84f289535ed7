"""Benchmark of three syncd daemons on one API key and one PostgreSQL database.

Three ``syncd -c FILE`` processes (each with an ``[sync] instance_id`` of its own, as on hosts
of their own: a killed one's leases must expire) share one key's work through leases and one
rate budget in the database, against the emulator seeded with 3 workspaces × 20,000 entries
over 3 years and the real limits (10/s, 100/min). One run, three parts:

1. **Backfill.** The three start together on an empty database. Measured: the wall time
   from their start until the mirror equals upstream (every live entry, field by field),
   the requests the emulator received and its 429s, and, from the daemons' ``window_synced``
   log lines, which instance fetched each workspace's backfill windows; the
   ``window_scans`` table shows whether any window (workspace and date range) was fetched
   twice.
2. **Steady state.** The daemons keep running for ``--steady-seconds`` with an hour
   compressed ``--scale`` times (see :func:`scaled_sync`), while silent changes (edits and
   deletes through the emulator's control API, no webhook) are made in the hot, warm and
   cold ages. Measured: requests and 429s, the hot-window scans of each workspace grouped
   into poll rounds and the instances that made each round (one expected), reconcile
   windows scanned twice, and when each silent change reached the mirror.
3. **Takeover.** ``kill -9`` of the leader (the daemon keeping the webhook subscription),
   which also holds a workspace, with the default ``lease_seconds`` (60). Measured: the
   seconds until another daemon syncs that workspace again (bounded by the lease expiry,
   at most 60 s, plus the taker's next poll round, at most one poll interval) and until
   another daemon holds the leader lease and has checked the subscription.

A database ``syncd_bench_<random>`` of its own on the server at ``SYNCD_TEST_POSTGRES_URL``
(default postgresql://postgres@127.0.0.1:5432/test) is dropped at the end. When the server
cannot be reached it prints one line and exits 0. Prints ``name: value`` lines and one
``verdict_...`` line per target. Usage::

    .venv/bin/python bench/bench_instances.py [--workspaces 3] [--entries 60000]
        [--days 1095] [--scale 20] [--steady-seconds 180] [--stagger 0] [--kills 1]
        [--skip-takeover] [--keep]

Longer variants: ``--steady-seconds 900`` (five compressed hours), ``--kills 4`` (the
leader and a non-leading holder killed twice each; the killed daemon is started again and
the work settles between kills, about 2-3 min each), ``--stagger 5`` (the daemons start 5 s
apart, so the first takes every workspace and gives two back at its next round: the
backfill's hand-over between instances). The default run takes about 4.5 min.
"""

from __future__ import annotations

import argparse
import compileall
import json
import math
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # bench_postgres, bench_sync
sys.path.insert(0, str(ROOT))  # the emulator process and config writer of tests/support

from bench_postgres import fresh_database, server_problem  # noqa: E402

from syncd.instances import LOOK_SECONDS  # noqa: E402
from tests.support.config import emulator_sections, merge, write_config  # noqa: E402
from tests.support.daemon import LoggedDaemon, epoch  # noqa: E402
from tests.support.emulator import EmulatorProcess  # noqa: E402
from tests.support.environment import clean_env  # noqa: E402
from tests.support.mirror import divergence, mirror_entries, truth_entries  # noqa: E402
from tests.support.net import free_port  # noqa: E402
from tests.support.postgres import admin_url, server_of  # noqa: E402

KEY = "bench-key"
NAMES = ("syncd-a", "syncd-b", "syncd-c")
PER_SECOND, PER_MINUTE, PER_DAY = 10, 100, 10_000
#: ``[sync]`` defaults an hour of the daemon is made of.
DEFAULT_INTERVAL, DEFAULT_WARM_MINUTES, DEFAULT_RECONCILE_HOURS = 900, 60, 24
DEFAULT_LEASE_SECONDS = 60  # not set in the configs: the default is what is measured
TAKEOVER_TARGET = 60.0
HOT_DAYS, WARM_DAYS = 3, 62  # the defaults of hot_window_days and warm_window_days


def out(name: str, value: Any) -> None:
    print(f"{name}: {value}", flush=True)


def load() -> str:
    """The load averages (1, 5, 15 min) of this machine, for each figure."""
    return "load " + " ".join(Path("/proc/loadavg").read_text().split()[:3])


def verdict(name: str, met: bool, figure: str) -> None:
    out(f"verdict_{name}", f"{'met' if met else 'MISSED'} ({figure})")


def scaled_sync(scale: float) -> dict[str, int]:
    """The ``[sync]`` periods of a default daemon divided by ``scale`` (whole units, at least
    the minimum the config allows), so an hour's work happens in 60 / ``scale`` minutes."""
    return {
        "interval_seconds": max(10, round(DEFAULT_INTERVAL / scale)),
        "warm_period_minutes": max(1, round(DEFAULT_WARM_MINUTES / scale)),
        "reconcile_period_hours": max(1, round(DEFAULT_RECONCILE_HOURS / scale)),
    }


class Daemon(LoggedDaemon):
    """One ``syncd`` daemon process with its config and its JSON log file (debug level, for
    the ``window_synced`` lines)."""

    def windows(self, after: float = 0.0, before: float = math.inf) -> list[dict[str, Any]]:
        """The ``window_synced`` events committed between ``after`` and ``before`` (epoch
        seconds), each with ``at`` (epoch seconds) and ``instance`` added."""
        found = []
        for event in self.events("window_synced"):
            at = epoch(event["timestamp"])
            if after < at <= before:
                found.append({**event, "at": at, "instance": self.name})
        return found


def rows(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` on ``url``; empty while the daemons have not created the tables."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]
    except psycopg.errors.UndefinedTable:
        return []


def leases(url: str) -> dict[str, tuple[str, float]]:
    """The leases held now: name -> (holder, seconds until it expires)."""
    found = rows(
        url,
        "SELECT name, holder, expires_at - extract(epoch FROM clock_timestamp()) FROM leases "
        "WHERE expires_at > extract(epoch FROM clock_timestamp())",
    )
    return {name: (holder, float(left)) for name, holder, left in found}


def holders(url: str) -> dict[str, str]:
    """workspace id -> the instance holding its lease now."""
    return {
        name.rsplit(":", 1)[1]: holder
        for name, (holder, _) in leases(url).items()
        if name.startswith("workspace:")
    }


def leader(url: str) -> str | None:
    return next((h for n, (h, _) in leases(url).items() if n.startswith("leader:")), None)


def rounds_of(moments: list[tuple[float, str]], gap: float) -> list[set[str]]:
    """The instances of each poll round: scans closer than ``gap`` seconds are one round."""
    found: list[set[str]] = []
    last = None
    for at, instance in sorted(moments):
        if last is None or at - last > gap:
            found.append(set())
        found[-1].add(instance)
        last = at
    return found


def twice_scanned(windows: list[dict[str, Any]], sources: tuple[str, ...]) -> int:
    """How many (workspace, range) windows of ``sources`` were scanned more than once."""
    counts = Counter(
        (w["workspace_id"], w["date_from"], w["date_to"]) for w in windows if w["source"] in sources
    )
    return sum(1 for n in counts.values() if n > 1)


# ------------------------------------------------------------------------------ 1. backfill


def wait_for_mirror(
    url: str, emulator: EmulatorProcess, daemons: list[Daemon], timeout: float
) -> tuple[float, tuple[int, int, int]]:
    """Waits until the live mirror equals upstream; returns when it first did (epoch
    seconds, the moment of the check that found it) and the (missing, stale, wrongly live)
    counts of the last comparison."""
    upstream = sum(w["time_entry_count"] for w in emulator.workspaces())
    deadline = time.monotonic() + timeout
    found = (upstream, 0, 0)
    while time.monotonic() < deadline:
        for daemon in daemons:
            if daemon.process.poll() is not None:
                raise SystemExit(
                    f"{daemon.name} exited {daemon.process.returncode}; see {daemon.log}"
                )
        checked = time.time()
        live = rows(url, "SELECT count(*) FROM time_entries WHERE deleted_at IS NULL")
        if live and live[0][0] == upstream:
            found = divergence(truth_entries(emulator), mirror_entries(url))
            if found == (0, 0, 0):
                return checked, found
        time.sleep(1.0)
    raise SystemExit(f"the mirror did not equal upstream within {timeout:.0f} s: {found}")


def backfill_part(
    url: str, emulator: EmulatorProcess, daemons: list[Daemon], started: float
) -> float:
    done, _ = wait_for_mirror(url, emulator, daemons, timeout=900)
    stats = emulator.key_stats(KEY)
    upstream = sum(w["time_entry_count"] for w in emulator.workspaces())
    windows = [w for d in daemons for w in d.windows(before=done)]
    backfill = [w for w in windows if w["source"] == "backfill"]
    by_workspace: dict[str, Counter[str]] = defaultdict(Counter)
    for w in backfill:
        by_workspace[w["workspace_id"]][w["instance"]] += 1
    out("backfill_entries_upstream", upstream)
    out(
        "backfill_wall_seconds",
        f"{done - started:.1f} (3 daemons started -> mirror equals upstream; {load()})",
    )
    out("backfill_mirror_divergence", "missing=0 stale=0 wrongly_live=0")
    out("backfill_requests", f"{stats['requests']} (received by the emulator, every kind)")
    out(
        "backfill_windows_by_source",
        ", ".join(f"{s}={n}" for s, n in sorted(Counter(w["source"] for w in windows).items())),
    )
    out("backfill_429s", f"{stats['rate_limited']} (emulator; target 0)")
    out(
        "backfill_upstream_max_in_any_second",
        f"{stats['max_in_any_second']} (limit {PER_SECOND})",
    )
    out(
        "backfill_upstream_max_in_any_minute",
        f"{stats['max_in_any_minute']} (limit {PER_MINUTE})",
    )
    single = True
    for workspace, counts in sorted(by_workspace.items()):
        single &= len(counts) == 1
        out(
            f"backfill_windows_of_{workspace}",
            ", ".join(f"{name}={n}" for name, n in sorted(counts.items())),
        )
    logged_twice = twice_scanned(backfill, ("backfill",))
    in_table = rows(
        url,
        "SELECT count(*) FROM (SELECT 1 FROM window_scans WHERE source = 'backfill' "
        "GROUP BY workspace_id, date_from, date_to HAVING count(*) > 1) AS twice",
    )[0][0]
    out(
        "backfill_windows_fetched_twice",
        f"{logged_twice} (daemons' logs), {in_table} (window_scans: same workspace and range)",
    )
    verdict("backfill_429s", stats["rate_limited"] == 0, f"{stats['rate_limited']} 429s")
    verdict(
        "backfill_one_instance_per_workspace",
        single and logged_twice == 0 and in_table == 0,
        "; ".join(f"{w}: {'+'.join(sorted(c))}" for w, c in sorted(by_workspace.items()))
        + f"; windows fetched twice {in_table}",
    )
    return done


# ------------------------------------------------------------------------------ 2. steady


class SilentChanges:
    """Edits and deletes through the emulator's control API (no webhook), in turn in the hot
    (0-2 days back), warm (3-61) and cold (62+) ages; each is timed until the mirror shows
    it."""

    def __init__(self, emulator: EmulatorProcess, rng: random.Random) -> None:
        self.emulator, self.rng = emulator, rng
        today = datetime.now(UTC).date()
        warm_from = (today - timedelta(days=WARM_DAYS - 1)).isoformat()
        hot_from = (today - timedelta(days=HOT_DAYS - 1)).isoformat()
        self.bands: dict[str, list[dict[str, Any]]] = {"hot": [], "warm": [], "cold": []}
        for workspace in emulator.workspace_ids():
            for entry in emulator.entries(workspace):
                if not entry.get("end_time"):
                    continue
                day = entry["date"][:10]
                tier = "hot" if day >= hot_from else "warm" if day >= warm_from else "cold"
                self.bands[tier].append(entry)
        self.pending: list[tuple[str, str, str, str, float]] = []  # tier, kind, id, text, at
        self.seen: dict[str, list[float]] = {tier: [] for tier in self.bands}
        self.made: Counter[str] = Counter()

    def make(self) -> None:
        number = sum(self.made.values())
        tier = ("hot", "warm", "cold")[number % 3]
        kind = ("edit", "delete")[(number // 3) % 2]
        band = self.bands[tier]
        if not band:
            return
        entry = band.pop(self.rng.randrange(len(band)))
        at = time.time()
        if kind == "edit":
            text = f"silently edited {number}"
            self.emulator.edit(entry["id"], description=text)
        else:
            text = ""
            self.emulator.delete(entry["id"])
        self.made[tier] += 1
        self.pending.append((tier, kind, entry["id"], text, at))

    def check(self, url: str) -> None:
        if not self.pending:
            return
        ids = [p[2] for p in self.pending]
        now = time.time()
        found = {
            i: (description, deleted)
            for i, description, deleted in rows(
                url,
                "SELECT id, description, deleted_at FROM time_entries WHERE id = ANY(%s)",
                (ids,),
            )
        }
        left = []
        for tier, kind, entry_id, text, at in self.pending:
            description, deleted = found.get(entry_id, (None, None))
            if (kind == "edit" and description == text) or (kind == "delete" and deleted):
                self.seen[tier].append(now - at)
            else:
                left.append((tier, kind, entry_id, text, at))
        self.pending = left


def steady_part(
    url: str,
    emulator: EmulatorProcess,
    daemons: list[Daemon],
    sync: dict[str, int],
    seconds: float,
    scale: float,
) -> None:
    interval = sync["interval_seconds"]
    out(
        "steady_scaled_config",
        f"scale {scale:g}: interval_seconds {DEFAULT_INTERVAL}->{interval}, "
        f"warm_period_minutes {DEFAULT_WARM_MINUTES}->{sync['warm_period_minutes']}, "
        f"reconcile_period_hours {DEFAULT_RECONCILE_HOURS}->{sync['reconcile_period_hours']}, "
        f"limits.per_day {PER_DAY}->{round(PER_DAY * scale)}; per_second {PER_SECOND} and "
        f"per_minute {PER_MINUTE} kept (the emulator enforces them), lease_seconds kept at "
        f"its default {DEFAULT_LEASE_SECONDS}",
    )
    out(
        "steady_stretch_seconds",
        f"{seconds:.0f} (= {seconds * scale / 3600:.2f} h of default daemons)",
    )
    owners = holders(url)
    out("steady_holders_at_start", ", ".join(f"{w}={h}" for w, h in sorted(owners.items())))
    out("steady_leader_at_start", leader(url))
    changes = SilentChanges(emulator, random.Random(7))
    count = max(3, round(seconds / 15))
    start = time.time()
    stats_before = emulator.key_stats(KEY)
    # the changes are made over the first 60 % of the stretch, so the hot ones can arrive
    due = [start + 5 + i * (0.6 * seconds / count) for i in range(count)]
    while time.time() < start + seconds:
        if due and time.time() >= due[0]:
            due.pop(0)
            changes.make()
        changes.check(url)
        for daemon in daemons:
            if daemon.process.poll() is not None:
                raise SystemExit(f"{daemon.name} exited; see {daemon.log}")
        time.sleep(1.0)
    end = time.time()
    stats = emulator.key_stats(KEY)
    requests = stats["requests"] - stats_before["requests"]
    limited = stats["rate_limited"] - stats_before["rate_limited"]
    windows = [w for d in daemons for w in d.windows(after=start, before=end)]
    out(
        "steady_requests",
        f"{requests} in {end - start:.0f} s ({requests / (end - start) * 60:.1f}/min; "
        f"{requests * 3600 / (end - start) / scale:.0f} per default hour; {load()})",
    )
    out(
        "steady_windows_by_source",
        ", ".join(f"{s}={n}" for s, n in sorted(Counter(w["source"] for w in windows).items())),
    )
    out(
        "steady_windows_by_instance",
        ", ".join(f"{i}={n}" for i, n in sorted(Counter(w["instance"] for w in windows).items())),
    )
    out("steady_429s", f"{limited} (emulator; target 0)")
    out(
        "steady_upstream_max_in_any_minute",
        f"{stats['max_in_any_minute']} over the whole run (limit {PER_MINUTE})",
    )
    bad_rounds, all_rounds, per_workspace = 0, 0, []
    for workspace in sorted({w["workspace_id"] for w in windows} | set(owners)):
        moments = [
            (w["at"], w["instance"])
            for w in windows
            if w["workspace_id"] == workspace and w["source"] == "poll"
        ]
        rounds = rounds_of(moments, interval / 2)
        shared = sum(1 for r in rounds if len(r) > 1)
        bad_rounds += shared
        all_rounds += len(rounds)
        instances = sorted(set().union(*rounds)) if rounds else []
        per_workspace.append(f"{workspace}: {len(rounds)} rounds by {'+'.join(instances)}")
        out(
            f"steady_hot_rounds_of_{workspace}",
            f"{len(rounds)} rounds (about {(end - start) / interval:.1f} expected), "
            f"{shared} scanned by more than one instance; by {'+'.join(instances) or 'none'}",
        )
    twice = twice_scanned(windows, ("reconcile",))
    out("steady_reconcile_windows_scanned_twice", twice)
    changes.check(url)
    bounds = {
        "hot": f"interval {interval} s",
        "warm": f"warm period {sync['warm_period_minutes']} min",
        "cold": f"reconcile period {sync['reconcile_period_hours']} h",
    }
    for tier in ("hot", "warm", "cold"):
        seen = sorted(changes.seen[tier])
        left = sum(1 for p in changes.pending if p[0] == tier)
        out(
            f"steady_silent_{tier}_changes",
            f"{changes.made[tier]} made, {len(seen)} in the mirror by the end "
            f"(latency s: {' '.join(f'{s:.0f}' for s in seen) or '-'}), {left} not yet; "
            f"bound: {bounds[tier]}",
        )
    verdict("steady_429s", limited == 0, f"{limited} 429s in {end - start:.0f} s")
    verdict(
        "steady_one_instance_per_round",
        bad_rounds == 0 and all_rounds > 0,
        f"{bad_rounds} of {all_rounds} hot rounds shared; " + "; ".join(per_workspace),
    )


# ------------------------------------------------------------------------------ 3. takeover


def subscription_checked_at(url: str) -> float | None:
    found = rows(url, "SELECT value FROM installation WHERE key = 'webhook_subscription'")
    if not found:
        return None
    checked = json.loads(found[0][0]).get("checked_at")
    return epoch(checked) if checked else None


def takeover_part(
    url: str,
    emulator: EmulatorProcess,
    daemons: list[Daemon],
    interval: int,
    kills: int,
    env: dict[str, str],
) -> None:
    """``kills`` rounds of kill -9 (the leader, then a daemon that holds a workspace but
    does not lead, in turn); after each but the last the killed daemon is started again and
    the work is left to settle (one workspace each) before the next kill."""
    took_ws: list[float | None] = []
    took_lead: list[float | None] = []
    for number in range(1, kills + 1):
        tag = "" if kills == 1 else f"_{number}"
        ws_took, lead_took = one_takeover(
            url, emulator, daemons, interval, tag, kill_leader=number % 2 == 1
        )
        took_ws.append(ws_took)
        if number % 2 == 1:
            took_lead.append(lead_took)
        if number == kills:
            break
        for i, daemon in enumerate(daemons):
            if daemon.process.poll() is not None:
                log = daemon.log.with_name(f"{daemon.name}-{number + 1}.log")
                daemons[i] = Daemon(daemon.name, daemon.config, log, env)
        settle(url, daemons, timeout=DEFAULT_LEASE_SECONDS + 4 * interval + 60)
    if kills > 1:
        done = sorted(t for t in took_ws if t is not None)
        out(
            "takeover_workspace_seconds_all",
            f"{' '.join(f'{t:.1f}' if t is not None else 'none' for t in took_ws)} "
            f"(min {done[0]:.1f}, max {done[-1]:.1f})"
            if done
            else "none",
        )
        out(
            "takeover_subscription_seconds_all",
            " ".join(f"{t:.1f}" if t is not None else "none" for t in took_lead),
        )
        verdict(
            "takeover_workspace_all",
            len(done) == len(took_ws) and done[-1] <= TAKEOVER_TARGET,
            f"{sum(1 for t in done if t <= TAKEOVER_TARGET)} of {len(took_ws)} kills within 60 s",
        )


def settle(url: str, daemons: list[Daemon], timeout: float) -> None:
    """Waits until every daemon holds one workspace and a leader lease is held."""
    deadline = time.monotonic() + timeout
    names = sorted(d.name for d in daemons)
    while time.monotonic() < deadline:
        owners = holders(url)
        if sorted(owners.values()) == names and leader(url) is not None:
            return
        time.sleep(1.0)
    out("takeover_settle", f"not settled within {timeout:.0f} s: {holders(url)}")


def one_takeover(
    url: str,
    emulator: EmulatorProcess,
    daemons: list[Daemon],
    interval: int,
    tag: str,
    *,
    kill_leader: bool,
) -> tuple[float | None, float | None]:
    """One kill -9 (of the leader, or of a daemon holding a workspace that does not lead)
    and the takeover after it; returns the seconds until another daemon synced the killed
    one's workspace and (for the leader) until the new leader checked the subscription."""
    by_name = {d.name: d for d in daemons}
    current = leases(url)
    lead = leader(url)
    owners = holders(url)
    if kill_leader:
        victim = lead
        held = sorted(w for w, h in owners.items() if h == lead)
    else:
        victim = next((h for _, h in sorted(owners.items()) if h != lead), None)
        held = sorted(w for w, h in owners.items() if h == victim)
    if victim is None or not held:
        out(f"takeover{tag}", f"no {'leader' if kill_leader else 'holder'} with a workspace")
        verdict(f"takeover_workspace{tag}", False, f"nothing to kill: {owners}, leader {lead}")
        return None, None
    workspace = held[0]
    expires_in = next(
        left
        for n, (_, left) in current.items()
        if n.startswith("workspace:") and n.endswith(f":{workspace}")
    )
    leader_left = next((left for n, (_, left) in current.items() if n.startswith("leader:")), 0.0)
    before = emulator.key_stats(KEY)
    os.kill(by_name[victim].process.pid, signal.SIGKILL)
    killed = time.time()
    by_name[victim].process.wait()
    role = "the leader" if kill_leader else "not the leader"
    lease_note = f", the leader lease {leader_left:.1f} s" if kill_leader else ""
    out(
        f"takeover{tag}_killed",
        f"{victim} (kill -9; {role}, holding {', '.join(held)}): its lease of {workspace} had "
        f"{expires_in:.1f} s left{lease_note}",
    )
    survivors = [d for d in daemons if d.name != victim]
    alive = {d.name for d in survivors}
    deadline = killed + DEFAULT_LEASE_SECONDS + interval + 90
    synced_at = lease_at = leads_at = checked_at = None
    taker = new_leader = None
    while time.time() < deadline and (synced_at is None or (kill_leader and checked_at is None)):
        now = time.time()
        if lease_at is None and holders(url).get(workspace) in alive:
            lease_at = now
        if synced_at is None:
            found = [
                w for d in survivors for w in d.windows(after=killed)
                if w["workspace_id"] == workspace
            ]  # fmt: skip
            if found:
                first = min(found, key=lambda w: w["at"])
                synced_at, taker, source = first["at"], first["instance"], first["source"]
        if kill_leader and leads_at is None and (who := leader(url)) in alive:
            leads_at, new_leader = now, who
        if checked_at is None and leads_at is not None:
            at = subscription_checked_at(url)
            if at is not None and at > killed:
                checked_at = at
        time.sleep(0.25)
    after = emulator.key_stats(KEY)
    took = None if synced_at is None else synced_at - killed
    if took is None:
        out(f"takeover{tag}_workspace_seconds", f"none within {deadline - killed:.0f} s")
        verdict(f"takeover{tag}_workspace", False, "not synced again")
    else:
        taken = f"{lease_at - killed:.1f}" if lease_at else "?"
        out(
            f"takeover{tag}_workspace_seconds",
            f"{took:.1f} (kill -> {taker} committed a {source} window of {workspace}; its "
            f"lease expired {expires_in:.1f} s after the kill and was taken at {taken} s, by "
            f"{taker}'s next round of a sync job; {load()})",
        )
        out(
            f"takeover{tag}_workspace_bound",
            f"lease left at the kill ({expires_in:.0f} s; 40-60 s, renewed every "
            f"{DEFAULT_LEASE_SECONDS / 3:.0f} s and after each window) + a survivor's next "
            f"look for a workspace without a holder (every {LOOK_SECONDS:.0f} s; it then polls "
            f"at once) + one scan: at most {DEFAULT_LEASE_SECONDS + LOOK_SECONDS:.0f} s + the "
            "scan, whatever interval_seconds is",
        )
        verdict(
            f"takeover{tag}_workspace", took <= TAKEOVER_TARGET, f"{took:.1f} s, target <= 60 s"
        )
    lead_took = None
    if kill_leader:
        subscriptions = emulator.subscriptions()
        if leads_at is None:
            out(f"takeover{tag}_leader_seconds", f"no new leader within {deadline - killed:.0f} s")
            verdict(f"takeover{tag}_leader_subscription", False, "no new leader")
        else:
            out(
                f"takeover{tag}_leader_seconds",
                f"{leads_at - killed:.1f} (kill -> {new_leader} holds the leader lease; "
                f"bound: the lease's {leader_left:.0f} s left + the wait for a survivor's "
                f"heartbeat, every {DEFAULT_LEASE_SECONDS / 3:.0f} s: 0 s when the "
                "daemons' heartbeats run in step, as when started together)",
            )
            checked = "not checked" if checked_at is None else f"{checked_at - killed:.1f}"
            statuses = ", ".join(str(s.get("status", "?")) for s in subscriptions) or "none"
            out(
                f"takeover{tag}_subscription_seconds",
                f"{checked} (kill -> the new leader checked the subscription and kept it; "
                f"subscriptions upstream now: {len(subscriptions)}, {statuses})",
            )
            if checked_at is not None:
                lead_took = checked_at - killed
            verdict(
                f"takeover{tag}_leader_subscription",
                lead_took is not None and lead_took <= TAKEOVER_TARGET and len(subscriptions) == 1,
                f"{checked} s, {len(subscriptions)} subscription(s), target <= 60 s",
            )
    out(f"takeover{tag}_429s", after["rate_limited"] - before["rate_limited"])
    return took, lead_took


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspaces", type=int, default=3)
    parser.add_argument("--entries", type=int, default=60_000)
    parser.add_argument("--days", type=int, default=1095)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--scale", type=float, default=20.0, help="hour compression")
    parser.add_argument("--steady-seconds", type=float, default=180.0)
    parser.add_argument("--skip-takeover", action="store_true")
    parser.add_argument(
        "--kills", type=int, default=1, help="kill -9 rounds: the leader, a holder, in turn"
    )
    parser.add_argument(
        "--stagger", type=float, default=0.0, help="seconds between the daemons' starts"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    admin = admin_url()
    problem = server_problem(admin)
    if problem is not None:
        print(f"PostgreSQL at {server_of(admin)} unreachable ({problem}); bench skipped")
        return 0
    compileall.compile_dir(ROOT / "syncd", quiet=1)
    sync = scaled_sync(args.scale)
    work = Path(tempfile.mkdtemp(prefix="bench-instances-"))
    emulator = EmulatorProcess.start(
        "--seed", str(args.seed), "--workspaces", str(args.workspaces),
        "--entries", str(args.entries), "--days", str(args.days),
        "--rate-per-second", str(PER_SECOND), "--rate-per-minute", str(PER_MINUTE),
        "--rate-per-day", "0", "--allow-http-webhooks",
        api_keys=(KEY,), log=work / "emulator.log", ready_timeout=300,
    )  # fmt: skip
    daemons: list[Daemon] = []
    try:
        with fresh_database(admin, keep=args.keep) as url:
            ports = [free_port() for _ in NAMES]
            public_url = f"http://127.0.0.1:{ports[0]}"  # (a load balancer in front of all)
            state = work / "state"  # one webhook token file for all, as the docs say
            state.mkdir(mode=0o700)
            env = clean_env({"STATE_DIRECTORY": str(state)})
            configs = []
            for name, port in zip(NAMES, ports, strict=True):
                sections = merge(
                    emulator_sections(emulator, key=KEY),
                    {
                        "database": {"url": url},
                        "logging": {"format": "json", "level": "debug"},
                        "limits": {
                            "per_second": PER_SECOND,
                            "per_minute": PER_MINUTE,
                            "per_day": round(PER_DAY * args.scale),
                        },
                        "sync": {**sync, "instance_id": name},
                        "webhooks": {"listen": f"127.0.0.1:{port}", "public_url": public_url},
                    },
                )
                sections["database"] = {"url": url}
                configs.append(write_config(work / f"{name}.toml", sections))
            out(
                "setup",
                f"{len(NAMES)} daemons ({', '.join(NAMES)}), {args.workspaces} workspaces x "
                f"{args.entries // max(1, args.workspaces):,} entries over {args.days} days, "
                f"limits {PER_SECOND}/s {PER_MINUTE}/min, lease_seconds "
                f"{DEFAULT_LEASE_SECONDS} (default)",
            )
            started = time.time()
            for number, (name, config) in enumerate(zip(NAMES, configs, strict=True)):
                if number and args.stagger:
                    time.sleep(args.stagger)
                daemons.append(Daemon(name, config, work / f"{name}.log", env))
            backfill_part(url, emulator, daemons, started)
            steady_part(url, emulator, daemons, sync, args.steady_seconds, args.scale)
            if not args.skip_takeover:
                takeover_part(url, emulator, daemons, sync["interval_seconds"], args.kills, env)
            codes = {d.name: d.stop() for d in daemons if d.process.poll() is None}
            out("stopped", ", ".join(f"{n} exit {c}" for n, c in codes.items()))
            out("leases_after_stop", len(leases(url)))
    finally:
        for daemon in daemons:
            if daemon.process.poll() is None:
                daemon.process.kill()
                daemon.process.wait()
        emulator.stop()
        if args.keep:
            out("work_dir", work)
        else:
            for path in sorted(work.rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()
            work.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
