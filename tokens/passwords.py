"""Passwords and e-mail addresses: argon2id hashing, login timing, policy, normalisation.

Hashes are argon2id (RFC 9106) at the OWASP minimum profile: 19 MiB of memory, two
passes, one lane. That costs tens of milliseconds per hash, which is the point: a stolen
table of hashes is expensive to attack. Parameters live in the encoded hash, so raising
them later only needs :func:`needs_rehash` after a successful login.

Passwords are NFKC-normalised before hashing and checking (NIST SP 800-63B §5.1.1.2), so
the same password typed on two keyboards that compose accents differently still matches.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
import unicodedata
from typing import Final

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from tokens.errors import InvalidEmail, WeakPassword

__all__ = [
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "check_password_policy",
    "dummy_verify",
    "hash_password",
    "needs_rehash",
    "normalize_email",
    "verify_password",
]

MIN_PASSWORD_LENGTH: Final = 10
MAX_PASSWORD_LENGTH: Final = 1024
MIN_LOCAL_PART_CHECKED: Final = 3  # a shorter local part is too common a substring to ban
MAX_EMAIL_LENGTH: Final = 254  # RFC 5321 §4.5.3.1.3 path limit, minus the angle brackets
MAX_LOCAL_PART_LENGTH: Final = 64  # RFC 5321 §4.5.3.1.1
MAX_LABEL_LENGTH: Final = 63  # RFC 1035 §2.3.4

# OWASP Password Storage Cheat Sheet, argon2id minimum: m=19 MiB, t=2, p=1.
_HASHER: Final = PasswordHasher(
    time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16, type=Type.ID
)
# Printable ASCII that RFC 5322 §3.2.3 allows unquoted in a dot-atom local part.
_LOCAL_SPECIALS: Final = frozenset("!#$%&'*+-/=?^_`{|}~.")


def _prepare(password: str) -> str:
    """The form of a password that is hashed and measured."""
    return unicodedata.normalize("NFKC", password)


def hash_password(password: str) -> str:
    """Return the argon2id hash of ``password`` in PHC string format (salt included)."""
    return _HASHER.hash(_prepare(password))


def verify_password(password_hash: str, password: str) -> bool:
    """Return whether ``password`` matches ``password_hash``; never raises on a bad hash."""
    if not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
        dummy_verify("")  # no account has such a password; spend the same time anyway
        return False
    try:
        return _HASHER.verify(password_hash, _prepare(password))
    except (VerificationError, InvalidHashError, TypeError, ValueError):
        return False


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random secret with the current parameters, made on first use."""
    return _HASHER.hash(secrets.token_urlsafe(32))


def dummy_verify(password: str) -> None:
    """Spend the time of a real verification, for logins to accounts that do not exist.

    Without it, "no such user" answers in microseconds and "wrong password" in tens of
    milliseconds, which tells an attacker which e-mail addresses have accounts. The dummy
    hash is computed on first use; call this once at start-up to keep that out of a login.
    """
    candidate = _prepare(password) if isinstance(password, str) else ""
    with contextlib.suppress(VerificationError, InvalidHashError, TypeError, ValueError):
        _HASHER.verify(_dummy_hash(), candidate)


def needs_rehash(password_hash: str) -> bool:
    """Return whether a stored hash uses other parameters than today's (or is unreadable)."""
    try:
        return _HASHER.check_needs_rehash(password_hash)
    except (InvalidHashError, TypeError, ValueError):
        return True


def _has_forbidden_char(text: str) -> bool:
    """Whitespace, control, format (zero-width), surrogate, private or unassigned chars."""
    return any(ch.isspace() or unicodedata.category(ch)[0] == "C" for ch in text)


def normalize_email(raw: str) -> str:
    """Return the canonical form of an e-mail address (trimmed, lower case) or raise.

    Validation is deliberately basic (the real check is the confirmation mail): one
    ``@``, a non-empty dot-atom local part of at most 64 characters, a domain of
    non-empty labels with at least one dot, at most 254 characters in all, no whitespace
    or control characters. Raises :class:`~tokens.errors.InvalidEmail`.
    """
    if not isinstance(raw, str):
        raise InvalidEmail("e-mail address must be text")
    email = raw.strip().lower()
    if not email:
        raise InvalidEmail("e-mail address is empty")
    if len(email) > MAX_EMAIL_LENGTH:
        raise InvalidEmail(f"e-mail address is longer than {MAX_EMAIL_LENGTH} characters")
    if _has_forbidden_char(email):
        raise InvalidEmail("e-mail address contains whitespace or control characters")
    if email.count("@") != 1:
        raise InvalidEmail("e-mail address must contain exactly one '@'")
    local, domain = email.split("@")
    if not local:
        raise InvalidEmail("e-mail address has nothing before the '@'")
    if len(local) > MAX_LOCAL_PART_LENGTH:
        raise InvalidEmail(
            f"the part before the '@' is longer than {MAX_LOCAL_PART_LENGTH} characters"
        )
    if not all(ch.isalnum() or ch in _LOCAL_SPECIALS for ch in local):
        raise InvalidEmail("the part before the '@' contains characters that are not allowed")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise InvalidEmail("the part before the '@' has a misplaced dot")
    labels = domain.split(".")
    if len(labels) < 2:
        raise InvalidEmail("the domain after the '@' must contain a dot")
    for label in labels:
        if not label or len(label) > MAX_LABEL_LENGTH:
            raise InvalidEmail("the domain after the '@' has an empty or over-long label")
        if label.startswith("-") or label.endswith("-"):
            raise InvalidEmail("a domain label may not start or end with '-'")
        if not all(ch.isalnum() or ch == "-" for ch in label):
            raise InvalidEmail("the domain after the '@' contains characters that are not allowed")
    return email


def check_password_policy(password: str, email: str) -> None:
    """Refuse a new password that is too short, too long, or built from the e-mail address.

    Length is counted in characters after NFKC normalisation. The address and its local
    part are compared case-insensitively; the local part is only banned as a substring
    when it has at least three characters (banning "jo" would ban "enjoy...").
    Raises :class:`~tokens.errors.WeakPassword`.
    """
    if not isinstance(password, str):
        raise WeakPassword("password must be text")
    prepared = _prepare(password)
    if len(prepared) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"password must be at least {MIN_PASSWORD_LENGTH} characters long")
    if len(prepared) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"password must be at most {MAX_PASSWORD_LENGTH} characters long")
    folded = prepared.casefold()
    address = email.strip().casefold() if isinstance(email, str) else ""
    local = address.split("@", 1)[0]
    if address and (folded == address or address in folded):
        raise WeakPassword("password must not contain your e-mail address")
    if local and (folded == local or (len(local) >= MIN_LOCAL_PART_CHECKED and local in folded)):
        raise WeakPassword("password must not contain the name in your e-mail address")
