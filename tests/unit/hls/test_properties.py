"""Property tests: compile/render keeps structure; garbage only raises PlaylistError."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from hls import (
    PlaylistError,
    compile_master_playlist,
    compile_media_playlist,
    parse_master_playlist,
    parse_media_playlist,
)

ROOT = "/hls/abc123/"
MEDIA = "/hls/abc123/720p/index.m3u8"
MASTER = "/hls/abc123/master.m3u8"


@dataclass(frozen=True)
class Entry:
    uri: str
    duration: str
    title: str
    extra: tuple[str, ...]


file_names = st.from_regex(r"[A-Za-z0-9_-]{1,12}\.(ts|m4s|aac|vtt)", fullmatch=True)
directories = st.sampled_from(["", "sub/", "../720p/", "/hls/abc123/720p/", "./"])
queries = st.sampled_from(["", "?v=2", "?a=1&b=2"])
durations = st.integers(min_value=1, max_value=20_000).map(lambda ms: f"{ms / 1000:.3f}")
# §4.1: no control characters (CR and LF end lines), no line or paragraph separators.
titles = st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=10)
extra_lines = st.lists(
    st.sampled_from(
        [
            "#EXT-X-KUSH-FOO:bar",
            "# a comment",
            "",
            "#EXT-X-DISCONTINUITY",
            "#EXT-X-CUE-IN",
            '#EXT-X-DATERANGE:ID="a",START-DATE="2024-01-01T00:00:00Z"',
            "#EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:00Z",
        ]
    ),
    max_size=3,
)
entries = st.builds(
    Entry,
    uri=st.builds(lambda d, f, q: d + f + q, directories, file_names, queries),
    duration=durations,
    title=titles,
    extra=extra_lines.map(tuple),
)


def media_text(items: list[Entry], eol: str, final_eol: bool) -> tuple[str, list[str]]:
    """Build a media playlist and list its lines."""
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:20", "#EXT-X-PLAYLIST-TYPE:VOD"]
    for entry in items:
        lines.extend(entry.extra)
        lines.append(f"#EXTINF:{entry.duration},{entry.title}")
        lines.append(entry.uri)
    lines.append("#EXT-X-ENDLIST")
    text = eol.join(lines) + (eol if final_eol else "")
    return text, lines


@given(st.lists(entries, max_size=30), st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_render_keeps_every_line_and_signs_every_uri(
    items: list[Entry], eol: str, final_eol: bool
) -> None:
    text, lines = media_text(items, eol, final_eol)

    template = compile_media_playlist(text, playlist_path=MEDIA, root=ROOT)
    output = template.render(["tok"] * len(template.paths))

    assert len(template.paths) == len(items)
    output_lines = output.split(eol)
    if final_eol:
        assert output_lines.pop() == ""
    assert len(output_lines) == len(lines)
    uris = {entry.uri for entry in items}
    for before, after in zip(lines, output_lines, strict=True):
        if before in uris and not before.startswith("#") and before:
            separator = "&" if "?" in before else "?"
            assert after.endswith(f"{separator}t=tok")
            # The file name survives at the end of the path.
            assert (
                after.partition("?")[0].rsplit("/", 1)[-1]
                == (before.partition("?")[0].rsplit("/", 1)[-1])
            )
        else:
            assert after == before


@given(st.lists(entries, max_size=20))
def test_parse_of_output_matches_input(items: list[Entry]) -> None:
    text, _ = media_text(items, "\n", final_eol=True)
    template = compile_media_playlist(text, playlist_path=MEDIA, root=ROOT)
    tokens = [f"k{i}" for i in range(len(template.paths))]

    source = parse_media_playlist(text)
    output = parse_media_playlist(template.render(tokens))

    assert [s.duration for s in output.segments] == [s.duration for s in source.segments]
    assert [s.title for s in output.segments] == [s.title for s in source.segments]
    assert [s.uri.rpartition("t=")[2] for s in output.segments] == tokens
    assert output.header_tags == source.header_tags


playlist_lines = st.one_of(
    st.sampled_from(
        [
            "#EXTM3U",
            "#EXT-X-TARGETDURATION:6",
            "#EXT-X-TARGETDURATION:x",
            "#EXTINF:6,",
            "#EXTINF:abc",
            "#EXTINF:",
            "#EXT-X-BYTERANGE:10@0",
            "#EXT-X-BYTERANGE:@",
            '#EXT-X-KEY:METHOD=AES-128,URI="k.key",IV=0x01',
            "#EXT-X-KEY:METHOD=NONE",
            "#EXT-X-KEY:METHOD=AES-128,IV=0xZZ",
            '#EXT-X-MAP:URI="init.mp4",BYTERANGE="1@x"',
            "#EXT-X-START:TIME-OFFSET=-3",
            "#EXT-X-START:TIME-OFFSET=",
            '#EXT-X-DATERANGE:ID="a",START-DATE="x",DURATION=-1',
            "#EXT-X-CUE-OUT:DURATION=1.2.3",
            "#EXT-X-CUE-OUT-CONT:1/x",
            "#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=10x20",
            "#EXT-X-STREAM-INF:BANDWIDTH=99999999999999999999999",
            '#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1,URI="i.m3u8"',
            '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="n",URI="a/x.m3u8"',
            '#EXT-X-SESSION-KEY:METHOD=AES-128,URI="k"',
            '#EXT-X-PART:URI="p.m4s",DURATION=1',
            "#EXT-X-MEDIA-SEQUENCE:١٢",
            "seg.ts",
            "a/b/../c.m3u8",
            "../../../x.ts",
            "http://evil.example/x.ts",
            "",
            "# comment",
        ]
    ),
    st.text(max_size=40),
)
random_playlists = (
    st.lists(playlist_lines, max_size=12).map(lambda lines: "#EXTM3U\n" + "\n".join(lines))
    | st.lists(playlist_lines, max_size=12).map("\n".join)
    | st.text(max_size=200)
)


@given(random_playlists)
def test_parsers_raise_only_playlist_error(text: str) -> None:
    for parse in (parse_media_playlist, parse_master_playlist):
        with contextlib.suppress(PlaylistError):
            parse(text)


@given(random_playlists, st.sampled_from([None, 360, 720]), st.sampled_from([None, 480]))
def test_compilers_raise_only_playlist_error(
    text: str, max_height: int | None, preferred: int | None
) -> None:
    try:
        template = compile_media_playlist(text, playlist_path=MEDIA, root=ROOT)
        template.render([""] * len(template.paths), start_offset=1.5)
    except PlaylistError:
        pass
    try:
        master = compile_master_playlist(
            text,
            playlist_path=MASTER,
            root=ROOT,
            max_height=max_height,
            preferred_height=preferred,
        )
        master.render([""] * len(master.paths), start_offset=1.5)
    except PlaylistError:
        pass
