"""Settings of playback-session resilience: idle window, networks per session, grace,
the pushed session cache's lifetime."""

from __future__ import annotations

import pytest

from runtime.settings import Settings, SettingsError


def test_session_defaults() -> None:
    s = Settings.from_env({})
    assert s.stream_idle_s == 120
    assert s.max_networks_per_session == 3
    assert s.session_grace_s == 30
    assert s.session_cache_s == 30


def test_session_settings_from_env() -> None:
    s = Settings.from_env(
        {
            "KUSH_STREAM_IDLE_S": "2",
            "KUSH_MAX_NETWORKS_PER_SESSION": "5",
            "KUSH_SESSION_GRACE_S": "0",
            "KUSH_SESSION_CACHE_S": "0",
        }
    )
    assert (s.stream_idle_s, s.max_networks_per_session, s.session_grace_s) == (2, 5, 0)
    assert s.session_cache_s == 0  # no pushed cache: lookups cached 0.5 s as before


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KUSH_STREAM_IDLE_S", "0"),
        ("KUSH_STREAM_IDLE_S", "soon"),
        ("KUSH_MAX_NETWORKS_PER_SESSION", "0"),
        ("KUSH_SESSION_GRACE_S", "-1"),
        ("KUSH_SESSION_GRACE_S", "3600"),
        ("KUSH_SESSION_CACHE_S", "-1"),
        ("KUSH_SESSION_CACHE_S", "86400"),
    ],
)
def test_bad_session_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})
