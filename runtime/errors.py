"""The HTTP error vocabulary shared by every service.

Domain code raises its own exceptions (``TokenExpired``, ``ObjectNotFound``...); each app
maps them to an :class:`ApiError` in one place, and one middleware renders every error as
``{"error": {"code": ..., "message": ...}}`` with the right status (DESIGN.md), plus any
detail keys the error carries (a validation failure lists its ``fields``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ApiError(Exception):
    """An error with an HTTP status, a stable machine code and a human message."""

    status: int = 400
    code: str = "bad_request"
    message: str = "Bad request"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        retry_after: int | None = None,
        headers: Mapping[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.message = message or type(self).message
        self.code = code or type(self).code
        self.status = status or type(self).status
        self.retry_after = retry_after
        self.headers = dict(headers or {})
        self.details = dict(details or {})
        if retry_after is not None:
            self.headers["Retry-After"] = str(max(1, int(retry_after)))
        super().__init__(self.message)


class BadRequest(ApiError):
    status, code, message = 400, "bad_request", "Bad request"


class Unauthorized(ApiError):
    status, code, message = 401, "unauthorized", "Authentication required"


class Forbidden(ApiError):
    status, code, message = 403, "forbidden", "Not allowed"


class NotFound(ApiError):
    status, code, message = 404, "not_found", "Not found"


class MethodNotAllowed(ApiError):
    status, code, message = 405, "method_not_allowed", "Method not allowed"


class Conflict(ApiError):
    status, code, message = 409, "conflict", "Conflict"


class PayloadTooLarge(ApiError):
    status, code, message = 413, "payload_too_large", "Request body too large"


class Unprocessable(ApiError):
    status, code, message = 422, "unprocessable", "Unprocessable request"


class TooManyRequests(ApiError):
    status, code, message = 429, "rate_limited", "Too many requests"


class ServiceUnavailable(ApiError):
    status, code, message = 503, "unavailable", "Service temporarily unavailable"
