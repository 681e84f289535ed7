"""Fixed report and search queries over the views (shared by ``Store`` and ``readonly``).

Every statement here is a constant or assembled from constants only; user input is always
bound as a parameter. Date bounds default to an open range written as text bounds (not
``? IS NULL OR``) so SQLite can still use the date index.
"""

from __future__ import annotations

from syncd.errors import UsageError

LOW_DATE = "0000-01-01"
HIGH_DATE = "9999-12-31"

# by -> (group key expression, extra selected columns, ORDER BY)
_REPORTS: dict[str, tuple[str, str, str]] = {
    "project": (
        "project_id",
        "project_id, MAX(project_name) AS project, MAX(client_name) AS client",
        "hours DESC, project",
    ),
    "client": ("client_id", "client_id, MAX(client_name) AS client", "hours DESC, client"),
    "member": (
        "team_member_id",
        "team_member_id, MAX(team_member_name) AS member",
        "hours DESC, member",
    ),
    "day": ("date", "date AS day", "day"),
    "week": (
        "date(date, '-6 days', 'weekday 1')",
        "date(date, '-6 days', 'weekday 1') AS week_start",
        "week_start",
    ),
    "month": ("substr(date, 1, 7)", "substr(date, 1, 7) AS month", "month"),
}

REPORT_KINDS: tuple[str, ...] = tuple(_REPORTS)


def hours_report_sql(by: str) -> str:
    """The SQL of ``report hours --by BY``; parameters: since, until, workspace_id twice.

    Raises ``UsageError`` for an unknown ``by``.
    """
    try:
        key, columns, order = _REPORTS[by]
    except KeyError:
        raise UsageError(
            f"unknown report grouping {by!r}; choose one of: {', '.join(REPORT_KINDS)}"
        ) from None
    return (
        f"SELECT {columns}, COUNT(*) AS entries, ROUND(SUM(hours), 2) AS hours, "  # noqa: S608
        "ROUND(SUM(CASE WHEN billable THEN hours ELSE 0 END), 2) AS billable_hours "
        "FROM live_time_entries "
        "WHERE date BETWEEN ? AND ? AND (? IS NULL OR workspace_id = ?) "
        f"GROUP BY {key} ORDER BY {order}"
    )


def hours_report_params(
    since: str | None, until: str | None, workspace_id: str | None
) -> tuple[str | None, ...]:
    return (since or LOW_DATE, until or HIGH_DATE, workspace_id, workspace_id)


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


def search_params(
    text: str, since: str | None, until: str | None, workspace_id: str | None, limit: int
) -> tuple[object, ...]:
    return (text, since or LOW_DATE, until or HIGH_DATE, workspace_id, workspace_id, limit)


REBUILD_SEARCH = (
    "INSERT INTO time_entries_fts (time_entries_fts) VALUES ('delete-all')",
    "INSERT INTO time_entries_fts (rowid, description) "
    "SELECT rowid, description FROM time_entries WHERE deleted_at IS NULL",
)
