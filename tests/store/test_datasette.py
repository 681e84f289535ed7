"""Datasette opens the mirror and searches descriptions through the FTS5 index."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from syncd.store import ReadOnlyMirror, Store
from syncd.store.migrations import SEARCH

from .factory import entry, ts, window

datasette_app = pytest.importorskip("datasette.app")

ENTRIES = [
    entry("a", day="2024-03-04", description="Prepare invoice for Acme"),
    entry("b", day="2024-03-05", description="Sprint planning"),
    entry("c", day="2024-03-06", description="Facture envoyée (invoice sent)"),
]


def _mirror(path: Path) -> None:
    with Store(path) as store:
        store.apply_window(window(ENTRIES, "2024-03-01", "2024-03-31"))
        # A deleted entry leaves the index: Datasette must not find it either.
        store.apply_window(
            window(ENTRIES[:2], "2024-03-01", "2024-03-31", scanned_at=ts("2024-06-02"))
        )


async def _search(path: Path, text: str) -> tuple[list[str], str]:
    ds = datasette_app.Datasette([str(path)])
    found = await ds.client.get(f"/mirror/time_entries.json?_search={text}&_shape=array")
    assert found.status_code == 200, found.text
    page = await ds.client.get("/mirror/time_entries")
    return [row["id"] for row in found.json()], page.text


async def test_datasette_finds_an_entry_through_search(tmp_path: Path) -> None:
    path = tmp_path / "mirror.sqlite"
    _mirror(path)
    ids, page = await _search(path, "invoice")
    assert ids == ["a"]
    assert 'name="_search"' in page  # the table page offers a search box


async def test_a_mirror_indexed_by_an_older_syncd_is_searchable_after_upgrade(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mirror.sqlite"
    _mirror(path)
    with sqlite3.connect(path) as conn:  # the index as migration 0005 declared it
        conn.execute("DROP TABLE time_entries_fts")
        for sql in SEARCH:
            conn.execute(sql)
        conn.execute("DELETE FROM schema_migrations WHERE name LIKE '0011_%'")
    assert (await _search(path, "invoice"))[0] != ["a"]  # Datasette ignored ?_search=
    Store(path).close()  # migrates
    ids, _ = await _search(path, "invoice")
    assert ids == ["a"]
    with ReadOnlyMirror(path) as mirror:
        assert [r[0] for r in mirror.search("invoice")[1]] == ["a"]


async def test_datasette_facets_a_report_view(tmp_path: Path) -> None:
    """A report view can be faceted in Datasette (the hours of a project, week by week)."""
    path = tmp_path / "mirror.sqlite"
    _mirror(path)
    ds = datasette_app.Datasette([str(path)])
    got = await ds.client.get(
        "/mirror/hours_per_week_per_project.json?_facet=project_name&_shape=objects"
    )
    assert got.status_code == 200, got.text
    facet = got.json()["facet_results"]["project_name"]
    assert [(v["value"], v["count"]) for v in facet["results"]] == [("Apollo", 1)]
