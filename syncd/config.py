"""The syncd configuration: one TOML file, validated completely, frozen.

Pipeline: defaults → the TOML file → the API key from the environment (secrets only) →
validate every key of every section → cross-field checks → a frozen :class:`Config`.
Every problem found on the way is collected and reported at once as a
:class:`~syncd.errors.ConfigError` whose ``problems`` read ``dotted.key.path: message``.

``config.example.toml`` at the top of the repository documents every key; a test keeps it and
the models below in step.

Environment variables read here, and nowhere else in syncd:

* ``SYNCD_API_KEY``: the API key, when the file sets neither ``api.key`` nor ``api.key_file``.
* ``SYNCD_DATABASE_URL``: the PostgreSQL URL (a secret: it may hold a password), when the file
  sets no ``database.url``.
* ``CREDENTIALS_DIRECTORY``: set by systemd for ``LoadCredential=``; the key is read from the
  file ``syncd_api_key`` in it when no other source gives one.
* ``STATE_DIRECTORY``: set by systemd for ``StateDirectory=``; the webhook token file is kept
  there instead of beside the mirror (see :attr:`Config.webhook_token_path`).

Without ``-c``, the command line takes the first config file of :func:`find_config`:
``$SYNCD_CONFIG``, ``./syncd.toml``, ``$XDG_CONFIG_HOME/syncd/config.toml`` (default
``~/.config``), ``/etc/syncd/config.toml``.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import structlog
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from syncd import database_url
from syncd.api import DEFAULT_API_URL, DEFAULT_APP_URL, MAX_DELIVERY_BYTES
from syncd.errors import ConfigError

KEY_ENV = "SYNCD_API_KEY"
DATABASE_URL_ENV = "SYNCD_DATABASE_URL"
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"
CREDENTIAL_NAME = "syncd_api_key"
STATE_ENV = "STATE_DIRECTORY"
#: The webhook token file is named after the mirror: ``mirror.sqlite.webhook-token``.
TOKEN_FILE_SUFFIX = ".webhook-token"
NO_KEY_PROBLEM = (
    "api.key: no API key: set api.key, api.key_file, SYNCD_API_KEY "
    "or a systemd credential syncd_api_key"
)

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["auto", "json", "console"]


class _Section(BaseModel):
    """Common settings of every section: unknown keys are errors, values are immutable,
    and TOML types are taken as written (a quoted number is not a number)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    def cross_problems(self) -> list[tuple[tuple[str, ...], str]]:
        """Checks that involve several keys of the section, as ``(keys, message)`` pairs;
        the problem is reported at the first key."""
        return []


def _resolve_path(value: Any, info: ValidationInfo) -> Any:
    """Expand ``~`` and make a relative path absolute against the config file's directory."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("must not be empty")
        value = Path(value)
    if isinstance(value, Path):
        value = value.expanduser()
        base = (info.context or {}).get("base_dir")
        if not value.is_absolute() and base is not None:
            value = Path(base) / value
    return value


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value.rstrip("/")


class ApiConfig(_Section):
    """``[api]``: where upstream is and how to talk to it.

    ``key`` holds the resolved API key, whatever its source; it is ``None`` only when the
    config was loaded with ``require_key=False`` and no source had one.
    """

    url: str = DEFAULT_API_URL
    app_url: str = DEFAULT_APP_URL
    key: SecretStr | None = None
    key_file: Path | None = Field(default=None, strict=False)
    version: str = ""
    timeout_seconds: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=6, ge=1)
    retry_timeout_seconds: float = Field(default=300.0, gt=0)
    window_field: Literal["auto", "date", "created_at"] = "auto"

    _key_source: str | None = PrivateAttr(default=None)

    _url = field_validator("url", "app_url")(_check_http_url)
    _key_file = field_validator("key_file", mode="before")(_resolve_path)

    @field_validator("key")
    @classmethod
    def _key_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @property
    def key_source(self) -> str | None:
        """Where the key came from (``api.key``, ``api.key_file``, ``SYNCD_API_KEY``, or
        ``credential syncd_api_key``), for ``check-config``; never the key itself."""
        return self._key_source

    def key_value(self) -> str:
        """The API key as text, for the Authorization headers.

        Raises ``ConfigError`` when no key was configured (only possible when the config
        was loaded with ``require_key=False``).
        """
        if self.key is None:
            raise ConfigError([NO_KEY_PROBLEM])
        return self.key.get_secret_value()


class DatabaseConfig(_Section):
    """``[database]``: where the mirror lives, a SQLite file (``path``, the default) or a
    PostgreSQL database (``url``, ``postgresql://…``); never both.

    ``url`` is a secret (it may carry a password): it is masked in dumps and reprs, and
    shown only through :attr:`shown` (password replaced by ``***``).
    """

    path: Path = Field(default=Path("/var/lib/syncd/mirror.sqlite"), strict=False)
    url: SecretStr | None = None

    _url_source: str | None = PrivateAttr(default=None)

    _path = field_validator("path", mode="before")(_resolve_path)

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value().strip()
        if not text:
            raise ValueError("must not be empty")
        problem = database_url.problem(text)
        if problem:
            raise ValueError(problem)
        return SecretStr(text)

    @property
    def postgres(self) -> bool:
        """Whether the mirror lives in PostgreSQL (``url`` is set)."""
        return self.url is not None

    @property
    def location(self) -> Path | str:
        """Where the mirror lives, for ``Store``: the PostgreSQL URL when ``url`` is set,
        otherwise the SQLite file's path."""
        return self.url.get_secret_value() if self.url is not None else self.path

    @property
    def shown(self) -> str:
        """:attr:`location` as messages and logs show it (a URL's password as ``***``)."""
        if self.url is None:
            return str(self.path)
        return database_url.redact(self.url.get_secret_value())

    @property
    def url_source(self) -> str | None:
        """Where ``url`` came from (``database.url`` or ``SYNCD_DATABASE_URL``), or None."""
        return self._url_source

    def password(self) -> str | None:
        """The password in ``url`` (for the log redaction), or None."""
        if self.url is None:
            return None
        try:
            return urlsplit(self.url.get_secret_value()).password or None
        except ValueError:
            return None

    def cross_problems(self) -> list[tuple[tuple[str, ...], str]]:
        if self.url is not None and "path" in self.model_fields_set:
            return [
                (
                    ("url", "path"),
                    "set either database.path (SQLite) or database.url (PostgreSQL), not both",
                )
            ]
        return []


class LimitsConfig(_Section):
    """``[limits]``: the upstream rate limits per API key, and how much of them to use."""

    per_second: int = Field(default=10, gt=0)
    per_minute: int = Field(default=100, gt=0)
    per_day: int = Field(default=10_000, gt=0)
    safety_margin: float = Field(default=0.1, ge=0, le=0.5)
    daemon_share: float = Field(default=0.8, gt=0, le=1)

    def cross_problems(self) -> list[tuple[tuple[str, ...], str]]:
        problems: list[tuple[tuple[str, ...], str]] = []
        if self.per_second > self.per_minute:
            problems.append((("per_second", "per_minute"), "must not exceed limits.per_minute"))
        if self.per_minute > self.per_day:
            problems.append((("per_minute", "per_day"), "must not exceed limits.per_day"))
        return problems


class SyncConfig(_Section):
    """``[sync]``: what to mirror and how the windows are paced."""

    history_start: str | None = None  # YYYY-MM-DD (validated); None = discover
    workspaces: tuple[str, ...] = ()
    interval_seconds: int = Field(default=900, ge=10)
    hot_window_days: int = Field(default=3, ge=1)
    window_target_entries: int = Field(default=1000, ge=1)
    window_max_entries: int = Field(default=5000, ge=1)
    window_min_days: int = Field(default=1, ge=1)
    window_max_days: int = Field(default=92, ge=1)
    warm_window_days: int = Field(default=62, ge=1)
    warm_period_minutes: int = Field(default=60, ge=1)
    reconcile_period_hours: int = Field(default=24, ge=1)
    mass_delete_share: float = Field(default=0.5, gt=0, le=1)
    mass_delete_min: int = Field(default=10, ge=0)
    # Several syncd processes on one key share its work through leases of this many seconds.
    lease_seconds: int = Field(default=60, ge=3)
    instance_id: str = Field(default="", max_length=200)  # "" = host:pid:random

    @model_validator(mode="before")
    @classmethod
    def _reconcile_period_days(cls, data: Any) -> Any:
        # Deprecated: ``reconcile_period_days = N`` is read as ``reconcile_period_hours = 24N``.
        if not isinstance(data, dict) or "reconcile_period_days" not in data:
            return data
        data = dict(data)
        days = data.pop("reconcile_period_days")
        if "reconcile_period_hours" in data:
            raise ValueError(
                "reconcile_period_days (deprecated) and reconcile_period_hours are both set; "
                "keep only reconcile_period_hours"
            )
        if not isinstance(days, int) or isinstance(days, bool) or days < 1:
            raise ValueError("reconcile_period_days must be a whole number of days, at least 1")
        structlog.get_logger("syncd.config").warning(
            "config_deprecated",
            key="sync.reconcile_period_days",
            use=f"sync.reconcile_period_hours = {days * 24}",
        )
        data["reconcile_period_hours"] = days * 24
        return data

    @field_validator("history_start", mode="before")
    @classmethod
    def _history_start(cls, value: Any) -> Any:
        # TOML has its own date literal (history_start = 2024-01-01); a quoted
        # "2024-01-01" is accepted too, and "" means "discover the oldest entry".
        # Kept as YYYY-MM-DD text, like every date in syncd's records.
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip()).isoformat()
            except ValueError:
                raise ValueError("must be a date YYYY-MM-DD or empty") from None
        if isinstance(value, date) and not isinstance(value, datetime):
            return value.isoformat()
        raise ValueError("must be a date YYYY-MM-DD or empty")

    @field_validator("workspaces", mode="before")
    @classmethod
    def _workspace_ids(cls, value: Any) -> Any:
        # Ids are text upstream; an unquoted number in TOML is taken as its digits.
        if not isinstance(value, list | tuple):
            raise ValueError("must be an array of workspace ids")
        return tuple(str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value)

    def cross_problems(self) -> list[tuple[tuple[str, ...], str]]:
        problems: list[tuple[tuple[str, ...], str]] = []
        if self.window_target_entries > self.window_max_entries:
            problems.append(
                (
                    ("window_target_entries", "window_max_entries"),
                    "must not exceed sync.window_max_entries",
                )
            )
        if self.window_min_days > self.window_max_days:
            problems.append(
                (("window_min_days", "window_max_days"), "must not exceed sync.window_max_days")
            )
        if len(set(self.workspaces)) != len(self.workspaces):
            problems.append((("workspaces",), "lists a workspace more than once"))
        if any(not ws.strip() for ws in self.workspaces):
            problems.append((("workspaces",), "workspace ids must not be empty"))
        if self.history_start is not None and self.history_start > date.today().isoformat():
            problems.append((("history_start",), "must not be in the future"))
        return problems


class WebhooksConfig(_Section):
    """``[webhooks]``: the push receiver and the upstream subscription."""

    listen: str = ""
    public_url: str = ""
    secret: SecretStr = SecretStr("")
    require_signature: bool = False
    max_body_bytes: int = Field(default=MAX_DELIVERY_BYTES, ge=1024)
    debounce_seconds: float = Field(default=2.0, ge=0)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value:
            _split_host_port(value)
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        return _check_http_url(value) if value else value

    @property
    def listen_host(self) -> str | None:
        """Host part of ``listen`` (brackets of an IPv6 address removed), or None."""
        return _split_host_port(self.listen)[0] if self.listen else None

    @property
    def listen_port(self) -> int | None:
        """Port part of ``listen`` (0 = any free port), or None."""
        return _split_host_port(self.listen)[1] if self.listen else None

    def cross_problems(self) -> list[tuple[tuple[str, ...], str]]:
        problems: list[tuple[tuple[str, ...], str]] = []
        if self.public_url and not self.listen:
            problems.append(
                (
                    ("public_url", "listen"),
                    "needs webhooks.listen: nothing would receive the calls",
                )
            )
        if self.require_signature and not self.secret.get_secret_value():
            problems.append(
                (
                    ("require_signature", "secret"),
                    "needs webhooks.secret: there is nothing to verify a signature with",
                )
            )
        return problems


def _split_host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError('must be host:port, e.g. "127.0.0.1:8787"')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError('an IPv6 address needs brackets, e.g. "[::1]:8787"')
    return host, int(port)


class RetentionConfig(_Section):
    """``[retention]``: how long the daemon keeps old bookkeeping (0 = for ever)."""

    webhook_events_days: int = Field(default=90, ge=0, le=36_500)
    tombstones_days: int = Field(default=90, ge=0, le=36_500)


class LoggingConfig(_Section):
    """``[logging]``: level and output format of the event log."""

    level: LogLevel = "info"
    format: LogFormat = "auto"

    @field_validator("level", "format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class Config(BaseModel):
    """The whole, validated configuration. Build it with :func:`load_config` or
    :func:`parse_config`; constructing it directly skips the key resolution."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api: ApiConfig = ApiConfig()
    database: DatabaseConfig = DatabaseConfig()
    limits: LimitsConfig = LimitsConfig()
    sync: SyncConfig = SyncConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    retention: RetentionConfig = RetentionConfig()
    logging: LoggingConfig = LoggingConfig()

    _source: Path | None = PrivateAttr(default=None)
    _state_directory: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The file this config was read from (None for text or defaults)."""
        return self._source

    @property
    def webhook_token_path(self) -> Path:
        """The file holding the webhook path token: ``<mirror file name>.webhook-token`` in
        ``$STATE_DIRECTORY`` when systemd sets it, otherwise beside the mirror. A mirror in
        PostgreSQL has no file: the default ``database.path`` names the token
        file all the same, so it stays on the host that holds the token."""
        name = self.database.path.name + TOKEN_FILE_SUFFIX
        directory = self._state_directory or self.database.path.parent
        return directory / name

    def secret_values(self) -> tuple[str, ...]:
        """Every secret in the config, as text, for the log redaction."""
        values = [self.webhooks.secret.get_secret_value(), self.database.password() or ""]
        if self.api.key is not None:
            values.append(self.api.key.get_secret_value())
        if self.database.url is not None:
            values.append(self.database.url.get_secret_value())
        return tuple(v for v in values if v)

    def redacted(self) -> dict[str, Any]:
        """The config as plain JSON-able data with every secret masked (for ``check-config``).

        ``api.key_source`` tells where the key came from, ``database.url_source`` where the
        URL did; the URL is shown with its password as ``***``.
        """
        data = self.model_dump(mode="json")
        data["api"]["key_source"] = self.api.key_source
        if self.database.url is not None:
            data["database"]["url"] = self.database.shown
            data["database"]["url_source"] = self.database.url_source
        if not self.webhooks.secret.get_secret_value():
            data["webhooks"]["secret"] = ""
        return data


SECTIONS: dict[str, type[_Section]] = {
    name: field.annotation  # type: ignore[misc]
    for name, field in Config.model_fields.items()
}


def config_search_path(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> list[Path]:
    """Where syncd looks for its config without ``-c``, first match wins (``$SYNCD_CONFIG``
    is given to the command line as ``-c`` and is not in this list)."""
    env = os.environ if env is None else env
    xdg = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return [
        (cwd or Path.cwd()) / "syncd.toml",
        Path(xdg) / "syncd" / "config.toml",
        Path("/etc/syncd/config.toml"),
    ]


def find_config(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path | None:
    """The first existing file of :func:`config_search_path`, or None."""
    for candidate in config_search_path(env, cwd):
        if candidate.is_file():
            return candidate
    return None


def load_config(
    path: Path | None,
    *,
    env: Mapping[str, str] | None = None,
    require_key: bool = True,
) -> Config:
    """Read and validate the config file at ``path`` (None: defaults plus environment).

    ``env`` defaults to ``os.environ``. With ``require_key=False`` a missing API key is not a
    problem (offline commands such as ``syncd sql`` need none) and ``config.api.key`` may
    be None.

    Raises ``ConfigError`` listing every problem, or the reason the file cannot be read.
    """
    if path is None:
        return parse_config("", base_dir=Path.cwd(), env=env, require_key=require_key)
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(["config file not found"], source=source) from None
    except UnicodeDecodeError:
        raise ConfigError(["config file is not UTF-8 text"], source=source) from None
    except OSError as exc:
        raise ConfigError(
            [f"cannot read config file: {exc.strerror or exc}"], source=source
        ) from None
    base_dir = Path(path).expanduser().resolve().parent
    config = parse_config(text, base_dir=base_dir, env=env, require_key=require_key, source=source)
    config._source = Path(path).expanduser().resolve()
    return config


def parse_config(
    text: str,
    *,
    base_dir: Path,
    env: Mapping[str, str] | None = None,
    require_key: bool = True,
    source: str | None = None,
) -> Config:
    """Validate TOML ``text``; relative paths in it resolve against ``base_dir``.

    ``env`` defaults to ``os.environ``; ``source`` only names the origin in the error.

    Raises ``ConfigError`` listing every problem (TOML syntax errors carry line and column).
    """
    if env is None:
        env = os.environ
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"TOML syntax error: {exc}"], source=source) from None

    problems: list[str] = []
    context = {"base_dir": base_dir}
    for name in data:
        if name not in SECTIONS:
            problems.append(_unknown_key_problem((), name))

    sections: dict[str, _Section] = {}
    key_source: str | None = None
    url_source: str | None = None
    for name, model in SECTIONS.items():
        raw = data.get(name, {})
        if not isinstance(raw, dict):
            problems.append(f"{name}: must be a table ([{name}])")
            continue
        if model is ApiConfig:
            raw, key_source, key_problems = _resolve_key(raw, base_dir, env)
            problems.extend(key_problems)
        if model is DatabaseConfig:
            raw, url_source, url_problems = _resolve_database_url(raw, env)
            problems.extend(url_problems)
        section, section_problems = _validate_section(name, model, raw, context)
        problems.extend(section_problems)
        if section is not None:
            sections[name] = section

    if (
        require_key
        and key_source is None
        and not any(p.startswith(("api.key:", "api.key_file:", "api:")) for p in problems)
    ):
        problems.append(NO_KEY_PROBLEM)
    if problems:
        raise ConfigError(problems, source=source)

    # No problems means every section validated.
    cast(ApiConfig, sections["api"])._key_source = key_source
    cast(DatabaseConfig, sections["database"])._url_source = url_source
    config = Config(**sections)
    config._state_directory = _state_directory(env)
    return config


def _state_directory(env: Mapping[str, str]) -> Path | None:
    """The first directory of ``$STATE_DIRECTORY`` (systemd joins several with ``:``)."""
    first = env.get(STATE_ENV, "").split(":")[0].strip()
    return Path(first) if first and Path(first).is_absolute() else None


def _validate_section(
    name: str, model: type[_Section], raw: dict[str, Any], context: dict[str, Any]
) -> tuple[_Section | None, list[str]]:
    """Validate one section; returns the model (None if invalid) and every problem.

    Cross-field checks run even when other keys of the section are invalid: the section is
    validated again without the invalid keys, and checks that involve one of them are
    dropped (their own problem is already reported).
    """
    try:
        section = model.model_validate(raw, context=context)
    except ValidationError as exc:
        errors = exc.errors()
        problems = [_format_error(name, err) for err in errors]
        bad = {str(err["loc"][0]) for err in errors if err.get("loc")}
        try:
            partial = model.model_validate(
                {k: v for k, v in raw.items() if k not in bad}, context=context
            )
        except ValidationError:
            return None, problems
        problems.extend(
            f"{name}.{keys[0]}: {message}"
            for keys, message in partial.cross_problems()
            if not bad.intersection(keys)
        )
        return None, problems
    cross = [f"{name}.{keys[0]}: {message}" for keys, message in section.cross_problems()]
    return (None if cross else section), cross


def _resolve_key(
    raw: dict[str, Any], base_dir: Path, env: Mapping[str, str]
) -> tuple[dict[str, Any], str | None, list[str]]:
    """Find the API key: ``api.key`` > ``api.key_file`` > ``SYNCD_API_KEY`` > the systemd
    credential. Returns the section with ``key`` filled in, the source's name, and problems.
    A missing key is not a problem here (the caller decides whether one is required)."""
    if "key" in raw and "key_file" in raw:
        return raw, None, ["api.key_file: set either api.key or api.key_file, not both"]
    if "key" in raw:
        return raw, "api.key", []
    if "key_file" in raw:
        key_file = raw["key_file"]
        if not isinstance(key_file, str) or not key_file.strip():
            return raw, None, []  # the model reports the type problem
        path = Path(key_file).expanduser()
        if not path.is_absolute():
            path = base_dir / path
        problem, key = _read_key_file(path)
        if problem:
            return raw, None, [f"api.key_file: {problem}"]
        return {**raw, "key": key}, "api.key_file", []
    if env.get(KEY_ENV, "").strip():
        return {**raw, "key": env[KEY_ENV].strip()}, KEY_ENV, []
    credentials = env.get(CREDENTIALS_ENV, "")
    if credentials:
        path = Path(credentials) / CREDENTIAL_NAME
        if path.exists():
            problem, key = _read_key_file(path)
            if problem:
                return raw, None, [f"api.key: systemd credential {path}: {problem}"]
            return {**raw, "key": key}, f"credential {CREDENTIAL_NAME}", []
    return raw, None, []


def _resolve_database_url(
    raw: dict[str, Any], env: Mapping[str, str]
) -> tuple[dict[str, Any], str | None, list[str]]:
    """The PostgreSQL URL: ``database.url`` > ``SYNCD_DATABASE_URL``. Returns the section
    with ``url`` filled in, the source's name (None without a URL), and problems: the
    environment's URL beside a ``database.path`` in the file is one (the URL is never shown).
    """
    if "url" in raw:
        return raw, "database.url", []
    url = env.get(DATABASE_URL_ENV, "").strip()
    if not url:
        return raw, None, []
    if "path" in raw:
        return (
            raw,
            None,
            [
                f"database.path: {DATABASE_URL_ENV} sets database.url too; set either "
                "database.path (SQLite) or database.url (PostgreSQL), not both"
            ],
        )
    return {**raw, "url": url}, DATABASE_URL_ENV, []


def _read_key_file(path: Path) -> tuple[str | None, str]:
    """Read a key file; returns ``(problem, key)``. Messages name the path, never content."""
    try:
        key = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return f"{path} does not exist", ""
    except UnicodeDecodeError:
        return f"{path} is not UTF-8 text", ""
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}", ""
    if not key:
        return f"{path} is empty", ""
    return None, key


def _format_error(section: str, err: Mapping[str, Any]) -> str:
    """One pydantic error as ``section.key.path: message`` (never the offending value)."""
    loc = tuple(err.get("loc", ()))
    if err.get("type") == "extra_forbidden" and loc:
        return _unknown_key_problem((section, *loc[:-1]), str(loc[-1]))
    message = str(err.get("msg", "invalid value"))
    # Messages of our own validators arrive as "Value error, <text>".
    message = message.removeprefix("Value error, ")
    return f"{_dotted((section, *loc))}: {message}"


def _unknown_key_problem(parent: tuple[Any, ...], name: str) -> str:
    if parent:
        known = list(SECTIONS[str(parent[0])].model_fields) if len(parent) == 1 else []
    else:
        known = list(SECTIONS)
    hint = ""
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        hint = f" (did you mean {close[0]}?)"
    elif not parent:
        owners = [s for s, model in SECTIONS.items() if name in model.model_fields]
        if len(owners) == 1:
            hint = f" (it belongs in [{owners[0]}])"
    return f"{_dotted((*parent, name))}: unknown key{hint}"


def _dotted(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text
