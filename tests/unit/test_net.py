"""Client identity behind proxies: headers believed only from KUSH_TRUSTED_PROXIES."""

from __future__ import annotations

from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from runtime.net import client_ip, parse_networks, peer_is_trusted, trusted_header

EDGE = ("10.0.0.0/8", "2001:db8::/32")


def _request(peer: str, **headers: str) -> web.Request:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (peer, 443) if name == "peername" else default
    )
    return make_mocked_request("GET", "/", headers=headers, transport=transport)


def test_untrusted_peer_headers_are_ignored() -> None:
    req = _request("198.51.100.7", **{"X-Forwarded-For": "1.2.3.4", "CF-IPCountry": "KE"})
    assert client_ip(req, EDGE) == "198.51.100.7"
    assert trusted_header(req, EDGE, "CF-IPCountry") is None
    assert not peer_is_trusted(req, EDGE)


def test_no_trusted_proxies_configured_means_socket_address() -> None:
    req = _request("10.1.2.3", **{"X-Forwarded-For": "1.2.3.4", "CF-IPCountry": "KE"})
    assert client_ip(req, ()) == "10.1.2.3"
    assert trusted_header(req, (), "CF-IPCountry") is None


def test_trusted_peer_rightmost_untrusted_hop_is_the_client() -> None:
    # the client wrote "6.6.6.6" itself; our two proxies appended what they saw
    req = _request("10.0.0.5", **{"X-Forwarded-For": "6.6.6.6, 41.210.1.9, 10.0.0.9"})
    assert client_ip(req, EDGE) == "41.210.1.9"
    assert (
        trusted_header(_request("10.0.0.5", **{"CF-IPCountry": "UG"}), EDGE, "CF-IPCountry") == "UG"
    )


def test_trusted_peer_without_header_is_the_client() -> None:
    assert client_ip(_request("10.0.0.5"), EDGE) == "10.0.0.5"


def test_garbage_hop_stops_the_walk() -> None:
    req = _request("10.0.0.5", **{"X-Forwarded-For": "41.210.1.9, not-an-ip, 10.0.0.9"})
    assert client_ip(req, EDGE) == "10.0.0.9"


def test_ipv6_edge() -> None:
    req = _request("2001:db8::1", **{"X-Forwarded-For": "2c0f:fe38::5"})
    assert client_ip(req, EDGE) == "2c0f:fe38::5"


def test_parse_networks_rejects_garbage() -> None:
    assert [str(n) for n in parse_networks(["10.1.2.3", "::1"])] == ["10.1.2.3/32", "::1/128"]
    with pytest.raises(ValueError, match="not an IP network"):
        parse_networks(["10.0.0.0/33"])
