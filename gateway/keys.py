"""The gateway's typed application state, declared once."""

from __future__ import annotations

from aiohttp import web

from gateway.catalogue import Trending
from gateway.playback import Playback

playback_key = web.AppKey("playback", Playback)
trending_key = web.AppKey("trending", Trending)
