"""Who may do what in the admin service, and the audit line every change writes.

Roles: an ``admin`` does everything; a ``moderator`` reads everything and may unpublish
a film; a viewer (``user``) may do nothing here. Each handler checks its role first
(``tokens.service.views.require_role``: 401 without a token, 403 ``forbidden_role``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from runtime.db import audit
from runtime.web import request_id_key
from tokens.jwt import AccessClaims

ADMIN = frozenset({"admin"})
READERS = frozenset({"admin", "moderator"})
#: what a moderator may change besides reading: taking a film off the catalogue
UNPUBLISHERS = frozenset({"admin", "moderator"})

ROLE_ERRORS = {403: "Your role may not do this (`forbidden_role`)"}


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change, and the request it came with (for the audit log)."""

    id: uuid.UUID
    request_id: str | None


def actor_of(request: web.Request, claims: AccessClaims) -> Actor:
    """The caller of an authenticated request, as the author of its changes."""
    return Actor(uuid.UUID(claims.sub), request.get(request_id_key))


async def record(
    conn: asyncpg.Connection | asyncpg.Pool,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: str,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    **details: Any,
) -> None:
    """Append the audit line of a change: who, what (``action`` on the target), when
    (now), and the target's state before and after when it has one. Pass the
    transaction's connection so that the change and its line commit together."""
    body: dict[str, Any] = dict(details)
    if before is not None:
        body["before"] = before
    if after is not None:
        body["after"] = after
    await audit(
        conn,
        action=action,
        actor_id=actor.id,
        target_type=target_type,
        target_id=target_id,
        details=orjson.dumps(body, default=str).decode(),
        request_id=actor.request_id,
    )
