"""Kush Films edge: command line, settings and runtime shared by every service."""

from kush.settings import Settings, SettingsError

__all__ = ["Settings", "SettingsError"]
