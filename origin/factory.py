"""Builds the configured origin store (local directory or S3/R2)."""

from __future__ import annotations

from origin import LocalOrigin, OriginStore, S3Origin
from runtime.settings import Settings


def create_origin(settings: Settings) -> OriginStore:
    """The origin chosen by ``KUSH_ORIGIN``."""
    if settings.origin == "s3":
        return S3Origin(
            endpoint_url=settings.s3_endpoint_url,
            bucket=settings.s3_bucket or "",
            access_key_id=settings.s3_access_key_id or "",
            secret_access_key=settings.s3_secret_access_key or "",
            region=settings.s3_region,
            shared_buffer_bytes=settings.shared_fetch_buffer_bytes,
        )
    root = settings.origin_root
    root.mkdir(parents=True, exist_ok=True)
    return LocalOrigin(root)
