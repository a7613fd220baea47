"""The watch page's data lines in Chromium: the estimate before playing and what this
film used so far with the month's total (GET /v1/me/usage), plus usage.js's helpers."""

from __future__ import annotations

import pytest

from tests.conftest import Film
from tests.e2e.browser import DESKTOP, PHONE, WAIT_MS, OpenViewer
from tests.e2e.test_watch_page import (
    assert_clean,
    leave_and_end_session,
    sign_in_with_form,
    wait_playing_past,
)

pytestmark = pytest.mark.slow


async def test_usage_module(open_viewer: OpenViewer) -> None:
    viewer = await open_viewer("usage-module", DESKTOP)
    await viewer.goto("/upgrade")
    result = await viewer.page.evaluate(
        """async () => {
          const u = await import('/static/usage.js');
          const renditions = [
            {name: '360p', height: 360, megabytes: 190.2},
            {name: '480p', height: 480, megabytes: 310.4},
            {name: '1080p', height: 1080, megabytes: 1200},
            {name: 'audio', height: null, megabytes: 5}];
          return {
            small: u.formatBytes(4e5),
            mb: u.formatBytes(84e6),
            gb: u.formatBytes(1.25e9),
            line: u.usageLine(
              {total_bytes: 312e6, items: [{movie_id: 'm', bytes: 84e6, sessions: 2}]}, 'm'),
            none: u.usageLine({total_bytes: 0, items: []}, 'm'),
            estimate: u.estimateLine(renditions),
            empty: u.estimateLine([]),
          };
        }"""
    )
    assert result == {
        "small": "400 KB",
        "mb": "84 MB",
        "gb": "1.3 GB",
        "line": "This film used 84 MB so far · 312 MB this month",
        "none": "This film used 0 KB so far · 0 KB this month",
        "estimate": "About 310 MB at 480p · 190 MB at 360p for the whole film",
        "empty": "",
    }
    assert_clean(viewer)


async def test_the_watch_page_shows_the_estimate_and_the_data_used(
    open_viewer: OpenViewer, film: Film
) -> None:
    viewer = await open_viewer("usage-phone", PHONE)
    page = viewer.page
    await viewer.goto(f"/watch/{film.movie_id}")
    estimate = page.locator("#movie-estimate").filter(has_text="MB at 480p")
    await estimate.wait_for(timeout=WAIT_MS)
    await page.locator("#overlay-action").filter(has_text="Sign in").click()
    await sign_in_with_form(viewer, "basic@demo.kush")
    await wait_playing_past(viewer, 1.0)
    used = page.locator("#data-usage").filter(has_text="This film used")
    await used.wait_for(timeout=WAIT_MS)
    text = await used.inner_text()
    assert "this month" in text
    await viewer.screenshot("watch-data-usage")
    await leave_and_end_session(viewer)
    assert_clean(viewer)
