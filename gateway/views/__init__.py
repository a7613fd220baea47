"""The gateway's HTTP views, one module per resource: catalogue, playback sessions,
HLS (master, media playlist, segment, ad files), progress, and the nginx edge's
``auth_request`` check."""

from __future__ import annotations

from aiohttp import web

from gateway.views import catalogue, edge, hls, playback, progress


def setup_routes(app: web.Application) -> None:
    """Mount the gateway's catalogue, playback, progress and HLS routes."""
    r = app.router
    r.add_get("/v1/movies", catalogue.list_movies)
    r.add_get("/v1/movies/{movie_id}", catalogue.get_movie)
    r.add_get("/posters/{movie_id}.jpg", catalogue.poster)
    r.add_post("/v1/playback/{movie_id}", playback.start_playback)
    r.add_delete("/v1/playback/{session_id}", playback.end_playback)
    r.add_put("/v1/me/progress/{movie_id}", progress.put_progress)
    r.add_get("/v1/me/history", progress.history)
    r.add_get("/hls/{movie_id}/master.m3u8", hls.master_playlist)
    r.add_get(r"/hls/ads/{ad_id}/{rendition}/{name:[^/]+\.m3u8}", hls.ad_playlist)
    r.add_get("/hls/ads/{ad_id}/{rendition}/{name}", hls.ad_segment)
    r.add_get(r"/hls/{movie_id}/{rendition}/{name:[^/]+\.m3u8}", hls.media_playlist)
    r.add_get("/hls/{movie_id}/{rendition}/{name}", hls.segment)
    # internal: asked by the nginx edge before it sends cached bytes (nginx/), not an API
    r.add_get(edge.AUTH_PATH, edge.authorize)
