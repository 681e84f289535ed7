"""Turns status data and report rows into text for people.

``syncd status`` and ``syncd report hours`` print through here when they print for a person:
a rich table on a terminal, plain aligned text otherwise (never clipped to a width, so a
pipe or a file gets every column), durations and rates in human units. ``--json`` and
``--csv`` do not come here: scripts get the raw figures.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from syncd.status import MirrorStatus, UpstreamReading, WorkspaceStatus

# ----------------------------------------------------------------------------- human units


def duration(seconds: float) -> str:
    """``seconds`` in the two largest units: "23 s", "4 min", "3 h 14 min", "2 d 5 h"."""
    total = max(0, round(seconds))
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min" + (f" {secs} s" if secs and minutes < 10 else "")
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    days, hours = divmod(hours, 24)
    return f"{days:,} d" + (f" {hours} h" if hours else "")


def ago(seconds: float | None) -> str:
    """How long ago, in words: "just now", "4 min ago", "-" when unknown."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return "just now"
    return f"{duration(seconds)} ago"


def every(seconds: float | None) -> str:
    """An interval as "every 3 h 14 min"."""
    return "-" if seconds is None else f"every {duration(seconds)}"


def count(value: float | None, unit: str = "") -> str:
    """A whole number with thousands separators and an optional unit: "7,123 requests/day"."""
    if value is None:
        return "-"
    return f"{round(value):,}" + (f" {unit}" if unit else "")


def hours(value: float | None) -> str:
    """Hours with exactly two decimals: "1,234.50"."""
    return "-" if value is None else f"{value:,.2f}"


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def moment(text: str | None, now: datetime) -> str:
    """A timestamp as "2026-12-04 16:05 UTC (4 min ago)"; "-" when missing."""
    when = _parse(text)
    if when is None:
        return "-" if not text else str(text)
    when = when.astimezone(UTC)
    return f"{when:%Y-%m-%d %H:%M} UTC ({ago((now - when).total_seconds())})"


def share(part: float, whole: float) -> str:
    """``part`` of ``whole`` as a whole percentage, "100 %" only when complete."""
    if whole <= 0:
        return "100 %"
    value = 100 * part / whole
    shown = min(99, int(value)) if part < whole else 100
    return f"{max(0, shown)} %"


# ----------------------------------------------------------------------------- tables


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def plain_table(columns: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    """Columns padded to their widest cell, two spaces apart; ``right`` columns right-aligned.

    Widths are terminal columns (wide characters count double). No width limit: every cell
    is printed whole.
    """
    from rich.cells import cell_len  # terminal columns: 社内 is four wide, not two

    widths = [cell_len(c) for c in columns]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], cell_len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = []
        for i, cell in enumerate(cells):
            pad = " " * (widths[i] - cell_len(cell))
            parts.append(pad + cell if i in right else cell + pad)
        return "  ".join(parts).rstrip()

    return "\n".join([line(columns), *(line(row) for row in rows)]) + "\n"


def write_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    out: TextIO,
    *,
    right: set[int] | None = None,
    title: str | None = None,
) -> None:
    """A rich table on a terminal, :func:`plain_table` otherwise."""
    right = right or set()
    if _isatty(out):
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, show_edge=False, header_style="bold")
        for i, name in enumerate(columns):
            table.add_column(name, justify="right" if i in right else "left")
        for row in rows:
            table.add_row(*row)
        Console(file=out, width=max(80, shutil.get_terminal_size().columns)).print(table)
    else:
        if title:
            out.write(f"{title}\n")
        out.write(plain_table(columns, rows, right))


# ----------------------------------------------------------------------------- status


def _history(ws: WorkspaceStatus) -> str:
    """The backfill: done back to the oldest entry, or how far back it has come."""
    state = ws.progress
    if state.backfill_complete:
        return f"done, from {state.oldest_date}" if state.oldest_date else "done"
    before = state.backfill_before
    return f"backfilling, at {before}" if before else "not started"


def _sweep(ws: WorkspaceStatus, today: date) -> str:
    """Where the reconciliation sweep is: the share of history below today it has re-verified
    in its current pass, and the date it has reached."""
    state = ws.progress
    if not state.backfill_complete:
        return "after the backfill"
    cursor, oldest = state.reconcile_before, state.oldest_date
    if not cursor or not oldest:
        return "not started"
    try:
        at, bottom = date.fromisoformat(cursor), date.fromisoformat(oldest)
    except ValueError:
        return str(cursor)
    whole = (today - bottom).days
    done = (today - at).days
    return f"{share(done, whole)} of history, at {cursor}"


def status_text(status: MirrorStatus, *, now: datetime) -> tuple[list[str], list[list[str]], str]:
    """The workspace table (columns, rows) and the lines below it, for ``status`` at ``now``
    (aware)."""
    today = now.astimezone(UTC).date()
    columns = ["workspace", "live", "deleted", "fresh", "history", "sweep"]
    rows = []
    for ws in status.workspaces:
        lag = ws.freshness_lag_seconds
        rows.append(
            [
                str(ws.name or ws.id),
                count(ws.live_entries),
                count(ws.tombstoned_entries),
                "never synced" if lag is None else f"verified {ago(lag)}",
                _history(ws),
                _sweep(ws, today),
            ]
        )
    lines: list[str] = []
    budget = status.budget
    if budget is not None:
        lines.append(
            f"budget: {count(budget.used_today)} of "
            f"{count(budget.per_day, 'requests')} used today, "
            f"{count(budget.used_this_minute)} this minute"
            + (f", paused until {moment(str(budget.not_before), now)}" if budget.not_before else "")
        )
    plan = status.plan
    if plan is not None:
        lines.append(
            f"plan: poll {every(plan.poll_interval_seconds)}"
            + (" (stretched to fit the quota)" if plan.poll_stretched else "")
            + f", reconcile {every(plan.reconcile_interval_seconds)}, "
            f"about {count(plan.planned_per_day, 'requests/day')} "
            f"of {count(plan.daemon_budget)}"
        )
        lines.extend(f"plan warning: {w}" for w in plan.warnings)
    daemon = status.daemon
    if daemon is not None:
        state = "running" if daemon.running else "stopped"
        lines.append(f"daemon: {state} (pid {daemon.pid}, seen {moment(daemon.seen_at, now)})")
    lines.extend(_sharing_lines(status, now))
    hook = status.webhook_subscription
    lines.append(
        f"webhook subscription: {hook.status} {hook.id} (checked {moment(hook.checked_at, now)})"
        if hook is not None
        else "webhook subscription: none"
    )
    lines.extend(_reading_lines(status.upstream_reading))
    if status.quarantined_entries:
        lines.append(
            f"quarantined upstream entries: {count(status.quarantined_entries)} "
            "(stored with fields cleared, or not at all; see the rejected_entries table)"
        )
    if status.webhook_events:
        lines.append(
            "webhook events: "
            + ", ".join(f"{k} {count(v)}" for k, v in sorted(status.webhook_events.items()))
        )
    last = status.last_run
    if last is not None:
        lines.append(
            f"last run: {last.kind} {'ok' if last.ok else 'FAILED'}, "
            f"{moment(last.finished_at or last.started_at, now)}: "
            f"{count(last.inserted)} new, {count(last.updated)} updated, "
            f"{count(last.tombstoned)} deleted, "
            f"{count(last.requests, 'requests')}" + (f" ({last.error})" if last.error else "")
        )
    return columns, rows, "\n".join(lines) + "\n"


def _sharing_lines(status: MirrorStatus, now: datetime) -> list[str]:
    """The syncd instances sharing the key's work, one line each (none when none runs), and
    who holds each workspace's lease and the leader lease."""
    sharing = status.sharing
    if not sharing.instances and not sharing.workspaces and sharing.leader is None:
        return []
    names = {ws.id: str(ws.name or ws.id) for ws in status.workspaces}
    leader = sharing.leader.holder if sharing.leader is not None else None
    lines = [f"instances: {len(sharing.instances)} live"]
    for instance in sharing.instances:
        role = instance.kind + (
            ", keeps the webhook subscription" if instance.what == leader else ""
        )
        lines.append(
            f"  {instance.what} ({role}), since {moment(instance.acquired_at, now)}, "
            f"lease {_until(instance.expires_at, now)}"
        )
    for lease in sharing.workspaces:
        lines.append(
            f"  workspace {names.get(lease.what, lease.what)}: {lease.holder}, "
            f"lease {_until(lease.expires_at, now)}"
        )
    return lines


def _until(text: str, now: datetime) -> str:
    """When a lease lapses unless renewed, in words: "lapses in 42 s"."""
    when = _parse(text)
    if when is None:
        return f"lapses at {text}"
    left = (when - now).total_seconds()
    return f"lapses in {duration(left)}" if left >= 1 else "lapses now"


def _reading_lines(reading: UpstreamReading) -> list[str]:
    """What syncd learned about the find window, one fact a line (none before a first read)."""
    if not reading.window_field:
        return []
    lines = [f"find window field: {reading.window_field}"]
    if reading.window_field_evidence:
        lines.append(f"  because: {reading.window_field_evidence}")
    if reading.conflicting_evidence:
        lines.append(f"  but: {reading.conflicting_evidence}")
    lines.append(f"find window bounds: {reading.bounds}")
    if reading.answer_cap:
        lines.append(
            f"answer cap: {count(reading.answer_cap, 'entries')} ({reading.answer_cap_evidence})"
        )
    if reading.timeout_above:
        lines.append(
            f"answers time out above about {count(reading.timeout_above, 'entries')} "
            f"({reading.timeout_evidence})"
        )
    return lines


def print_status(status: MirrorStatus, out: TextIO, *, now: datetime | None = None) -> None:
    """Print ``status`` for people: one row per workspace, then the budget, the daemon's plan,
    the webhook subscription, what syncd learned about upstream, the last run."""
    columns, rows, lines = status_text(status, now=now or datetime.now(UTC))
    write_table(columns, rows, out, right={1, 2}, title="workspaces")
    out.write(lines)
    out.flush()


# ----------------------------------------------------------------------------- reports

_NUMBERS = {"entries", "hours", "billable_hours"}


def report_table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> tuple[list[str], list[list[str]], set[int]]:
    """The text form of a ``report hours`` result: ids left out, hours with two decimals,
    counts with separators, and the workspace column only when a name appears in more than
    one workspace. Returns (columns, rows, indexes of right-aligned columns)."""
    keep = [i for i, c in enumerate(columns) if not c.endswith("_id") and c != "workspace"]
    if "workspace" in columns:
        ws = columns.index("workspace")
        labels = [i for i in keep if columns[i] not in _NUMBERS]
        names = Counter(tuple(row[i] for i in labels) for row in rows)
        if any(n > 1 for n in names.values()):
            keep.insert(0, ws)
    out_columns = [columns[i] for i in keep]
    out_rows = []
    for row in rows:
        cells = []
        for i in keep:
            name, value = columns[i], row[i]
            if name in ("hours", "billable_hours"):
                cells.append(hours(value))
            elif name == "entries":
                cells.append(count(value))
            elif value is None:
                cells.append(_NONE.get(name, "-"))
            else:
                cells.append(str(value))
        out_rows.append(cells)
    right = {n for n, c in enumerate(out_columns) if c in _NUMBERS}
    return out_columns, out_rows, right


_NONE = {"project": "(no project)", "client": "(no client)", "member": "(unknown)"}


def print_report(columns: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO) -> None:
    """Print a ``report hours`` result for people (see :func:`report_table`)."""
    shown, cells, right = report_table(columns, rows)
    write_table(shown, cells, out, right=right)
    if not rows:
        out.write("(no rows)\n")
    out.flush()
