"""The edge's usage lines (nginx syslog over UDP) as the gateway reads them: only
well-formed lines for segment URIs, from the edge, are queued for counting; anything else
is dropped and counted by why."""

from __future__ import annotations

import pytest

from gateway.edge_usage import (
    IDLE_POLL_S,
    MAX_DATAGRAM,
    POLL_S,
    READ_BUDGET,
    PeerFilter,
    UsageLine,
    UsageReceiver,
    next_poll,
    parse_line,
    segment_uri,
    usage_socket,
)
from gateway.errors import PlaybackTokenRejected

SEGMENT = "/hls/3f1c/480p/seg_00001.ts?t=AbC-_09xyz"
LINE = f"<190>Nov 30 08:23:41 kush_usage: 206 1000 203.0.113.7 {SEGMENT}".encode()


def test_a_line_as_nginx_sends_it() -> None:
    assert parse_line(LINE) == UsageLine(206, 1000, "203.0.113.7", SEGMENT)
    # a single-digit day is padded with a space; a hostname (without nohostname), an IPv6
    # client and a trailing newline are accepted too
    other = f"<190>Dec  1 00:00:00 edge-1 kush_usage: 200 1048576 2001:db8::7 {SEGMENT}\n"
    assert parse_line(other.encode()) == UsageLine(200, 1048576, "2001:db8::7", SEGMENT)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"\x00\xff" * 40,
        LINE.replace(b"kush_usage:", b"nginx:"),  # another tag
        LINE.replace(b" 206 ", b" 404 "),  # not a segment sent
        LINE.replace(b" 1000 ", b" -5 "),
        LINE.replace(b" 1000 ", b" 1" + b"0" * 20 + b" "),  # absurd byte count
        LINE.replace(b"203.0.113.7", b"999.1.1.1"),  # not an address
        LINE.replace(b"203.0.113.7", b"evil"),
        LINE.replace(b"/hls/", b"/v1/"),  # not a segment URI
        LINE.replace(b"?t=", b"? t="),  # a space in the URI: not the format
        LINE + b"\n\n",
        LINE.replace(b"<190>", b""),  # no syslog header
        LINE + b"A" * MAX_DATAGRAM,  # oversized
    ],
)
def test_anything_else_is_not_a_usage_line(data: bytes) -> None:
    assert parse_line(data) is None


def test_only_the_edge_may_send_lines() -> None:
    trusted = PeerFilter(("10.1.0.0/16",))
    assert trusted("127.0.0.1")
    assert trusted("::1")
    assert trusted("10.1.2.3")
    assert trusted("::ffff:10.1.2.3")  # an IPv4 sender on a dual-stack socket
    assert not trusted("10.2.0.1")
    assert not trusted("2001:db8::1")
    assert not trusted("not an address")
    assert trusted("10.1.2.3")  # remembered answers stay right


def _receiver(maxsize: int = 100) -> tuple[UsageReceiver, list[str]]:
    results: list[str] = []
    return UsageReceiver(("10.1.0.0/16",), results.append, maxsize=maxsize), results


def test_the_receiver_queues_good_lines_and_counts_the_rest() -> None:
    receiver, results = _receiver()
    receiver.datagram_received(LINE, ("10.1.0.9", 40000))
    receiver.datagram_received(LINE, ("192.0.2.1", 40000))  # untrusted peer
    receiver.datagram_received(LINE + b" " * MAX_DATAGRAM, ("127.0.0.1", 40000))
    receiver.datagram_received(b"<190>hello", ("127.0.0.1", 40000))
    receiver.datagram_received(LINE.replace(b" 1000 ", b" 0 "), ("127.0.0.1", 40000))
    assert results == ["untrusted", "oversized", "malformed"]  # 0 bytes: nothing to count
    assert list(receiver.lines) == [UsageLine(206, 1000, "203.0.113.7", SEGMENT)]
    assert receiver.ready.is_set()


def test_a_full_queue_drops_and_counts() -> None:
    receiver, results = _receiver(maxsize=2)
    for _ in range(5):
        receiver.datagram_received(LINE, ("127.0.0.1", 40000))
    assert len(receiver.lines) == 2
    assert results == ["dropped"] * 3


def test_segment_uris_only() -> None:
    _, ad, film = segment_uri(SEGMENT)
    assert film is not None
    assert film["movie_id"] == "3f1c"
    assert ad is None
    _, ad, film = segment_uri("/hls/ads/a1/360p/seg_00000.ts?t=x")
    assert ad is not None
    assert ad["ad_id"] == "a1"
    for bad in ("/hls/3f1c/master.m3u8?t=x", "http://evil.example/hls/a/b/c.ts", "/hls/x"):
        with pytest.raises(PlaybackTokenRejected):
            segment_uri(bad)


def test_every_worker_binds_the_same_port() -> None:
    """SO_REUSEPORT: the gateway's workers (and a rolling restart's replacement) share it."""
    first = usage_socket("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        second = usage_socket("127.0.0.1", port)
        second.close()
    finally:
        first.close()


def test_the_socket_is_read_often_while_lines_come_and_rarely_when_idle() -> None:
    assert next_poll(READ_BUDGET, POLL_S) == 0.0  # more waiting: read again at once
    assert next_poll(3, IDLE_POLL_S) == POLL_S
    waits = [POLL_S]
    for _ in range(10):
        waits.append(next_poll(0, waits[-1]))
    assert waits[1] == 2 * POLL_S
    assert waits[-1] == IDLE_POLL_S
