"""Key material: sealing at rest, key encodings, kids, master keys, refresh tokens."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from tokens import (
    KeyUnsealError,
    SegmentKeyring,
    generate_ed25519,
    generate_segment_secret,
    hash_refresh_token,
    load_private_key,
    load_public_key,
    new_kid,
    new_refresh_token,
    parse_master_key,
    private_key_bytes,
    public_key_bytes,
    seal,
    unseal,
)

MASTER = bytes(range(32))
OTHER_MASTER = bytes(range(1, 33))
URLSAFE = re.compile(r"[A-Za-z0-9_-]+")


def test_seal_round_trip() -> None:
    secret = generate_segment_secret()
    blob = seal(MASTER, "k1", secret)
    assert len(blob) == 12 + len(secret) + 16
    assert secret not in blob
    assert unseal(MASTER, "k1", blob) == secret
    assert seal(MASTER, "k1", secret) != blob  # fresh nonce each time
    assert unseal(MASTER, "k1", seal(MASTER, "k1", b"")) == b""


def test_unseal_with_wrong_kid_or_master_fails() -> None:
    blob = seal(MASTER, "k1", b"signing key material")
    with pytest.raises(KeyUnsealError):
        unseal(MASTER, "k2", blob)
    with pytest.raises(KeyUnsealError):
        unseal(MASTER, "", blob)
    with pytest.raises(KeyUnsealError):
        unseal(OTHER_MASTER, "k1", blob)


def test_every_tampered_byte_fails() -> None:
    blob = seal(MASTER, "k1", b"signing key material")
    for index in range(len(blob)):
        tampered = bytearray(blob)
        tampered[index] ^= 0x01
        with pytest.raises(KeyUnsealError):
            unseal(MASTER, "k1", bytes(tampered))


@pytest.mark.parametrize("blob", [b"", b"x" * 27, b"x" * 28, b"x" * 100])
def test_truncated_or_garbage_blob_fails(blob: bytes) -> None:
    with pytest.raises(KeyUnsealError):
        unseal(MASTER, "k1", blob)


def test_bad_master_key_length() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        seal(MASTER[:16], "k1", b"x")
    with pytest.raises(KeyUnsealError, match="32 bytes"):
        unseal(MASTER[:16], "k1", seal(MASTER, "k1", b"x"))


def test_ed25519_private_key_round_trip_through_a_sealed_blob() -> None:
    key = generate_ed25519()
    raw = private_key_bytes(key)
    assert len(raw) == 32
    restored = load_private_key(unseal(MASTER, "jwt-1", seal(MASTER, "jwt-1", raw)))
    public = public_key_bytes(key.public_key())
    assert public_key_bytes(restored.public_key()) == public
    load_public_key(public).verify(restored.sign(b"message"), b"message")


def test_raw_key_lengths_checked() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        load_private_key(b"x" * 31)
    with pytest.raises(ValueError, match="32 bytes"):
        load_public_key(b"x" * 33)


def test_segment_secret_fits_a_keyring() -> None:
    secret = generate_segment_secret()
    assert len(secret) == 32
    assert secret != generate_segment_secret()
    SegmentKeyring({0: secret}, 0)


def test_new_kid() -> None:
    kids = {new_kid() for _ in range(100)}
    assert len(kids) == 100
    assert all(len(kid) == 8 and URLSAFE.fullmatch(kid) for kid in kids)


@pytest.mark.parametrize(
    "text",
    [
        MASTER.hex(),
        MASTER.hex().upper(),
        base64.urlsafe_b64encode(MASTER).decode().rstrip("="),
        base64.urlsafe_b64encode(MASTER).decode(),
        "  " + MASTER.hex() + "\n",
    ],
)
def test_parse_master_key(text: str) -> None:
    assert parse_master_key(text) == MASTER


def test_parse_master_key_accepts_the_generated_demo_form() -> None:
    # runtime.settings generates secrets.token_urlsafe(32); tests/conftest.py uses this one.
    assert parse_master_key("dGVzdC1tYXN0ZXIta2V5LXRlc3QtbWFzdGVyLWtleSE") == (
        b"test-master-key-test-master-key!"
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "secret-master-key",
        MASTER.hex()[:-2],
        MASTER.hex() + "00",
        base64.b64encode(bytes([0xFB] * 32)).decode(),  # standard alphabet: '+' and '/'
        base64.urlsafe_b64encode(MASTER[:31]).decode(),
        base64.urlsafe_b64encode(MASTER + b"x").decode(),
        "g" * 64,
    ],
)
def test_parse_master_key_rejects_without_echoing(text: str) -> None:
    with pytest.raises(ValueError, match="64 hex digits or 43 base64url") as info:
        parse_master_key(text)
    if text:
        assert text not in str(info.value)


def test_refresh_tokens() -> None:
    tokens = {new_refresh_token() for _ in range(100)}
    assert len(tokens) == 100
    for token in tokens:
        assert len(token) == 43
        assert URLSAFE.fullmatch(token)
        assert len(base64.urlsafe_b64decode(token + "=")) == 32
    token = next(iter(tokens))
    digest = hash_refresh_token(token)
    assert digest == hashlib.sha256(token.encode()).digest()
    assert len(digest) == 32
    assert hash_refresh_token(token + "x") != digest
    assert len(hash_refresh_token("garbage \udcff")) == 32
