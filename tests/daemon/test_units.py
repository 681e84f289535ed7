"""The shipped systemd units carry the settings the operations guide promises."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"
FILES = ("syncd.service", "syncd-once.service", "syncd-once.timer")


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A minimal unit-file parser: sections of keys with every value (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: setting outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a setting: {line}"
        assert "#" not in value, f"{path.name}: trailing comment in a value: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(unit: dict, section: str, key: str) -> str:
    values = unit[section][key]
    assert len(values) == 1, (section, key, values)
    return values[0]


SHARED = {
    "DynamicUser": "yes",
    "User": "syncd",
    "StateDirectory": "syncd",
    "ConfigurationDirectory": "syncd",
    "LoadCredential": "syncd_api_key:/etc/syncd/api_key",
    "ProtectSystem": "strict",
    "NoNewPrivileges": "yes",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "CapabilityBoundingSet": "",
}


def test_daemon_unit():
    unit = parse_unit(UNITS / "syncd.service")
    service = unit["Service"]
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "NotifyAccess") == "main"
    assert one(unit, "Service", "ExecStart") == (
        "/opt/syncd/bin/syncd -c /etc/syncd/config.toml run"
    )
    assert int(one(unit, "Service", "WatchdogSec")) > 0
    assert one(unit, "Service", "Restart") == "on-failure"
    # A configuration problem (exit 2: a taken port, a missing directory) is not retried.
    assert one(unit, "Service", "RestartPreventExitStatus") == "2"
    assert one(unit, "Service", "TimeoutStopSec")
    for key, value in SHARED.items():
        assert one(unit, "Service", key) == value, key
    assert service["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


@pytest.mark.parametrize("name", ["syncd.service", "syncd-once.service"])
def test_units_raise_the_file_limit(name):
    """Under systemd's default soft limit of 1024 descriptors, 1,050 slow webhook clients
    starved the daemon ("Too many open files"); the receiver's connection cap follows the
    limit, so the units raise it."""
    unit = parse_unit(UNITS / name)
    assert int(one(unit, "Service", "LimitNOFILE")) >= 65536


def test_once_unit_shares_identity_and_sandbox():
    unit = parse_unit(UNITS / "syncd-once.service")
    daemon = parse_unit(UNITS / "syncd.service")
    assert one(unit, "Service", "Type") == "oneshot"
    assert one(unit, "Service", "ExecStart") == (
        "/opt/syncd/bin/syncd -c /etc/syncd/config.toml --once"
    )
    for key, value in SHARED.items():
        assert one(unit, "Service", key) == value, key
    sandbox = {
        k: v
        for k, v in daemon["Service"].items()
        if k.startswith(
            (
                "Protect",
                "Restrict",
                "Private",
                "SystemCall",
                "Lock",
                "Memory",
                "NoNew",
                "Capability",
            )
        )
    }
    for key, values in sandbox.items():
        assert unit["Service"].get(key) == values, key


def test_timer():
    unit = parse_unit(UNITS / "syncd-once.timer")
    assert one(unit, "Timer", "OnCalendar") == "*:0/15"
    assert one(unit, "Timer", "Persistent") == "true"
    assert one(unit, "Timer", "RandomizedDelaySec")
    assert one(unit, "Timer", "Unit") == "syncd-once.service"
    assert one(unit, "Install", "WantedBy") == "timers.target"


def test_every_setting_is_commented():
    """Each setting (or run of related settings) in the daemon unit follows a comment line."""
    lines = (UNITS / "syncd.service").read_text().splitlines()
    section = None
    for number, line in enumerate(lines):
        if line.startswith("["):
            section = line
            continue
        if section != "[Service]" or not line or line.startswith("#"):
            continue
        before = number - 1
        while before >= 0 and lines[before] and not lines[before].startswith(("#", "[")):
            before -= 1
        assert lines[before].startswith("#"), f"uncommented setting: {line}"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_analyze_verify(tmp_path):
    # verify insists that ExecStart= exists; point it at a stand-in executable
    fake = tmp_path / "syncd"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    for name in FILES:
        text = (UNITS / name).read_text().replace("/opt/syncd/bin/syncd", str(fake))
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / n) for n in FILES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and "Failed to connect" not in line
    ]
    assert result.returncode == 0, result.stdout + result.stderr
    assert not problems, result.stdout + result.stderr
