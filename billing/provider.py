"""The payment providers behind small protocols, and the Stripe implementation.

:class:`PaymentProvider` is the port every provider shares (its name, its errors, its
lifetime); :class:`BillingProvider` adds what card subscriptions need (Stripe), and
``billing.collections.CollectionProvider`` what mobile money collections need (MTN MoMo,
Airtel Money). The errors below are shared: each app maps them to the same JSON errors.

Every Stripe call goes through the ``stripe`` library's own client (``StripeClient``
with its aiohttp HTTP client), bounded by ``KUSH_STRIPE_TIMEOUT_S``: Stripe unreachable,
slow or failing is :class:`ProviderUnavailable` (the API answers 503 with
``Retry-After``), never a hang. ``STRIPE_API_BASE`` points the client elsewhere (the
tests' stand-in for Stripe's API).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

import aiohttp
import stripe
from stripe._base_address import BaseAddresses

from runtime.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_AFTER_S = 30


class BillingError(Exception):
    """Base of the billing errors (each app maps them to its JSON errors)."""

    code = "billing_error"
    message = "Billing failed"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or type(self).message
        super().__init__(self.message)


class BillingNotConfigured(BillingError):
    """No ``STRIPE_SECRET_KEY`` (or no price for the plan): nothing can be bought."""

    code = "billing_not_configured"
    message = (
        "Billing is not configured on this server: set STRIPE_SECRET_KEY (and "
        "STRIPE_PRICE_BASIC / STRIPE_PRICE_PREMIUM) to a Stripe account's keys and prices, "
        "then restart. Nothing has been charged and your plan has not changed."
    )


class ProviderUnavailable(BillingError):
    """The provider did not answer in time, or answered with a server error: retry."""

    code = "billing_unavailable"
    message = "The payment provider is not answering; nothing was charged, try again shortly"

    def __init__(self, message: str | None = None, *, retry_after: int = RETRY_AFTER_S) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderRefused(BillingError):
    """The provider refused the request (a wrong key or price): our configuration."""

    code = "billing_provider_error"
    message = "The payment provider refused the request; nothing was charged"


class PaymentProvider(Protocol):
    """What every payment provider has: a name (stored with its payments) and
    connections to release. Calls raise :class:`ProviderUnavailable` (retry) or
    :class:`ProviderRefused` (our configuration or request)."""

    name: str

    async def close(self) -> None:
        """Release connections."""
        ...


class BillingProvider(PaymentProvider, Protocol):
    """What the services need from a subscription (card) payment provider."""

    async def create_customer(self, *, user_id: str, email: str, idempotency_key: str) -> str:
        """A new customer for one of our users; returns its id."""
        ...

    async def create_checkout(
        self,
        *,
        customer_id: str,
        price_id: str,
        user_id: str,
        plan: str,
        success_url: str,
        cancel_url: str,
        idempotency_key: str,
    ) -> str:
        """A hosted checkout page for a subscription to ``price_id``; returns its URL."""
        ...

    async def create_portal(self, *, customer_id: str, return_url: str) -> str:
        """A hosted page where the customer manages their subscription; returns its URL."""
        ...

    async def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        """The provider's current view of one subscription (as its JSON object)."""
        ...


class StripeProvider:
    """:class:`BillingProvider` over the ``stripe`` library's async client."""

    name = "stripe"

    def __init__(self, settings: Settings) -> None:
        if not settings.stripe_secret_key:
            raise BillingNotConfigured()
        self.timeout = settings.stripe_timeout_s
        client_timeout = aiohttp.ClientTimeout(total=self.timeout)
        self._session = aiohttp.ClientSession(timeout=client_timeout)
        http = stripe.AIOHTTPClient(session=self._session, timeout=client_timeout)
        bases: BaseAddresses = {}
        if settings.stripe_api_base:
            bases["api"] = settings.stripe_api_base.rstrip("/")
        self._client = stripe.StripeClient(
            settings.stripe_secret_key,
            http_client=http,
            base_addresses=bases,
            max_network_retries=0,  # the caller retries on 503; keys make that safe
        )

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.timeout):
                return await call
        except TimeoutError:
            log.warning("stripe %s: no answer within %.0f s", what, self.timeout)
            raise ProviderUnavailable() from None
        except (stripe.APIConnectionError, stripe.RateLimitError) as err:
            log.warning("stripe %s: %s", what, type(err).__name__)
            raise ProviderUnavailable() from None
        except stripe.StripeError as err:
            status = err.http_status or 0
            log.warning("stripe %s: %s (HTTP %s)", what, type(err).__name__, status or "-")
            if status == 0 or status >= 500 or status == 409:
                raise ProviderUnavailable() from None
            raise ProviderRefused() from None

    async def create_customer(self, *, user_id: str, email: str, idempotency_key: str) -> str:
        customer = await self._call(
            "customers.create",
            self._client.v1.customers.create_async(
                {"email": email, "metadata": {"user_id": user_id}},
                {"idempotency_key": idempotency_key},
            ),
        )
        return str(customer.id)

    async def create_checkout(
        self,
        *,
        customer_id: str,
        price_id: str,
        user_id: str,
        plan: str,
        success_url: str,
        cancel_url: str,
        idempotency_key: str,
    ) -> str:
        metadata = {"user_id": user_id, "plan": plan}
        session = await self._call(
            "checkout.sessions.create",
            self._client.v1.checkout.sessions.create_async(
                {
                    "mode": "subscription",
                    "customer": customer_id,
                    "line_items": [{"price": price_id, "quantity": 1}],
                    "client_reference_id": user_id,
                    "success_url": success_url,
                    "cancel_url": cancel_url,
                    "metadata": metadata,
                    "subscription_data": {"metadata": metadata},
                },
                {"idempotency_key": idempotency_key},
            ),
        )
        if not session.url:
            raise ProviderRefused("The payment provider returned no checkout page")
        return str(session.url)

    async def create_portal(self, *, customer_id: str, return_url: str) -> str:
        portal = await self._call(
            "billing_portal.sessions.create",
            self._client.v1.billing_portal.sessions.create_async(
                {"customer": customer_id, "return_url": return_url}
            ),
        )
        return str(portal.url)

    async def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        sub = await self._call(
            "subscriptions.retrieve",
            self._client.v1.subscriptions.retrieve_async(subscription_id),
        )
        return sub.to_dict()

    async def close(self) -> None:
        await self._session.close()


def create_provider(settings: Settings) -> BillingProvider | None:
    """The configured provider, or None without ``STRIPE_SECRET_KEY`` (demo mode). Must
    run inside the event loop (it opens an HTTP session)."""
    if not settings.billing_configured:
        return None
    return StripeProvider(settings)
