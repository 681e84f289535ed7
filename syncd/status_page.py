"""The status page: one self-contained HTML document about the mirror and the daemon.

Served at ``GET /`` on the daemon's listener and written by ``syncd status --html FILE``.
It is built from the typed :func:`syncd.status.describe_status` plus a few read-only queries
(``syncd.store.pagequeries``) and rendered with the Jinja2 templates in
``syncd/templates/``: inline CSS and SVG, no script, no external resource. It never shows a
secret: the API key, the webhook secret and the webhook token are masked in the finished
page whatever text they came in with, and webhook paths lose their token.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

from syncd import __version__
from syncd.config import Config
from syncd.errors import UsageError
from syncd.status import MirrorStatus, describe_status, open_existing_mirror
from syncd.store import Store
from syncd.store import pagequeries as q

#: How many runs, deliveries and running timers the page lists.
LIST_LIMIT = 10
#: Days in the hours-per-day chart.
HISTORY_DAYS = 28
MASK = "••••••"
_HOOK_TOKEN = re.compile(r"(/hooks/)[A-Za-z0-9_\-]{8,}")

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("syncd", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def page_data(
    config: Config,
    store: Store,
    *,
    now: datetime,
    health: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the page shows, JSON-ready. ``health`` is the daemon's ``/healthz`` body
    (None when the page is written outside the daemon). Raises ``StoreError``."""
    status = describe_status(config, store)
    counts, timers = q.running_timers(store, LIST_LIMIT)
    per_hour = q.requests_per_hour(store, now.timestamp(), 24)
    today = now.date()
    since = today - timedelta(days=HISTORY_DAYS - 1)
    hours = q.hours_per_day(store, since.isoformat(), today.isoformat())
    runs = q.recent_runs(store, LIST_LIMIT)
    for run in runs:
        run["outcome"] = "running" if run["ok"] is None else ("ok" if run["ok"] else "failed")
    return {
        "version": __version__,
        "generated_at": now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "database": config.database.shown,
        "status": status.as_json() | {"workspaces": workspace_cards(status, counts, now)},
        "health": health,
        "running_timers": timers,
        "total_running": sum(counts.values()),
        "runs": runs,
        "webhook_events": q.recent_webhook_events(store, LIST_LIMIT),
        "requests_per_hour": per_hour,
        "requests_24h": sum(per_hour),
        "limits": {
            "per_second": config.limits.per_second,
            "per_minute": config.limits.per_minute,
            "per_day": config.limits.per_day,
        },
        # The budget's effective daily limit (margin applied) when a key is configured.
        "daily_limit": (status.budget.per_day if status.budget else 0) or config.limits.per_day,
        "hours_per_day": [
            {"day": day, "hours": hours.get(day, 0.0)}
            for day in ((since + timedelta(days=i)).isoformat() for i in range(HISTORY_DAYS))
        ],
    }


def workspace_cards(
    status: MirrorStatus, running: dict[str, int], now: datetime
) -> list[dict[str, Any]]:
    """Per workspace, what its card shows: the ``status --json`` fields and, in words, its
    running timers (``running``: per workspace id), scan ages, tiers and backfill."""
    periods = status.plan.tier_periods() if status.plan is not None else {}
    cards = []
    for workspace in status.workspaces:
        progress = workspace.progress
        cards.append(
            workspace.as_json()
            | {
                "running_timers": running.get(workspace.id, 0),
                "hot_age": ago(progress.last_hot_scan_at, now),
                "reconcile_age": ago(progress.last_reconcile_at, now),
                "tiers": tier_freshness(workspace.verified_age_seconds, periods),
                "backfill": (
                    "complete"
                    if progress.backfill_complete
                    else f"in progress, back to {progress.backfill_before or 'today'}"
                ),
            }
        )
    return cards


def render(data: dict[str, Any], *, secrets: tuple[str, ...] = ()) -> str:
    """The page's HTML for ``page_data``; every string of ``secrets`` is masked."""
    html = _ENV.get_template("status.html.j2").render(
        d=data,
        requests_chart=requests_chart(data["requests_per_hour"], data["daily_limit"]),
        hours_chart=hours_chart(data["hours_per_day"]),
    )
    return scrub(html, secrets)


def build(
    config: Config,
    store: Store,
    *,
    now: datetime,
    health: dict[str, Any] | None = None,
    token: str | None = None,
) -> str:
    """``render(page_data(...))`` with the configured secrets (and ``token``) masked.
    Raises ``StoreError``."""
    return render(
        page_data(config, store, now=now, health=health), secrets=config_secrets(config, token)
    )


def build_from_file(
    config: Config,
    *,
    now: datetime,
    health: dict[str, Any] | None = None,
    token: str | None = None,
) -> str:
    """:func:`build` on a connection of its own to the mirror (``database.path`` or ``url``), opened
    and closed in the calling thread (the daemon runs it off the event loop and off its DB
    thread, so a page never delays a commit or a budget grant).

    Raises ``NoDatabase`` when there is no mirror (none is created) and ``StoreError`` when it
    cannot be read.
    """
    store = open_existing_mirror(config, migrate=False)
    try:
        return build(config, store, now=now, health=health, token=token)
    finally:
        store.close()


def write(config: Config, path: str | Path, *, now: datetime) -> Path:
    """Write the page for the mirror (``database.path`` or ``url``) to ``path``, atomically:
    a reader (a web server serving the file) never sees half a page.

    Raises ``NoDatabase`` when there is no mirror (none is created), ``StoreError`` when it
    cannot be read and ``UsageError`` when ``path`` cannot be written.
    """
    html = build_from_file(config, now=now)
    target = Path(path)
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        partial.write_text(html, encoding="utf-8")
        os.replace(partial, target)
    except OSError as exc:
        raise UsageError(
            f"cannot write the status page to {target}: {exc.strerror or exc}"
        ) from exc
    finally:
        try:
            partial.unlink(missing_ok=True)
        except OSError:
            pass
    return target


def config_secrets(config: Config, token: str | None = None) -> tuple[str, ...]:
    """The secret values the page must never show."""
    return tuple(v for v in (token or "", *config.secret_values()) if v)


def scrub(html: str, secrets: tuple[str, ...]) -> str:
    """``html`` with every secret (also HTML-escaped) masked and webhook tokens removed from
    paths."""
    for secret in secrets:
        for form in {secret, str(markupsafe.escape(secret))}:
            html = html.replace(form, MASK)
    return _HOOK_TOKEN.sub(r"\1&lt;token&gt;", html)


# ------------------------------------------------------------------------- words

#: The verification tiers in the order the page lists them, and what each one covers.
TIERS = {"hot": "recent days", "warm": "recent weeks", "cold": "all history"}


def tier_freshness(
    ages: Mapping[str, int | None], periods: Mapping[str, float]
) -> list[dict[str, str]]:
    """Per tier, in words: what it covers, how long ago all of it was last verified and, when
    the daemon's plan says (``periods``: seconds per tier), how often it is verified."""
    rows = []
    for tier in sorted(ages, key=lambda t: (list(TIERS).index(t) if t in TIERS else 99, t)):
        age = ages[tier]
        period = periods.get(tier)
        rows.append(
            {
                "tier": tier,
                "covers": TIERS.get(tier, tier),
                "verified": "not yet" if age is None else f"{duration(age)} ago",
                "every": f"every {duration(period)}" if period else "",
            }
        )
    return rows


def ago(stamp: str | None, now: datetime) -> str:
    """``"3 min ago"`` for an ISO timestamp, ``"never"`` for None."""
    if not stamp:
        return "never"
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    seconds = (now - then).total_seconds()
    if seconds < 0:
        return "just now"
    return f"{duration(seconds)} ago"


def duration(seconds: float) -> str:
    """``"45 s"``, ``"12 min"``, ``"3 h 5 min"``, ``"2 d 4 h"``."""
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


# ------------------------------------------------------------------------- charts

_W, _H, _LEFT, _BOTTOM, _TOP = 720, 220, 48, 28, 12


def _scale_max(value: float) -> float:
    """A round number at least ``value`` (1, 2, 5 × 10ⁿ)."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return float(step * magnitude)
    return float(10 * magnitude)


def _bars(values: list[float], top: float) -> list[dict[str, float]]:
    plot_w, plot_h = _W - _LEFT - 8, _H - _BOTTOM - _TOP
    slot = plot_w / max(1, len(values))
    bars = []
    for i, value in enumerate(values):
        h = 0.0 if top <= 0 else plot_h * min(value, top) / top
        bars.append(
            {
                "x": round(_LEFT + i * slot + slot * 0.15, 1),
                "y": round(_TOP + plot_h - h, 1),
                "w": round(slot * 0.7, 1),
                "h": round(h, 1),
            }
        )
    return bars


def _y(value: float, top: float) -> float:
    plot_h = _H - _BOTTOM - _TOP
    return round(_TOP + plot_h - plot_h * min(value, top) / top, 1)


def requests_chart(per_hour: list[int], per_day: int) -> dict[str, Any]:
    """Geometry of the requests-per-hour bars over the last 24 h, with the hourly pace that
    would spend ``per_day`` as a dashed line (named in a corner when it is far above the
    bars, so that small numbers stay readable)."""
    pace = per_day / 24
    busiest = max(per_hour, default=0)
    top = _scale_max(max(busiest, 1) * 1.25)
    if pace <= top * 4:
        top = _scale_max(max(busiest, pace))
    bars = _bars([float(v) for v in per_hour], top)
    for i, (bar, value) in enumerate(zip(bars, per_hour, strict=True)):
        back = len(per_hour) - i
        bar["title"] = f"{value:,} requests, {back} h to {back - 1} h ago"
        bar["value"] = value
    label = f"daily limit pace: {pace:,.0f}/h"
    return {
        "width": _W,
        "height": _H,
        "left": _LEFT,
        "bottom": _H - _BOTTOM,
        "bars": bars,
        "ticks": [{"y": _y(t, top), "label": f"{t:,.0f}"} for t in (0, top / 2, top)],
        "limit": {"y": _y(pace, top), "label": label}
        if pace <= top
        else {"y": None, "label": label + " (above this scale)"},
        "labels": [
            {"x": bars[i]["x"], "text": f"-{len(per_hour) - i} h"}
            for i in range(0, len(per_hour), 6)
        ],
    }


def hours_chart(days: list[dict[str, Any]]) -> dict[str, Any]:
    """Geometry of the hours-per-day bars, labelled on Mondays."""
    values = [float(d["hours"]) for d in days]
    top = _scale_max(max(values, default=0.0))
    bars = _bars(values, top)
    labels = []
    for bar, day in zip(bars, days, strict=True):
        bar["title"] = f"{day['day']}: {day['hours']:.2f} h"
        bar["value"] = day["hours"]
        if date.fromisoformat(day["day"]).weekday() == 0:
            labels.append({"x": bar["x"], "text": day["day"][5:]})
    return {
        "width": _W,
        "height": _H,
        "left": _LEFT,
        "bottom": _H - _BOTTOM,
        "bars": bars,
        "ticks": [{"y": _y(t, top), "label": f"{t:g}"} for t in (0, top / 2, top)],
        "limit": None,
        "labels": labels,
    }
