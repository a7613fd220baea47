"""Domain errors of the gateway: raised by playback, catalogue and HLS code, and turned
into the JSON errors of DESIGN.md in one place (``gateway.app.map_domain_error``)."""

from __future__ import annotations


class GatewayError(Exception):
    """Base: a stable machine ``code`` and a human ``message`` the player can show."""

    code = "error"
    message = "Request refused"

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        self.message = message or type(self).message
        self.code = code or type(self).code
        super().__init__(self.message)


class Missing(GatewayError):
    """Something asked for does not exist (or is not visible): 404."""


class MovieNotFound(Missing):
    code, message = "movie_not_found", "No such film"


class SessionNotFound(Missing):
    code, message = "session_not_found", "No such playback session"


class Refused(GatewayError):
    """Known caller, not allowed: 403."""


class NotEntitled(Refused):
    code, message = "not_entitled", "Your plan does not include this"


class GeoBlocked(Refused):
    code, message = "geo_blocked", "This film is not available in your country"


class AgeRestricted(Refused):
    code, message = "age_restricted", "This film is restricted by age"


class AccountDisabled(Refused):
    code, message = "account_disabled", "Account not found or disabled"


class PlaybackTokenRejected(Refused):
    """A segment token that does not verify (its code says why: expired, invalid...)."""

    code, message = "invalid_token", "Invalid or expired playback token"


class Conflicting(GatewayError):
    """The request conflicts with what is stored: 409."""


class BirthYearLocked(Conflicting):
    """The birth year is set once; changing it needs support."""

    code = "birth_year_locked"
    message = "Your birth year is already set; contact support to correct it"


class HotlinkDenied(Refused):
    code, message = "hotlink_denied", "Playback from this site is not allowed"


class TokenRequired(GatewayError):
    """No playback token at all: 401."""

    code, message = "token_required", "A playback token is required"


# ------------------------------------------------------------------ offline downloads


class PremiumRequired(Refused):
    """The viewer's plan does not include offline downloads."""

    code, message = "premium_required", "Offline downloads are part of the Premium plan"


class DownloadUnavailable(Conflicting):
    """The film has no offline copy (ingested before downloads existed, or in progress)."""

    code, message = "download_unavailable", "This film has no offline copy yet"


class DownloadNotFound(Missing):
    code, message = "download_not_found", "No such download"


class DownloadRevoked(Refused):
    """The download was revoked: the plan no longer includes downloads."""

    code = "download_revoked"
    message = "This download was revoked: your plan no longer includes offline downloads"


class DownloadExpired(Refused):
    """The offline copy's expiry (the subscription's period end) has passed."""

    code = "download_expired"
    message = "This download has expired; ask for it again"


class FilmUnavailable(Refused):
    """The film was unpublished or taken down after it was downloaded."""

    code, message = "film_unavailable", "This film is no longer available"


class DownloadTokenRejected(Refused):
    """A download URL's token that does not verify (its code says why)."""

    code, message = "invalid_token", "Invalid or expired download link"
