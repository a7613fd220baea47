"""App keys of the admin service's billing part."""

from __future__ import annotations

from aiohttp import web

from tokens.service.sessions import SessionStore

#: The playback session store, to end sessions a plan change no longer covers.
admin_sessions_key = web.AppKey("billing_sessions", SessionStore)
