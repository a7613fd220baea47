"""Real-browser fixtures: the gateway on a real port and Debian's Chromium via Playwright.

Playwright drives the system's ``/usr/bin/chromium`` (never ``playwright install``,
which would download a browser). Each viewer gets a fresh user data dir. Every playback
session a page opens is ended when its viewer closes, so a failed test never holds a
stream slot that a later test (or the integration tests) needs.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Response, async_playwright

from gateway.app import create_app
from gateway.pages import STATIC_DIR
from runtime.settings import Settings
from tests.e2e.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PLAYBACK_START,
    WAIT_MS,
    OpenViewer,
    Viewer,
)


def _missing(reason: str) -> None:
    """Skip on a developer's machine; fail in CI, where .ci/run installs everything."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
async def gateway_url(play_settings: Settings, aiohttp_server: Any) -> str:
    """The gateway (with the test film and demo accounts) on a real 127.0.0.1 port."""
    server = await aiohttp_server(create_app(play_settings), host="127.0.0.1")
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
def browser_ready() -> None:
    """Chromium and the vendored hls.js are installed."""
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} not found (apt-get install chromium)")
    if not (STATIC_DIR / "vendor" / "hls.min.js").is_file():
        _missing("gateway/static/vendor/hls.min.js missing: run scripts/vendor.sh")


@pytest.fixture
async def open_viewer(
    browser_ready: None, gateway_url: str, tmp_path: Path
) -> AsyncIterator[OpenViewer]:
    """Factory: ``await open_viewer("free-phone", PHONE)`` -> a fresh Chromium viewer."""
    viewers: list[Viewer] = []
    async with async_playwright() as pw:

        async def open_one(name: str, viewport: dict[str, int]) -> Viewer:
            context = await pw.chromium.launch_persistent_context(
                str(tmp_path / f"profile-{name}"),
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": viewport["width"], "height": viewport["height"]},
                device_scale_factor=1,
                is_mobile=viewport["width"] < 600,
                has_touch=viewport["width"] < 600,
            )
            context.set_default_timeout(WAIT_MS)
            page = context.pages[0] if context.pages else await context.new_page()
            viewer = Viewer(context=context, page=page, base=gateway_url, name=name)
            page.on("pageerror", lambda exc: viewer.page_errors.append(str(exc)))

            def on_console(message: Any) -> None:
                if "Content Security Policy" in message.text:
                    viewer.csp_violations.append(message.text)

            async def on_response(response: Response) -> None:
                started = response.request.method == "POST" and response.status == 201
                if started and PLAYBACK_START.search(response.url):
                    viewer.sessions.append(await response.json())

            page.on("console", on_console)
            page.on("response", on_response)
            viewers.append(viewer)
            return viewer

        try:
            yield open_one
        finally:
            for viewer in viewers:
                try:
                    await viewer.end_sessions()
                finally:
                    await viewer.context.close()
