"""Ingest jobs: queued in PostgreSQL, run by ``kush worker``, watched over HTTP.

Two tables hold a job. ``jobs`` (ours) is what an admin sees: kind, status
(``queued``, ``probing``, ``transcoding``, ``uploading``, ``ready``, ``failed``), progress
as ffmpeg reports it, attempts and the reason of the last failure. The queue entry that
gets it run lives in pgqueuer's table, written in the same transaction.

Why pgqueuer (1.6) and not procrastinate or our own locking. Both libraries are kept
up and do what hand-written ``FOR UPDATE SKIP LOCKED`` code would: several workers
share the queue, LISTEN/NOTIFY wakes them, a picked job carries a heartbeat and a
worker that dies mid-job leaves it to be picked again once the heartbeat is older than
the lease (``KUSH_JOB_LEASE_SECONDS``). pgqueuer runs on asyncpg, the driver and pool
every service here already uses, so enqueueing joins our own transaction. procrastinate
needs psycopg 3: a second PostgreSQL driver and pool in each process, its own
migrations run by its own command beside ours. pgqueuer's schema is plain DDL, kept in
our migration 0006 (checked against the pinned release by a test).

What we add on top, in ``jobs``: a stale re-pick does not count an attempt in
pgqueuer, so every start counts one here and a job past ``KUSH_JOB_MAX_ATTEMPTS``
fails with its last reason (a file that kills its worker every time is not retried
forever). A refused source (`SourceRefused`: not a video, too long...) fails at once;
other errors are retried with a growing delay. ``POST /admin/v1/jobs/{id}/retry``
queues a failed job again. ``KUSH_INGEST_CONCURRENCY`` is pgqueuer's concurrency limit
of the entrypoint, enforced in SQL across every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

import asyncpg
import orjson
from aiohttp import web
from pgqueuer import AsyncpgDriver, Queries, QueueManager
from pgqueuer.models import Job as QueueJob
from pydantic import Field
from redis.asyncio import Redis

from admin.ingest.ffmpeg import IngestError, SourceRefused
from admin.keys import admin_origin_key
from admin.publish import IngestOptions, Reporter, Stage, ingest_ad, ingest_movie
from admin.uploads import ready_upload
from origin import OriginError, OriginStore
from runtime.api import (
    BodyModel,
    DateTimeStr,
    PathParam,
    QueryModel,
    ReplyModel,
    Routes,
    UuidStr,
    parse_body,
    parse_query,
)
from runtime.db import audit
from runtime.errors import Conflict, NotFound
from runtime.redis import Keys
from runtime.settings import Settings
from runtime.signals import bump_ad_inventory
from runtime.web import json_response, pg_key, request_id_key, settings_key
from tokens.service.views import SIGNED_IN, require_role

log = logging.getLogger(__name__)

ENTRYPOINT = "ingest"
ADMIN = frozenset({"admin"})
READERS = frozenset({"admin", "moderator"})
MAX_LIST = 200
RETRY_DELAY_S = 5.0
PROGRESS_EVERY_S = 0.5

JobStatus = Literal["queued", "probing", "transcoding", "uploading", "ready", "failed"]
JobKind = Literal["ingest_movie", "ingest_ad"]

routes = Routes(tags=("jobs",))
ROLE_ERRORS = {403: "Your role may not do this (`forbidden_role`)"}
JOB_ID = PathParam("The job's id", "uuid")

# ------------------------------------------------------------------ models


class IngestRequest(BodyModel):
    """Which upload to ingest."""

    upload_id: uuid.UUID


class JobAccepted(ReplyModel):
    """The job is queued; poll `GET /admin/v1/jobs/{job_id}`."""

    job_id: UuidStr


class JobOut(ReplyModel):
    """An ingest job."""

    id: UuidStr
    kind: JobKind
    movie_id: UuidStr | None
    ad_id: UuidStr | None
    upload_id: UuidStr | None
    status: JobStatus
    progress: float = Field(description="0..1, as ffmpeg reports it")
    error: str | None = Field(description="Why the last attempt failed (kept on retry)")
    attempts: int
    max_attempts: int
    worker: str | None = Field(description="The worker running (or that last ran) it")
    created_at: DateTimeStr
    updated_at: DateTimeStr
    started_at: DateTimeStr | None
    finished_at: DateTimeStr | None


class JobList(ReplyModel):
    """The newest jobs (at most 200)."""

    items: list[JobOut]


class JobsQuery(QueryModel):
    """Filter by status."""

    status: JobStatus | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_LIST)] = 50


def _iso(value: Any) -> str | None:
    return None if value is None else str(value.isoformat())


def _job(r: Any) -> JobOut:
    return JobOut(
        id=str(r["id"]),
        kind=r["kind"],
        movie_id=str(r["movie_id"]) if r["movie_id"] else None,
        ad_id=str(r["ad_id"]) if r["ad_id"] else None,
        upload_id=str(r["upload_id"]) if r["upload_id"] else None,
        status=r["status"],
        progress=round(float(r["progress"]), 4),
        error=r["error"],
        attempts=r["attempts"],
        max_attempts=r["max_attempts"],
        worker=r["worker"],
        created_at=str(r["created_at"].isoformat()),
        updated_at=str(r["updated_at"].isoformat()),
        started_at=_iso(r["started_at"]),
        finished_at=_iso(r["finished_at"]),
    )


# ------------------------------------------------------------------ the queue


async def enqueue(conn: asyncpg.Connection, job_id: uuid.UUID, *, delay_s: float = 0) -> None:
    """Put a queue entry for ``job_id`` (inside the caller's transaction, if any)."""
    delay = timedelta(seconds=delay_s) if delay_s > 0 else None
    await Queries(AsyncpgDriver(conn)).enqueue(ENTRYPOINT, job_id.bytes, execute_after=delay)


async def create_job(
    conn: asyncpg.Connection,
    *,
    kind: JobKind,
    upload_id: uuid.UUID,
    max_attempts: int,
    created_by: uuid.UUID | None,
    movie_id: uuid.UUID | None = None,
    ad_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Insert a job and its queue entry in one transaction; 409 ``ingest_in_progress``
    while the film has a job that has not finished."""
    try:
        async with conn.transaction():
            job_id: uuid.UUID = await conn.fetchval(
                """INSERT INTO jobs (kind, movie_id, ad_id, upload_id, max_attempts, created_by)
                   VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
                kind,
                movie_id,
                ad_id,
                upload_id,
                max_attempts,
                created_by,
            )
            await enqueue(conn, job_id)
    except asyncpg.UniqueViolationError:
        raise Conflict(
            "This film already has an ingest job that has not finished",
            code="ingest_in_progress",
        ) from None
    return job_id


# ------------------------------------------------------------------ handlers


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError):
        raise NotFound(f"No such {what}", code=f"{what}_not_found") from None


@routes.post(
    "/admin/v1/movies/{movie_id}/ingest",
    summary="Ingest an upload into a film (a new version of its renditions) (admin)",
    body=IngestRequest,
    replies={202: JobAccepted},
    auth=SIGNED_IN,
    path_params={"movie_id": PathParam("The film's id", "uuid")},
    errors={
        **ROLE_ERRORS,
        404: "No such film (`movie_not_found`) or upload (`upload_not_found`)",
        409: "The upload's bytes have not arrived (`upload_incomplete`) or the film "
        "already has a running job (`ingest_in_progress`)",
    },
)
async def start_ingest(request: web.Request) -> web.Response:
    """POST /admin/v1/movies/{id}/ingest {upload_id} -> 202 {job_id}."""
    claims = await require_role(request, ADMIN)
    movie_id = _uuid(request.match_info["movie_id"], "movie")
    body = await parse_body(request, IngestRequest)
    app = request.app
    pool = app[pg_key]
    if not await pool.fetchval("SELECT 1 FROM movies WHERE id = $1", movie_id):
        raise NotFound("No such film", code="movie_not_found")
    upload = await ready_upload(pool, app[admin_origin_key], body.upload_id)
    async with pool.acquire() as conn:
        job_id = await create_job(
            conn,
            kind="ingest_movie",
            movie_id=movie_id,
            upload_id=upload.id,
            max_attempts=app[settings_key].job_max_attempts,
            created_by=uuid.UUID(claims.sub),
        )
    await audit(
        pool,
        action="movie.ingest",
        actor_id=uuid.UUID(claims.sub),
        target_type="movie",
        target_id=str(movie_id),
        details=orjson.dumps({"upload_id": str(upload.id), "job_id": str(job_id)}).decode(),
        request_id=request.get(request_id_key),
    )
    return json_response(JobAccepted(job_id=str(job_id)), status=202)


@routes.get(
    "/admin/v1/jobs/{job_id}",
    summary="One job: status, progress, error (admin, moderator)",
    replies={200: JobOut},
    auth=SIGNED_IN,
    path_params={"job_id": JOB_ID},
    errors={**ROLE_ERRORS, 404: "No such job (`job_not_found`)"},
)
async def get_job(request: web.Request) -> web.Response:
    """GET /admin/v1/jobs/{job_id}."""
    await require_role(request, READERS)
    row = await request.app[pg_key].fetchrow(
        "SELECT * FROM jobs WHERE id = $1", _uuid(request.match_info["job_id"], "job")
    )
    if row is None:
        raise NotFound("No such job", code="job_not_found")
    return json_response(_job(row))


@routes.get(
    "/admin/v1/jobs",
    summary="The newest jobs, optionally of one status (admin, moderator)",
    query=JobsQuery,
    replies={200: JobList},
    auth=SIGNED_IN,
    errors=ROLE_ERRORS,
)
async def list_jobs(request: web.Request) -> web.Response:
    """GET /admin/v1/jobs?status=&limit= -> {items}."""
    await require_role(request, READERS)
    query = parse_query(request, JobsQuery)
    rows = await request.app[pg_key].fetch(
        """SELECT * FROM jobs WHERE $1::text IS NULL OR status = $1
            ORDER BY created_at DESC LIMIT $2""",
        query.status,
        query.limit,
    )
    return json_response(JobList(items=[_job(r) for r in rows]))


@routes.post(
    "/admin/v1/jobs/{job_id}/retry",
    summary="Queue a failed job again (admin)",
    replies={202: JobAccepted},
    auth=SIGNED_IN,
    path_params={"job_id": JOB_ID},
    errors={
        **ROLE_ERRORS,
        404: "No such job (`job_not_found`)",
        409: "The job has not failed (`job_not_failed`), or its film has another "
        "running job (`ingest_in_progress`)",
    },
)
async def retry_job(request: web.Request) -> web.Response:
    """POST /admin/v1/jobs/{job_id}/retry -> 202 {job_id} (the error is kept until the
    next attempt finishes)."""
    claims = await require_role(request, ADMIN)
    job_id = _uuid(request.match_info["job_id"], "job")
    pool = request.app[pg_key]
    try:
        async with pool.acquire() as conn, conn.transaction():
            status = await conn.fetchval("SELECT status FROM jobs WHERE id = $1 FOR UPDATE", job_id)
            if status is None:
                raise NotFound("No such job", code="job_not_found")
            if status != "failed":
                raise Conflict(f"The job is {status}, not failed", code="job_not_failed")
            await conn.execute(
                """UPDATE jobs SET status = 'queued', progress = 0, attempts = 0,
                          finished_at = NULL, updated_at = now() WHERE id = $1""",
                job_id,
            )
            await enqueue(conn, job_id)
    except asyncpg.UniqueViolationError:
        raise Conflict(
            "This film already has an ingest job that has not finished",
            code="ingest_in_progress",
        ) from None
    await audit(
        pool,
        action="job.retry",
        actor_id=uuid.UUID(claims.sub),
        target_type="job",
        target_id=str(job_id),
        request_id=request.get(request_id_key),
    )
    return json_response(JobAccepted(job_id=str(job_id)), status=202)


def setup_routes(app: web.Application) -> None:
    """Mount the ingest and jobs API."""
    routes.mount(app)


# ------------------------------------------------------------------ running a job


@dataclass(frozen=True, slots=True, kw_only=True)
class Runner:
    """What running a job needs (one per worker process)."""

    settings: Settings
    pool: asyncpg.Pool
    origin: OriginStore
    redis: Redis
    worker: str

    @property
    def options(self) -> IngestOptions:
        return IngestOptions(
            work_dir=self.settings.data_dir / "work",
            max_source_seconds=self.settings.max_source_seconds,
            cpu_factor=self.settings.ingest_cpu_factor,
            preset=self.settings.ingest_preset,
        )


class _Progress:
    """Progress from ffmpeg (a sync callback) written to the job at most every
    `PROGRESS_EVERY_S`, by a task of its own."""

    def __init__(self, pool: asyncpg.Pool, job_id: uuid.UUID) -> None:
        self.pool = pool
        self.job_id = job_id
        self.latest = 0.0
        self.written = -1.0

    def __call__(self, fraction: float) -> None:
        self.latest = max(self.latest, fraction)

    async def flush(self) -> None:
        if self.latest > self.written:
            value = self.latest
            await self.pool.execute(
                """UPDATE jobs SET progress = greatest(progress, $2), updated_at = now()
                    WHERE id = $1""",
                self.job_id,
                value,
            )
            self.written = value

    async def run(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                await self.flush()

    async def stage(self, stage: Stage) -> None:
        await self.flush()
        await self.pool.execute(
            "UPDATE jobs SET status = $2, updated_at = now() WHERE id = $1", self.job_id, stage
        )


async def _fail(pool: asyncpg.Pool, row: Any, message: str) -> None:
    await pool.execute(
        """UPDATE jobs SET status = 'failed', error = $2, finished_at = now(),
                  updated_at = now() WHERE id = $1""",
        row["id"],
        message[:2000],
    )
    if row["ad_id"] is not None:
        await pool.execute(
            "UPDATE ads SET status = 'draft' WHERE id = $1 AND status = 'processing'",
            row["ad_id"],
        )


async def _start(runner: Runner, job_id: uuid.UUID) -> Any | None:
    """Claim the job for this attempt; None when there is nothing (more) to do."""
    pool = runner.pool
    row = await pool.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
    if row is None or row["status"] in ("ready", "failed"):
        return None
    interrupted = row["status"] != "queued"
    reason = row["error"]
    if interrupted:
        reason = f"attempt {row['attempts']} stopped unfinished (its worker was lost)"
    if row["attempts"] >= row["max_attempts"]:
        await _fail(pool, row, f"gave up after {row['attempts']} attempts: {reason}")
        return None
    return await pool.fetchrow(
        """UPDATE jobs SET attempts = attempts + 1, status = 'probing', progress = 0,
                  worker = $2, error = $3, started_at = now(), updated_at = now()
            WHERE id = $1 RETURNING *""",
        job_id,
        runner.worker,
        reason,
    )


#: what one run of :func:`run_job` came to
JobOutcome = Literal["ready", "failed", "retry", "skipped"]


async def run_job(runner: Runner, job_id: uuid.UUID) -> JobOutcome:
    """One attempt of a job: fetch the upload, run the pipeline, record the outcome
    (``skipped``: nothing to do; ``retry``: failed, queued again)."""
    row = await _start(runner, job_id)
    if row is None:
        return "skipped"
    pool = runner.pool
    progress = _Progress(pool, job_id)
    flusher = asyncio.create_task(progress.run())
    work = runner.options.work_dir / f"job-{job_id}-{row['attempts']}"
    try:
        upload_key = await pool.fetchval(
            "SELECT object_key FROM uploads WHERE id = $1", row["upload_id"]
        )
        if upload_key is None:
            raise SourceRefused("unreadable", "the upload of this job no longer exists")
        await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
        source = work / "source"
        await runner.origin.get_file(upload_key, source)
        report = Reporter(stage=progress.stage, progress=progress)
        if row["movie_id"] is not None:
            await ingest_movie(
                pool, runner.origin, str(row["movie_id"]), source, runner.options, report=report
            )
        else:
            await ingest_ad(
                pool, runner.origin, str(row["ad_id"]), source, runner.options, report=report
            )
            await bump_ad_inventory(runner.redis, Keys(runner.settings.redis_prefix))
        flusher.cancel()
        await pool.execute(
            """UPDATE jobs SET status = 'ready', progress = 1, error = NULL,
                      finished_at = now(), updated_at = now() WHERE id = $1""",
            job_id,
        )
        log.info("job %s ready (attempt %d)", job_id, row["attempts"])
        return "ready"
    except asyncio.CancelledError:
        # The worker is stopping: hand the job back (this attempt does not count).
        with contextlib.suppress(Exception):
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    """UPDATE jobs SET status = 'queued', attempts = attempts - 1,
                              updated_at = now() WHERE id = $1""",
                    job_id,
                )
                await enqueue(conn, job_id)
        raise
    except SourceRefused as err:
        log.info("job %s refused its source: %s", job_id, err.message)
        await _fail(pool, row, f"{err.code}: {err.message}")
        return "failed"
    except (IngestError, OriginError, OSError, asyncpg.PostgresError, Exception) as err:
        message = f"{type(err).__name__}: {err}"
        log.warning("job %s attempt %d failed: %s", job_id, row["attempts"], message)
        if row["attempts"] >= row["max_attempts"]:
            await _fail(pool, row, f"gave up after {row['attempts']} attempts: {message}")
            return "failed"
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """UPDATE jobs SET status = 'queued', error = $2, updated_at = now()
                    WHERE id = $1""",
                job_id,
                message[:2000],
            )
            await enqueue(conn, job_id, delay_s=RETRY_DELAY_S * row["attempts"])
        return "retry"
    finally:
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        await asyncio.shield(asyncio.to_thread(shutil.rmtree, work, ignore_errors=True))


def worker_name() -> str:
    """``host:pid``, shown on the job it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


@contextlib.asynccontextmanager
async def _queue_connection(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    from runtime import db

    conn = await db.connect(settings)
    try:
        yield conn
    finally:
        await conn.close()


async def queue_depth(pool: asyncpg.Pool) -> dict[str, int]:
    """Jobs waiting in the queue (due or delayed), by entrypoint (``ingest`` always)."""
    rows = await pool.fetch(
        "SELECT entrypoint, count(*) AS n FROM pgqueuer WHERE status = 'queued' GROUP BY 1"
    )
    depth = {ENTRYPOINT: 0}
    depth.update({r["entrypoint"]: int(r["n"]) for r in rows})
    return depth


async def serve_queue(
    settings: Settings,
    pool: asyncpg.Pool,
    redis: Redis,
    stop: asyncio.Event,
    *,
    on_done: Callable[[str, float], None] | None = None,
) -> None:
    """Run ingest jobs from the queue until ``stop`` is set (``kush worker``);
    ``on_done(outcome, seconds)`` after each run."""
    from origin.factory import create_origin

    origin = create_origin(settings)
    runner = Runner(settings=settings, pool=pool, origin=origin, redis=redis, worker=worker_name())
    try:
        async with _queue_connection(settings) as conn:
            manager = QueueManager(Queries(AsyncpgDriver(conn)))

            @manager.entrypoint(ENTRYPOINT, concurrency_limit=settings.ingest_concurrency)
            async def ingest(job: QueueJob) -> None:
                if job.payload is None:
                    return
                started = time.monotonic()
                outcome = await run_job(runner, uuid.UUID(bytes=bytes(job.payload)))
                if on_done is not None:
                    on_done(outcome, time.monotonic() - started)

            lease = timedelta(seconds=settings.job_lease_seconds)
            running = asyncio.create_task(
                manager.run(
                    dequeue_timeout=timedelta(seconds=5),
                    batch_size=1,
                    heartbeat_timeout=lease,
                    log_aggregation_interval=timedelta(0),
                )
            )
            log.info("ingest queue: %s takes jobs (lease %s)", runner.worker, lease)
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait({running, waiter}, return_when=asyncio.FIRST_COMPLETED)
            manager.shutdown.set()
            waiter.cancel()
            await running
    finally:
        await origin.close()


__all__ = [
    "ENTRYPOINT",
    "JobOutcome",
    "Runner",
    "create_job",
    "enqueue",
    "queue_depth",
    "run_job",
    "serve_queue",
    "setup_routes",
]
