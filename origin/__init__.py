"""Origin stores: where the video bytes live (S3/R2 or a local directory).

``OriginStore`` is the port; ``S3Origin`` and ``LocalOrigin`` the adapters. Keys are
built with ``object_key`` from validated components. Failures are ``OriginError``
subclasses only; vendor exceptions never leave this package.
"""

from origin.base import CONTENT_TYPES, ObjectInfo, OriginStore, content_type_for
from origin.breaker import BreakerState, CircuitBreaker
from origin.errors import (
    InvalidObjectKey,
    ObjectNotFound,
    ObjectTooLarge,
    OriginError,
    OriginUnavailable,
    RangeNotSatisfiable,
)
from origin.keys import object_key, split_key, validate_component, validate_prefix
from origin.local import LocalOrigin
from origin.ranges import ByteRange, parse_range, resolve_range
from origin.s3 import OriginStats, S3Origin

__all__ = [
    "CONTENT_TYPES",
    "BreakerState",
    "ByteRange",
    "CircuitBreaker",
    "InvalidObjectKey",
    "LocalOrigin",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectTooLarge",
    "OriginError",
    "OriginStats",
    "OriginStore",
    "OriginUnavailable",
    "RangeNotSatisfiable",
    "S3Origin",
    "content_type_for",
    "object_key",
    "parse_range",
    "resolve_range",
    "split_key",
    "validate_component",
    "validate_prefix",
]
