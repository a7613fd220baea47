"""Regression tests for the defects the fuzz suite (tests/fuzz) found in the HLS core.

Each test names the input that used to get through, and what it did then.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hls import (
    ForeignUriError,
    PlaylistError,
    Pod,
    compile_master_playlist,
    compile_media_playlist,
    parse_master_playlist,
    parse_media_playlist,
    stitch_media_playlist,
)
from hls.parser import MAX_SEGMENT_DURATION_S
from hls.text import MAX_PLAYLIST_BYTES, decode_playlist
from tests.fuzz.hostile import AD

ROOT = "/hls/m1/"
MEDIA = "/hls/m1/720p/index.m3u8"
MASTER = "/hls/m1/master.m3u8"
PODS = (Pod(index=0, at_s=0.0, ads=(AD,)), Pod(index=1, at_s=4.0, ads=(AD,)))


def media(*, extinf: str = "4.000", header: str = "", target: str = "6") -> str:
    return (
        f"#EXTM3U\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-PLAYLIST-TYPE:VOD\n{header}"
        f"#EXTINF:{extinf},\nseg0.ts\n#EXTINF:4.000,\nseg1.ts\n#EXT-X-ENDLIST\n"
    )


def master(header: str = "") -> str:
    return (
        f"#EXTM3U\n{header}#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=1280x720\n"
        "720p/index.m3u8\n"
    )


def compile_media(text: str) -> object:
    return compile_media_playlist(text, playlist_path=MEDIA, root=ROOT)


def stitch(text: str) -> object:
    return stitch_media_playlist(
        text,
        playlist_path=MEDIA,
        root=ROOT,
        pods=PODS,
        content_height=720,
        content_container="ts",
    )


def compile_master(text: str) -> object:
    return compile_master_playlist(
        text, playlist_path=MASTER, root=ROOT, max_height=None, preferred_height=None
    )


MEDIA_READERS: list[Callable[[str], object]] = [parse_media_playlist, compile_media, stitch]
MASTER_READERS: list[Callable[[str], object]] = [parse_master_playlist, compile_master]


# Copied verbatim inside a tag, each of these ended a line for some reader (Python's
# str.splitlines, players that split on CR or on Unicode separators), which then saw
# "http://evil.example/x.ts" as a URI line that was never signed.
@pytest.mark.parametrize(
    "separator",
    ["\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"],
    ids=lambda c: f"U+{ord(c):04X}",
)
@pytest.mark.parametrize("reader", MEDIA_READERS + MASTER_READERS)
def test_line_separators_other_than_lf_and_crlf_are_refused(
    separator: str, reader: Callable[[str], object]
) -> None:
    hidden = f"#EXT-X-KUSH-NOTE:a{separator}http://evil.example/x.ts\n"
    text = media(header=hidden) if reader in MEDIA_READERS else master(hidden)
    with pytest.raises(PlaylistError, match=r"forbidden character U\+") as caught:
        reader(text)
    assert caught.value.line in (2, 4)


@pytest.mark.parametrize("character", ["\x00", "\x07", "\x7f", "\x9f", "\ud800"])
def test_controls_nul_and_lone_surrogates_are_refused(character: str) -> None:
    for reader in MEDIA_READERS:
        with pytest.raises(PlaylistError, match="forbidden character"):
            reader(media(header=f"#EXT-X-KUSH-NOTE:{character}\n"))


def test_crlf_and_tab_are_still_accepted() -> None:
    text = media(header="#EXT-X-KUSH-NOTE:\ta\n").replace("\n", "\r\n")
    template = compile_media_playlist(text, playlist_path=MEDIA, root=ROOT)
    assert template.render(["T", "T"]).count("\r\n") == text.count("\r\n")


@pytest.mark.parametrize("extinf", ["9" * 400, "1" + "0" * 300, str(MAX_SEGMENT_DURATION_S + 1)])
@pytest.mark.parametrize("reader", MEDIA_READERS)
def test_huge_and_overflowing_durations_are_refused(
    extinf: str, reader: Callable[[str], object]
) -> None:
    # 400 nines parsed to inf, 1e300 stayed finite: the stitcher's timeline then raised
    # OverflowError (a 500) instead of refusing the playlist.
    with pytest.raises(PlaylistError, match=r"EXTINF|out of range"):
        reader(media(extinf=extinf))


def test_a_day_long_segment_is_still_accepted() -> None:
    playlist = parse_media_playlist(media(extinf=f"{MAX_SEGMENT_DURATION_S}.000"))
    assert playlist.segments[0].duration == MAX_SEGMENT_DURATION_S


@pytest.mark.parametrize("reader", MEDIA_READERS)
def test_overflowing_start_offset_is_refused(reader: Callable[[str], object]) -> None:
    # compiled and copied to the player as an infinite TIME-OFFSET
    with pytest.raises(PlaylistError, match="out of range"):
        reader(media(header=f"#EXT-X-START:TIME-OFFSET={'9' * 400}\n"))


def test_compile_checks_the_target_duration_it_copies() -> None:
    # compile_media_playlist copied a target duration that parse_media_playlist refuses,
    # so its own output did not re-parse
    with pytest.raises(PlaylistError, match="decimal-integer"):
        compile_media(media(target="99999999999999999999"))
    with pytest.raises(PlaylistError, match="decimal-integer"):
        compile_media(media(target="six"))


DEFINE = '#EXT-X-DEFINE:NAME="h",VALUE="http://evil.example"\n'


def test_variable_definitions_are_refused() -> None:
    # "{$h}/seg0.ts" passed the URI checks and was signed; a player substitutes
    # http://evil.example for {$h} and sends the token to another host
    text = media(header=DEFINE).replace("seg0.ts", "{$h}/seg0.ts")
    for reader in (compile_media, stitch):
        with pytest.raises(PlaylistError, match="EXT-X-DEFINE"):
            reader(text)
    with pytest.raises(PlaylistError, match="EXT-X-DEFINE"):
        compile_master(master(DEFINE))


@pytest.mark.parametrize(
    "line",
    [
        '#EXT-X-CONTENT-STEERING:SERVER-URI="http://evil.example/steer.json"',
        '#EXT-X-DATERANGE:ID="i",CLASS="com.apple.hls.interstitial",'
        'START-DATE="2024-01-01T00:00:00Z",X-ASSET-URI="http://evil.example/ad.m3u8"',
        '#EXT-X-DATERANGE:ID="i",START-DATE="2024-01-01T00:00:00Z",X-ASSET-LIST="list.json"',
        '#EXT-X-KUSH-FUTURE:uri = "elsewhere.m3u8"',
    ],
)
def test_uris_in_tags_that_are_not_rewritten_are_refused(line: str) -> None:
    # these tags were copied verbatim: the player fetched the URI without a token, from
    # whatever host it named
    for reader in (compile_media, stitch, compile_master):
        text = master(line + "\n") if reader is compile_master else media(header=line + "\n")
        with pytest.raises(PlaylistError, match="URI that cannot be signed"):
            reader(text)


def test_unknown_tags_without_uris_still_pass_through() -> None:
    text = media(header='#EXT-X-KUSH-NOTE:LABEL="uri-less",URIS=2\n')
    template = compile_media_playlist(text, playlist_path=MEDIA, root=ROOT)
    assert '#EXT-X-KUSH-NOTE:LABEL="uri-less",URIS=2\n' in template.render(["a", "b"])


def test_error_messages_stay_short_for_huge_lines() -> None:
    # the whole offending line (megabytes) was quoted in the message, and so in the log
    junk = "A" * 1_000_000
    cases = [
        media(header=f"#EXT-X-KEY:{junk}\n"),
        media(target=junk),
        media(extinf=junk),
        media().replace("seg0.ts", "http://" + junk),
        media(header=f"#EXT-X-BYTERANGE:{junk}\n"),
    ]
    for text in cases:
        with pytest.raises(PlaylistError) as caught:
            compile_media(text)
        assert len(str(caught.value)) < 200


def test_size_limit() -> None:
    with pytest.raises(PlaylistError, match="over"):
        decode_playlist(b"#EXTM3U\n" + b"#" * MAX_PLAYLIST_BYTES)
    too_long = media(header="# " + "x" * MAX_PLAYLIST_BYTES + "\n")
    for reader in MEDIA_READERS + MASTER_READERS:
        with pytest.raises(PlaylistError, match="over"):
            reader(too_long)
    assert decode_playlist(b"#EXTM3U\n".ljust(MAX_PLAYLIST_BYTES, b"#")).startswith("#EXTM3U")


@pytest.mark.parametrize("uri", ["segé.ts", 'seg"1.ts', "seg{1}.ts", "a|b.ts", "seg^1.ts", "x`.ts"])
def test_uris_a_player_would_percent_encode_are_refused(uri: str) -> None:
    # signed as written, requested percent-encoded (seg%C3%A9.ts): every fetch was a 403
    with pytest.raises(ForeignUriError, match="unsafe characters"):
        compile_media(media().replace("seg0.ts", uri))
    with pytest.raises(ForeignUriError, match="unsafe characters"):
        compile_master(master().replace("720p/index.m3u8", f"720p/{uri}"))


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("#EXTINF:4.000,\n", "two EXTINF"),
        ('#EXT-X-DATERANGE:START-DATE="2024-01-01T00:00:00Z"\n', "DATERANGE ID"),
        ("#EXT-X-MEDIA-SEQUENCE:first\n", "decimal-integer"),
        ("#EXT-X-VERSION:-3\n", "decimal-integer"),
        ('#EXT-X-KEY:METHOD=AES-128,URI="k.key",IV=0xZZ\n', "hexadecimal"),
        ('#EXT-X-MAP:URI="init.mp4",BYTERANGE="x@y"\n', "byte range"),
    ],
)
def test_compile_refuses_what_the_parser_refuses(header: str, message: str) -> None:
    # compiled and served, yet the parser (and so the gateway's progress bookkeeping and
    # the stitcher's scan) refused the same text: the output did not re-parse
    with pytest.raises(PlaylistError, match=message):
        parse_media_playlist(media(header=header))
    with pytest.raises(PlaylistError, match=message):
        compile_media(media(header=header))


def test_a_byterange_is_no_extinf() -> None:
    text = "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-BYTERANGE:100@0\nmain.ts\n"
    with pytest.raises(PlaylistError, match="without EXTINF"):
        compile_media(text)


def test_key_method_none_with_a_uri_is_refused() -> None:
    # §4.3.2.4: no other attribute with METHOD=NONE; the URI was copied unsigned
    header = '#EXT-X-KEY:METHOD=NONE,URI="https://evil.example/k"\n'
    for reader in MEDIA_READERS:
        with pytest.raises(PlaylistError, match="METHOD=NONE"):
            reader(media(header=header))
    parse_media_playlist(media(header="#EXT-X-KEY:METHOD=NONE\n"))


@pytest.mark.parametrize(
    "variant",
    [
        "#EXT-X-STREAM-INF:BANDWIDTH=1,FRAME-RATE=fast",
        "#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS=avc1",
        '#EXT-X-MEDIA:TYPE=AUDIO,NAME="x",URI="a/index.m3u8"',
        '#EXT-X-SESSION-DATA:VALUE="x"',
    ],
)
def test_compile_master_refuses_what_the_parser_refuses(variant: str) -> None:
    text = master(variant + "\n" + ("v.m3u8\n" if "STREAM-INF" in variant else ""))
    with pytest.raises(PlaylistError):
        parse_master_playlist(text)
    with pytest.raises(PlaylistError):
        compile_master(text)


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_master_without_final_newline_keeps_its_lines_when_reordered(eol: str) -> None:
    # the last variant, moved first for the data-saver preference, was glued to the next
    # line: "1080p/index.m3u8?t=…#EXT-X-STREAM-INF:…", one variant hidden in a fragment
    text = eol.join(
        [
            "#EXTM3U",
            "#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360",
            "360p/index.m3u8",
            "#EXT-X-STREAM-INF:BANDWIDTH=5000000,RESOLUTION=1920x1080",
            "1080p/index.m3u8",
        ]
    )
    template = compile_master_playlist(
        text, playlist_path=MASTER, root=ROOT, max_height=None, preferred_height=1080
    )
    output = template.render(["a", "b"])
    assert output.split(eol)[1:5] == [
        "#EXT-X-STREAM-INF:BANDWIDTH=5000000,RESOLUTION=1920x1080",
        "1080p/index.m3u8?t=a",
        "#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360",
        "360p/index.m3u8?t=b",
    ]
    assert [v.uri for v in parse_master_playlist(output).variants] == [
        "1080p/index.m3u8?t=a",
        "360p/index.m3u8?t=b",
    ]
