"""The ``kush`` command: run the services, migrate, seed, rotate keys, inspect config."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from kush.logs import setup_logging
from kush.settings import Settings, SettingsError

log = logging.getLogger("kush")

SHUTDOWN_GRACE_S = 8.0


def _install_uvloop() -> None:
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _run(coro: Coroutine[Any, Any, int]) -> int:
    _install_uvloop()
    return asyncio.run(coro)


# ---------------------------------------------------------------- one-shot commands


async def _migrate(settings: Settings) -> int:
    from kush import db

    conn = await db.connect(settings)
    try:
        applied = await db.migrate(conn, settings.db_schema)
    finally:
        await conn.close()
    print(f"migrations applied: {len(applied)}" + (f" ({applied})" if applied else ""))
    return 0


async def prepare(settings: Settings) -> None:
    """Migrations, signing keys and (in demo mode) demo data: what ``kush up`` runs first."""
    from kush import db
    from kush.seed import seed_demo_accounts

    conn = await db.connect(settings)
    try:
        await db.migrate(conn, settings.db_schema)
        for hook in PREPARE_HOOKS:
            await hook(settings, conn)
        if settings.is_demo:
            await seed_demo_accounts(conn, settings.demo_password)
            for hook in DEMO_SEED_HOOKS:
                await hook(settings, conn)
    finally:
        await conn.close()


# Later packages register start-up work here (signing keys, demo film...) without
# the CLI importing the whole world.
PrepareHook = Callable[[Settings, Any], Coroutine[Any, Any, None]]
PREPARE_HOOKS: list[PrepareHook] = []
DEMO_SEED_HOOKS: list[PrepareHook] = []


def _config(settings: Settings) -> int:
    for name, value in settings.masked().items():
        print(f"{name:24} {value}")
    return 0


# ---------------------------------------------------------------- long-running services


def _serve(settings: Settings, service: str, port: int) -> int:
    from aiohttp import web

    _install_uvloop()
    if service == "gateway":
        from gateway.app import create_app
    else:
        from admin.app import create_app
    log.info("%s listening on http://%s:%d (pid %d)", service, settings.host, port, os.getpid())
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=port,
        reuse_port=True,
        access_log=None,
        print=None,
        shutdown_timeout=5.0,
    )
    return 0


def _worker(settings: Settings) -> int:
    from kush.worker import run_worker

    return _run(run_worker(settings))


class Supervisor:
    """Runs child processes, forwards SIGINT/SIGTERM, and stops them all together."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.stopping = False

    def spawn(self, name: str, args: Sequence[str]) -> None:
        cmd = [sys.executable, "-m", "kush", *args]
        self.children.append((name, subprocess.Popen(cmd, env=self.env)))  # noqa: S603

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def wait(self) -> int:
        """Block until a signal arrives or a child dies; then stop every child."""
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        code = 0
        while not self.stopping:
            for name, proc in self.children:
                if proc.poll() is not None:
                    log.error("%s exited with status %s; stopping", name, proc.returncode)
                    self.stopping = True
                    code = 1
            time.sleep(0.2)
        self.stop()
        return code

    def stop(self) -> None:
        for _, proc in self.children:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        for name, proc in self.children:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", name)
                proc.kill()
                proc.wait()


def _gateway_workers(settings: Settings, workers: int | None) -> int:
    count = workers or settings.gateway_workers
    if count <= 1:
        return _serve(settings, "gateway", settings.gateway_port)
    sup = Supervisor(dict(os.environ))
    for i in range(count):
        sup.spawn(f"gateway-{i}", ["gateway", "--workers", "1"])
    return sup.wait()


def _up(settings: Settings, workers: int | None) -> int:
    """Everything on one machine: embedded services when unconfigured, demo data, URLs."""
    from kush.embedded import EmbeddedServices

    embedded = EmbeddedServices()
    env = dict(os.environ)
    try:
        if not settings.database_url:
            env["DATABASE_URL"] = embedded.start_postgres(settings.data_dir)
        if not settings.redis_url:
            env["REDIS_URL"] = embedded.start_redis(settings.data_dir)
        if settings.is_demo and not settings.master_key:
            env["KUSH_MASTER_KEY"] = settings.resolve_master_key()
        effective = Settings.from_env(env)
        _run(_prepare_ok(effective))
        sup = Supervisor(env)
        count = workers or min(effective.gateway_workers, 2)
        sup.spawn("gateway", ["gateway", "--workers", str(count)])
        sup.spawn("admin", ["admin"])
        sup.spawn("worker", ["worker"])
        _print_banner(effective)
        return sup.wait()
    finally:
        embedded.stop()


async def _prepare_ok(settings: Settings) -> int:
    await prepare(settings)
    return 0


def _print_banner(settings: Settings) -> None:
    from kush.seed import DEMO_ACCOUNTS

    lines = [
        "",
        "Kush Films edge is up.",
        f"  gateway  {settings.gateway_url()}/        (players, watch page, /v1 API)",
        f"  admin    {settings.admin_url()}/admin/v1/  (catalogue, ads, billing)",
        f"  health   {settings.gateway_url()}/readyz  {settings.admin_url()}/readyz",
    ]
    if settings.is_demo:
        lines.append(f"Demo accounts (password: {settings.demo_password}):")
        for account in DEMO_ACCOUNTS:
            lines.append(f"  {account.email:20} plan={account.plan:8} role={account.role}")
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)


# ---------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kush", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run everything with embedded defaults and demo data")
    up.add_argument("--workers", type=int, default=None, help="gateway worker processes")
    gw = sub.add_parser("gateway", help="run the gateway")
    gw.add_argument("--workers", type=int, default=None, help="processes sharing the port")
    sub.add_parser("admin", help="run the admin service")
    sub.add_parser("worker", help="run background jobs")
    sub.add_parser("migrate", help="apply database migrations")
    sub.add_parser("seed", help="create the demo data (demo mode)")
    sub.add_parser("config", help="print the effective settings, secrets masked")
    for extra in EXTRA_COMMANDS:
        extra(sub)
    return parser


ExtraCommand = Callable[[Any], None]
EXTRA_COMMANDS: list[ExtraCommand] = []
COMMAND_HANDLERS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kush`` console script."""
    _load_plugins()
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as err:
        print(f"kush: configuration error: {err}", file=sys.stderr)
        return 2
    setup_logging(settings.log_format, settings.log_level)
    command: str = args.command
    if command == "up":
        return _up(settings, args.workers)
    if command == "gateway":
        return _gateway_workers(settings, args.workers)
    if command == "admin":
        return _serve(settings, "admin", settings.admin_port)
    if command == "worker":
        return _worker(settings)
    if command == "migrate":
        return _run(_migrate(settings))
    if command == "seed":
        return _run(_prepare_ok(settings))
    if command == "config":
        return _config(settings)
    return COMMAND_HANDLERS[command](settings, args)


def _load_plugins() -> None:
    """Import the modules that register extra commands and start-up hooks."""
    import kush.plugins  # noqa: F401


if __name__ == "__main__":
    raise SystemExit(main())
