"""Fixed report and search queries over the views, asked through ``readonly``.

Every statement here is a constant or assembled from constants only; user input is always
bound as a parameter. Date bounds default to an open range written as text bounds (not
``? IS NULL OR``) so SQLite can still use the date index.

Hours by project, client, day, week or month are summed from ``daily_project_totals`` (a few
rows per day, see ``migrations.py``), adding running timers up to now exactly as the views do;
hours by member are summed from ``live_time_entries``.

Every statement has a SQLite form (numbered ``?N`` parameters, ``strftime``, ``date(…,
'weekday 1')``, FTS5 ``MATCH``) and a PostgreSQL form (named ``%(name)s`` parameters,
``EXTRACT(EPOCH …)``, ``syncd_week_start``, the ``description_search`` tsvector) that answers
with the same rows: names sort byte-wise (``COLLATE "C"``, SQLite's BINARY) with NULLs first,
and hours are rounded as numbers and read as floats.
"""

from __future__ import annotations

import re

from syncd.errors import UsageError

LOW_DATE = "0000-01-01"
HIGH_DATE = "9999-12-31"

_RUNNING = "e.duration_seconds IS NULL AND e.end_time IS NULL AND e.start_time IS NOT NULL"
_SO_FAR = (
    "MAX(0, CAST(strftime('%s', 'now') AS INTEGER) - CAST(strftime('%s', e.start_time) AS INTEGER))"
)


def _live_seconds(counted: str, so_far: str) -> str:
    """``counted`` of totals row ``t`` plus ``so_far`` summed over its running timers."""
    return (
        f"t.{counted} + CASE WHEN t.running = 0 THEN 0 ELSE ("  # noqa: S608 (constants only)
        f"SELECT IFNULL(SUM({so_far}), 0) "
        "FROM time_entries AS e INDEXED BY time_entries_running "
        "WHERE e.workspace_id = t.workspace_id AND e.date = t.date "
        "AND IFNULL(e.project_id, '') = t.project_id AND IFNULL(e.client_id, '') = t.client_id "
        f"AND e.end_time IS NULL AND e.deleted_at IS NULL AND {_RUNNING}) END"
    )


_SECONDS = _live_seconds("seconds", _SO_FAR)
_BILLABLE_SECONDS = _live_seconds(
    "billable_seconds", f"CASE WHEN e.billable THEN {_SO_FAR} ELSE 0 END"
)
_TOTALS = (
    f"SUM(t.entries) AS entries, ROUND(SUM({_SECONDS}) / 3600.0, 2) AS hours, "
    f"ROUND(SUM({_BILLABLE_SECONDS}) / 3600.0, 2) AS billable_hours "
    "FROM daily_project_totals AS t "
    "WHERE t.date BETWEEN ?1 AND ?2 AND (?3 IS NULL OR t.workspace_id = ?4) "
)

_WORKSPACE = "LEFT JOIN workspaces AS w ON w.id = r.workspace_id "
_WORKSPACE_NAME = "coalesce(w.name, r.workspace_id) AS workspace"

# by -> the whole statement; parameters: since, until, workspace_id twice.
# Projects, clients and members are grouped per workspace and name it in a last column, so
# the same name in two workspaces is two rows that say which is which. A week is labelled by
# its Monday, or by ``since`` when the range starts mid-week (never a day before the range).
_REPORTS: dict[str, str] = {
    # Names are the current ones (projects, clients), looked up once per group.
    "project": (
        "SELECT r.project_id, p.name AS project, c.name AS client, "  # noqa: S608
        f"r.entries, r.hours, r.billable_hours, {_WORKSPACE_NAME} FROM ("
        "SELECT t.workspace_id, NULLIF(t.project_id, '') AS project_id, "
        "NULLIF(MAX(t.client_id), '') AS client_id, "
        f"{_TOTALS}GROUP BY t.workspace_id, t.project_id) AS r "
        "LEFT JOIN projects AS p ON p.id = r.project_id "
        "LEFT JOIN clients AS c ON c.id = r.client_id "
        f"{_WORKSPACE}ORDER BY r.hours DESC, project, workspace"
    ),
    "client": (
        "SELECT r.client_id, c.name AS client, r.entries, r.hours, r.billable_hours, "  # noqa: S608
        f"{_WORKSPACE_NAME} FROM ("
        "SELECT t.workspace_id, NULLIF(t.client_id, '') AS client_id, "
        f"{_TOTALS}GROUP BY t.workspace_id, t.client_id) AS r "
        "LEFT JOIN clients AS c ON c.id = r.client_id "
        f"{_WORKSPACE}ORDER BY r.hours DESC, client, workspace"
    ),
    "member": (
        "SELECT r.team_member_id, r.member, r.entries, r.hours, r.billable_hours, "  # noqa: S608
        f"{_WORKSPACE_NAME} FROM ("
        "SELECT workspace_id, team_member_id, MAX(team_member_name) AS member, "
        "COUNT(*) AS entries, ROUND(SUM(hours), 2) AS hours, "
        "ROUND(SUM(CASE WHEN billable THEN hours ELSE 0 END), 2) AS billable_hours "
        "FROM live_time_entries "
        "WHERE date BETWEEN ?1 AND ?2 AND (?3 IS NULL OR workspace_id = ?4) "
        f"GROUP BY workspace_id, team_member_id) AS r {_WORKSPACE}"
        "ORDER BY r.hours DESC, r.member, workspace"
    ),
    "day": f"SELECT t.date AS day, {_TOTALS}GROUP BY t.date ORDER BY day",
    "week": (
        f"SELECT MAX(date(t.date, '-6 days', 'weekday 1'), ?1) AS week_start, {_TOTALS}"
        "GROUP BY date(t.date, '-6 days', 'weekday 1') ORDER BY week_start"
    ),
    "month": (
        f"SELECT substr(t.date, 1, 7) AS month, {_TOTALS}"
        "GROUP BY substr(t.date, 1, 7) ORDER BY month"
    ),
}


# --------------------------------------------------------------------------- PostgreSQL forms
# Parameters by name: since, until, workspace (None for all).
_PG_EPOCH = "CAST(floor(EXTRACT(EPOCH FROM {})) AS BIGINT)"
_PG_SO_FAR = (
    f"GREATEST(0, {_PG_EPOCH.format('now()')} - "
    f"{_PG_EPOCH.format('CAST(e.start_time AS TIMESTAMPTZ)')})"
)
_PG_IN_RANGE = (
    "{date} BETWEEN %(since)s AND %(until)s "
    "AND (CAST(%(workspace)s AS TEXT) IS NULL OR {workspace} = %(workspace)s)"
)


def _pg_live_seconds(counted: str, so_far: str) -> str:
    """``_live_seconds`` on PostgreSQL."""
    return (
        f"t.{counted} + CASE WHEN t.running = 0 THEN 0 ELSE ("  # noqa: S608 (constants only)
        f"SELECT COALESCE(SUM({so_far}), 0) FROM time_entries AS e "
        "WHERE e.workspace_id = t.workspace_id AND e.date = t.date "
        "AND COALESCE(e.project_id, '') = t.project_id "
        "AND COALESCE(e.client_id, '') = t.client_id "
        f"AND e.end_time IS NULL AND e.deleted_at IS NULL AND {_RUNNING}) END"
    )


def _pg_round_hours(seconds: str) -> str:
    """``ROUND(seconds / 3600.0, 2)`` as SQLite answers it: a float."""
    return f"CAST(ROUND(CAST({seconds} AS NUMERIC) / 3600.0, 2) AS DOUBLE PRECISION)"


_PG_SECONDS = _pg_live_seconds("seconds", _PG_SO_FAR)
_PG_BILLABLE_SECONDS = _pg_live_seconds(
    "billable_seconds", f"CASE WHEN e.billable = 1 THEN {_PG_SO_FAR} ELSE 0 END"
)
_PG_TOTALS = (
    f"SUM(t.entries) AS entries, {_pg_round_hours(f'SUM({_PG_SECONDS})')} AS hours, "
    f"{_pg_round_hours(f'SUM({_PG_BILLABLE_SECONDS})')} AS billable_hours "
    "FROM daily_project_totals AS t "
    f"WHERE {_PG_IN_RANGE.format(date='t.date', workspace='t.workspace_id')} "
)
_PG_WORKSPACE_ORDER = 'coalesce(w.name, r.workspace_id) COLLATE "C"'
_PG_WEEK = "syncd_week_start(t.date)"

_PG_REPORTS: dict[str, str] = {
    "project": (
        "SELECT r.project_id, p.name AS project, c.name AS client, "  # noqa: S608
        f"r.entries, r.hours, r.billable_hours, {_WORKSPACE_NAME} FROM ("
        "SELECT t.workspace_id, NULLIF(t.project_id, '') AS project_id, "
        "NULLIF(MAX(t.client_id COLLATE \"C\"), '') AS client_id, "
        f"{_PG_TOTALS}GROUP BY t.workspace_id, t.project_id) AS r "
        "LEFT JOIN projects AS p ON p.id = r.project_id "
        "LEFT JOIN clients AS c ON c.id = r.client_id "
        f'{_WORKSPACE}ORDER BY r.hours DESC, p.name COLLATE "C" NULLS FIRST, '
        f"{_PG_WORKSPACE_ORDER}"
    ),
    "client": (
        "SELECT r.client_id, c.name AS client, r.entries, r.hours, r.billable_hours, "  # noqa: S608
        f"{_WORKSPACE_NAME} FROM ("
        "SELECT t.workspace_id, NULLIF(t.client_id, '') AS client_id, "
        f"{_PG_TOTALS}GROUP BY t.workspace_id, t.client_id) AS r "
        "LEFT JOIN clients AS c ON c.id = r.client_id "
        f'{_WORKSPACE}ORDER BY r.hours DESC, c.name COLLATE "C" NULLS FIRST, '
        f"{_PG_WORKSPACE_ORDER}"
    ),
    "member": (
        "SELECT r.team_member_id, r.member, r.entries, r.hours, r.billable_hours, "  # noqa: S608
        f"{_WORKSPACE_NAME} FROM ("
        "SELECT workspace_id, team_member_id, "
        'MAX(team_member_name COLLATE "C") AS member, '
        "COUNT(*) AS entries, "
        "CAST(ROUND(CAST(SUM(hours) AS NUMERIC), 2) AS DOUBLE PRECISION) AS hours, "
        "CAST(ROUND(CAST(SUM(CASE WHEN billable = 1 THEN hours ELSE 0 END) AS NUMERIC), 2) "
        "AS DOUBLE PRECISION) AS billable_hours "
        "FROM live_time_entries "
        f"WHERE {_PG_IN_RANGE.format(date='date', workspace='workspace_id')} "
        f"GROUP BY workspace_id, team_member_id) AS r {_WORKSPACE}"
        f'ORDER BY r.hours DESC, r.member COLLATE "C" NULLS FIRST, {_PG_WORKSPACE_ORDER}'
    ),
    "day": f"SELECT t.date AS day, {_PG_TOTALS}GROUP BY t.date ORDER BY day",
    "week": (
        f"SELECT GREATEST({_PG_WEEK}, CAST(%(since)s AS TEXT)) AS week_start, {_PG_TOTALS}"
        f"GROUP BY {_PG_WEEK} ORDER BY week_start"
    ),
    "month": (
        f"SELECT substr(t.date, 1, 7) AS month, {_PG_TOTALS}"
        "GROUP BY substr(t.date, 1, 7) ORDER BY month"
    ),
}

REPORT_KINDS: tuple[str, ...] = tuple(_REPORTS)


def hours_report_sql(by: str, *, postgres: bool = False) -> str:
    """The SQL of ``report hours --by BY`` (the PostgreSQL form with ``postgres``); its
    parameters are :func:`hours_report_params`'s.

    Raises ``UsageError`` for an unknown ``by``.
    """
    try:
        return (_PG_REPORTS if postgres else _REPORTS)[by]
    except KeyError:
        raise UsageError(
            f"unknown report grouping {by!r}; choose one of: {', '.join(REPORT_KINDS)}"
        ) from None


def hours_report_params(
    since: str | None, until: str | None, workspace_id: str | None, *, postgres: bool = False
) -> tuple[str | None, ...] | dict[str, str | None]:
    """The parameters of :func:`hours_report_sql`: since, until, workspace_id twice on SQLite;
    by name on PostgreSQL."""
    low, high = since or LOW_DATE, until or HIGH_DATE
    if postgres:
        return {"since": low, "until": high, "workspace": workspace_id}
    return (low, high, workspace_id, workspace_id)


SEARCH_SQL = """
SELECT e.id, e.workspace_id, e.date, e.team_member_name, e.project_name, e.description
FROM time_entries_fts AS f
JOIN time_entries AS e ON e.rowid = f.rowid
WHERE time_entries_fts MATCH ?
  AND e.deleted_at IS NULL
  AND e.date BETWEEN ? AND ?
  AND (? IS NULL OR e.workspace_id = ?)
ORDER BY e.date DESC, e.id
LIMIT ?"""


# The search on PostgreSQL, as docs/schema.md documents it: the folded text as a tsquery
# (plain words are joined by :func:`pg_search_text` first, as FTS5 reads them).
PG_SEARCH_SQL = """
SELECT e.id, e.workspace_id, e.date, e.team_member_name, e.project_name, e.description
FROM time_entries AS e
WHERE e.description_search @@ to_tsquery('simple', syncd_fold(%(text)s))
  AND e.deleted_at IS NULL
  AND e.date BETWEEN %(since)s AND %(until)s
  AND (CAST(%(workspace)s AS TEXT) IS NULL OR e.workspace_id = %(workspace)s)
ORDER BY e.date DESC, e.id COLLATE "C"
LIMIT %(limit)s"""


_PLAIN_TERMS = re.compile(r"\s*(?:\w+\*?\s*)+", re.UNICODE)


def pg_search_text(text: str) -> str:
    """``text`` as ``to_tsquery`` reads it: a list of plain words, each with an optional
    ``*`` for a prefix (the FTS5 query that finds entries holding all of them) becomes
    ``word & prefix:*``; anything else is taken as tsquery syntax already."""
    if not _PLAIN_TERMS.fullmatch(text):
        return text
    terms = [f"{word[:-1]}:*" if word.endswith("*") else word for word in text.split()]
    return " & ".join(terms)


def search_sql(*, postgres: bool = False) -> str:
    """The search statement: FTS5 ``MATCH`` on SQLite, the tsvector query on PostgreSQL."""
    return PG_SEARCH_SQL if postgres else SEARCH_SQL


def search_params(
    text: str,
    since: str | None,
    until: str | None,
    workspace_id: str | None,
    limit: int,
    *,
    postgres: bool = False,
) -> tuple[object, ...] | dict[str, object]:
    """The parameters of :func:`search_sql`."""
    low, high = since or LOW_DATE, until or HIGH_DATE
    if postgres:
        return {
            "text": pg_search_text(text),
            "since": low,
            "until": high,
            "workspace": workspace_id,
            "limit": limit,
        }
    return (text, low, high, workspace_id, workspace_id, limit)
