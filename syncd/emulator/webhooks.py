"""Webhook delivery: bare payload POSTs with optional signature, retries, 410, DISABLED."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections import deque

import aiohttp

from .settings import EmulatorSettings
from .world import Webhook, Workspace, World

DOCUMENTED_EVENTS = (
    "TIMER_STARTED",
    "TIMER_STOPPED",
    "MANUAL_TIME_ADDED",
    "CLIENT_CREATED",
    "PROJECT_CREATED",
    "TASK_CREATED",
)


def allowed_events(settings: EmulatorSettings) -> tuple[str, ...]:
    events = DOCUMENTED_EVENTS
    if settings.has("updated-events"):
        events += ("TIME_ENTRY_UPDATED",)
    if settings.has("deleted-events"):
        events += ("TIME_ENTRY_DELETED",)
    return events


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Dispatcher:
    def __init__(self, world: World, settings: EmulatorSettings, clock) -> None:
        self.world = world
        self.settings = settings
        self.clock = clock
        self.session: aiohttp.ClientSession | None = None
        self.tasks: set[asyncio.Task] = set()
        self.deliveries = 0
        self.failures = 0
        self.attempts: deque[dict] = deque(maxlen=1000)

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout)
        )

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()

    def reset_stats(self) -> None:
        self.deliveries = self.failures = 0
        self.attempts.clear()

    def emit(self, event: str, ws: Workspace, payload: dict) -> int:
        """Queue deliveries of ``event`` to every matching subscription; returns how many."""
        if event not in allowed_events(self.settings):
            return 0
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        n = 0
        for wh in list(self.world.webhooks.values()):
            if wh.status != "ACTIVE" or event not in wh.events:
                continue
            user = wh.user
            if user is None or self.world.member_of(user, ws) is None:
                continue
            if (
                self.settings.webhook_scope == "default-workspace"
                and user.default_workspace is not ws
            ):
                continue
            task = asyncio.get_running_loop().create_task(self._deliver(wh, event, body))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            n += 1
        return n

    async def _deliver(self, wh: Webhook, event: str, body: bytes) -> None:
        settings = self.settings
        delivery_id = str(uuid.uuid4())
        headers = {
            "Content-Type": settings.webhook_content_type,
            "User-Agent": "Timetracker-Webhooks/1.0",
        }
        if settings.webhook_headers == "full":
            headers["X-Timetracker-Event"] = event
            headers["X-Timetracker-Webhook-Id"] = wh.id
            headers["X-Timetracker-Delivery"] = delivery_id
            if wh.secret:
                headers["X-Timetracker-Signature"] = sign(wh.secret, body)
        delays = settings.webhook_retry_delays
        assert self.session is not None
        for attempt in range(len(delays) + 1):
            if self.world.webhooks.get(wh.id) is not wh or wh.status != "ACTIVE":
                return
            status: int | None = None
            error: str | None = None
            try:
                async with self.session.post(wh.url, data=body, headers=headers) as resp:
                    status = resp.status
                    await resp.read()
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = type(exc).__name__
            self.attempts.append(
                {
                    "webhook_id": wh.id,
                    "event": event,
                    "url": wh.url,
                    "attempt": attempt + 1,
                    "status": status,
                    "error": error,
                    "delivery_id": delivery_id,
                }
            )
            if status is not None and 200 <= status < 300:
                self.deliveries += 1
                return
            if status == 410:
                self.world.webhooks.pop(wh.id, None)
                return
            self.failures += 1
            if attempt < len(delays):
                await asyncio.sleep(delays[attempt])
        wh.status = "DISABLED"
        wh.updated = self.clock.now_ms()
