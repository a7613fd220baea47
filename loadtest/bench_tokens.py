"""Micro-benchmark of the token library: ``python -m loadtest.bench_tokens``.

Runs on one core (pinned where the OS allows), times each operation over several repeats
with ``time.perf_counter`` and prints medians. Not a test: the figures depend on the
machine. The comparison rows show why segment tokens use a per-session key with a keyed
BLAKE2s tag per path rather than plain HMAC-SHA256 or a signature per path.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable, Sequence

from tokens.jwt import decode_jwt, encode_jwt, new_access_claims
from tokens.keys import generate_ed25519, generate_segment_secret, new_kid
from tokens.segment import SegmentKeyring, new_session_id, verify_segment_token

URIS_PER_FILM = 1200  # a two-hour film cut in six-second segments
NOW = 1_700_000_000


def _pin_to_one_core() -> str:
    """Pin this process to one CPU so the figures are per core."""
    if hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned (no sched_setaffinity)"


def _median_seconds(fn: Callable[[], object], *, repeats: int, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs, after a few warm-up runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _row(label: str, per_second: float, extra: str = "") -> None:
    print(f"  {label:<52} {per_second:>12,.0f} /s  {extra}")


def _paths(count: int) -> list[str]:
    movie = uuid.uuid4()
    return [f"/hls/{movie}/720p/seg_{i:05d}.ts" for i in range(count)]


def _bench_segment(paths: Sequence[str]) -> None:
    n = len(paths)
    secret = generate_segment_secret()
    keyring = SegmentKeyring({1: secret}, 1)
    signer = keyring.session_signer(new_session_id(), NOW + 6 * 3600)
    tokens = signer.sign_many(paths)
    pairs = list(zip(tokens, paths, strict=True))

    sign_s = _median_seconds(lambda: signer.sign_many(paths), repeats=200)
    print(f"segment tokens ({n} URIs, {len(tokens[0])} chars each)")
    _row("sign_many", n / sign_s, f"median {sign_s * 1e3:.3f} ms per {n} URIs")

    one_s = _median_seconds(lambda: [signer.sign(p) for p in paths], repeats=100)
    _row("sign (one call per URI)", n / one_s, f"median {one_s * 1e3:.3f} ms per {n} URIs")

    def verify_all(ring: SegmentKeyring) -> None:
        for token, path in pairs:
            verify_segment_token(ring, token, path, now=NOW)

    warm_s = _median_seconds(lambda: verify_all(keyring), repeats=50)
    _row("verify, warm session-key cache", n / warm_s, f"{warm_s / n * 1e6:.2f} us each")
    cold_ring = SegmentKeyring({1: secret}, 1, cache_size=0)
    cold_s = _median_seconds(lambda: verify_all(cold_ring), repeats=30)
    _row("verify, cold (derive session key)", n / cold_s, f"{cold_s / n * 1e6:.2f} us each")

    # version 2, what playlists hand out: digests once per template, one AES call per session
    hasher = keyring.path_hasher()
    sealer = keyring.session_sealer(new_session_id(), NOW + 6 * 3600)
    digests = hasher.digest_many(paths)
    print(f"segment tokens, version 2 ({n} URIs)")
    digest_s = _median_seconds(lambda: hasher.digest_many(paths), repeats=100)
    _row("path digests (once per template)", n / digest_s, f"{digest_s * 1e3:.3f} ms")
    seal_s = _median_seconds(lambda: sealer.seal(digests), repeats=500)
    _row("seal (per session and playlist)", n / seal_s, f"median {seal_s * 1e3:.3f} ms")
    pairs = [(sealer.sign(p), p) for p in paths]
    warm_s = _median_seconds(lambda: verify_all(keyring), repeats=50)
    _row("verify, warm session-key cache", n / warm_s, f"{warm_s / n * 1e6:.2f} us each")
    cold_s = _median_seconds(lambda: verify_all(cold_ring), repeats=30)
    _row("verify, cold (derive session key)", n / cold_s, f"{cold_s / n * 1e6:.2f} us each")


def _bench_alternatives(paths: Sequence[str]) -> None:
    n = len(paths)
    session_key = generate_segment_secret()
    prefix = "A" * 24
    encoded_paths = [p.encode() for p in paths]

    def assemble(tags: list[bytes]) -> list[str]:
        encoded = base64.urlsafe_b64encode(b"".join(tags)).decode("ascii")
        return [prefix + encoded[i : i + 20] for i in range(0, len(encoded), 20)]

    def hmac_per_path() -> list[str]:
        return assemble([hmac.digest(session_key, p.encode(), "sha256")[:15] for p in paths])

    padded = session_key.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

    def hmac_precomputed() -> list[str]:
        tags = []
        for p in paths:
            i = inner.copy()
            i.update(p.encode())
            o = outer.copy()
            o.update(i.digest())
            tags.append(o.digest()[:15])
        return assemble(tags)

    if hmac_per_path() != hmac_precomputed():
        raise RuntimeError("precomputed HMAC states disagree with hmac.digest")
    blake2b = hashlib.blake2b(key=session_key, digest_size=15)

    def blake2b_per_path() -> list[str]:
        tags = []
        for p in paths:
            h = blake2b.copy()
            h.update(p.encode())
            tags.append(h.digest())
        return assemble(tags)

    print(f"alternatives for the per-path MAC ({n} URIs, same token assembly)")
    for label, fn in (
        ("HMAC-SHA256 per path (hmac.digest)", hmac_per_path),
        ("HMAC-SHA256, precomputed inner/outer states", hmac_precomputed),
        ("keyed BLAKE2b, precomputed state", blake2b_per_path),
    ):
        seconds = _median_seconds(fn, repeats=100)
        _row(f"sign {label}", n / seconds, f"median {seconds * 1e3:.3f} ms per {n} URIs")

    tags = [hmac.digest(session_key, p, "sha256")[:15] for p in encoded_paths]

    def hmac_verify() -> None:
        for tag, p in zip(tags, encoded_paths, strict=True):
            hmac.compare_digest(hmac.digest(session_key, p, "sha256")[:15], tag)

    seconds = _median_seconds(hmac_verify, repeats=50)
    label = "verify HMAC-SHA256 per path (MAC and compare only)"
    _row(label, n / seconds, f"{seconds / n * 1e6:.2f} us each")

    private_key = generate_ed25519()
    public_key = private_key.public_key()
    few = encoded_paths[:200]
    signatures = [private_key.sign(p) for p in few]
    seconds = _median_seconds(lambda: [private_key.sign(p) for p in few], repeats=15)
    _row("sign Ed25519 per path", len(few) / seconds, f"{seconds / len(few) * 1e6:.1f} us each")

    def ed_verify() -> None:
        for sig, p in zip(signatures, few, strict=True):
            public_key.verify(sig, p)

    seconds = _median_seconds(ed_verify, repeats=15)
    _row("verify Ed25519 per path", len(few) / seconds, f"{seconds / len(few) * 1e6:.1f} us each")


def _bench_jwt() -> None:
    kid = new_kid()
    private_key = generate_ed25519()
    public_keys = {kid: private_key.public_key()}
    payload = new_access_claims(
        sub="8d1c0f5e-5b1e-4a8e-9d0b-3f1f0c9a2b7e",
        email="viewer@example.ug",
        role="user",
        plan="premium",
        now=NOW,
    ).to_payload()
    token = encode_jwt(payload, kid=kid, private_key=private_key)
    count = 500
    print(f"access tokens (JWT EdDSA/Ed25519, {len(token)} chars)")
    seconds = _median_seconds(
        lambda: [encode_jwt(payload, kid=kid, private_key=private_key) for _ in range(count)],
        repeats=15,
    )
    _row("encode_jwt", count / seconds, f"{seconds / count * 1e6:.1f} us each")
    seconds = _median_seconds(
        lambda: [decode_jwt(token, public_keys=public_keys, now=NOW) for _ in range(count)],
        repeats=15,
    )
    _row("decode_jwt (verify)", count / seconds, f"{seconds / count * 1e6:.1f} us each")


def main() -> None:
    """Run every benchmark and print the medians."""
    print(f"loadtest.bench_tokens: CPython {platform.python_version()}, {_pin_to_one_core()}")
    paths = _paths(URIS_PER_FILM)
    _bench_segment(paths)
    _bench_alternatives(paths)
    _bench_jwt()


if __name__ == "__main__":
    main()
