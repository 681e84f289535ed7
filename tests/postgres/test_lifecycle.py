"""A mirror in PostgreSQL (``[database] url``) through the commands that open it: status,
the status page, check-config and rebuild; the URL's password is never shown."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from syncd.cli import cli
from syncd.config import parse_config
from syncd.errors import NoDatabase, StoreError
from syncd.status import status
from syncd.store import Store

PASSWORD = "pg-lifecycle-s3cret"
#: Nothing listens on port 1: the server cannot be reached.
UNREACHABLE = f"postgresql://syncd:{PASSWORD}@127.0.0.1:1/syncd?connect_timeout=2"


def config_for(url: str, tmp_path: Path) -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(
        f'[api]\nkey = "k"\n[database]\nurl = "{url}"\n[logging]\nformat = "json"\n',
        encoding="utf-8",
    )
    return path


def with_password(url: str) -> str:
    """``url`` with a (wrong-but-accepted under trust) password, to show it is masked."""
    parts = urlsplit(url)
    netloc = f"{parts.username or 'postgres'}:{PASSWORD}@{parts.hostname}:{parts.port or 5432}"
    return parts._replace(netloc=netloc).geturl()


def test_status_on_a_database_without_the_ledger_is_no_mirror_and_creates_none(postgres_url):
    url = with_password(postgres_url)
    config = parse_config(
        f'[database]\nurl = "{url}"\n', base_dir=Path("/"), env={}, require_key=False
    )

    with pytest.raises(NoDatabase) as info:
        status(config)

    assert config.database.shown in str(info.value)
    assert PASSWORD not in str(info.value)
    with Store(postgres_url, migrate=False) as store:
        assert store.applied_migrations() == []


def test_status_reads_a_mirror_in_postgres(postgres_url):
    Store(postgres_url).close()
    config = parse_config(
        f'[database]\nurl = "{postgres_url}"\n', base_dir=Path("/"), env={}, require_key=False
    )

    mirror = status(config)

    assert mirror.workspaces == ()
    assert mirror.last_run is None


def test_status_with_the_server_unreachable_names_it_without_the_password():
    config = parse_config(
        f'[database]\nurl = "{UNREACHABLE}"\n', base_dir=Path("/"), env={}, require_key=False
    )

    with pytest.raises(StoreError) as info:
        status(config)

    assert "127.0.0.1:1" in str(info.value)
    assert PASSWORD not in str(info.value)


def test_status_command_without_a_mirror_exits_2_naming_the_masked_url(postgres_url, tmp_path):
    config = config_for(with_password(postgres_url), tmp_path)

    result = CliRunner().invoke(cli, ["-c", str(config), "status"])

    assert result.exit_code == 2, result.output
    assert "no mirror database at postgresql://postgres:***@" in result.output
    assert PASSWORD not in result.output


def test_check_config_masks_the_password_and_skips_the_directory_check(postgres_url, tmp_path):
    config = config_for(with_password(postgres_url), tmp_path)

    result = CliRunner().invoke(cli, ["-c", str(config), "check-config"])

    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    document = json.loads(result.stdout)
    assert document["database"]["url"].startswith("postgresql://postgres:***@127.0.0.1")
    assert document["database"]["url_source"] == "database.url"


def test_check_config_online_names_a_server_that_does_not_answer(tmp_path):
    config = config_for(UNREACHABLE, tmp_path)

    result = CliRunner().invoke(cli, ["-c", str(config), "check-config", "--online"])

    assert result.exit_code == 2, result.output
    assert "database.url: cannot connect to PostgreSQL at postgresql://syncd:***@127.0.0.1:1" in (
        result.output
    )
    assert PASSWORD not in result.output


def test_rebuild_refuses_a_mirror_in_postgres(postgres_url, tmp_path):
    Store(postgres_url).close()
    config = config_for(with_password(postgres_url), tmp_path)

    result = CliRunner().invoke(cli, ["-c", str(config), "rebuild", "--no-sync"])

    assert result.exit_code == 2, result.output
    assert "the mirror is in PostgreSQL" in result.output
    assert PASSWORD not in result.output
    with Store(postgres_url, migrate=False) as store:
        assert store.applied_migrations()
