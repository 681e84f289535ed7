"""The mirror against the emulator's truth: both read into one shape and compared field by
field.

A mirror's location is what syncd's ``[database]`` names: a SQLite file path (read through
read-only connections of the standard library) or a PostgreSQL URL (read through psycopg 3).
SQL is written once, with ``?`` placeholders; rows come back as :class:`sqlite3.Row` does
them (by position or column name, ``tuple(row)``, ``dict(row)``), with the same Python types
on both backends (integers, text, None; a PostgreSQL ``numeric`` sum as an int)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from .config import is_postgres
from .emulator import EmulatorProcess

#: What names a mirror: a SQLite file or a PostgreSQL URL.
Location = str | Path

#: The mirror's backends, for tests parametrized over both:
#: ``@pytest.mark.parametrize("backend", BACKENDS)`` (see the e2e and daemon_e2e conftests).
BACKENDS = ("sqlite", "postgresql")

ENTRY_FIELDS = (
    "id",
    "workspace_id",
    "date",
    "start_time",
    "end_time",
    "duration_seconds",
    "description",
    "billable",
    "manually_entered",
    "team_member_id",
    "team_member_name",
    "project_id",
    "project_name",
    "client_id",
    "client_name",
    "task_id",
    "task_name",
    "created_at",
    "updated_at",
    "tags",
)


class Row(tuple):
    """A PostgreSQL row as :class:`sqlite3.Row` gives one: by position or column name."""

    names: tuple[str, ...]

    def __new__(cls, values: Sequence[Any], names: tuple[str, ...]) -> Row:
        row = super().__new__(cls, values)
        row.names = names
        return row

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            try:
                return super().__getitem__(self.names.index(key))
            except ValueError:
                raise IndexError(f"no such column: {key}") from None
        return super().__getitem__(key)

    def keys(self) -> list[str]:
        return list(self.names)


def _plain(value: Any) -> Any:
    """``value`` as SQLite would return it: a ``numeric`` (``sum`` of integers) as an int, or
    a float when it has a fraction."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _row_factory(cursor: psycopg.Cursor[Any]) -> Any:
    names = tuple(c.name for c in cursor.description or ())

    def make(values: Sequence[Any]) -> Row:
        return Row([_plain(v) for v in values], names)

    return make


class PostgresReader:
    """A read-only connection to a mirror in PostgreSQL that takes SQL with ``?``
    placeholders, as a ``sqlite3`` connection does (autocommit: every statement sees the
    latest commits)."""

    def __init__(self, url: str) -> None:
        self._conn = psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=10,
            options="-c default_transaction_read_only=on",
            row_factory=_row_factory,
        )

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Row]:
        return self._conn.execute(sql.replace("%", "%%").replace("?", "%s"), tuple(params))

    def close(self) -> None:
        self._conn.close()


def connect(db: Location) -> Any:
    """Returns a read-only connection to the SQLite mirror ``db`` with rows by column name,
    or a :class:`PostgresReader` when ``db`` is a PostgreSQL URL."""
    if is_postgres(db):
        return PostgresReader(str(db))
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


@contextmanager
def connection(db: Location) -> Iterator[Any]:
    """:func:`connect`, closed on leaving."""
    conn = connect(db)
    try:
        yield conn
    finally:
        conn.close()


def query(db: Location, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """Returns the rows ``sql`` selects from the mirror ``db``."""
    with connection(db) as conn:
        return conn.execute(sql, tuple(params)).fetchall()


def scalar(db: Location, sql: str, params: Sequence[Any] = ()) -> Any:
    """Returns the first column of the first row ``sql`` selects (None without rows)."""
    rows = query(db, sql, params)
    return rows[0][0] if rows else None


def description_bytes(db: Location, entry_id: str) -> bytes | None:
    """The bytes of one entry's description as the database holds them (UTF-8)."""
    if is_postgres(db):
        sql = "SELECT convert_to(description, 'UTF8') FROM time_entries WHERE id = ?"
        value = scalar(db, sql, (entry_id,))
        return None if value is None else bytes(value)
    hexed = scalar(db, "SELECT hex(description) FROM time_entries WHERE id = ?", (entry_id,))
    return None if hexed is None else bytes.fromhex(hexed)


def mirror_entries(
    db: Location, workspace_id: str | None = None, *, live: bool | None = True
) -> dict[str, dict[str, Any]]:
    """Returns the mirror's entries in the comparison shape, by id: the live ones, the
    tombstoned ones (``live=False``) or all (``live=None``)."""
    where, params = [], []
    if workspace_id is not None:
        where.append("e.workspace_id = ?")
        params.append(workspace_id)
    if live is True:
        where.append("e.deleted_at IS NULL")
    elif live is False:
        where.append("e.deleted_at IS NOT NULL")
    sql = "SELECT e.* FROM time_entries AS e" + (" WHERE " + " AND ".join(where) if where else "")
    with connection(db) as conn:
        rows = conn.execute(sql, params).fetchall()
        tags: dict[str, list[tuple[str, str | None, str | None]]] = {}
        for entry_id, tag_id, name, color in conn.execute(
            "SELECT l.time_entry_id, t.id, t.name, t.color FROM time_entry_tags AS l "
            "LEFT JOIN tags AS t ON t.id = l.tag_id"
        ):
            tags.setdefault(entry_id, []).append((tag_id, name, color))
    result = {}
    for row in rows:
        item = {k: row[k] for k in ENTRY_FIELDS if k != "tags"}
        item["tags"] = sorted(tags.get(row["id"], []))
        item["deleted_at"] = row["deleted_at"]
        result[row["id"]] = item
    return result


def _bool(value: Any) -> int:
    if isinstance(value, str):
        return int(value.lower() == "true")
    return int(bool(value))


def truth_shape(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Returns one find-shaped emulator entry in the mirror's column shape."""
    return {
        "id": entry["id"],
        "workspace_id": entry["workspace_id"],
        "date": entry["date"][:10],
        "start_time": entry["start_time"],
        "end_time": entry["end_time"],
        "duration_seconds": entry["duration"],
        "description": entry["description"] or "",
        "billable": _bool(entry["billable"]),
        "manually_entered": _bool(entry["manually_entered"]),
        "team_member_id": entry["team_member_id"],
        "team_member_name": entry["team_member_name"],
        "project_id": entry["project_id"],
        "project_name": entry["project_name"],
        "client_id": entry["client_id"],
        "client_name": entry["client_name"],
        "task_id": entry["task_id"],
        "task_name": entry["task_name"],
        "created_at": entry["createdAt"],
        "updated_at": entry["updatedAt"],
        "tags": sorted((t["id"], t["name"], t.get("color")) for t in entry.get("tags") or []),
    }


def truth_entries(
    emulator: EmulatorProcess, workspace_id: str | None = None
) -> dict[str, dict[str, Any]]:
    """Returns the emulator's entries (of one workspace, or of all) in the mirror's shape."""
    if workspace_id is None:
        return {i: truth_shape(e) for i, e in emulator.truth().items()}
    return {e["id"]: truth_shape(e) for e in emulator.entries(workspace_id)}


def differences(
    truth: Mapping[str, Mapping[str, Any]],
    mirror: Mapping[str, Mapping[str, Any]],
    limit: int = 10,
    fields: tuple[str, ...] = ENTRY_FIELDS,
) -> list[str]:
    """Returns how the live mirror differs from the truth, one line per difference (empty
    when equal): entries missing or extra, and each of ``fields`` that differs."""
    problems = []
    for missing in sorted(set(truth) - set(mirror))[:limit]:
        problems.append(f"missing from the mirror: {missing} ({truth[missing]['date']})")
    for extra in sorted(set(mirror) - set(truth))[:limit]:
        problems.append(f"live in the mirror but not upstream: {extra} ({mirror[extra]['date']})")
    for entry_id in sorted(set(truth) & set(mirror)):
        for key in fields:
            if truth[entry_id][key] != mirror[entry_id][key]:
                problems.append(
                    f"{entry_id}.{key}: upstream {truth[entry_id][key]!r}, "
                    f"mirror {mirror[entry_id][key]!r}"
                )
        if len(problems) > 3 * limit:
            break
    return problems


def divergence(
    truth: Mapping[str, Mapping[str, Any]], live: Mapping[str, Mapping[str, Any]]
) -> tuple[int, int, int]:
    """(missing, stale, wrongly live) entries of the live mirror against the truth; stale:
    live in both, but some field of the truth differs."""
    missing = sum(1 for i in truth if i not in live)
    stale = sum(
        1
        for i, entry in truth.items()
        if i in live and any(live[i][k] != v for k, v in entry.items())
    )
    extra = sum(1 for i in live if i not in truth)
    return missing, stale, extra


def assert_mirror_equals_truth(
    emulator: EmulatorProcess, db: Location
) -> dict[str, dict[str, Any]]:
    """Returns the truth of every workspace after checking the live mirror equals it.

    Raises AssertionError naming the differences of the first workspace that differs.
    """
    everything: dict[str, dict[str, Any]] = {}
    for workspace_id in emulator.workspace_ids():
        truth = truth_entries(emulator, workspace_id)
        problems = differences(truth, mirror_entries(db, workspace_id))
        assert not problems, f"workspace {workspace_id}:\n" + "\n".join(problems)
        everything.update(truth)
    return everything
