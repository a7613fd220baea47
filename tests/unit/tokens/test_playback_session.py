"""The stored form of a playback session: typed fields, a format byte, old entries."""

from __future__ import annotations

import orjson
import pytest

from hls import ContentRendition
from tokens.service.playback_session import (
    SESSION_FORMAT,
    PlannedAd,
    PlannedPod,
    PlaybackSession,
    SessionFormatError,
    ad_plan_from_json,
)


def _session(**over: object) -> PlaybackSession:
    fields: dict[str, object] = {
        "id": "s1",
        "user_id": "u1",
        "movie_id": "m1",
        "plan": "free",
        "renditions": ("360p", "480p"),
        "created_at": 1_700_000_000,
        "expires_at": 1_700_010_000,
        "version": 3,
        "max_height": 480,
        "content_renditions": (
            ContentRendition("480p", 480, "ts"),
            ContentRendition("audio", None, "ts"),
        ),
        "family_id": "f1",
        "ad_plan": (
            PlannedPod(index=0, at_s=0.0, ads=(PlannedAd("a1", "c1"),)),
            PlannedPod(index=1, at_s=60.0, ads=(PlannedAd("a2", "c1"), PlannedAd("a1", "c2"))),
        ),
        "start_offset": 42.5,
    }
    fields.update(over)
    return PlaybackSession(**fields)  # type: ignore[arg-type]


def test_round_trip_keeps_every_typed_field() -> None:
    session = _session()
    raw = session.to_bytes()
    assert raw[:1] == SESSION_FORMAT
    assert PlaybackSession.from_bytes(raw) == session


def test_round_trip_without_ads() -> None:
    session = _session(ad_plan=(), content_renditions=(), start_offset=None)
    assert PlaybackSession.from_bytes(session.to_bytes()) == session
    assert session.ad_plan_json() is None
    assert session.ad_ids() == frozenset()


def test_ad_ids_and_json_form() -> None:
    session = _session()
    assert session.ad_ids() == frozenset({"a1", "a2"})
    plan = session.ad_plan_json()
    assert plan is not None
    assert plan["pods"][1] == {
        "index": 1,
        "at_s": 60.0,
        "ads": [{"ad_id": "a2", "campaign_id": "c1"}, {"ad_id": "a1", "campaign_id": "c2"}],
    }
    assert ad_plan_from_json(plan) == session.ad_plan


def test_entry_of_the_first_release_is_read() -> None:
    """Before the format byte, sessions were JSON with an ``extra`` dict."""
    legacy = {
        "id": "s1",
        "user_id": "u1",
        "movie_id": "m1",
        "plan": "free",
        "renditions": ["360p", "480p"],
        "created_at": 1_700_000_000,
        "expires_at": 1_700_010_000,
        "family_id": "f1",
        "ad_plan": {
            "pods": [{"index": 0, "at_s": 0.0, "ads": [{"ad_id": "a1", "campaign_id": "c1"}]}]
        },
        "client_ip": None,
        "ip_prefix": None,
        "user_agent": "ffmpeg",
        "country": "UG",
        "region": None,
        "start_offset": None,
        "extra": {"version": 2, "max_height": 480, "content_renditions": [["480p", 480, "ts"]]},
    }
    session = PlaybackSession.from_bytes(orjson.dumps(legacy))
    assert session.version == 2
    assert session.max_height == 480
    assert session.content_renditions == (ContentRendition("480p", 480, "ts"),)
    assert session.ad_plan == (PlannedPod(index=0, at_s=0.0, ads=(PlannedAd("a1", "c1"),)),)
    assert session.user_agent == "ffmpeg"


@pytest.mark.parametrize(
    "raw",
    [
        b"\x02" + orjson.dumps({"id": "s1"}),  # a later release's format
        SESSION_FORMAT + b"not json",
        SESSION_FORMAT + orjson.dumps({"id": "s1"}),  # fields missing
        b"{broken",
        b"",
        SESSION_FORMAT
        + orjson.dumps({**orjson.loads(_session().to_bytes()[1:]), "expires_at": "x"}),
    ],
)
def test_unreadable_entries_are_refused_cleanly(raw: bytes) -> None:
    with pytest.raises(SessionFormatError):
        PlaybackSession.from_bytes(raw)


def test_the_plans_stream_limit_travels_with_the_session() -> None:
    session = _session(max_streams=3)
    assert PlaybackSession.from_bytes(session.to_bytes()).max_streams == 3


def test_entries_without_a_stream_limit_read_as_one_stream() -> None:
    """Written before the session carried its plan's limit: the smallest plan's limit,
    so a legacy entry can never be re-admitted beyond what any plan allows."""
    stored = orjson.loads(_session().to_bytes()[1:])
    del stored["max_streams"]
    assert PlaybackSession.from_bytes(SESSION_FORMAT + orjson.dumps(stored)).max_streams == 1
