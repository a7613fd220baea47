"""Version 2 segment tokens (what playlists hand out): known answers, an independent
re-derivation from the module docstring, binding, tampering, rotation, version 1 still
verifying, and the per-template digests + one-AES-call path agreeing with per-path signing."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from tokens import (
    SEGMENT_TOKEN_LENGTH,
    TAG_CHARS,
    SegmentKeyring,
    TokenExpired,
    TokenInvalid,
    UnknownKey,
    new_session_id,
    verify_segment_token,
)

NOW = 1_700_000_000
EXPIRES = NOW + 3600
SECRET = bytes(range(32))
OTHER_SECRET = bytes(range(32, 64))
SESSION = "AAECAwQFBgcICQoL"  # bytes 0..11
PATH = "/hls/6f1c2a9e-4b7d-4c1e-8f0a-1234567890ab/720p/seg_00042.ts"
OTHER_PATH = "/hls/6f1c2a9e-4b7d-4c1e-8f0a-1234567890ab/720p/seg_00043.ts"
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

# Known answers (kid 7, secret bytes 0..31, the session and path above): they pin the
# format, so a change to it cannot go unnoticed.
KNOWN = "IAdlU_8QAAECAwQFBgcICQoLTPAPbgj-aXZhtJ7Zbbda"
KNOWN_IP_BOUND = "IQdlU_8QAAECAwQFBgcICQoLfRDCMEsI2aue7fOB7z9V"  # 203.0.113.0/24


@pytest.fixture
def ring() -> SegmentKeyring:
    return SegmentKeyring({7: SECRET}, 7)


def _by_the_docstring(secret: bytes, header: bytes, path: str, ip_prefix: bytes = b"") -> str:
    """Version 2 computed from its description, with the primitives directly."""
    path_key = hmac.digest(secret, b"kush-films/segment-token/v2/path-key", "sha256")
    digest = hashlib.blake2s(path.encode(), key=path_key, digest_size=16).digest()
    session_key = hmac.digest(
        secret, b"kush-films/segment-token/v2\x00" + header + ip_prefix, "sha256"
    )
    block = Cipher(algorithms.AES(session_key), modes.ECB()).encryptor().update(digest)
    return base64.urlsafe_b64encode(header + block[:15]).decode()


def test_known_answers(ring: SegmentKeyring) -> None:
    assert ring.session_sealer(SESSION, EXPIRES).sign(PATH) == KNOWN
    bound = ring.session_sealer(SESSION, EXPIRES, ip_prefix="203.0.113.0/24")
    assert bound.sign(PATH) == KNOWN_IP_BOUND


def test_matches_an_independent_derivation(ring: SegmentKeyring) -> None:
    header = bytes([0x20, 7]) + EXPIRES.to_bytes(4, "big") + bytes(range(12))
    assert _by_the_docstring(SECRET, header, PATH) == KNOWN
    bound = bytes([0x21]) + header[1:]
    assert _by_the_docstring(SECRET, bound, PATH, b"203.0.113.0/24") == KNOWN_IP_BOUND


def test_layout_and_round_trip(ring: SegmentKeyring) -> None:
    token = ring.session_sealer(SESSION, EXPIRES).sign(PATH)
    assert len(token) == SEGMENT_TOKEN_LENGTH == 44
    raw = base64.urlsafe_b64decode(token)
    assert raw[0] == 0x20  # version 2, no flags
    assert raw[1] == 7
    assert token[8:24] == SESSION
    claims = verify_segment_token(ring, token, PATH, now=NOW)
    assert (claims.session_id, claims.expires_at, claims.kid) == (SESSION, EXPIRES, 7)


def test_seal_over_template_digests_equals_per_path_tokens(ring: SegmentKeyring) -> None:
    """What a playlist does (digests once per template, one seal per session) gives
    exactly the per-path tokens, and every one verifies for its path only."""
    paths = [f"/hls/m/480p/seg_{i:05d}.ts" for i in range(300)] + ["/hls/m/480p/init.mp4"]
    digests = ring.path_hasher().digest_many(paths)
    for session_id in (SESSION, new_session_id()):
        sealer = ring.session_sealer(session_id, EXPIRES)
        tags = sealer.seal(digests).decode()
        assert len(tags) == TAG_CHARS * len(paths)
        tokens = [
            sealer.prefix.decode() + tags[i * TAG_CHARS : (i + 1) * TAG_CHARS]
            for i in range(len(paths))
        ]
        assert tokens == [sealer.sign(p) for p in paths] == sealer.sign_many(paths)
        assert len(set(tokens)) == len(paths)
        for token, path in zip(tokens, paths, strict=True):
            assert verify_segment_token(ring, token, path, now=NOW).session_id == session_id
        with pytest.raises(TokenInvalid):
            verify_segment_token(ring, tokens[0], paths[1], now=NOW)
    assert ring.session_sealer(SESSION, EXPIRES).seal(b"") == b""
    with pytest.raises(ValueError, match="16-byte"):
        ring.session_sealer(SESSION, EXPIRES).seal(b"x" * 17)


def test_every_single_character_tamper_fails(ring: SegmentKeyring) -> None:
    token = ring.session_sealer(SESSION, EXPIRES).sign(PATH)
    for position, original in enumerate(token):
        for replacement in ALPHABET:
            if replacement == original:
                continue
            forged = token[:position] + replacement + token[position + 1 :]
            with pytest.raises(TokenInvalid):
                verify_segment_token(ring, forged, PATH, now=NOW)


def test_binds_path_session_expiry_and_version(ring: SegmentKeyring) -> None:
    token = ring.session_sealer(SESSION, EXPIRES).sign(PATH)
    for path in (OTHER_PATH, PATH.upper(), PATH + "/", PATH[:-1], ""):
        with pytest.raises(TokenInvalid):
            verify_segment_token(ring, token, path, now=NOW)
    other_session = ring.session_sealer(new_session_id(), EXPIRES).sign(PATH)
    with pytest.raises(TokenInvalid):
        verify_segment_token(ring, other_session[:24] + token[24:], PATH, now=NOW)
    later = ring.session_sealer(SESSION, EXPIRES + 1).sign(PATH)
    with pytest.raises(TokenInvalid):
        verify_segment_token(ring, later[:24] + token[24:], PATH, now=NOW)
    # the same header as version 1 does not make a version 2 tag valid, nor the reverse
    v1 = ring.session_signer(SESSION, EXPIRES).sign(PATH)
    with pytest.raises(TokenInvalid):
        verify_segment_token(ring, v1[:24] + token[24:], PATH, now=NOW)
    with pytest.raises(TokenInvalid):
        verify_segment_token(ring, token[:24] + v1[24:], PATH, now=NOW)


def test_version_1_tokens_still_verify(ring: SegmentKeyring) -> None:
    v1 = ring.session_signer(SESSION, EXPIRES).sign(PATH)
    assert base64.urlsafe_b64decode(v1)[0] == 0x10
    assert verify_segment_token(ring, v1, PATH, now=NOW).session_id == SESSION


def test_expiry_is_checked_after_the_tag(ring: SegmentKeyring) -> None:
    token = ring.session_sealer(SESSION, 1000).sign(PATH)
    verify_segment_token(ring, token, PATH, now=1029)
    with pytest.raises(TokenExpired):
        verify_segment_token(ring, token, PATH, now=1030)
    with pytest.raises(TokenInvalid):
        verify_segment_token(ring, token, OTHER_PATH, now=1030)


def test_rotation_by_kid(ring: SegmentKeyring) -> None:
    old = ring.session_sealer(SESSION, EXPIRES).sign(PATH)
    rotated = ring.with_key(8, OTHER_SECRET)
    new = rotated.session_sealer(SESSION, EXPIRES).sign(PATH)
    assert base64.urlsafe_b64decode(new)[1] == 8
    assert rotated.path_hasher() is rotated.path_hasher(8)
    assert rotated.path_hasher(7) is not ring.path_hasher(7)  # a new ring, new objects
    assert verify_segment_token(rotated, old, PATH, now=NOW).kid == 7
    assert verify_segment_token(rotated, new, PATH, now=NOW).kid == 8
    retired = rotated.without_key(7)
    with pytest.raises(UnknownKey):
        verify_segment_token(retired, old, PATH, now=NOW)
    with pytest.raises(TokenInvalid):  # the same kid with another secret
        verify_segment_token(SegmentKeyring({7: OTHER_SECRET}, 7), old, PATH, now=NOW)


def test_ip_binding(ring: SegmentKeyring) -> None:
    token = ring.session_sealer(SESSION, EXPIRES, ip_prefix="203.0.113.0/24").sign(PATH)
    verify_segment_token(ring, token, PATH, now=NOW, client_ip="203.0.113.77")
    for ip in (None, "203.0.114.1", "2001:db8::1", "garbage"):
        with pytest.raises(TokenInvalid):
            verify_segment_token(ring, token, PATH, now=NOW, client_ip=ip)


def test_session_key_cache_is_bounded_and_only_holds_genuine_sessions() -> None:
    ring = SegmentKeyring({1: SECRET}, 1, cache_size=2)
    sealers = [ring.session_sealer(new_session_id(), EXPIRES) for _ in range(5)]
    assert len(ring._sealers) == 2
    ring = SegmentKeyring({1: SECRET}, 1, cache_size=2)
    forged = sealers[0].sign(PATH)[:24] + "A" * 20
    with pytest.raises(TokenInvalid):
        verify_segment_token(ring, forged, PATH, now=NOW)
    assert len(ring._sealers) == 0
    for sealer in sealers:
        verify_segment_token(ring, sealer.sign(PATH), PATH, now=NOW)
        assert len(ring._sealers) <= 2


def test_repr_hides_secrets(ring: SegmentKeyring) -> None:
    text = repr(ring.session_sealer(SESSION, EXPIRES)) + repr(ring.path_hasher())
    assert SESSION not in text
    assert SECRET.hex() not in text


@settings(max_examples=300)
@given(path=st.text(alphabet=st.characters(exclude_categories=())))
def test_any_path_round_trips_and_binds(path: str) -> None:
    ring = SegmentKeyring({1: SECRET}, 1)
    sealer = ring.session_sealer(new_session_id(), EXPIRES)
    token = sealer.sign(path)
    assert sealer.sign_many([path]) == [token]
    assert verify_segment_token(ring, token, path, now=NOW).expires_at == EXPIRES
    with pytest.raises(TokenInvalid):
        verify_segment_token(ring, token, path + "x", now=NOW)
