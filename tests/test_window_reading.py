"""What syncd learns about the find window from answers (pure, no I/O)."""

from __future__ import annotations

from dataclasses import replace

from syncd.records import TimeEntry
from syncd.window_reading import WindowReading, observe, widen

SEEN = "2026-12-01T00:00:00.000Z"


def entry(entry_id: str, day: str, created: str | None) -> TimeEntry:
    return TimeEntry(
        id=entry_id, workspace_id="w", date=day, start_time=None, end_time=None,
        duration_seconds=0, description="", billable=True, manually_entered=True,
        team_member_id=None, team_member_name=None, project_id=None, project_name=None,
        client_id=None, client_name=None, task_id=None, task_name=None,
        created_at=created, updated_at=created,
    )  # fmt: skip


def test_a_request_reaches_a_day_past_its_window_on_each_side():
    assert widen("2026-11-10", "2026-11-20") == ("2026-11-09", "2026-11-21")
    assert widen(None, "2026-11-20") == (None, "2026-11-21")
    assert widen("2026-11-10", None) == ("2026-11-09", None)


def test_an_entry_created_outside_the_asked_range_proves_date_filtering():
    late = entry("a", "2026-11-10", "2026-11-25T08:00:00.000Z")  # a timesheet filled in late
    learned = observe(WindowReading(), [late], "2026-11-09", "2026-11-12", SEEN)
    assert learned.field == "date"
    assert learned.tombstone_by() == "date"
    assert learned.field_evidence is not None
    assert learned.field_evidence.entry_id == "a"


def test_an_entry_dated_outside_the_asked_range_proves_creation_time_filtering():
    late = entry("a", "2026-11-10", "2026-11-25T08:00:00.000Z")
    learned = observe(WindowReading(), [late], "2026-11-24", "2026-11-26", SEEN)
    assert learned.field == "created_at"


def test_entries_inside_under_both_readings_prove_nothing():
    same_day = entry("a", "2026-11-10", "2026-11-10T17:00:00.000Z")
    # a date one day past the range may be a UTC offset: no proof either
    offset = entry("b", "2026-11-13", "2026-11-12T20:00:00.000Z")
    reading = observe(WindowReading(), [same_day, offset], "2026-11-09", "2026-11-12", SEEN)
    assert reading == WindowReading()
    assert reading.tombstone_by() == "both"


def test_contradicting_evidence_stops_tombstoning_unless_pinned():
    by_date = entry("a", "2026-11-10", "2026-11-25T08:00:00.000Z")
    neither = entry("b", "2026-01-01", "2026-01-01T08:00:00.000Z")
    learned = observe(WindowReading(), [by_date, neither], "2026-11-09", "2026-11-12", SEEN)
    assert learned.conflict
    assert learned.tombstone_by() == "none"
    pinned = WindowReading.from_json(learned.to_json(), pinned="date")
    assert not pinned.conflict
    assert pinned.tombstone_by() == "date"


def test_what_was_learned_survives_the_mirror_and_a_pin_removed():
    late = entry("a", "2026-11-10", "2026-11-25T08:00:00.000Z")
    learned = observe(WindowReading(), [late], "2026-11-24", "2026-11-26", SEEN)
    assert WindowReading.from_json(learned.to_json()) == learned
    pinned = WindowReading(field="date", pinned=True)
    assert WindowReading.from_json(pinned.to_json()).field is None  # pin gone, nothing proven
    assert WindowReading.from_json("not json") == WindowReading()


def test_round_answers_are_suspicious_until_shown_complete():
    fresh = WindowReading()
    assert fresh.suspicious(100)
    assert fresh.suspicious(1000)
    assert not fresh.suspicious(99)
    assert not fresh.suspicious(1001)
    verified = replace(fresh, verified_up_to=1000)
    assert not verified.suspicious(900)  # any cap is at least 1,000: 900 was not cut
    assert verified.suspicious(1000)  # exactly 1,000 may be a cap of 1,000
    capped = replace(fresh, cap=1000)
    assert capped.suspicious(1000)
    assert not capped.suspicious(999)
    assert capped.answer_limit() == 1000
