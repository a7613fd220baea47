"""One `StitchSource` reused for many pod plans stitches exactly what
`stitch_media_playlist` stitches from the text each time (the gateway keeps one
source per content playlist and stitches every new pod plan from it)."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from hls import (
    PlaylistError,
    Pod,
    StitchedPlaylist,
    StitchSource,
    stitch_media_playlist,
    stitch_source,
)
from tests.unit.hls.test_ads_properties import RENDITIONS, ROOT, Content, render, sessions


def _outcome(action: Callable[[], StitchedPlaylist]) -> object:
    """Everything a stitch yields, or the error it raises."""
    try:
        found = action()
    except (PlaylistError, ValueError) as err:
        return f"{type(err).__name__}: {err}"
    return (
        render(found),
        found.pods,
        dict(found.content_segments),
        {path: tuple(infos) for path, infos in found.ad_segments.items()},
    )


@given(sessions(), st.lists(sessions(), min_size=1, max_size=3), st.sampled_from(RENDITIONS))
def test_a_reused_source_stitches_every_pod_plan_like_the_text(
    first: tuple[Content, tuple[Pod, ...]],
    more: list[tuple[Content, tuple[Pod, ...]]],
    rendition: tuple[str, int | None],
) -> None:
    content, text = first[0], first[0].text()
    name, height = rendition
    path = f"{ROOT}{name}/index.m3u8"
    source = StitchSource(text, playlist_path=path, root=ROOT)
    other = "ts" if content.container == "fmp4" else "fmp4"
    # other sessions' pods on this content, the wrong container (refused), then the
    # first plan again from a source used by all of them
    plans = [first[1], *(pods for _, pods in more), first[1]]
    for pods in plans:
        for container in (other, content.container):

            def reused(
                pods: tuple[Pod, ...] = pods, container: str = container
            ) -> StitchedPlaylist:
                return stitch_source(
                    source, pods=pods, content_height=height, content_container=container
                )

            def fresh(pods: tuple[Pod, ...] = pods, container: str = container) -> StitchedPlaylist:
                return stitch_media_playlist(
                    text,
                    playlist_path=path,
                    root=ROOT,
                    pods=pods,
                    content_height=height,
                    content_container=container,
                )

            assert _outcome(reused) == _outcome(fresh)
