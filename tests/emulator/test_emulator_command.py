"""``syncd emulator`` as a subprocess: readiness line, SIGTERM, loopback-only."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "syncd.emulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_ready_line_serves_and_stops_cleanly_on_sigterm():
    proc = _start(
        "--port",
        "0",
        "--entries",
        "200",
        "--api-key",
        "k1",
        "--api-key",
        "k2",
        "--now",
        "2026-11-27T12:00:00Z",
        "--extensions",
        "updated-events",
    )
    try:
        line = json.loads(proc.stdout.readline())
        assert line["event"] == "emulator_ready"
        url = line["url"]
        assert url.startswith("http://127.0.0.1:")
        assert not url.endswith(":0")
        assert line["api_url"] == url + "/v1"
        assert line["app_url"] == url
        req = urllib.request.Request(url + "/v1/workspaces", headers={"X-Api-Key": "k2"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert len(json.loads(resp.read())) == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()


def test_sigint_also_exits_zero():
    proc = _start("--port", "0", "--entries", "10")
    try:
        assert json.loads(proc.stdout.readline())["event"] == "emulator_ready"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()


def test_refuses_non_loopback_host():
    proc = _start("--host", "0.0.0.0", "--port", "0")
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert "loopback" in err
    assert out == ""


def test_syncd_cli_hook():
    from click.testing import CliRunner

    from syncd.cli import cli

    result = CliRunner().invoke(cli, ["emulator", "--help"])
    assert result.exit_code == 0
    assert "--allow-http-webhooks" in result.output
    result = CliRunner().invoke(cli, ["emulator", "--host", "10.0.0.1"])
    assert result.exit_code == 2
