"""A playback session as data: who watches what with which plan and ad plan, and its
stored form (a format byte, then JSON) that every gateway process and release reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from hls import ContentRendition


@dataclass(frozen=True, slots=True)
class PlannedAd:
    """One creative of a pod, and the campaign it is delivered for."""

    ad_id: str
    campaign_id: str


@dataclass(frozen=True, slots=True)
class PlannedPod:
    """An ad break decided at session start: where it goes and what plays in it."""

    index: int
    at_s: float
    ads: tuple[PlannedAd, ...]


#: A session's ad decisions, made once at playback start (empty: no ads).
AdPlan = tuple[PlannedPod, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaybackSession:
    """One viewer watching one film with one plan.

    ``renditions`` are the rendition folders the plan allows; ``content_renditions`` the
    media playlists the session's ad pods must line up across (ad sessions only);
    ``version`` the film version whose playlist templates the session plays.
    """

    id: str
    user_id: str
    movie_id: str
    plan: str
    renditions: tuple[str, ...]
    created_at: int
    expires_at: int
    version: int = 1
    max_height: int = 0
    content_renditions: tuple[ContentRendition, ...] = ()
    family_id: str | None = None
    ad_plan: AdPlan = ()
    client_ip: str | None = None
    ip_prefix: str | None = None
    user_agent: str | None = None
    country: str | None = None
    region: str | None = None
    start_offset: float | None = None
    #: the plan's concurrent-stream limit, checked again when a paused stream resumes
    max_streams: int = 1
    #: a data-saver session (the account's setting or ``Save-Data: on``): capped height,
    #: smallest rendition listed first, lighter ads
    data_saver: bool = False

    def ad_ids(self) -> frozenset[str]:
        """Every creative planned in this session's pods."""
        return frozenset(ad.ad_id for pod in self.ad_plan for ad in pod.ads)

    def to_bytes(self) -> bytes:
        """The Redis form: a format version byte, then JSON."""
        return SESSION_FORMAT + orjson.dumps(_session_dict(self))

    @classmethod
    def from_bytes(cls, raw: bytes | str) -> PlaybackSession:
        """Read a stored session; :class:`SessionFormatError` for anything unreadable,
        so an entry written by another release is refused cleanly, never a crash."""
        data = raw.encode() if isinstance(raw, str) else raw
        try:
            if data[:1] == SESSION_FORMAT:
                return _session_from(orjson.loads(data[1:]))
            if data[:1] == b"{":  # written before the format byte existed
                return _session_from_legacy(orjson.loads(data))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise SessionFormatError(f"unreadable playback session: {err}") from err
        raise SessionFormatError(f"unknown playback session format {data[:1]!r}")

    def ad_plan_json(self) -> dict[str, Any] | None:
        """The ad plan as stored in PostgreSQL (``playback_sessions.ad_plan``)."""
        return _ad_plan_dict(self.ad_plan) if self.ad_plan else None


class SessionFormatError(ValueError):
    """A stored session this release cannot read."""


#: Version byte of the Redis encoding; bump it when a field changes meaning (a new field
#: with a default keeps it: older readers ignore the field, newer ones default it).
SESSION_FORMAT = b"\x01"


def _ad_plan_dict(plan: AdPlan) -> dict[str, Any]:
    return {
        "pods": [
            {
                "index": pod.index,
                "at_s": pod.at_s,
                "ads": [{"ad_id": a.ad_id, "campaign_id": a.campaign_id} for a in pod.ads],
            }
            for pod in plan
        ]
    }


def ad_plan_from_json(data: Any) -> AdPlan:
    """The typed plan from its JSON form (``{"pods": [{index, at_s, ads: [...]}]}``)."""
    if not data:
        return ()
    return tuple(
        PlannedPod(
            index=int(p["index"]),
            at_s=float(p["at_s"]),
            ads=tuple(PlannedAd(str(a["ad_id"]), str(a["campaign_id"])) for a in p["ads"]),
        )
        for p in data["pods"]
    )


def _session_dict(s: PlaybackSession) -> dict[str, Any]:
    return {
        "id": s.id,
        "user_id": s.user_id,
        "movie_id": s.movie_id,
        "plan": s.plan,
        "renditions": list(s.renditions),
        "created_at": s.created_at,
        "expires_at": s.expires_at,
        "version": s.version,
        "max_height": s.max_height,
        "content_renditions": [list(r) for r in s.content_renditions],
        "family_id": s.family_id,
        "ad_plan": _ad_plan_dict(s.ad_plan) if s.ad_plan else None,
        "client_ip": s.client_ip,
        "ip_prefix": s.ip_prefix,
        "user_agent": s.user_agent,
        "country": s.country,
        "region": s.region,
        "start_offset": s.start_offset,
        "max_streams": s.max_streams,
        "data_saver": s.data_saver,
    }


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _session_from(d: dict[str, Any]) -> PlaybackSession:
    offset = d.get("start_offset")
    return PlaybackSession(
        id=str(d["id"]),
        user_id=str(d["user_id"]),
        movie_id=str(d["movie_id"]),
        plan=str(d["plan"]),
        renditions=tuple(str(r) for r in d["renditions"]),
        created_at=int(d["created_at"]),
        expires_at=int(d["expires_at"]),
        version=int(d.get("version", 1)),
        max_height=int(d.get("max_height", 0)),
        content_renditions=tuple(
            ContentRendition(str(r[0]), None if r[1] is None else int(r[1]), str(r[2]))
            for r in d.get("content_renditions") or ()
        ),
        family_id=_opt_str(d.get("family_id")),
        ad_plan=ad_plan_from_json(d.get("ad_plan")),
        client_ip=_opt_str(d.get("client_ip")),
        ip_prefix=_opt_str(d.get("ip_prefix")),
        user_agent=_opt_str(d.get("user_agent")),
        country=_opt_str(d.get("country")),
        region=_opt_str(d.get("region")),
        start_offset=None if offset is None else float(offset),
        # entries written before the field existed: the smallest plan's limit
        max_streams=int(d.get("max_streams", 1)),
        data_saver=bool(d.get("data_saver", False)),
    )


def _session_from_legacy(d: dict[str, Any]) -> PlaybackSession:
    """The first release kept version, height and renditions in an ``extra`` dict."""
    extra = d.pop("extra", None) or {}
    d.update({k: extra[k] for k in ("version", "max_height", "content_renditions") if k in extra})
    return _session_from(d)
