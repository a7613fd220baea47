"""URI resolution against the playlist path (RFC 3986 §5.2) and the root fence."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hls import ForeignUriError, PlaylistError, resolve_uri

ROOT = "/hls/abc123/"
MEDIA = "/hls/abc123/720p/index.m3u8"
MASTER = "/hls/abc123/master.m3u8"


@pytest.mark.parametrize(
    ("uri", "base", "expected"),
    [
        ("seg_00042.ts", MEDIA, "/hls/abc123/720p/seg_00042.ts"),
        ("seg_00042.ts?v=2&x=y", MEDIA, "/hls/abc123/720p/seg_00042.ts"),
        ("seg_00042.ts#frag", MEDIA, "/hls/abc123/720p/seg_00042.ts"),
        ("./seg_00042.ts", MEDIA, "/hls/abc123/720p/seg_00042.ts"),
        ("../480p/index.m3u8", MEDIA, "/hls/abc123/480p/index.m3u8"),
        ("../keys/./k1.key", MEDIA, "/hls/abc123/keys/k1.key"),
        ("a/b/../../seg.ts", MEDIA, "/hls/abc123/720p/seg.ts"),
        ("/hls/abc123/720p/seg.ts", MEDIA, "/hls/abc123/720p/seg.ts"),
        ("720p/index.m3u8", MASTER, "/hls/abc123/720p/index.m3u8"),
        ("audio/en/index.m3u8", MASTER, "/hls/abc123/audio/en/index.m3u8"),
        ("seg..ts", MEDIA, "/hls/abc123/720p/seg..ts"),  # not a dot segment
        ("?v=1", MEDIA, MEDIA),  # §5.2.2: empty path is the base itself
        ("x/..", MEDIA, "/hls/abc123/720p/"),  # a trailing ".." leaves a directory
    ],
)
def test_resolves(uri: str, base: str, expected: str) -> None:
    assert resolve_uri(uri, base, ROOT) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "https://evil.example/seg.ts",
        "http://localhost:8080/hls/abc123/720p/seg.ts",
        "HTTPS://EVIL.EXAMPLE/seg.ts",
        "//evil.example/seg.ts",
        "///etc/passwd",
        "skd://key42",
        "data:video/mp4;base64,AAAA",
        "file:///etc/passwd",
        "c:/windows/seg.ts",
        "../../other/720p/seg.ts",
        "../../../../etc/passwd",
        "/hls/other/720p/seg.ts",
        "/hls/abc123",
        "..",  # resolves to the root itself, which is not a file under it
        "/hls/abc1234/seg.ts",  # a sibling that only shares a prefix
        "%2e%2e/%2E%2E/other/seg.ts",
        "..%2f..%2fother/seg.ts",
        "..\\..\\other\\seg.ts",
        "seg 1.ts",
        "seg\x00.ts",
    ],
)
def test_refuses_foreign(uri: str) -> None:
    with pytest.raises(ForeignUriError):
        resolve_uri(uri, MEDIA, ROOT)


def test_foreign_is_a_playlist_error() -> None:
    assert issubclass(ForeignUriError, PlaylistError)


@pytest.mark.parametrize(
    ("base", "root"),
    [
        (MEDIA, "/hls/abc123"),
        (MEDIA, "hls/"),
        ("x", ROOT),
        (ROOT, ROOT),
        ("/hls/other/720p/index.m3u8", ROOT),
        ("/hls/abc123/../other/index.m3u8", ROOT),
        ("/hls/abc123/720p/index.m3u8?x=1", ROOT),
    ],
)
def test_bad_arguments_are_programming_errors(base: str, root: str) -> None:
    with pytest.raises(ValueError, match="must be"):
        resolve_uri("seg.ts", base, root)


segment = st.sampled_from(["..", ".", "", "720p", "abc123", "hls", "other", "seg.ts", "a:b", "%2e"])
uris = st.lists(segment, max_size=8).map("/".join) | st.text(max_size=30)


@given(uris)
def test_result_is_always_a_file_under_root(uri: str) -> None:
    try:
        resolved = resolve_uri(uri, MEDIA, ROOT)
    except ForeignUriError:
        return
    assert resolved.startswith(ROOT)
    assert len(resolved) > len(ROOT)
    segments = resolved.split("/")
    assert "." not in segments
    assert ".." not in segments
    assert "?" not in resolved
    assert "#" not in resolved
