"""The ``kush`` command: run the services, migrate, seed, rotate keys, inspect config.

Every subcommand is one row of :data:`COMMANDS` (name, help, arguments, handler); the
handlers import the service they run when they run it, so ``kush config`` does not load
the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from kush import __version__
from kush.supervisor import READY_FD_ENV, STOP_MARGIN_S
from runtime.logs import setup_logging
from runtime.settings import Settings, SettingsError

log = logging.getLogger("kush")


def _install_uvloop() -> None:
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run_async(coro: Coroutine[Any, Any, int]) -> int:
    """Run one command's coroutine on uvloop."""
    _install_uvloop()
    return asyncio.run(coro)


# ---------------------------------------------------------------- one-shot commands


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from runtime import db

    async def migrate() -> int:
        conn = await db.connect(settings)
        try:
            applied = await db.migrate(conn, settings.db_schema)
        finally:
            await conn.close()
        print(f"migrations applied: {len(applied)}" + (f" ({applied})" if applied else ""))
        return 0

    return run_async(migrate())


def cmd_seed(settings: Settings, _args: argparse.Namespace) -> int:
    from kush.seed import prepare

    async def seed() -> int:
        await prepare(settings)
        return 0

    return run_async(seed())


def cmd_config(settings: Settings, _args: argparse.Namespace) -> int:
    for name, value in settings.masked().items():
        print(f"{name:28} {value}".rstrip())
    return 0


def cmd_keys(settings: Settings, _args: argparse.Namespace) -> int:
    from runtime import db
    from tokens.keys import parse_master_key
    from tokens.service.keystore import ensure_signing_keys, rotate_keys

    async def rotate() -> int:
        master = parse_master_key(settings.resolve_master_key())
        conn = await db.connect(settings)
        try:
            await db.migrate(conn, settings.db_schema)
            if not await ensure_signing_keys(conn, master):
                await rotate_keys(conn, master)
            rows = await conn.fetch(
                """SELECT kid, purpose FROM signing_keys WHERE retired_at IS NULL
                   ORDER BY purpose"""
            )
        finally:
            await conn.close()
        for row in rows:
            print(f"current {row['purpose']} key: {row['kid']}")
        return 0

    return run_async(rotate())


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from admin.ingest import IngestError, probe
    from admin.publish import ingest_file
    from kush.progress import ProgressReporter
    from origin.factory import create_origin
    from runtime import db

    source = Path(args.file)
    if not source.is_file():
        print(f"kush ingest: no such file: {source}", file=sys.stderr)
        return 2

    async def run() -> int:
        conn = await db.connect(settings)
        origin = create_origin(settings)
        try:
            await db.migrate(conn, settings.db_schema)
            info = await probe(source)
            with ProgressReporter("transcoding", media_seconds=info.duration_s) as progress:
                movie_id = await ingest_file(
                    conn,
                    origin,
                    source,
                    title=args.title or source.stem,
                    work_dir=settings.data_dir / "work",
                    publish=not args.draft,
                    on_progress=progress,
                    max_source_seconds=settings.max_source_seconds,
                    preset=settings.ingest_preset,
                )
        except IngestError as err:
            print(f"kush ingest: {err}", file=sys.stderr)
            return 1
        finally:
            await origin.close()
            await conn.close()
        print(f"{'draft' if args.draft else 'published'}: {movie_id}")
        return 0

    return run_async(run())


def cmd_users(settings: Settings, args: argparse.Namespace) -> int:
    from kush.users import UserCommandError, create_user, obtain_password, report

    generated: list[str] = []

    def password() -> str:
        secret, was_generated = obtain_password(from_stdin=args.password_stdin, stdin=sys.stdin)
        if was_generated:
            generated.append(secret)
        return secret

    async def create() -> int:
        try:
            result = await create_user(
                settings,
                args.email,
                role=args.role,
                plan=args.plan,
                password=password,
                update_role=args.update_role,
            )
        except UserCommandError as err:
            print(f"kush users create: {err}", file=sys.stderr)
            return 1
        report(result, generated[0] if generated else None)
        return 0

    return run_async(create())


# ---------------------------------------------------------------- long-running services


def _serve(settings: Settings, service: str, port: int) -> int:
    """One service process: serve until SIGTERM/SIGINT, then drain (``runtime.serve``)."""
    from runtime.serve import serve

    if service == "gateway":
        from gateway.app import create_app
    else:
        from admin.app import create_app

    async def run() -> int:
        await serve(
            create_app(settings),
            host=settings.host,
            port=port,
            drain_timeout_s=settings.drain_timeout_s,
            on_ready=_ready_notifier(service, settings.host, port),
        )
        return 0

    return run_async(run())


def _ready_notifier(service: str, host: str, port: int) -> Callable[[], None]:
    """Log that the service listens and, under the supervisor, tell it so: a byte on the
    pipe named by ``KUSH_READY_FD`` (see ``kush.supervisor``)."""

    def ready() -> None:
        log.info("%s listening on http://%s:%d (pid %d)", service, host, port, os.getpid())
        fd = os.environ.pop(READY_FD_ENV, None)
        if fd is not None and fd.isdigit():
            try:
                os.write(int(fd), b"1")
                os.close(int(fd))
            except OSError as err:
                log.warning("could not tell the supervisor %s is ready: %s", service, err)

    return ready


def cmd_gateway(settings: Settings, args: argparse.Namespace) -> int:
    from kush.supervisor import Supervisor

    count = args.workers or settings.gateway_workers
    if count <= 1:
        return _serve(settings, "gateway", settings.gateway_port)
    # the workers' metrics add up: prometheus-client's multiprocess mode, in a directory
    # emptied now and when the gateway stops (runtime.metrics)
    from functools import partial

    from runtime.metrics import (
        MULTIPROC_ENV,
        clear_multiproc_dir,
        forget_process,
        prepare_multiproc_dir,
    )

    metrics_dir = settings.gateway_metrics_dir()
    prepare_multiproc_dir(metrics_dir)
    env = {**os.environ, MULTIPROC_ENV: str(metrics_dir)}
    sup = Supervisor(
        env,
        on_exit=partial(forget_process, metrics_dir),
        grace_s=settings.drain_timeout_s + STOP_MARGIN_S,
    )
    for i in range(count):
        sup.spawn(f"gateway-{i}", ["gateway", "--workers", "1"], on_reload="roll")
    try:
        return sup.wait()
    finally:
        clear_multiproc_dir(metrics_dir)


def cmd_admin(settings: Settings, _args: argparse.Namespace) -> int:
    return _serve(settings, "admin", settings.admin_port)


def cmd_worker(settings: Settings, _args: argparse.Namespace) -> int:
    from kush.worker import run_worker

    return run_async(run_worker(settings))


def cmd_edge(settings: Settings, args: argparse.Namespace) -> int:
    """Render nginx/ for these settings and run nginx in the foreground (or only test it)."""
    from kush import edge

    nginx = edge.find_nginx()
    if nginx is None:
        print("kush edge: nginx is not installed (apt-get install nginx)", file=sys.stderr)
        return 2
    try:
        config = edge.render(settings, access_log=args.access_log)
    except edge.EdgeConfigError as err:
        print(f"kush edge: {err}", file=sys.stderr)
        return 2
    ok, said = edge.check(nginx, config)
    if args.check or not ok:
        print(said or f"nginx -t: {config.conf} is valid", file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    if not edge.gateway_trusts_edge(settings):
        log.warning(
            "the gateway's KUSH_TRUSTED_PROXIES does not list 127.0.0.1: it will take the "
            "edge for the client (addresses, countries); start it with "
            "KUSH_TRUSTED_PROXIES=127.0.0.1/32,::1/128, as `KUSH_EDGE=1 kush up` does"
        )
    log.info(
        "edge listening on %s in front of the gateway on port %d (config %s)",
        edge.edge_url(settings),
        settings.gateway_port,
        config.conf,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    cmd = edge.nginx_command(nginx, config)
    os.execv(cmd[0], cmd)  # noqa: S606 - nginx replaces this process: signals reach it
    return 127  # not reached


def cmd_loadtest(settings: Settings, args: argparse.Namespace) -> int:
    """Locust headless against the gateway (or the edge), or load-test accounts in bulk."""
    from runtime.embedded import EmbeddedUnavailable

    try:
        return _loadtest(settings, args)
    except EmbeddedUnavailable as err:
        print(f"kush loadtest: {err}", file=sys.stderr)
        return 2


def _loadtest(settings: Settings, args: argparse.Namespace) -> int:
    from kush import edge, loadtest

    if args.create_users is not None:
        total = run_async(loadtest.ensure_accounts(settings, args.create_users))
        print(
            f"load-test accounts: {total} (password in {settings.data_dir / 'loadtest.password'})"
        )
        return 0
    try:
        timeout_s = loadtest.duration_s(args.run_time) + 120
    except ValueError as err:
        print(f"kush loadtest: {err}", file=sys.stderr)
        return 2
    host = args.host or (edge.edge_url(settings) if args.through_edge else settings.gateway_url())
    if not loadtest.gateway_answers(host):
        hint = "make edge" if args.through_edge else "make up"
        print(
            f"kush loadtest: nothing answers at {host}/readyz (start it: {hint})", file=sys.stderr
        )
        return 2
    if settings.is_demo:
        total = run_async(loadtest.ensure_accounts(settings, args.users))
    else:
        total = run_async(loadtest.ensure_accounts(settings, 0))
    if total < args.users:
        print(
            f"kush loadtest: {total} load-test accounts for {args.users} users; "
            f"make them first: kush loadtest --create-users {args.users}",
            file=sys.stderr,
        )
        return 2
    admin = settings.admin_url() if settings.is_demo and not args.no_admin else None
    if admin and not loadtest.gateway_answers(admin):
        admin = None
    run = loadtest.LoadRun(
        host=host,
        users=args.users,
        spawn_rate=args.spawn_rate,
        run_time=args.run_time,
        report=Path(args.report),
        admin_host=admin,
        admin_email="admin@demo.kush" if admin else None,
        admin_password=settings.demo_password if admin else None,
        movies=tuple(args.movie or ()),
        pace=args.pace,
        reset_stats=args.reset_stats,
    )
    print(f"locust: {args.users} users against {host} for {args.run_time}", flush=True)
    code = loadtest.run_locust(run, loadtest.load_password(settings), timeout_s=timeout_s)
    print("\n".join(loadtest.summary(run.report)))
    print(f"report: {run.report / 'report.html'}  statistics: {run.report}/kush_stats.csv")
    return code


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    """Everything on one machine: embedded services when unconfigured, demo data, URLs."""
    from kush.seed import prepare
    from kush.supervisor import Supervisor
    from runtime.embedded import EmbeddedServices, EmbeddedUnavailable

    embedded = EmbeddedServices()
    env = dict(os.environ)
    try:
        try:
            if not settings.database_url:
                env["DATABASE_URL"] = embedded.start_postgres(settings.data_dir)
            if not settings.redis_url:
                env["REDIS_URL"] = embedded.start_redis(settings.data_dir)
        except EmbeddedUnavailable as err:
            print(f"kush up: {err}", file=sys.stderr)
            return 2
        if settings.is_demo and not settings.master_key:
            env["KUSH_MASTER_KEY"] = settings.resolve_master_key()
        with_edge = _edge_env(settings, env)
        effective = Settings.from_env(env)

        async def prepare_all() -> int:
            await prepare(effective)
            return 0

        run_async(prepare_all())
        # the gateway's own supervisor drains its workers: wait for it a little longer
        sup = Supervisor(env, grace_s=effective.drain_timeout_s + 2 * STOP_MARGIN_S)
        count = args.workers or min(effective.gateway_workers, 2)
        # SIGHUP: passed on to it, a rolling restart of its workers
        sup.spawn("gateway", ["gateway", "--workers", str(count)], on_reload="forward")
        sup.spawn("admin", ["admin"])
        sup.spawn("worker", ["worker"])
        if with_edge:
            sup.spawn("edge", ["edge"])
        _print_banner(effective, with_edge=with_edge)
        return sup.wait()
    finally:
        embedded.stop()


def _edge_env(settings: Settings, env: dict[str, str]) -> bool:
    """With ``KUSH_EDGE`` on and nginx installed: the gateway trusts loopback (the edge's
    address) for ``X-Forwarded-For``; True when the edge should run. Without nginx the
    rest runs anyway (the edge is optional)."""
    from kush import edge

    if not settings.edge:
        return False
    if edge.find_nginx() is None:
        log.warning("KUSH_EDGE is on but nginx is not installed; running without the edge")
        return False
    env["KUSH_TRUSTED_PROXIES"] = ",".join(edge.with_loopback_trusted(settings.trusted_proxies))
    return True


def _print_banner(settings: Settings, *, with_edge: bool = False) -> None:
    from kush import edge
    from kush.seed import DEMO_ACCOUNTS

    lines = [
        "",
        "Kush Films edge is up.",
        f"  gateway  {settings.gateway_url()}/        (players, watch page, /v1 API)",
        f"  admin    {settings.admin_url()}/admin/v1/  (catalogue, ads, billing)",
        f"  health   {settings.gateway_url()}/readyz  {settings.admin_url()}/readyz",
    ]
    if with_edge:
        lines.append(f"  edge     {edge.edge_url(settings)}/        (nginx: segments cached)")
    if settings.is_demo:
        lines.append(f"Demo accounts (password: {settings.demo_password}):")
        for account in DEMO_ACCOUNTS:
            lines.append(f"  {account.email:20} plan={account.plan:8} role={account.role}")
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)


# ---------------------------------------------------------------- the command table


def _no_args(_parser: argparse.ArgumentParser) -> None:
    return None


def _workers_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=None, help="gateway worker processes")


def _ingest_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the source video")
    parser.add_argument("--title", help="film title (default: the file name)")
    parser.add_argument("--draft", action="store_true", help="do not publish it yet")


def _users_args(parser: argparse.ArgumentParser) -> None:
    from tokens.jwt import Plan, Role

    users_sub = parser.add_subparsers(dest="users_command", required=True)
    create = users_sub.add_parser(
        "create",
        help="create an account (the password: --password-stdin, else asked on a "
        "terminal, else generated and printed once)",
    )
    create.add_argument("email")
    create.add_argument("--role", required=True, choices=get_args(Role))
    create.add_argument(
        "--plan", default="free", choices=get_args(Plan), help="granted by an admin"
    )
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    create.add_argument(
        "--update-role",
        action="store_true",
        help="if the account exists, change its role (and grant --plan if it has none)",
    )


def _keys_args(parser: argparse.ArgumentParser) -> None:
    keys_sub = parser.add_subparsers(dest="keys_command", required=True)
    keys_sub.add_parser("rotate", help="make new current keys; old ones verify until expiry")


def _edge_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--check", action="store_true", help="render the configuration and run nginx -t only"
    )
    parser.add_argument(
        "--access-log",
        default=None,
        help="JSON access log file (default: $KUSH_DATA_DIR/edge/logs/access.log; "
        "/dev/stdout in a container)",
    )


def _loadtest_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=50, help="simulated users (default 50)")
    parser.add_argument("--spawn-rate", type=float, default=10, help="users started per second")
    parser.add_argument("--run-time", default="60s", help="how long (60s, 2m, 1h30m)")
    parser.add_argument("--host", help="base URL (default: the gateway, or the edge)")
    parser.add_argument(
        "--through-edge", action="store_true", help="through the nginx edge (KUSH_EDGE_PORT)"
    )
    parser.add_argument(
        "--report", default="var/loadtest", help="directory for report.html and the CSV files"
    )
    parser.add_argument("--movie", action="append", help="play only this film (repeatable)")
    parser.add_argument("--pace", type=float, default=1.0, help="playback speed (1 = real time)")
    parser.add_argument("--no-admin", action="store_true", help="leave out the Admin users")
    parser.add_argument(
        "--reset-stats",
        action="store_true",
        help="steady state only: statistics restart once every user has started",
    )
    parser.add_argument(
        "--create-users",
        type=int,
        metavar="N",
        help="only create (or refresh) N load-test accounts, then exit",
    )


@dataclass(frozen=True, slots=True)
class Command:
    """One ``kush`` subcommand."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Settings, argparse.Namespace], int]


COMMANDS: tuple[Command, ...] = (
    Command("up", "run everything with embedded defaults and demo data", _workers_arg, cmd_up),
    Command("gateway", "run the gateway", _workers_arg, cmd_gateway),
    Command("admin", "run the admin service", _no_args, cmd_admin),
    Command("worker", "run background jobs", _no_args, cmd_worker),
    Command("migrate", "apply database migrations", _no_args, cmd_migrate),
    Command("seed", "create signing keys and (demo mode) the demo data", _no_args, cmd_seed),
    Command("config", "print the effective settings, secrets masked", _no_args, cmd_config),
    Command("users", "user accounts", _users_args, cmd_users),
    Command("keys", "signing keys", _keys_args, cmd_keys),
    Command("ingest", "transcode a video file into the HLS ladder", _ingest_args, cmd_ingest),
    Command("edge", "run the nginx edge in front of the gateway", _edge_args, cmd_edge),
    Command("loadtest", "run the Locust load test headless", _loadtest_args, cmd_loadtest),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kush", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"kush {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_arguments(sub.add_parser(command.name, help=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kush`` console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        setup_logging(settings.log_format, settings.log_level)
        handlers = {command.name: command.run for command in COMMANDS}
        return handlers[args.command](settings, args)
    except SettingsError as err:
        for problem in err.problems:
            print(f"kush: configuration error: {problem}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
