"""Fuzzing the playlist core and the gateway's playlist cache with hostile playlists.

Properties, for any input:

* only `PlaylistError` is raised (`ForeignUriError` is one), never anything else;
* a playlist that is accepted comes out with every URI a player would fetch (URI
  lines, ``URI="..."`` attributes) resolved on the gateway's host under the film's
  root and carrying exactly one segment token that verifies for that path, with no
  tag left that would make a player fetch anything else, and no line break but LF or
  CRLF (see `hostile.check_signed`);
* the output re-parses;
* cost is bounded by refusing input over `MAX_PLAYLIST_BYTES` (tests/fuzz/test_limits.py),
  never by timing anything.

Examples per property: the active Hypothesis profile (tests/conftest.py): 100 in
`make test`, at least 10 000 in `make fuzz`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from gateway.playlists import PlaylistCache, origin_key_for
from hls import (
    AdCreative,
    AdMedia,
    PlaylistError,
    Pod,
    compile_master_playlist,
    compile_media_playlist,
    parse_master_playlist,
    parse_media_playlist,
    stitch_media_playlist,
)
from hls.text import decode_playlist
from origin import LocalOrigin, ObjectTooLarge
from tests.fuzz.hostile import (
    ADS_ROOT,
    MASTER_PATH,
    MEDIA_PATH,
    ROOT,
    check_signed,
    corpus_texts,
    master_playlists,
    media_playlists,
    only,
    playlist_bytes,
    signer,
)

media_texts = media_playlists() | corpus_texts
master_texts = master_playlists() | corpus_texts


def _outcome(accepted: bool, label: str) -> None:
    event(f"{label}: {'accepted' if accepted else 'refused'}")


@given(playlist_bytes)
def test_decode_and_parse_raise_only_playlist_error(data: bytes) -> None:
    text = only((PlaylistError,), decode_playlist, data)
    _outcome(text is not None, "decoded")
    if isinstance(text, str):
        only((PlaylistError,), parse_media_playlist, text)
        only((PlaylistError,), parse_master_playlist, text)


@given(media_texts)
def test_media_playlists_are_signed_or_refused(text: str) -> None:
    template = only(
        (PlaylistError,),
        lambda: compile_media_playlist(text, playlist_path=MEDIA_PATH, root=ROOT),
    )
    parsed = only((PlaylistError,), parse_media_playlist, text)
    _outcome(template is not None, "compiled")
    if template is None:
        return
    output = template.render(signer().sign_many(template.paths), start_offset=3.5)
    assert check_signed(output, MEDIA_PATH) == len(template.paths)
    reparsed = parse_media_playlist(output)
    # The parser accepts what the compiler accepts, and they agree on the segments.
    assert parsed is not None
    assert [s.duration for s in reparsed.segments] == [s.duration for s in parsed.segments]


@given(master_texts, st.sampled_from([None, 360, 720]), st.sampled_from([None, 480, 1080]))
def test_master_playlists_are_signed_or_refused(
    text: str, max_height: int | None, preferred: int | None
) -> None:
    master = only(
        (PlaylistError,),
        lambda: compile_master_playlist(
            text,
            playlist_path=MASTER_PATH,
            root=ROOT,
            max_height=max_height,
            preferred_height=preferred,
        ),
    )
    parsed = only((PlaylistError,), parse_master_playlist, text)
    _outcome(master is not None, "compiled")
    if master is None:
        return
    output = master.render(signer().sign_many(master.paths))
    assert check_signed(output, MASTER_PATH) == len(master.paths)
    reparsed = parse_master_playlist(output)
    assert parsed is not None
    assert len(reparsed.variants) == len(master.variants)


def _ad(container: str) -> AdCreative:
    extension = "ts" if container == "ts" else "m4s"
    return AdCreative(
        ad_id=f"ad-{container}",
        campaign_id="c1",
        renditions=(
            AdMedia(
                name="720p",
                height=720,
                container=container,  # type: ignore[arg-type]
                segments=tuple(
                    (f"/hls/ads/ad-{container}/720p/seg_{i:05d}.{extension}", 5.0) for i in range(2)
                ),
                init_path=f"/hls/ads/ad-{container}/720p/init.mp4" if container == "fmp4" else None,
            ),
        ),
    )


@given(media_texts, st.lists(st.sampled_from([0.0, 3.9, 4.0, 10.0, 1e9]), max_size=3))
def test_stitched_playlists_are_signed_or_refused(text: str, times: list[float]) -> None:
    # the container the content says it is, so that most playlists can be stitched
    container = "fmp4" if "#EXT-X-MAP" in text else "ts"
    ad = _ad(container)
    pods = [Pod(index=i, at_s=at, ads=(ad,)) for i, at in enumerate(times)]
    stitched = only(
        (PlaylistError,),
        lambda: stitch_media_playlist(
            text,
            playlist_path=MEDIA_PATH,
            root=ROOT,
            pods=pods,
            content_height=720,
            content_container=container,
        ),
    )
    _outcome(stitched is not None, f"stitched with {len(pods)} pods")
    if stitched is None:
        return
    template = stitched.template
    output = template.render(signer().sign_many(template.paths))
    assert check_signed(output, MEDIA_PATH, roots=(ROOT, ADS_ROOT)) == len(template.paths)
    reparsed = parse_media_playlist(output)
    content = parse_media_playlist(text)
    ads = sum(1 for s in reparsed.segments if s.uri.startswith(ADS_ROOT))
    assert len(reparsed.segments) - ads == len(content.segments)
    assert ads == 2 * len(stitched.pods)


@pytest.fixture(scope="module")
def origin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One origin directory for every example (each overwrites the two playlists)."""
    return tmp_path_factory.mktemp("fuzz-origin")


@given(data=playlist_bytes, kind=st.sampled_from(["media", "master"]))
def test_gateway_playlist_cache_refuses_with_playlist_error_only(
    origin_dir: Path, data: bytes, kind: str
) -> None:
    """`gateway.playlists.PlaylistCache` over a real local origin: whatever bytes are
    stored, loading raises only PlaylistError, and what loads is signed."""

    async def load() -> None:
        origin = LocalOrigin(origin_dir)
        await origin.put_bytes(origin_key_for("m1", "720p", "index.m3u8"), data)
        await origin.put_bytes(origin_key_for("m1", "master.m3u8"), data)
        cache = PlaylistCache(origin)
        if kind == "media":
            entry = await cache.media("m1", 1, "720p", "index.m3u8")
            output = entry.template.render(signer().sign_many(entry.template.paths))
            check_signed(output, MEDIA_PATH)
            assert set(entry.starts) <= set(entry.template.paths)
        else:
            movie = _Movie()
            master = await cache.master(movie, max_height=720, preferred=360)  # type: ignore[arg-type]
            check_signed(master.render(signer().sign_many(master.paths)), MASTER_PATH)
            await cache.audio_playlists(movie)  # type: ignore[arg-type]

    try:
        asyncio.run(load())
        event(f"{kind}: loaded")
    except (PlaylistError, ObjectTooLarge):
        event(f"{kind}: refused")


class _Movie:
    """What `PlaylistCache.master` reads of a `gateway.repository.Movie`."""

    id = "m1"
    version = 1
    master_key = None
