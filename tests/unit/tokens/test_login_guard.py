"""The pure parts of the login guard: backoff schedule and what a known network is."""

from __future__ import annotations

from tokens.service.login_guard import BACKOFF_MAX_S, backoff_s, network_of


def test_backoff_doubles_from_one_second_and_is_capped() -> None:
    assert [backoff_s(n) for n in range(0, 6)] == [0, 1, 2, 4, 8, 16]
    assert backoff_s(11) == BACKOFF_MAX_S
    assert backoff_s(10_000) == BACKOFF_MAX_S


def test_known_network_is_a_slash_24_or_slash_64() -> None:
    assert network_of("41.210.7.9") == "41.210.7.0/24"
    assert network_of("2c0f:fe38:2001:1::5") == "2c0f:fe38:2001:1::/64"
    assert network_of("not an address") == "not an address"
