"""Secrets at rest, against the emulator over real sockets with the daemon as a subprocess:
no log line carries the API key, the webhook token or the secret, even at ``-v``; the token
lives in a 0600 file and nowhere in the mirror (a token left there by an older version is
moved out); the mirror is 0640; an exposed listener without a secret is warned about."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

from syncd.store import Store
from tests.support.daemon import wait_for

API_KEY = "tt_live_8c1f0e4b6a2d47f3b9e5a7c1d2e3f405"
SECRET = "whsec-4f6b1c9e2a7d4e8f9a0b"
LEGACY_TOKEN = "Lx3bQ9mZ0v7NkR2tY5wP8sD1fG4hJ6kL9zX2cV5bN8m"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def mirror_bytes(db_path: Path) -> bytes:
    """Everything a reader of the mirror's files could read: database, -wal and -shm."""
    files = [db_path.with_name(db_path.name + suffix) for suffix in ("", "-wal", "-shm")]
    return b"".join(p.read_bytes() for p in files if p.exists())


def start_verbose(daemon) -> None:
    """Start the daemon with ``-v`` (debug logging, SQL statements included)."""
    daemon.runs += 1
    log = open(daemon.workdir / f"daemon-{daemon.runs}.log", "wb")  # noqa: SIM115
    daemon.proc = subprocess.Popen(
        daemon.command("-v", "--log-sql", "run"), stdout=log, stderr=subprocess.STDOUT
    )
    wait_for(daemon._listening, 30, what="the daemon's listener")
    daemon.wait_job("poll", timeout=30)


def test_no_secret_reaches_the_log_at_debug_level_or_the_mirror(emulator_factory, daemon_factory):
    emu = emulator_factory(keys=(API_KEY,), entries=200, days=30)
    emu.api_key = API_KEY
    daemon = daemon_factory(emu, overrides={"webhooks": {"secret": SECRET}})
    start_verbose(daemon)
    daemon.wait_job("housekeeping", timeout=15)
    token = daemon.token
    assert emu.subscriptions(daemon.hook_url)[0]["status"] == "ACTIVE"

    # A signed delivery goes through the receiver, the ledger and the mirror.
    workspace = emu.workspace_ids()[0]
    entry = emu.control("POST", "/timers/start", {"workspace_id": workspace})
    wait_for(
        lambda: daemon.scalar("SELECT source FROM time_entries WHERE id = ?", entry["id"]),
        5,
        what="the delivery",
    )
    assert daemon.stop()[0] == 0

    text = daemon.log_text()
    events = daemon.log_events()
    assert any(e["logger"] == "peewee" for e in events), "SQL debug lines were logged"
    assert any("parameters not logged" in e["event"] for e in events)
    subscribed = next(e for e in events if e["event"] == "webhook_subscribed")
    assert subscribed["url"] == f"{daemon.base_url}/hooks/<token>"
    for name, secret in (("API key", API_KEY), ("webhook token", token), ("secret", SECRET)):
        assert secret not in text, f"the {name} is in the log"
        assert secret.encode() not in mirror_bytes(daemon.db_path), f"the {name} is in the mirror"

    token_file = daemon.workdir / "mirror.sqlite.webhook-token"
    assert mode(token_file) == 0o600
    assert mode(daemon.db_path) == 0o640
    stored = json.loads(daemon.setting("webhook_subscription"))
    assert stored["url"] == f"{daemon.base_url}/hooks/<token>"
    assert stored["secret_verifier"].startswith("scrypt$")
    assert "secret_digest" not in stored


def test_a_token_an_older_version_kept_in_the_mirror_is_moved_to_its_file(
    emulator_factory, daemon_factory
):
    emu = emulator_factory(entries=200, days=30)
    daemon = daemon_factory(emu)
    # The mirror and the subscription as an older version left them.
    old_url = f"{daemon.base_url}/hooks/{LEGACY_TOKEN}"
    events = ["TIMER_STARTED", "TIMER_STOPPED", "MANUAL_TIME_ADDED"]
    events += ["CLIENT_CREATED", "PROJECT_CREATED", "TASK_CREATED"]
    made = emu.zapier("POST", "/webhooks/subscribe", {"url": old_url, "events": events}).json()
    with Store(daemon.db_path) as store:
        store.set_setting("webhook_token", LEGACY_TOKEN)
        record = {"id": made["webhook"]["id"], "url": old_url, "secret_digest": None}
        store.set_setting("webhook_subscription", json.dumps(record))
    assert LEGACY_TOKEN.encode() in mirror_bytes(daemon.db_path)

    daemon.start()
    daemon.wait_job("housekeeping", timeout=15)
    token_file = daemon.workdir / "mirror.sqlite.webhook-token"
    assert token_file.read_text().strip() == LEGACY_TOKEN
    assert mode(token_file) == 0o600
    assert daemon.setting("webhook_token") is None
    # Erased, not merely unlinked: no page of the files a reader can open still holds it.
    assert LEGACY_TOKEN.encode() not in mirror_bytes(daemon.db_path)
    # The subscription made by the older version goes on working, not re-created.
    assert [s["id"] for s in emu.subscriptions()] == [made["webhook"]["id"]]
    entry = emu.control("POST", "/timers/start", {"workspace_id": emu.workspace_ids()[0]})
    wait_for(
        lambda: daemon.scalar("SELECT source FROM time_entries WHERE id = ?", entry["id"]),
        5,
        what="a delivery to the old token",
    )
    assert daemon.stop()[0] == 0
    assert LEGACY_TOKEN not in daemon.log_text()
    assert not [e for e in daemon.log_events() if e["event"] == "webhook_receiver_exposed"]


def test_a_listener_on_every_interface_without_a_secret_is_warned_about(
    emulator_factory, daemon_factory
):
    emu = emulator_factory(entries=50, days=10)
    exposed = daemon_factory(emu, subscribe=False)
    signed = daemon_factory(emu, subscribe=False, overrides={"webhooks": {"secret": SECRET}})
    for daemon in (exposed, signed):
        text = daemon.config_path.read_text()
        daemon.config_path.write_text(
            text.replace(f'"127.0.0.1:{daemon.port}"', f'"0.0.0.0:{daemon.port}"')
        )
        daemon.start(wait_poll=False)
        wait_for(
            lambda d=daemon: any(e["event"] == "daemon_started" for e in d.log_events()),
            5,
            what="the start to be logged",
        )
        assert daemon.stop()[0] == 0
    warnings = [e for e in exposed.log_events() if e["event"] == "webhook_receiver_exposed"]
    assert len(warnings) == 1
    assert warnings[0]["level"] == "warning"
    assert warnings[0]["host"] == "0.0.0.0"
    assert "webhooks.secret" in warnings[0]["advice"]
    assert not [e for e in signed.log_events() if e["event"] == "webhook_receiver_exposed"]
