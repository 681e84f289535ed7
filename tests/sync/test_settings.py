"""The engine's settings come from the config, whose defaults are the only ones."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from syncd.config import Config, SyncConfig, parse_config
from syncd.sync import SyncSettings

TOML = """
[api]
window_field = "created_at"

[sync]
history_start = 2024-02-01
workspaces = ["ws-1", 7]
interval_seconds = 600
hot_window_days = 5
window_target_entries = 200
window_max_entries = 900
window_min_days = 2
window_max_days = 40
warm_window_days = 30
warm_period_minutes = 45
reconcile_period_hours = 12
mass_delete_share = 0.25
mass_delete_min = 3
"""


def test_every_sync_key_and_the_window_field_reach_the_engine(tmp_path: Path) -> None:
    config = parse_config(TOML, base_dir=tmp_path, env={}, require_key=False)
    settings = SyncSettings.from_config(config, force_delete=True)
    assert settings == SyncSettings(
        hot_window_days=5,
        history_start="2024-02-01",
        workspaces=("ws-1", "7"),
        interval_seconds=600,
        window_target_entries=200,
        window_max_entries=900,
        window_min_days=2,
        window_max_days=40,
        warm_window_days=30,
        warm_period_minutes=45,
        reconcile_period_hours=12,
        mass_delete_share=0.25,
        mass_delete_min=3,
        force_delete=True,
        window_field="created_at",
    )


def test_the_defaults_are_the_configs() -> None:
    settings = SyncSettings.from_config()
    defaults = SyncConfig()
    for field in fields(SyncSettings):
        if field.name in SyncConfig.model_fields:
            assert getattr(settings, field.name) == getattr(defaults, field.name), field.name
    assert settings.window_field == Config().api.window_field
    assert settings.force_delete is False


def test_overrides_replace_single_settings_and_refuse_unknown_names() -> None:
    settings = SyncSettings.from_config(hot_window_days=7, force_delete=True)
    assert (settings.hot_window_days, settings.force_delete) == (7, True)
    assert settings.window_max_days == SyncConfig().window_max_days
    with pytest.raises(TypeError):
        SyncSettings.from_config(hot_window=7)
