"""Registers the start-up hooks and extra commands of the other packages."""

from __future__ import annotations
