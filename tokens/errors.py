"""Errors raised by the token library; the gateway maps them to HTTP responses.

Verification functions (:func:`tokens.verify_segment_token`, :func:`tokens.decode_jwt`)
raise only :class:`TokenError` subclasses, whatever the input: garbage from the network
never surfaces as ``ValueError``, ``KeyError`` or a ``binascii`` error. Each class carries
a stable machine ``code`` for the JSON error body (DESIGN.md, "Errors").

Messages are short and safe to show to a client: they never contain the token, a key or
any other secret.
"""

from __future__ import annotations


class TokenError(Exception):
    """Base class of every token verification failure."""

    code: str = "invalid_token"


class TokenInvalid(TokenError):
    """The token is malformed, forged, tampered with, or bound to something else."""

    code = "invalid_token"


class UnknownKey(TokenInvalid):
    """The token names a key id that is not (or no longer) in the key ring."""

    code = "invalid_token"


class TokenExpired(TokenError):
    """The token was genuine but its expiry (plus leeway) has passed."""

    code = "token_expired"


class TokenRevoked(TokenError):
    """The token was genuine but its session or family has been revoked.

    The pure library never raises it (it holds no revocation state); the storage layer
    does, so that one error mapping covers both.
    """

    code = "token_revoked"


class KeyUnsealError(Exception):
    """A sealed key blob could not be opened: wrong master key, wrong kid, or corrupted."""

    code: str = "key_unseal_failed"


class InvalidEmail(ValueError):
    """An e-mail address failed basic validation; the message says why."""

    code: str = "invalid_email"


class WeakPassword(ValueError):
    """A new password does not meet the password policy; the message says why."""

    code: str = "weak_password"
