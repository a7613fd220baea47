"""Playback fixtures (``film``, ``play_settings``) live in ``tests/conftest.py``, shared
with ``tests/e2e``; their names stay importable from here."""

from __future__ import annotations

from tests.conftest import DEMO_PASSWORD, Film

__all__ = ["DEMO_PASSWORD", "Film"]
