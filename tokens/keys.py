"""Key material: generation, sealing at rest, encodings, and refresh tokens.

Signing keys (Ed25519 for JWTs, 32-byte secrets for segment tokens) are stored sealed
with AES-256-GCM under a master key that comes from the environment, never from the
database. A sealed blob is::

    nonce (12 random bytes) || ciphertext || GCM tag (16 bytes)

with ``"kush-films/sealed-key/v1:" || kid`` as associated data, so a blob only opens under
the kid it was sealed for: an attacker who can write the key table cannot swap a retired
or weaker key in under the current kid. Random 96-bit nonces are safe here because a
master key seals a handful of keys, far from the ~2^32 messages where collisions matter
(NIST SP 800-38D §8.3).

Refresh tokens are 32 random bytes; only their SHA-256 is stored. With 256 bits of
entropy no dictionary applies, so a fast hash is right (a slow KDF would only slow down
every refresh).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tokens.errors import KeyUnsealError

__all__ = [
    "MASTER_KEY_BYTES",
    "generate_ed25519",
    "generate_segment_secret",
    "hash_refresh_token",
    "load_private_key",
    "load_public_key",
    "new_kid",
    "new_refresh_token",
    "parse_master_key",
    "private_key_bytes",
    "public_key_bytes",
    "seal",
    "unseal",
]

MASTER_KEY_BYTES: Final = 32
SEGMENT_SECRET_BYTES: Final = 32
REFRESH_TOKEN_BYTES: Final = 32
_NONCE_BYTES: Final = 12
_TAG_BYTES: Final = 16
_AAD_LABEL: Final = b"kush-films/sealed-key/v1:"
_HEX_RE: Final = re.compile(r"[0-9a-fA-F]{64}")
_B64URL_RE: Final = re.compile(r"[A-Za-z0-9_-]{43}=?")
_MASTER_KEY_HELP: Final = (
    "master key must be 32 bytes written as 64 hex digits or 43 base64url characters"
)


def generate_ed25519() -> Ed25519PrivateKey:
    """Return a new Ed25519 signing key for access tokens."""
    return Ed25519PrivateKey.generate()


def generate_segment_secret() -> bytes:
    """Return a new 32-byte master secret for segment tokens."""
    return secrets.token_bytes(SEGMENT_SECRET_BYTES)


def new_kid() -> str:
    """Return a short random key id (8 base64url characters, 48 bits)."""
    return secrets.token_urlsafe(6)


def _aad(kid: str) -> bytes:
    return _AAD_LABEL + kid.encode("utf-8")


def seal(master_key: bytes, kid: str, plaintext: bytes) -> bytes:
    """Encrypt key material for storage, bound to ``kid`` (AES-256-GCM, random nonce)."""
    if len(master_key) != MASTER_KEY_BYTES:
        raise ValueError(f"master key must be {MASTER_KEY_BYTES} bytes")
    nonce = secrets.token_bytes(_NONCE_BYTES)
    return nonce + AESGCM(master_key).encrypt(nonce, plaintext, _aad(kid))


def unseal(master_key: bytes, kid: str, blob: bytes) -> bytes:
    """Decrypt a blob made by :func:`seal` for the same ``kid``; else ``KeyUnsealError``."""
    if not isinstance(master_key, bytes) or len(master_key) != MASTER_KEY_BYTES:
        raise KeyUnsealError(f"master key must be {MASTER_KEY_BYTES} bytes")
    if not isinstance(blob, bytes) or len(blob) < _NONCE_BYTES + _TAG_BYTES:
        raise KeyUnsealError("sealed key is truncated")
    try:
        return AESGCM(master_key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _aad(kid))
    except InvalidTag as err:
        raise KeyUnsealError(
            "sealed key does not open: wrong master key, wrong kid, or corrupted"
        ) from err


def private_key_bytes(key: Ed25519PrivateKey) -> bytes:
    """Return the raw 32-byte Ed25519 private key (RFC 8032 seed), e.g. to seal it."""
    return key.private_bytes_raw()


def load_private_key(raw: bytes) -> Ed25519PrivateKey:
    """Rebuild an Ed25519 private key from its raw 32 bytes."""
    if len(raw) != 32:
        raise ValueError("an Ed25519 private key is 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    """Return the raw 32-byte Ed25519 public key."""
    return key.public_bytes_raw()


def load_public_key(raw: bytes) -> Ed25519PublicKey:
    """Rebuild an Ed25519 public key from its raw 32 bytes."""
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def parse_master_key(text: str) -> bytes:
    """Parse a 32-byte master key given as hex or base64url (as in an environment variable).

    The error never echoes the input: it is a secret.
    """
    value = text.strip()
    if _HEX_RE.fullmatch(value):
        return bytes.fromhex(value)
    if _B64URL_RE.fullmatch(value):
        try:
            key = base64.urlsafe_b64decode(value.rstrip("=") + "=")
        except (binascii.Error, ValueError) as err:
            raise ValueError(_MASTER_KEY_HELP) from err
        if len(key) == MASTER_KEY_BYTES:
            return key
    raise ValueError(_MASTER_KEY_HELP)


def new_refresh_token() -> str:
    """Return a new refresh token: 32 random bytes as 43 base64url characters."""
    return secrets.token_urlsafe(REFRESH_TOKEN_BYTES)


def hash_refresh_token(token: str) -> bytes:
    """Return the SHA-256 of a refresh token, the only form that is stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
