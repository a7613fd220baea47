"""The viewer's own account: ``GET|PATCH /v1/me``, ``GET /v1/me/export``.

The birth year is set once (age-restricted films need it; a viewer cannot make
themselves older later: a different year is 409 ``birth_year_locked``, support corrects
mistakes). The export is the same document an admin gets for a data request.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated

from aiohttp import web
from pydantic import AfterValidator, Field, StringConstraints

from gateway import repository
from runtime import ratelimit
from runtime.api import BodyModel, DateTimeStr, ReplyModel, Routes, UuidStr, parse_body
from runtime.db import audit
from runtime.web import json_response, pg_key, redis_key, request_id_key, rkeys_key
from tokens.jwt import Plan, Role
from tokens.service.privacy import UserExport, export_user
from tokens.service.views import SIGNED_IN, authenticate

MAX_AGE_YEARS = 120
EXPORTS_PER_HOUR = 5

routes = Routes(tags=("me",))
NO_STORE = {"Cache-Control": "no-store"}


def _plausible_year(year: int) -> int:
    now = time.gmtime().tm_year
    if not now - MAX_AGE_YEARS <= year <= now:
        raise ValueError(f"must be between {now - MAX_AGE_YEARS} and {now}")
    return year


def _printable(text: str) -> str:
    if not text.isprintable():
        raise ValueError("must not contain control characters")
    return text


DisplayName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=80),
    AfterValidator(_printable),
]


class ProfileChange(BodyModel):
    """What a viewer may change about themselves (absent: unchanged)."""

    display_name: DisplayName | None = Field(
        default=None, description="1-80 printable characters; null clears it"
    )
    birth_year: Annotated[int, AfterValidator(_plausible_year)] | None = Field(
        default=None,
        description="Set once: the same year again is a no-op, another one is 409 "
        "`birth_year_locked` (null: unchanged)",
    )
    data_saver: bool | None = Field(
        default=None,
        description="Every playback session a data-saver one (360p at most, the smallest "
        "rendition first, lighter ads), as `Save-Data: on` does per request (null: "
        "unchanged)",
    )


class Profile(ReplyModel):
    """Who you are, your plan and your profile."""

    id: UuidStr
    email: str
    role: Role
    plan: Plan = Field(description="Your current plan (fresh, not the token's)")
    display_name: str | None
    birth_year: int | None = Field(description="Needed for age-restricted films")
    birth_year_locked: bool = Field(description="The birth year is set and cannot change")
    data_saver: bool = Field(description="Your sessions are data-saver sessions")
    created_at: DateTimeStr


def _reply(p: repository.Profile) -> Profile:
    return Profile.model_validate(
        {
            "id": p.id,
            "email": p.email,
            "role": p.role,
            "plan": p.plan,
            "display_name": p.display_name,
            "birth_year": p.birth_year,
            "birth_year_locked": p.birth_year is not None,
            "data_saver": p.data_saver,
            "created_at": p.created_at.isoformat(),
        }
    )


@routes.get(
    "/v1/me",
    summary="Your account and profile",
    replies={200: Profile},
    auth=SIGNED_IN,
    errors={403: "The account is disabled (`account_disabled`)"},
)
async def get_me(request: web.Request) -> web.Response:
    """GET /v1/me -> the account and profile."""
    claims = await authenticate(request)
    profile = await repository.load_profile(request.app[pg_key], claims.sub)
    return json_response(_reply(profile), headers=NO_STORE)


@routes.patch(
    "/v1/me",
    summary="Set your display name, the data saver, and your birth year (once)",
    body=ProfileChange,
    replies={200: Profile},
    auth=SIGNED_IN,
    errors={
        403: "The account is disabled (`account_disabled`) or a cookie without the CSRF "
        "header (`csrf_failed`)",
        409: "The birth year is already set to another year (`birth_year_locked`)",
    },
)
async def patch_me(request: web.Request) -> web.Response:
    """PATCH /v1/me {display_name?, birth_year?, data_saver?} -> the profile."""
    claims = await authenticate(request)
    change = await parse_body(request, ProfileChange)
    pool = request.app[pg_key]
    before = await repository.load_profile(pool, claims.sub)
    profile = await repository.update_profile(
        pool,
        claims.sub,
        birth_year=change.birth_year,
        display_name=change.display_name,
        change_display_name="display_name" in change.model_fields_set,
        data_saver=change.data_saver,
    )
    if before.birth_year is None and profile.birth_year is not None:
        # when an age gate opened, not the year itself (personal data stays in users)
        await audit(
            pool,
            action="user.birth_year_set",
            actor_id=uuid.UUID(claims.sub),
            target_type="user",
            target_id=claims.sub,
            request_id=request.get(request_id_key),
        )
    return json_response(_reply(profile), headers=NO_STORE)


@routes.get(
    "/v1/me/export",
    summary="Everything we hold about you, as JSON (a data access request)",
    replies={200: UserExport},
    auth=SIGNED_IN,
    errors={429: f"More than {EXPORTS_PER_HOUR} exports an hour (`rate_limited`)"},
)
async def export_me(request: web.Request) -> web.Response:
    """GET /v1/me/export -> account, subscriptions, logins, sessions, progress, ad
    events and the audit lines about you."""
    claims = await authenticate(request)
    await ratelimit.hit(
        request.app[redis_key],
        request.app[rkeys_key],
        "export",
        claims.sub,
        limit=EXPORTS_PER_HOUR,
        window_s=3600,
    )
    document = await export_user(request.app[pg_key], claims.sub)
    return json_response(document, headers=NO_STORE)
