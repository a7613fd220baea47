"""The gateway's HTTP views, one module per resource: catalogue, the viewer's account,
playback sessions, HLS (master, media playlist, segment, ad files), progress, data usage,
billing, offline downloads, and the nginx edge's ``auth_request`` check (its usage lines
arrive over UDP: ``gateway.edge_usage``)."""

from __future__ import annotations

from aiohttp import web

from gateway.views import (
    billing,
    catalogue,
    downloads,
    edge,
    hls,
    me,
    mobile_money,
    playback,
    progress,
    usage,
)
from runtime.web import response_hooks_key


def setup_routes(app: web.Application) -> None:
    """Mount the gateway's catalogue, account, playback, progress and HLS routes (in
    this order: the HLS ad and playlist routes precede the segment routes they would
    shadow), and the edge's token check."""
    tables = (
        catalogue.routes,
        me.routes,
        usage.routes,
        playback.routes,
        progress.routes,
        hls.routes,
        downloads.routes,
    )
    for table in (*tables, edge.routes):
        table.mount(app)
    billing.setup_routes(app)
    mobile_money.setup_routes(app)
    app[response_hooks_key].append(downloads.add_download_headers)
