"""Config: the example is the reference, every problem is reported, the key stays secret."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pydantic
import pytest

from syncd.config import (
    NO_KEY_PROBLEM,
    SECTIONS,
    Config,
    load_config,
    parse_config,
)
from syncd.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"
SECRET = "tt_live_s3cr3t-value-0042"
ENV = {"SYNCD_API_KEY": SECRET}


def parse(text: str, env: dict[str, str] | None = None, **kwargs) -> Config:
    return parse_config(
        text, base_dir=Path("/etc/syncd"), env=ENV if env is None else env, **kwargs
    )


def problems_of(text: str, env: dict[str, str] | None = None, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, env, **kwargs)
    return info.value.problems


# --------------------------------------------------------------------------- the example


ASSIGNMENT = re.compile(r'^(?:# )?([a-z_]+) = (".*"|\[.*\]|[\d.]+|true|false)$')


def example_keys() -> dict[str, set[str]]:
    """Keys per section in the example: live assignments and commented-out ones
    (``# key = ...``, used for keys that have no default value)."""
    keys: dict[str, set[str]] = {}
    section = None
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        if match := re.fullmatch(r"\[(\w+)\]", line.strip()):
            section = match.group(1)
            keys.setdefault(section, set())
        elif section and (match := ASSIGNMENT.match(line)):
            keys[section].add(match.group(1))
    return keys


def test_example_loads_and_equals_the_defaults():
    config = load_config(EXAMPLE, env=ENV)
    defaults = parse("")
    assert config.model_dump() == defaults.model_dump()
    assert config.source == EXAMPLE


def test_example_key_set_equals_the_model_key_set():
    documented = example_keys()
    model = {name: set(section.model_fields) for name, section in SECTIONS.items()}
    assert documented == model


def test_example_comments_every_key():
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^\w+ = ", line):
            assert lines[number - 1].startswith("#"), f"no comment above {line!r}"
            block = []
            for previous in reversed(lines[:number]):
                if not previous.startswith("#"):
                    break
                block.append(previous)
            assert any("Default" in b for b in block), f"no default documented for {line!r}"
            assert any("Example" in b for b in block), f"no example documented for {line!r}"


def test_example_commented_keys_are_valid_when_uncommented(tmp_path):
    # The commented examples of api.key and api.key_file must themselves be valid values.
    text = EXAMPLE.read_text(encoding="utf-8").replace("# key = ", "key = ", 1)
    config = parse_config(text, base_dir=tmp_path, env={})
    assert config.api.key_source == "api.key"


# --------------------------------------------------------------------------- defaults


def test_defaults():
    config = parse("")
    assert config.api.url == "https://api.timetracker.in/v1"
    assert config.api.app_url == "https://app.timetracker.in"
    assert config.api.version == ""
    assert (config.api.timeout_seconds, config.api.max_attempts) == (30, 6)
    assert config.api.retry_timeout_seconds == 300
    assert config.database.path == Path("/var/lib/syncd/mirror.sqlite")
    assert (config.limits.per_second, config.limits.per_minute, config.limits.per_day) == (
        10,
        100,
        10_000,
    )
    assert (config.limits.safety_margin, config.limits.daemon_share) == (0.1, 0.8)
    assert config.sync.history_start is None
    assert config.sync.workspaces == ()
    assert config.sync.interval_seconds == 900
    assert config.sync.hot_window_days == 3
    assert (config.sync.window_target_entries, config.sync.window_max_entries) == (1000, 5000)
    assert (config.sync.window_min_days, config.sync.window_max_days) == (1, 92)
    assert (config.sync.warm_window_days, config.sync.warm_period_minutes) == (62, 60)
    assert config.sync.reconcile_period_hours == 24
    assert (config.sync.mass_delete_share, config.sync.mass_delete_min) == (0.5, 10)
    assert config.webhooks.listen == ""
    assert config.webhooks.listen_host is None
    assert config.webhooks.public_url == ""
    assert config.webhooks.secret.get_secret_value() == ""
    assert (config.webhooks.max_body_bytes, config.webhooks.debounce_seconds) == (65536, 2.0)
    assert (config.logging.level, config.logging.format) == ("info", "auto")


def test_values_are_read():
    config = parse(
        """
        [api]
        url = "http://127.0.0.1:8080/v1/"
        version = "2024-06-01"
        timeout_seconds = 2.5
        [sync]
        history_start = 2024-01-05
        workspaces = ["a", 42]
        [webhooks]
        listen = "[::1]:8787"
        public_url = "https://syncd.example.com/hooks"
        [logging]
        level = "DEBUG"
        format = "json"
        """
    )
    assert config.api.url == "http://127.0.0.1:8080/v1"  # trailing slash dropped
    assert config.api.version == "2024-06-01"
    assert config.api.timeout_seconds == 2.5
    assert config.sync.history_start == "2024-01-05"
    assert config.sync.workspaces == ("a", "42")
    assert (config.webhooks.listen_host, config.webhooks.listen_port) == ("::1", 8787)
    assert config.logging.level == "debug"
    assert config.logging.format == "json"


def test_history_start_as_text_or_empty():
    assert parse('[sync]\nhistory_start = "2023-02-01"').sync.history_start == "2023-02-01"
    assert parse('[sync]\nhistory_start = ""').sync.history_start is None


def test_config_is_frozen():
    config = parse("")
    with pytest.raises(pydantic.ValidationError):
        config.sync.hot_window_days = 5  # type: ignore[misc]


def test_relative_paths_resolve_against_the_config_directory(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "key.txt").write_text(f"  {SECRET}\n", encoding="utf-8")
    config_file = tmp_path / "etc" / "syncd.toml"
    config_file.write_text(
        '[api]\nkey_file = "key.txt"\n[database]\npath = "data/mirror.sqlite"\n', encoding="utf-8"
    )
    config = load_config(config_file, env={})
    assert config.database.path == tmp_path / "etc" / "data" / "mirror.sqlite"
    assert config.api.key_file == tmp_path / "etc" / "key.txt"
    assert config.api.key_value() == SECRET


def test_load_without_a_file_uses_defaults_and_environment():
    config = load_config(None, env=ENV)
    assert config.api.key_value() == SECRET
    assert config.source is None


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml", env=ENV)
    assert info.value.problems == ["config file not found"]
    assert info.value.source == str(tmp_path / "nope.toml")


# --------------------------------------------------------------------------- problems


BAD = """
stray = 1
[api]
url = "ftp://example.com"
timeout_seconds = "30"
max_attempts = 0
[database]
path = ""
[limits]
per_minute = 0
per_minut = 3
safety_margin = 0.9
[sync]
unknown_key = 1
history_start = "2024-13-01"
workspaces = ["a", true]
window_target_entries = 6000
window_min_days = 100
window_max_days = 30
[webhooks]
listen = "localhost"
public_url = "https://hooks.example.com/x"
max_body_bytes = 10
[logging]
level = "loud"
format = "xml"
[extra]
"""


def test_every_problem_is_reported_with_its_key_path():
    problems = problems_of(BAD, env={})
    assert sorted(problems) == sorted(
        [
            "stray: unknown key",
            "extra: unknown key",
            "api.url: must be an http:// or https:// URL with a host",
            "api.timeout_seconds: Input should be a valid number",
            "api.max_attempts: Input should be greater than or equal to 1",
            NO_KEY_PROBLEM,
            "database.path: must not be empty",
            "limits.per_minute: Input should be greater than 0",
            "limits.per_minut: unknown key (did you mean per_minute?)",
            "limits.safety_margin: Input should be less than or equal to 0.5",
            "sync.unknown_key: unknown key",
            "sync.history_start: must be a date YYYY-MM-DD or empty",
            "sync.workspaces[1]: Input should be a valid string",
            "sync.window_target_entries: must not exceed sync.window_max_entries",
            "sync.window_min_days: must not exceed sync.window_max_days",
            'webhooks.listen: must be host:port, e.g. "127.0.0.1:8787"',
            "webhooks.max_body_bytes: Input should be greater than or equal to 1024",
            "logging.level: Input should be 'debug', 'info', 'warning' or 'error'",
            "logging.format: Input should be 'auto', 'json' or 'console'",
        ]
    )


def test_cross_field_checks_on_a_valid_section():
    problems = problems_of(
        """
        [limits]
        per_second = 200
        [sync]
        window_target_entries = 6000
        workspaces = ["a", "a"]
        [webhooks]
        public_url = "https://hooks.example.com/x"
        """
    )
    assert problems == [
        "limits.per_second: must not exceed limits.per_minute",
        "sync.window_target_entries: must not exceed sync.window_max_entries",
        "sync.workspaces: lists a workspace more than once",
        "webhooks.public_url: needs webhooks.listen: nothing would receive the calls",
    ]


def test_cross_field_check_is_skipped_when_a_key_it_needs_is_invalid():
    # window_max_entries is invalid; comparing against its default would be a false problem.
    problems = problems_of('[sync]\nwindow_target_entries = 6000\nwindow_max_entries = "x"')
    assert problems == ["sync.window_max_entries: Input should be a valid integer"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[sync]\nbogus = 1", "sync.bogus: unknown key"),
        ("key = 'x'", "key: unknown key (it belongs in [api])"),
        ("[logging]\nlevels = 'info'", "logging.levels: unknown key (did you mean level?)"),
        ("[syncs]\n", "syncs: unknown key (did you mean sync?)"),
        ("api = 3", "api: must be a table ([api])"),
        ("[sync]\nworkspaces = 'abc'", "sync.workspaces: must be an array of workspace ids"),
        ("[sync]\nhistory_start = 2024-01-01T10:00:00", "sync.history_start: must be a date"),
        ("[sync]\nhistory_start = 2999-01-01", "sync.history_start: must not be in the future"),
        ("[limits]\nper_minute = '100'", "limits.per_minute: Input should be a valid integer"),
        ("[limits]\nper_day = 1.5", "limits.per_day: Input should be a valid integer"),
        ("[webhooks]\nlisten = '::1:80'", "webhooks.listen: an IPv6 address needs brackets"),
        ("[webhooks]\nlisten = 'host:99999'", "webhooks.listen: must be host:port"),
        ("[webhooks]\npublic_url = 'hooks.example.com'", "webhooks.public_url: must be an http"),
        ("[api]\napp_url = 'https://'", "api.app_url: must be an http:// or https:// URL"),
    ],
)
def test_single_problems(text, problem):
    problems = problems_of(text)
    assert len(problems) == 1, problems
    assert problems[0].startswith(problem)


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("127.0.0.1:8787", "127.0.0.1", 8787),
        ("[::1]:9000", "::1", 9000),
        ("localhost:1", "localhost", 1),
    ],
)
def test_the_listen_address_splits_into_host_and_port(listen, host, port):
    config = parse(f"[webhooks]\nlisten = '{listen}'")
    assert (config.webhooks.listen_host, config.webhooks.listen_port) == (host, port)


@pytest.mark.parametrize("listen", ["8787", ":8787", "host:", "host:99999", "a:b:c", "[nope]:1"])
def test_a_listen_address_that_is_not_host_and_port_is_refused(listen):
    assert [p.split(":")[0] for p in problems_of(f"[webhooks]\nlisten = '{listen}'")] == [
        "webhooks.listen"
    ]


def test_toml_syntax_error_has_line_and_column():
    problems = problems_of("[api]\nurl = \n")
    assert len(problems) == 1
    assert "TOML syntax error" in problems[0]
    assert "line 2, column 7" in problems[0]


def test_config_error_names_the_file(tmp_path):
    config_file = tmp_path / "bad.toml"
    config_file.write_text("[sync]\nhot_window_days = 0\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(config_file, env=ENV)
    assert info.value.source == str(config_file)
    assert str(config_file) in str(info.value)
    assert info.value.problems == [
        "sync.hot_window_days: Input should be greater than or equal to 1"
    ]


# --------------------------------------------------------------------------- the key


@pytest.mark.parametrize(
    ("toml", "files", "env", "expected", "source"),
    [
        ('key = "from-toml"', {}, {"SYNCD_API_KEY": "from-env"}, "from-toml", "api.key"),
        (
            'key_file = "k"',
            {"k": "from-file\n"},
            {"SYNCD_API_KEY": "from-env"},
            "from-file",
            "api.key_file",
        ),
        (
            "",
            {"creds/syncd_api_key": "from-cred"},
            {"SYNCD_API_KEY": "from-env", "CREDENTIALS_DIRECTORY": "{dir}/creds"},
            "from-env",
            "SYNCD_API_KEY",
        ),
        (
            "",
            {"creds/syncd_api_key": "from-cred\n"},
            {"CREDENTIALS_DIRECTORY": "{dir}/creds"},
            "from-cred",
            "credential syncd_api_key",
        ),
    ],
)
def test_key_sources_in_order(tmp_path, toml, files, env, expected, source):
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content, encoding="utf-8")
    env = {k: v.replace("{dir}", str(tmp_path)) for k, v in env.items()}
    config = parse_config(f"[api]\n{toml}\n", base_dir=tmp_path, env=env)
    assert config.api.key_value() == expected
    assert config.api.key_source == source
    assert config.redacted()["api"]["key_source"] == source


def test_no_key_anywhere(tmp_path):
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}  # a credentials dir without our file
    assert problems_of("", env=env) == [NO_KEY_PROBLEM]
    assert problems_of("", env={"SYNCD_API_KEY": "  "}) == [NO_KEY_PROBLEM]


def test_no_key_is_fine_when_not_required():
    config = parse("", env={}, require_key=False)
    assert config.api.key is None
    with pytest.raises(ConfigError) as info:
        config.api.key_value()
    assert info.value.problems == [NO_KEY_PROBLEM]


@pytest.mark.parametrize(
    ("toml", "files", "problem"),
    [
        ('key = "a"\nkey_file = "k"', {"k": "b"}, "api.key_file: set either api.key or"),
        ('key_file = "missing"', {}, "api.key_file: /etc/syncd/missing does not exist"),
        ('key_file = "k"', {"k": " \n"}, "api.key_file: /etc/syncd/k is empty"),
        ('key = ""', {}, "api.key: must not be empty"),
        ("key = 12345", {}, "api.key: Input should be a valid string"),
    ],
)
def test_key_problems(tmp_path, toml, files, problem):
    for name, content in files.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        parse_config(f"[api]\n{toml}\n", base_dir=tmp_path, env=ENV)
    problems = [p.replace(str(tmp_path), "/etc/syncd") for p in info.value.problems]
    assert len(problems) == 1, problems
    assert problems[0].startswith(problem)


def test_key_never_appears_in_repr_str_dump_or_errors(tmp_path):
    config = parse(f'[api]\nkey = "{SECRET}"\n[webhooks]\nsecret = "{SECRET}-hook"')
    assert config.api.key_value() == SECRET
    assert config.webhooks.secret.get_secret_value() == f"{SECRET}-hook"
    for text in (repr(config), str(config), repr(config.api), str(config.redacted())):
        assert SECRET not in text
    assert config.redacted()["api"]["key"] == "**********"
    assert config.redacted()["webhooks"]["secret"] == "**********"
    assert set(config.secret_values()) == {SECRET, f"{SECRET}-hook"}

    # Errors, whatever the source of the key and whatever else is wrong.
    (tmp_path / "k").write_text(SECRET, encoding="utf-8")
    for toml, env in [
        (f'[api]\nkey = "{SECRET}"\nurl = "nope"\nmax_attempts = "{SECRET}"', {}),
        ('[api]\nkey_file = "k"\nurl = "nope"', {}),
        ('[api]\nurl = "nope"', {"SYNCD_API_KEY": SECRET}),
        (f'[api]\nkey = "{SECRET}"\nkey_file = "k"', {}),
        (f'[api]\nkey = ["{SECRET}"]', {}),
    ]:
        with pytest.raises(ConfigError) as info:
            parse_config(toml, base_dir=tmp_path, env=env)
        assert SECRET not in str(info.value)
        assert SECRET not in repr(info.value)
        assert not any(SECRET in p for p in info.value.problems)


def test_example_parses_as_plain_toml():
    # A guard for the example-key regex above: the live keys parse as TOML.
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert set(data) == set(SECTIONS)


def test_config_search_order(tmp_path):
    from syncd.config import config_search_path, find_config

    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    env = {"HOME": str(home)}
    assert config_search_path(env, work)[:2] == [
        work / "syncd.toml",
        home / ".config" / "syncd" / "config.toml",
    ]
    xdg = tmp_path / "xdg" / "syncd" / "config.toml"
    xdg.parent.mkdir(parents=True)
    xdg.write_text("", encoding="utf-8")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    assert find_config(env, work) == xdg
    (work / "syncd.toml").write_text("", encoding="utf-8")
    assert find_config(env, work) == work / "syncd.toml"


# --------------------------------------------------------------------------- the database


PG_PASSWORD = "pg-pa55word-0042"
PG_URL = f"postgresql://syncd:{PG_PASSWORD}@db.example.com:5432/syncd"


def test_the_mirror_is_a_sqlite_file_by_default():
    database = parse("").database
    assert database.url is None
    assert not database.postgres
    assert database.location == Path("/var/lib/syncd/mirror.sqlite")
    assert database.shown == "/var/lib/syncd/mirror.sqlite"


def test_a_postgres_url_is_the_location():
    config = parse(f'[database]\nurl = "{PG_URL}"\n')
    assert config.database.postgres
    assert config.database.location == PG_URL
    assert config.database.shown == "postgresql://syncd:***@db.example.com:5432/syncd"
    assert config.database.url_source == "database.url"
    assert config.redacted()["database"]["url"] == config.database.shown
    assert config.redacted()["database"]["url_source"] == "database.url"


def test_the_url_comes_from_the_environment_when_the_file_sets_none():
    config = parse("", env={**ENV, "SYNCD_DATABASE_URL": PG_URL})
    assert config.database.location == PG_URL
    assert config.database.url_source == "SYNCD_DATABASE_URL"
    in_file = "postgresql://syncd@other.example.com/syncd"
    config = parse(f'[database]\nurl = "{in_file}"\n', env={**ENV, "SYNCD_DATABASE_URL": PG_URL})
    assert config.database.location == in_file
    assert config.database.url_source == "database.url"


def test_path_and_url_together_are_a_problem_naming_both_and_the_rest_is_still_listed():
    problems = problems_of(
        f'[database]\npath = "m.sqlite"\nurl = "{PG_URL}"\n[limits]\nper_day = 0\n'
    )
    assert sorted(problems) == [
        "database.url: set either database.path (SQLite) or database.url (PostgreSQL), not both",
        "limits.per_day: Input should be greater than 0",
    ]
    problems = problems_of(
        '[database]\npath = "m.sqlite"\n', env={**ENV, "SYNCD_DATABASE_URL": PG_URL}
    )
    assert problems == [
        "database.path: SYNCD_DATABASE_URL sets database.url too; set either database.path "
        "(SQLite) or database.url (PostgreSQL), not both"
    ]
    assert not any(PG_PASSWORD in p for p in problems)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (
            f"mysql://syncd:{PG_PASSWORD}@db/syncd",
            "database.url: 'mysql://syncd:***@db/syncd' has scheme 'mysql'; expected "
            "postgresql:// or postgres://",
        ),
        (
            f"postgresql://syncd:{PG_PASSWORD}@db:5432",
            "database.url: 'postgresql://syncd:***@db:5432' names no database "
            "(postgresql://host/DBNAME)",
        ),
        (
            f"postgresql://syncd:{PG_PASSWORD}@db:port/syncd",
            "database.url: 'postgresql://syncd:***@db:port/syncd' is not a valid URL",
        ),
        ("", "database.url: must not be empty"),
        ("db.example.com/syncd", "database.url: 'db.example.com/syncd' has no scheme"),
    ],
)
def test_a_bad_url_is_named_without_its_password(url, problem):
    for env in (ENV, {**ENV, "SYNCD_DATABASE_URL": url}):
        text = "" if "SYNCD_DATABASE_URL" in env else f'[database]\nurl = "{url}"\n'
        if not url and not text:
            continue  # an empty variable sets nothing
        problems = problems_of(f'{text}[api]\nurl = "nope"\n', env=env)
        assert len(problems) == 2, problems
        assert "api.url: must be an http:// or https:// URL with a host" in problems
        (found,) = [p for p in problems if p.startswith("database.url")]
        assert found.startswith(problem)
        assert PG_PASSWORD not in found


def test_the_url_and_its_password_are_secrets():
    config = parse(f'[database]\nurl = "{PG_URL}"\n')
    for text in (repr(config), str(config), repr(config.database), str(config.redacted())):
        assert PG_PASSWORD not in text
    assert {PG_PASSWORD, PG_URL} <= set(config.secret_values())
    assert config.model_dump(mode="json")["database"]["url"] == "**********"


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u:pw@db/syncd",
        "postgresql://u:pw@db",
        "postgresql://u:pw@db:port/syncd",
        "postgresql://u:pw@db/syncd?nosuchoption=1",
        "db/syncd",
        "postgresql://u:pw@db/syncd",
    ],
)
def test_the_config_and_the_store_name_the_same_problem_of_a_url(url):
    from syncd.database_url import problem
    from syncd.store.backend import postgres_conninfo

    try:
        postgres_conninfo(url)
        expected = None
    except ConfigError as exc:
        expected = exc.problems[0].removeprefix("database.url: ")
    assert problem(url) == expected
