"""Micro benchmark: ``python -m loadtest.bench_hls [--segments N] [--repeat R]``.

Prints the median time to compile and to render a VOD media playlist of N
segments with one token per URI, and the same per-request work done with the
`m3u8` library (load, rewrite every URI, dump) for comparison. The `m3u8`
library is a development dependency and is imported here only.
"""

import argparse
import statistics
import time
from collections.abc import Callable

from hls import compile_media_playlist

ROOT = "/hls/0b6c7c55-0b1d-4a7e-9d4e-2f1f6a0c9e11/"
PLAYLIST_PATH = ROOT + "720p/index.m3u8"
SAMPLE_TOKEN = "v1.Zk9xX2ZhY2VfdG9rZW5fb2ZfNDNfY2hhcnNfXw.1717000000"


def make_media_playlist(segments: int) -> str:
    """Return a VOD TS media playlist like the ingest's ffmpeg writes."""
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        "#EXT-X-TARGETDURATION:6",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
    ]
    for index in range(segments):
        lines.append("#EXTINF:6.006000,")
        lines.append(f"seg_{index:05d}.ts")
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    """Run ``action`` ``repeat`` times and return the median wall time in seconds."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _m3u8_rewrite(text: str, tokens: list[str]) -> str:
    import m3u8  # a development dependency, used only for this comparison

    playlist = m3u8.loads(text)
    for segment, token in zip(playlist.segments, tokens, strict=True):
        segment.uri = f"{segment.uri}?t={token}"
    return str(playlist.dumps())


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--segments", type=int, default=1200)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args(argv)
    text = make_media_playlist(args.segments)

    template = compile_media_playlist(text, playlist_path=PLAYLIST_PATH, root=ROOT)
    tokens = [SAMPLE_TOKEN] * len(template.paths)
    compile_time = median_seconds(
        lambda: compile_media_playlist(text, playlist_path=PLAYLIST_PATH, root=ROOT), args.repeat
    )
    render_time = median_seconds(lambda: template.render(tokens), args.repeat * 10)
    print(
        f"media playlist: {args.segments} segments, {len(text)} bytes in, "
        f"{len(template.render(tokens))} bytes out"
    )
    print(f"compile (once per origin playlist): {compile_time * 1e3:8.3f} ms")
    print(f"render  (per request):              {render_time * 1e3:8.3f} ms")
    try:
        import m3u8  # noqa: F401
    except ImportError:
        print("m3u8 is not installed: no comparison")
        return
    m3u8_time = median_seconds(lambda: _m3u8_rewrite(text, tokens), max(args.repeat // 10, 5))
    print(f"m3u8 load + rewrite + dumps:        {m3u8_time * 1e3:8.3f} ms")
    print(f"ratio m3u8 / render:  {m3u8_time / render_time:8.0f}x")
    print(f"ratio m3u8 / compile: {m3u8_time / compile_time:8.1f}x")


if __name__ == "__main__":
    main()
