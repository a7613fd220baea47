"""Which rendition of an ad plays in which content rendition, identically in all of them.

A session plays several content renditions (video rungs, an audio-only or
alternate-audio playlist) and a player switches between them. Each must get the
same pods with the same discontinuities at the same times (RFC 8216 §6.2.2,
§6.3.3), so the pods are aligned once per session (`align_pods`) before any
rendition is stitched.
"""

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Final

from .model import AdCreative, AdMedia, AdSegment, Pod

ALIGNMENT_TOLERANCE_S: Final = 0.001
"""Largest difference between an ad's segment durations in two renditions (1 ms).

An ad that passes is written with one set of durations in every rendition (see
`align_pods`), so this bounds how far an EXTINF may misstate the segment it
describes: a millisecond a segment stays well below one video frame over a
whole pod. It is tighter than ingest's check across a film's renditions, which
asks another question (may a player switch between them, §6.2.4) and so allows
for audio cut on AAC frames.
"""


def choose_ad_rendition(
    content_height: int | None, content_container: str, ad: AdCreative
) -> AdMedia | None:
    """The rendition of ``ad`` to play inside a content rendition, or None if none fits.

    Same container (§3: one playlist cannot mix how its segments are packed
    without a discontinuity and map for each, and we keep the ladder simple);
    audio-only content (no height) gets an audio-only ad rendition, video the
    one closest in height, the lower on a tie (cheaper on mobile data).
    """
    best: AdMedia | None = None
    best_key = (0, False)
    for media in ad.renditions:
        if media.container != content_container:
            continue
        if media.height is None or content_height is None:
            if media.height is None and content_height is None and best is None:
                best = media
            continue
        key = (abs(media.height - content_height), media.height > content_height)
        if best is None or key < best_key:
            best, best_key = media, key
    return best


def _align_ad(
    ad: AdCreative, renditions: Sequence[tuple[str, int | None, str]]
) -> AdCreative | None:
    """``ad`` narrowed to the renditions the session plays, or None if they differ."""
    chosen: list[AdMedia] = []
    for _, height, container in renditions:
        media = choose_ad_rendition(height, container, ad)
        if media is None:
            return None
        chosen.append(media)
    reference = chosen[0].segments
    for media in chosen[1:]:
        if len(media.segments) != len(reference):
            return None
        for (_, duration), (_, expected) in zip(media.segments, reference, strict=True):
            if abs(duration - expected) > ALIGNMENT_TOLERANCE_S + 1e-9:
                return None
    # Every kept rendition gets the reference durations, so every playlist of
    # the session writes byte-identical EXTINF values for the ad.
    kept = tuple(
        replace(
            media,
            segments=tuple(
                AdSegment(path, expected)
                for (path, _), (_, expected) in zip(media.segments, reference, strict=True)
            ),
        )
        for media in ad.renditions
        if any(media is choice for choice in chosen)
    )
    return replace(ad, renditions=kept)


def align_pods(
    pods: Iterable[Pod], content_renditions: Sequence[tuple[str, int | None, str]]
) -> tuple[Pod, ...]:
    """Keep only the ads that play identically in every content rendition of a session.

    ``content_renditions`` are ``(name, height, container)`` for every video
    rendition and alternate-audio playlist. An ad stays in its pod only if
    `choose_ad_rendition` finds a rendition for each, all with the same
    segment count and durations within `ALIGNMENT_TOLERANCE_S`; otherwise it
    is dropped for all of them, and empty pods disappear. Kept ads are narrowed
    to the chosen renditions with one set of durations, so each stitched
    playlist has the same discontinuities at the same times: players align
    renditions by discontinuity sequence and time (§6.2.2, §6.3.3), and
    misaligned ones stall at ad breaks.
    """
    if not content_renditions:
        raise ValueError("align_pods needs at least one content rendition")
    aligned: list[Pod] = []
    for pod in pods:
        ads = tuple(kept for kept in (_align_ad(ad, content_renditions) for ad in pod.ads) if kept)
        if ads:
            aligned.append(replace(pod, ads=ads))
    return tuple(aligned)
