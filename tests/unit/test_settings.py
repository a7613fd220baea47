"""Settings: parsed once from the environment, one clear error per bad variable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from runtime.settings import Settings, SettingsError, _Parser, is_loopback_url

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
        (
            {"KUSH_ORIGIN": "s3", "KUSH_S3_ACCESS_KEY_ID": "a", "KUSH_S3_SECRET_ACCESS_KEY": "b"},
            "KUSH_S3_BUCKET",
        ),
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
    assert shown["DATABASE_URL"] == "postgresql://kush:********@db.internal/kush"
    assert shown["STRIPE_SECRET_KEY"] == "********"
    assert shown["KUSH_GATEWAY_PORT"] == "8080"


def test_config_shows_environment_variable_names() -> None:
    shown = Settings.from_env({"KUSH_GATEWAY_PORT": "9090"}).masked()
    assert shown["KUSH_GATEWAY_PORT"] == "9090"
    assert {"KUSH_MODE", "DATABASE_URL", "REDIS_URL", "KUSH_LOG_LEVEL"} <= shown.keys()
    assert "gateway_port" not in shown
    assert len(shown) == len(dataclasses.fields(Settings))


def test_every_setting_is_read_from_its_variable() -> None:
    parser = _Parser({})
    parser.build()
    variables = {f.metadata["env"] for f in dataclasses.fields(Settings)}
    assert parser.seen == variables


def test_every_invalid_variable_is_reported_at_once() -> None:
    env = {
        "KUSH_GATEWAY_PORT": "eighty",
        "KUSH_ADMIN_PORT": "8080",  # equal to the (defaulted) gateway port: not reported
        "KUSH_LOG_FORMAT": "xml",
        "DATABASE_URL": "mysql://x",
        "KUSH_COOKIE_SECURE": "maybe",
        "KUSH_REDIS_PREFIX": "bad prefix!",
    }
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    problems = info.value.problems
    assert [p.split(":", 1)[0] for p in problems] == [
        "KUSH_LOG_FORMAT",
        "KUSH_GATEWAY_PORT",
        "DATABASE_URL",
        "KUSH_REDIS_PREFIX",
        "KUSH_COOKIE_SECURE",
    ]
    assert str(info.value).splitlines() == list(problems)
    assert "'eighty'" in problems[1]


def test_production_reports_every_missing_secret() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"KUSH_MODE": "production"})
    named = {p.split(":", 1)[0] for p in info.value.problems}
    assert named == PRODUCTION_OK.keys() - {"KUSH_MODE"}


@pytest.mark.parametrize("level", ["debug", "Debug", "DEBUG", " debug "])
def test_log_level_is_case_insensitive(level: str) -> None:
    assert Settings.from_env({"KUSH_LOG_LEVEL": level}).log_level == "DEBUG"


def test_unknown_log_level_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"^KUSH_LOG_LEVEL: must be one of"):
        Settings.from_env({"KUSH_LOG_LEVEL": "verbose"})


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:5432/test",
        "postgresql://kush:pw@localhost/kush",
        "postgresql://kush@127.8.9.10/kush",
        "postgresql://kush@[::1]:5432/kush",
        "postgresql:///kush",
        "postgresql://postgres:@/postgres?host=/tmp/pg-socket",
        "postgresql://127.0.0.1:5432,localhost:5433/kush",
        "redis://127.0.0.1:6379/0",
        "rediss://localhost:6380",
        "unix:///tmp/redis.sock",
    ],
)
def test_loopback_urls(url: str) -> None:
    assert is_loopback_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://kush:pw@db.internal:5432/kush",
        "postgresql://kush@10.0.0.5/kush",
        "postgresql://kush@[2001:db8::1]/kush",
        "postgresql://127.0.0.1,db.internal/kush",
        "postgresql:///kush?host=db.internal",
        "redis://cache.internal:6379/0",
        "redis://localhost.evil.example:6379",
    ],
)
def test_remote_urls(url: str) -> None:
    assert not is_loopback_url(url)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DATABASE_URL": "postgresql://kush:pw@db.internal/kush"}, "DATABASE_URL"),
        ({"REDIS_URL": "redis://cache.internal:6379/0"}, "REDIS_URL"),
        ({"KUSH_HOST": "0.0.0.0"}, "KUSH_HOST"),
        ({"KUSH_HOST": "192.168.1.20", "KUSH_MODE": "demo"}, "KUSH_HOST"),
    ],
)
def test_demo_mode_refuses_to_leave_this_machine(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert [p.split(":", 1)[0] for p in info.value.problems] == [variable]
    assert "KUSH_MODE=production" in str(info.value)
    assert "password" not in str(info.value)


def test_demo_mode_reports_every_remote_service() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(
            {
                "DATABASE_URL": "postgresql://kush:hunter2pw@db.internal/kush",
                "REDIS_URL": "redis://cache.internal:6379/0",
                "KUSH_HOST": "0.0.0.0",
            }
        )
    assert {p.split(":", 1)[0] for p in info.value.problems} == {
        "DATABASE_URL",
        "REDIS_URL",
        "KUSH_HOST",
    }
    assert "hunter2pw" not in str(info.value)


def test_s3_origin_reports_every_missing_setting() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"KUSH_ORIGIN": "s3"})
    assert [p.split(":", 1)[0] for p in info.value.problems] == [
        "KUSH_S3_BUCKET",
        "KUSH_S3_ACCESS_KEY_ID",
        "KUSH_S3_SECRET_ACCESS_KEY",
    ]


def test_demo_mode_on_loopback_and_production_anywhere() -> None:
    local = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "KUSH_HOST": "::1",
        }
    )
    assert local.is_demo
    remote = Settings.from_env({**PRODUCTION_OK, "KUSH_HOST": "0.0.0.0"})
    assert not remote.is_demo


def test_trusted_proxies_are_cidrs() -> None:
    settings = Settings.from_env({"KUSH_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1"})
    assert settings.trusted_proxies == ("10.0.0.0/8", "192.168.1.1/32")
    with pytest.raises(SettingsError, match="KUSH_TRUSTED_PROXIES"):
        Settings.from_env({"KUSH_TRUSTED_PROXIES": "10.0.0.0/8, lan"})
