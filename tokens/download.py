"""Download URLs the gateway serves itself: a segment token bound to one download's file.

A download's id has the shape of a playback session id (16 base64url characters,
:func:`~tokens.segment.new_session_id`), so the token of its URL is a segment token
(:mod:`tokens.segment`) for the path ``/v1/downloads/{id}/file`` under the same key ring:
key rotation, constant-time checks and the expiry come with it. The token proves the
path, the download and the expiry, no more; the gateway then checks the download's row
(revoked, expired) and the viewer's plan at every request.

Playlists only ever sign ``/hls/...`` paths, so no playback token opens a download, and
a download token (bound to its path) opens nothing else.
"""

from __future__ import annotations

from typing import Final

from tokens.errors import TokenInvalid
from tokens.segment import SegmentClaims, SegmentKeyring, new_session_id

__all__ = [
    "DOWNLOAD_PATH_PREFIX",
    "download_file_path",
    "new_download_id",
    "sign_download",
    "verify_download",
]

DOWNLOAD_PATH_PREFIX: Final = "/v1/downloads/"


def new_download_id() -> str:
    """A fresh download id: 12 random bytes as 16 base64url characters."""
    return new_session_id()


def download_file_path(download_id: str) -> str:
    """The gateway path that serves a download's file (what its token signs)."""
    return f"{DOWNLOAD_PATH_PREFIX}{download_id}/file"


def sign_download(ring: SegmentKeyring, download_id: str, expires_at: int) -> str:
    """The token of a download's file URL, valid until ``expires_at`` (Unix seconds).

    ``ValueError`` if ``download_id`` is not 16 base64url characters."""
    signer = ring.session_signer(download_id, expires_at)
    return signer.sign(download_file_path(download_id))


def verify_download(
    ring: SegmentKeyring, token: str, download_id: str, *, now: int, leeway: int = 0
) -> SegmentClaims:
    """Check a download URL's token for ``download_id``; raises only ``TokenError``
    subclasses (``TokenInvalid``: forged, tampered, or another download's;
    ``TokenExpired``; ``UnknownKey``). No leeway by default: the URL is short-lived on
    purpose, and the app asks for a new one."""
    claims = ring.verify(token, download_file_path(download_id), now=now, leeway=leeway)
    if claims.session_id != download_id:
        raise TokenInvalid("token is for another download")
    return claims
