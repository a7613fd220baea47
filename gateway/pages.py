"""The viewer's web pages: catalogue at ``/``, player at ``/watch/{movie_id}``, plans and
Stripe Checkout at ``/upgrade``.

Plain HTML shells filled in by the page scripts from the ``/v1`` API (no build step);
their scripts and styles are served from ``/static/`` (``gateway/static``). hls.js is a
dependency fetched by ``scripts/vendor.sh`` into ``gateway/static/vendor/`` (or loaded
from ``KUSH_HLSJS_URL``). Pages carry a strict Content-Security-Policy: scripts, styles
and API calls only from this site (plus the configured hls.js and public URL), media
from this site or ``blob:`` (Media Source Extensions), no inline script.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

from aiohttp import web

from runtime.errors import NotFound
from runtime.settings import DEFAULT_HLSJS_URL, Settings
from runtime.web import settings_key

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/static/"
VENDOR_HLS_WORKER_URL = "/static/vendor/hls.worker.js"

OWN_CACHE_CONTROL = "public, max-age=300"
VENDOR_CACHE_CONTROL = "public, max-age=86400"
PAGE_CACHE_CONTROL = "no-cache"

#: What ``/static/`` serves: our files at the top level and fetched ones under ``vendor/``,
#: by allow-listed name and extension only (never the HTML templates, never a listing).
_STATIC_NAME_RE = re.compile(r"^(?:vendor/)?[a-z0-9][a-z0-9_-]*(?:\.[a-z0-9_-]+)*\.(js|css|svg)$")
_STATIC_TYPES: Mapping[str, str] = {
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
}
_TEMPLATES = ("shell", "catalogue", "watch", "notice", "upgrade")
NOT_CONFIGURED = (
    "Paid plans (Basic and Premium) cannot be bought on this site yet: billing is not "
    "configured. Nothing has been charged and your plan has not changed. To configure it, "
    "an operator sets STRIPE_SECRET_KEY, STRIPE_PRICE_BASIC and STRIPE_PRICE_PREMIUM "
    "(see the README's Billing section) and restarts the service."
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PageShell:
    """The page templates and the headers every page carries, built once at start-up."""

    templates: Mapping[str, Template]
    headers: Mapping[str, str]
    hlsjs_url: str
    hls_worker_url: str

    def render(self, *, title: str, page: str, script: str, body: str, head: str = "") -> str:
        """The shell around one page's body; ``title`` is escaped, the rest is markup."""
        return self.templates["shell"].substitute(
            title=html.escape(title), page=page, script=script, head=head, main=body
        )

    def fragment(self, name: str, **values: str) -> str:
        """One page body with its placeholders filled in, every value escaped."""
        escaped = {key: html.escape(value, quote=True) for key, value in values.items()}
        return self.templates[name].substitute(escaped)


pages_key = web.AppKey("pages", PageShell)


def _origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an absolute http(s) URL, ``None`` for a path."""
    parts = urlsplit(url)
    if parts.scheme in {"http", "https"} and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return None


def content_security_policy(settings: Settings) -> str:
    """The pages' CSP: only this site, the configured hls.js host and public URL.

    ``blob:`` in ``media-src`` is what Media Source Extensions attach to ``<video>``;
    hls.js's transmuxing worker is loaded from a same-origin file, not a ``blob:``.
    """
    script = ["'self'"]
    hls_origin = _origin_of(settings.hlsjs_url)
    if hls_origin:
        script.append(hls_origin)
    remote = ["'self'"]
    public_origin = _origin_of(settings.public_url or "")
    if public_origin:
        remote.append(public_origin)
    directives = {
        "default-src": ["'none'"],
        "script-src": script,
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "media-src": [*remote, "blob:"],
        "connect-src": remote,
        "worker-src": ["'self'"],
        "manifest-src": ["'self'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


def page_headers(settings: Settings) -> dict[str, str]:
    """Security and cache headers of every HTML page."""
    return {
        "Content-Security-Policy": content_security_policy(settings),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "X-Frame-Options": "DENY",
        "Cache-Control": PAGE_CACHE_CONTROL,
    }


def load_pages(settings: Settings, static_dir: Path = STATIC_DIR) -> PageShell:
    """Read the page templates once (start-up), and note whether hls.js is vendored."""
    templates = {
        name: Template((static_dir / f"{name}.html").read_text(encoding="utf-8"))
        for name in _TEMPLATES
    }
    vendored = settings.hlsjs_url == DEFAULT_HLSJS_URL
    if vendored and not (static_dir / "vendor" / "hls.min.js").is_file():
        log.warning("hls.js is missing from gateway/static/vendor: run scripts/vendor.sh")
    return PageShell(
        templates=templates,
        headers=page_headers(settings),
        hlsjs_url=settings.hlsjs_url,
        # hls.js's worker must be same-origin; with hls.js from elsewhere it runs inline.
        hls_worker_url=VENDOR_HLS_WORKER_URL if vendored else "",
    )


def _html(pages: PageShell, text: str, *, status: int = 200) -> web.Response:
    return web.Response(
        text=text, status=status, content_type="text/html", headers=dict(pages.headers)
    )


async def catalogue_page(request: web.Request) -> web.Response:
    """GET / -> the catalogue (films, search, sign in)."""
    pages = request.app[pages_key]
    body = pages.fragment("catalogue")
    text = pages.render(title="Films", page="catalogue", script="catalogue.js", body=body)
    return _html(pages, text)


async def watch_page(request: web.Request) -> web.Response:
    """GET /watch/{movie_id} -> the player; the film's id must be a UUID."""
    pages = request.app[pages_key]
    try:
        movie_id = str(uuid.UUID(request.match_info["movie_id"]))
    except ValueError:
        return _notice(pages, "Film not found", "There is no film at this address.", status=404)
    head = f'<script defer src="{html.escape(pages.hlsjs_url, quote=True)}"></script>'
    body = pages.fragment("watch", movie_id=movie_id, hls_worker_url=pages.hls_worker_url)
    text = pages.render(title="Watch", page="watch", script="watch.js", body=body, head=head)
    return _html(pages, text)


async def upgrade_page(request: web.Request) -> web.Response:
    """GET /upgrade -> the plans, the viewer's subscription and Stripe Checkout; without
    ``STRIPE_SECRET_KEY`` it says plainly that nothing can be bought yet, and how to
    configure it."""
    pages = request.app[pages_key]
    configured = request.app[settings_key].billing_configured
    body = pages.fragment(
        "upgrade",
        configured="true" if configured else "false",
        notice="" if configured else NOT_CONFIGURED,
        notice_hidden=" hidden" if configured else "",
    )
    text = pages.render(title="Upgrade", page="upgrade", script="upgrade.js", body=body)
    return _html(pages, text)


def _notice(pages: PageShell, title: str, message: str, *, status: int = 200) -> web.Response:
    body = pages.fragment("notice", heading=title, message=message)
    text = pages.render(title=title, page="notice", script="notice.js", body=body)
    return _html(pages, text, status=status)


async def static_file(request: web.Request) -> web.FileResponse:
    """GET /static/{name} -> one allow-listed file; vendored files are cached longer."""
    name = request.match_info["name"]
    match = _STATIC_NAME_RE.match(name)
    if match is None or ".." in name:
        raise NotFound("No such file", code="not_found")
    path = STATIC_DIR / name
    if not await asyncio.to_thread(path.is_file):
        raise NotFound("No such file", code="not_found")
    vendored = name.startswith("vendor/")
    return web.FileResponse(
        path,
        headers={
            "Content-Type": _STATIC_TYPES[match[1]],
            "Cache-Control": VENDOR_CACHE_CONTROL if vendored else OWN_CACHE_CONTROL,
            "X-Content-Type-Options": "nosniff",
        },
    )


async def _favicon(request: web.Request) -> web.Response:
    """GET /favicon.ico -> the SVG icon's address (browsers ask for this path)."""
    raise web.HTTPMovedPermanently(location=f"{STATIC_PREFIX}favicon.svg")


def setup_routes(app: web.Application) -> None:
    """Mount the pages and their static files."""
    app[pages_key] = load_pages(app[settings_key])
    r = app.router
    r.add_get("/", catalogue_page)
    r.add_get("/watch/{movie_id}", watch_page)
    r.add_get("/upgrade", upgrade_page)
    r.add_get("/favicon.ico", _favicon)
    r.add_get(STATIC_PREFIX + "{name:[A-Za-z0-9._/-]+}", static_file)
