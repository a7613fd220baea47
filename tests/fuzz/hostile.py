"""Hostile playlists for the fuzz suite, and the oracle that checks what the core outputs.

Generators are structure-aware: a playlist is a valid skeleton (header, segments,
keys, maps, variants) with some lines replaced by hostile ones (URIs that cannot be
signed, non-finite or huge decimals, attribute lists with junk, unknown tags carrying
URIs) and some terminators swapped for something other than LF (CRLF, lone CR, NEL,
U+2028...), plus random characters spliced anywhere. About half the generated
playlists are accepted, so the output properties are exercised, not vacuous.

No `st.text()`: characters are drawn as code points (`chr`) or from a pool, which
needs none of Hypothesis's Unicode tables (building them cold trips its too_slow
health check; see tests/unit/tokens/test_jwt.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar
from urllib.parse import parse_qsl, urljoin, urlsplit

from hypothesis import strategies as st

from hls import AdCreative, AdMedia
from tokens import SegmentKeyring, SessionSigner, new_session_id, verify_segment_token

#: one creative of one 5 s segment, for the stitching properties and tests
AD = AdCreative(
    ad_id="ad1",
    campaign_id="c1",
    renditions=(
        AdMedia(
            name="720p",
            height=720,
            container="ts",
            segments=(("/hls/ads/ad1/720p/seg_00000.ts", 5.0),),
            init_path=None,
        ),
    ),
)

_P = ParamSpec("_P")
_T = TypeVar("_T")
CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "playlists" / "hostile"
ROOT = "/hls/m1/"
ADS_ROOT = "/hls/ads/"
MEDIA_PATH = "/hls/m1/720p/index.m3u8"
MASTER_PATH = "/hls/m1/master.m3u8"
NOW = 1_700_000_000
KEYRING = SegmentKeyring({7: bytes(range(32))}, 7)
BASE = "https://gw.example"


def signer() -> SessionSigner:
    """A real segment-token signer for one session (tokens verify against `KEYRING`)."""
    return KEYRING.session_signer(new_session_id(), NOW + 3600)


# ------------------------------------------------------------------ building blocks

# Characters readers disagree about, and other trouble: every one a line break to
# someone, a control, a BOM, a lone surrogate, quoting and URI syntax.
TROUBLE = (
    "\r",
    "\n",
    "\r\n",
    "\x00",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x1e",
    "\x85",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\ud800",
    "\t",
    " ",
    '"',
    ",",
    "=",
    "#",
    "?",
    "&",
    "%",
    "/",
    "\\",
    ":",
    "{$",
    "é",
    "𝄞",
)
junk_chars = st.sampled_from(TROUBLE) | st.integers(0, 0x10FFFF).map(chr)
junk = st.lists(junk_chars, max_size=12).map("".join)

# Decimals for EXTINF, EXT-X-TARGETDURATION, TIME-OFFSET, BANDWIDTH...
decimals = st.sampled_from(
    [
        "4",
        "4.000",
        "0",
        "0.5",
        ".5",
        "5.",
        "-1",
        "-0",
        "+4",
        " 4 ",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "Infinity",
        "1e400",
        "1e3",
        "0x10",
        "9" * 400,
        "1" + "0" * 300,
        "86400",
        "86400.001",
        "18446744073709551615",
        "18446744073709551616",
        "٤",
        "",
    ]
) | st.integers(-(2**70), 2**70).map(str)
extinf_values = (
    decimals.map(lambda d: f"{d},")
    | st.integers(1, 12_000).map(lambda ms: f"{ms / 1000:.3f},")
    | st.tuples(decimals, junk).map(lambda p: f"{p[0]},{p[1]}")
)

# URIs: plain, relative, absolute under the root, and every way out of it.
URIS = (
    "seg.ts",
    "seg_00001.ts",
    "sub/seg.ts",
    "./seg.ts",
    "../720p/seg.ts",
    "../../m1/720p/seg.ts",
    "/hls/m1/720p/seg.ts",
    "/hls/m1/audio/a.m3u8",
    "seg.ts?v=2",
    "seg.ts?a=1&b=2",
    "seg.ts#frag",
    "seg.ts#x?t=1",
    "seg.ts;t=1",
    "seg.ts?",
    "seg.ts?#",
    "seg.ts?t=forged",
    "seg.ts?a=1&t=forged",
    "seg.ts?T=1",
    "seg.ts?t",
    "../../../etc/passwd",
    "/hls/m2/720p/seg.ts",
    "/hls/m1/../m2/seg.ts",
    "/hls/m10/seg.ts",
    "/hls/m1",
    "/hls/m1/",
    "/",
    ".",
    "..",
    "",
    "?t=1",
    "#",
    "//evil.example/seg.ts",
    "///evil.example/seg.ts",
    "http://evil.example/seg.ts",
    "HTTPS://evil.example/seg.ts",
    "https:seg.ts",
    "data:video/mp2t;base64,AAAA",
    "javascript:alert(1)",
    "skd://key42",
    "blob:https://gw.example/x",
    "c:/x.ts",
    "%2e%2e/%2e%2e/seg.ts",
    "..%2fseg.ts",
    "seg%2Fx.ts",
    "seg%00.ts",
    "seg%41.ts",
    "a\\..\\..\\seg.ts",
    "seg é.ts",
    "segé.ts",
    'seg"x.ts',
    "seg<x>.ts",
    "{$host}/seg.ts",
    "seg.ts\t",
    "  seg.ts  ",
)
uris = st.sampled_from(URIS) | st.tuples(st.sampled_from(URIS), junk).map("".join)
quoted_uris = uris.map(lambda u: f'"{u}"')

ATTRIBUTE_NAMES = (
    "URI",
    "METHOD",
    "IV",
    "KEYFORMAT",
    "BYTERANGE",
    "BANDWIDTH",
    "AVERAGE-BANDWIDTH",
    "RESOLUTION",
    "FRAME-RATE",
    "TYPE",
    "GROUP-ID",
    "NAME",
    "AUDIO",
    "DATA-ID",
    "DURATION",
    "ID",
    "START-DATE",
    "CLASS",
    "SCTE35-OUT",
    "TIME-OFFSET",
    "SERVER-URI",
    "X-ASSET-URI",
    "X-ASSET-LIST",
    "uri",
    "X-",
    "",
)
attribute_values = st.one_of(
    quoted_uris,
    decimals,
    st.sampled_from(
        [
            "AES-128",
            "NONE",
            "SAMPLE-AES",
            "AUDIO",
            "CLOSED-CAPTIONS",
            "YES",
            "NO",
            '"a"',
            '"2024-01-01T00:00:00Z"',
            "0x00112233445566778899AABBCCDDEEFF",
            "0xZZ",
            "1280x720",
            "1280x",
            '"100@0"',
            '"x@y"',
            '"',
            '""',
            '"unterminated',
        ]
    ),
    junk,
)
attribute = st.tuples(st.sampled_from(ATTRIBUTE_NAMES), st.sampled_from(["=", " = ", ""])).map(
    "".join
)
attribute_lists = st.lists(
    st.tuples(attribute, attribute_values).map("".join), min_size=0, max_size=5
).flatmap(lambda pairs: st.sampled_from([",", ", ", ",,", ";"]).map(lambda sep: sep.join(pairs)))

MEDIA_TAGS = (
    "#EXTINF",
    "#EXT-X-BYTERANGE",
    "#EXT-X-KEY",
    "#EXT-X-MAP",
    "#EXT-X-DATERANGE",
    "#EXT-X-PART",
    "#EXT-X-PRELOAD-HINT",
    "#EXT-X-RENDITION-REPORT",
    "#EXT-X-TARGETDURATION",
    "#EXT-X-MEDIA-SEQUENCE",
    "#EXT-X-DISCONTINUITY-SEQUENCE",
    "#EXT-X-VERSION",
    "#EXT-X-START",
    "#EXT-X-PROGRAM-DATE-TIME",
    "#EXT-X-CUE-OUT",
    "#EXT-X-CUE-OUT-CONT",
    "#EXT-X-CUE-IN",
    "#EXT-X-SCTE35",
    "#EXT-X-DEFINE",
    "#EXT-X-CONTENT-STEERING",
    "#EXT-X-KUSH-FUTURE",
    "#EXT-X-STREAM-INF",
    "#EXT-X-MEDIA",
)
MASTER_TAGS = (
    "#EXT-X-STREAM-INF",
    "#EXT-X-I-FRAME-STREAM-INF",
    "#EXT-X-MEDIA",
    "#EXT-X-SESSION-DATA",
    "#EXT-X-SESSION-KEY",
    "#EXT-X-VERSION",
    "#EXT-X-START",
    "#EXT-X-INDEPENDENT-SEGMENTS",
    "#EXT-X-DEFINE",
    "#EXT-X-CONTENT-STEERING",
    "#EXT-X-KUSH-FUTURE",
    "#EXTINF",
    "#EXT-X-TARGETDURATION",
)


def tag_lines(names: tuple[str, ...]) -> st.SearchStrategy[str]:
    """A tag with an attribute list, a decimal, junk, or nothing after it."""
    value = st.one_of(attribute_lists, decimals, extinf_values, junk, uris)
    return st.tuples(st.sampled_from(names), st.sampled_from([":", "", ": "]), value).map(
        lambda parts: parts[0] + ("" if not parts[1] else parts[1] + parts[2])
    )


OTHER_LINES = ("", "# a comment", "#EXT-X-ENDLIST", "#EXT-X-DISCONTINUITY", "#EXT-X-GAP", "  ")
TERMINATORS = ("\r\n", "\r", "\x85", "\u2028", "\u2029", "\x0b", "\x0c", "")
HEADERS = ("#EXTM3U", "#EXTM3U", "#EXTM3U \t", "\ufeff#EXTM3U", "#extm3u", "EXTM3U", "")


# ------------------------------------------------------------------ skeletons


def media_skeleton(segments: int, *, key: bool, fmp4: bool, byterange: bool) -> list[str]:
    """A valid VOD media playlist, as lines without terminators."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:6", "#EXT-X-PLAYLIST-TYPE:VOD"]
    if fmp4:
        lines.append('#EXT-X-MAP:URI="init.mp4"')
    if key:
        lines.append('#EXT-X-KEY:METHOD=AES-128,URI="../keys/k.key"')
    for index in range(segments):
        lines.append("#EXTINF:4.000,")
        if byterange:
            lines += [f"#EXT-X-BYTERANGE:1000@{index * 1000}", "main.ts"]
        else:
            lines.append(f"seg_{index:05d}.{'m4s' if fmp4 else 'ts'}")
    lines.append("#EXT-X-ENDLIST")
    return lines


def master_skeleton() -> list[str]:
    """A valid master playlist, as lines without terminators."""
    return [
        "#EXTM3U",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="en",DEFAULT=YES,AUTOSELECT=YES,'
        'URI="audio/index.m3u8"',
        '#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,AUDIO="aud"',
        "360p/index.m3u8",
        '#EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=1280x720,AUDIO="aud"',
        "720p/index.m3u8",
        '#EXT-X-STREAM-INF:BANDWIDTH=5000000,RESOLUTION=1920x1080,AUDIO="aud"',
        "1080p/index.m3u8",
        '#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=100000,RESOLUTION=1280x720,URI="720p/iframes.m3u8"',
    ]


@st.composite
def mutated(
    draw: st.DrawFn, skeleton: list[str], hostile: st.SearchStrategy[str]
) -> tuple[str, int]:
    """``skeleton`` with a few lines replaced, inserted or deleted, joined with mostly LF.

    Returns the text and the number of mutations (0: the skeleton as it was).
    """
    lines = list(skeleton)
    mutations = draw(st.integers(0, 4))
    for _ in range(mutations):
        action = draw(st.sampled_from(["replace", "insert", "delete", "uri", "splice"]))
        at = draw(st.integers(0, len(lines)))
        if action == "insert" or not lines:
            lines.insert(at, draw(hostile))
            continue
        at = min(at, len(lines) - 1)
        if action == "replace":
            lines[at] = draw(hostile)
        elif action == "delete":
            del lines[at]
        elif action == "uri":
            uri_lines = [i for i, line in enumerate(lines) if line and not line.startswith("#")]
            target = draw(st.sampled_from(uri_lines)) if uri_lines else at
            lines[target] = draw(uris)
        else:
            position = draw(st.integers(0, len(lines[at])))
            lines[at] = lines[at][:position] + draw(junk) + lines[at][position:]
    if draw(st.integers(0, 9)) == 0:
        lines[0:1] = [draw(st.sampled_from(HEADERS))]
    eol = draw(st.sampled_from(["\n", "\n", "\n", "\r\n"]))
    terminators = [eol] * len(lines)
    vary_terminators: bool = draw(st.booleans())
    swaps = draw(st.integers(0, 2)) if vary_terminators and lines else 0
    for _ in range(swaps):
        terminators[draw(st.integers(0, len(lines) - 1))] = draw(st.sampled_from(TERMINATORS))
    no_final_eol: bool = draw(st.booleans())
    if lines and no_final_eol:
        terminators[-1] = ""
    return "".join(line + end for line, end in zip(lines, terminators, strict=True)), mutations


media_hostile_lines = st.one_of(tag_lines(MEDIA_TAGS), uris, st.sampled_from(OTHER_LINES), junk)
master_hostile_lines = st.one_of(tag_lines(MASTER_TAGS), uris, st.sampled_from(OTHER_LINES), junk)


@st.composite
def media_playlists(draw: st.DrawFn) -> str:
    """A hostile media playlist (text)."""
    skeleton = media_skeleton(
        draw(st.integers(0, 6)),
        key=draw(st.booleans()),
        fmp4=draw(st.booleans()),
        byterange=draw(st.booleans()),
    )
    return draw(mutated(skeleton, media_hostile_lines))[0]


@st.composite
def master_playlists(draw: st.DrawFn) -> str:
    """A hostile master playlist (text)."""
    return draw(mutated(master_skeleton(), master_hostile_lines))[0]


def corpus() -> list[tuple[str, bytes]]:
    """The hostile corpus (tests/fixtures/playlists/hostile), name and bytes, sorted."""
    return sorted((path.name, path.read_bytes()) for path in CORPUS.glob("*.m3u8"))


_corpus_lines = [data.decode("utf-8", "surrogateescape").split("\n") for _, data in corpus()]
corpus_texts = st.sampled_from(_corpus_lines).flatmap(
    lambda lines: mutated(lines, media_hostile_lines | master_hostile_lines).map(
        lambda mutant: mutant[0]
    )
)
"""A corpus file, as it is or mutated like the skeletons (so a seed is also varied)."""


def _splice(data: bytes, insert: bytes, at: int) -> bytes:
    return data[:at] + insert + data[at:]


# Bytes as an origin may serve them: random, UTF-8 of hostile text, invalid UTF-8 spliced
# into a playlist, the corpus.
playlist_bytes = st.one_of(
    st.binary(max_size=300),
    media_playlists().map(lambda t: t.encode("utf-8", "surrogatepass")),
    master_playlists().map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.tuples(media_playlists(), st.binary(min_size=1, max_size=8), st.integers(0, 400)).map(
        lambda p: _splice(p[0].encode("utf-8", "surrogatepass"), p[1], p[2])
    ),
    st.sampled_from([data for _, data in corpus()]),
)


# ------------------------------------------------------------------ the oracle

# Anything that is not LF or CRLF but ends a line for some reader (str.splitlines, players).
_OTHER_BREAK = re.compile("\r(?!\n)|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_URI_ATTRIBUTE = re.compile(r'(?<![A-Z0-9-])URI="([^"]*)"')
_ANY_URI_ATTRIBUTE = re.compile(r"[:,][ \t]*(?:[A-Z0-9-]*-)?(?:URI|X-ASSET-LIST)[ \t]*=", re.I)
_PCHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*")
_TOKEN_ATTRIBUTE_TAGS = (
    "#EXT-X-KEY:",
    "#EXT-X-MAP:",
    "#EXT-X-MEDIA:",
    "#EXT-X-I-FRAME-STREAM-INF:",
    "#EXT-X-SESSION-DATA:",
    "#EXT-X-SESSION-KEY:",
    "#EXT-X-PART:",
    "#EXT-X-PRELOAD-HINT:",
    "#EXT-X-RENDITION-REPORT:",
)


def fetched_uris(output: str) -> list[str]:
    """Every URI a player fetches from ``output``: URI lines and URI attributes.

    Split with `str.splitlines`, the most generous splitter there is: the oracle must
    not see fewer lines than a player does.
    """
    assert _OTHER_BREAK.search(output) is None, "a line break other than LF/CRLF in output"
    assert _CONTROL.search(output) is None, "a control character in output"
    found: list[str] = []
    for line in output.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            found.append(stripped)
            continue
        if not line.startswith("#EXT") or line.startswith("#EXTINF"):
            continue  # a comment, or a title: nobody fetches those
        if line.startswith(_TOKEN_ATTRIBUTE_TAGS):
            attributes = _URI_ATTRIBUTE.findall(line)
            assert len(attributes) <= 1, f"two URI attributes: {line!r}"
            found += attributes
        else:
            assert _ANY_URI_ATTRIBUTE.search(line) is None, f"an unsigned URI in: {line!r}"
    return found


def check_signed(output: str, playlist_path: str, *, roots: tuple[str, ...] = (ROOT,)) -> int:
    """Every URI in ``output`` resolves (as a browser would resolve it) to a path under
    one of ``roots`` on the gateway's own host, and carries exactly one token ``t`` that
    verifies for that path. Returns how many URIs there were."""
    uris = fetched_uris(output)
    for uri in uris:
        url = urlsplit(urljoin(BASE + playlist_path, uri))
        assert (url.scheme, url.netloc) == ("https", "gw.example"), f"foreign URI: {uri!r}"
        path = url.path
        assert path.startswith(roots), f"outside the root: {uri!r}"
        assert path not in roots, f"the root itself: {uri!r}"
        assert _PCHARS.fullmatch(path), f"a path a player would percent-encode: {uri!r}"
        assert not set(path.split("/")) & {".", ".."}, f"dot segments: {uri!r}"
        query = parse_qsl(url.query, keep_blank_values=True)
        tokens = [value for name, value in query if name == "t"]
        assert len(tokens) == 1, f"not exactly one token: {uri!r}"
        verify_segment_token(KEYRING, tokens[0], path, now=NOW)
    return len(uris)


def only(
    errors: tuple[type[BaseException], ...],
    function: Callable[_P, _T],
    *args: _P.args,
    **kwargs: _P.kwargs,
) -> _T | None:
    """``function(*args, **kwargs)``, or None when it raised one of ``errors`` (anything
    else propagates and fails the test)."""
    try:
        return function(*args, **kwargs)
    except errors:
        return None
