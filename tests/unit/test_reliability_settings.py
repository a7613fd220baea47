"""The reliability settings (issue 10 #5): client timeouts, the shared-fetch buffer and
the per-session cap on concurrent segment requests."""

from __future__ import annotations

import pytest

from runtime.settings import Settings, SettingsError


def test_reliability_defaults() -> None:
    s = Settings.from_env({})
    assert s.client_write_timeout_s == 30
    assert s.body_read_timeout_s == 15
    assert s.shared_fetch_buffer_bytes == 64 * 1024 * 1024
    assert s.session_max_concurrent_segments == 8


def test_reliability_settings_are_read() -> None:
    s = Settings.from_env(
        {
            "KUSH_CLIENT_WRITE_TIMEOUT_S": "5",
            "KUSH_BODY_READ_TIMEOUT_S": "2",
            "KUSH_SHARED_FETCH_BUFFER_BYTES": "0",
            "KUSH_SESSION_MAX_CONCURRENT_SEGMENTS": "200",
        }
    )
    assert s.client_write_timeout_s == 5
    assert s.body_read_timeout_s == 2
    assert s.shared_fetch_buffer_bytes == 0  # 0: never share, every request streams alone
    assert s.session_max_concurrent_segments == 200


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KUSH_CLIENT_WRITE_TIMEOUT_S", "0"),
        ("KUSH_CLIENT_WRITE_TIMEOUT_S", "soon"),
        ("KUSH_BODY_READ_TIMEOUT_S", "0"),
        ("KUSH_SHARED_FETCH_BUFFER_BYTES", "-1"),
        ("KUSH_SESSION_MAX_CONCURRENT_SEGMENTS", "0"),
    ],
)
def test_bad_reliability_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})
