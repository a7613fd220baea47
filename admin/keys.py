"""The admin app's typed keys for its own resources (shared by its route modules)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from origin import OriginStore

admin_origin_key = web.AppKey("admin_origin", OriginStore)
background_key = web.AppKey("background", set[asyncio.Task[None]])
encode_slots_key = web.AppKey("encode_slots", asyncio.Semaphore)
