"""The ``t`` parameter of HLS requests (gateway.views.hls._token): read straight from a
query that is only ``t=<token>``, otherwise from the parsed query, with the same result."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.views.hls import _token

TOKEN = "IABrDd9te9HZNhcgirFh0mAoKta3Ho9tMdGICvVvRLVF"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (f"?t={TOKEN}", TOKEN),
        (f"?x=1&t={TOKEN}", TOKEN),
        (f"?t={TOKEN}&x=1", TOKEN),
        ("?t=ab%2Dc_d", "ab-c_d"),
        ("?t=a+b", "a b"),
        ("?t=", ""),
        ("", None),
        ("?x=1", None),
    ],
)
def test_token_parameter(query: str, expected: str | None) -> None:
    request = make_mocked_request("GET", "/hls/m/720p/seg_00000.ts" + query)
    assert _token(request) == expected
    assert _token(request) == request.query.get("t")
