"""Billing shared by both services: the effective plan (one pure function), reading it
from PostgreSQL, the payment provider (Stripe) and the mail outbox.

It stands below the services and the token service (they all read the effective plan)
and above the runtime kernel; it imports nothing else of ours.
"""
