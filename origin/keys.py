"""Origin object keys built only from allow-listed path components.

Every path component that becomes part of an origin key goes through
:func:`validate_component`: letters, digits, ``.``, ``_`` and ``-``, starting with a
letter or digit, at most 128 characters, never ``..``. That rules out traversal
(``..``, ``/``, ``\\``), encoded tricks (``%2f``), NUL bytes and hidden names.
"""

from __future__ import annotations

import re

from origin.errors import InvalidObjectKey

__all__ = ["object_key", "split_key", "validate_component", "validate_prefix"]

_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", re.ASCII)
MAX_KEY_LENGTH = 1024  # S3's limit on key length, in bytes (all ASCII here).


def validate_component(s: str) -> str:
    """Return ``s`` if it is a safe key component, else raise :class:`InvalidObjectKey`."""
    if not s:
        raise InvalidObjectKey(s, "empty component")
    if ".." in s:
        raise InvalidObjectKey(s, "'..' is not allowed")
    if _COMPONENT.fullmatch(s) is None:
        raise InvalidObjectKey(s, "only letters, digits, '.', '_' and '-' are allowed")
    return s


def object_key(*components: str) -> str:
    """Join validated components with ``/``: ``object_key("videos", movie_id, "master.m3u8")``."""
    if not components:
        raise InvalidObjectKey("", "no components")
    key = "/".join(validate_component(c) for c in components)
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidObjectKey(key, "key too long")
    return key


def split_key(key: str) -> tuple[str, ...]:
    """Validate a whole key (as built by :func:`object_key`) and return its components."""
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidObjectKey(key, "key too long")
    parts = tuple(key.split("/"))
    for part in parts:
        validate_component(part)
    return parts


def validate_prefix(prefix: str) -> str:
    """Normalise a "directory" prefix to ``a/b/`` form; the empty prefix is refused.

    Prefixes always end at a component boundary, so ``videos/m1`` never matches
    ``videos/m10/...``.
    """
    stripped = prefix.removesuffix("/")
    if not stripped:
        raise InvalidObjectKey(prefix, "empty prefix")
    split_key(stripped)
    return stripped + "/"
