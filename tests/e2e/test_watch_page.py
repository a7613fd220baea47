"""The watch page in a real browser: sign in, catalogue, playback with hls.js, quality
menu and data saver per plan, the sign-in prompt, the "Ad" label.

Every wait is bounded (``WAIT_MS``); nothing asserts on timing. Screenshots go to
``test-artifacts/e2e/``.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Route

from tests.conftest import DEMO_PASSWORD, AdFilm, Film
from tests.e2e.browser import DESKTOP, PHONE, WAIT_MS, OpenViewer, Viewer

pytestmark = pytest.mark.slow

H264_AAC = 'video/mp4; codecs="avc1.64001f,mp4a.40.2"'

LEVELS_JS = "() => window.kushPlayer.hls.levels.map((level) => level.height)"
MENU_JS = """() => Array.from(document.querySelectorAll('#quality option'))
    .map((option) => ({value: Number(option.value), label: option.textContent}))"""


async def sign_in_with_form(viewer: Viewer, email: str) -> None:
    """Fill and submit the sign-in sheet (already open or opened by the caller)."""
    page = viewer.page
    await page.locator("#signin-dialog").wait_for(state="visible", timeout=WAIT_MS)
    await page.fill("#signin-email", email)
    await page.fill("#signin-password", DEMO_PASSWORD)
    await page.click("#signin-submit")


async def wait_playing_past(viewer: Viewer, seconds: float) -> None:
    await viewer.page.wait_for_function(
        "(s) => window.kushPlayer && window.kushPlayer.video.currentTime > s",
        arg=seconds,
        timeout=WAIT_MS,
    )


async def leave_and_end_session(viewer: Viewer) -> None:
    """Navigate away: the page's pagehide handler ends its session with a keepalive
    DELETE. Playwright does not report requests of an unloading document, so look at the
    server: the session's own manifest URL is refused once the session has ended."""
    assert viewer.sessions
    manifest_url = viewer.sessions[-1]["manifest_url"]
    await viewer.goto("/upgrade")
    deadline = time.monotonic() + WAIT_MS / 1000
    status = 0
    while time.monotonic() < deadline:
        status = (await viewer.context.request.get(manifest_url, timeout=WAIT_MS)).status
        if status == 403:
            break
        await asyncio.sleep(0.2)
    assert status == 403, "the playback session was not ended when the page went away"


async def start_via_api(base: str, email: str, movie_id: str) -> int:
    """Status of a bearer POST /v1/playback (ends the session again if one started)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        login = await http.post(
            f"{base}/v1/auth/login", json={"email": email, "password": DEMO_PASSWORD}
        )
        token = (await login.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        resp = await http.post(f"{base}/v1/playback/{movie_id}", headers=headers)
        if resp.status == 201:
            session_id = (await resp.json())["session_id"]
            await http.delete(f"{base}/v1/playback/{session_id}", headers=headers)
        return resp.status


def assert_clean(viewer: Viewer) -> None:
    assert viewer.page_errors == []
    assert viewer.csp_violations == []


async def test_chromium_plays_h264_aac_through_mse(open_viewer: OpenViewer) -> None:
    viewer = await open_viewer("codecs", DESKTOP)
    await viewer.goto("/upgrade")
    supported = await viewer.page.evaluate(
        "(type) => window.MediaSource && MediaSource.isTypeSupported(type)", H264_AAC
    )
    assert supported, "this Chromium cannot play H.264/AAC through Media Source Extensions"


async def test_free_viewer_signs_in_plays_and_is_capped_at_480p(
    open_viewer: OpenViewer, film: Film, gateway_url: str
) -> None:
    viewer = await open_viewer("free-phone", PHONE)
    page = viewer.page
    await viewer.goto("/")
    card = page.locator(f'a.card[href="/watch/{film.movie_id}"]')
    await card.wait_for(timeout=WAIT_MS)
    await viewer.screenshot("catalogue-signed-out")

    await page.click("#signin-button")
    await sign_in_with_form(viewer, "free@demo.kush")
    await page.locator("#plan-name").filter(has_text="Free").wait_for(timeout=WAIT_MS)
    assert await page.locator("#upgrade-link").is_visible()
    await viewer.screenshot("catalogue-signed-in")

    await card.click()
    await page.wait_for_url(f"**/watch/{film.movie_id}", timeout=WAIT_MS)
    await wait_playing_past(viewer, 2.0)

    heights = await page.evaluate(LEVELS_JS)
    assert heights
    assert max(heights) <= 480
    menu = await page.evaluate(MENU_JS)
    assert menu[0]["value"] == -1
    assert menu[0]["label"].startswith("Auto")
    labels = [entry["label"] for entry in menu[1:]]
    assert "480p" in labels
    assert all(int(label.removesuffix("p")) <= 480 for label in labels)
    assert await page.is_checked("#data-saver")
    state = await page.evaluate(
        """() => ({dataSaver: window.kushPlayer.state.dataSaver,
                   cap: window.kushPlayer.hls.autoLevelCapping,
                   engine: window.kushPlayer.state.engine,
                   session: window.kushPlayer.state.sessionId})"""
    )
    assert state["dataSaver"] is True
    assert state["engine"] == "hls.js"
    assert heights[state["cap"]] == 480
    assert state["session"] in viewer.session_ids
    await viewer.screenshot("watch-playing")

    await leave_and_end_session(viewer)
    # the free plan's one stream slot is free again
    assert await start_via_api(gateway_url, "free@demo.kush", film.movie_id) == 201
    await viewer.screenshot("upgrade")
    assert "billing is not configured" in (await page.inner_text("main"))
    assert_clean(viewer)


async def test_premium_viewer_picks_1080p(open_viewer: OpenViewer, film: Film) -> None:
    viewer = await open_viewer("premium-desktop", DESKTOP)
    page = viewer.page
    await viewer.goto(f"/watch/{film.movie_id}")
    await page.locator("#overlay-action").filter(has_text="Sign in").click()
    await sign_in_with_form(viewer, "premium@demo.kush")
    await page.locator("#plan-name").filter(has_text="Premium").wait_for(timeout=WAIT_MS)
    await wait_playing_past(viewer, 0.5)

    assert not await page.is_checked("#data-saver")
    assert not await page.locator("#upgrade-link").is_visible()
    heights: list[int] = await page.evaluate(LEVELS_JS)
    assert 1080 in heights
    await page.select_option("#quality", label="1080p")
    full_hd = heights.index(1080)
    await page.wait_for_function(
        "(i) => window.kushPlayer.hls.currentLevel === i", arg=full_hd, timeout=WAIT_MS
    )
    await viewer.screenshot("watch-1080p")
    await leave_and_end_session(viewer)
    await viewer.goto("/")
    await page.locator(f'a.card[href="/watch/{film.movie_id}"]').wait_for(timeout=WAIT_MS)
    await viewer.screenshot("catalogue")
    assert_clean(viewer)


async def test_signed_out_visitor_gets_a_sign_in_prompt_and_no_manifest(
    open_viewer: OpenViewer, film: Film
) -> None:
    viewer = await open_viewer("visitor-phone", PHONE)
    page = viewer.page
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(f"{request.method} {request.url}"))
    await viewer.goto(f"/watch/{film.movie_id}")
    await page.wait_for_function(
        "() => window.kushPlayer && window.kushPlayer.state.phase === 'signin'", timeout=WAIT_MS
    )
    assert await page.locator("#player-overlay").is_visible()
    assert await page.inner_text("#overlay-title") == "Sign in to watch"
    assert await page.locator("#signin-button").is_visible()
    await viewer.screenshot("watch-signed-out")
    assert not [url for url in fetched if ".m3u8" in url or "/hls/" in url]
    assert not [url for url in fetched if url.startswith("POST") and "/v1/playback/" in url]
    await page.locator("#overlay-action").click()
    await page.locator("#signin-dialog").wait_for(state="visible", timeout=WAIT_MS)
    await viewer.screenshot("signin-sheet")
    assert_clean(viewer)


async def test_missing_hlsjs_is_said_plainly(open_viewer: OpenViewer, film: Film) -> None:
    """Without the vendored hls.js the page says so: it falls back to the browser's own
    HLS player where there is one (newer Chromium, Safari), else it cannot play."""
    viewer = await open_viewer("no-hlsjs", PHONE)
    page = viewer.page

    async def not_installed(route: Route) -> None:
        await route.fulfill(status=404, content_type="application/json", body="{}")

    await page.route(re.compile(r"/static/vendor/hls\.min\.js$"), not_installed)
    await viewer.goto("/")
    await page.click("#signin-button")
    await sign_in_with_form(viewer, "premium@demo.kush")
    await page.locator("#plan-name").filter(has_text="Premium").wait_for(timeout=WAIT_MS)
    await viewer.goto(f"/watch/{film.movie_id}")
    await page.wait_for_function(
        """() => window.kushPlayer && (window.kushPlayer.state.engine === 'native'
                 || window.kushPlayer.state.phase === 'error')""",
        timeout=WAIT_MS,
    )
    if await page.evaluate("() => window.kushPlayer.state.engine") == "native":
        text = await page.inner_text("#player-note")
    else:
        text = await page.inner_text("#player-overlay")
    assert "hls.js" in text
    assert "missing" in text
    await viewer.screenshot("hlsjs-missing")
    if viewer.sessions:
        await leave_and_end_session(viewer)
    assert viewer.csp_violations == []


# ------------------------------------------------------------------ ad label

AD_PDT = "2030-01-01T00:00:00.000Z"


def mark_first_segment_as_ad(playlist: str, *, with_program_date_time: bool) -> str:
    """What server-side ad insertion will emit: the first segment as a 6 s ad pod,
    fenced by a discontinuity (RFC 8216 §4.3.2.7 EXT-X-DATERANGE)."""
    lines = playlist.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("#EXTINF"))
    second = next(i for i, line in enumerate(lines) if i > first and line.startswith("#EXTINF"))
    pod = [
        f'#EXT-X-DATERANGE:ID="pod-1",CLASS="com.kushfilms.ad",START-DATE="{AD_PDT}",DURATION=6.0'
    ]
    if with_program_date_time:
        pod.insert(0, f"#EXT-X-PROGRAM-DATE-TIME:{AD_PDT}")
    return "\n".join(
        [*lines[:first], *pod, *lines[first:second], "#EXT-X-DISCONTINUITY", *lines[second:]]
    )


@pytest.mark.parametrize("with_program_date_time", [True, False], ids=["pdt", "no-pdt"])
async def test_ad_label_counts_down_through_a_marked_pod(
    open_viewer: OpenViewer, film: Film, with_program_date_time: bool
) -> None:
    viewer = await open_viewer(f"ad-{'pdt' if with_program_date_time else 'nopdt'}", PHONE)
    page = viewer.page

    async def inject(route: Route) -> None:
        upstream = await route.fetch()
        body = mark_first_segment_as_ad(
            await upstream.text(), with_program_date_time=with_program_date_time
        )
        await route.fulfill(response=upstream, body=body)

    await page.route(re.compile(r"/hls/[^?]+/index\.m3u8"), inject)
    await viewer.goto("/")
    await page.click("#signin-button")
    await sign_in_with_form(viewer, "basic@demo.kush")
    await page.locator("#plan-name").filter(has_text="Basic").wait_for(timeout=WAIT_MS)
    await viewer.goto(f"/watch/{film.movie_id}")

    await page.wait_for_function(
        "() => window.kushPlayer && window.kushPlayer.state.ad !== null", timeout=WAIT_MS
    )
    seen: dict[str, Any] = await page.evaluate(
        """() => ({pods: window.kushPlayer.state.adPods,
                   visible: !document.getElementById('ad-label').hidden,
                   remaining: Number(document.getElementById('ad-label').dataset.remaining)})"""
    )
    assert seen["pods"] == [{"id": "pod-1", "start": 0, "end": 6}]
    assert seen["visible"]
    assert 1 <= seen["remaining"] <= 6
    await viewer.screenshot("ad-label")
    await page.wait_for_function(
        """() => window.kushPlayer.video.currentTime > 6.5
                 && document.getElementById('ad-label').hidden""",
        timeout=WAIT_MS,
    )
    assert await page.evaluate("() => window.kushPlayer.state.ad") is None
    await leave_and_end_session(viewer)
    assert_clean(viewer)


# ------------------------------------------------------------------ page modules, unit


async def test_ad_and_quality_modules(open_viewer: OpenViewer) -> None:
    """The pure helpers of ads.js and quality.js, on synthetic hls.js-shaped data."""
    viewer = await open_viewer("modules", DESKTOP)
    await viewer.goto("/upgrade")
    result = await viewer.page.evaluate(
        """async () => {
          const ads = await import('/static/ads.js');
          const q = await import('/static/quality.js');
          const pods = [{id: 'a', start: 10, end: 25}, {id: 'b', start: 60, end: 90}];
          const fragments = [
            {start: 0, tagList: []},
            {start: 6, tagList: [['EXT-X-DISCONTINUITY'],
                                 ['EXT-X-DATERANGE', 'ID="x",CLASS="com.kushfilms.ad"']]},
          ];
          const noPdt = {id: 'x', class: ads.AD_CLASS, duration: 12, plannedDuration: null,
                         get startTime() { return NaN; }};
          const withPdt = {id: 'y', class: ads.AD_CLASS, startTime: 30, duration: null,
                           plannedDuration: 15};
          const other = {id: 'z', class: 'com.example.chapter', startTime: 0, duration: 5};
          const storage = (value) => ({getItem: () => value, setItem: () => {}});
          const levels = [{height: 360, bitrate: 5e5}, {height: 480, bitrate: 1e6},
                          {height: 720, bitrate: 2.5e6}, {height: 1080, bitrate: 5e6}];
          return {
            before: ads.adAt(pods, 9.99),
            start: ads.adAt(pods, 10),
            inside: ads.adAt(pods, 20.2),
            last: ads.adAt(pods, 24.5),
            end: ads.adAt(pods, 25),
            details: ads.adPodsFromDetails(
              {dateRanges: {x: noPdt, y: withPdt, z: other}, fragments}),
            cues: ads.adPodsFromCues([
              {id: 'c', startTime: 5, endTime: 8, value: {key: 'CLASS', data: ads.AD_CLASS}},
              {id: 'd', startTime: 5, endTime: 8, value: {key: 'ID', data: 'c'}}]),
            options: q.levelOptions(levels).map((o) => o.label),
            cap: q.dataSaverCap(levels),
            capHigh: q.dataSaverCap([{height: 720, bitrate: 1}, {height: 1080, bitrate: 2}]),
            freeDefault: q.loadDataSaver('free', storage(null)),
            premiumDefault: q.loadDataSaver('premium', storage(null)),
            premiumSaved: q.loadDataSaver('premium', storage('on')),
            freeSaved: q.loadDataSaver('free', storage('off')),
          };
        }"""
    )
    assert result["before"] is None
    assert result["start"] == {"id": "a", "remaining": 15}
    assert result["inside"] == {"id": "a", "remaining": 5}
    assert result["last"] == {"id": "a", "remaining": 1}
    assert result["end"] is None
    assert result["details"] == [
        {"id": "x", "start": 6, "end": 18},
        {"id": "y", "start": 30, "end": 45},
    ]
    assert result["cues"] == [{"id": "c", "start": 5, "end": 8}]
    assert result["options"] == ["1080p", "720p", "480p", "360p"]
    assert result["cap"] == 1
    assert result["capHigh"] == 0
    assert result["freeDefault"] is True
    assert result["premiumDefault"] is False
    assert result["premiumSaved"] is True
    assert result["freeSaved"] is False
    assert_clean(viewer)


async def test_free_viewer_sees_the_real_pre_roll_then_the_film(
    open_viewer: OpenViewer, ad_film: AdFilm
) -> None:
    """Server-side ads for real: the stitched pre-roll plays under the "Ad" label, then
    the film starts and its clock advances."""
    viewer = await open_viewer("free-real-ads", PHONE)
    page = viewer.page
    await viewer.goto("/")
    await page.click("#signin-button")
    await sign_in_with_form(viewer, "free@demo.kush")
    await page.locator("#plan-name").filter(has_text="Free").wait_for(timeout=WAIT_MS)
    await viewer.goto(f"/watch/{ad_film.movie_id}")
    await page.wait_for_function(
        "() => window.kushPlayer && window.kushPlayer.state.ad !== null", timeout=WAIT_MS
    )
    assert viewer.sessions[-1]["ads"] is True
    assert not await page.locator("#ad-label").is_hidden()
    pods = await page.evaluate("() => window.kushPlayer.state.adPods")
    assert len(pods) == 2  # the pre-roll and the mid-roll at the cue
    assert pods[0]["start"] == 0
    await viewer.screenshot("real-pre-roll")
    pre_roll_end = pods[0]["end"]
    await page.wait_for_function(
        """(end) => window.kushPlayer.video.currentTime > end + 1
                    && document.getElementById('ad-label').hidden""",
        arg=pre_roll_end,
        timeout=WAIT_MS * 3,
    )
    await viewer.screenshot("after-pre-roll")
    await leave_and_end_session(viewer)
    assert_clean(viewer)
