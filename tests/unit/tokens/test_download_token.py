"""Download URL tokens: bound to one download's file path and an expiry, nothing else."""

from __future__ import annotations

import pytest

from tokens import (
    SegmentKeyring,
    TokenExpired,
    TokenInvalid,
    UnknownKey,
    download_file_path,
    new_download_id,
    new_session_id,
    sign_download,
    verify_download,
)

NOW = 1_700_000_000
SECRET = bytes(range(32))


@pytest.fixture
def ring() -> SegmentKeyring:
    return SegmentKeyring({1: SECRET}, 1)


def test_round_trip(ring: SegmentKeyring) -> None:
    download_id = new_download_id()
    token = sign_download(ring, download_id, NOW + 600)
    claims = verify_download(ring, token, download_id, now=NOW)
    assert claims.session_id == download_id
    assert claims.expires_at == NOW + 600


def test_the_path_is_the_gateway_file_route() -> None:
    assert download_file_path("AAAAAAAAAAAAAAAA") == "/v1/downloads/AAAAAAAAAAAAAAAA/file"


def test_expired(ring: SegmentKeyring) -> None:
    download_id = new_download_id()
    token = sign_download(ring, download_id, NOW - 1)
    with pytest.raises(TokenExpired):
        verify_download(ring, token, download_id, now=NOW)


def test_tampered_token(ring: SegmentKeyring) -> None:
    download_id = new_download_id()
    token = sign_download(ring, download_id, NOW + 600)
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(TokenInvalid):
        verify_download(ring, flipped, download_id, now=NOW)
    # a later expiry written into the header breaks the MAC as well
    longer = sign_download(ring, download_id, NOW + 10**6)
    with pytest.raises(TokenInvalid):
        verify_download(ring, longer[:24] + token[24:], download_id, now=NOW)


def test_another_downloads_token_is_refused(ring: SegmentKeyring) -> None:
    mine, theirs = new_download_id(), new_download_id()
    token = sign_download(ring, theirs, NOW + 600)
    with pytest.raises(TokenInvalid):
        verify_download(ring, token, mine, now=NOW)


def test_a_playback_token_does_not_open_a_download(ring: SegmentKeyring) -> None:
    """A session's signer never signs a download path; one that did would still be
    bound to its own session id, not the download's."""
    download_id = new_download_id()
    segment = ring.session_signer(new_session_id(), NOW + 600).sign(
        "/hls/6f1c2a9e-4b7d-4c1e-8f0a-1234567890ab/480p/seg_00000.ts"
    )
    with pytest.raises(TokenInvalid):
        verify_download(ring, segment, download_id, now=NOW)
    other_session = ring.session_signer(new_session_id(), NOW + 600)
    with pytest.raises(TokenInvalid):
        verify_download(
            ring, other_session.sign(download_file_path(download_id)), download_id, now=NOW
        )


def test_rotated_out_key_is_refused(ring: SegmentKeyring) -> None:
    download_id = new_download_id()
    token = sign_download(ring, download_id, NOW + 600)
    rotated = ring.with_key(2, bytes(range(32, 64)))
    assert verify_download(rotated, token, download_id, now=NOW).kid == 1
    with pytest.raises(UnknownKey):
        verify_download(rotated.without_key(1), token, download_id, now=NOW)


@pytest.mark.parametrize("garbage", ["", "x", "A" * 44, "../../etc/passwd"])
def test_garbage_is_invalid(ring: SegmentKeyring, garbage: str) -> None:
    with pytest.raises(TokenInvalid):
        verify_download(ring, garbage, new_download_id(), now=NOW)


def test_a_malformed_download_id_cannot_be_signed(ring: SegmentKeyring) -> None:
    with pytest.raises(ValueError, match="16 base64url"):
        sign_download(ring, "not-an-id", NOW + 600)
