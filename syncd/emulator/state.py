"""The emulator's shared state (one per application)."""

from __future__ import annotations

from collections import Counter

from aiohttp import web

from .faults import Faults
from .ratelimit import RateLimiter
from .seed import seed_world
from .settings import EmulatorSettings
from .shapes import EntryJsonCache
from .webhooks import Dispatcher


class Emulator:
    """Everything the handlers share."""

    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        self.clock = settings.make_clock()
        self.world = seed_world(
            seed=settings.seed,
            workspaces=settings.workspaces,
            entries=settings.entries,
            days=settings.days,
            api_keys=settings.api_keys,
            now_ms=self.clock.now_ms(),
        )
        self.json_cache = EntryJsonCache()
        self.world.json_cache = self.json_cache
        self.limiter = RateLimiter(
            self.clock,
            enabled=settings.rate_limit,
            per_second=settings.rate_per_second,
            per_minute=settings.rate_per_minute,
            per_day=settings.rate_per_day,
            scope=settings.rate_scope,
        )
        for key in settings.api_keys:
            self.limiter.state(key)
        self.faults = Faults()
        self.dispatcher = Dispatcher(self.world, settings, self.clock)
        self.endpoints: Counter[str] = Counter()
        self.health_error: str | None = None

    def now_ms(self) -> int:
        return self.clock.now_ms()

    def use_settings(self, settings: EmulatorSettings) -> None:
        """Switch a running emulator to ``settings`` (only fields every request reads anew
        may differ; see ``RUNTIME_SETTINGS``)."""
        self.settings = settings
        self.dispatcher.settings = settings


EMU = web.AppKey("emulator", Emulator)
REQ_KEY = web.RequestKey("api_key", str)
REQ_USER = web.RequestKey("user", object)
