"""One frozen ``Settings`` built once from the environment and passed down.

Nothing else in the code base reads ``os.environ``: tests build ``Settings`` directly
(or through :func:`Settings.from_env` with a dict). Invalid values stop start-up with one
line naming the variable; in ``production`` mode a missing secret is an error, never a
default.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from runtime.net import parse_networks

Mode = Literal["demo", "production"]
OriginKind = Literal["local", "s3"]

DEMO_WEBHOOK_SECRET = "whsec_demo"  # noqa: S105 - documented demo-mode default (DESIGN.md)
DEMO_PASSWORD = "kush-demo"  # noqa: S105 - documented demo-mode default (DESIGN.md)
DEFAULT_HLSJS_URL = "/static/vendor/hls.min.js"  # fetched by scripts/vendor.sh

_SECRET_FIELDS = frozenset(
    {
        "master_key",
        "s3_secret_access_key",
        "stripe_secret_key",
        "stripe_webhook_secret",
        "demo_password",
        "database_url",
        "redis_url",
    }
)
_PREFIX_RE = re.compile(r"^[A-Za-z0-9:_.-]{1,64}$")
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_ADDRESS_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$")


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Effective configuration of every Kush service."""

    mode: Mode = "demo"
    data_dir: Path = Path("var")
    host: str = "127.0.0.1"
    gateway_port: int = 8080
    admin_port: int = 8081
    gateway_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    public_url: str | None = None
    database_url: str | None = None
    db_schema: str = "public"
    db_pool_size: int = 10
    redis_url: str | None = None
    redis_prefix: str = "kush:"
    origin: OriginKind = "local"
    origin_dir: Path | None = None
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_region: str = "auto"
    master_key: str | None = None
    stripe_secret_key: str | None = None
    stripe_webhook_secret: str | None = None
    demo_password: str = DEMO_PASSWORD
    max_body_bytes: int = 1024 * 1024
    login_free_failures: int = 5
    login_account_free_failures: int = 20
    login_ip_failures_per_minute: int = 300
    register_limit_per_hour: int = 10
    playback_starts_per_minute: int = 20
    admin_max_encodes: int = 1
    cookie_secure: bool = False
    geo_header: str = "CF-IPCountry"
    region_header: str = "CF-Region"
    trusted_proxies: tuple[str, ...] = ()
    segment_ip_binding: bool = False
    data_saver_height: int = 480
    hotlink_allowed_hosts: tuple[str, ...] = ()
    cors_allowed_origins: tuple[str, ...] = ("*",)
    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"
    seed_demo_film: bool = True
    demo_film_seconds: int = 120
    hlsjs_url: str = DEFAULT_HLSJS_URL
    # the nginx edge (nginx/, `kush edge`; `kush up` starts it when KUSH_EDGE is on)
    edge: bool = False
    edge_port: int = 8088
    edge_cache_max_mb: int = 10240
    edge_auth_rate: int = 30
    edge_start_rate: int = 30
    edge_tls_port: int = 8443
    edge_tls_cert: Path | None = None
    edge_tls_key: Path | None = None
    edge_upstream: tuple[str, ...] = ()
    edge_templates: Path | None = None

    @property
    def is_demo(self) -> bool:
        """Demo mode seeds data and may default secrets; production never does."""
        return self.mode == "demo"

    @property
    def origin_root(self) -> Path:
        """Directory of the local origin (``KUSH_ORIGIN_DIR`` or ``<data dir>/origin``)."""
        return self.origin_dir or self.data_dir / "origin"

    @property
    def webhook_secret(self) -> str | None:
        """Stripe webhook signing secret; ``whsec_demo`` in demo mode when unset."""
        if self.stripe_webhook_secret:
            return self.stripe_webhook_secret
        return DEMO_WEBHOOK_SECRET if self.is_demo else None

    def gateway_url(self) -> str:
        """Base URL players use to reach the gateway."""
        return self.public_url or f"http://{self.host}:{self.gateway_port}"

    def admin_url(self) -> str:
        """Base URL of the admin service."""
        return f"http://{self.host}:{self.admin_port}"

    def resolve_master_key(self) -> str:
        """The master key that seals signing keys at rest.

        Production requires ``KUSH_MASTER_KEY`` (checked at start-up). Demo mode without
        one generates a key once into ``<data dir>/master.key`` (mode 0600) and reuses it.
        """
        if self.master_key:
            return self.master_key
        if not self.is_demo:
            raise SettingsError("KUSH_MASTER_KEY: required in production mode")
        path = self.data_dir / "master.key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key + "\n")
        return key

    def masked(self) -> dict[str, str]:
        """Every setting as text with secrets masked, for ``kush config``."""
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS and value:
                text = _mask_url(str(value)) if f.name.endswith("_url") else "********"
            elif isinstance(value, tuple):
                text = ",".join(value)
            else:
                text = "" if value is None else str(value)
            out[f.name] = text
        return out

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from environment variables (``os.environ`` by default)."""
        return _Parser(os.environ if env is None else env).build()


def _mask_url(url: str) -> str:
    """Hide the password of a ``scheme://user:password@host`` URL."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1********@", url)


class _Parser:
    """Reads and validates one variable at a time, naming it in every error."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def choice(self, name: str, options: tuple[str, ...], default: str) -> str:
        value = self.text(name) or default
        if value not in options:
            raise SettingsError(f"{name}: must be one of {', '.join(options)}, got {value!r}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name}: must be an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise SettingsError(f"{name}: must be between {low} and {high}, got {value}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.text(name)
        if raw is None:
            return default
        lowered = raw.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise SettingsError(f"{name}: must be true or false, got {raw!r}")

    def url(self, name: str, schemes: tuple[str, ...]) -> str | None:
        raw = self.text(name)
        if raw is None:
            return None
        scheme = raw.split("://", 1)[0] if "://" in raw else ""
        if scheme not in schemes:
            raise SettingsError(
                f"{name}: must be a URL starting with {' or '.join(s + '://' for s in schemes)}"
            )
        return raw

    def listing(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        raw = self.text(name)
        if raw is None:
            return default
        return tuple(item.strip() for item in raw.split(",") if item.strip())

    def networks(self, name: str) -> tuple[str, ...]:
        """A comma-separated list of CIDRs (``10.0.0.0/8, 2001:db8::/32``), normalised."""
        items = self.listing(name, ())
        try:
            return tuple(str(net) for net in parse_networks(items))
        except ValueError as err:
            raise SettingsError(f"{name}: {err}") from None

    def script_url(self, name: str, default: str) -> str:
        """A path on this site (``/static/...``) or an http(s) URL, for a page script."""
        raw = self.text(name)
        if raw is None:
            return default
        if raw.startswith("/") and not raw.startswith("//"):
            return raw
        return self.url(name, ("http", "https")) or default

    def path(self, name: str) -> Path | None:
        raw = self.text(name)
        return Path(raw) if raw else None

    def edge(self) -> dict[str, Any]:
        """The nginx edge's settings (``KUSH_EDGE*``)."""
        return {
            "edge": self.boolean("KUSH_EDGE", False),
            "edge_port": self.integer("KUSH_EDGE_PORT", 8088, 1, 65535),
            "edge_cache_max_mb": self.integer("KUSH_EDGE_CACHE_MAX_MB", 10240, 16, 10**8),
            "edge_auth_rate": self.integer("KUSH_EDGE_AUTH_RATE", 30, 1, 100000),
            "edge_start_rate": self.integer("KUSH_EDGE_START_RATE", 30, 1, 100000),
            "edge_tls_port": self.integer("KUSH_EDGE_TLS_PORT", 8443, 1, 65535),
            "edge_tls_cert": self.path("KUSH_EDGE_TLS_CERT"),
            "edge_tls_key": self.path("KUSH_EDGE_TLS_KEY"),
            "edge_upstream": self.addresses("KUSH_EDGE_UPSTREAM"),
            "edge_templates": self.path("KUSH_EDGE_TEMPLATES"),
        }

    def addresses(self, name: str) -> tuple[str, ...]:
        """A comma-separated list of ``host:port`` (``gateway:8080, [::1]:8080``)."""
        items = self.listing(name, ())
        for item in items:
            if not _ADDRESS_RE.match(item):
                raise SettingsError(f"{name}: not a host:port address: {item!r}")
        return items

    def build(self) -> Settings:
        mode = self.choice("KUSH_MODE", ("demo", "production"), "demo")
        demo = mode == "demo"
        origin = self.choice("KUSH_ORIGIN", ("local", "s3"), "local")
        schema = self.text("KUSH_DB_SCHEMA") or "public"
        if not _SCHEMA_RE.match(schema):
            raise SettingsError(
                f"KUSH_DB_SCHEMA: must be a lower-case SQL identifier, got {schema!r}"
            )
        prefix = self.text("KUSH_REDIS_PREFIX") or "kush:"
        if not _PREFIX_RE.match(prefix):
            raise SettingsError(
                f"KUSH_REDIS_PREFIX: only letters, digits and :_.- allowed, got {prefix!r}"
            )
        log_format = self.choice(
            "KUSH_LOG_FORMAT", ("json", "text"), "json" if not demo else "text"
        )
        log_level = self.choice("KUSH_LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO")
        origin_dir = self.text("KUSH_ORIGIN_DIR")
        settings = Settings(
            mode="demo" if demo else "production",
            data_dir=Path(self.text("KUSH_DATA_DIR") or "var"),
            host=self.text("KUSH_HOST") or "127.0.0.1",
            gateway_port=self.integer("KUSH_GATEWAY_PORT", 8080, 1, 65535),
            admin_port=self.integer("KUSH_ADMIN_PORT", 8081, 1, 65535),
            gateway_workers=self.integer("KUSH_GATEWAY_WORKERS", os.cpu_count() or 1, 1, 256),
            public_url=self.url("KUSH_PUBLIC_URL", ("http", "https")),
            database_url=self.url("DATABASE_URL", ("postgres", "postgresql")),
            db_schema=schema,
            db_pool_size=self.integer("KUSH_DB_POOL_SIZE", 10, 1, 200),
            redis_url=self.url("REDIS_URL", ("redis", "rediss", "unix")),
            redis_prefix=prefix,
            origin="s3" if origin == "s3" else "local",
            origin_dir=Path(origin_dir) if origin_dir else None,
            s3_endpoint_url=self.url("KUSH_S3_ENDPOINT_URL", ("http", "https")),
            s3_bucket=self.text("KUSH_S3_BUCKET"),
            s3_access_key_id=self.text("KUSH_S3_ACCESS_KEY_ID"),
            s3_secret_access_key=self.text("KUSH_S3_SECRET_ACCESS_KEY"),
            s3_region=self.text("KUSH_S3_REGION") or "auto",
            master_key=self.text("KUSH_MASTER_KEY"),
            stripe_secret_key=self.text("STRIPE_SECRET_KEY"),
            stripe_webhook_secret=self.text("STRIPE_WEBHOOK_SECRET"),
            demo_password=self.text("KUSH_DEMO_PASSWORD") or DEMO_PASSWORD,
            max_body_bytes=self.integer("KUSH_MAX_BODY_BYTES", 1024 * 1024, 1024, 1024**3),
            login_free_failures=self.integer("KUSH_LOGIN_FREE_FAILURES", 5, 1, 1000),
            login_account_free_failures=self.integer(
                "KUSH_LOGIN_ACCOUNT_FREE_FAILURES", 20, 1, 100000
            ),
            login_ip_failures_per_minute=self.integer(
                "KUSH_LOGIN_IP_FAILURES_PER_MINUTE", 300, 1, 1000000
            ),
            register_limit_per_hour=self.integer("KUSH_REGISTER_LIMIT_PER_HOUR", 10, 1, 100000),
            playback_starts_per_minute=self.integer(
                "KUSH_PLAYBACK_STARTS_PER_MINUTE", 20, 1, 100000
            ),
            admin_max_encodes=self.integer("KUSH_ADMIN_MAX_ENCODES", 1, 1, 64),
            cookie_secure=self.boolean("KUSH_COOKIE_SECURE", not demo),
            geo_header=self.text("KUSH_GEO_HEADER") or "CF-IPCountry",
            region_header=self.text("KUSH_REGION_HEADER") or "CF-Region",
            trusted_proxies=self.networks("KUSH_TRUSTED_PROXIES"),
            segment_ip_binding=self.boolean("KUSH_SEGMENT_IP_BINDING", False),
            data_saver_height=self.integer("KUSH_DATA_SAVER_HEIGHT", 480, 144, 4320),
            hotlink_allowed_hosts=self.listing("KUSH_HOTLINK_ALLOWED_HOSTS", ()),
            cors_allowed_origins=self.listing("KUSH_CORS_ALLOWED_ORIGINS", ("*",)),
            log_format="json" if log_format == "json" else "text",
            log_level=log_level,
            seed_demo_film=self.boolean("KUSH_SEED_DEMO_FILM", True),
            demo_film_seconds=self.integer("KUSH_DEMO_FILM_SECONDS", 120, 6, 3600),
            hlsjs_url=self.script_url("KUSH_HLSJS_URL", DEFAULT_HLSJS_URL),
            **self.edge(),
        )
        _check(settings)
        return settings


def _check(settings: Settings) -> None:
    """Cross-field rules: production secrets and a complete S3 configuration."""
    if settings.origin == "s3":
        for name, value in (
            ("KUSH_S3_BUCKET", settings.s3_bucket),
            ("KUSH_S3_ACCESS_KEY_ID", settings.s3_access_key_id),
            ("KUSH_S3_SECRET_ACCESS_KEY", settings.s3_secret_access_key),
        ):
            if not value:
                raise SettingsError(f"{name}: required when KUSH_ORIGIN=s3")
    if settings.gateway_port == settings.admin_port:
        raise SettingsError("KUSH_ADMIN_PORT: must differ from KUSH_GATEWAY_PORT")
    if settings.edge_port in (settings.gateway_port, settings.admin_port):
        raise SettingsError("KUSH_EDGE_PORT: must differ from the gateway and admin ports")
    if (settings.edge_tls_cert is None) != (settings.edge_tls_key is None):
        raise SettingsError("KUSH_EDGE_TLS_CERT: set both KUSH_EDGE_TLS_CERT and KUSH_EDGE_TLS_KEY")
    if settings.is_demo:
        return
    for name, value in (
        ("KUSH_MASTER_KEY", settings.master_key),
        ("STRIPE_WEBHOOK_SECRET", settings.stripe_webhook_secret),
        ("DATABASE_URL", settings.database_url),
        ("REDIS_URL", settings.redis_url),
    ):
        if not value:
            raise SettingsError(f"{name}: required in production mode (no defaults for secrets)")
