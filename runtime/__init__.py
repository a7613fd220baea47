"""The runtime kernel every service stands on: settings, PostgreSQL, Redis, web basics,
errors, logging. It imports nothing else of ours (``docs/architecture.md``)."""

from runtime.settings import Settings, SettingsError

__all__ = ["Settings", "SettingsError"]
