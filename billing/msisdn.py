"""Ugandan phone numbers (MSISDNs): validated, normalised to E.164, and told apart by
operator. Pure: no I/O.

Uganda's numbering plan (UCC, ITU E.164): ``+256`` then a 9-digit national significant
number; mobile numbers begin with 7, the second digit names the operator. What a viewer
types may carry the trunk ``0`` (``0772 123456``), the country code with or without
``+`` or ``00`` (``256772123456``), spaces, dashes, dots or brackets; all of them mean the
same ``+256772123456``.

Operator ranges (the operator's mobile money is what can debit the number):

- MTN Uganda: 76, 77, 78 (mobile) and 31, 39 (MTN's fixed-wireless ranges);
- Airtel Uganda: 70, 74, 75 (mobile) and 20 (Airtel's fixed range).

Other ranges (71 Uganda Telecom, 72/73 and others) have neither MTN MoMo nor Airtel
Money and are refused with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Operator = Literal["mtn", "airtel"]

COUNTRY_CODE = "256"
NSN_DIGITS = 9
#: two-digit range (the national number's first two digits) -> operator
PREFIXES: dict[str, Operator] = {
    "76": "mtn",
    "77": "mtn",
    "78": "mtn",
    "31": "mtn",
    "39": "mtn",
    "70": "airtel",
    "74": "airtel",
    "75": "airtel",
    "20": "airtel",
}
OPERATOR_NAMES: dict[str, str] = {"mtn": "MTN", "airtel": "Airtel"}
PROVIDER_NAMES: dict[str, str] = {"mtn": "MTN Mobile Money", "airtel": "Airtel Money"}
_SEPARATORS = re.compile(r"[\s\-.()/]")


class InvalidMsisdn(ValueError):
    """Not a Ugandan mobile money number; the message says why (shown to the viewer)."""

    code = "invalid_msisdn"


class WrongOperator(InvalidMsisdn):
    """A valid number of another operator than the chosen provider."""

    code = "wrong_operator"


@dataclass(frozen=True, slots=True)
class Msisdn:
    """A normalised Ugandan number."""

    e164: str  # "+256772123456"
    operator: Operator

    @property
    def national(self) -> str:
        """The 9-digit national significant number (Airtel wants it without 256)."""
        return self.e164[4:]

    @property
    def digits(self) -> str:
        """Country code and number without ``+`` (MTN's ``partyId``)."""
        return self.e164[1:]

    def masked(self) -> str:
        """For logs and replies: ``+256 77X XXX 456``-style, the last three digits kept."""
        return f"+256{self.national[:2]}****{self.national[-3:]}"


def prefixes_of(operator: str) -> list[str]:
    """The ranges of one operator, as a viewer dials them (``076``, ``077``…)."""
    return ["0" + p for p, op in sorted(PREFIXES.items()) if op == operator]


def normalise(raw: str) -> Msisdn:
    """``raw`` as an E.164 Ugandan number of a mobile money operator, else
    :class:`InvalidMsisdn` saying what is wrong."""
    text = _SEPARATORS.sub("", raw.strip())
    if not text:
        raise InvalidMsisdn("Enter the number that pays, such as 0772 123456")
    if text.startswith("+"):
        text = text[1:]
        if not text.startswith(COUNTRY_CODE):
            raise InvalidMsisdn("Only Ugandan numbers (+256) can pay by mobile money")
        text = text[len(COUNTRY_CODE) :]
    elif text.startswith("00"):
        text = text[2:]
        if not text.startswith(COUNTRY_CODE):
            raise InvalidMsisdn("Only Ugandan numbers (+256) can pay by mobile money")
        text = text[len(COUNTRY_CODE) :]
    elif text.startswith(COUNTRY_CODE) and len(text) == len(COUNTRY_CODE) + NSN_DIGITS:
        text = text[len(COUNTRY_CODE) :]
    elif text.startswith("0"):
        text = text[1:]
    if not text.isascii() or not text.isdigit():
        raise InvalidMsisdn("A phone number has digits only, such as 0772 123456")
    if len(text) != NSN_DIGITS:
        raise InvalidMsisdn(
            "A Ugandan number has 10 digits with the leading 0 (0772 123456) "
            "or 12 with 256 (256772123456)"
        )
    operator = PREFIXES.get(text[:2])
    if operator is None:
        raise InvalidMsisdn(
            f"0{text[:2]}… numbers have no MTN Mobile Money or Airtel Money; use an MTN "
            f"({', '.join(prefixes_of('mtn'))}) or Airtel ({', '.join(prefixes_of('airtel'))}) "
            "number"
        )
    return Msisdn(f"+{COUNTRY_CODE}{text}", operator)


def for_provider(raw: str, provider: str | None) -> Msisdn:
    """``raw`` normalised and checked against the chosen provider (None: the number's
    own operator); a number of the other operator is :class:`WrongOperator`."""
    number = normalise(raw)
    if provider is not None and number.operator != provider:
        raise WrongOperator(
            f"0{number.national[:2]}… is an {OPERATOR_NAMES[number.operator]} number; "
            f"{PROVIDER_NAMES[provider]} needs an {OPERATOR_NAMES[provider]} number "
            f"({', '.join(prefixes_of(provider))})"
        )
    return number
