"""Secrets at rest: the token file is the owner's alone; the secret's verifier is salted."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.config import parse_config
from syncd.daemon.webhook import new_token
from syncd.errors import StoreError
from syncd.secrets import keep_token, matches_verifier, read_token, secret_verifier


@pytest.fixture
def usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_token_file_is_made_0600_and_its_token_wins_afterwards(tmp_path, usual_umask):
    path = tmp_path / "mirror.sqlite.webhook-token"
    first = new_token()
    assert keep_token(path, first) == first
    assert mode(path) == 0o600
    assert path.read_text() == first + "\n"
    assert keep_token(path, new_token()) == first  # never replaced
    assert read_token(path) == first
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_a_token_file_readable_by_others_is_made_private(tmp_path, usual_umask):
    path = tmp_path / "token"
    token = new_token()
    path.write_text(token)
    path.chmod(0o644)
    assert read_token(path) == token
    assert mode(path) == 0o600


def test_a_missing_file_has_no_token_and_a_bad_one_is_named_not_shown(tmp_path):
    assert read_token(tmp_path / "absent") is None
    bad = tmp_path / "token"
    bad.write_text("short secret-ish content")
    with pytest.raises(StoreError, match=f"{bad} holds no valid token") as caught:
        read_token(bad)
    assert "secret-ish" not in str(caught.value)
    with pytest.raises(StoreError, match="cannot write the webhook token file"):
        keep_token(tmp_path / "no-such-dir" / "token", new_token())
    with pytest.raises(ValueError, match="not a webhook token"):
        keep_token(tmp_path / "token2", "x")


def test_the_secret_verifier_is_salted_and_checks_the_secret():
    secret = "correct horse battery staple"
    one, two = secret_verifier(secret), secret_verifier(secret)
    assert one != two  # a fresh salt each time: no table of guesses fits every mirror
    assert one.startswith("scrypt$16384$8$1$")
    assert secret not in one
    assert hashlib.sha256(secret.encode()).hexdigest()[:16] not in one
    assert matches_verifier(secret, one)
    assert matches_verifier(secret, two)
    assert not matches_verifier("correct horse battery stapler", one)
    assert not matches_verifier(secret, None)
    assert not matches_verifier("", one)
    assert matches_verifier("", None)
    assert not matches_verifier(secret, "0123456789abcdef")  # an unsalted digest of old
    assert not matches_verifier(secret, "scrypt$x$8$1$AA$AA")


def test_the_token_file_is_beside_the_mirror_or_in_the_state_directory(tmp_path):
    text = '[database]\npath = "data/m.sqlite"\n'
    env = {"SYNCD_API_KEY": "k"}
    beside = parse_config(text, base_dir=tmp_path, env=env)
    assert beside.webhook_token_path == tmp_path / "data" / "m.sqlite.webhook-token"
    systemd = parse_config(text, base_dir=tmp_path, env={**env, "STATE_DIRECTORY": "/s/a:/s/b"})
    assert systemd.webhook_token_path == Path("/s/a/m.sqlite.webhook-token")
