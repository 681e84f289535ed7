"""An offline Timetracker service: both API surfaces, limits, webhooks and fault injection.

Self-contained: it imports nothing from the rest of syncd.
"""

from .settings import Clock, EmulatorSettings

__all__ = ["Clock", "EmulatorSettings", "create_app"]


def create_app(settings: EmulatorSettings | None = None):
    from .app import create_app as _create_app

    return _create_app(settings)
