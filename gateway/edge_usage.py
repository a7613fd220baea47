"""The edge's segment bytes, received as nginx access-log lines over UDP (syslog).

For every segment it answers 200 or 206 (from its cache or not) the nginx edge writes one
line to ``syslog:server=<gateway host>:KUSH_EDGE_USAGE_PORT`` (``nginx/``, rendered by
``kush edge``)::

    <190>Nov 30 08:23:41 kush_usage: 206 1000 203.0.113.7 /hls/<film>/480p/seg_00001.ts?t=...

(status, ``$body_bytes_sent``, ``$remote_addr``, ``$request_uri``). Every gateway worker
binds that UDP port with ``SO_REUSEPORT``, so the kernel spreads the edge's datagrams over
them (per nginx worker socket). A line counts when it comes from a trusted peer
(``KUSH_TRUSTED_PROXIES`` or loopback), parses, and its token verifies for its path with a
live session (:func:`gateway.playback.authorize_uri`, no bookkeeping: ``/_edge/auth``
did that); its bytes go to the session's data usage as the edge's part.

Each worker reads its socket every ``POLL_S`` (all the datagrams waiting, then checks
them in a batch; less often while nothing comes, down to ``IDLE_POLL_S``): a wake-up of
the event loop per datagram would cost several times the line itself.

Nothing here can slow a viewer down: nginx never waits for UDP; a datagram the gateway
cannot take (socket buffer full, a worker restarting) is that one segment's count lost;
and each result (``counted``, ``refused``, ``malformed``, ``oversized``, ``untrusted``,
``dropped``) is counted in ``kush_edge_usage_lines_total``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from yarl import URL

from gateway.errors import GatewayError, PlaybackTokenRejected
from gateway.playback import Playback, authorize_uri, meter
from runtime.net import Network, parse_networks
from tokens import SegmentKeyring
from tokens.service.sessions import SessionRefused

log = logging.getLogger(__name__)

#: the syslog tag nginx puts on the usage lines (``tag=`` of its ``access_log``)
USAGE_TAG = "kush_usage"
#: the nginx ``log_format`` of a usage line (the message after the syslog header)
USAGE_LOG_FORMAT = "$status $body_bytes_sent $remote_addr $request_uri"
#: a datagram longer than this is not a usage line (a segment URI with its token is
#: about 200 bytes; nginx's own syslog limit is 2 KiB)
MAX_DATAGRAM = 2048
#: lines received and not yet checked, per process; beyond it they are dropped
QUEUE_MAX = 10_000
#: lines checked at once (a session not in this process's cache costs a Redis read)
CHECKERS = 8
#: how often a worker reads its socket: every datagram it holds at once, not one wake-up
#: per datagram (a wake-up costs far more than a line); the kernel keeps what arrives
#: meanwhile (``SO_RCVBUF``, up to ``net.core.rmem_max``)
POLL_S = 0.02
#: an idle socket is read less and less often, down to this (a burst after a quiet spell
#: waits at most this long in the kernel's buffer)
IDLE_POLL_S = 0.2
#: datagrams read per turn at most, before the lines are checked and the loop runs others
READ_BUDGET = 2000
#: at shutdown, how long the lines already received may take to be checked
DRAIN_S = 1.0
LOOPBACK = ("127.0.0.0/8", "::1/128")

_SEGMENT_FILE = r"/hls/[\x21-\x7e]{1,1900}"
_LINE = re.compile(
    rb"<\d{1,3}>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d (?:[\x21-\x7e]{1,255} )?"
    + USAGE_TAG.encode()
    + rb": (200|206) (\d{1,15}) ([0-9A-Fa-f:.]{2,45}) ("
    + _SEGMENT_FILE.encode()
    + rb")\n?"
)
_AD_FILE = re.compile(r"^/hls/ads/(?P<ad_id>[^/]+)/(?P<rendition>[^/]+)/(?P<name>[^/]+)$")
_FILM_FILE = re.compile(r"^/hls/(?P<movie_id>[^/]+)/(?P<rendition>[^/]+)/(?P<name>[^/]+)$")


@dataclass(frozen=True, slots=True)
class UsageLine:
    """One segment the edge sent: its URI (with the token), body bytes and client."""

    status: int
    nbytes: int
    client_ip: str
    uri: str


def parse_line(data: bytes) -> UsageLine | None:
    """A usage datagram as nginx sends it, or None when it is anything else (too long,
    another tag or format, not a segment URI, no bytes)."""
    if len(data) > MAX_DATAGRAM:
        return None
    match = _LINE.fullmatch(data)
    if match is None:
        return None
    status, nbytes, client, uri = match.groups()
    try:
        ipaddress.ip_address(client.decode())
    except ValueError:
        return None
    return UsageLine(int(status), int(nbytes), client.decode(), uri.decode())


def segment_uri(original: str) -> tuple[URL, re.Match[str] | None, re.Match[str] | None]:
    """A segment URI the edge passed: (URL, ad file match, film file match); anything
    else (a playlist, an absolute URL, another path) raises ``PlaybackTokenRejected``."""
    try:
        url = URL(original)
    except ValueError:
        raise PlaybackTokenRejected("Not a segment address") from None
    if url.is_absolute() or not url.raw_path.startswith("/hls/"):
        raise PlaybackTokenRejected("Not a segment address")
    path = url.path
    if path.endswith(".m3u8"):
        # playlists are answered by the gateway itself, never from the edge's cache
        raise PlaybackTokenRejected("Playlists are not authorized here")
    ad = _AD_FILE.match(path)
    film = None if ad else _FILM_FILE.match(path)
    if ad is None and film is None:
        raise PlaybackTokenRejected("Not a segment address")
    return url, ad, film


class PeerFilter:
    """Whether a datagram's sender is the edge: ``KUSH_TRUSTED_PROXIES`` or loopback
    (answers remembered per address: the senders are a few nginx workers)."""

    def __init__(self, trusted: tuple[str, ...]) -> None:
        self._networks: tuple[Network, ...] = parse_networks((*trusted, *LOOPBACK))
        self._seen: dict[str, bool] = {}

    def __call__(self, host: str) -> bool:
        known = self._seen.get(host)
        if known is not None:
            return known
        try:
            ip = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            ok = False
        else:
            if ip.version == 6 and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            ok = any(ip in net for net in self._networks)
        if len(self._seen) >= 1024:
            self._seen.clear()
        self._seen[host] = ok
        return ok


Count = Callable[[str], None]


class UsageReceiver:
    """Takes the edge's datagrams: sorts out what is not a usage line from the edge and
    queues the rest (bounded) for the checkers, which take them in batches (one wake-up
    for all the lines that arrived meanwhile, not one per line)."""

    def __init__(self, trusted: tuple[str, ...], count: Count, *, maxsize: int = QUEUE_MAX):
        self.trusted = PeerFilter(trusted)
        self.count = count
        self.maxsize = maxsize
        self.lines: deque[UsageLine] = deque()
        self.ready = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if not self.trusted(str(addr[0])):
            self.count("untrusted")
            return
        if len(data) > MAX_DATAGRAM:
            self.count("oversized")
            return
        line = parse_line(data)
        if line is None:
            self.count("malformed")
            return
        if line.nbytes <= 0:
            return  # a HEAD, or nothing sent: nothing to count
        if len(self.lines) >= self.maxsize:
            self.count("dropped")
            return
        self.lines.append(line)
        if not self.ready.is_set():
            self.ready.set()


async def count_line(pb: Playback, ring: SegmentKeyring, line: UsageLine) -> bool:
    """Meter one line's bytes as the edge's when its token verifies for its path and its
    session is live; False (nothing counted) otherwise."""
    try:
        url, _, film = segment_uri(line.uri)
        token = url.query.get("t")
        if not token:
            return False
        session = await authorize_uri(
            pb,
            ring,
            token=token,
            raw_path=url.raw_path,
            client_ip=line.client_ip,
            movie_id=film["movie_id"] if film else None,
        )
    except (GatewayError, SessionRefused):
        return False  # a refused or ended session: nothing of it to count
    meter(pb, session, line.nbytes, edge=True)
    return True


async def check_lines(
    receiver: UsageReceiver, pb: Playback, keyring: Callable[[], SegmentKeyring]
) -> None:
    """Count the lines queued so far (and those that arrive meanwhile)."""
    lines = receiver.lines
    while lines:
        line = lines.popleft()
        try:
            counted = await count_line(pb, keyring(), line)
        except Exception:  # a bug or an outage must not stop the metering of the rest
            log.exception("edge usage line not counted")
            counted = False
        receiver.count("counted" if counted else "refused")


async def _checker(
    receiver: UsageReceiver, pb: Playback, keyring: Callable[[], SegmentKeyring]
) -> None:
    while True:
        await receiver.ready.wait()
        await check_lines(receiver, pb, keyring)
        # nothing left (no await since the last check): wait for the next datagram
        receiver.ready.clear()


def read_socket(sock: socket.socket, receiver: UsageReceiver, budget: int = READ_BUDGET) -> int:
    """Hand every datagram waiting on the socket (at most ``budget``) to the receiver;
    how many were read. A datagram longer than ``MAX_DATAGRAM`` arrives cut, and so is
    counted ``oversized``."""
    for n in range(budget):
        try:
            data, addr = sock.recvfrom(MAX_DATAGRAM + 1)
        except (BlockingIOError, InterruptedError):
            return n
        except OSError as exc:  # nothing the edge sent: an ICMP error, say
            log.debug("edge usage socket: %s", exc)
            return n
        receiver.datagram_received(data, addr)
    return budget


def next_poll(read: int, previous: float) -> float:
    """The wait before the next read of the socket: none after a full budget, ``POLL_S``
    after some datagrams, twice the previous wait (up to ``IDLE_POLL_S``) after none."""
    if read >= READ_BUDGET:
        return 0.0
    if read:
        return POLL_S
    return min(max(previous, POLL_S) * 2, IDLE_POLL_S)


async def _reader(sock: socket.socket, receiver: UsageReceiver) -> None:
    wait = POLL_S
    while True:
        wait = next_poll(read_socket(sock, receiver), wait)
        await asyncio.sleep(wait)


def usage_socket(host: str, port: int) -> socket.socket:
    """The UDP socket every gateway worker binds (``SO_REUSEPORT``: the kernel spreads
    the edge's datagrams over them), with a receive buffer for bursts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


@contextlib.asynccontextmanager
async def listening(
    pb: Playback,
    keyring: Callable[[], SegmentKeyring],
    *,
    host: str,
    port: int,
    trusted: tuple[str, ...],
    count: Count,
) -> AsyncIterator[UsageReceiver | None]:
    """Take the edge's usage lines on ``host:port`` (UDP) while the app runs; port 0
    takes none. A port that cannot be bound is logged and the gateway runs on without
    the edge's counts (viewers are never refused for metering)."""
    if port == 0:
        yield None
        return
    try:
        sock = usage_socket(host, port)
    except OSError as exc:
        log.error("edge usage: cannot listen on UDP %s:%d (%s); not counting", host, port, exc)
        yield None
        return
    receiver = UsageReceiver(trusted, count)
    reader = asyncio.create_task(_reader(sock, receiver), name="edge-usage-reader")
    tasks = [
        asyncio.create_task(_checker(receiver, pb, keyring), name=f"edge-usage-{i}")
        for i in range(CHECKERS)
    ]
    try:
        yield receiver
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        # what already arrived is checked (bounded) so the usage writer's last flush has it
        read_socket(sock, receiver)
        sock.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_S):
                await check_lines(receiver, pb, keyring)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
