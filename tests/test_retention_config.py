"""``[retention]``: days as whole numbers from 0 (keep for ever) to 36500, each problem named."""

from __future__ import annotations

import pytest

from syncd.config import parse_config
from syncd.errors import ConfigError

ENV = {"SYNCD_API_KEY": "k"}


def test_defaults_and_values(tmp_path):
    assert parse_config("", base_dir=tmp_path, env=ENV).retention.model_dump() == {
        "webhook_events_days": 90,
        "tombstones_days": 90,
    }
    text = "[retention]\nwebhook_events_days = 0\ntombstones_days = 365\n"
    retention = parse_config(text, base_dir=tmp_path, env=ENV).retention
    assert (retention.webhook_events_days, retention.tombstones_days) == (0, 365)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("webhook_events_days = -1", "retention.webhook_events_days: Input should be greater"),
        ("tombstones_days = 40000", "retention.tombstones_days: Input should be less"),
        ('tombstones_days = "90"', "retention.tombstones_days: Input should be a valid integer"),
        ("tombstones_days = 1.5", "retention.tombstones_days: Input should be a valid integer"),
        ("tombstone_days = 30", "retention.tombstone_days: unknown key (did you mean"),
    ],
)
def test_bad_values_are_named(tmp_path, body, problem):
    with pytest.raises(ConfigError) as caught:
        parse_config(f"[retention]\n{body}\n", base_dir=tmp_path, env=ENV)
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems
