"""syncd configuration files written by the tests and benchmarks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


def toml_value(value: Any) -> str:
    """Returns ``value`` (bool, number, string, list) as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def merge(
    base: Mapping[str, Mapping[str, Any]], *overrides: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Returns ``base`` with each override's keys set, section by section."""
    merged = {name: dict(values) for name, values in base.items()}
    for override in overrides:
        for name, values in override.items():
            merged.setdefault(name, {}).update(values)
    return merged


def write_config(path: Path, sections: Mapping[str, Mapping[str, Any]]) -> Path:
    """Writes ``{section: {key: value}}`` as TOML to ``path``; returns ``path``."""
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def emulator_sections(
    ready: Any,
    *,
    key: str = "k",
    key_file: str | None = None,
    database: str | Path = "mirror.sqlite",
) -> dict[str, dict[str, Any]]:
    """Returns the ``[api]``, ``[database]`` and ``[logging]`` sections of a config for the
    emulator whose ready line (or :class:`~tests.support.emulator.EmulatorProcess`) is
    ``ready``: its API with ``key`` (or the key in ``key_file``), the mirror at ``database``
    (:func:`database_section`), JSON logs."""
    get = ready.__getitem__ if isinstance(ready, Mapping) else lambda name: getattr(ready, name)
    secret = {"key_file": key_file} if key_file is not None else {"key": key}
    return {
        "api": {"url": get("api_url"), "app_url": get("app_url"), **secret},
        "database": database_section(database),
        "logging": {"format": "json"},
    }


def is_postgres(location: str | Path) -> bool:
    """Whether the mirror ``location`` is a PostgreSQL URL (``postgresql://`` or
    ``postgres://``) rather than a SQLite file."""
    return isinstance(location, str) and (
        urlsplit(location.strip()).scheme.lower() in ("postgresql", "postgres")
    )


def database_section(database: str | Path) -> dict[str, Any]:
    """The ``[database]`` keys for a mirror at ``database``: ``url`` for a PostgreSQL URL,
    otherwise ``path`` for a SQLite file."""
    return {"url": str(database)} if is_postgres(database) else {"path": str(database)}
