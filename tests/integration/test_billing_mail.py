"""The mail outbox delivered through a real SMTP server on loopback (aiosmtpd): sent
once, retried with backoff when the server is away, logged without KUSH_SMTP_URL."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import asyncpg
import pytest
from aiosmtpd.controller import Controller

from billing import mail
from runtime import db
from runtime.settings import Settings
from tests.integration.helpers import free_port


class Inbox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(settings)
    yield p
    await p.close()


async def new_user(pg: asyncpg.Connection) -> tuple[str, str]:
    email = f"mail-{secrets.token_hex(4)}@example.ug"
    user_id = await pg.fetchval(
        "INSERT INTO users (email, password_hash) VALUES ($1, 'x') RETURNING id", email
    )
    return str(user_id), email


async def queue(pg: asyncpg.Connection, user_id: str, template: str, key: str) -> bool:
    async with pg.transaction():
        return await mail.enqueue(
            pg,
            user_id=user_id,
            template=template,
            data={"plan_name": "Premium", "amount": "$4.99", "max_height": 1080, "ads": False},
            dedup_key=key,
        )


async def deliver_all(pool: asyncpg.Pool, sender: mail.MailSender) -> None:
    """Deliver until nothing of this test is due (other tests' rows may be there too)."""
    while await mail.deliver_due(pool, sender):
        pass


async def test_smtp_delivers_each_mail_exactly_once(
    smtp: tuple[Inbox, int], pool: asyncpg.Pool, pg: asyncpg.Connection
) -> None:
    inbox, port = smtp
    user_id, email = await new_user(pg)
    key = f"welcome:{secrets.token_hex(4)}"
    assert await queue(pg, user_id, "welcome", key) is True
    assert await queue(pg, user_id, "welcome", key) is False  # the same cause: no second mail
    await queue(pg, user_id, "payment_succeeded", f"paid:{secrets.token_hex(4)}")
    sender = mail.SmtpSender(f"smtp://127.0.0.1:{port}", "Kush Films <billing@kush.test>")
    await deliver_all(pool, sender)
    await deliver_all(pool, sender)  # nothing left: a second pass sends nothing again
    mine = [m for m in inbox.messages if m["To"] == email]
    assert sorted(m["X-Kush-Template"] for m in mine) == ["payment_succeeded", "welcome"]
    welcome = next(m for m in mine if m["X-Kush-Template"] == "welcome")
    assert welcome["Subject"] == "Welcome to Kush Films Premium"
    assert "1080p" in welcome.get_payload()
    assert welcome["Message-ID"].startswith("<kush-outbox-")
    rows = await pg.fetch(
        "SELECT sent_at, sent_via, attempts FROM mail_outbox WHERE user_id = $1::uuid", user_id
    )
    assert [(r["sent_via"], r["attempts"]) for r in rows] == [("smtp", 1), ("smtp", 1)]
    assert all(r["sent_at"] is not None for r in rows)


async def test_server_away_is_retried_with_backoff_and_sent_once(
    smtp: tuple[Inbox, int], pool: asyncpg.Pool, pg: asyncpg.Connection
) -> None:
    inbox, port = smtp
    user_id, email = await new_user(pg)
    await queue(pg, user_id, "payment_failed", f"failed:{secrets.token_hex(4)}")
    nobody = mail.SmtpSender(f"smtp://127.0.0.1:{free_port()}", "billing@kush.test")
    await deliver_all(pool, nobody)
    row = await pg.fetchrow(
        """SELECT attempts, sent_at, last_error, next_attempt_at > now() AS later
             FROM mail_outbox WHERE user_id = $1::uuid""",
        user_id,
    )
    assert (row["attempts"], row["sent_at"], row["later"]) == (1, None, True)
    assert row["last_error"]
    # not due yet: the working server gets nothing
    sender = mail.SmtpSender(f"smtp://127.0.0.1:{port}", "billing@kush.test")
    await deliver_all(pool, sender)
    assert [m for m in inbox.messages if m["To"] == email] == []
    # the backoff has passed
    await pg.execute(
        "UPDATE mail_outbox SET next_attempt_at = now() WHERE user_id = $1::uuid", user_id
    )
    await deliver_all(pool, sender)
    await deliver_all(pool, sender)
    assert len([m for m in inbox.messages if m["To"] == email]) == 1
    row = await pg.fetchrow(
        "SELECT attempts, sent_via FROM mail_outbox WHERE user_id = $1::uuid", user_id
    )
    assert (row["attempts"], row["sent_via"]) == (2, "smtp")


async def test_without_smtp_the_mail_is_logged_by_id_and_template_only(
    pool: asyncpg.Pool, pg: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    user_id, email = await new_user(pg)
    await queue(pg, user_id, "subscription_ended", f"ended:{secrets.token_hex(4)}")
    sender = mail.create_sender(Settings())
    assert isinstance(sender, mail.LogSender)
    with caplog.at_level(logging.INFO, logger="billing.mail"):
        await deliver_all(pool, sender)
    assert any("subscription_ended" in r.getMessage() for r in caplog.records)
    assert not any(email in r.getMessage() for r in caplog.records)
    via = await pg.fetchval("SELECT sent_via FROM mail_outbox WHERE user_id = $1::uuid", user_id)
    assert via == "log"


async def test_worker_job_delivers_and_stops(
    smtp: tuple[Inbox, int], settings: Settings, pool: asyncpg.Pool, pg: asyncpg.Connection
) -> None:
    import dataclasses

    from runtime.jobs import WorkerContext
    from runtime.redis import create_redis

    inbox, port = smtp
    user_id, email = await new_user(pg)
    await queue(pg, user_id, "welcome", f"welcome:{secrets.token_hex(4)}")
    cfg = dataclasses.replace(settings, smtp_url=f"smtp://127.0.0.1:{port}")
    redis = create_redis(cfg)
    stop = asyncio.Event()
    job = asyncio.create_task(mail.mail_outbox_job(WorkerContext(cfg, pool, redis), stop))
    try:
        for _ in range(100):
            if any(m["To"] == email for m in inbox.messages):
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(job, timeout=10)
        await redis.aclose()
    assert len([m for m in inbox.messages if m["To"] == email]) == 1
