"""Mobile money collections: the port, and the MTN MoMo and Airtel Money clients.

Both are asynchronous request-to-pay APIs: we ask the provider to debit a number, it
answers "accepted" at once and pushes a USSD prompt to the phone; the viewer approves
with their PIN; the result comes later by callback, or by asking for the status.

MTN MoMo Collections (momodeveloper.mtn.com):

- ``POST /collection/token/`` with Basic ``api_user:api_key`` -> a bearer token (1 h);
- ``POST /collection/v1_0/requesttopay`` with ``X-Reference-Id`` (our payment id, a UUID
  v4), ``X-Target-Environment``, ``X-Callback-Url`` -> 202, no body;
- ``GET /collection/v1_0/requesttopay/{referenceId}`` -> ``status`` ``PENDING``,
  ``SUCCESSFUL`` or ``FAILED`` (with a ``reason``), ``financialTransactionId``;
- every call carries ``Ocp-Apim-Subscription-Key``. The sandbox only takes ``EUR``.

Airtel Money (developers.airtel.africa, Collections):

- ``POST /auth/oauth2/token`` (client credentials) -> a bearer token;
- ``POST /merchant/v1/payments/`` with ``X-Country: UG``, ``X-Currency: UGX`` and our
  transaction id; the number without its country code;
- ``GET /standard/v1/payments/{id}`` -> ``status`` ``TS`` (success), ``TF`` (failed),
  ``TIP``/``TA`` (in progress, ambiguous).

Every call is bounded by ``KUSH_MOBILE_MONEY_TIMEOUT_S``: no answer, a connection error
or a 5xx is :class:`ProviderUnavailable` (503 with ``Retry-After``), a 4xx
:class:`ProviderRefused`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp
import orjson

from billing.mobile_money import Report
from billing.msisdn import Msisdn
from billing.provider import PaymentProvider, ProviderRefused, ProviderUnavailable
from runtime.settings import Settings

log = logging.getLogger(__name__)

TOKEN_MARGIN_S = 60


class CollectionProvider(PaymentProvider, Protocol):
    """What mobile money needs from a provider (``name`` is also the operator whose
    numbers it can debit: ``mtn`` or ``airtel``)."""

    async def request_to_pay(
        self,
        *,
        reference: str,
        msisdn: Msisdn,
        amount_ugx: int,
        description: str,
        callback_url: str | None,
    ) -> None:
        """Ask the provider to debit ``msisdn``; returns once it accepted the request.
        Asking again with the same reference is safe (the first one stands)."""
        ...

    async def payment_status(self, reference: str) -> Report:
        """The provider's current status of one request-to-pay."""
        ...


class _Http:
    """One aiohttp session with a total timeout, and a cached bearer token."""

    name = "http"

    def __init__(self, settings: Settings) -> None:
        self.timeout = settings.mobile_money_timeout_s
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout), raise_for_status=False
        )
        self._token: tuple[str, float] | None = None
        self._token_lock = asyncio.Lock()

    async def _call(
        self,
        what: str,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        json: Any = None,
        accept: tuple[int, ...] = (200,),
    ) -> tuple[int, Any]:
        """One request: (status, JSON body or None)."""
        try:
            async with (
                asyncio.timeout(self.timeout),
                self._session.request(method, url, headers=headers, json=json) as resp,
            ):
                status = resp.status
                text = await resp.text()
        except TimeoutError:
            log.warning("%s %s: no answer within %.0f s", self.name, what, self.timeout)
            raise ProviderUnavailable() from None
        except aiohttp.ClientError as err:
            log.warning("%s %s: %s", self.name, what, type(err).__name__)
            raise ProviderUnavailable() from None
        if status in accept:
            try:
                return status, orjson.loads(text) if text.strip() else None
            except orjson.JSONDecodeError:
                return status, None
        log.warning("%s %s: HTTP %d", self.name, what, status)
        if status >= 500 or status == 429:
            raise ProviderUnavailable()
        raise ProviderRefused()

    async def _bearer(self) -> str:
        async with self._token_lock:
            now = time.monotonic()
            if self._token is not None and self._token[1] > now:
                return self._token[0]
            token, expires_in = await self._new_token()
            self._token = (token, now + max(0.0, expires_in - TOKEN_MARGIN_S))
            return token

    async def _new_token(self) -> tuple[str, float]:
        raise NotImplementedError

    async def close(self) -> None:
        await self._session.close()


def _text(value: Any, limit: int = 200) -> str | None:
    """A provider's free text as we store it: no NUL (PostgreSQL refuses it), bounded."""
    if value is None or value == "":
        return None
    return str(value).replace("\x00", "")[:limit] or None


def _token_of(body: Any) -> tuple[str, float]:
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise ProviderRefused("The payment provider returned no access token")
    try:
        expires = float(body.get("expires_in") or 0)
    except (TypeError, ValueError):
        expires = 0.0
    return str(body["access_token"]), expires


# ------------------------------------------------------------------ MTN MoMo

_MTN_STATUS = {"SUCCESSFUL": "successful", "FAILED": "failed", "PENDING": "pending"}


def _mtn_reason(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("code") or value.get("message")
    return _text(value)


def mtn_report(body: Any) -> Report | None:
    """A request-to-pay object (status answer or callback) as a :class:`Report`."""
    if not isinstance(body, dict):
        return None
    status = _MTN_STATUS.get(str(body.get("status") or "").upper())
    if status is None:
        return None
    if status == "successful":
        return Report(status="successful", transaction_id=_text(body.get("financialTransactionId")))
    if status == "failed":
        return Report(status="failed", reason=_mtn_reason(body.get("reason")) or "FAILED")
    return Report(status="pending")


class MtnMomo(_Http):
    """:class:`CollectionProvider` over MTN MoMo's Collection API."""

    name = "mtn"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.base = settings.mtn_base()
        self.target = settings.mtn_target_environment()
        self.key = settings.mtn_momo_subscription_key or ""
        self.user = settings.mtn_momo_api_user or ""
        self.secret = settings.mtn_momo_api_key or ""
        # the sandbox only accepts EUR; production takes the shilling amounts as they are
        self.currency = "EUR" if self.target == "sandbox" else "UGX"

    async def _new_token(self) -> tuple[str, float]:
        _, body = await self._call(
            "token",
            "POST",
            f"{self.base}/collection/token/",
            headers={
                "Ocp-Apim-Subscription-Key": self.key,
                "Authorization": "Basic "
                + base64.b64encode(f"{self.user}:{self.secret}".encode()).decode(),
            },
        )
        return _token_of(body)

    async def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {await self._bearer()}",
            "X-Target-Environment": self.target,
            "Ocp-Apim-Subscription-Key": self.key,
        }

    async def request_to_pay(
        self,
        *,
        reference: str,
        msisdn: Msisdn,
        amount_ugx: int,
        description: str,
        callback_url: str | None,
    ) -> None:
        headers = await self._headers()
        headers["X-Reference-Id"] = reference
        if callback_url:
            headers["X-Callback-Url"] = callback_url
        body = {
            "amount": str(amount_ugx),
            "currency": self.currency,
            "externalId": reference,
            "payer": {"partyIdType": "MSISDN", "partyId": msisdn.digits},
            "payerMessage": description[:160],
            "payeeNote": description[:160],
        }
        # 409: this reference was already accepted (a retry): the first request stands
        await self._call(
            "requesttopay",
            "POST",
            f"{self.base}/collection/v1_0/requesttopay",
            headers=headers,
            json=body,
            accept=(202, 200, 409),
        )

    async def payment_status(self, reference: str) -> Report:
        _, body = await self._call(
            "requesttopay status",
            "GET",
            f"{self.base}/collection/v1_0/requesttopay/{reference}",
            headers=await self._headers(),
        )
        report = mtn_report(body)
        if report is None:
            raise ProviderRefused("The payment provider answered with an unknown status")
        return report


# ------------------------------------------------------------------ Airtel Money

_AIRTEL_STATUS = {"TS": "successful", "TF": "failed", "TIP": "pending", "TA": "pending"}


def airtel_report(tx: Any) -> Report | None:
    """An Airtel transaction object (status answer or callback) as a :class:`Report`."""
    if not isinstance(tx, dict):
        return None
    code = str(tx.get("status") or tx.get("status_code") or "").upper()
    status = _AIRTEL_STATUS.get(code)
    if status is None:
        return None
    if status == "successful":
        return Report(status="successful", transaction_id=_text(tx.get("airtel_money_id")))
    if status == "failed":
        return Report(status="failed", reason=_text(tx.get("message")) or "TF")
    return Report(status="pending")


class AirtelMoney(_Http):
    """:class:`CollectionProvider` over Airtel Money's Collections API (Uganda)."""

    name = "airtel"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.base = settings.airtel_base()
        self.client_id = settings.airtel_client_id or ""
        self.client_secret = settings.airtel_client_secret or ""

    async def _new_token(self) -> tuple[str, float]:
        _, body = await self._call(
            "token",
            "POST",
            f"{self.base}/auth/oauth2/token",
            headers={},
            json={
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "grant_type": "client_credentials",
            },
        )
        return _token_of(body)

    async def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {await self._bearer()}",
            "X-Country": "UG",
            "X-Currency": "UGX",
        }

    async def request_to_pay(
        self,
        *,
        reference: str,
        msisdn: Msisdn,
        amount_ugx: int,
        description: str,
        callback_url: str | None,
    ) -> None:
        body = {
            "reference": description[:64],
            "subscriber": {"country": "UG", "currency": "UGX", "msisdn": msisdn.national},
            "transaction": {
                "amount": amount_ugx,
                "country": "UG",
                "currency": "UGX",
                "id": reference,
            },
        }
        _, answer = await self._call(
            "payments",
            "POST",
            f"{self.base}/merchant/v1/payments/",
            headers=await self._headers(),
            json=body,
        )
        status = answer.get("status") if isinstance(answer, dict) else None
        if isinstance(status, dict) and status.get("success") is False:
            raise ProviderRefused(str(status.get("message") or "Airtel refused the payment"))

    async def payment_status(self, reference: str) -> Report:
        _, body = await self._call(
            "payment status",
            "GET",
            f"{self.base}/standard/v1/payments/{reference}",
            headers=await self._headers(),
        )
        data = body.get("data") if isinstance(body, dict) else None
        report = airtel_report(data.get("transaction") if isinstance(data, dict) else None)
        if report is None:
            raise ProviderRefused("The payment provider answered with an unknown status")
        return report


def create_collection_providers(settings: Settings) -> dict[str, CollectionProvider]:
    """The configured collection providers by name (none without credentials). Must run
    inside the event loop (each opens an HTTP session)."""
    providers: dict[str, CollectionProvider] = {}
    if settings.mtn_configured:
        providers["mtn"] = MtnMomo(settings)
    if settings.airtel_configured:
        providers["airtel"] = AirtelMoney(settings)
    return providers


# ------------------------------------------------------------------ callbacks

#: each provider's callback body -> (our reference, its report)
CALLBACK_PARSERS = {
    "mtn": lambda body: (
        str(body.get("externalId") or body.get("referenceId") or "") or None,
        mtn_report(body),
    ),
    "airtel": lambda body: _airtel_callback(body),
}


def _airtel_callback(body: dict[str, Any]) -> tuple[str | None, Report | None]:
    tx = body.get("transaction")
    ref = tx.get("id") if isinstance(tx, dict) else None
    return (str(ref) if ref else None), airtel_report(tx)


def callback_signature(secret: str, provider: str, reference: str) -> str:
    """The ``sig`` of a callback URL: HMAC-SHA256 of ``provider:reference`` under
    ``KUSH_MOBILE_MONEY_CALLBACK_SECRET`` (Airtel's one registered URL signs
    ``airtel:`` with an empty reference)."""
    mac = hmac.new(secret.encode(), f"{provider}:{reference}".encode(), hashlib.sha256)
    return mac.hexdigest()


def callback_url(settings: Settings, provider: str, reference: str) -> str | None:
    """Where the provider calls back about one payment (MTN takes it per request)."""
    base = settings.callback_base()
    secret = settings.callback_secret
    if not base or not secret:
        return None
    query = urlencode({"ref": reference, "sig": callback_signature(secret, provider, reference)})
    return f"{base}/billing/mobile-money/{provider}/callback?{query}"
