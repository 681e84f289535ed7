"""systemd notification protocol (``sd_notify``) and the watchdog, without dependencies.

Outside systemd (``NOTIFY_SOCKET`` unset) every function here does nothing, so the daemon
runs the same from a terminal. Messages the daemon sends:

- ``READY=1`` once the database is open and the receiver listens (``Type=notify``);
- ``STATUS=...`` after each cycle (shown by ``systemctl status syncd``);
- ``WATCHDOG=1`` every ``WATCHDOG_USEC / 2`` when the unit sets ``WatchdogSec=``;
- ``STOPPING=1`` when a stop signal arrives.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger("syncd.systemd")


# SPDX-License-Identifier: MIT-0
# From systemd's man/notify-selfcontained-example.py; the protocol is stable as per
# https://systemd.io/PORTABILITY_AND_STABILITY/
def notify(message: bytes) -> None:
    """Send ``message`` to the service manager, if there is one.

    Raises ``ValueError`` for an empty message and ``OSError`` when ``NOTIFY_SOCKET`` names
    an unsupported or unreachable socket.
    """
    if not message:
        raise ValueError("notify() requires a message")

    socket_path = os.environ.get("NOTIFY_SOCKET")
    if not socket_path:
        return

    if socket_path[0] not in ("/", "@"):
        raise OSError(errno.EAFNOSUPPORT, "Unsupported socket type")

    # Handle abstract socket.
    if socket_path[0] == "@":
        socket_path = "\0" + socket_path[1:]

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(socket_path)
        sock.sendall(message)


# End of the MIT-0 part.


def _send(message: str) -> bool:
    """Send, logging (not raising) a failure; True when a service manager got it."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return False
    try:
        notify(message.encode())
    except OSError as exc:
        log.warning("sd_notify_failed", message=message.split("=", 1)[0], error=str(exc))
        return False
    return True


def _one_line(text: str) -> str:
    return " ".join(text.split())


def notify_ready(status: str | None = None) -> bool:
    """``READY=1`` (plus ``STATUS=``); send only once the receiver listens. Never raises."""
    message = "READY=1"
    if status:
        message += f"\nSTATUS={_one_line(status)}"
    return _send(message)


def notify_status(text: str) -> bool:
    """``STATUS=<text>`` (newlines are folded). Never raises."""
    return _send(f"STATUS={_one_line(text)}")


def notify_stopping(status: str | None = None) -> bool:
    """``STOPPING=1`` (plus ``STATUS=``). Never raises."""
    message = "STOPPING=1"
    if status:
        message += f"\nSTATUS={_one_line(status)}"
    return _send(message)


def notify_extend_timeout(seconds: float) -> bool:
    """``EXTEND_TIMEOUT_USEC=``: ask for more time to start or stop. Never raises."""
    return _send(f"EXTEND_TIMEOUT_USEC={max(1, round(seconds * 1_000_000))}")


def notify_watchdog() -> bool:
    """``WATCHDOG=1``. Never raises."""
    return _send("WATCHDOG=1")


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings (half of ``WATCHDOG_USEC``), or None when the watchdog
    is off or meant for another process (``WATCHDOG_PID`` set and not ours). Never raises."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "").strip()
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID", "").strip()
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        value = int(usec)
    except ValueError:
        return None
    if value <= 0:
        return None
    return value / 2 / 1_000_000


async def watchdog_loop(interval: float, alive: Callable[[], bool] | None = None) -> None:
    """Ping the watchdog every ``interval`` seconds until cancelled.

    Running on the event loop, the pings stop when the loop is blocked, which is what the
    watchdog is for. ``alive`` (optional) can veto a ping, e.g. when the process is wedged
    in a way the loop does not show. Returns only by cancellation.
    """
    while True:
        if alive is None or alive():
            notify_watchdog()
        else:
            log.warning("watchdog_ping_withheld")
        await asyncio.sleep(interval)


def start_watchdog(
    alive: Callable[[], bool] | None = None, environ: Mapping[str, str] | None = None
) -> asyncio.Task[None] | None:
    """Start :func:`watchdog_loop` as a task when the unit asks for a watchdog; returns the
    task (cancel it when stopping) or None. Raises ``RuntimeError`` outside a running loop."""
    interval = watchdog_interval(environ)
    if interval is None:
        return None
    log.info("watchdog_started", interval_s=interval)
    return asyncio.get_running_loop().create_task(
        watchdog_loop(interval, alive), name="syncd-watchdog"
    )
