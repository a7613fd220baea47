"""One frozen ``Settings`` built once from the environment and passed down.

Nothing else in the code base reads ``os.environ``: tests build ``Settings`` directly
(or through :func:`Settings.from_env` with a dict). Invalid values stop start-up with one
line naming the variable; in ``production`` mode a missing secret is an error, never a
default.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from runtime.net import parse_networks

Mode = Literal["demo", "production"]
OriginKind = Literal["local", "s3"]

DEMO_WEBHOOK_SECRET = "whsec_demo"  # noqa: S105 - documented demo-mode default (DESIGN.md)
DEMO_PASSWORD = "kush-demo"  # noqa: S105 - documented demo-mode default (DESIGN.md)
DEFAULT_HLSJS_URL = "/static/vendor/hls.min.js"  # fetched by scripts/vendor.sh
DEFAULT_MAIL_FROM = "Kush Films <no-reply@kushfilms.example>"
DEMO_MOBILE_MONEY_CALLBACK_SECRET = "momo-demo-callback-secret"  # noqa: S105 - demo only
#: the providers' documented endpoints, per KUSH_MOBILE_MONEY_ENV
MTN_MOMO_BASE_URLS = {
    "sandbox": "https://sandbox.momodeveloper.mtn.com",
    "production": "https://proxy.momoapi.mtn.com",
}
AIRTEL_BASE_URLS = {
    "sandbox": "https://openapiuat.airtel.africa",
    "production": "https://openapi.airtel.africa",
}
MobileMoneyEnv = Literal["sandbox", "production"]

_SECRET_FIELDS = frozenset(
    {
        "master_key",
        "s3_secret_access_key",
        "stripe_secret_key",
        "stripe_webhook_secret",
        "demo_password",
        "database_url",
        "redis_url",
        "smtp_url",
        "mtn_momo_subscription_key",
        "mtn_momo_api_key",
        "airtel_client_secret",
        "mobile_money_callback_secret",
    }
)
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
_PREFIX_RE = re.compile(r"^[A-Za-z0-9:_.-]{1,64}$")
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_ADDRESS_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$")


class SettingsError(ValueError):
    """Settings are missing or invalid: one line per problem, each naming its variable."""

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems: tuple[str, ...] = problems


def _var(name: str) -> dict[str, str]:
    """Field metadata: the environment variable a setting is read from."""
    return {"env": name}


def env_name(f: dataclasses.Field[Any]) -> str:
    """The environment variable of one ``Settings`` field."""
    return str(f.metadata["env"])


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` only reaches this machine: ``localhost``, 127.0.0.0/8 or ``::1``
    (an empty host or a path is a unix socket, which is local too)."""
    host = host.strip().strip("[]").lower()
    if not host or host.startswith("/") or host in {"localhost", "localhost."}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    """Whether a PostgreSQL or Redis URL points at this machine only (every host of a
    multi-host URL, and any ``host=`` query parameter, must be loopback or a socket)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return True
    netloc = parts.netloc.rpartition("@")[2]
    hosts = [_strip_port(h) for h in netloc.split(",")]
    hosts += [v for k, v in parse_qsl(parts.query) if k == "host"]
    return all(is_loopback_host(h) for h in hosts)


def _strip_port(hostport: str) -> str:
    if hostport.startswith("["):
        return hostport[1:].partition("]")[0]
    return hostport.rpartition(":")[0] if hostport.count(":") == 1 else hostport


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Effective configuration of every Kush service."""

    mode: Mode = field(default="demo", metadata=_var("KUSH_MODE"))
    data_dir: Path = field(default=Path("var"), metadata=_var("KUSH_DATA_DIR"))
    host: str = field(default="127.0.0.1", metadata=_var("KUSH_HOST"))
    gateway_port: int = field(default=8080, metadata=_var("KUSH_GATEWAY_PORT"))
    admin_port: int = field(default=8081, metadata=_var("KUSH_ADMIN_PORT"))
    #: ``kush worker``'s /metrics (0: none)
    worker_metrics_port: int = field(default=8082, metadata=_var("KUSH_WORKER_METRICS_PORT"))
    #: where the gateway's workers keep their metric files (see ``gateway_metrics_dir``)
    metrics_dir: Path | None = field(default=None, metadata=_var("KUSH_METRICS_DIR"))
    gateway_workers: int = field(
        default_factory=lambda: os.cpu_count() or 1, metadata=_var("KUSH_GATEWAY_WORKERS")
    )
    public_url: str | None = field(default=None, metadata=_var("KUSH_PUBLIC_URL"))
    database_url: str | None = field(default=None, metadata=_var("DATABASE_URL"))
    db_schema: str = field(default="public", metadata=_var("KUSH_DB_SCHEMA"))
    db_pool_size: int = field(default=10, metadata=_var("KUSH_DB_POOL_SIZE"))
    redis_url: str | None = field(default=None, metadata=_var("REDIS_URL"))
    redis_prefix: str = field(default="kush:", metadata=_var("KUSH_REDIS_PREFIX"))
    origin: OriginKind = field(default="local", metadata=_var("KUSH_ORIGIN"))
    origin_dir: Path | None = field(default=None, metadata=_var("KUSH_ORIGIN_DIR"))
    s3_endpoint_url: str | None = field(default=None, metadata=_var("KUSH_S3_ENDPOINT_URL"))
    s3_bucket: str | None = field(default=None, metadata=_var("KUSH_S3_BUCKET"))
    s3_access_key_id: str | None = field(default=None, metadata=_var("KUSH_S3_ACCESS_KEY_ID"))
    s3_secret_access_key: str | None = field(
        default=None, metadata=_var("KUSH_S3_SECRET_ACCESS_KEY")
    )
    s3_region: str = field(default="auto", metadata=_var("KUSH_S3_REGION"))
    master_key: str | None = field(default=None, metadata=_var("KUSH_MASTER_KEY"))
    stripe_secret_key: str | None = field(default=None, metadata=_var("STRIPE_SECRET_KEY"))
    stripe_webhook_secret: str | None = field(default=None, metadata=_var("STRIPE_WEBHOOK_SECRET"))
    demo_password: str = field(default=DEMO_PASSWORD, metadata=_var("KUSH_DEMO_PASSWORD"))
    max_body_bytes: int = field(default=1024 * 1024, metadata=_var("KUSH_MAX_BODY_BYTES"))
    # -- stalled clients and slow origins (README "Reliability") --
    client_write_timeout_s: int = field(default=30, metadata=_var("KUSH_CLIENT_WRITE_TIMEOUT_S"))
    drain_timeout_s: int = field(default=25, metadata=_var("KUSH_DRAIN_TIMEOUT_S"))
    body_read_timeout_s: int = field(default=15, metadata=_var("KUSH_BODY_READ_TIMEOUT_S"))
    shared_fetch_buffer_bytes: int = field(
        default=64 * 1024 * 1024, metadata=_var("KUSH_SHARED_FETCH_BUFFER_BYTES")
    )
    session_max_concurrent_segments: int = field(
        default=8, metadata=_var("KUSH_SESSION_MAX_CONCURRENT_SEGMENTS")
    )
    login_free_failures: int = field(default=5, metadata=_var("KUSH_LOGIN_FREE_FAILURES"))
    login_account_free_failures: int = field(
        default=20, metadata=_var("KUSH_LOGIN_ACCOUNT_FREE_FAILURES")
    )
    login_ip_failures_per_minute: int = field(
        default=300, metadata=_var("KUSH_LOGIN_IP_FAILURES_PER_MINUTE")
    )
    register_limit_per_hour: int = field(default=10, metadata=_var("KUSH_REGISTER_LIMIT_PER_HOUR"))
    playback_starts_per_minute: int = field(
        default=20, metadata=_var("KUSH_PLAYBACK_STARTS_PER_MINUTE")
    )
    admin_max_encodes: int = field(default=1, metadata=_var("KUSH_ADMIN_MAX_ENCODES"))
    cookie_secure: bool = field(default=False, metadata=_var("KUSH_COOKIE_SECURE"))
    geo_header: str = field(default="CF-IPCountry", metadata=_var("KUSH_GEO_HEADER"))
    region_header: str = field(default="CF-Region", metadata=_var("KUSH_REGION_HEADER"))
    trusted_proxies: tuple[str, ...] = field(default=(), metadata=_var("KUSH_TRUSTED_PROXIES"))
    segment_ip_binding: bool = field(default=False, metadata=_var("KUSH_SEGMENT_IP_BINDING"))
    data_saver_height: int = field(default=480, metadata=_var("KUSH_DATA_SAVER_HEIGHT"))
    # the data saver (README "Data"): the session's cap and its lighter ad load
    data_saver_max_height: int = field(default=360, metadata=_var("KUSH_DATA_SAVER_MAX_HEIGHT"))
    data_saver_ad_max_s: int = field(default=15, metadata=_var("KUSH_DATA_SAVER_AD_MAX_S"))
    data_saver_midroll_every_s: int = field(
        default=1800, metadata=_var("KUSH_DATA_SAVER_MIDROLL_EVERY_S")
    )
    # data metering: how often each gateway process adds its counted bytes to PostgreSQL
    usage_flush_s: int = field(default=2, metadata=_var("KUSH_USAGE_FLUSH_S"))
    hotlink_allowed_hosts: tuple[str, ...] = field(
        default=(), metadata=_var("KUSH_HOTLINK_ALLOWED_HOSTS")
    )
    cors_allowed_origins: tuple[str, ...] = field(
        default=("*",), metadata=_var("KUSH_CORS_ALLOWED_ORIGINS")
    )
    log_format: Literal["json", "text"] = field(default="json", metadata=_var("KUSH_LOG_FORMAT"))
    log_level: str = field(default="INFO", metadata=_var("KUSH_LOG_LEVEL"))
    seed_demo_film: bool = field(default=True, metadata=_var("KUSH_SEED_DEMO_FILM"))
    demo_film_seconds: int = field(default=120, metadata=_var("KUSH_DEMO_FILM_SECONDS"))
    hlsjs_url: str = field(default=DEFAULT_HLSJS_URL, metadata=_var("KUSH_HLSJS_URL"))
    # playback-session resilience (README "Reliability")
    stream_idle_s: int = field(default=120, metadata=_var("KUSH_STREAM_IDLE_S"))
    max_networks_per_session: int = field(default=3, metadata=_var("KUSH_MAX_NETWORKS_PER_SESSION"))
    session_grace_s: int = field(default=30, metadata=_var("KUSH_SESSION_GRACE_S"))
    session_cache_s: int = field(default=30, metadata=_var("KUSH_SESSION_CACHE_S"))
    # -- uploads and ingest jobs (admin/uploads.py, admin/jobs.py, kush worker)
    max_upload_bytes: int = field(default=20 * 1024**3, metadata=_var("KUSH_MAX_UPLOAD_BYTES"))
    upload_url_seconds: int = field(default=3600, metadata=_var("KUSH_UPLOAD_URL_SECONDS"))
    max_source_seconds: int = field(default=4 * 3600, metadata=_var("KUSH_MAX_SOURCE_SECONDS"))
    ingest_concurrency: int = field(default=1, metadata=_var("KUSH_INGEST_CONCURRENCY"))
    job_lease_seconds: int = field(default=60, metadata=_var("KUSH_JOB_LEASE_SECONDS"))
    job_max_attempts: int = field(default=3, metadata=_var("KUSH_JOB_MAX_ATTEMPTS"))
    ingest_cpu_factor: int = field(default=20, metadata=_var("KUSH_INGEST_CPU_FACTOR"))
    ingest_preset: str = field(default="veryfast", metadata=_var("KUSH_INGEST_PRESET"))
    # -- offline downloads (README "Offline downloads")
    download_url_ttl_s: int = field(default=600, metadata=_var("KUSH_DOWNLOAD_URL_TTL_S"))
    # -------- billing (Stripe) and mail
    stripe_price_basic: str | None = field(default=None, metadata=_var("STRIPE_PRICE_BASIC"))
    stripe_price_premium: str | None = field(default=None, metadata=_var("STRIPE_PRICE_PREMIUM"))
    stripe_api_base: str | None = field(default=None, metadata=_var("STRIPE_API_BASE"))
    stripe_timeout_s: float = field(default=10.0, metadata=_var("KUSH_STRIPE_TIMEOUT_S"))
    billing_success_url: str | None = field(default=None, metadata=_var("KUSH_BILLING_SUCCESS_URL"))
    billing_cancel_url: str | None = field(default=None, metadata=_var("KUSH_BILLING_CANCEL_URL"))
    billing_grace_hours: int = field(default=72, metadata=_var("KUSH_BILLING_GRACE_HOURS"))
    smtp_url: str | None = field(default=None, metadata=_var("KUSH_SMTP_URL"))
    mail_from: str = field(default=DEFAULT_MAIL_FROM, metadata=_var("KUSH_MAIL_FROM"))
    # -------- mobile money (README "Mobile money"): MTN MoMo and Airtel Money collections
    provisional_minutes: int = field(default=10, metadata=_var("KUSH_PROVISIONAL_MINUTES"))
    mobile_money_env: MobileMoneyEnv | None = field(
        default=None, metadata=_var("KUSH_MOBILE_MONEY_ENV")
    )
    mobile_money_expire_minutes: int = field(
        default=30, metadata=_var("KUSH_MOBILE_MONEY_EXPIRE_MINUTES")
    )
    mobile_money_timeout_s: float = field(
        default=10.0, metadata=_var("KUSH_MOBILE_MONEY_TIMEOUT_S")
    )
    mobile_money_callback_url: str | None = field(
        default=None, metadata=_var("KUSH_MOBILE_MONEY_CALLBACK_URL")
    )
    mobile_money_callback_secret: str | None = field(
        default=None, metadata=_var("KUSH_MOBILE_MONEY_CALLBACK_SECRET")
    )
    mtn_momo_base_url: str | None = field(default=None, metadata=_var("KUSH_MTN_MOMO_BASE_URL"))
    mtn_momo_subscription_key: str | None = field(
        default=None, metadata=_var("KUSH_MTN_MOMO_SUBSCRIPTION_KEY")
    )
    mtn_momo_api_user: str | None = field(default=None, metadata=_var("KUSH_MTN_MOMO_API_USER"))
    mtn_momo_api_key: str | None = field(default=None, metadata=_var("KUSH_MTN_MOMO_API_KEY"))
    mtn_momo_target_environment: str | None = field(
        default=None, metadata=_var("KUSH_MTN_MOMO_TARGET_ENVIRONMENT")
    )
    airtel_base_url: str | None = field(default=None, metadata=_var("KUSH_AIRTEL_BASE_URL"))
    airtel_client_id: str | None = field(default=None, metadata=_var("KUSH_AIRTEL_CLIENT_ID"))
    airtel_client_secret: str | None = field(
        default=None, metadata=_var("KUSH_AIRTEL_CLIENT_SECRET")
    )
    # the nginx edge (nginx/, `kush edge`; `kush up` starts it when KUSH_EDGE is on)
    edge: bool = field(default=False, metadata=_var("KUSH_EDGE"))
    edge_port: int = field(default=8088, metadata=_var("KUSH_EDGE_PORT"))
    #: UDP port the gateway workers take the edge's segment byte counts on (0: none)
    edge_usage_port: int = field(default=8089, metadata=_var("KUSH_EDGE_USAGE_PORT"))
    edge_cache_max_mb: int = field(default=10240, metadata=_var("KUSH_EDGE_CACHE_MAX_MB"))
    edge_auth_rate: int = field(default=30, metadata=_var("KUSH_EDGE_AUTH_RATE"))
    edge_start_rate: int = field(default=30, metadata=_var("KUSH_EDGE_START_RATE"))
    edge_tls_port: int = field(default=8443, metadata=_var("KUSH_EDGE_TLS_PORT"))
    edge_tls_cert: Path | None = field(default=None, metadata=_var("KUSH_EDGE_TLS_CERT"))
    edge_tls_key: Path | None = field(default=None, metadata=_var("KUSH_EDGE_TLS_KEY"))
    edge_upstream: tuple[str, ...] = field(default=(), metadata=_var("KUSH_EDGE_UPSTREAM"))
    edge_templates: Path | None = field(default=None, metadata=_var("KUSH_EDGE_TEMPLATES"))

    @property
    def is_demo(self) -> bool:
        """Demo mode seeds data and may default secrets; production never does."""
        return self.mode == "demo"

    def gateway_metrics_dir(self) -> Path:
        """The directory ``kush gateway --workers N`` shares its workers' metrics through
        (``KUSH_METRICS_DIR`` or ``<data dir>/metrics/gateway-<port>``), absolute."""
        chosen = self.metrics_dir or self.data_dir / "metrics" / f"gateway-{self.gateway_port}"
        return chosen.resolve()

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

    @property
    def webhook_secrets(self) -> tuple[str, ...]:
        """Every accepted webhook signing secret: ``STRIPE_WEBHOOK_SECRET`` may list
        several, comma-separated, while one is rotated out (each endpoint signs with its
        own)."""
        raw = self.webhook_secret or ""
        return tuple(part.strip() for part in raw.split(",") if part.strip())

    @property
    def billing_configured(self) -> bool:
        """Whether Checkout and the Customer Portal can be used (a Stripe secret key)."""
        return bool(self.stripe_secret_key)

    def stripe_price(self, plan: str) -> str | None:
        """The Stripe price id of a paid plan (``STRIPE_PRICE_BASIC``/``_PREMIUM``)."""
        return {"basic": self.stripe_price_basic, "premium": self.stripe_price_premium}.get(plan)

    def plan_of_price(self, price_id: str) -> str | None:
        """The plan a Stripe price id stands for, if it is one of ours."""
        for plan in ("basic", "premium"):
            if price_id and self.stripe_price(plan) == price_id:
                return plan
        return None

    def billing_return_url(self, outcome: str) -> str:
        """Where Stripe sends the viewer back: ``success``, ``cancel`` or ``portal``."""
        if outcome == "success" and self.billing_success_url:
            return self.billing_success_url
        if outcome == "cancel" and self.billing_cancel_url:
            return self.billing_cancel_url
        query = "" if outcome == "portal" else f"?checkout={outcome}"
        return f"{self.gateway_url().rstrip('/')}/upgrade{query}"

    # -- mobile money

    @property
    def momo_env(self) -> MobileMoneyEnv | None:
        """Sandbox or production endpoints (``KUSH_MOBILE_MONEY_ENV``; sandbox by default
        in demo mode only)."""
        return self.mobile_money_env or ("sandbox" if self.is_demo else None)

    @property
    def mtn_configured(self) -> bool:
        """Whether MTN MoMo collections can be used (every credential set)."""
        return bool(
            self.mtn_momo_subscription_key
            and self.mtn_momo_api_user
            and self.mtn_momo_api_key
            and self.momo_env
        )

    @property
    def airtel_configured(self) -> bool:
        """Whether Airtel Money collections can be used (client id and secret set)."""
        return bool(self.airtel_client_id and self.airtel_client_secret and self.momo_env)

    def mtn_base(self) -> str:
        """MTN MoMo's API base URL (``KUSH_MTN_MOMO_BASE_URL`` or the environment's)."""
        return (self.mtn_momo_base_url or MTN_MOMO_BASE_URLS[self.momo_env or "sandbox"]).rstrip(
            "/"
        )

    def mtn_target_environment(self) -> str:
        """MTN's ``X-Target-Environment``: ``sandbox``, or ``mtnuganda`` in production."""
        if self.mtn_momo_target_environment:
            return self.mtn_momo_target_environment
        return "sandbox" if self.momo_env != "production" else "mtnuganda"

    def airtel_base(self) -> str:
        """Airtel's API base URL (``KUSH_AIRTEL_BASE_URL`` or the environment's)."""
        return (self.airtel_base_url or AIRTEL_BASE_URLS[self.momo_env or "sandbox"]).rstrip("/")

    @property
    def callback_secret(self) -> str | None:
        """The secret signing our callback URLs (a documented default in demo mode only)."""
        if self.mobile_money_callback_secret:
            return self.mobile_money_callback_secret
        return DEMO_MOBILE_MONEY_CALLBACK_SECRET if self.is_demo else None

    def callback_base(self) -> str | None:
        """Base URL at which the providers reach the admin service's callbacks."""
        if self.mobile_money_callback_url:
            return self.mobile_money_callback_url.rstrip("/")
        return self.admin_url() if self.is_demo else None

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
        """Every setting as text under its environment variable, secrets masked, for
        ``kush config``."""
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS and value:
                text = _mask_url(str(value)) if f.name.endswith("_url") else "********"
            elif isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, tuple):
                text = ",".join(value)
            else:
                text = "" if value is None else str(value)
            out[env_name(f)] = text
        return out

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from environment variables (``os.environ`` by default)."""
        return _Parser(os.environ if env is None else env).build()


def _mask_url(url: str) -> str:
    """Hide the password of a ``scheme://user:password@host`` URL."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1********@", url)


class _Parser:
    """Reads and validates every variable, collecting one line per problem (each naming
    its variable) so that an operator fixes them all in one go; a bad value reads as
    its default, and :meth:`build` raises once at the end."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []
        self.bad: set[str] = set()
        self.seen: set[str] = set()

    def problem(self, name: str, message: str) -> None:
        self.problems.append(f"{name}: {message}")
        self.bad.add(name)

    def text(self, name: str) -> str | None:
        self.seen.add(name)
        value = self.env.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def choice(
        self, name: str, options: tuple[str, ...], default: str, *, upper: bool = False
    ) -> str:
        value = self.text(name) or default
        if upper:
            value = value.upper()
        if value not in options:
            self.problem(name, f"must be one of {', '.join(options)}, got {value!r}")
            return default
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problem(name, f"must be an integer, got {raw!r}")
            return default
        if not low <= value <= high:
            self.problem(name, f"must be between {low} and {high}, got {value}")
            return default
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
        self.problem(name, f"must be true or false, got {raw!r}")
        return default

    def url(self, name: str, schemes: tuple[str, ...]) -> str | None:
        raw = self.text(name)
        if raw is None:
            return None
        scheme = raw.split("://", 1)[0] if "://" in raw else ""
        if scheme not in schemes:
            starts = " or ".join(s + "://" for s in schemes)
            self.problem(name, f"must be a URL starting with {starts}")
            return None
        return raw

    def pattern(self, name: str, regex: re.Pattern[str], default: str, what: str) -> str:
        value = self.text(name) or default
        if not regex.match(value):
            self.problem(name, f"{what}, got {value!r}")
            return default
        return value

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
            self.problem(name, str(err))
            return ()

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

    def addresses(self, name: str) -> tuple[str, ...]:
        """A comma-separated list of ``host:port`` (``gateway:8080, [::1]:8080``)."""
        items = self.listing(name, ())
        bad = [item for item in items if not _ADDRESS_RE.match(item)]
        if bad:
            self.problem(name, f"not a host:port address: {bad[0]!r}")
            return ()
        return items

    def edge(self) -> dict[str, Any]:
        """The nginx edge's settings (``KUSH_EDGE*``)."""
        return {
            "edge": self.boolean("KUSH_EDGE", False),
            "edge_port": self.integer("KUSH_EDGE_PORT", 8088, 1, 65535),
            "edge_usage_port": self.integer("KUSH_EDGE_USAGE_PORT", 8089, 0, 65535),
            "edge_cache_max_mb": self.integer("KUSH_EDGE_CACHE_MAX_MB", 10240, 16, 10**8),
            "edge_auth_rate": self.integer("KUSH_EDGE_AUTH_RATE", 30, 1, 100000),
            "edge_start_rate": self.integer("KUSH_EDGE_START_RATE", 30, 1, 100000),
            "edge_tls_port": self.integer("KUSH_EDGE_TLS_PORT", 8443, 1, 65535),
            "edge_tls_cert": self.path("KUSH_EDGE_TLS_CERT"),
            "edge_tls_key": self.path("KUSH_EDGE_TLS_KEY"),
            "edge_upstream": self.addresses("KUSH_EDGE_UPSTREAM"),
            "edge_templates": self.path("KUSH_EDGE_TEMPLATES"),
        }

    def mobile_money(self, demo: bool) -> dict[str, Any]:
        """The mobile money settings (``KUSH_PROVISIONAL_MINUTES``, ``KUSH_MTN_MOMO_*``,
        ``KUSH_AIRTEL_*``, ``KUSH_MOBILE_MONEY_*``)."""
        env = self.text("KUSH_MOBILE_MONEY_ENV")
        momo_env: MobileMoneyEnv | None = None
        if env is not None:
            chosen = self.choice("KUSH_MOBILE_MONEY_ENV", ("sandbox", "production"), "sandbox")
            momo_env = "production" if chosen == "production" else "sandbox"
        return {
            "provisional_minutes": self.integer("KUSH_PROVISIONAL_MINUTES", 10, 0, 24 * 60),
            "mobile_money_env": momo_env,
            "mobile_money_expire_minutes": self.integer(
                "KUSH_MOBILE_MONEY_EXPIRE_MINUTES", 30, 1, 24 * 60
            ),
            "mobile_money_timeout_s": float(self.integer("KUSH_MOBILE_MONEY_TIMEOUT_S", 10, 1, 60)),
            "mobile_money_callback_url": self.url(
                "KUSH_MOBILE_MONEY_CALLBACK_URL", ("http", "https")
            ),
            "mobile_money_callback_secret": self.text("KUSH_MOBILE_MONEY_CALLBACK_SECRET"),
            "mtn_momo_base_url": self.url("KUSH_MTN_MOMO_BASE_URL", ("http", "https")),
            "mtn_momo_subscription_key": self.text("KUSH_MTN_MOMO_SUBSCRIPTION_KEY"),
            "mtn_momo_api_user": self.text("KUSH_MTN_MOMO_API_USER"),
            "mtn_momo_api_key": self.text("KUSH_MTN_MOMO_API_KEY"),
            "mtn_momo_target_environment": self.text("KUSH_MTN_MOMO_TARGET_ENVIRONMENT"),
            "airtel_base_url": self.url("KUSH_AIRTEL_BASE_URL", ("http", "https")),
            "airtel_client_id": self.text("KUSH_AIRTEL_CLIENT_ID"),
            "airtel_client_secret": self.text("KUSH_AIRTEL_CLIENT_SECRET"),
        }

    def build(self) -> Settings:
        mode = self.choice("KUSH_MODE", ("demo", "production"), "demo")
        demo = mode == "demo"
        origin = self.choice("KUSH_ORIGIN", ("local", "s3"), "local")
        log_format = self.choice(
            "KUSH_LOG_FORMAT", ("json", "text"), "json" if not demo else "text"
        )
        log_level = self.choice(
            "KUSH_LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO", upper=True
        )
        origin_dir = self.text("KUSH_ORIGIN_DIR")
        settings = Settings(
            mode="demo" if demo else "production",
            data_dir=Path(self.text("KUSH_DATA_DIR") or "var"),
            host=self.text("KUSH_HOST") or "127.0.0.1",
            gateway_port=self.integer("KUSH_GATEWAY_PORT", 8080, 1, 65535),
            admin_port=self.integer("KUSH_ADMIN_PORT", 8081, 1, 65535),
            worker_metrics_port=self.integer("KUSH_WORKER_METRICS_PORT", 8082, 0, 65535),
            metrics_dir=self.path("KUSH_METRICS_DIR"),
            gateway_workers=self.integer("KUSH_GATEWAY_WORKERS", os.cpu_count() or 1, 1, 256),
            public_url=self.url("KUSH_PUBLIC_URL", ("http", "https")),
            database_url=self.url("DATABASE_URL", ("postgres", "postgresql")),
            db_schema=self.pattern(
                "KUSH_DB_SCHEMA", _SCHEMA_RE, "public", "must be a lower-case SQL identifier"
            ),
            db_pool_size=self.integer("KUSH_DB_POOL_SIZE", 10, 1, 200),
            redis_url=self.url("REDIS_URL", ("redis", "rediss", "unix")),
            redis_prefix=self.pattern(
                "KUSH_REDIS_PREFIX", _PREFIX_RE, "kush:", "only letters, digits and :_.- allowed"
            ),
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
            # -- stalled clients and slow origins (README "Reliability") --
            client_write_timeout_s=self.integer("KUSH_CLIENT_WRITE_TIMEOUT_S", 30, 1, 3600),
            drain_timeout_s=self.integer("KUSH_DRAIN_TIMEOUT_S", 25, 0, 3600),
            body_read_timeout_s=self.integer("KUSH_BODY_READ_TIMEOUT_S", 15, 1, 3600),
            shared_fetch_buffer_bytes=self.integer(
                "KUSH_SHARED_FETCH_BUFFER_BYTES", 64 * 1024 * 1024, 0, 1024**4
            ),
            session_max_concurrent_segments=self.integer(
                "KUSH_SESSION_MAX_CONCURRENT_SEGMENTS", 8, 1, 10_000
            ),
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
            data_saver_max_height=self.integer("KUSH_DATA_SAVER_MAX_HEIGHT", 360, 144, 4320),
            data_saver_ad_max_s=self.integer("KUSH_DATA_SAVER_AD_MAX_S", 15, 1, 600),
            data_saver_midroll_every_s=self.integer(
                "KUSH_DATA_SAVER_MIDROLL_EVERY_S", 1800, 60, 86400
            ),
            usage_flush_s=self.integer("KUSH_USAGE_FLUSH_S", 2, 1, 60),
            hotlink_allowed_hosts=self.listing("KUSH_HOTLINK_ALLOWED_HOSTS", ()),
            cors_allowed_origins=self.listing("KUSH_CORS_ALLOWED_ORIGINS", ("*",)),
            log_format="json" if log_format == "json" else "text",
            log_level=log_level,
            seed_demo_film=self.boolean("KUSH_SEED_DEMO_FILM", True),
            demo_film_seconds=self.integer("KUSH_DEMO_FILM_SECONDS", 120, 6, 3600),
            hlsjs_url=self.script_url("KUSH_HLSJS_URL", DEFAULT_HLSJS_URL),
            stream_idle_s=self.integer("KUSH_STREAM_IDLE_S", 120, 1, 86400),
            max_networks_per_session=self.integer("KUSH_MAX_NETWORKS_PER_SESSION", 3, 1, 1000),
            session_grace_s=self.integer("KUSH_SESSION_GRACE_S", 30, 0, 600),
            session_cache_s=self.integer("KUSH_SESSION_CACHE_S", 30, 0, 3600),
            max_upload_bytes=self.integer("KUSH_MAX_UPLOAD_BYTES", 20 * 1024**3, 1024, 1024**4),
            upload_url_seconds=self.integer("KUSH_UPLOAD_URL_SECONDS", 3600, 60, 7 * 24 * 3600),
            max_source_seconds=self.integer("KUSH_MAX_SOURCE_SECONDS", 4 * 3600, 1, 24 * 3600),
            ingest_concurrency=self.integer("KUSH_INGEST_CONCURRENCY", 1, 1, 32),
            job_lease_seconds=self.integer("KUSH_JOB_LEASE_SECONDS", 60, 2, 3600),
            job_max_attempts=self.integer("KUSH_JOB_MAX_ATTEMPTS", 3, 1, 20),
            ingest_cpu_factor=self.integer("KUSH_INGEST_CPU_FACTOR", 20, 1, 1000),
            ingest_preset=self.choice("KUSH_INGEST_PRESET", X264_PRESETS, "veryfast"),
            download_url_ttl_s=self.integer("KUSH_DOWNLOAD_URL_TTL_S", 600, 60, 24 * 3600),
            stripe_price_basic=self.text("STRIPE_PRICE_BASIC"),
            stripe_price_premium=self.text("STRIPE_PRICE_PREMIUM"),
            stripe_api_base=self.url("STRIPE_API_BASE", ("http", "https")),
            stripe_timeout_s=float(self.integer("KUSH_STRIPE_TIMEOUT_S", 10, 1, 60)),
            billing_success_url=self.url("KUSH_BILLING_SUCCESS_URL", ("http", "https")),
            billing_cancel_url=self.url("KUSH_BILLING_CANCEL_URL", ("http", "https")),
            billing_grace_hours=self.integer("KUSH_BILLING_GRACE_HOURS", 72, 0, 24 * 60),
            smtp_url=self.url("KUSH_SMTP_URL", ("smtp", "smtps")),
            mail_from=self.text("KUSH_MAIL_FROM") or DEFAULT_MAIL_FROM,
            **self.mobile_money(demo),
            **self.edge(),
        )
        # Cross-field rules only judge values that were read cleanly: a typo in one
        # variable is not also reported as a clash with another (nor, with a bad
        # KUSH_MODE, as a rule of a mode nobody asked for).
        if "KUSH_MODE" not in self.bad:
            for problem in check(settings):
                if not any(name in problem for name in self.bad):
                    self.problems.append(problem)
        if self.problems:
            raise SettingsError(*self.problems)
        return settings


def check(settings: Settings) -> list[str]:
    """Cross-field rules, one line per broken rule: a complete S3 configuration, distinct
    ports, production secrets, and demo mode kept on this machine."""
    problems: list[str] = []
    if settings.origin == "s3":
        for name, value in (
            ("KUSH_S3_BUCKET", settings.s3_bucket),
            ("KUSH_S3_ACCESS_KEY_ID", settings.s3_access_key_id),
            ("KUSH_S3_SECRET_ACCESS_KEY", settings.s3_secret_access_key),
        ):
            if not value:
                problems.append(f"{name}: required when KUSH_ORIGIN=s3")
    if settings.gateway_port == settings.admin_port:
        problems.append("KUSH_ADMIN_PORT: must differ from KUSH_GATEWAY_PORT")
    if settings.edge_port in (settings.gateway_port, settings.admin_port):
        problems.append("KUSH_EDGE_PORT: must differ from the gateway and admin ports")
    if settings.worker_metrics_port in (settings.gateway_port, settings.admin_port):
        problems.append("KUSH_WORKER_METRICS_PORT: must differ from the gateway and admin ports")
    if (settings.edge_tls_cert is None) != (settings.edge_tls_key is None):
        problems.append("KUSH_EDGE_TLS_CERT: set both KUSH_EDGE_TLS_CERT and KUSH_EDGE_TLS_KEY")
    if settings.is_demo:
        problems.extend(demo_problems(settings))
        return problems
    for name, value in (
        ("KUSH_MASTER_KEY", settings.master_key),
        ("STRIPE_WEBHOOK_SECRET", settings.stripe_webhook_secret),
        ("DATABASE_URL", settings.database_url),
        ("REDIS_URL", settings.redis_url),
    ):
        if not value:
            problems.append(f"{name}: required in production mode (no defaults for secrets)")
    problems.extend(mobile_money_problems(settings))
    return problems


def mobile_money_problems(settings: Settings) -> list[str]:
    """Production mode with a mobile money provider half-configured: every credential,
    the environment, the callback URL and its secret are required (none defaults)."""
    mtn = (
        settings.mtn_momo_subscription_key,
        settings.mtn_momo_api_user,
        settings.mtn_momo_api_key,
    )
    airtel = (settings.airtel_client_id, settings.airtel_client_secret)
    problems: list[str] = []
    if any(mtn) and not all(mtn):
        problems.append(
            "KUSH_MTN_MOMO_API_USER: set all of KUSH_MTN_MOMO_SUBSCRIPTION_KEY, "
            "KUSH_MTN_MOMO_API_USER and KUSH_MTN_MOMO_API_KEY, or none"
        )
    if any(airtel) and not all(airtel):
        problems.append(
            "KUSH_AIRTEL_CLIENT_ID: set both KUSH_AIRTEL_CLIENT_ID and KUSH_AIRTEL_CLIENT_SECRET"
        )
    if any(mtn) or any(airtel):
        for name, value in (
            ("KUSH_MOBILE_MONEY_ENV", settings.mobile_money_env),
            ("KUSH_MOBILE_MONEY_CALLBACK_URL", settings.mobile_money_callback_url),
            ("KUSH_MOBILE_MONEY_CALLBACK_SECRET", settings.mobile_money_callback_secret),
        ):
            if not value:
                problems.append(f"{name}: required in production mode with mobile money")
    return problems


_DEMO_HINT = "demo mode (insecure cookies, default secrets, demo accounts) stays on this machine"


def demo_problems(settings: Settings) -> list[str]:
    """Why these settings may not run in demo mode: it defaults secrets, sends cookies
    without ``Secure`` and seeds accounts with a published password, so it only runs
    against embedded or loopback services and listens on loopback only. Empty when
    they may (or when the mode is ``production``)."""
    if not settings.is_demo:
        return []
    problems: list[str] = []
    for name, url in (("DATABASE_URL", settings.database_url), ("REDIS_URL", settings.redis_url)):
        if url and not is_loopback_url(url):
            problems.append(
                f"{name}: points at another machine; {_DEMO_HINT}: unset it (embedded), "
                "use a loopback address, or set KUSH_MODE=production"
            )
    if not is_loopback_host(settings.host):
        problems.append(
            f"KUSH_HOST: {settings.host!r} is not a loopback address; {_DEMO_HINT}: "
            "listen on 127.0.0.1, ::1 or localhost, or set KUSH_MODE=production"
        )
    return problems
