"""Segment tokens: round trip, binding, tampering, expiry, rotation, IP binding, garbage."""

from __future__ import annotations

import base64
import re
import string

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tokens import (
    SEGMENT_TOKEN_LENGTH,
    SegmentKeyring,
    TokenError,
    TokenExpired,
    TokenInvalid,
    UnknownKey,
    ip_prefix_of,
    new_session_id,
    segment_token_ttl,
    verify_segment_token,
)

NOW = 1_700_000_000
EXPIRES = NOW + 3600
PATH = "/hls/6f1c2a9e-4b7d-4c1e-8f0a-1234567890ab/720p/seg_00042.ts"
OTHER_PATH = "/hls/6f1c2a9e-4b7d-4c1e-8f0a-1234567890ab/720p/seg_00043.ts"
ALPHABET = string.ascii_letters + string.digits + "-_"
SECRET_1 = bytes(range(32))
SECRET_2 = bytes(range(32, 64))
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]+")

# Any text, lone surrogates included: request paths are str and may hold anything.
any_text = st.text(alphabet=st.characters(exclude_categories=()))


@pytest.fixture
def keyring() -> SegmentKeyring:
    return SegmentKeyring({1: SECRET_1}, 1)


@pytest.fixture
def session_id() -> str:
    return new_session_id()


@pytest.fixture
def token(keyring: SegmentKeyring, session_id: str) -> str:
    return keyring.session_signer(session_id, EXPIRES).sign(PATH)


def test_round_trip(keyring: SegmentKeyring, session_id: str, token: str) -> None:
    claims = verify_segment_token(keyring, token, PATH, now=NOW)
    assert claims.session_id == session_id
    assert claims.expires_at == EXPIRES
    assert claims.kid == 1


def test_token_is_compact_url_safe_base64(token: str, session_id: str) -> None:
    assert len(token) == SEGMENT_TOKEN_LENGTH == 44
    assert len(token) <= 48
    assert TOKEN_RE.fullmatch(token)
    raw = base64.urlsafe_b64decode(token)
    assert len(raw) == 33
    assert raw[0] == 0x10  # version 1, no flags
    assert raw[1] == 1  # kid
    assert int.from_bytes(raw[2:6], "big") == EXPIRES
    assert token[8:24] == session_id  # the session id shows verbatim


def test_sign_many_matches_sign_and_shares_the_header(
    keyring: SegmentKeyring, session_id: str
) -> None:
    signer = keyring.session_signer(session_id, EXPIRES)
    paths = [f"/hls/m/480p/seg_{i:05d}.ts" for i in range(50)] + ["/hls/m/480p/init.mp4"]
    tokens = signer.sign_many(paths)
    assert tokens == [signer.sign(p) for p in paths]
    assert len(set(tokens)) == len(paths)
    assert len({t[:24] for t in tokens}) == 1
    for tok, path in zip(tokens, paths, strict=True):
        assert verify_segment_token(keyring, tok, path, now=NOW).session_id == session_id
    assert signer.sign_many([]) == []


def test_sign_many_handles_lone_surrogates(keyring: SegmentKeyring, session_id: str) -> None:
    signer = keyring.session_signer(session_id, EXPIRES)
    paths = ["/a.ts", "/b\udcff.ts", "/c.ts"]
    tokens = signer.sign_many(paths)
    assert tokens == [signer.sign(p) for p in paths]
    verify_segment_token(keyring, tokens[1], paths[1], now=NOW)
    with pytest.raises(TokenInvalid):
        verify_segment_token(keyring, tokens[1], "/b\udcfe.ts", now=NOW)


def test_every_single_character_tamper_fails(keyring: SegmentKeyring, token: str) -> None:
    tried = 0
    for position, original in enumerate(token):
        for replacement in ALPHABET:
            if replacement == original:
                continue
            forged = token[:position] + replacement + token[position + 1 :]
            with pytest.raises(TokenInvalid):
                verify_segment_token(keyring, forged, PATH, now=NOW)
            tried += 1
    assert tried == 44 * 63


@pytest.mark.parametrize(
    "path",
    [
        OTHER_PATH,
        "/hls/6f1c2a9e-4b7d-4c1e-8f0a-1234567890ab/1080p/seg_00042.ts",
        PATH.upper(),
        PATH + "/",
        PATH[:-1],
        PATH + "?t=x",
        "",
    ],
)
def test_token_for_one_path_fails_on_another(
    keyring: SegmentKeyring, token: str, path: str
) -> None:
    with pytest.raises(TokenInvalid):
        verify_segment_token(keyring, token, path, now=NOW)


def test_tag_cannot_move_to_another_session(keyring: SegmentKeyring, token: str) -> None:
    other = keyring.session_signer(new_session_id(), EXPIRES).sign(PATH)
    with pytest.raises(TokenInvalid):
        verify_segment_token(keyring, other[:24] + token[24:], PATH, now=NOW)


def test_expiry_and_leeway_edge(keyring: SegmentKeyring, session_id: str) -> None:
    token = keyring.session_signer(session_id, 1000).sign(PATH)
    verify_segment_token(keyring, token, PATH, now=1029)
    with pytest.raises(TokenExpired):
        verify_segment_token(keyring, token, PATH, now=1030)
    verify_segment_token(keyring, token, PATH, now=999, leeway=0)
    with pytest.raises(TokenExpired):
        verify_segment_token(keyring, token, PATH, now=1000, leeway=0)


def test_expired_but_wrong_path_is_invalid_not_expired(keyring: SegmentKeyring) -> None:
    token = keyring.session_signer(new_session_id(), 1000).sign(PATH)
    with pytest.raises(TokenExpired):
        verify_segment_token(keyring, token, PATH, now=NOW)
    with pytest.raises(TokenInvalid):  # the tag is checked before the expiry
        verify_segment_token(keyring, token, OTHER_PATH, now=NOW)


def test_unknown_kid_fails(token: str) -> None:
    other_ring = SegmentKeyring({2: SECRET_1}, 2)
    with pytest.raises(UnknownKey):
        verify_segment_token(other_ring, token, PATH, now=NOW)


def test_same_kid_other_secret_fails(token: str) -> None:
    with pytest.raises(TokenInvalid):
        verify_segment_token(SegmentKeyring({1: SECRET_2}, 1), token, PATH, now=NOW)


def test_rotation_keeps_old_tokens_until_the_kid_is_removed(
    keyring: SegmentKeyring, session_id: str, token: str
) -> None:
    verify_segment_token(keyring, token, PATH, now=NOW)  # warm the old ring's cache
    assert keyring.next_kid() == 2
    rotated = keyring.with_key(2, SECRET_2)
    assert rotated.current_kid == 2
    assert rotated.kids == {1, 2}
    new_token = rotated.session_signer(session_id, EXPIRES).sign(PATH)
    assert base64.urlsafe_b64decode(new_token)[1] == 2
    assert verify_segment_token(rotated, token, PATH, now=NOW).kid == 1
    assert verify_segment_token(rotated, new_token, PATH, now=NOW).kid == 2
    retired = rotated.without_key(1)
    with pytest.raises(UnknownKey):
        verify_segment_token(retired, token, PATH, now=NOW)
    assert verify_segment_token(retired, new_token, PATH, now=NOW).kid == 2
    with pytest.raises(UnknownKey):  # the old ring does not know the new kid
        verify_segment_token(keyring, new_token, PATH, now=NOW)


def test_rotation_guards(keyring: SegmentKeyring) -> None:
    with pytest.raises(ValueError, match="already"):
        keyring.with_key(1, SECRET_2)
    with pytest.raises(ValueError, match="current"):
        keyring.without_key(1)
    kept = keyring.with_key(7, SECRET_2, make_current=False)
    assert kept.current_kid == 1
    full = SegmentKeyring(dict.fromkeys(range(256), SECRET_1), 0)
    with pytest.raises(ValueError, match="in use"):
        full.next_kid()
    assert SegmentKeyring({255: SECRET_1, 0: SECRET_2}, 255).next_kid() == 1


@pytest.mark.parametrize(
    ("keys", "current"),
    [
        ({256: SECRET_1}, 256),
        ({-1: SECRET_1}, -1),
        ({True: SECRET_1}, True),
        ({1: SECRET_1[:31]}, 1),
        ({1: SECRET_1 + b"x"}, 1),
        ({1: "x" * 32}, 1),
        ({1: SECRET_1}, 2),
    ],
)
def test_keyring_rejects_bad_configuration(keys: dict[int, object], current: int) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - several messages, one type
        SegmentKeyring(keys, current)  # type: ignore[arg-type]


def test_keyring_repr_hides_secrets(keyring: SegmentKeyring, session_id: str) -> None:
    text = repr(keyring) + repr(keyring.session_signer(session_id, EXPIRES))
    assert SECRET_1.hex() not in text
    assert repr(SECRET_1) not in text
    assert session_id not in text
    assert "kids=[1]" in text


def test_ip_binding(keyring: SegmentKeyring, session_id: str) -> None:
    prefix = ip_prefix_of("203.0.113.7")
    assert prefix == "203.0.113.0/24"
    token = keyring.session_signer(session_id, EXPIRES, ip_prefix=prefix).sign(PATH)
    assert base64.urlsafe_b64decode(token)[0] == 0x11  # version 1, IP-bound
    for ip in ("203.0.113.7", "203.0.113.250", "::ffff:203.0.113.9"):
        verify_segment_token(keyring, token, PATH, now=NOW, client_ip=ip)
    for ip in ("203.0.114.7", "198.51.100.7", "2001:db8::1", "not-an-ip", "", "203.0.113.7/24"):
        with pytest.raises(TokenInvalid):
            verify_segment_token(keyring, token, PATH, now=NOW, client_ip=ip)
    with pytest.raises(TokenInvalid):
        verify_segment_token(keyring, token, PATH, now=NOW)


def test_ip_binding_ipv6(keyring: SegmentKeyring, session_id: str) -> None:
    prefix = ip_prefix_of("2001:db8:abcd:12::1")
    assert prefix == "2001:db8:abcd::/48"
    token = keyring.session_signer(session_id, EXPIRES, ip_prefix=prefix).sign(PATH)
    verify_segment_token(keyring, token, PATH, now=NOW, client_ip="2001:db8:abcd:ffff::9")
    with pytest.raises(TokenInvalid):
        verify_segment_token(keyring, token, PATH, now=NOW, client_ip="2001:db8:abce::1")


def test_unbound_token_ignores_client_ip(keyring: SegmentKeyring, token: str) -> None:
    for ip in (None, "203.0.113.7", "2001:db8::1", "garbage"):
        verify_segment_token(keyring, token, PATH, now=NOW, client_ip=ip)


def test_bound_and_unbound_tokens_differ(keyring: SegmentKeyring, session_id: str) -> None:
    unbound = keyring.session_signer(session_id, EXPIRES).sign(PATH)
    bound = keyring.session_signer(session_id, EXPIRES, ip_prefix="203.0.113.0/24").sign(PATH)
    assert unbound[24:] != bound[24:]
    # Setting the flag on an unbound token does not make its tag valid for any network.
    raw = bytearray(base64.urlsafe_b64decode(unbound))
    raw[0] |= 0x01
    flagged = base64.urlsafe_b64encode(bytes(raw)).decode()
    with pytest.raises(TokenInvalid):
        verify_segment_token(keyring, flagged, PATH, now=NOW, client_ip="203.0.113.7")


@pytest.mark.parametrize(
    ("ip", "prefix"),
    [
        ("10.1.2.3", "10.1.2.0/24"),
        ("::ffff:10.1.2.3", "10.1.2.0/24"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1::/48"),
        ("fe80::1%eth0", "fe80::/48"),
        ("::1", "::/48"),
    ],
)
def test_ip_prefix_of(ip: str, prefix: str) -> None:
    assert ip_prefix_of(ip) == prefix


@pytest.mark.parametrize("ip", ["", "10.1.2", "10.1.2.3/24", "example.com", " 10.1.2.3"])
def test_ip_prefix_of_rejects_garbage(ip: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - ipaddress's messages
        ip_prefix_of(ip)


@pytest.mark.parametrize(
    "prefix", ["10.1.2.3", "10.1.2.3/24", "10.1.2.0/25", "10.1.0.0/16", "2001:db8::/64", "x"]
)
def test_signer_rejects_non_canonical_prefix(
    keyring: SegmentKeyring, session_id: str, prefix: str
) -> None:
    with pytest.raises(ValueError, match="ip_prefix_of"):
        keyring.session_signer(session_id, EXPIRES, ip_prefix=prefix)


@pytest.mark.parametrize("session_id", ["", "short", "A" * 15, "A" * 17, "A" * 15 + "=", "+" * 16])
def test_signer_rejects_bad_session_ids(keyring: SegmentKeyring, session_id: str) -> None:
    with pytest.raises(ValueError, match="session_id"):
        keyring.session_signer(session_id, EXPIRES)


@pytest.mark.parametrize("expires_at", [-1, 2**32, True, 1.5])
def test_signer_rejects_bad_expiry(
    keyring: SegmentKeyring, session_id: str, expires_at: int
) -> None:
    with pytest.raises(ValueError, match="expires_at"):
        keyring.session_signer(session_id, expires_at)


def test_new_session_id() -> None:
    ids = {new_session_id() for _ in range(200)}
    assert len(ids) == 200
    for sid in ids:
        assert len(sid) == 16
        assert TOKEN_RE.fullmatch(sid)
        assert len(base64.urlsafe_b64decode(sid)) == 12


def test_session_key_cache_is_bounded_and_only_holds_genuine_sessions() -> None:
    ring = SegmentKeyring({1: SECRET_1}, 1, cache_size=3)
    sessions = [ring.session_signer(new_session_id(), EXPIRES) for _ in range(6)]
    assert len(ring._cache) == 3
    ring = SegmentKeyring({1: SECRET_1}, 1, cache_size=3)
    forged = sessions[0].sign(PATH)[:24] + "A" * 20
    with pytest.raises(TokenInvalid):
        verify_segment_token(ring, forged, PATH, now=NOW)
    assert len(ring._cache) == 0
    for signer in sessions:
        verify_segment_token(ring, signer.sign(PATH), PATH, now=NOW)
        verify_segment_token(ring, signer.sign(OTHER_PATH), OTHER_PATH, now=NOW)
        assert len(ring._cache) <= 3
    uncached = SegmentKeyring({1: SECRET_1}, 1, cache_size=0)
    verify_segment_token(uncached, sessions[0].sign(PATH), PATH, now=NOW)
    assert len(uncached._cache) == 0


def test_segment_token_ttl() -> None:
    assert segment_token_ttl(7200) == 7200 * 2 + 4 * 3600
    assert segment_token_ttl(100.2, pace_factor=1.5, margin_s=0) == 151
    assert segment_token_ttl(0) == 4 * 3600
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="duration_s"):
            segment_token_ttl(bad)
    with pytest.raises(ValueError, match="pace_factor"):
        segment_token_ttl(60, pace_factor=0.5)
    with pytest.raises(ValueError, match="margin_s"):
        segment_token_ttl(60, margin_s=-1)


@settings(max_examples=300)
@given(path=any_text)
@example(path="")
@example(path="/\udc80\ud800.ts")
def test_any_path_round_trips_and_binds(path: str) -> None:
    ring = SegmentKeyring({1: SECRET_1}, 1)
    signer = ring.session_signer(new_session_id(), EXPIRES)
    token = signer.sign(path)
    assert len(token) <= 48
    assert signer.sign_many([path]) == [token]
    assert verify_segment_token(ring, token, path, now=NOW).expires_at == EXPIRES
    with pytest.raises(TokenInvalid):
        verify_segment_token(ring, token, path + "x", now=NOW)


@settings(max_examples=500)
@given(token=any_text, path=any_text, client_ip=st.none() | any_text)
@example(token="A" * 44, path=PATH, client_ip=None)
@example(token="é" * 44, path=PATH, client_ip=None)
@example(token="A" * 43 + "=", path=PATH, client_ip=None)
@example(token="A" * 100_000, path=PATH, client_ip=None)
@example(token="EQ" + "A" * 42, path=PATH, client_ip="\x00")
def test_garbage_tokens_raise_only_token_errors(
    token: str, path: str, client_ip: str | None
) -> None:
    ring = SegmentKeyring({0: SECRET_1, 1: SECRET_2}, 1)
    with pytest.raises(TokenError):
        verify_segment_token(ring, token, path, now=NOW, client_ip=client_ip)


@settings(max_examples=500)
@given(raw=st.binary(min_size=33, max_size=33), client_ip=st.sampled_from([None, "10.0.0.1"]))
def test_well_formed_random_tokens_are_invalid(raw: bytes, client_ip: str | None) -> None:
    ring = SegmentKeyring(dict.fromkeys(range(256), SECRET_1), 1)
    token = base64.urlsafe_b64encode(raw).decode()
    with pytest.raises(TokenInvalid):
        verify_segment_token(ring, token, PATH, now=0, client_ip=client_ip)


@pytest.mark.parametrize("value", [None, b"A" * 44, 44, ["A" * 44]])
def test_non_string_inputs_are_invalid(keyring: SegmentKeyring, token: str, value: object) -> None:
    with pytest.raises(TokenInvalid):
        verify_segment_token(keyring, value, PATH, now=NOW)  # type: ignore[arg-type]
    with pytest.raises(TokenInvalid):
        verify_segment_token(keyring, token, value, now=NOW)  # type: ignore[arg-type]
