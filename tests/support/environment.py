"""The environment a syncd subprocess of the tests starts with."""

from __future__ import annotations

import os
from collections.abc import Mapping

#: Environment variables syncd reads; a test's subprocess must not inherit them.
SYNCD_ENV = (
    "SYNCD_API_KEY",
    "SYNCD_DATABASE_URL",
    "SYNCD_CONFIG",
    "CREDENTIALS_DIRECTORY",
    "JOURNAL_STREAM",
)
#: Proxy settings that would send loopback requests elsewhere.
PROXY_ENV = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


def clean_env(
    extra: Mapping[str, str] | None = None, *, drop: tuple[str, ...] = ()
) -> dict[str, str]:
    """Returns this process's environment without syncd's variables (and ``drop``), plus
    ``extra``."""
    unwanted = {*SYNCD_ENV, *drop}
    env = {k: v for k, v in os.environ.items() if k not in unwanted}
    env.update(extra or {})
    return env
