"""``create_app(settings)``: the gateway application factory."""

from __future__ import annotations

from aiohttp import web

from kush.settings import Settings
from kush.web import base_app


def create_app(settings: Settings) -> web.Application:
    """Build the gateway app; resources open in ``cleanup_ctx``, nothing at import time."""
    app = base_app(settings, "gateway")
    return app
