"""A small local HTTP server that answers like Stripe's API, and Stripe-signed events.

The ``stripe`` library is pointed at it (``STRIPE_API_BASE``), so the real client code
runs: form-encoded requests, API key, ``Idempotency-Key``. It records every request and
can be told to fail (HTTP 500) or to hang. Events are signed exactly as Stripe signs
them, with the library's own helper (``t=<unix>,v1=HMAC-SHA256(secret, "t.payload")``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import stripe
from aiohttp import web

from tests.integration.helpers import free_port


@dataclass
class Recorded:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]


@dataclass
class FakeStripe:
    """Stripe's API on loopback: customers, checkout and portal sessions, subscriptions."""

    mode: str = "ok"  # "ok", "fail" (HTTP 500) or "hang"
    requests: list[Recorded] = field(default_factory=list)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    port: int = 0
    _runner: web.AppRunner | None = None
    _idempotent: dict[str, dict[str, Any]] = field(default_factory=dict)
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _success_urls: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def calls(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    async def start(self) -> FakeStripe:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        self._release.set()  # let hanging requests finish so the server stops at once
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        if request.method == "GET" and request.path.startswith("/c/pay/"):
            # the hosted checkout page: "pays" at once and sends the browser back
            target = self._success_urls.get(request.path.rsplit("/", 1)[1])
            if target is None:
                return web.Response(status=404, text="no such checkout session")
            raise web.HTTPFound(target)
        body = (await request.read()).decode()
        query = dict(parse_qsl(request.query_string))
        params = dict(parse_qsl(body)) if body else query
        self.requests.append(
            Recorded(request.method, request.path, params, dict(request.headers.items()))
        )
        if self.mode == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), timeout=60)
        if self.mode == "fail":
            return _json({"error": {"type": "api_error", "message": "boom"}}, status=500)
        if not request.headers.get("Authorization", "").startswith("Bearer sk_test_"):
            return _json({"error": {"type": "invalid_request_error"}}, status=401)
        key = request.headers.get("Idempotency-Key")
        if key and key in self._idempotent:
            return _json(self._idempotent[key])
        answer = self._answer(request.method, request.path, params)
        if answer is None:
            return _json({"error": {"type": "invalid_request_error", "message": "no"}}, 404)
        if key:
            self._idempotent[key] = answer
        return _json(answer)

    def _answer(self, method: str, path: str, params: dict[str, str]) -> dict[str, Any] | None:
        token = secrets.token_hex(6)
        if method == "POST" and path == "/v1/customers":
            return {"id": f"cus_{token}", "object": "customer", "email": params.get("email")}
        if method == "POST" and path == "/v1/checkout/sessions":
            sid = f"cs_test_{token}"
            self._success_urls[sid] = params.get("success_url", "")
            return {
                "id": sid,
                "object": "checkout.session",
                "mode": params.get("mode"),
                "customer": params.get("customer"),
                "client_reference_id": params.get("client_reference_id"),
                "url": f"{self.base}/c/pay/{sid}",
            }
        if method == "POST" and path == "/v1/billing_portal/sessions":
            return {
                "id": f"bps_{token}",
                "object": "billing_portal.session",
                "customer": params.get("customer"),
                "url": f"https://billing.stripe.test/p/session/{token}",
            }
        if method == "GET" and path.startswith("/v1/subscriptions/"):
            return self.subscriptions.get(path.rsplit("/", 1)[1])
        return None


def _json(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data),
        status=status,
        content_type="application/json",
        headers={"Request-Id": "req_" + secrets.token_hex(4)},
    )


# ------------------------------------------------------------------ events


def event(
    etype: str, obj: dict[str, Any], *, created: int | None = None, event_id: str | None = None
) -> dict[str, Any]:
    """A Stripe event around ``obj``."""
    return {
        "id": event_id or f"evt_{secrets.token_hex(8)}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": created if created is not None else int(time.time()),
        "type": etype,
        "livemode": False,
        "pending_webhooks": 1,
        "data": {"object": obj},
    }


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header Stripe would send (the library's own helper)."""
    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)


def subscription_obj(
    sub_id: str,
    customer: str,
    status: str,
    price: str,
    *,
    user_id: str | None = None,
    plan: str | None = None,
    period_end: int | None = None,
    cancel_at_period_end: bool = False,
) -> dict[str, Any]:
    end = period_end or int(time.time()) + 30 * 86400
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "cancel_at_period_end": cancel_at_period_end,
        "current_period_end": end,
        "metadata": {k: v for k, v in (("user_id", user_id), ("plan", plan)) if v},
        "items": {
            "object": "list",
            "data": [{"id": "si_1", "price": {"id": price}, "current_period_end": end}],
        },
    }


def invoice_obj(
    invoice_id: str,
    customer: str,
    sub_id: str,
    price: str,
    *,
    amount: int = 499,
    paid: bool = True,
    attempt: int = 1,
) -> dict[str, Any]:
    now = int(time.time())
    return {
        "id": invoice_id,
        "object": "invoice",
        "customer": customer,
        "subscription": sub_id,
        "billing_reason": "subscription_cycle",
        "currency": "usd",
        "amount_paid": amount if paid else 0,
        "amount_due": amount,
        "attempt_count": attempt,
        "status": "paid" if paid else "open",
        "status_transitions": {"paid_at": now if paid else None},
        "lines": {
            "object": "list",
            "data": [{"price": {"id": price}, "period": {"start": now, "end": now + 30 * 86400}}],
        },
    }


def checkout_obj(user_id: str, customer: str, sub_id: str, plan: str) -> dict[str, Any]:
    return {
        "id": f"cs_test_{secrets.token_hex(6)}",
        "object": "checkout.session",
        "mode": "subscription",
        "customer": customer,
        "subscription": sub_id,
        "client_reference_id": user_id,
        "payment_status": "paid",
        "status": "complete",
        "metadata": {"user_id": user_id, "plan": plan},
    }
