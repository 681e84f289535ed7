"""The columns are declared once, by the models: rows and statements follow them."""

from __future__ import annotations

import sqlite3

from syncd.store import models as m
from syncd.store.rows import CONTENT_COLUMNS, ENTRY_COLUMNS, content_of, row_of
from syncd.store.statements import REF_COLUMNS

from .factory import entry, ts


def test_entry_columns_are_the_models_and_the_tables(store, db_path) -> None:
    assert tuple(f.column_name for f in m.TimeEntry._meta.sorted_fields) == ENTRY_COLUMNS
    assert CONTENT_COLUMNS[-1] == "updated_at"
    with sqlite3.connect(db_path) as conn:
        table = [r[1] for r in conn.execute("PRAGMA table_info(time_entries)")]
    assert set(ENTRY_COLUMNS) <= set(table)


def test_a_row_puts_each_value_under_its_column() -> None:
    e = entry("e", description="hello", billable=True, updated_at=ts("2024-03-05"))
    rowid, *values = row_of(e, "poll", ts("2024-03-06"), 7)
    row = dict(zip(ENTRY_COLUMNS, values, strict=True))
    assert rowid == 7
    assert (row["id"], row["description"], row["billable"]) == ("e", "hello", 1)
    assert (row["updated_at"], row["deleted_at"]) == (ts("2024-03-05"), None)
    assert (row["synced_at"], row["source"], row["raw"]) == (ts("2024-03-06"), "poll", e.raw)
    assert dict(zip(CONTENT_COLUMNS, content_of(e), strict=True)) == {
        c: row[c] for c in CONTENT_COLUMNS
    }


def test_reference_columns_are_the_models() -> None:
    assert REF_COLUMNS == {
        "team_member": ("id", "workspace_id", "name", "email"),
        "client": ("id", "workspace_id", "name"),
        "project": ("id", "workspace_id", "name", "client_id"),
        "task": ("id", "workspace_id", "project_id", "name"),
        "tag": ("id", "workspace_id", "name", "color"),
    }
