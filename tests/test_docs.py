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


# ---------------------------------------------------------------------------- the demo's outputs

QUOTED = re.compile(r"```sql\n(.*?)```\n\n```\n(.*?)```", re.DOTALL)


def _words(sql: str) -> str:
    return " ".join(sql.split()).rstrip(";")


def _quoted_in_readme() -> list[tuple[str, str]]:
    """(query, output) for every ```sql block of the README followed by its output."""
    return QUOTED.findall((ROOT / "README.md").read_text(encoding="utf-8"))


def test_the_readme_quotes_the_demos_queries():
    from syncd.demo import QUERIES

    quoted = _quoted_in_readme()
    assert len(quoted) >= 3
    demo = {_words(sql) for sql in QUERIES.values()}
    for sql, _output in quoted:
        assert _words(sql) in demo, f"README query not run by make demo: {sql}"


@pytest.mark.e2e
def test_the_readme_outputs_are_what_make_demo_prints(tmp_path):
    """The demo's emulator runs at a fixed instant, so its outputs are the README's exactly."""
    import subprocess
    import sys

    from syncd.demo import QUERIES

    done = subprocess.run(
        [sys.executable, "-m", "syncd.demo", "--dir", str(tmp_path), "--no-rate-limit"],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    printed = {}
    for section in done.stdout.split("\n== ")[1:]:
        title, _, body = section.partition("\n")
        printed[_words(QUERIES[title])] = body.split("\nThe mirror is ")[0].rstrip("\n") + "\n"
    for sql, output in _quoted_in_readme():
        assert printed[_words(sql)] == output, f"README output differs for: {sql}"
