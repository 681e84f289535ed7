"""docs/schema.md documents exactly the tables, views and columns of a migrated database."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from syncd.store import Store

DOC = Path(__file__).resolve().parents[2] / "docs" / "schema.md"


def documented() -> dict[str, set[str]]:
    """``{name: {columns}}`` from the ``### `name` `` sections and their column tables."""
    out: dict[str, set[str]] = {}
    current: str | None = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        heading = re.fullmatch(r"### `(\w+)`", line.strip())
        if heading:
            current = heading.group(1)
            out[current] = set()
            continue
        if line.startswith("## "):
            current = None
        cell = re.match(r"\| `(\w+)` \|", line)
        if current and cell:
            out[current].add(cell.group(1))
    return out


def migrated(tmp_path: Path) -> dict[str, set[str]]:
    path = tmp_path / "fresh.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        names = [
            n
            for (n,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                "AND name NOT LIKE 'time_entries_fts_%' ORDER BY name"
            )
        ]
        return {
            n: {r[1] for r in conn.execute("SELECT * FROM pragma_table_info(?)", (n,))}
            for n in names
        }


def test_schema_doc_matches_a_fresh_database(tmp_path: Path) -> None:
    doc, db = documented(), migrated(tmp_path)
    assert sorted(doc) == sorted(db), "tables/views documented vs present differ"
    for name, columns in db.items():
        assert doc[name] == columns, f"{name}: documented {doc[name]} vs database {columns}"
