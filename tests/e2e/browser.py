"""What the browser tests share: Debian's Chromium settings and one viewer's browser."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import BrowserContext, Page, Response

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
WAIT_MS = 30_000
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
PLAYBACK_START = re.compile(r"/v1/playback/[0-9a-f-]{36}$")


@dataclass
class Viewer:
    """One browser (own profile) with one page, and what it did."""

    context: BrowserContext
    page: Page
    base: str
    name: str
    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    sessions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def session_ids(self) -> list[str]:
        return [str(session["session_id"]) for session in self.sessions]

    async def goto(self, path: str) -> Response | None:
        return await self.page.goto(self.base + path, wait_until="domcontentloaded")

    async def screenshot(self, label: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{label}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path

    async def csrf(self) -> str:
        for cookie in await self.context.cookies(self.base):
            if cookie.get("name") == "kush_csrf":
                return str(cookie.get("value", ""))
        return ""

    async def end_sessions(self) -> None:
        """End every playback session this page started (already-ended ones answer 404)."""
        headers = {"X-CSRF-Token": await self.csrf()}
        for session_id in self.session_ids:
            await self.context.request.delete(
                f"{self.base}/v1/playback/{session_id}", headers=headers, timeout=WAIT_MS
            )


OpenViewer = Callable[[str, dict[str, int]], Awaitable[Viewer]]
