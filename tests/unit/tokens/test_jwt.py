"""Access tokens: EdDSA JWT round trip, strict header rules, claims, garbage, JWKS."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import string
from collections.abc import Callable

import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tokens import (
    AccessClaims,
    TokenError,
    TokenExpired,
    TokenInvalid,
    UnknownKey,
    decode_jwt,
    encode_jwt,
    jwks,
    new_access_claims,
)
from tokens.jwt import MAX_JWT_LENGTH

NOW = 1_700_000_000
KID = "k1-2024"
PRIVATE_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC_KEYS = {KID: PRIVATE_KEY.public_key()}


# JSON values for the signed-garbage drill, without st.text(): any st.text() or
# st.characters(), even over an explicit alphabet, first needs Hypothesis's Unicode
# tables (the default alphabet also its UTF-8 codec table). A process that finds
# .hypothesis/unicode_data cold (a fresh checkout, CI) builds them by walking all
# 1.1 million code points, 0.3 to 4 s on this machine. Nested in one_of they are built
# lazily, inside this test's first draw, which was charged to the test and tripped
# HealthCheck.too_slow whenever this test was the first in its process to need them.
# Strings made from sampled characters need no tables.
JSON_CHARS = string.ascii_letters[:6] + string.digits[:3] + ' -_.@"\\\x00\x7fé€𝄞'
json_strings = st.lists(st.sampled_from(JSON_CHARS), max_size=8).map("".join)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.sampled_from(
        ["EdDSA", "JWT", KID, "user", "admin", "free", "premium", NOW, NOW + 60, NOW - 60, 2**53]
    )
    | json_strings
)
json_values = json_scalars | st.lists(json_scalars, max_size=3)
DROP = object()


def _kept_dropped_or_replaced(value: object, keep: int) -> st.SearchStrategy[object]:
    """``value`` ``keep`` times in ``keep + 2``, else dropped or any JSON value."""
    return st.integers(0, keep + 1).flatmap(
        lambda pick: (
            st.just(value) if pick < keep else st.just(DROP) if pick == keep else json_values
        )
    )


def edited(valid: dict[str, object], extra: str, keep: int) -> st.SearchStrategy[dict[str, object]]:
    """``valid`` with each field kept, dropped or replaced, and maybe an ``extra`` field.

    Each field is decided once (no retried duplicate keys, as st.dictionaries() over a
    handful of names does), and most examples stay close enough to a real token to get
    past the header checks to the signature and the claims.
    """
    fields = {name: _kept_dropped_or_replaced(value, keep) for name, value in valid.items()}
    return st.fixed_dictionaries(fields, optional={extra: json_values}).map(
        lambda drawn: {name: value for name, value in drawn.items() if value is not DROP}
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def payload(**changes: object) -> dict[str, object]:
    claims: dict[str, object] = {
        "sub": "user-123",
        "email": "viewer@example.ug",
        "role": "user",
        "plan": "basic",
        "iat": NOW,
        "exp": NOW + 900,
        "jti": "jti-abc",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def forge(
    header: dict[str, object],
    body: dict[str, object],
    sign: Callable[[bytes], bytes] = PRIVATE_KEY.sign,
) -> str:
    """Build a compact JWS by hand, signed however the test wants."""
    signing_input = f"{b64(orjson.dumps(header))}.{b64(orjson.dumps(body))}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def ed_header(**changes: object) -> dict[str, object]:
    header: dict[str, object] = {"alg": "EdDSA", "typ": "JWT", "kid": KID}
    header.update(changes)
    return {k: v for k, v in header.items() if v is not None}


def decode(token: str, **kwargs: object) -> AccessClaims:
    return decode_jwt(token, public_keys=PUBLIC_KEYS, now=NOW, **kwargs)  # type: ignore[arg-type]


def test_round_trip() -> None:
    claims = new_access_claims(
        sub="user-123", email="viewer@example.ug", role="admin", plan="premium", now=NOW
    )
    assert claims.exp == NOW + 15 * 60
    assert len(claims.jti) >= 16
    token = encode_jwt(claims.to_payload(), kid=KID, private_key=PRIVATE_KEY)
    assert decode(token) == claims
    header = orjson.loads(unb64(token.split(".")[0]))
    assert header == {"alg": "EdDSA", "typ": "JWT", "kid": KID}


def test_fresh_jti_each_time() -> None:
    def make() -> AccessClaims:
        return new_access_claims(sub="u", email="e@x.ug", role="user", plan="free", now=NOW)

    assert make().jti != make().jti


def test_forged_helper_produces_acceptable_tokens() -> None:
    assert decode(forge(ed_header(), payload())).sub == "user-123"


def test_issuer_and_audience() -> None:
    claims = new_access_claims(
        sub="u",
        email="e@x.ug",
        role="moderator",
        plan="free",
        now=NOW,
        issuer="https://kush.example",
        audience="gateway",
    )
    token = encode_jwt(claims.to_payload(), kid=KID, private_key=PRIVATE_KEY)
    got = decode(token, issuer="https://kush.example", audience="gateway")
    assert got.iss == "https://kush.example"
    assert got.aud == ("gateway",)
    with pytest.raises(TokenInvalid):
        decode(token, issuer="https://evil.example")
    with pytest.raises(TokenInvalid):
        decode(token, audience="admin")
    bare = encode_jwt(payload(), kid=KID, private_key=PRIVATE_KEY)
    with pytest.raises(TokenInvalid):
        decode(bare, audience="gateway")
    with pytest.raises(TokenInvalid):
        decode(bare, issuer="https://kush.example")
    listed = forge(ed_header(), payload(aud=["admin", "gateway"]))
    assert decode(listed, audience="gateway").aud == ("admin", "gateway")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "", "eddsa", "EDDSA", "Ed25519"])
def test_other_alg_spellings_refused(alg: str) -> None:
    signed = forge(ed_header(alg=alg), payload())
    unsigned = signed.rsplit(".", 1)[0] + "."
    for token in (signed, unsigned):
        with pytest.raises(TokenInvalid):
            decode(token)


def test_alg_none_unsigned_refused() -> None:
    header = b64(orjson.dumps({"alg": "none", "typ": "JWT", "kid": KID}))
    body = b64(orjson.dumps(payload(role="admin")))
    for token in (f"{header}.{body}.", f"{header}.{body}", f"{header}.{body}.AAAA"):
        with pytest.raises(TokenInvalid):
            decode(token)


def test_missing_alg_refused() -> None:
    with pytest.raises(TokenInvalid):
        decode(forge(ed_header(alg=None), payload()))


@pytest.mark.parametrize(
    "key_bytes",
    [
        PUBLIC_KEYS[KID].public_bytes_raw(),
        PUBLIC_KEYS[KID].public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        b64(PUBLIC_KEYS[KID].public_bytes_raw()).encode(),
    ],
)
@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_signed_with_the_public_key_refused(key_bytes: bytes, alg: str) -> None:
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    token = forge(
        ed_header(alg=alg),
        payload(role="admin"),
        sign=lambda m: hmac.new(key_bytes, m, digest).digest(),
    )
    with pytest.raises(TokenInvalid):
        decode(token)


def test_es256_refused() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())

    def sign(message: bytes) -> bytes:
        r, s = decode_dss_signature(ec_key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")  # 64 bytes, like Ed25519

    with pytest.raises(TokenInvalid):
        decode(forge(ed_header(alg="ES256"), payload(), sign=sign))


@pytest.mark.parametrize("typ", ["jwt", "JWS", "at+jwt", "", None, 1])
def test_wrong_typ_refused(typ: object) -> None:
    with pytest.raises(TokenInvalid):
        decode(forge(ed_header(typ=typ), payload()))


@pytest.mark.parametrize(
    "extra",
    [
        {"crit": ["exp"]},
        {"jku": "https://evil.example/jwks.json"},
        {"jwk": {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}},
        {"x5u": "https://evil.example/cert"},
        {"cty": "JWT"},
    ],
)
def test_extra_header_parameters_refused(extra: dict[str, object]) -> None:
    with pytest.raises(TokenInvalid):
        decode(forge(ed_header(**extra), payload()))


def test_unknown_kid_refused() -> None:
    with pytest.raises(UnknownKey):
        decode(forge(ed_header(kid="retired"), payload()))


@pytest.mark.parametrize("kid", [None, 1, ["k1-2024"], {"k": 1}])
def test_missing_or_malformed_kid_refused(kid: object) -> None:
    with pytest.raises(TokenInvalid):
        decode(forge(ed_header(kid=kid), payload()))


def test_signature_by_another_key_under_a_known_kid_refused() -> None:
    other = Ed25519PrivateKey.generate()
    with pytest.raises(TokenInvalid):
        decode(forge(ed_header(), payload(), sign=other.sign))


def test_expiry_with_leeway() -> None:
    token = forge(ed_header(), payload(iat=NOW - 900, exp=NOW))
    decode_jwt(token, public_keys=PUBLIC_KEYS, now=NOW + 29)
    with pytest.raises(TokenExpired):
        decode_jwt(token, public_keys=PUBLIC_KEYS, now=NOW + 30)
    decode_jwt(token, public_keys=PUBLIC_KEYS, now=NOW - 1, leeway=0)
    with pytest.raises(TokenExpired):
        decode_jwt(token, public_keys=PUBLIC_KEYS, now=NOW, leeway=0)


def test_issued_in_the_future_refused() -> None:
    decode(forge(ed_header(), payload(iat=NOW + 30, exp=NOW + 900)))
    with pytest.raises(TokenInvalid):
        decode(forge(ed_header(), payload(iat=NOW + 31, exp=NOW + 900)))


def test_not_before() -> None:
    decode(forge(ed_header(), payload(nbf=NOW + 30)))
    with pytest.raises(TokenInvalid):
        decode(forge(ed_header(), payload(nbf=NOW + 31)))
    with pytest.raises(TokenInvalid):
        decode(forge(ed_header(), payload(nbf="soon")))


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": None},
        {"iat": None},
        {"sub": None},
        {"email": None},
        {"jti": None},
        {"role": None},
        {"plan": None},
        {"exp": float(NOW + 900)},
        {"exp": str(NOW + 900)},
        {"exp": True},
        {"iat": False},
        {"exp": -1},
        {"exp": 2**60},
        {"sub": ""},
        {"sub": 123},
        {"email": ["a@b.c"]},
        {"role": "root"},
        {"role": "Admin"},
        {"plan": "gold"},
        {"plan": 1},
        {"iss": 5},
        {"aud": 5},
        {"aud": ["gateway", 5]},
        {"exp": NOW - 100, "iat": NOW},
    ],
)
def test_malformed_claims_refused(changes: dict[str, object]) -> None:
    with pytest.raises(TokenInvalid):
        decode(forge(ed_header(), payload(**changes)))


def test_tampered_payload_refused() -> None:
    token = encode_jwt(payload(), kid=KID, private_key=PRIVATE_KEY)
    header, _, signature = token.split(".")
    promoted = b64(orjson.dumps(payload(role="admin", plan="premium")))
    with pytest.raises(TokenInvalid):
        decode(f"{header}.{promoted}.{signature}")


def test_single_character_tampers_refused() -> None:
    token = encode_jwt(payload(), kid=KID, private_key=PRIVATE_KEY)
    for position, original in enumerate(token):
        for replacement in ("A", "_", ".", "="):
            if replacement == original:
                continue
            forged = token[:position] + replacement + token[position + 1 :]
            with pytest.raises(TokenInvalid):
                decode(forged)


def test_non_canonical_base64_refused() -> None:
    token = encode_jwt(payload(), kid=KID, private_key=PRIVATE_KEY)
    header, body, signature = token.split(".")
    # 64 signature bytes leave 2 spare bits in the last character: set one.
    last = signature[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = alphabet[alphabet.index(last) | 1]
    assert twin != last
    assert unb64(signature[:-1] + twin) == unb64(signature)
    with pytest.raises(TokenInvalid):
        decode(f"{header}.{body}.{signature[:-1]}{twin}")
    with pytest.raises(TokenInvalid):
        decode(f"{header}.{body}.{signature}==")
    padded_header = base64.urlsafe_b64encode(unb64(header)).decode()
    if padded_header != header:
        with pytest.raises(TokenInvalid):
            decode(f"{padded_header}.{body}.{signature}")


@pytest.mark.parametrize(
    "token",
    [
        "",
        ".",
        "..",
        "...",
        "a.b.c",
        "a.b.c.d",
        "eyJ.eyJ.sig",
        "x" * 5000,
        "é.é.é",
        "\x00.\x00.\x00",
        b64(b"[1,2]") + "." + b64(b"{}") + ".AAAA",
        b64(b'"EdDSA"') + "." + b64(b"{}") + ".AAAA",
        b64(b"not json") + "." + b64(b"{}") + ".AAAA",
        b64(b"\xff\xfe") + "." + b64(b"{}") + ".AAAA",
    ],
)
def test_garbage_refused(token: str) -> None:
    with pytest.raises(TokenInvalid):
        decode(token)


@pytest.mark.parametrize("token", [None, b"a.b.c", 5, ["a", "b", "c"]])
def test_non_string_refused(token: object) -> None:
    with pytest.raises(TokenInvalid):
        decode(token)  # type: ignore[arg-type]


def test_payload_that_is_not_an_object_refused() -> None:
    header = b64(orjson.dumps(ed_header()))
    body = b64(b"[1,2,3]")
    signature = b64(PRIVATE_KEY.sign(f"{header}.{body}".encode()))
    with pytest.raises(TokenInvalid):
        decode(f"{header}.{body}.{signature}")


def test_size_limit() -> None:
    big = payload(email="a" * MAX_JWT_LENGTH + "@example.ug")
    with pytest.raises(ValueError, match="exceed"):
        encode_jwt(big, kid=KID, private_key=PRIVATE_KEY)
    with pytest.raises(TokenInvalid):
        decode(forge(ed_header(), big))


def test_encode_requires_a_kid() -> None:
    with pytest.raises(ValueError, match="kid"):
        encode_jwt(payload(), kid="", private_key=PRIVATE_KEY)


@settings(max_examples=400)
@given(token=st.text(alphabet=st.characters(exclude_categories=())))
@example(token="." * 4096)
@example(token="A" * 4096 + "." + "A")
@example(token="eyJhbGciOiJFZERTQSJ9." * 3)
def test_arbitrary_text_raises_only_token_errors(token: str) -> None:
    with pytest.raises(TokenError):
        decode(token)


@settings(max_examples=200)
@given(header=edited(ed_header(), "x", keep=10), body=edited(payload(nbf=NOW - 1), "sid", keep=4))
def test_arbitrary_signed_json_raises_only_token_errors(
    header: dict[str, object], body: dict[str, object]
) -> None:
    with contextlib.suppress(TokenError):
        decode(forge(header, body))


def test_jwks_verifies_with_an_independent_decoding() -> None:
    second = Ed25519PrivateKey.generate()
    keys = {KID: PUBLIC_KEYS[KID], "k2": second.public_key()}
    document = orjson.loads(orjson.dumps(jwks(keys)))
    assert [k["kid"] for k in document["keys"]] == [KID, "k2"]
    for jwk in document["keys"]:
        assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}
        assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == (
            "OKP",
            "Ed25519",
            "EdDSA",
            "sig",
        )
        assert "=" not in jwk["x"]
        assert "d" not in jwk  # never the private part
    by_kid = {jwk["kid"]: jwk for jwk in document["keys"]}
    token = encode_jwt(payload(), kid=KID, private_key=PRIVATE_KEY)
    header_b64, body_b64, signature_b64 = token.split(".")
    rebuilt = Ed25519PublicKey.from_public_bytes(unb64(by_kid[KID]["x"]))
    rebuilt.verify(unb64(signature_b64), f"{header_b64}.{body_b64}".encode())
    rebuilt_keys = {
        kid: Ed25519PublicKey.from_public_bytes(unb64(j["x"])) for kid, j in by_kid.items()
    }
    assert decode_jwt(token, public_keys=rebuilt_keys, now=NOW).sub == "user-123"
    k2_token = forge(ed_header(kid="k2"), payload(), sign=second.sign)
    assert decode_jwt(k2_token, public_keys=rebuilt_keys, now=NOW).sub == "user-123"
