"""``syncd emulator`` as a process of its own, with its control API.

:meth:`EmulatorProcess.start` runs ``python -m syncd emulator --port 0 --api-key ...`` in a
clean environment, waits for its ``emulator_ready`` line and keeps draining its stdout;
:func:`emulator_process` does the same as a context manager that yields the ready line.
"""

from __future__ import annotations

import json
import selectors
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .environment import clean_env

SYNCD = [sys.executable, "-m", "syncd"]
ZAPIER = "/api/integrations/zapier"
READY_TIMEOUT = 60.0


class ControlError(AssertionError):
    """The emulator answered a request with an error status."""


class EmulatorProcess:
    """A running ``syncd emulator``: ``url``, ``api_url``, ``app_url``, ``api_key`` (the
    first key) and helpers for its control API (``/__emulator/...``)."""

    def __init__(
        self, process: subprocess.Popen[str], ready: dict[str, str], api_key: str, log: Path | None
    ) -> None:
        self.process = process
        self.ready = ready
        self.url: str = ready["url"]
        self.api_url: str = ready["api_url"]
        self.app_url: str = ready["app_url"]
        self.api_key = api_key
        self.log = log
        threading.Thread(target=self._drain_stdout, daemon=True).start()

    @classmethod
    def start(
        cls,
        *args: str,
        api_keys: Sequence[str] = ("k",),
        log: Path | None = None,
        ready_timeout: float = READY_TIMEOUT,
    ) -> EmulatorProcess:
        """Returns a started emulator run with ``args`` on a free loopback port, accepting
        ``api_keys``, its stderr in ``log`` (discarded without one).

        Raises AssertionError when it exits or stays silent for ``ready_timeout`` seconds.
        """
        argv = [*SYNCD, "emulator", "--port", "0"]
        for key in api_keys:
            argv += ["--api-key", key]
        argv += args
        errors = log.open("w", encoding="utf-8") if log else subprocess.DEVNULL
        try:
            process = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=errors, text=True, env=clean_env()
            )
        finally:
            if log:
                errors.close()  # type: ignore[union-attr]
        try:
            ready = _read_ready_line(process, ready_timeout)
        except BaseException:
            process.kill()
            process.wait()
            raise
        return cls(process, ready, api_keys[0], log)

    def _drain_stdout(self) -> None:
        assert self.process.stdout is not None
        for _ in self.process.stdout:  # keep the pipe from filling up
            pass

    def stop(self, timeout: float = 15.0) -> int:
        """Sends SIGTERM and waits; returns the exit status (kills it if it does not stop)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    # -- requests -------------------------------------------------------------------------

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        """Returns the decoded JSON answer to ``method path`` (None when empty).

        Raises ControlError for an HTTP error status.
        """
        data = None if body is None else json.dumps(body).encode()
        sent = dict(headers or {})
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise ControlError(f"{method} {path}: HTTP {exc.code} {exc.read()[:500]!r}") from exc
        return json.loads(raw) if raw else None

    def control(self, method: str, path: str, body: Any = None) -> Any:
        """Returns the answer of the control API at ``/__emulator{path}``."""
        return self.request(method, f"/__emulator{path}", body)

    # -- the emulator's state -------------------------------------------------------------

    def workspaces(self) -> list[dict[str, Any]]:
        return self.control("GET", "/workspaces")

    def workspace_ids(self) -> list[str]:
        return [w["id"] for w in self.workspaces()]

    def entries(self, workspace_id: str, **filters: str) -> list[dict[str, Any]]:
        """Returns every entry of the workspace in the find shape (the emulator's truth)."""
        query = urllib.parse.urlencode({"workspace_id": workspace_id, **filters})
        return self.control("GET", f"/time-entries?{query}")

    def truth(self) -> dict[str, dict[str, Any]]:
        """Returns every entry of every workspace, by id (find shape)."""
        return {e["id"]: e for w in self.workspace_ids() for e in self.entries(w)}

    def entry(self, entry_id: str) -> dict[str, Any]:
        return self.control("GET", f"/time-entries/{entry_id}")

    def edit(self, entry_id: str, **fields: Any) -> dict[str, Any]:
        return self.control("PATCH", f"/time-entries/{entry_id}", fields)

    def delete(self, entry_id: str) -> Any:
        return self.control("DELETE", f"/time-entries/{entry_id}")

    def create(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.control("POST", "/time-entries", entries)

    def start_timer(self, **body: Any) -> dict[str, Any]:
        return self.control("POST", "/timers/start", body)

    def stop_timer(self, **body: Any) -> dict[str, Any]:
        return self.control("POST", "/timers/stop", body)

    def fault(self, **body: Any) -> Any:
        return self.control("POST", "/faults", body)

    def clear_faults(self) -> Any:
        return self.control("DELETE", "/faults")

    def stats(self) -> dict[str, Any]:
        return self.control("GET", "/stats")

    def key_stats(self, key: str | None = None) -> dict[str, Any]:
        """Returns the request counters of ``key`` (the first key by default)."""
        found = self.stats()["keys"].get(key or self.api_key)
        return found if found is not None else {"requests": 0, "rate_limited": 0}

    def reset_stats(self) -> Any:
        return self.control("POST", "/stats/reset", {})

    def subscriptions(self, url: str | None = None) -> list[dict[str, Any]]:
        """Returns the webhook subscriptions (those to ``url`` when given)."""
        hooks = self.control("GET", "/webhooks")
        hooks = hooks.get("webhooks", hooks) if isinstance(hooks, dict) else hooks
        return [h for h in hooks if url is None or h["url"] == url]


def _read_ready_line(process: subprocess.Popen[str], timeout: float) -> dict[str, str]:
    assert process.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(process.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError(f"the emulator printed nothing within {timeout} s")
    line = process.stdout.readline()
    if not line:
        raise AssertionError(f"the emulator exited early (status {process.wait()})")
    ready = json.loads(line)
    assert ready.get("event") == "emulator_ready", line
    return ready


@contextmanager
def emulator_process(*args: str, api_key: str = "k") -> Iterator[dict[str, str]]:
    """Yields the ready line (``url``, ``api_url``, ``app_url``) of an emulator run with
    ``args`` and API key ``api_key``; stops it afterwards."""
    emulator = EmulatorProcess.start(*args, api_keys=(api_key,))
    try:
        yield emulator.ready
    finally:
        emulator.stop()
