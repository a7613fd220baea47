"""``kush loadtest``: load-test accounts in bulk, and Locust run headless with a report.

The scenarios are in ``loadtest/locustfile.py`` (run by path in a Locust process: the
command layer never imports the load tests). Accounts are ``load-NNNNNN@loadtest.kush``,
60 % free, 30 % basic and 10 % premium, with one password kept in
``$KUSH_DATA_DIR/loadtest.password`` (0600, generated once); they are made in one
statement with one argon2 hash (every account has the same password, so hashing it per
account would only burn CPU). The database is the one ``kush up`` uses: ``DATABASE_URL``,
or the embedded PostgreSQL in ``KUSH_DATA_DIR`` (joined, never stopped, if it runs).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
import secrets
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from runtime import db
from runtime.embedded import EmbeddedServices
from runtime.settings import Settings
from tokens.passwords import hash_password

EMAIL_DOMAIN = "loadtest.kush"
PASSWORD_FILE = "loadtest.password"  # noqa: S105 - a file name
#: of every ten accounts: six free, three basic, one premium
PLAN_CYCLE = ("free",) * 6 + ("basic",) * 3 + ("premium",)
SEGMENT_NAME = "/hls/[movie]/[rendition]/[segment]"


def email_of(index: int) -> str:
    """The address of load-test account ``index`` (0-based)."""
    return f"load-{index:06d}@{EMAIL_DOMAIN}"


def plan_of(index: int) -> str:
    return PLAN_CYCLE[index % len(PLAN_CYCLE)]


def locustfile() -> Path:
    """``loadtest/locustfile.py`` of the project."""
    return Path(__file__).resolve().parent.parent / "loadtest" / "locustfile.py"


def load_password(settings: Settings) -> str:
    """The load-test accounts' password, generated into the data directory once."""
    path = settings.data_dir / PASSWORD_FILE
    if path.exists():
        return path.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    password = "load-" + secrets.token_urlsafe(18)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    return password


async def count_accounts(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM users WHERE email LIKE $1", f"load-%@{EMAIL_DOMAIN}"
        )
    )


async def create_accounts(conn: asyncpg.Connection, count: int, password: str) -> int:
    """Make sure accounts 0..count-1 exist with ``password`` and their plans; returns how
    many there are now. Idempotent: existing accounts get the password reset."""
    if count <= 0:
        return await count_accounts(conn)
    password_hash = hash_password(password)
    async with conn.transaction():
        rows = await conn.fetch(
            """INSERT INTO users (email, password_hash, role, birth_year, country)
               SELECT format('load-%s@' || $3::text, lpad(i::text, 6, '0')), $1, 'user',
                      1990, 'UG'
                 FROM generate_series(0, $2 - 1) AS i
               ON CONFLICT (email) DO UPDATE SET password_hash = EXCLUDED.password_hash,
                                                 disabled_at = NULL
               RETURNING id, email""",
            password_hash,
            count,
            EMAIL_DOMAIN,
        )
        paid = [
            (row["id"], plan)
            for row in rows
            if (plan := plan_of(int(row["email"][5:11]))) != "free"
        ]
        await conn.executemany(
            """INSERT INTO subscriptions (user_id, plan_id, status, provider)
               VALUES ($1, $2, 'active', 'loadtest')
               ON CONFLICT (user_id, provider)
               DO UPDATE SET plan_id = EXCLUDED.plan_id, status = 'active', updated_at = now()""",
            paid,
        )
    return await count_accounts(conn)


async def ensure_accounts(settings: Settings, count: int) -> int:
    """Create (or refresh) ``count`` load-test accounts in the database ``kush up`` uses
    (``count`` 0: only count them); returns how many there are."""
    embedded = EmbeddedServices()
    try:
        if not settings.database_url:
            url = embedded.start_postgres(settings.data_dir)
            settings = dataclasses.replace(settings, database_url=url)
        conn = await db.connect(settings)
        try:
            if count <= 0:
                return await count_accounts(conn)
            await db.migrate(conn, settings.db_schema)
            return await create_accounts(conn, count, load_password(settings))
        finally:
            await conn.close()
    finally:
        embedded.stop()


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadRun:
    """One headless Locust run."""

    host: str
    users: int
    spawn_rate: float
    run_time: str
    report: Path
    admin_host: str | None
    admin_email: str | None
    admin_password: str | None
    movies: tuple[str, ...] = ()
    pace: float = 1.0
    reset_stats: bool = False


def locust_command(run: LoadRun) -> list[str]:
    """Locust, headless, with the HTML report and CSV statistics in ``run.report``."""
    classes = ["Viewer", "Browser"] + (["Admin"] if run.admin_host else [])
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(locustfile()),
        "--headless",
        "--users",
        str(run.users),
        "--spawn-rate",
        str(run.spawn_rate),
        "--run-time",
        run.run_time,
        "--host",
        run.host,
        "--html",
        str(run.report / "report.html"),
        "--csv",
        str(run.report / "kush"),
        "--csv-full-history",
        "--only-summary",
        "--stop-timeout",
        "10",
        "--loglevel",
        "WARNING",
        "--kush-accounts",
        str(run.users),
        "--kush-pace",
        str(run.pace),
    ]
    if run.admin_host:
        cmd += ["--kush-admin-host", run.admin_host, "--kush-admin-email", run.admin_email or ""]
    for movie in run.movies:
        cmd += ["--kush-movie", movie]
    if run.reset_stats:
        cmd.append("--reset-stats")
    return [*cmd, *classes]


def duration_s(text: str) -> float:
    """Locust's ``--run-time`` (``60s``, ``2m``, ``1h30m``, or bare seconds) in seconds."""
    parts = re.findall(r"(\d+)\s*([hms]?)", text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s", "", text.lower()):
        raise ValueError(f"not a run time: {text!r} (like 60s, 2m, 1h30m)")
    scale = {"h": 3600, "m": 60, "s": 1, "": 1}
    return float(sum(int(n) * scale[u] for n, u in parts))


def summary(report: Path) -> list[str]:
    """A few lines from Locust's CSV statistics: totals and the segment latency."""
    path = report / "kush_stats.csv"
    if not path.exists():
        return [f"no statistics in {report}"]
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        if row["Name"] in {"Aggregated", SEGMENT_NAME, "time to first segment", "ad segment"}:
            out.append(
                f"  {row['Name']:38} {row['Request Count']:>8} requests "
                f"{row['Failure Count']:>6} failures  p50 {row['50%']:>6} ms  "
                f"p99 {row['99%']:>6} ms  {float(row['Requests/s']):8.1f}/s"
            )
    return out


def gateway_answers(host: str, timeout_s: float = 3.0) -> bool:
    """Whether something answers ``GET /readyz`` at ``host``."""
    if not host.startswith(("http://", "https://")):
        return False
    try:
        with urllib.request.urlopen(f"{host.rstrip('/')}/readyz", timeout=timeout_s) as resp:  # noqa: S310 - http(s) checked above
            return bool(resp.status == 200)
    except OSError:
        return False


def run_locust(run: LoadRun, password: str, *, timeout_s: float) -> int:
    """Run Locust to the end (bounded); its exit status (1 when any request failed)."""
    run.report.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # passwords through the environment, never on the command line (ps shows it)
    env["LOCUST_KUSH_PASSWORD"] = password
    if run.admin_password:
        env["LOCUST_KUSH_ADMIN_PASSWORD"] = run.admin_password
    try:
        proc = subprocess.run(locust_command(run), env=env, timeout=timeout_s, check=False)  # noqa: S603 - our interpreter, our file
    except subprocess.TimeoutExpired:
        return 124
    return proc.returncode
