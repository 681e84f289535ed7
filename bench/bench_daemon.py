"""Benchmarks of the daemon (``syncd -c FILE``) against the bundled emulator.

1. **Push latency.** Emulator and daemon as real processes on loopback sockets, the daemon
   subscribed through ``[webhooks] public_url``. 200 user actions on the emulator (timer
   start, timer stop, manual entry, in turn); each is timed from just before the control
   call (``POST /__emulator/timers/start`` ...) until the row is visible, in the state the
   action produced, to a separate read-only SQLite connection polling the mirror every
   millisecond. Reports p50/p99/max per kind and overall (target p99 <= 250 ms).
2. **Silent change.** A second daemon with a short hot-window interval. Entries inside the
   hot window are edited or deleted through the control API's silent
   ``PATCH``/``DELETE /__emulator/time-entries/{id}`` (no webhook) at random moments; each
   is timed until the mirror shows it. Reports every latency against the poll interval.
3. **A simulated 24 h day** in virtual time (see :func:`simulate_day` for exactly what runs).

Prints ``name: value`` lines. Usage::

    .venv/bin/python bench/bench_daemon.py [--events 200] [--silent 8] [--sim-interval 60]
        [--sim-events 300] [--skip-push] [--skip-silent] [--skip-sim]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import config as config_files
from tests.support.emulator import SYNCD, EmulatorProcess
from tests.support.net import free_port

KEY = "bench-key"
SEED_ARGS = ["--seed", "42", "--workspaces", "2", "--entries", "2000", "--days", "200"]


def out(name: str, value: Any) -> None:
    print(f"{name}: {value}", flush=True)


# ------------------------------------------------------------------------------ processes


def http(method: str, url: str, body: Any = None, timeout: float = 30) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def start_emulator(*extra: str, log: Path) -> EmulatorProcess:
    """Returns the seeded emulator run with ``extra``, delivering webhooks over plain HTTP."""
    return EmulatorProcess.start(
        *SEED_ARGS, "--allow-http-webhooks", *extra, api_keys=(KEY,), log=log
    )


def write_config(
    workdir: Path, emu: EmulatorProcess, port: int, **sections: dict[str, Any]
) -> Path:
    """Writes ``config.toml`` in ``workdir``: ``emu``'s API, a listener on ``port`` that
    subscribes itself, warnings only; ``sections`` add keys."""
    base = config_files.emulator_sections(emu, key=KEY, database=workdir / "mirror.sqlite")
    base["webhooks"] = {"listen": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}"}
    base["logging"]["level"] = "warning"
    merged = config_files.merge(base, sections)
    return config_files.write_config(workdir / "config.toml", merged)


class Daemon:
    def __init__(self, config: Path, port: int, workdir: Path) -> None:
        self.port = port
        self.db_path = workdir / "mirror.sqlite"
        self.proc = subprocess.Popen(
            [*SYNCD, "-c", str(config)],
            stdout=(workdir / "daemon.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}")
            try:
                jobs = self.healthz()["jobs"]
                if jobs["poll"]["last_success"] and jobs["housekeeping"]["last_success"]:
                    break
            except (OSError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("daemon did not finish its first poll")
            time.sleep(0.1)

    def healthz(self) -> dict:
        try:
            return http("GET", f"http://127.0.0.1:{self.port}/healthz", timeout=5)
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())

    def connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, isolation_level=None)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def poll_db(conn: sqlite3.Connection, sql: str, args: tuple, check, timeout: float) -> float:
    """Run ``sql`` every millisecond until ``check(row)``; returns ``perf_counter()`` then."""
    deadline = time.perf_counter() + timeout
    while True:
        row = conn.execute(sql, args).fetchone()
        now = time.perf_counter()
        if check(row):
            return now
        if now > deadline:
            raise TimeoutError(f"not visible after {timeout}s: {sql} {args}")
        time.sleep(0.001)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


# ------------------------------------------------------------------------------ 1. push


def bench_push_latency(root: Path, events: int) -> None:
    print("# push latency: control action -> row visible to a read-only SQLite reader")
    workdir = root / "push"
    workdir.mkdir()
    emu = start_emulator(log=workdir / "emulator.log")
    port = free_port()
    daemon = Daemon(write_config(workdir, emu, port), port, workdir)
    conn = daemon.connect()
    workspaces = emu.workspace_ids()
    rng = random.Random(1)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    latencies: dict[str, list[float]] = {"start": [], "stop": [], "manual": []}
    sql = "SELECT end_time, updated_at FROM time_entries WHERE id = ?"
    try:
        for i in range(events):
            kind = ("start", "stop", "manual")[i % 3]
            workspace = workspaces[(i // 3) % len(workspaces)]
            started = time.perf_counter()
            if kind == "start":
                entry = emu.control("POST", "/timers/start", {"workspace_id": workspace})
            elif kind == "stop":  # the timer the previous action started
                entry = emu.control("POST", "/timers/stop", {"workspace_id": workspace})
            else:
                begin = today + timedelta(minutes=rng.randrange(0, 20 * 60))
                entry = emu.control(
                    "POST",
                    "/manual-entries",
                    {
                        "workspace_id": workspace,
                        "start_time": begin.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "end_time": (begin + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "description": f"bench {i}",
                    },
                )
            want_end, want_updated = entry["end_time"], entry["updatedAt"]
            seen = poll_db(
                conn,
                sql,
                (entry["id"],),
                lambda row, e=want_end, u=want_updated: (
                    row is not None and row[0] == e and row[1] == u
                ),
                timeout=10,
            )
            latencies[kind].append(seen - started)
            time.sleep(rng.uniform(0.01, 0.05))
        everything = [x for values in latencies.values() for x in values]
        out("push_events", len(everything))
        for kind, values in [*latencies.items(), ("all", everything)]:
            out(
                f"push_latency_ms_{kind}",
                f"p50 {ms(percentile(values, 50))} p99 {ms(percentile(values, 99))} "
                f"max {ms(max(values))} (n={len(values)})",
            )
        out("push_latency_p99_target_ms", "250")
        stats = emu.control("GET", "/stats")
        out("push_upstream_requests_total", stats["keys"][KEY]["requests"])
        out("push_rate_limited", stats["keys"][KEY]["rate_limited"])
    finally:
        conn.close()
        code = daemon.stop()
        emu.stop()
    out("push_daemon_exit", code)


# ------------------------------------------------------------------------------ 2. silent


def bench_silent_changes(root: Path, changes: int, interval: int) -> None:
    print(f"# silent change: edit/delete without any event, hot-window interval {interval}s")
    workdir = root / "silent"
    workdir.mkdir()
    emu = start_emulator(log=workdir / "emulator.log")
    port = free_port()
    # A large per_day so the plan keeps the configured interval (it would stretch a 10 s
    # poll of 2 workspaces under the 10,000/day quota); the emulator keeps its 10/s, 100/min.
    config = write_config(
        workdir,
        emu,
        port,
        sync={"interval_seconds": interval},
        limits={"per_day": 1_000_000},
    )
    daemon = Daemon(config, port, workdir)
    conn = daemon.connect()
    effective = daemon.healthz()["plan"]["poll_interval_seconds"]
    out("silent_poll_interval_configured_s", interval)
    out("silent_poll_interval_effective_s", effective)
    today = datetime.now(UTC).date()
    hot = [
        e
        for w in emu.workspace_ids()
        for e in emu.control("GET", f"/time-entries?workspace_id={w}")
        if e["end_time"] and e["date"][:10] >= (today - timedelta(days=2)).isoformat()
    ]
    rng = random.Random(2)
    rng.shuffle(hot)
    # (kind, latency, wait for the next poll, poll start -> visible)
    results: list[tuple[str, float, float, float]] = []
    try:
        for i, entry in enumerate(hot[:changes]):
            time.sleep(rng.uniform(0, effective))
            changed_at = time.time()
            started = time.perf_counter()
            if i % 2 == 0:
                kind, text = "edit", f"silently edited {i}"
                emu.control("PATCH", f"/time-entries/{entry['id']}", {"description": text})
                sql = "SELECT description FROM time_entries WHERE id = ?"

                def check(row, t=text):
                    return row is not None and row[0] == t
            else:
                kind = "delete"
                emu.control("DELETE", f"/time-entries/{entry['id']}")
                sql = "SELECT deleted_at FROM time_entries WHERE id = ?"

                def check(row):
                    return row is not None and row[0] is not None

            seen = poll_db(conn, sql, (entry["id"],), check, timeout=4 * effective + 30)
            seen_at = changed_at + (seen - started)
            poll_started = datetime.fromisoformat(
                daemon.healthz()["jobs"]["poll"]["last_started"].replace("Z", "+00:00")
            ).timestamp()
            results.append(
                (kind, seen - started, poll_started - changed_at, seen_at - poll_started)
            )
        latencies = [r[1] for r in results]
        waits = [r[2] for r in results]
        scans = [r[3] for r in results]
        for kind in ("edit", "delete"):
            values = [r[1] for r in results if r[0] == kind]
            out(f"silent_{kind}_latency_s", " ".join(f"{v:.2f}" for v in values))
        out(
            "silent_latency_s",
            f"p50 {percentile(latencies, 50):.2f} max {max(latencies):.2f} (n={len(results)}, "
            f"interval {effective:g}s)",
        )
        out(
            "silent_latency_parts",
            f"wait for the next poll {min(waits):.2f}..{max(waits):.2f} s (the change lands at a "
            f"random moment of the interval); poll start -> visible p50 "
            f"{ms(percentile(scans, 50))} ms, max {ms(max(scans))} ms",
        )
        out(
            "silent_latency_bound",
            f"max latency {max(latencies):.2f}s vs interval + one poll "
            f"{effective + max(scans):.2f}s",
        )
        stats = emu.control("GET", "/stats")
        out("silent_rate_limited", stats["keys"][KEY]["rate_limited"])
    finally:
        conn.close()
        daemon.stop()
        emu.stop()


# ------------------------------------------------------------------------------ 3. a day


class VirtualTime:
    """The emulator's clock, which the simulation moves forward with ``POST /__emulator/clock``.

    ``now()`` = real time + a calibrated offset + everything advanced so far, so the budget,
    the sync engine and the emulator's rate-limit windows all see the same instant.
    """

    def __init__(self, emu: EmulatorProcess) -> None:
        self.emu = emu
        self.advanced = 0.0
        self.slept = 0.0
        before = time.time()
        epoch = emu.control("GET", "/clock")["epoch"]
        self.offset = epoch - (before + time.time()) / 2

    def now(self) -> float:
        return time.time() + self.offset + self.advanced

    def now_dt(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    async def advance(self, seconds: float) -> None:
        if seconds <= 0:
            return
        await asyncio.to_thread(self.emu.control, "POST", "/clock", {"advance_seconds": seconds})
        self.advanced += seconds

    async def sleep(self, seconds: float) -> None:
        """What the rate budget waits with: the whole world skips ahead."""
        self.slept += max(0.0, seconds)
        await self.advance(seconds)
        await asyncio.sleep(0)


class VirtualScheduler:
    """Stands in for ``DaemonScheduler``: records the plan's intervals and pushed windows;
    :func:`simulate_day` fires the jobs at virtual times."""

    def __init__(self, poll: float, reconcile: float, debounce: float) -> None:
        self.intervals = {"poll": poll, "reconcile": reconcile, "housekeeping": 3600.0}
        self.changed: set[str] = set()
        self.pending: set[tuple[str, str]] = set()
        self.refresh_at: float | None = None
        self.debounce = debounce
        self.clock = time.time
        self.progress_notes = 0
        self.run_now_requested: list[str] = []

    def apply_plan(self, plan: Any) -> bool:
        for name, value in (
            ("poll", plan.poll_interval_seconds),
            ("reconcile", plan.reconcile_interval_seconds),
        ):
            if value != self.intervals[name]:
                self.intervals[name] = value
                self.changed.add(name)
        return bool(self.changed)

    def request_refresh(self, workspace_id: str, date: str) -> bool:
        self.pending.add((workspace_id, date))
        if self.refresh_at is None:
            self.refresh_at = self.clock() + self.debounce
        return True

    started = True  # the simulation fires the jobs itself, from the start
    stopping = False  # and never stops them half-way

    def progress(self) -> None:
        """A long job committed a window (the daemon's ``on_window``)."""
        self.progress_notes += 1

    def run_now(self, name: str) -> None:
        """Asked for by a daemon that takes the leader lease; the simulation runs alone."""
        self.run_now_requested.append(name)

    def status(self) -> dict:
        return {"jobs": {}}

    def health(self) -> tuple[bool, dict]:
        return True, {}


#: Age bands of the silent changes in the simulated day (days back from the day simulated):
#: the hot window (3 days), the rest of the warm tier (62 days), and older history.
TIER_BANDS = {"hot": (0, 2), "warm": (3, 61), "cold": (62, 1094)}
TIER_TARGETS = {"hot": 15 * 60, "warm": 3600, "cold": 86_400}


class SilentChanges:
    """Edits, deletes and backdated adds made through the emulator's silent control API (no
    webhook), in turn across the hot, warm and cold ages; each is timed until the mirror
    shows it."""

    def __init__(self, emu: EmulatorProcess, db: Path, day: datetime, rng: random.Random) -> None:
        self.emu, self.db, self.day, self.rng = emu, db, day, rng
        self.entries = [
            e
            for w in emu.workspace_ids()
            for e in emu.control("GET", f"/time-entries?workspace_id={w}")
            if e.get("end_time")
        ]
        self.members = {
            w["id"]: [m["id"] for m in w["members"]] for w in emu.control("GET", "/workspaces")
        }
        self.pending: list[tuple[str, str, str, str, float]] = []  # tier, kind, id, value, at
        self.arrived: dict[str, list[float]] = {tier: [] for tier in TIER_BANDS}
        self.made = 0

    def _pick(self, tier: str) -> dict[str, Any] | None:
        low, high = TIER_BANDS[tier]
        first = (self.day - timedelta(days=high)).date().isoformat()
        last = (self.day - timedelta(days=low)).date().isoformat()
        band = [e for e in self.entries if first <= e["start_time"][:10] <= last]
        return self.rng.choice(band) if band else None

    def make(self, now: float) -> None:
        tier = list(TIER_BANDS)[self.made % 3]
        kind = ("edit", "delete", "add")[(self.made // 3) % 3]
        self.made += 1
        if kind == "add":
            low, high = TIER_BANDS[tier]
            start = self.day - timedelta(days=self.rng.randint(max(low, 1), high), hours=-9)
            workspace = self.rng.choice(list(self.members))
            (created,) = self.emu.control(
                "POST",
                "/time-entries",
                [
                    {
                        "workspace_id": workspace,
                        "team_member_id": self.rng.choice(self.members[workspace]),
                        "start_time": start.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                        "end_time": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                        "description": f"backdated {self.made}",
                    }
                ],
            )
            self.pending.append((tier, kind, created["id"], "", now))
            return
        entry = self._pick(tier)
        if entry is None:
            return
        self.entries.remove(entry)
        if kind == "edit":
            text = f"silently fixed {self.made}"
            self.emu.control("PATCH", f"/time-entries/{entry['id']}", {"description": text})
            self.pending.append((tier, kind, entry["id"], text, now))
        else:
            self.emu.control("DELETE", f"/time-entries/{entry['id']}")
            self.pending.append((tier, kind, entry["id"], "", now))

    def check(self, now: float) -> None:
        if not self.pending:
            return
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            left = []
            for tier, kind, entry_id, value, at in self.pending:
                row = conn.execute(
                    "SELECT description, deleted_at FROM time_entries WHERE id = ?", (entry_id,)
                ).fetchone()
                seen = row is not None and (
                    (kind == "edit" and row[0] == value)
                    or (kind == "delete" and row[1] is not None)
                    or kind == "add"
                )
                if seen:
                    self.arrived[tier].append(now - at)
                else:
                    left.append((tier, kind, entry_id, value, at))
            self.pending = left


async def simulate_day(
    root: Path,
    *,
    interval: int,
    events: int,
    debounce: float,
    seed: list[str] | None = None,
    silent: int = 0,
) -> None:
    """One UTC day of the daemon's work in virtual time.

    - The emulator runs as a subprocess with its documented limits switched on (10/s,
      100/min, 10,000 per UTC day), seeded with ``seed`` (from ``main``: 3 workspaces x
      20,000 entries over 3 years), its clock starting at 00:00:05 UTC of a fixed day.
    - The daemon is ``syncd.daemon.Daemon`` with its own job bodies (poll, reconcile, push
      refresh, housekeeping: budget prune, plan, webhook subscription) and its own webhook
      handler, served by the real receiver app on a loopback port that the emulator delivers
      to. Only APScheduler is replaced: a virtual-time loop fires each job at the interval
      the daemon's plan sets (poll and sweep), hourly (housekeeping) and ``debounce`` seconds
      after a push (refresh, coalesced like the daemon's); runs that fall due together are
      coalesced, a refresh goes first.
    - The runtime is built like ``open_runtime`` builds it (one store, session, budget,
      client, engine), except that the rate budget's clock and sleep and the engine's clock
      are the virtual clock: a budget wait advances the emulator's clock instead of sleeping.
      Between jobs the emulator's clock is advanced to the next due time.
    - ``events`` user actions (timer start / stop in turn, in both workspaces) happen at
      random moments between 07:00 and 19:00; each is delivered as a real webhook.
    - ``silent`` changes (edits, deletes, backdated adds, in turn in the hot, warm and cold
      ages) are made through the silent control API at random moments between 01:00 and
      21:00; each is timed until the mirror shows it (checked after every job), and the
      worst per tier is reported against its period.
    - The mirror starts empty, so the day includes the first backfill.
    """
    import syncd.daemon.runner
    from syncd.budget import BudgetLimits, RateBudget, key_id_for
    from syncd.client import HttpClient, RetryPolicy
    from syncd.config import load_config
    from syncd.daemon.runner import Daemon
    from syncd.daemon.webhook import create_receiver_app, start_receiver
    from syncd.log import configure_logging
    from syncd.records import Priority
    from syncd.service import Runtime
    from syncd.store import AsyncStore
    from syncd.store.ledgers import budget_ledger
    from syncd.sync import SyncEngine, SyncSettings

    print(
        f"# simulated 24 h (virtual time; emulator rate limits ON: 10/s, 100/min, 10,000/day)"
        f"\n#   sync.interval_seconds={interval}, {events} timer events, debounce {debounce}s"
        f"\n#   seed {' '.join(seed or SEED_ARGS)}, {silent} silent changes"
    )
    workdir = root / "day"
    workdir.mkdir()
    day = datetime(2026, 3, 2, tzinfo=UTC)
    emu = start_emulator(
        "--now", (day + timedelta(seconds=5)).isoformat(), *(seed or []), log=workdir / "emu.log"
    )
    port = free_port()
    config = load_config(
        write_config(
            workdir,
            emu,
            port,
            sync={"interval_seconds": interval},
            webhooks={"debounce_seconds": debounce},
        )
    )
    configure_logging("error", "console", stream=sys.stderr)
    vt = VirtualTime(emu)
    # The daemon reads "today" (for the history length in its plan) from this function.
    syncd.daemon.utc_now = vt.now_dt  # type: ignore[assignment]
    daemon = Daemon(config)
    scheduler = VirtualScheduler(interval, interval, debounce)
    scheduler.clock = vt.now
    daemon.scheduler = scheduler  # type: ignore[assignment]
    store = await AsyncStore.open(config.database.path)
    session = aiohttp.ClientSession()
    key = config.api.key_value()
    budget = RateBudget(
        budget_ledger(store.store, key_id_for(key)),
        limits=BudgetLimits(
            per_second=config.limits.per_second,
            per_minute=config.limits.per_minute,
            per_day=config.limits.per_day,
            safety_margin=config.limits.safety_margin,
        ),
        daily_share=config.limits.daemon_share,
        runner=store.call,
        clock=vt.now,
        sleep=vt.sleep,
    )
    client = HttpClient(
        session,
        budget,
        api_key=key,
        api_url=config.api.url,
        app_url=config.api.app_url,
        retry=RetryPolicy(max_attempts=config.api.max_attempts, total_timeout=3600),
        on_outcome=daemon.metrics.request,
    )
    engine = SyncEngine(
        client,
        store,
        SyncSettings.from_config(config),
        clock=vt.now_dt,
        on_window=daemon._progress,  # as the daemon's own runtime reports committed windows
    )
    daemon.runtime = Runtime(config, store, session, budget, client, engine)

    delivered = asyncio.Event()
    outcomes: Counter[str] = Counter()

    async def on_event(event: Any) -> str:
        outcome = await daemon._on_event(event)
        outcomes[outcome] += 1
        delivered.set()
        return outcome

    app = create_receiver_app(
        token=await daemon._token(),
        secret=None,
        on_event=on_event,
        health=lambda: (True, {}),
        metrics=daemon.metrics,
    )
    runner, _ = await start_receiver(app, "127.0.0.1", port)

    start = vt.now()
    end = day.timestamp() + 86_400
    rng = random.Random(3)
    workspaces = emu.workspace_ids()
    actions = sorted(day.timestamp() + rng.uniform(7 * 3600, 19 * 3600) for _ in range(events))
    changes = SilentChanges(emu, config.database.path, day, random.Random(5)) if silent else None
    # Silent changes between 01:00 and 21:00, after the first backfill.
    silent_at = sorted(day.timestamp() + rng.uniform(3600, 21 * 3600) for _ in range(silent))
    silent_index = 0
    due = {"housekeeping": start, "poll": start, "reconcile": start + interval}
    runs: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    plans: list[tuple[float, float, int]] = []
    real_started = time.monotonic()
    action_index = 0
    running: dict[str, bool] = {w: False for w in workspaces}

    async def run(name: str, job: Any) -> None:
        runs[name] += 1
        try:
            await job
        except Exception as exc:  # recorded like the scheduler records failed jobs
            failures[f"{name}: {type(exc).__name__}: {str(exc)[:120]}"] += 1

    try:
        while True:
            candidates = [(t, name) for name, t in due.items()]
            if scheduler.refresh_at is not None:
                candidates.append((scheduler.refresh_at - 1e-6, "refresh"))
            if action_index < len(actions):
                candidates.append((actions[action_index], "action"))
            if silent_index < len(silent_at):
                candidates.append((silent_at[silent_index], "silent"))
            when, name = min(candidates)
            if when >= end:
                break
            await vt.advance(when - vt.now())
            if name == "silent":
                assert changes is not None
                await asyncio.to_thread(changes.make, vt.now())
                silent_index += 1
                continue
            if name == "action":
                workspace = workspaces[action_index % len(workspaces)]
                path = "/timers/stop" if running[workspace] else "/timers/start"
                running[workspace] = not running[workspace]
                delivered.clear()
                await asyncio.to_thread(emu.control, "POST", path, {"workspace_id": workspace})
                try:
                    await asyncio.wait_for(delivered.wait(), 5)
                except TimeoutError:
                    failures["webhook delivery not received within 5 s"] += 1
                action_index += 1
                continue
            if name == "refresh":
                windows, scheduler.pending = scheduler.pending, set()
                scheduler.refresh_at = None
                await run("refresh", daemon._refresh(windows))
                continue
            await run(name, getattr(daemon, f"_{name}")())
            if changes is not None:
                changes.check(vt.now())
            if daemon.plan is not None:
                shape = (
                    daemon.plan.poll_interval_seconds,
                    daemon.plan.reconcile_interval_seconds,
                    daemon.plan.reconcile_windows_per_slice,
                )
                if not plans or plans[-1] != shape:
                    plans.append(shape)
            # APScheduler: the next run one interval on; runs missed meanwhile are coalesced;
            # a job whose interval the plan changed starts a fresh interval from now.
            for job in list(scheduler.changed):
                due[job] = vt.now() + scheduler.intervals[job]
            scheduler.changed.clear()
            step = scheduler.intervals[name]
            while due[name] <= vt.now():
                due[name] += step
    finally:
        await runner.cleanup()
        await session.close()

    grants = store.store.db.execute_sql(
        "SELECT priority, COUNT(*) FROM budget_grants GROUP BY priority"
    ).fetchall()
    by_priority = {Priority(p).name.lower(): n for p, n in grants}
    day_grants = store.store.db.execute_sql(
        "SELECT COUNT(*) FROM budget_grants WHERE granted_at >= ? AND granted_at < ?",
        (day.timestamp(), end),
    ).fetchone()[0]
    backfill_rows = store.store.db.execute_sql(
        "SELECT COUNT(*) FROM window_scans WHERE source = 'backfill'"
    ).fetchone()[0]
    await store.close()
    stats = emu.control("GET", "/stats")
    emu.stop()

    key_stats = stats["keys"][KEY]
    plan = daemon.plan
    assert plan is not None
    out("sim_virtual_span_h", f"{(vt.now() - start) / 3600:.2f}")
    out("sim_real_seconds", f"{time.monotonic() - real_started:.0f}")
    out("sim_budget_waited_virtual_s", f"{vt.slept:.0f}")
    out("sim_job_runs", dict(runs))
    out("sim_job_failures", dict(failures) or 0)
    out("sim_webhook_outcomes", dict(outcomes))
    out(
        "sim_plan",
        f"poll every {plan.poll_interval_seconds:g}s ({plan.requests_per_poll} req/poll planned, "
        f"stretched={plan.poll_stretched}), sweep {plan.reconcile_windows_per_slice} window(s) "
        f"every {plan.reconcile_interval_seconds:g}s, planned {plan.planned_per_day:.0f}/day "
        f"of a {plan.daemon_budget}/day daemon share",
    )
    out("sim_plans_used", " -> ".join(f"poll {p:g}s/sweep {r:g}s x{n}" for p, r, n in plans))
    out("sim_requests_upstream", key_stats["requests"])
    out("sim_requests_in_the_utc_day", day_grants)
    out("sim_requests_by_priority", by_priority)
    out("sim_backfill_windows", backfill_rows)
    polls = max(1, runs["poll"])
    poll_requests = by_priority.get("hot", 0)
    out(
        "sim_poll_requests_actual_vs_plan",
        f"{poll_requests / polls:.2f} per poll actual vs {plan.requests_per_poll} planned "
        f"({poll_requests} hot requests over {polls} polls)",
    )
    sweeps = max(1, runs["reconcile"])
    out(
        "sim_sweep_requests_actual_vs_plan",
        f"{by_priority.get('reconcile', 0) / sweeps:.2f} per sweep run actual vs "
        f"{plan.reconcile_windows_per_slice} planned ({by_priority.get('reconcile', 0)} requests "
        f"over {runs['reconcile']} runs)",
    )
    out("sim_requests_vs_plan", f"{key_stats['requests'] / plan.planned_per_day:.2f}x")
    out("sim_requests_vs_quota", f"{key_stats['requests'] / 10_000:.1%} of 10,000")
    out("sim_bytes_sent_upstream_mb", f"{key_stats.get('bytes_sent', 0) / 1e6:.1f}")
    for t in plan.tiers:
        out(f"sim_plan_tier_{t.name}", t.describe().split(": ", 1)[1])
    if changes is not None:
        for tier, ages in changes.arrived.items():
            late = [c for c in changes.pending if c[0] == tier]
            worst = max(ages) if ages else None
            out(
                f"sim_silent_{tier}_worst_staleness_s",
                f"{worst:.0f} (target <= {TIER_TARGETS[tier]}; {len(ages)} arrived, "
                f"{len(late)} still pending at the end)"
                if worst is not None
                else f"n/a ({len(late)} pending)",
            )
    out("sim_rate_limited", key_stats["rate_limited"])
    out("sim_max_in_any_second", key_stats["max_in_any_second"])
    out("sim_max_in_any_minute", key_stats["max_in_any_minute"])


# ------------------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200, help="push events to time")
    parser.add_argument("--silent", type=int, default=8, help="silent changes to time")
    parser.add_argument("--silent-interval", type=int, default=10, help="poll interval (s)")
    parser.add_argument("--sim-interval", type=int, default=60, help="simulated poll interval")
    parser.add_argument("--sim-events", type=int, default=300, help="timer events in the day")
    parser.add_argument("--skip-push", action="store_true")
    parser.add_argument("--skip-silent", action="store_true")
    parser.add_argument("--skip-sim", action="store_true")
    parser.add_argument(
        "--sim-entries", type=int, default=60_000, help="entries of the simulated account"
    )
    parser.add_argument("--sim-silent", type=int, default=60, help="silent changes in the day")
    args, _ = parser.parse_known_args()  # bench/run.py passes its own arguments on
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp:
        root = Path(tmp)
        if not args.skip_push:
            bench_push_latency(root, args.events)
        if not args.skip_silent:
            bench_silent_changes(root, args.silent, args.silent_interval)
        if not args.skip_sim:
            sim_seed = ["--workspaces", "3", "--entries", str(args.sim_entries), "--days", "1095"]
            asyncio.run(
                simulate_day(
                    root,
                    interval=args.sim_interval,
                    events=args.sim_events,
                    debounce=2.0,
                    seed=sim_seed,
                    silent=args.sim_silent,
                )
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
