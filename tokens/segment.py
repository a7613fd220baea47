"""Per-segment tokens: one URL path, one playback session, one expiry, no database.

(Version 1 is described first; playlists hand out version 2, below, which keeps the
layout and changes how the tag is computed.)

Every URI in a media playlist (segments, ``EXT-X-MAP`` init segments, ``EXT-X-KEY``
keys, variant and I-frame playlists) carries its own token. The proxy verifies it with
one MAC and a constant-time comparison, so a token for ``.../seg_00042.ts`` cannot be
replayed on ``.../seg_00043.ts``, on another film or after the session expires.

Token layout (version 1)
------------------------

33 bytes, encoded as 44 characters of URL-safe base64 without padding (RFC 4648 §5)::

    offset  size  field
    0       1     version (high nibble, = 1) | flags (low nibble; bit 0 = IP-bound,
                  bits 1-3 reserved and must be 0)
    1       1     kid: which master secret of the key ring (0..255)
    2       4     expires_at: Unix seconds, unsigned big-endian (valid until 2106)
    6       12    session id (random but for its first 18 bits, the user's Redis shard)
    18      15    tag = BLAKE2s(key=K_s, digest_size=15, data=UTF-8 path)   (120 bits)

    K_s = HMAC-SHA256(master[kid],
                      "kush-films/segment-token/v1" 0x00 || bytes 0..17 || ip_prefix)

In characters: 0-7 version, flags, kid and expiry; 8-23 the session id exactly as its
16-character external form (it starts on a 3-byte boundary); 24-43 the tag.

``ip_prefix`` is present only when the IP-bound flag is set: the ASCII text of the
client's /24 (IPv4) or /48 (IPv6) network as :func:`ip_prefix_of` prints it, e.g.
``203.0.113.0/24``. It sits last and every other field has a fixed size, so the
derivation input is unambiguous. The signed path is the URL path only (the query string,
where the token itself travels, is not signed), encoded as UTF-8 with lone surrogates
passed through so that any ``str`` maps to distinct bytes. Signer and verifier must use the
same form of the path (aiohttp's decoded ``request.path`` on both sides).

The header (bytes 0..17, 18 = a multiple of 3) is the same for every URI of a session and
encodes to exactly 24 characters, so a signer encodes it once; the 15-byte tags encode to
20 characters each, so :meth:`SessionSigner.sign_many` joins all tags, makes one base64
call and slices. Tokens of a session therefore share their first 24 characters.

Why BLAKE2s for the per-path MAC
--------------------------------

The budget is "well under 1 ms" of CPU to tokenize the 1 200 URIs of a two-hour film.
Medians measured on this machine (CPython 3.11.7, one pinned core, a loaded 2-vCPU Xeon;
``python -m loadtest.bench_tokens`` prints current figures), 1 200 paths of ~60 bytes, MACs plus
the base64 assembly:

* ``hmac.digest(K_s, path, "sha256")`` per path: 2.4 ms;
* HMAC-SHA256 with precomputed inner/outer SHA-256 states copied per path: 1.1 ms;
* keyed BLAKE2b, keyed state precomputed and copied per path: 0.67 ms;
* keyed BLAKE2s, the same (this module's ``sign_many``): 0.58-0.60 ms.

HMAC-SHA256 cannot meet the budget even with precomputed states (two hash objects to copy
and two finalisations per path), so the per-path MAC is keyed BLAKE2s (RFC 7693): a
standard PRF whose keyed mode is designed to be used directly as a MAC (no length
extension, so no HMAC wrapping is needed), one compression per path of up to 64 bytes,
slightly ahead of BLAKE2b on such short inputs. The per-session key is derived with
HMAC-SHA256 once per session, which keeps the master secret behind the HMAC-SHA256
family the design calls for and gives every session (and IP binding) its own key.
Verifying costs about 2.3 us with a warm session-key cache and 5.2 us cold.

Token layout (version 2): what playlists hand out
-------------------------------------------------

The same 33 bytes and 44 characters, with version nibble 2 and another tag::

    D   = BLAKE2s(key=K_p, digest_size=16, data=UTF-8 path)           (the path digest)
    tag = first 15 bytes of AES-256_{K_s2}(D)                          (one block)

    K_p  = HMAC-SHA256(master[kid], "kush-films/segment-token/v2/path-key")
    K_s2 = HMAC-SHA256(master[kid],
                       "kush-films/segment-token/v2" 0x00 || bytes 0..17 || ip_prefix)

Why: version 1 costs one keyed MAC per URI per request (0.6-1.2 ms for the 1 200 URIs
of a two-hour film), and a film's paths never change. In version 2 the per-path work
moves to compile time: ``D`` depends only on the kid and the path, so a playlist
template computes its digests once (:meth:`PathHasher.digest_many`) and every session
reuses them; per session, one AES-ECB call under ``K_s2`` over all the digests gives all
the tags at once (:meth:`SessionSealer.seal`: AES-NI, one deletion of every 16th byte,
one base64 call, no per-URI Python code). ECB is used here as what it is, the block
cipher applied to independent blocks; each block is a distinct keyed digest, so nothing
is encrypted whose patterns could leak.

Properties kept: a tag binds exactly one path (``D`` is a PRF of the path under a secret
key, so two paths collide with probability 2^-128, and nobody without ``K_p`` can search
for collisions), one session, expiry, kid and IP prefix (all in ``K_s2``'s derivation, as
in version 1), and the version itself (the version byte is in the derived header, so a
tag cannot move between versions); 120-bit tags; constant-time comparison; rotation by
kid (each kid has its own ``K_p`` and ``K_s2``). Verification is one keyed digest and one
AES block.

Medians measured on this machine (CPython 3.11.7, 2-vCPU EPYC shared with other jobs;
1 200 paths of ~60 bytes): version 1 ``sign_many`` 0.86 ms; version 2 digests 0.70 ms
once per template, then ``seal`` 0.038 ms per session (22x less); verify with a warm
session-key cache 3.5 us (version 1: 2.9 us), cold 15.6 us (9.9 us: building an AES
context costs more than a BLAKE2s state).

Version 1 tokens (``SessionSigner``) still verify: URLs handed out before an upgrade
keep playing until they expire.

Verification order: shape, version and flags, kid, MAC (constant time), then expiry. The
tag is checked before the expiry so that a token which fails is reported as
:class:`~tokens.errors.TokenInvalid` unless it is genuine. Derived session keys are kept
in a small FIFO cache per key ring, filled only by signers and by successful
verifications (forged tokens cannot evict real sessions), so repeated verifies for one
session cost one MAC.

Key rotation: a :class:`SegmentKeyring` holds several kids at once; new tokens use
``current_kid``, tokens of any kid still in the ring verify. Rings are immutable: build a
new one (:meth:`SegmentKeyring.with_key`, :meth:`SegmentKeyring.without_key`) and swap it
in; the new ring starts with an empty cache, so a removed kid stops verifying at once.

IP binding is optional and off by default: phones on mobile networks change address (and
/24) as they move between cells and carrier NATs, which would cut playback mid-film.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import ipaddress
import math
import re
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Final, NamedTuple

import pybase64
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tokens.errors import TokenExpired, TokenInvalid, UnknownKey

__all__ = [
    "DIGEST_BYTES",
    "FLAG_IP_BOUND",
    "SEGMENT_TOKEN_LENGTH",
    "TAG_CHARS",
    "PathHasher",
    "SegmentClaims",
    "SegmentKeyring",
    "SessionSealer",
    "SessionSigner",
    "ip_prefix_of",
    "is_session_id",
    "new_session_id",
    "segment_token_ttl",
    "verify_segment_token",
]

VERSION: Final = 1
VERSION_2: Final = 2
FLAG_IP_BOUND: Final = 0x01
_KNOWN_FLAGS: Final = FLAG_IP_BOUND

SECRET_BYTES: Final = 32
SESSION_ID_BYTES: Final = 12
SESSION_ID_LENGTH: Final = 16  # characters of base64url
TAG_BYTES: Final = 15  # 120 bits; a multiple of 3 so each tag is 20 base64 characters
_HEADER: Final = struct.Struct(">BBI12s")
HEADER_BYTES: Final = _HEADER.size  # 18
_HEADER_CHARS: Final = HEADER_BYTES * 4 // 3  # 24
_SESSION_ID_CHARS: Final = slice(8, 24)  # bytes 6..17, aligned on a base64 quantum
_TAG_CHARS: Final = TAG_BYTES * 4 // 3  # 20
TAG_CHARS: Final = _TAG_CHARS
DIGEST_BYTES: Final = 16  # one AES block per path (version 2)
SEGMENT_TOKEN_LENGTH: Final = _HEADER_CHARS + _TAG_CHARS  # 44 characters
MAX_EXPIRES_AT: Final = 2**32 - 1

_FROM_URLSAFE: Final = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")
_DERIVATION_LABEL: Final = b"kush-films/segment-token/v1\x00"
_DERIVATION_LABEL_V2: Final = b"kush-films/segment-token/v2\x00"
_PATH_KEY_LABEL_V2: Final = b"kush-films/segment-token/v2/path-key"
_TOKEN_RE: Final = re.compile(rf"[A-Za-z0-9_-]{{{SEGMENT_TOKEN_LENGTH}}}")
_SESSION_ID_RE: Final = re.compile(rf"[A-Za-z0-9_-]{{{SESSION_ID_LENGTH}}}")
_IPV4_MASK: Final = (2**32 - 1) ^ (2**8 - 1)  # /24
_IPV6_SHIFT: Final = 128 - 48  # /48

DEFAULT_CACHE_SIZE: Final = 4096


class SegmentClaims(NamedTuple):
    """What a verified segment token proves."""

    session_id: str
    expires_at: int
    kid: int


_LEAD_RE: Final = re.compile(r"[A-Za-z0-9_-]{0,4}")


def new_session_id(lead: str = "") -> str:
    """Return a fresh playback session id: 12 random bytes as 16 base64url characters,
    the first of them ``lead`` (at most 4 base64url characters) when given.

    The gateway leads with the user's Redis shard (``runtime.redis.user_shard``), so a
    session's keys share a Redis Cluster slot with its user's stream set; the other 13
    characters (78 bits) stay random."""
    if _LEAD_RE.fullmatch(lead) is None:
        raise ValueError("lead must be at most 4 base64url characters")
    random = base64.urlsafe_b64encode(secrets.token_bytes(SESSION_ID_BYTES)).decode("ascii")
    return lead + random[len(lead) :]


def is_session_id(text: str) -> bool:
    """Whether ``text`` has the form of a playback session id (16 base64url characters)."""
    return isinstance(text, str) and _SESSION_ID_RE.fullmatch(text) is not None


def _session_id_bytes(session_id: str) -> bytes:
    """Decode an external session id, refusing anything but 16 base64url characters."""
    if not isinstance(session_id, str) or _SESSION_ID_RE.fullmatch(session_id) is None:
        raise ValueError("session_id must be 16 base64url characters (see new_session_id())")
    return base64.urlsafe_b64decode(session_id)


#: addresses and prefixes whose parse is remembered (``ipaddress`` costs ~2 us a call, and
#: every playlist and segment request verifies an IP-bound token)
_IP_MEMO = 4096


@functools.lru_cache(maxsize=_IP_MEMO)
def ip_prefix_of(ip: str) -> str:
    """Return the client network a token may be bound to: the /24 (IPv4) or /48 (IPv6).

    IPv4-mapped IPv6 addresses (``::ffff:203.0.113.7``) count as IPv4, so a dual-stack
    socket and a plain IPv4 one give the same prefix. Raises ``ValueError`` on anything
    that is not an IP address.
    """
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if isinstance(addr, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Network((int(addr) & _IPV4_MASK, 24)))
    return str(ipaddress.IPv6Network(((int(addr) >> _IPV6_SHIFT) << _IPV6_SHIFT, 48)))


@functools.lru_cache(maxsize=_IP_MEMO)
def _canonical_ip_prefix(ip_prefix: str) -> str:
    """Check that ``ip_prefix`` is exactly what :func:`ip_prefix_of` would produce."""
    try:
        network = ipaddress.ip_network(ip_prefix, strict=True)
        canonical = ip_prefix_of(str(network.network_address))
    except (TypeError, ValueError) as err:
        raise ValueError("ip_prefix must come from ip_prefix_of(client_ip)") from err
    if canonical != ip_prefix:
        raise ValueError("ip_prefix must come from ip_prefix_of(client_ip)")
    return canonical


def segment_token_ttl(
    duration_s: float, *, pace_factor: float = 2.0, margin_s: int = 4 * 3600
) -> int:
    """Return a token lifetime in seconds that covers watching the whole film.

    ``duration_s * pace_factor`` leaves room for pauses and rebuffering at normal pace;
    ``margin_s`` covers a long pause (a power cut, a phone call) on top.
    """
    if not math.isfinite(duration_s) or duration_s < 0:
        raise ValueError("duration_s must be a finite number >= 0")
    if not math.isfinite(pace_factor) or pace_factor < 1:
        raise ValueError("pace_factor must be a finite number >= 1")
    if margin_s < 0:
        raise ValueError("margin_s must be >= 0")
    return math.ceil(duration_s * pace_factor) + margin_s


def _encode_path(path: str) -> bytes:
    """UTF-8, with lone surrogates passed through: total and injective over ``str``."""
    return path.encode("utf-8", "surrogatepass")


class SessionSigner:
    """Signs paths for one session; the header and the session key are computed once."""

    __slots__ = ("_mac", "_prefix", "expires_at", "kid", "session_id")

    def __init__(
        self, *, prefix: str, mac: hashlib.blake2s, session_id: str, expires_at: int, kid: int
    ) -> None:
        self._prefix = prefix
        self._mac = mac  # keyed template: only ever copied, never updated
        self.session_id = session_id
        self.expires_at = expires_at
        self.kid = kid

    def __repr__(self) -> str:
        return f"SessionSigner(session_id=<{len(self.session_id)} chars>, kid={self.kid})"

    def sign(self, path: str) -> str:
        """Return the token for one URL path (without the query string)."""
        h = self._mac.copy()
        h.update(_encode_path(path))
        return self._prefix + base64.urlsafe_b64encode(h.digest()).decode("ascii")

    def sign_many(self, paths: Sequence[str]) -> list[str]:
        """Return the tokens for many paths, in order: one MAC each, one base64 call."""
        copy = self._mac.copy
        tags: list[bytes] = []
        append = tags.append
        try:
            for path in paths:
                h = copy()
                h.update(path.encode())  # strict UTF-8 is 2x faster; same bytes when it works
                append(h.digest())
        except UnicodeEncodeError:  # a lone surrogate somewhere: take the total encoding
            return [self.sign(path) for path in paths]
        encoded = base64.urlsafe_b64encode(b"".join(tags)).decode("ascii")
        prefix = self._prefix
        return [prefix + encoded[i : i + _TAG_CHARS] for i in range(0, len(encoded), _TAG_CHARS)]


Encrypt = Callable[[bytes], bytes]
"""AES-256 in ECB mode under one session key: independent 16-byte blocks in, tags out."""


class PathHasher:
    """Version 2's per-path digest: keyed BLAKE2s-128 under one kid's path key.

    The same for every session of a kid, so a playlist template computes the digests of
    its paths once (:meth:`digest_many`) and every session reuses them. Digests never
    leave the process; only their encryption under a session key (the tag) does.
    """

    __slots__ = ("_mac", "kid")

    def __init__(self, kid: int, path_key: bytes) -> None:
        self.kid = kid
        self._mac = hashlib.blake2s(key=path_key, digest_size=DIGEST_BYTES)

    def __repr__(self) -> str:
        return f"PathHasher(kid={self.kid})"

    def digest(self, path: str) -> bytes:
        """The 16-byte digest of one URL path."""
        h = self._mac.copy()
        h.update(_encode_path(path))
        return h.digest()

    def digest_many(self, paths: Sequence[str]) -> bytes:
        """The digests of ``paths``, concatenated in order (16 bytes each)."""
        return b"".join([self.digest(path) for path in paths])


class SessionSealer:
    """Version 2 tokens for one session: one AES call turns many path digests into tags.

    ``prefix`` is the 24 ASCII characters every token of the session starts with (the
    encoded header); :meth:`seal` returns the 20-character tags of all given digests,
    concatenated, so a token is ``prefix + tags[20 * i : 20 * i + 20]``.
    """

    __slots__ = ("_encrypt", "expires_at", "hasher", "kid", "prefix", "session_id")

    def __init__(
        self,
        *,
        prefix: bytes,
        encrypt: Encrypt,
        hasher: PathHasher,
        session_id: str,
        expires_at: int,
    ) -> None:
        self.prefix = prefix
        self._encrypt = encrypt
        self.hasher = hasher
        self.kid = hasher.kid
        self.session_id = session_id
        self.expires_at = expires_at

    def __repr__(self) -> str:
        return f"SessionSealer(session_id=<{len(self.session_id)} chars>, kid={self.kid})"

    def seal(self, digests: bytes) -> bytes:
        """Tags for concatenated 16-byte digests (from ``hasher``), 20 characters each.

        One AES-ECB call over every block, one deletion of each block's 16th byte (tags
        are 120 bits), one base64 call: no per-path Python work.
        """
        if len(digests) % DIGEST_BYTES:
            raise ValueError("digests must be a whole number of 16-byte blocks")
        tags = bytearray(self._encrypt(digests))
        del tags[TAG_BYTES::DIGEST_BYTES]
        # pybase64's SIMD encoder writes the URL-safe alphabet directly: 3 us for the 18 KB
        # of a two-hour film's tags, against 30 us for binascii plus two replace() passes
        return pybase64.urlsafe_b64encode(tags)

    def sign(self, path: str) -> str:
        """The version 2 token for one URL path."""
        return (self.prefix + self.seal(self.hasher.digest(path))).decode("ascii")

    def sign_many(self, paths: Sequence[str]) -> list[str]:
        """Version 2 tokens for many paths, in order (digests computed here, not cached)."""
        tags = self.seal(self.hasher.digest_many(paths)).decode("ascii")
        prefix = self.prefix.decode("ascii")
        return [prefix + tags[i : i + _TAG_CHARS] for i in range(0, len(tags), _TAG_CHARS)]


def _aes_ecb(key: bytes) -> Encrypt:
    """AES-256 as a pseudorandom permutation on independent blocks (a MAC's last step,
    not encryption of data: every block is a distinct keyed digest, so ECB's pattern
    leak does not apply)."""
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor().update  # noqa: S305


class SegmentKeyring:
    """The master secrets for segment tokens, by kid, and the kid new tokens use.

    Immutable: rotation builds a new ring. Holds a bounded FIFO cache of derived session
    MAC states, keyed by the full derivation input (header and IP prefix).
    """

    __slots__ = ("_cache", "_cache_size", "_current_kid", "_hashers", "_keys", "_sealers")

    def __init__(
        self,
        keys: Mapping[int, bytes],
        current_kid: int,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        checked: dict[int, bytes] = {}
        for kid, secret in keys.items():
            if type(kid) is not int or not 0 <= kid <= 255:
                raise ValueError("segment key ids must be integers in 0..255")
            if not isinstance(secret, bytes) or len(secret) != SECRET_BYTES:
                raise ValueError(f"segment secret for kid {kid} must be {SECRET_BYTES} bytes")
            checked[kid] = secret
        if current_kid not in checked:
            raise ValueError(f"current kid {current_kid!r} is not in the key ring")
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        self._keys = checked
        self._current_kid = current_kid
        self._cache_size = cache_size
        self._cache: OrderedDict[bytes, hashlib.blake2s] = OrderedDict()
        self._sealers: OrderedDict[bytes, Encrypt] = OrderedDict()
        self._hashers: dict[int, PathHasher] = {}  # built on first use of each kid

    def __repr__(self) -> str:
        # Never the secrets: rings end up in logs and tracebacks.
        return f"SegmentKeyring(kids={sorted(self._keys)}, current_kid={self._current_kid})"

    @property
    def current_kid(self) -> int:
        """The kid that signs new tokens."""
        return self._current_kid

    @property
    def kids(self) -> frozenset[int]:
        """Every kid whose tokens still verify."""
        return frozenset(self._keys)

    def next_kid(self) -> int:
        """Return the first kid after the current one (mod 256) that is not in use."""
        for step in range(1, 257):
            kid = (self._current_kid + step) % 256
            if kid not in self._keys:
                return kid
        raise ValueError("all 256 segment key ids are in use")

    def with_key(self, kid: int, secret: bytes, *, make_current: bool = True) -> SegmentKeyring:
        """Return a new ring with ``kid`` added (and, by default, made current)."""
        if kid in self._keys:
            raise ValueError(f"kid {kid} is already in the key ring")
        keys = {**self._keys, kid: secret}
        current = kid if make_current else self._current_kid
        return SegmentKeyring(keys, current, cache_size=self._cache_size)

    def without_key(self, kid: int) -> SegmentKeyring:
        """Return a new ring without ``kid``; its tokens stop verifying. Not the current kid."""
        if kid == self._current_kid:
            raise ValueError("cannot remove the current kid; rotate first")
        keys = {k: v for k, v in self._keys.items() if k != kid}
        return SegmentKeyring(keys, self._current_kid, cache_size=self._cache_size)

    def _derive(self, secret: bytes, header: bytes, ip_prefix: bytes) -> hashlib.blake2s:
        """Derive the session key (HMAC-SHA256) and return the keyed BLAKE2s template."""
        session_key = hmac.digest(secret, _DERIVATION_LABEL + header + ip_prefix, "sha256")
        return hashlib.blake2s(key=session_key, digest_size=TAG_BYTES)

    def _remember(self, cache_key: bytes, mac: hashlib.blake2s) -> None:
        """Insert into the bounded FIFO cache, evicting the oldest entry when full.

        FIFO rather than LRU keeps a cache hit free of bookkeeping; a long session that
        falls out simply pays one derivation again.
        """
        if self._cache_size == 0:
            return
        cache = self._cache
        cache[cache_key] = mac
        if len(cache) > self._cache_size:
            cache.popitem(last=False)

    def _derive_v2(self, secret: bytes, header: bytes, ip_prefix: bytes) -> Encrypt:
        """Derive the version 2 session key (HMAC-SHA256) and return its AES-256."""
        return _aes_ecb(hmac.digest(secret, _DERIVATION_LABEL_V2 + header + ip_prefix, "sha256"))

    def _remember_v2(self, cache_key: bytes, encrypt: Encrypt) -> None:
        """The same bounded FIFO as :meth:`_remember`, for version 2 session keys."""
        if self._cache_size == 0:
            return
        cache = self._sealers
        cache[cache_key] = encrypt
        if len(cache) > self._cache_size:
            cache.popitem(last=False)

    def path_hasher(self, kid: int | None = None) -> PathHasher:
        """The path digests of ``kid`` (default: the current kid) for version 2 tokens.

        One object per kid per ring: callers may key caches of digests on it (a new ring
        after a rotation gives new objects, so stale digests are never reused)."""
        kid = self._current_kid if kid is None else kid
        hasher = self._hashers.get(kid)
        if hasher is None:
            path_key = hmac.digest(self._keys[kid], _PATH_KEY_LABEL_V2, "sha256")
            hasher = self._hashers[kid] = PathHasher(kid, path_key)
        return hasher

    def _session_header(
        self, version: int, session_id: str, expires_at: int, ip_prefix: str | None
    ) -> tuple[int, bytes, bytes]:
        """(kid, token header, canonical IP prefix bytes) of one session's tokens under
        the current kid: what version 1 signers and version 2 sealers share."""
        sid = _session_id_bytes(session_id)
        if type(expires_at) is not int or not 0 <= expires_at <= MAX_EXPIRES_AT:
            raise ValueError("expires_at must be an integer Unix time in 0..2**32-1")
        flags = 0
        prefix_bytes = b""
        if ip_prefix is not None:
            prefix_bytes = _canonical_ip_prefix(ip_prefix).encode("ascii")
            flags |= FLAG_IP_BOUND
        kid = self._current_kid
        return kid, _HEADER.pack((version << 4) | flags, kid, expires_at, sid), prefix_bytes

    def session_sealer(
        self, session_id: str, expires_at: int, *, ip_prefix: str | None = None
    ) -> SessionSealer:
        """Return a version 2 sealer for one session's URIs, under the current kid.

        Arguments as :meth:`session_signer`; playlists use this one (see the module
        docstring, "Version 2")."""
        kid, header, prefix_bytes = self._session_header(
            VERSION_2, session_id, expires_at, ip_prefix
        )
        cache_key = header + prefix_bytes
        encrypt = self._sealers.get(cache_key)
        if encrypt is None:
            encrypt = self._derive_v2(self._keys[kid], header, prefix_bytes)
            self._remember_v2(cache_key, encrypt)
        return SessionSealer(
            prefix=binascii.b2a_base64(header, newline=False).translate(_TO_URLSAFE),
            encrypt=encrypt,
            hasher=self.path_hasher(kid),
            session_id=session_id,
            expires_at=expires_at,
        )

    def session_signer(
        self, session_id: str, expires_at: int, *, ip_prefix: str | None = None
    ) -> SessionSigner:
        """Return a signer for one session's URIs, under the current kid.

        ``expires_at`` is Unix seconds (see :func:`segment_token_ttl`); ``ip_prefix``,
        from :func:`ip_prefix_of`, binds every token to the client's network.
        """
        kid, header, prefix_bytes = self._session_header(VERSION, session_id, expires_at, ip_prefix)
        cache_key = header + prefix_bytes
        mac = self._cache.get(cache_key)
        if mac is None:
            mac = self._derive(self._keys[kid], header, prefix_bytes)
            self._remember(cache_key, mac)
        return SessionSigner(
            prefix=base64.urlsafe_b64encode(header).decode("ascii"),
            mac=mac,
            session_id=session_id,
            expires_at=expires_at,
            kid=kid,
        )

    def verify(
        self,
        token: str,
        path: str,
        *,
        now: int,
        client_ip: str | None = None,
        leeway: int = 30,
    ) -> SegmentClaims:
        """Verify ``token`` for ``path``; see :func:`verify_segment_token`."""
        if (
            not isinstance(token, str)
            or len(token) != SEGMENT_TOKEN_LENGTH
            or _TOKEN_RE.fullmatch(token) is None
        ):
            raise TokenInvalid("malformed segment token")
        if not isinstance(path, str):
            raise TokenInvalid("malformed path")
        # 44 characters of the alphabet always decode to exactly 33 bytes, one-to-one.
        raw = binascii.a2b_base64(token.encode("ascii").translate(_FROM_URLSAFE))
        version_flags, kid, expires_at, _ = _HEADER.unpack_from(raw)
        version = version_flags >> 4
        if version != VERSION and version != VERSION_2:
            raise TokenInvalid("unsupported segment token version")
        flags = version_flags & 0x0F
        if flags & ~_KNOWN_FLAGS:
            raise TokenInvalid("unsupported segment token flags")
        secret = self._keys.get(kid)
        if secret is None:
            raise UnknownKey("unknown segment key id")
        prefix_bytes = b""
        if flags & FLAG_IP_BOUND:
            if client_ip is None:
                raise TokenInvalid("segment token is bound to a client network")
            try:
                prefix_bytes = ip_prefix_of(client_ip).encode("ascii")
            except (TypeError, ValueError) as err:
                raise TokenInvalid("segment token is bound to a client network") from err
        header = raw[:HEADER_BYTES]
        cache_key = header + prefix_bytes
        if version == VERSION_2:
            self._check_v2(secret, kid, header, prefix_bytes, cache_key, path, raw)
        else:
            mac = self._cache.get(cache_key)
            cached = mac is not None
            if mac is None:
                mac = self._derive(secret, header, prefix_bytes)
            h = mac.copy()
            h.update(_encode_path(path))
            if not hmac.compare_digest(h.digest(), raw[HEADER_BYTES:]):
                raise TokenInvalid("segment token does not match this path")
            if not cached:
                self._remember(cache_key, mac)
        if now >= expires_at + leeway:
            raise TokenExpired("segment token expired")
        return SegmentClaims(token[_SESSION_ID_CHARS], expires_at, kid)

    def _check_v2(
        self,
        secret: bytes,
        kid: int,
        header: bytes,
        prefix_bytes: bytes,
        cache_key: bytes,
        path: str,
        raw: bytes,
    ) -> None:
        """One keyed digest, one AES block, a constant-time comparison."""
        encrypt = self._sealers.get(cache_key)
        cached = encrypt is not None
        if encrypt is None:
            encrypt = self._derive_v2(secret, header, prefix_bytes)
        tag = encrypt(self.path_hasher(kid).digest(path))[:TAG_BYTES]
        if not hmac.compare_digest(tag, raw[HEADER_BYTES:]):
            raise TokenInvalid("segment token does not match this path")
        if not cached:
            self._remember_v2(cache_key, encrypt)


def verify_segment_token(
    keyring: SegmentKeyring,
    token: str,
    path: str,
    *,
    now: int,
    client_ip: str | None = None,
    leeway: int = 30,
) -> SegmentClaims:
    """Verify a segment token for the request path; raise only ``TokenError`` subclasses.

    ``now`` is Unix seconds; the token stays valid while ``now < expires_at + leeway``.
    ``client_ip`` is needed only for IP-bound tokens: the client's /24 or /48 must be the
    prefix the token was issued for.
    """
    return keyring.verify(token, path, now=now, client_ip=client_ip, leeway=leeway)
