"""A local HTTP server that behaves like the MTN MoMo sandbox (Collection API) and
Airtel Money's UAT Collections API, for the real client code (``billing.collections``).

MTN: ``POST /collection/token/`` (Basic api user/key and ``Ocp-Apim-Subscription-Key``)
gives a bearer token; ``POST /collection/v1_0/requesttopay`` with ``X-Reference-Id``
answers 202 (409 for a reference already used) and leaves the payment ``PENDING``;
``GET /collection/v1_0/requesttopay/{referenceId}`` answers its state (404 unknown).
Airtel: ``POST /auth/oauth2/token``, ``POST /merchant/v1/payments/``,
``GET /standard/v1/payments/{id}`` (``TIP`` -> ``TS``/``TF``).

The test plays the viewer: :meth:`approve` or :meth:`decline` settles a payment and, as
the real platforms do, calls back once (MTN: the request's ``X-Callback-Url``; Airtel:
the one registered URL, :attr:`airtel_callback_url`) unless :attr:`callbacks` is off
(the "callback never sent" case). :meth:`send_callback` sends any body again (a
duplicate, a late ``PENDING``). ``mode`` ``fail`` answers 500, ``hang`` never answers.

Run alone for the demo (``python -m tests.support.momo_sandbox --port 8099``): it then
approves every payment after ``--approve-after`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.integration.helpers import free_port

SUBSCRIPTION_KEY = "sandbox-subscription-key"
API_USER = str(uuid.UUID(int=0x5A4D))
API_KEY = "sandbox-api-key"
AIRTEL_CLIENT_ID = "airtel-client"
AIRTEL_CLIENT_SECRET = "airtel-secret"


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Payment:
    provider: str
    reference: str
    body: dict[str, Any]
    callback_url: str | None
    status: str = "PENDING"
    reason: str | None = None
    transaction_id: str | None = None


@dataclass
class MomoSandbox:
    """MTN MoMo and Airtel Money on loopback (see the module docstring)."""

    mode: str = "ok"
    callbacks: bool = True
    approve_after: float | None = None
    airtel_callback_url: str | None = None
    calls: list[Call] = field(default_factory=list)
    payments: dict[str, Payment] = field(default_factory=dict)
    callback_replies: list[tuple[int, Any]] = field(default_factory=list)
    port: int = 0
    _tokens: set[str] = field(default_factory=set)
    _runner: web.AppRunner | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    async def start(self, port: int = 0) -> MomoSandbox:
        app = web.Application()
        app.router.add_post("/collection/token/", self._mtn_token)
        app.router.add_post("/collection/v1_0/requesttopay", self._mtn_request)
        app.router.add_get("/collection/v1_0/requesttopay/{ref}", self._mtn_status)
        app.router.add_post("/auth/oauth2/token", self._airtel_token)
        app.router.add_post("/merchant/v1/payments/", self._airtel_request)
        app.router.add_get("/standard/v1/payments/{ref}", self._airtel_status)
        app.middlewares.append(self._record)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        self.port = port or free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        self._release.set()
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    # -------------------------------------------------------------- the viewer's phone

    async def approve(self, reference: str) -> None:
        """The viewer enters their PIN: the payment succeeds (and is called back)."""
        await self._settle(reference, "SUCCESSFUL", None)

    async def decline(self, reference: str, reason: str = "APPROVAL_REJECTED") -> None:
        """The viewer rejects the prompt (or has too little money): it fails."""
        await self._settle(reference, "FAILED", reason)

    async def _settle(self, reference: str, status: str, reason: str | None) -> None:
        payment = self.payments[reference]
        payment.status, payment.reason = status, reason
        if status == "SUCCESSFUL":
            payment.transaction_id = str(secrets.randbelow(10**10))
        if self.callbacks:
            await self.send_callback(reference)

    def callback_body(self, reference: str, status: str | None = None) -> dict[str, Any]:
        """What the platform posts back about a payment (its current state by default)."""
        payment = self.payments[reference]
        status = status or payment.status
        if payment.provider == "airtel":
            code = {"SUCCESSFUL": "TS", "FAILED": "TF"}.get(status, "TIP")
            return {
                "transaction": {
                    "id": reference,
                    "message": payment.reason or "Paid",
                    "status_code": code,
                    "airtel_money_id": payment.transaction_id or "",
                }
            }
        return self._mtn_object(payment, status)

    async def send_callback(
        self, reference: str, status: str | None = None, *, method: str = "POST"
    ) -> int:
        """Call back about ``reference`` (again, or with another status); returns the
        HTTP status our callback answered."""
        payment = self.payments[reference]
        url = payment.callback_url if payment.provider == "mtn" else self.airtel_callback_url
        assert url, "no callback URL for this payment"
        body = self.callback_body(reference, status)
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, url, json=body) as resp,
        ):
            reply = await resp.json(content_type=None)
            self.callback_replies.append((resp.status, reply))
            return resp.status

    # -------------------------------------------------------------- HTTP

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        self.calls.append(Call(request.method, request.path, dict(request.headers), body))
        if self.mode == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), timeout=60)
        if self.mode == "fail":
            return web.json_response({"code": "INTERNAL_PROCESSING_ERROR"}, status=500)
        response: web.StreamResponse = await handler(request)
        return response

    def _bearer_ok(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self._tokens

    def _token(self) -> str:
        token = secrets.token_urlsafe(16)
        self._tokens.add(token)
        return token

    async def _mtn_token(self, request: web.Request) -> web.Response:
        expected = base64.b64encode(f"{API_USER}:{API_KEY}".encode()).decode()
        if request.headers.get("Ocp-Apim-Subscription-Key") != SUBSCRIPTION_KEY:
            return web.json_response({"statusCode": 401, "message": "bad key"}, status=401)
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response({"error": "login_failed"}, status=401)
        return web.json_response(
            {"access_token": self._token(), "token_type": "access_token", "expires_in": 3600}
        )

    def _mtn_headers_ok(self, request: web.Request) -> bool:
        return (
            self._bearer_ok(request)
            and request.headers.get("Ocp-Apim-Subscription-Key") == SUBSCRIPTION_KEY
            and request.headers.get("X-Target-Environment") == "sandbox"
        )

    async def _mtn_request(self, request: web.Request) -> web.Response:
        if not self._mtn_headers_ok(request):
            return web.json_response({"code": "UNAUTHORIZED"}, status=401)
        ref = request.headers.get("X-Reference-Id", "")
        try:
            if uuid.UUID(ref).version != 4:
                raise ValueError(ref)
        except ValueError:
            return web.json_response({"code": "INVALID_REFERENCE_ID"}, status=400)
        if ref in self.payments:
            return web.json_response({"code": "RESOURCE_ALREADY_EXIST"}, status=409)
        body = await request.json()
        if body.get("currency") != "EUR" or not str(body.get("amount", "")).isdigit():
            return web.json_response({"code": "INVALID_CURRENCY"}, status=400)
        self.payments[ref] = Payment("mtn", ref, body, request.headers.get("X-Callback-Url"))
        self._maybe_auto(ref)
        return web.Response(status=202)

    @staticmethod
    def _mtn_object(payment: Payment, status: str) -> dict[str, Any]:
        body = payment.body
        out: dict[str, Any] = {
            "amount": body["amount"],
            "currency": body["currency"],
            "externalId": body["externalId"],
            "payer": body["payer"],
            "payerMessage": body.get("payerMessage"),
            "payeeNote": body.get("payeeNote"),
            "status": status,
        }
        if status == "SUCCESSFUL":
            out["financialTransactionId"] = payment.transaction_id
        if status == "FAILED":
            out["reason"] = payment.reason
        return out

    async def _mtn_status(self, request: web.Request) -> web.Response:
        if not self._mtn_headers_ok(request):
            return web.json_response({"code": "UNAUTHORIZED"}, status=401)
        payment = self.payments.get(request.match_info["ref"])
        if payment is None or payment.provider != "mtn":
            return web.json_response({"code": "RESOURCE_NOT_FOUND"}, status=404)
        return web.json_response(self._mtn_object(payment, payment.status))

    async def _airtel_token(self, request: web.Request) -> web.Response:
        body = await request.json()
        if (body.get("client_id"), body.get("client_secret")) != (
            AIRTEL_CLIENT_ID,
            AIRTEL_CLIENT_SECRET,
        ):
            return web.json_response({"error": "invalid_client"}, status=401)
        return web.json_response(
            {"access_token": self._token(), "expires_in": "180", "token_type": "bearer"}
        )

    def _airtel_headers_ok(self, request: web.Request) -> bool:
        return (
            self._bearer_ok(request)
            and request.headers.get("X-Country") == "UG"
            and request.headers.get("X-Currency") == "UGX"
        )

    async def _airtel_request(self, request: web.Request) -> web.Response:
        if not self._airtel_headers_ok(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        body = await request.json()
        ref = str(body["transaction"]["id"])
        if body["subscriber"]["msisdn"].startswith("256"):
            return web.json_response(
                {"status": {"success": False, "message": "msisdn without country code"}},
                status=400,
            )
        if ref not in self.payments:
            self.payments[ref] = Payment("airtel", ref, body, None)
            self._maybe_auto(ref)
        return web.json_response(
            {
                "data": {"transaction": {"id": ref, "status": "Success."}},
                "status": {"code": "200", "message": "Success.", "success": True},
            }
        )

    async def _airtel_status(self, request: web.Request) -> web.Response:
        if not self._airtel_headers_ok(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        payment = self.payments.get(request.match_info["ref"])
        if payment is None or payment.provider != "airtel":
            return web.json_response({"status": {"success": False}}, status=404)
        tx = self.callback_body(payment.reference)["transaction"]
        return web.json_response(
            {
                "data": {
                    "transaction": {
                        "id": payment.reference,
                        "status": tx["status_code"],
                        "message": tx["message"],
                        "airtel_money_id": tx["airtel_money_id"],
                    }
                },
                "status": {"code": "200", "success": True},
            }
        )

    def _maybe_auto(self, reference: str) -> None:
        if self.approve_after is None:
            return

        async def later() -> None:
            await asyncio.sleep(self.approve_after or 0)
            with contextlib.suppress(aiohttp.ClientError, AssertionError):
                await self.approve(reference)

        task = asyncio.get_running_loop().create_task(later())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _serve(port: int, approve_after: float) -> None:
    sandbox = await MomoSandbox(approve_after=approve_after).start(port)
    print(f"MoMo sandbox on {sandbox.base}: KUSH_MTN_MOMO_BASE_URL={sandbox.base}")
    print(
        f"KUSH_MTN_MOMO_SUBSCRIPTION_KEY={SUBSCRIPTION_KEY} KUSH_MTN_MOMO_API_USER={API_USER} "
        f"KUSH_MTN_MOMO_API_KEY={API_KEY}"
    )
    try:
        await asyncio.Event().wait()
    finally:
        await sandbox.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="A local MTN MoMo / Airtel Money sandbox")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--approve-after", type=float, default=20.0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.approve_after))


if __name__ == "__main__":
    main()
