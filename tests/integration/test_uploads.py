"""Uploads: the local origin's streaming PUT (limits, token, full disk) and the S3/R2
presigned PUT actually used by an HTTP client against moto's S3 server, then ingested."""

from __future__ import annotations

import dataclasses
import errno
import io
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from admin import uploads as uploads_module
from admin.app import create_app as create_admin
from admin.ingest import generate_test_source
from gateway.app import create_app as create_gateway
from runtime.settings import Settings
from tests.integration.helpers import bearer, register_and_login
from tests.integration.jobs_support import (
    admin_token,
    drop_schema,
    fresh_schema,
    new_movie,
    wait_job,
    worker,
)
from tests.support.moto_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, MotoServer


@pytest.fixture
async def jobs_settings(settings: Settings, tmp_path: Path) -> AsyncIterator[Settings]:
    fresh = await fresh_schema(settings, tmp_path, max_upload_bytes=64 * 1024)
    yield fresh
    await drop_schema(fresh)


@pytest.fixture
async def admin(jobs_settings: Settings, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_admin(jobs_settings))


@pytest.fixture
async def gateway(jobs_settings: Settings, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_gateway(jobs_settings))


async def _ticket(admin: TestClient, auth: dict[str, str], size: int) -> dict[str, Any]:
    resp = await admin.post(
        "/admin/v1/uploads",
        json={"filename": "film.mp4", "size": size, "content_type": "video/mp4"},
        headers=auth,
    )
    assert resp.status == 201, await resp.text()
    ticket: dict[str, Any] = await resp.json()
    return ticket


def _leftovers(settings: Settings) -> list[str]:
    root = settings.origin_root / "uploads"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_roles_and_bad_bodies(
    jobs_settings: Settings, admin: TestClient, gateway: TestClient
) -> None:
    user = (await register_and_login(gateway))["access_token"]
    for method, path in (
        ("POST", "/admin/v1/uploads"),
        ("POST", "/admin/v1/movies/00000000-0000-0000-0000-000000000000/ingest"),
        ("GET", "/admin/v1/jobs"),
        ("GET", "/admin/v1/jobs/00000000-0000-0000-0000-000000000000"),
        ("POST", "/admin/v1/jobs/00000000-0000-0000-0000-000000000000/retry"),
    ):
        assert (await admin.request(method, path, json={})).status == 401, path
        resp = await admin.request(method, path, json={}, headers=bearer(user))
        assert resp.status == 403, path
    auth = await admin_token(gateway)
    for bad in (
        {"filename": "", "size": 10, "content_type": "video/mp4"},
        {"filename": "a.mp4", "size": 0, "content_type": "video/mp4"},
        {"filename": "a.mp4", "size": "10", "content_type": "video/mp4"},
        {"filename": "a.mp4", "size": 10, "content_type": "not a type"},
    ):
        resp = await admin.post("/admin/v1/uploads", json=bad, headers=auth)
        assert resp.status == 422, bad
    resp = await admin.post(
        "/admin/v1/uploads",
        json={"filename": "huge.mp4", "size": 64 * 1024 + 1, "content_type": "video/mp4"},
        headers=auth,
    )
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "upload_too_large"
    movie_id = await new_movie(jobs_settings)
    resp = await admin.post(
        f"/admin/v1/movies/{movie_id}/ingest",
        json={"upload_id": "00000000-0000-0000-0000-000000000000"},
        headers=auth,
    )
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "upload_not_found"
    ticket = await _ticket(admin, auth, 100)
    resp = await admin.post(
        f"/admin/v1/movies/{movie_id}/ingest", json={"upload_id": ticket["upload_id"]}, headers=auth
    )
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "upload_incomplete"
    resp = await admin.get("/admin/v1/jobs/not-a-uuid", headers=auth)
    assert resp.status == 404


async def test_local_streaming_upload_limits(
    jobs_settings: Settings, admin: TestClient, gateway: TestClient
) -> None:
    auth = await admin_token(gateway)
    ticket = await _ticket(admin, auth, 1000)
    url, headers = ticket["url"], ticket["headers"]
    assert url.startswith(str(admin.make_url("/admin/v1/uploads/")))
    # the URL is the authorisation: a wrong token is refused
    wrong = url.rsplit("token=", 1)[0] + "token=nope"
    resp = await admin.session.put(wrong, data=b"x" * 1000, headers=headers)
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "invalid_upload_token"
    # more than declared: 413, whether announced by Content-Length or streamed
    resp = await admin.session.put(url, data=b"x" * 1001, headers=headers)
    assert resp.status == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"y" * 400

    resp = await admin.session.put(url, data=chunks(), headers=headers)
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "upload_too_large"
    # fewer: 400, nothing kept
    resp = await admin.session.put(url, data=b"x" * 999, headers=headers)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "incomplete_upload"
    assert _leftovers(jobs_settings) == []
    resp = await admin.session.put(url, data=b"z" * 1000, headers=headers)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["size"] == 1000
    assert _leftovers(jobs_settings) == [f"{ticket['upload_id']}/source"]
    resp = await admin.session.put(url, data=b"z" * 1000, headers=headers)
    assert resp.status == 409  # the token is spent: already uploaded


async def test_a_full_disk_is_507_and_leaves_nothing(
    jobs_settings: Settings,
    admin: TestClient,
    gateway: TestClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    auth = await admin_token(gateway)
    ticket = await _ticket(admin, auth, 3 * 1024)
    written: list[int] = []

    def full_disk(file: Any, chunk: bytes) -> None:
        file.write(chunk[:1024])  # the disk fills up after the first kilobyte
        file.flush()
        written.append(min(len(chunk), 1024))
        if len(chunk) > 1024 or len(written) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(uploads_module, "_write_chunk", full_disk)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"a" * 1024

    resp = await admin.session.put(ticket["url"], data=chunks(), headers=ticket["headers"])
    assert resp.status == 507
    error = (await resp.json())["error"]
    assert error["code"] == "insufficient_storage"
    assert "disk is full" in error["message"]
    assert written  # it did start writing
    assert _leftovers(jobs_settings) == []


# ------------------------------------------------------------------ S3 / R2


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.mark.slow
async def test_presigned_put_to_s3_then_ingest(
    jobs_settings: Settings, moto: MotoServer, aiohttp_client
) -> None:
    bucket = moto.create_bucket()
    s3 = dataclasses.replace(
        jobs_settings,
        origin="s3",
        s3_endpoint_url=moto.endpoint_url,
        s3_bucket=bucket,
        s3_access_key_id=ACCESS_KEY_ID,
        s3_secret_access_key=SECRET_ACCESS_KEY,
        s3_region=REGION,
        max_upload_bytes=10**9,
    )
    admin = await aiohttp_client(create_admin(s3))
    gateway = await aiohttp_client(create_gateway(s3))
    auth = await admin_token(gateway)
    source = await generate_test_source(
        s3.data_dir / "s3film.mp4", duration_s=7, width=640, height=360
    )
    data = source.read_bytes()
    ticket = await _ticket(admin, auth, len(data))
    assert ticket["url"].startswith(f"{moto.endpoint_url}/{bucket}/uploads/")
    assert "X-Amz-Signature" in ticket["url"]
    movie_id = await new_movie(s3)
    # nothing arrived yet
    resp = await admin.post(
        f"/admin/v1/movies/{movie_id}/ingest", json={"upload_id": ticket["upload_id"]}, headers=auth
    )
    assert resp.status == 409
    # the bytes go straight to the bucket, with a plain HTTP client and no bearer
    async with aiohttp.ClientSession() as session:
        put = await session.put(ticket["url"], data=io.BytesIO(data), headers=ticket["headers"])
        assert put.status == 200, await put.text()
    stored = moto.client().head_object(Bucket=bucket, Key=f"uploads/{ticket['upload_id']}/source")
    assert stored["ContentLength"] == len(data)
    async with worker(s3):
        resp = await admin.post(
            f"/admin/v1/movies/{movie_id}/ingest",
            json={"upload_id": ticket["upload_id"]},
            headers=auth,
        )
        assert resp.status == 202, await resp.text()
        job = await wait_job(admin, auth, (await resp.json())["job_id"])
    assert job["status"] == "ready", job
    listed = moto.client().list_objects_v2(Bucket=bucket, Prefix=f"videos/{movie_id}/")
    keys = {obj["Key"] for obj in listed.get("Contents", [])}
    assert f"videos/{movie_id}/v2/master.m3u8" in keys
    assert f"videos/{movie_id}/v2-360p/seg_00000.ts" in keys
    assert f"videos/{movie_id}/v2-audio/index.m3u8" in keys
