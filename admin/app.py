"""``create_app(settings)``: the admin application factory."""

from __future__ import annotations

from aiohttp import web

from kush.settings import Settings
from kush.web import base_app


def create_app(settings: Settings) -> web.Application:
    """Build the admin app; resources open in ``cleanup_ctx``, nothing at import time."""
    app = base_app(settings, "admin")
    return app
