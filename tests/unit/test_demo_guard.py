"""Demo data is never seeded into services on another machine."""

from __future__ import annotations

import pytest

from kush import seed
from runtime import db
from runtime.settings import Settings, SettingsError


@pytest.mark.parametrize(
    "settings",
    [
        Settings(mode="demo", database_url="postgresql://kush@db.internal/kush"),
        Settings(mode="demo", redis_url="redis://cache.internal:6379/0"),
        Settings(mode="demo", host="0.0.0.0"),
    ],
)
async def test_prepare_refuses_demo_seed_off_this_machine(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def never(_settings: Settings) -> None:
        raise AssertionError("connected to the database")

    monkeypatch.setattr(db, "connect", never)
    with pytest.raises(SettingsError, match="KUSH_MODE=production"):
        await seed.prepare(settings)
