"""Settings: parsed once from the environment, one clear error per bad variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.settings import Settings, SettingsError

PRODUCTION_OK = {
    "KUSH_MODE": "production",
    "KUSH_MASTER_KEY": "k" * 43,
    "STRIPE_WEBHOOK_SECRET": "whsec_live",
    "DATABASE_URL": "postgresql://kush:secret@db.internal/kush",
    "REDIS_URL": "redis://cache.internal:6379/0",
}


def test_defaults_match_design() -> None:
    s = Settings.from_env({})
    assert (s.mode, s.gateway_port, s.admin_port, s.origin) == ("demo", 8080, 8081, "local")
    assert s.data_dir == Path("var")
    assert s.database_url is None
    assert s.webhook_secret == "whsec_demo"
    assert s.demo_password == "kush-demo"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"KUSH_GATEWAY_PORT": "eighty"}, "KUSH_GATEWAY_PORT"),
        ({"KUSH_ADMIN_PORT": "70000"}, "KUSH_ADMIN_PORT"),
        ({"KUSH_MODE": "staging"}, "KUSH_MODE"),
        ({"KUSH_ORIGIN": "ftp"}, "KUSH_ORIGIN"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"KUSH_COOKIE_SECURE": "maybe"}, "KUSH_COOKIE_SECURE"),
        ({"KUSH_DB_SCHEMA": "Robert'); DROP"}, "KUSH_DB_SCHEMA"),
        ({"KUSH_ORIGIN": "s3"}, "KUSH_S3_BUCKET"),
        ({"KUSH_GATEWAY_PORT": "9000", "KUSH_ADMIN_PORT": "9000"}, "KUSH_ADMIN_PORT"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    message = str(info.value)
    assert message.startswith(variable + ":")
    assert "\n" not in message


@pytest.mark.parametrize("missing", sorted(PRODUCTION_OK.keys() - {"KUSH_MODE"}))
def test_production_refuses_missing_secrets(missing: str) -> None:
    env = {k: v for k, v in PRODUCTION_OK.items() if k != missing}
    with pytest.raises(SettingsError, match=f"^{missing}: required in production"):
        Settings.from_env(env)


def test_production_has_no_default_secrets() -> None:
    s = Settings.from_env(PRODUCTION_OK)
    assert s.cookie_secure is True
    assert s.webhook_secret == "whsec_live"
    bare = Settings(mode="production")
    assert bare.webhook_secret is None
    with pytest.raises(SettingsError, match="KUSH_MASTER_KEY"):
        bare.resolve_master_key()


def test_demo_master_key_generated_once(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    first = s.resolve_master_key()
    assert first == s.resolve_master_key()
    assert (tmp_path / "master.key").stat().st_mode & 0o777 == 0o600


def test_config_masks_secrets() -> None:
    s = Settings.from_env({**PRODUCTION_OK, "STRIPE_SECRET_KEY": "sk_live_abc"})
    shown = s.masked()
    text = "\n".join(shown.values())
    assert "sk_live_abc" not in text
    assert "secret@" not in text
    assert "k" * 43 not in text
    assert shown["database_url"] == "postgresql://kush:********@db.internal/kush"
    assert shown["stripe_secret_key"] == "********"
    assert shown["gateway_port"] == "8080"


def test_trusted_proxies_are_cidrs() -> None:
    settings = Settings.from_env({"KUSH_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1"})
    assert settings.trusted_proxies == ("10.0.0.0/8", "192.168.1.1/32")
    with pytest.raises(SettingsError, match="KUSH_TRUSTED_PROXIES"):
        Settings.from_env({"KUSH_TRUSTED_PROXIES": "10.0.0.0/8, lan"})
