"""Helpers shared by tests (real services started in-process)."""
