"""Billing mail through an outbox: written in the transaction of the event that causes
it, delivered by ``kush worker``.

:func:`enqueue` inserts one ``mail_outbox`` row (with a ``dedup_key``: the same cause
never queues a mail twice). :func:`mail_outbox_job` claims due rows under a lease (two
workers never hold the same row), sends each through SMTP when ``KUSH_SMTP_URL`` is set
(``smtp://user:pass@host:587`` with STARTTLS when offered, ``smtps://`` for TLS from the
start: the SES SMTP interface works), or only logs it otherwise, and marks it sent at
once. A failure is retried with exponential backoff (30 s doubling to an hour, at most
``MAX_ATTEMPTS``); a permanent refusal (SMTP 5xx) is not retried. Logs carry the outbox
id and template, never the address. Each message has a ``Message-ID`` made of the
outbox id, so a receiving server can also drop a copy if a crash between sending and
marking ever made the worker send one again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import asyncpg
import orjson

from runtime.jobs import WorkerContext
from runtime.settings import Settings

log = logging.getLogger(__name__)

TEMPLATES = (
    "welcome",
    "payment_succeeded",
    "payment_failed",
    "subscription_ending",
    "subscription_ended",
)
MAX_ATTEMPTS = 8
LEASE_S = 300
BATCH = 20
POLL_S = 2.0
SMTP_TIMEOUT_S = 15.0
BACKOFF_FIRST_S = 30
BACKOFF_MAX_S = 3600

_SUBJECTS = {
    "welcome": "Welcome to Kush Films {plan_name}",
    "payment_succeeded": "Your Kush Films payment was received",
    "payment_failed": "Your Kush Films payment failed",
    "subscription_ending": "Your Kush Films {plan_name} plan will end",
    "subscription_ended": "Your Kush Films {plan_name} plan has ended",
}
_BODIES = {
    "welcome": (
        "Thank you for subscribing to Kush Films {plan_name}.\n\n"
        "You can now watch in up to {max_height}p{ads_line}. Manage or cancel your "
        "subscription at any time from the Upgrade page.\n"
    ),
    "payment_succeeded": (
        "We received your payment of {amount} for Kush Films {plan_name}.\n\n"
        "Thank you for watching with us.\n"
    ),
    "payment_failed": (
        "Your payment for Kush Films {plan_name} did not go through.\n\n"
        "You keep {plan_name} until {grace_until}. Please update your payment method "
        "from the Upgrade page before then, or your account moves to the Free plan.\n"
    ),
    "subscription_ending": (
        "Your Kush Films {plan_name} plan is set to end on {period_end}.\n\n"
        "Changed your mind? Resume it from the Upgrade page before then.\n"
    ),
    "subscription_ended": (
        "Your Kush Films {plan_name} plan has ended and your account is on the Free plan.\n\n"
        "You can subscribe again at any time from the Upgrade page.\n"
    ),
}


class _Defaults(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "-"


def render(template: str, data: dict[str, Any]) -> tuple[str, str]:
    """Subject and plain-text body of one mail (missing values read as ``-``)."""
    values = _Defaults(data)
    values["ads_line"] = " and with no ads" if data.get("ads") is False else ""
    return _SUBJECTS[template].format_map(values), _BODIES[template].format_map(values)


async def enqueue(
    conn: asyncpg.Connection,
    *,
    user_id: str,
    template: str,
    data: dict[str, Any],
    dedup_key: str,
) -> bool:
    """Queue one mail to the user's address in the caller's transaction; False when the
    same ``dedup_key`` was queued before (or the user has gone)."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown mail template {template!r}")
    queued = await conn.fetchval(
        """INSERT INTO mail_outbox (user_id, template, to_address, data, dedup_key)
           SELECT u.id, $2, u.email, $3::jsonb, $4 FROM users u WHERE u.id = $1::uuid
           ON CONFLICT (dedup_key) DO NOTHING RETURNING id""",
        user_id,
        template,
        orjson.dumps(data).decode(),
        dedup_key,
    )
    return queued is not None


# ------------------------------------------------------------------ delivery


@dataclass(frozen=True, slots=True)
class Mail:
    """One claimed outbox row."""

    id: int
    template: str
    to_address: str
    data: dict[str, Any]
    attempts: int


class PermanentMailError(Exception):
    """The server refused the message for good (SMTP 5xx): retrying cannot help."""


class MailSender(Protocol):
    """Delivers one mail; raises on failure (:class:`PermanentMailError`: do not retry)."""

    via: str

    async def send(self, mail: Mail) -> None: ...


class LogSender:
    """Without ``KUSH_SMTP_URL``: the mail is logged (id and template), not sent."""

    via = "log"

    async def send(self, mail: Mail) -> None:
        subject, _ = render(mail.template, mail.data)
        log.info(
            "mail %d (%s) not sent: KUSH_SMTP_URL is not set; subject %r",
            mail.id,
            mail.template,
            subject,
        )


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    """Where and how to send, from ``KUSH_SMTP_URL``."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


def smtp_target(url: str) -> SmtpTarget:
    """``smtp://[user:pass@]host[:port]`` (STARTTLS when offered; 587 with credentials,
    else 25) or ``smtps://…`` (TLS from the start, 465)."""
    parts = urlsplit(url)
    tls = parts.scheme == "smtps"
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    default = 465 if tls else (587 if user else 25)
    return SmtpTarget(parts.hostname or "localhost", parts.port or default, tls, user, password)


class SmtpSender:
    """Sends through an SMTP server (the standard library's client, in a thread)."""

    via = "smtp"

    def __init__(self, url: str, sender: str) -> None:
        self.target = smtp_target(url)
        self.sender = sender
        self.domain = parseaddr(sender)[1].rpartition("@")[2] or "kushfilms.example"

    def message(self, mail: Mail) -> EmailMessage:
        subject, body = render(mail.template, mail.data)
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = mail.to_address
        msg["Subject"] = subject
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = f"<kush-outbox-{mail.id}@{self.domain}>"
        msg["X-Kush-Template"] = mail.template
        msg.set_content(body)
        return msg

    def _send_blocking(self, msg: EmailMessage) -> None:
        t = self.target
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if t.tls:
            client = smtplib.SMTP_SSL(t.host, t.port, timeout=SMTP_TIMEOUT_S, context=context)
        else:
            client = smtplib.SMTP(t.host, t.port, timeout=SMTP_TIMEOUT_S)
        with client:
            client.ehlo()
            if not t.tls and client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
            if t.username:
                client.login(t.username, t.password or "")
            try:
                client.send_message(msg)
            except smtplib.SMTPRecipientsRefused as err:
                codes = [code for code, _ in err.recipients.values()]
                if all(500 <= code < 600 for code in codes):
                    raise PermanentMailError("recipient refused") from None
                raise
            except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as err:
                if 500 <= err.smtp_code < 600:
                    raise PermanentMailError(f"refused ({err.smtp_code})") from None
                raise

    async def send(self, mail: Mail) -> None:
        await asyncio.to_thread(self._send_blocking, self.message(mail))


def create_sender(settings: Settings) -> MailSender:
    """SMTP when ``KUSH_SMTP_URL`` is set, else the log."""
    if settings.smtp_url:
        return SmtpSender(settings.smtp_url, settings.mail_from)
    return LogSender()


def backoff_s(attempts: int) -> int:
    """Seconds before the next try after ``attempts`` failed ones: 30 s doubling, ≤ 1 h."""
    return int(min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** max(0, attempts - 1)))


_CLAIM_SQL = """
UPDATE mail_outbox SET locked_until = now() + make_interval(secs => $1), attempts = attempts + 1
 WHERE id IN (SELECT id FROM mail_outbox
               WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now()
                 AND (locked_until IS NULL OR locked_until < now())
               ORDER BY id FOR UPDATE SKIP LOCKED LIMIT $2)
RETURNING id, template, to_address, data, attempts
"""


async def deliver_due(pool: asyncpg.Pool, sender: MailSender, *, batch: int = BATCH) -> int:
    """Send the mails that are due (claimed under a lease); returns how many were tried."""
    rows = await pool.fetch(_CLAIM_SQL, LEASE_S, batch)
    for r in sorted(rows, key=lambda r: int(r["id"])):
        data = r["data"]
        mail = Mail(
            id=int(r["id"]),
            template=r["template"],
            to_address=r["to_address"],
            data=orjson.loads(data) if isinstance(data, str | bytes) else dict(data or {}),
            attempts=int(r["attempts"]),
        )
        try:
            await sender.send(mail)
        except PermanentMailError as err:
            log.warning("mail %d (%s) refused for good: %s", mail.id, mail.template, err)
            await pool.execute(
                """UPDATE mail_outbox SET failed_at = now(), locked_until = NULL,
                          last_error = $2 WHERE id = $1""",
                mail.id,
                str(err)[:500],
            )
            continue
        except Exception as err:
            give_up = mail.attempts >= MAX_ATTEMPTS
            delay = backoff_s(mail.attempts)
            log.warning(
                "mail %d (%s) attempt %d failed: %s%s",
                mail.id,
                mail.template,
                mail.attempts,
                type(err).__name__,
                "; giving up" if give_up else f"; retry in {delay} s",
            )
            await pool.execute(
                """UPDATE mail_outbox SET locked_until = NULL, last_error = $2,
                          next_attempt_at = now() + make_interval(secs => $3),
                          failed_at = CASE WHEN $4 THEN now() END
                    WHERE id = $1""",
                mail.id,
                type(err).__name__,
                delay,
                give_up,
            )
            continue
        await pool.execute(
            """UPDATE mail_outbox SET sent_at = now(), sent_via = $2, locked_until = NULL,
                      last_error = NULL WHERE id = $1""",
            mail.id,
            sender.via,
        )
        log.info("mail %d (%s) sent via %s", mail.id, mail.template, sender.via)
    return len(rows)


async def mail_outbox_job(ctx: WorkerContext, stop: asyncio.Event) -> None:
    """``kush worker`` job: deliver the mail outbox until stopped."""
    sender = create_sender(ctx.settings)
    while not stop.is_set():
        tried = 0
        try:
            tried = await deliver_due(ctx.pool, sender)
        except Exception as exc:  # PostgreSQL away: try again next round
            log.warning("mail outbox skipped: %s", type(exc).__name__)
        if tried >= BATCH:
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=POLL_S)
