"""``syncd status`` lists the live instances, who holds each workspace's lease and until when,
and which instance keeps the webhook subscription."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from syncd.budget import key_id_for
from syncd.cli import cli
from syncd.cli.render import print_status
from syncd.config import parse_config
from syncd.records import Workspace
from syncd.status import MirrorStatus, describe_status
from syncd.store import Store
from syncd.store.leases import Leases, WorkShare


def test_status_lists_instances_workspace_leases_and_the_leader(tmp_path: Path) -> None:
    db = tmp_path / "mirror.sqlite"
    text = f'[api]\nkey = "k"\n[database]\npath = "{db}"\n'
    (tmp_path / "config.toml").write_text(text)
    config = parse_config(text, base_dir=tmp_path, env={})
    store = Store(db)
    try:
        store.upsert_workspaces([Workspace("ws-1", "Main"), Workspace("ws-2", "Side")], "t")
        key_id = key_id_for("k")
        daemon = WorkShare(Leases(store.db), key_id, "db1:10:aaaaaa", 60.0)
        assert daemon.claim(["ws-1"]) == ["ws-1"]
        assert daemon.beat(lead=True)
        once = WorkShare(Leases(store.db), key_id, "db2:20:bbbbbb", 60.0, daemon=False)
        assert once.claim(["ws-1", "ws-2"]) == ["ws-2"]
        other_key = WorkShare(Leases(store.db), "another", "db3:30:cccccc", 60.0)
        other_key.claim(["ws-9"])

        status = describe_status(config, store)
    finally:
        store.close()

    sharing = status.sharing
    assert [(i.what, i.kind) for i in sharing.instances] == [
        ("db1:10:aaaaaa", "daemon"),
        ("db3:30:cccccc", "daemon"),
        ("db2:20:bbbbbb", "once"),
    ]
    # this key's workspaces only, with their holders
    assert [(w.what, w.holder) for w in sharing.workspaces] == [
        ("ws-1", "db1:10:aaaaaa"),
        ("ws-2", "db2:20:bbbbbb"),
    ]
    assert sharing.leader is not None
    assert sharing.leader.holder == "db1:10:aaaaaa"
    expires = datetime.fromisoformat(sharing.workspaces[0].expires_at.replace("Z", "+00:00"))
    assert 50 < (expires - datetime.now(UTC)).total_seconds() <= 60
    assert MirrorStatus.from_json(status.as_json()) == status

    out = io.StringIO()
    print_status(status, out, now=datetime.now(UTC))
    shown = out.getvalue()
    assert "instances: 3 live" in shown
    assert "db1:10:aaaaaa (daemon, keeps the webhook subscription)" in shown
    assert "workspace Main: db1:10:aaaaaa, lease lapses in" in shown
    assert "workspace Side: db2:20:bbbbbb" in shown

    result = CliRunner().invoke(cli, ["-c", str(tmp_path / "config.toml"), "status", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)["sharing"]
    assert document["leader"]["holder"] == "db1:10:aaaaaa"
    assert [w["what"] for w in document["workspaces"]] == ["ws-1", "ws-2"]


def test_status_shows_no_instances_when_none_runs(tmp_path: Path) -> None:
    db = tmp_path / "mirror.sqlite"
    text = f'[api]\nkey = "k"\n[database]\npath = "{db}"\n'
    config = parse_config(text, base_dir=tmp_path, env={})
    Store(db).close()
    store = Store(db)
    try:
        status = describe_status(config, store)
    finally:
        store.close()
    assert status.sharing.as_json() == {"instances": [], "workspaces": [], "leader": None}
    out = io.StringIO()
    print_status(status, out, now=datetime.now(UTC))
    assert "instances:" not in out.getvalue()
