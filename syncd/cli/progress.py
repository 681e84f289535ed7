"""Sync progress on a terminal: per workspace, the history covered and left, entries applied,
requests used, and what a long wait for the rate budget is waiting for.

Drawn with rich on stderr, only when stderr is a terminal (and not the journal); elsewhere
:class:`SyncProgress` records nothing visible and the log is the only account of a run.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, TextIO

from syncd.cli.render import count, duration, share
from syncd.records import Source
from syncd.sync import ScanProgress

#: A budget wait shorter than this is the per-second pacing, not worth a line.
LONG_WAIT_SECONDS = 2.0
#: The per-second window: a wait longer than it is for the minute (or a 429's deadline).
SECOND_WINDOW = 1.1


@dataclass
class _Workspace:
    covered_from: date | None = None  # the backfill reached back to this date
    covered_to: date | None = None  # the newest date the backfill started from
    complete: bool = False  # an open-ended window reached the beginning of history
    entries: int = 0


class SyncProgress:
    """What a sync run has done so far, drawn live on a terminal.

    Feed it ``window`` (the engine's ``on_window``), ``outcome`` (the client's
    ``on_outcome``: one call per attempt on the network) and wrap the budget's sleep with
    :meth:`budget_sleep`. ``history_start`` (``sync.history_start``), when set, is where
    history begins, so the share covered is known; without it the share is shown once the
    backfill has reached the beginning.
    """

    def __init__(
        self,
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        history_start: date | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = _isatty(self.stream) and "JOURNAL_STREAM" not in os.environ
        self.enabled = enabled
        self.history_start = history_start
        self._clock = clock
        self.workspaces: dict[str, _Workspace] = {}
        self.requests = 0
        self._last_429: float | None = None
        self._wait: tuple[str, float] | None = None  # (what for, until clock time)
        self._live: Any = None
        self._started = clock()

    def __enter__(self) -> SyncProgress:
        if self.enabled:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(
                get_renderable=self._renderable,
                console=Console(file=self.stream),
                transient=True,
                refresh_per_second=4,
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    # ------------------------------------------------------------------ events

    def window(self, scan: ScanProgress) -> None:
        """A window was committed."""
        ws = self.workspaces.setdefault(scan.workspace_id, _Workspace())
        ws.entries += scan.entries
        if scan.source is Source.BACKFILL:
            to = date.fromisoformat(scan.date_to[:10])
            ws.covered_to = max(ws.covered_to or to, to)
            if scan.date_from is None:
                ws.complete = True
            else:
                start = date.fromisoformat(scan.date_from[:10])
                ws.covered_from = min(ws.covered_from or start, start)

    def outcome(self, label: str) -> None:
        """One attempt reached the network (the client's ``on_outcome`` label)."""
        self.requests += 1
        if label == "rate_limited":
            self._last_429 = self._clock()

    def budget_sleep(
        self, sleep: Callable[[float], Awaitable[None]]
    ) -> Callable[[float], Awaitable[None]]:
        """``sleep`` that shows a wait of ``LONG_WAIT_SECONDS`` or more while it lasts."""

        async def waiting(seconds: float) -> None:
            if seconds < LONG_WAIT_SECONDS:
                await sleep(seconds)
                return
            self._wait = (self._wait_reason(seconds), self._clock() + seconds)
            try:
                await sleep(seconds)
            finally:
                self._wait = None

        return waiting

    def _wait_reason(self, seconds: float) -> str:
        if self._last_429 is not None and self._clock() - self._last_429 < seconds + 5:
            return "waiting out upstream's 429"
        if seconds > SECOND_WINDOW:
            return "waiting for the per-minute limit"
        return "waiting for the per-second limit"

    # ------------------------------------------------------------------ drawing

    def lines(self) -> list[str]:
        """The text drawn: one line per workspace, then requests and any long wait."""
        out = []
        for workspace_id, ws in sorted(self.workspaces.items()):
            out.append(f"{workspace_id}: {self._history(ws)}, {count(ws.entries)} entries")
        footer = f"{count(self.requests)} request{'' if self.requests == 1 else 's'} used"
        if self._wait is not None:
            reason, until = self._wait
            footer += f" · {reason}, {duration(max(0.0, until - self._clock()))}"
        out.append(footer)
        return out

    def _history(self, ws: _Workspace) -> str:
        if ws.covered_to is None:
            return "recent days"
        newest = ws.covered_to
        if ws.complete:
            return f"history covered to {newest} (100 %)"
        if ws.covered_from is None:
            return f"backfill from {newest}"
        covered = f"history covered {ws.covered_from}..{newest}"
        start = self.history_start
        if start is None:
            return f"{covered}, older left (its start is found at the end)"
        whole = (newest - start).days + 1
        done = (newest - ws.covered_from).days + 1
        left = f"{start}..{ws.covered_from} left"
        elapsed = self._clock() - self._started
        if 0 < done < whole and elapsed >= 1:  # the days left at the pace so far
            left += f", about {duration(elapsed * (whole - done) / done)} to go"
        return f"{covered} ({share(done, whole)}), {left}"

    def _renderable(self) -> Any:
        from rich.text import Text

        return Text("\n".join(self.lines()))


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
