"""Fuzzing segment tokens and access JWTs: genuine tokens, then broken every way a client
(or an attacker) can break them.

Each example starts from a genuine token and applies one attack: random bytes, a
truncation, an over-long token, one character changed, another path, another session,
expired, not yet valid (``iat``/``nbf`` in the future), signed by a key that was rotated
out, or by another key under a known ``kid``. Properties: verification raises only
`TokenError` subclasses, of the class the attack calls for; no attack ever yields a
verified token for what it was not issued for. The garbage-text and signed-JSON drills
of tests/unit/tokens cover arbitrary input; these start close to a real token, where a
mistake would let one through.
"""

from __future__ import annotations

import base64
import string

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import event, given, note
from hypothesis import strategies as st

from tokens import (
    SEGMENT_TOKEN_LENGTH,
    SegmentKeyring,
    TokenError,
    TokenExpired,
    TokenInvalid,
    UnknownKey,
    decode_jwt,
    encode_jwt,
    new_access_claims,
    verify_segment_token,
)
from tokens.jwt import MAX_JWT_LENGTH

NOW = 1_700_000_000
LEEWAY = 30
SECRETS = {kid: bytes([kid]) * 32 for kid in range(4)}
PATHS = [f"/hls/m1/720p/seg_{i:05d}.ts" for i in range(3)] + ["/hls/m1/720p/init.mp4"]
SESSIONS = ["AAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBB", "session-id_0123"]
B64 = string.ascii_letters + string.digits + "-_"

# any character, without Hypothesis's Unicode tables (see tests/fuzz/hostile.py)
chars = st.sampled_from(B64 + ".=+/ \x00é") | st.integers(0, 0x10FFFF).map(chr)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ------------------------------------------------------------------ segment tokens


@st.composite
def segment_attacks(draw: st.DrawFn) -> tuple[str, str, SegmentKeyring, int, str | None, type]:
    """(token, path, ring, now, client_ip, the error expected or type(None) for valid)."""
    kid = draw(st.sampled_from(sorted(SECRETS)))
    ring = SegmentKeyring(SECRETS, kid)
    session = draw(st.sampled_from(SESSIONS[:2]))
    expires = NOW + draw(st.integers(0, 7 * 24 * 3600))
    path = draw(st.sampled_from(PATHS))
    bound = draw(st.booleans())
    ip = "203.0.113.7"
    prefix = "203.0.113.0/24" if bound else None
    token = ring.session_signer(session, expires, ip_prefix=prefix).sign(path)
    now = NOW
    attack = draw(
        st.sampled_from(
            [
                "none",
                "random",
                "truncated",
                "over-long",
                "one character",
                "other path",
                "expired",
                "rotated out",
                "other network",
                "no network",
            ]
        )
    )
    event(f"segment token: {attack}")
    expected: type = type(None)
    if attack == "random":
        raw = draw(st.binary(min_size=0, max_size=60))
        token = draw(st.sampled_from([_b64(raw), raw.decode("latin-1")]))
        expected = TokenInvalid
    elif attack == "truncated":
        token = token[: draw(st.integers(0, SEGMENT_TOKEN_LENGTH - 1))]
        expected = TokenInvalid
    elif attack == "over-long":
        token += "".join(draw(st.lists(chars, min_size=1, max_size=40)))
        expected = TokenInvalid
    elif attack == "one character":
        at = draw(st.integers(0, SEGMENT_TOKEN_LENGTH - 1))
        replacement = draw(chars.filter(lambda c: c != token[at]))
        token = token[:at] + replacement + token[at + 1 :]
        expected = TokenInvalid
    elif attack == "other path":
        path = draw(st.sampled_from([p for p in PATHS if p != path] + [path + "x", path.upper()]))
        expected = TokenInvalid
    elif attack == "expired":
        now = expires + LEEWAY + draw(st.integers(0, 10**6))
        expected = TokenExpired
    elif attack == "rotated out":
        current = (kid + 1) % len(SECRETS)
        ring = SegmentKeyring(SECRETS, current).without_key(kid)
        expected = UnknownKey
    elif attack == "other network" and bound:
        ip = draw(st.sampled_from(["203.0.114.7", "198.51.100.1", "2001:db8::1", "not an ip"]))
        expected = TokenInvalid
    elif attack == "no network" and bound:
        return token, path, ring, now, None, TokenInvalid
    return token, path, ring, now, ip, expected


@given(segment_attacks())
def test_segment_token_attacks_raise_the_token_error_they_call_for(
    attack: tuple[str, str, SegmentKeyring, int, str | None, type],
) -> None:
    token, path, ring, now, client_ip, expected = attack
    note(f"token={token!r} path={path!r} ring={ring!r} now={now} ip={client_ip!r}")
    if expected is type(None):
        claims = verify_segment_token(
            ring, token, path, now=now, client_ip=client_ip, leeway=LEEWAY
        )
        assert claims.session_id in SESSIONS  # the session it was issued to, no other
        return
    with pytest.raises(TokenError) as caught:
        verify_segment_token(ring, token, path, now=now, client_ip=client_ip, leeway=LEEWAY)
    assert isinstance(caught.value, expected), (type(caught.value), expected)


session_ids = st.binary(min_size=12, max_size=12).map(
    lambda raw: base64.urlsafe_b64encode(raw).decode()
)


@given(session_ids, session_ids, st.sampled_from(PATHS) | st.from_regex(r"/hls/[a-z0-9/._-]{1,40}"))
def test_another_sessions_token_names_that_session(mine: str, other: str, path: str) -> None:
    """Another session's token verifies only as that other session (the gateway then
    finds it is not the session it loaded for the request, and refuses)."""
    ring = SegmentKeyring(SECRETS, 0)
    token = ring.session_signer(other, NOW + 60).sign(path)
    claims = verify_segment_token(ring, token, path, now=NOW)
    assert claims.session_id == other
    assert (claims.session_id == mine) == (mine == other)


# ------------------------------------------------------------------ access JWTs

JWT_KEYS = {f"k{i}": Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32) for i in range(3)}
PUBLIC = {kid: key.public_key() for kid, key in JWT_KEYS.items()}
STRANGER = Ed25519PrivateKey.from_private_bytes(bytes([99]) * 32)
# which of header, payload and signature a splice takes from the other token
_SPLICES = [(h, p, s) for h in (0, 1) for p in (0, 1) for s in (0, 1) if 0 < h + p + s < 3]


def _jwt(kid: str, *, key: Ed25519PrivateKey | None = None, **changes: object) -> str:
    claims = new_access_claims(
        sub="user-1", email="viewer@example.ug", role="user", plan="basic", now=NOW
    ).to_payload()
    claims.update(changes)
    return encode_jwt(claims, kid=kid, private_key=key or JWT_KEYS[kid])


@st.composite
def jwt_attacks(draw: st.DrawFn) -> tuple[str, dict[str, object], int, type]:
    """(token, public keys, now, the error expected or type(None) for valid)."""
    kid = draw(st.sampled_from(sorted(JWT_KEYS)))
    keys: dict[str, object] = dict(PUBLIC)
    token = _jwt(kid)
    now = NOW + draw(st.integers(0, 14 * 60))
    attack = draw(
        st.sampled_from(
            [
                "none",
                "random",
                "truncated",
                "over-long",
                "one character",
                "spliced",
                "expired",
                "issued in the future",
                "not yet valid",
                "rotated out",
                "other key, same kid",
            ]
        )
    )
    event(f"jwt: {attack}")
    expected: type = type(None)
    if attack == "random":
        parts = draw(st.lists(st.binary(max_size=80), min_size=1, max_size=4))
        token = draw(
            st.sampled_from([".".join(_b64(p) for p in parts), parts[0].decode("latin-1")])
        )
        expected = TokenInvalid
    elif attack == "truncated":
        token = token[: draw(st.integers(0, len(token) - 1))]
        expected = TokenInvalid
    elif attack == "over-long":
        tail = "".join(draw(st.lists(chars, min_size=1, max_size=8)))
        token += tail * draw(st.sampled_from([1, 2, MAX_JWT_LENGTH // len(tail) + 1]))
        expected = TokenInvalid
    elif attack == "one character":
        at = draw(st.integers(0, len(token) - 1))
        token = token[:at] + draw(chars.filter(lambda c: c != token[at])) + token[at + 1 :]
        expected = TokenInvalid
    elif attack == "spliced":
        # header, payload and signature from two genuine tokens of different users or keys
        other = _jwt(draw(st.sampled_from(sorted(JWT_KEYS))), sub="admin-9", role="admin")
        mine, theirs = token.split("."), other.split(".")
        picks = draw(st.sampled_from(_SPLICES))
        spliced = ".".join(t if p else m for m, t, p in zip(mine, theirs, picks, strict=True))
        # headers of one kid are equal: a splice may give back one of the two tokens
        expected = type(None) if spliced in (token, other) else TokenInvalid
        token = spliced
    elif attack == "expired":
        now = NOW + 15 * 60 + LEEWAY + draw(st.integers(0, 10**6))
        expected = TokenExpired
    elif attack == "issued in the future":
        ahead = LEEWAY + draw(st.integers(1, 10**6))
        token = _jwt(kid, iat=NOW + ahead, exp=NOW + ahead + 900)
        now = NOW
        expected = TokenInvalid
    elif attack == "not yet valid":
        token = _jwt(kid, nbf=NOW + LEEWAY + draw(st.integers(1, 10**6)))
        now = NOW
        expected = TokenInvalid
    elif attack == "rotated out":
        del keys[kid]
        expected = UnknownKey
    elif attack == "other key, same kid":
        token = _jwt(kid, key=STRANGER)
        expected = TokenInvalid
    return token, keys, now, expected


@given(jwt_attacks())
def test_jwt_attacks_raise_the_token_error_they_call_for(
    attack: tuple[str, dict[str, object], int, type],
) -> None:
    token, keys, now, expected = attack
    note(f"token={token!r} kids={sorted(keys)} now={now} expected={expected.__name__}")
    if expected is type(None):
        claims = decode_jwt(token, public_keys=keys, now=now)  # type: ignore[arg-type]
        assert (claims.sub, claims.role) in {("user-1", "user"), ("admin-9", "admin")}
        return
    with pytest.raises(TokenError) as caught:
        decode_jwt(token, public_keys=keys, now=now)  # type: ignore[arg-type]
    assert isinstance(caught.value, expected), (type(caught.value), expected)
