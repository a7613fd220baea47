"""``GET /admin/v1/openapi.json``: the admin API described for admins' scripts."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from runtime.web import json_response

_ERROR = {"$ref": "#/components/schemas/Error"}


def _op(summary: str, *, body: dict[str, Any] | None = None, ok: int = 200) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": []}],
        "responses": {
            str(ok): {"description": "OK"},
            "400": {
                "description": "Bad input",
                "content": {"application/json": {"schema": _ERROR}},
            },
            "401": {"description": "No or bad token"},
            "403": {"description": "Role not allowed"},
        },
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
STRS = {"type": "array", "items": STR}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Kush Films admin API", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        "schemas": {
            "Error": _obj(error=_obj(code=STR, message=STR, request_id=STR)),
        },
    },
    "paths": {
        "/admin/v1/ads": {
            "get": _op("List ad creatives (admin, moderator)"),
            "post": _op(
                "Create an ad creative; generate_seconds makes a synthetic one (admin)",
                body=_obj(name=STR, advertiser=STR, click_url=STR, generate_seconds=INT),
                ok=201,
            ),
        },
        "/admin/v1/ads/{ad_id}": {"get": _op("One ad creative (admin, moderator)")},
        "/admin/v1/campaigns": {
            "get": _op("List campaigns (admin, moderator)"),
            "post": _op(
                "Create a campaign (admin)",
                body=_obj(
                    name=STR,
                    advertiser=STR,
                    starts_at=STR,
                    ends_at=STR,
                    weight=INT,
                    target_countries=STRS,
                    target_regions=STRS,
                    target_categories=STRS,
                    target_plans=STRS,
                    daily_cap=INT,
                    total_cap=INT,
                    frequency_cap_per_day=INT,
                    ad_ids=STRS,
                ),
                ok=201,
            ),
        },
        "/admin/v1/campaigns/{campaign_id}": {
            "patch": _op(
                "Pause, resume, end or re-weight a campaign (admin)",
                body=_obj(status=STR, weight=INT),
            ),
        },
        "/admin/v1/break-policies/{target}": {
            "put": _op(
                "Set the default (target=default) or a film's ad break policy (admin)",
                body=_obj(
                    preroll=BOOL,
                    midroll_every_s=INT,
                    use_cue_points=BOOL,
                    postroll=BOOL,
                    max_pod_s=INT,
                    max_ads_per_pod=INT,
                ),
            ),
        },
        "/admin/v1/reports/ads": {
            "get": _op(
                "Impressions (requested, confirmed), quartiles and completes per "
                "campaign, creative and day; ?from=&to= (admin, moderator)"
            ),
        },
    },
}


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of the admin API."""
    return json_response(SPEC, headers={"Cache-Control": "public, max-age=300"})
