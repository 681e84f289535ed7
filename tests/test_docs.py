"""The example queries in the docs run on a freshly migrated mirror, so they cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from syncd.store import Store, run_readonly_query

ROOT = Path(__file__).resolve().parents[1]
SQL_BLOCK = re.compile(r"```sql\n(.*?)```", re.DOTALL)


def _examples() -> list[tuple[str, str]]:
    found = []
    for doc in ("README.md", "docs/schema.md"):
        for n, block in enumerate(SQL_BLOCK.findall((ROOT / doc).read_text(encoding="utf-8"))):
            found.append((f"{doc}#{n + 1}", block))
    return found


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("docs") / "mirror.sqlite"
    Store(path).close()
    return path


def test_the_docs_show_example_queries():
    assert len(_examples()) >= 6


@pytest.mark.parametrize(("where", "sql"), _examples(), ids=[w for w, _ in _examples()])
def test_example_query_runs(mirror, where, sql):
    """Every ```sql block in README.md and docs/schema.md is valid on the current schema."""
    columns, _rows = run_readonly_query(mirror, sql)
    assert columns, where
