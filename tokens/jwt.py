"""User access tokens: JWT (RFC 7519) signed with EdDSA over Ed25519 (RFC 8037).

Only one shape is ever issued or accepted::

    header   {"alg": "EdDSA", "typ": "JWT", "kid": "<key id>"}
    payload  {"sub", "email", "role", "plan", "iat", "exp", "jti"}  (+ "iss", "aud")

:func:`decode_jwt` is deliberately narrow, because JWT libraries have been broken through
their flexibility:

* the size is capped (:data:`MAX_JWT_LENGTH`) before any parsing;
* each part must be canonical, unpadded base64url (RFC 7515 §2) and header and payload
  JSON objects;
* ``alg`` must be exactly ``EdDSA``: ``none``, the HMAC family (including the classic
  attack that HMAC-signs a token with the server's *public* key), ECDSA and everything
  else are refused before any key is touched; the verifying key is always an Ed25519
  public key chosen by ``kid``, never by the token;
* ``typ`` must be exactly ``JWT``; no other header parameter is allowed (so no ``crit``,
  ``jku``, ``jwk`` or ``x5u``: keys never come from the token, RFC 7515 §4.1);
* ``kid`` must be one of ours; ``exp`` and ``iat`` are required integers, ``exp`` is
  checked with a small leeway (RFC 7519 §4.1.4), ``iat`` may not lie in the future and
  ``nbf`` is honoured if present; the other claims are required and typed.

The signature is checked before the payload is parsed. Failures raise only
:class:`~tokens.errors.TokenError` subclasses.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, TypedDict, cast

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tokens.errors import TokenExpired, TokenInvalid, UnknownKey

__all__ = [
    "ACCESS_TOKEN_TTL_S",
    "MAX_JWT_LENGTH",
    "PLANS",
    "ROLES",
    "AccessClaims",
    "Jwk",
    "Jwks",
    "Plan",
    "Role",
    "decode_jwt",
    "encode_jwt",
    "jwks",
    "new_access_claims",
]

Role = Literal["user", "admin", "moderator"]
Plan = Literal["free", "basic", "premium"]
ROLES: Final[frozenset[str]] = frozenset({"user", "admin", "moderator"})
PLANS: Final[frozenset[str]] = frozenset({"free", "basic", "premium"})

ALG: Final = "EdDSA"
TYP: Final = "JWT"
ACCESS_TOKEN_TTL_S: Final = 15 * 60  # DESIGN.md: access tokens live 15 minutes
MAX_JWT_LENGTH: Final = 4096
_SIGNATURE_BYTES: Final = 64
_HEADER_PARAMS: Final = frozenset({"alg", "typ", "kid"})
_B64URL_RE: Final = re.compile(r"[A-Za-z0-9_-]*")
_MAX_NUMERIC_DATE: Final = 2**53  # beyond this a JSON number is not an exact integer


class Jwk(TypedDict):
    """One OKP public key as a JWK (RFC 8037 §2)."""

    kty: str
    crv: str
    x: str
    kid: str
    alg: str
    use: str


class Jwks(TypedDict):
    """A JWK Set document (RFC 7517 §5), served at ``/.well-known/jwks.json``."""

    keys: list[Jwk]


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessClaims:
    """The verified claims of an access token."""

    sub: str
    email: str
    role: Role
    plan: Plan
    iat: int
    exp: int
    jti: str
    sid: str | None = None  # the login (refresh-token family) this token belongs to
    iss: str | None = None
    aud: tuple[str, ...] = ()

    def to_payload(self) -> dict[str, object]:
        """Return the JWT payload for these claims (``iss``/``aud`` only when set)."""
        payload: dict[str, object] = {
            "sub": self.sub,
            "email": self.email,
            "role": self.role,
            "plan": self.plan,
            "iat": self.iat,
            "exp": self.exp,
            "jti": self.jti,
        }
        if self.sid is not None:
            payload["sid"] = self.sid
        if self.iss is not None:
            payload["iss"] = self.iss
        if len(self.aud) == 1:
            payload["aud"] = self.aud[0]
        elif self.aud:
            payload["aud"] = list(self.aud)
        return payload


def new_access_claims(
    *,
    sub: str,
    email: str,
    role: Role,
    plan: Plan,
    now: int,
    ttl_s: int = ACCESS_TOKEN_TTL_S,
    issuer: str | None = None,
    audience: str | None = None,
    sid: str | None = None,
) -> AccessClaims:
    """Return claims for a new access token, with a fresh random ``jti``."""
    if role not in ROLES or plan not in PLANS:
        raise ValueError("unknown role or plan")
    if ttl_s <= 0:
        raise ValueError("ttl_s must be > 0")
    return AccessClaims(
        sub=sub,
        email=email,
        role=role,
        plan=plan,
        iat=now,
        exp=now + ttl_s,
        jti=secrets.token_urlsafe(16),
        sid=sid,
        iss=issuer,
        aud=() if audience is None else (audience,),
    )


def _b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(part: str) -> bytes:
    """Decode canonical unpadded base64url; anything else is ``TokenInvalid``."""
    if _B64URL_RE.fullmatch(part) is None or len(part) % 4 == 1:
        raise TokenInvalid("malformed token encoding")
    try:
        data = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as err:
        raise TokenInvalid("malformed token encoding") from err
    if _b64url(data) != part:  # non-zero trailing bits: several spellings of one value
        raise TokenInvalid("malformed token encoding")
    return data


def _json_object(data: bytes) -> dict[str, object]:
    """Parse a JSON object; anything else is ``TokenInvalid``."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise TokenInvalid("malformed token JSON") from err
    if not isinstance(value, dict):
        raise TokenInvalid("malformed token JSON")
    return cast(dict[str, object], value)


def encode_jwt(claims: Mapping[str, object], *, kid: str, private_key: Ed25519PrivateKey) -> str:
    """Sign ``claims`` (e.g. ``AccessClaims.to_payload()``) as a compact EdDSA JWT."""
    if not isinstance(kid, str) or not kid:
        raise ValueError("kid must be a non-empty string")
    header = orjson.dumps({"alg": ALG, "typ": TYP, "kid": kid})
    payload = orjson.dumps(dict(claims))
    signing_input = f"{_b64url(header)}.{_b64url(payload)}"
    signature = private_key.sign(signing_input.encode("ascii"))
    token = f"{signing_input}.{_b64url(signature)}"
    if len(token) > MAX_JWT_LENGTH:
        raise ValueError(f"token would exceed {MAX_JWT_LENGTH} characters")
    return token


def _int_claim(payload: Mapping[str, object], name: str) -> int:
    """A required integer NumericDate (bools and floats refused)."""
    value = payload.get(name)
    if type(value) is not int or not 0 <= value < _MAX_NUMERIC_DATE:
        raise TokenInvalid(f"claim {name!r} missing or not an integer")
    return value


def _str_claim(payload: Mapping[str, object], name: str) -> str:
    """A required non-empty string claim."""
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise TokenInvalid(f"claim {name!r} missing or not a string")
    return value


def _audiences(payload: Mapping[str, object]) -> tuple[str, ...]:
    """``aud`` as a tuple: absent, one string, or a list of strings (RFC 7519 §4.1.3)."""
    value = payload.get("aud")
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(cast(list[str], value))
    raise TokenInvalid("claim 'aud' is malformed")


def _access_claims(
    payload: Mapping[str, object],
    *,
    now: int,
    leeway: int,
    issuer: str | None,
    audience: str | None,
) -> AccessClaims:
    """Type-check the claims, then apply the time and issuer/audience rules."""
    exp = _int_claim(payload, "exp")
    iat = _int_claim(payload, "iat")
    sub = _str_claim(payload, "sub")
    email = _str_claim(payload, "email")
    jti = _str_claim(payload, "jti")
    role = payload.get("role")
    plan = payload.get("plan")
    if not isinstance(role, str) or role not in ROLES:
        raise TokenInvalid("claim 'role' missing or unknown")
    if not isinstance(plan, str) or plan not in PLANS:
        raise TokenInvalid("claim 'plan' missing or unknown")
    sid = payload.get("sid")
    if sid is not None and not isinstance(sid, str):
        raise TokenInvalid("claim 'sid' is malformed")
    iss = payload.get("iss")
    if iss is not None and not isinstance(iss, str):
        raise TokenInvalid("claim 'iss' is malformed")
    if issuer is not None and iss != issuer:
        raise TokenInvalid("token issuer not accepted")
    aud = _audiences(payload)
    if audience is not None and audience not in aud:
        raise TokenInvalid("token audience not accepted")
    if "nbf" in payload:
        nbf = _int_claim(payload, "nbf")
        if now + leeway < nbf:
            raise TokenInvalid("token not yet valid")
    if iat > now + leeway:
        raise TokenInvalid("token issued in the future")
    if exp <= iat:
        raise TokenInvalid("token expires before it was issued")
    if now >= exp + leeway:
        raise TokenExpired("access token expired")
    return AccessClaims(
        sub=sub,
        email=email,
        role=cast(Role, role),
        plan=cast(Plan, plan),
        iat=iat,
        exp=exp,
        jti=jti,
        sid=sid,
        iss=iss,
        aud=aud,
    )


def decode_jwt(
    token: str,
    *,
    public_keys: Mapping[str, Ed25519PublicKey],
    now: int,
    leeway: int = 30,
    issuer: str | None = None,
    audience: str | None = None,
) -> AccessClaims:
    """Verify an access token and return its claims; raise only ``TokenError`` subclasses.

    ``now`` is Unix seconds; the token is valid while ``now < exp + leeway``. When
    ``issuer`` or ``audience`` is given, the token's ``iss`` must equal it and its ``aud``
    must contain it.
    """
    if not isinstance(token, str) or len(token) > MAX_JWT_LENGTH or not token.isascii():
        raise TokenInvalid("malformed access token")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise TokenInvalid("malformed access token")
    header_b64, payload_b64, signature_b64 = parts
    header = _json_object(_b64url_decode(header_b64))
    if header.get("alg") != ALG:
        raise TokenInvalid("unsupported token algorithm")
    if header.get("typ") != TYP:
        raise TokenInvalid("unsupported token type")
    if not header.keys() <= _HEADER_PARAMS:
        raise TokenInvalid("unsupported token header parameter")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise TokenInvalid("token key id missing")
    key = public_keys.get(kid)
    if key is None:
        raise UnknownKey("unknown token key id")
    signature = _b64url_decode(signature_b64)
    if len(signature) != _SIGNATURE_BYTES:
        raise TokenInvalid("malformed token signature")
    try:
        key.verify(signature, f"{header_b64}.{payload_b64}".encode("ascii"))
    except InvalidSignature as err:
        raise TokenInvalid("bad token signature") from err
    payload = _json_object(_b64url_decode(payload_b64))
    return _access_claims(payload, now=now, leeway=leeway, issuer=issuer, audience=audience)


def jwks(public_keys: Mapping[str, Ed25519PublicKey]) -> Jwks:
    """Return the JWK Set for the given verification keys (RFC 8037 §2, OKP/Ed25519)."""
    return {
        "keys": [
            {
                "kty": "OKP",
                "crv": "Ed25519",
                "x": _b64url(key.public_bytes_raw()),
                "kid": kid,
                "alg": ALG,
                "use": "sig",
            }
            for kid, key in public_keys.items()
        ]
    }
