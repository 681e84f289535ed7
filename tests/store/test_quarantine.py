"""Quarantined upstream entries: answers parsed by the real parser, applied to a real mirror
(a SQLite file and a PostgreSQL database)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from syncd import api
from syncd.records import EntryList, WindowScan
from syncd.store import Store

from .backends import dict_rows
from .factory import WS, ts, window


@pytest.fixture
def store(mirror: Store) -> Store:
    """Every test here runs on both backends."""
    return mirror


MARCH = ("2024-03-01", "2024-03-31")


def upstream(entry_id: str, day: str = "2024-03-04", **fields: Any) -> dict[str, Any]:
    """One entry in the find shape (§3.7)."""
    return {
        "id": entry_id,
        "date": f"{day}T00:00:00.000Z",
        "description": f"work {entry_id}",
        "start_time": f"{day}T09:00:00.000Z",
        "end_time": f"{day}T10:00:00.000Z",
        "duration": 3600,
        "billable": True,
        "manually_entered": False,
        "workspace_id": WS,
        "createdAt": f"{day}T10:00:00.000Z",
        "updatedAt": f"{day}T10:00:00.000Z",
        **fields,
    }


def answer(*items: dict[str, Any] | bytes) -> EntryList:
    """A find answer through the real parser (bytes items are sent as written)."""
    parts = [i if isinstance(i, bytes) else json.dumps(i).encode() for i in items]
    return api.parse_time_entries(200, {}, b"[" + b",".join(parts) + b"]", workspace_id=WS)


def scan(entries: EntryList, day: int = 2, dates: tuple[str, str] = MARCH) -> WindowScan:
    """The answer as one complete scan, taken on June ``day``."""
    base = window(list(entries), *dates, scanned_at=ts(f"2024-06-{day:02d}"))
    return replace(base, requested_at=base.scanned_at, rejected=entries.rejected)


def rows(store: Store, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
    return dict_rows(store.location, sql, params)


def entry_row(store: Store, entry_id: str) -> dict[str, Any]:
    (row,) = rows(store, "SELECT * FROM time_entries WHERE id = ?", (entry_id,))
    return row


def rejected(store: Store) -> list[dict[str, Any]]:
    return rows(store, "SELECT * FROM rejected_entries ORDER BY entry_key")


BIG = b'{"id":"big","date":"2024-03-05T00:00:00.000Z","workspace_id":"ws-1",' + (
    b'"start_time":"2024-03-05T09:00:00.000Z","end_time":"2024-03-05T10:00:00.000Z",'
    b'"duration":100000000000000000000000,"updatedAt":"2024-03-05T10:00:00.000Z"}'
)


def test_an_overflowing_duration_is_stored_cleared_and_recorded(store: Store) -> None:
    """A duration of 10^23 used to fail the whole window (SQLite cannot hold it)."""
    outcome = store.apply_window(scan(answer(upstream("ok"), BIG)))
    assert (outcome.inserted, len(outcome.quarantined)) == (2, 1)
    big = entry_row(store, "big")
    assert big["duration_seconds"] is None
    assert big["end_time"] == "2024-03-05T10:00:00.000Z"  # only the offending field is cleared
    assert big["deleted_at"] is None
    assert json.loads(big["raw"])["duration"] == 1e23  # the entry as upstream sent it
    (row,) = rejected(store)
    assert (row["id"], row["entry_key"], row["workspace_id"], row["stored"]) == ("big",) * 2 + (
        WS,
        1,
    )
    assert row["date"] == "2024-03-05"
    assert "duration is out of range" in row["reason"]
    assert row["raw"].startswith('{"id":"big"')
    assert (row["first_seen_at"], row["last_seen_at"], row["seen_count"]) == (
        ts("2024-06-02"),
        ts("2024-06-02"),
        1,
    )

    again = store.apply_window(scan(answer(upstream("ok"), BIG), day=3))
    assert (again.unchanged, len(again.quarantined)) == (2, 1)
    (row,) = rejected(store)
    assert (row["first_seen_at"], row["last_seen_at"], row["seen_count"]) == (
        ts("2024-06-02"),
        ts("2024-06-03"),
        2,
    )


def test_an_entry_dropped_from_an_answer_keeps_its_mirror_row(store: Store) -> None:
    """An entry that cannot be stored at all (its date is impossible) is not deleted upstream:
    its row stays as it was. Once upstream really drops it, the next scan tombstones it."""
    store.apply_window(scan(answer(upstream("a"), upstream("b"))))
    before = entry_row(store, "a")

    broken = answer(upstream("a", date="9999-01-01T00:00:00.000Z"), upstream("b"))
    assert [e.id for e in broken] == ["b"]
    outcome = store.apply_window(scan(broken, day=3))
    assert (outcome.tombstoned, len(outcome.quarantined)) == (0, 1)
    assert dict(entry_row(store, "a")) == dict(before)
    (row,) = rejected(store)
    assert (row["id"], row["stored"], row["date"]) == ("a", 0, None)
    assert "date is outside the years 1970-2100" in row["reason"]

    gone = store.apply_window(scan(answer(upstream("b")), day=4))
    assert gone.tombstoned == 1
    assert entry_row(store, "a")["deleted_at"] == ts("2024-06-04")
    assert rejected(store) == []


def test_an_answer_holding_an_entry_without_an_id_tombstones_nothing(store: Store) -> None:
    """An entry without a usable id might be any live row, so nothing counts as gone."""
    store.apply_window(scan(answer(upstream("a"), upstream("b"), upstream("c"))))
    nameless = {k: v for k, v in upstream("x").items() if k != "id"}
    outcome = store.apply_window(scan(answer(upstream("a"), nameless, b'"junk"'), day=3))
    assert (outcome.tombstoned, len(outcome.quarantined)) == (0, 2)
    live = rows(store, "SELECT id FROM time_entries WHERE deleted_at IS NULL")
    assert {r["id"] for r in live} == {"a", "b", "c"}
    keys = [r["entry_key"] for r in rejected(store)]
    assert len(keys) == 2
    assert all(k.startswith("sha256:") for k in keys)
    assert [r["id"] for r in rejected(store)] == [None, None]
    # Without the nameless entries the same answer tombstones what it lacks.
    assert store.apply_window(scan(answer(upstream("a")), day=4)).tombstoned == 2
    # The dated one is forgotten (its window no longer holds it); an undated one has no
    # window to be missed from, so it stays until it is seen again or pruned.
    assert [r["raw"] for r in rejected(store)] == ['"junk"']


def test_a_quarantined_entry_that_comes_back_clean_leaves_quarantine(store: Store) -> None:
    store.apply_window(scan(answer(upstream("e", duration=-5, description="x" * 70_000))))
    held = entry_row(store, "e")
    assert (held["duration_seconds"], held["description"]) == (None, "")
    assert store.status().quarantined_entries == 1

    fixed = upstream("e", updatedAt="2024-03-06T10:00:00.000Z")
    outcome = store.apply_window(scan(answer(fixed), day=3))
    assert (outcome.updated, len(outcome.quarantined)) == (1, 0)
    assert entry_row(store, "e")["duration_seconds"] == 3600
    assert rejected(store) == []
    assert store.status().quarantined_entries == 0


def test_a_moved_entry_found_clean_elsewhere_leaves_quarantine(store: Store) -> None:
    store.apply_window(scan(answer(upstream("e", duration=-5))))
    moved = upstream("e", day="2024-04-02")
    store.apply_window(scan(answer(moved), day=3, dates=("2024-04-01", "2024-04-30")))
    assert rejected(store) == []


def test_status_counts_quarantined_entries_per_workspace(store: Store) -> None:
    store.apply_window(scan(answer(upstream("a", duration=-1), upstream("b", duration=-2), BIG)))
    status = store.status()
    assert status.quarantined_entries == 3
    (workspace,) = status.workspaces
    assert workspace.quarantined_entries == 3
    assert workspace.live_entries == 3


def test_a_clean_window_costs_no_quarantine_writes(store: Store) -> None:
    outcome = store.apply_window(scan(answer(upstream("a"), upstream("b"))))
    assert outcome.quarantined == frozenset()
    assert rejected(store) == []
    if not store.is_postgres:
        assert "0010_rejected_entries" in store.applied_migrations()
