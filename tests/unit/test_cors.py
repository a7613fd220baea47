"""CORS headers on HLS and poster answers (gateway.cors.add_cors_headers)."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.cors import add_cors_headers
from runtime.settings import Settings
from runtime.web import settings_key


def _request(path: str, origins: tuple[str, ...], origin: str | None) -> web.Request:
    app = web.Application()
    app[settings_key] = Settings(cors_allowed_origins=origins)
    headers = {"Origin": origin} if origin else {}
    return make_mocked_request("GET", path, headers=headers, app=app)


def test_any_origin() -> None:
    response = web.Response()
    add_cors_headers(_request("/hls/x/master.m3u8", ("*",), None), response)
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Access-Control-Allow-Headers"] == "Range"
    assert response.headers["Access-Control-Expose-Headers"] == "Content-Length, Content-Range"
    assert response.headers["Access-Control-Allow-Methods"] == "GET, HEAD, OPTIONS"
    assert "Vary" not in response.headers


def test_a_listed_origin_is_echoed_and_varied_on_beside_accept_encoding() -> None:
    site = "https://watch.example"
    response = web.Response(headers={"Vary": "Accept-Encoding"})
    add_cors_headers(_request("/hls/x/720p/index.m3u8", (site,), site), response)
    assert response.headers["Access-Control-Allow-Origin"] == site
    assert response.headers["Access-Control-Allow-Headers"] == "Range"
    assert response.headers["Vary"] == "Accept-Encoding, Origin"
    poster = web.Response()
    add_cors_headers(_request("/posters/x.jpg", (site,), site), poster)
    assert poster.headers["Vary"] == "Origin"


@pytest.mark.parametrize(
    ("path", "origin"),
    [
        ("/hls/x/master.m3u8", "https://other.example"),
        ("/hls/x/master.m3u8", None),
        ("/v1/catalogue", "https://watch.example"),
    ],
)
def test_no_headers_for_other_origins_or_paths(path: str, origin: str | None) -> None:
    response = web.Response()
    add_cors_headers(_request(path, ("https://watch.example",), origin), response)
    assert not any(h.startswith("Access-Control") for h in response.headers)
