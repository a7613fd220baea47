"""Attribute lists (RFC 8216 §4.2): parsing, typed values, and value spans.

Tags such as EXT-X-KEY carry ``NAME=value`` pairs separated by commas. Quoted
strings may themselves contain commas and ``=``, so a naive ``split(",")`` is
wrong. Each parsed attribute remembers the span of its value in the original
line: the rewriter splices a new ``URI`` in place instead of re-serialising the
line, so unknown attributes and their order survive byte for byte.
"""

import math
import re
from dataclasses import dataclass
from typing import NamedTuple

from .errors import PlaylistError, excerpt

# §4.2: AttributeName is [A-Z0-9-]; a quoted-string has no CR, LF or '"'; an
# unquoted value (enumerated string, number, hex, resolution) has no '"', ',' or
# whitespace.
_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=(?:"([^"\r\n]*)"|([^",\s]+))')
_SEPARATOR = re.compile(r",[ \t]*")  # spaces after a comma are tolerated, nothing else
_DECIMAL_INTEGER = re.compile(r"[0-9]{1,20}")
_DECIMAL_FLOAT = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_HEX_SEQUENCE = re.compile(r"0[xX]((?:[0-9A-Fa-f]{2})+)")
_RESOLUTION = re.compile(r"([0-9]{1,9})x([0-9]{1,9})")
MAX_DECIMAL_INTEGER = 2**64 - 1  # §4.2 decimal-integer range


class Resolution(NamedTuple):
    """A decimal-resolution such as ``1920x1080`` (§4.2)."""

    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


class Attribute(NamedTuple):
    """One attribute; ``start``/``end`` delimit ``value`` in the parsed text.

    For a quoted string the span excludes the quotes, so ``text[start:end] == value``.
    """

    name: str
    value: str
    quoted: bool
    start: int
    end: int


def parse_decimal_integer(text: str) -> int:
    """Parse a decimal-integer (§4.2): ASCII digits only, 0 to 2**64-1."""
    if _DECIMAL_INTEGER.fullmatch(text) is None or int(text) > MAX_DECIMAL_INTEGER:
        raise PlaylistError(f"not a decimal-integer: {excerpt(text)}")
    return int(text)


def parse_decimal_float(text: str, *, signed: bool = False) -> float:
    """Parse a (signed-)decimal-floating-point (§4.2); no exponent, no inf/nan.

    Hundreds of digits would overflow a double to infinity: such a value is refused
    like any other that is not a number, so every parsed value is finite.
    """
    if _DECIMAL_FLOAT.fullmatch(text) is None or (not signed and text.startswith("-")):
        raise PlaylistError(f"not a decimal-floating-point: {excerpt(text)}")
    value = float(text)
    if not math.isfinite(value):
        raise PlaylistError(f"decimal-floating-point out of range: {excerpt(text)}")
    return value


def parse_hex_sequence(text: str) -> bytes:
    """Parse a hexadecimal-sequence such as an IV ``0x00…`` (§4.2) into bytes."""
    match = _HEX_SEQUENCE.fullmatch(text)
    if match is None:
        raise PlaylistError(f"not a hexadecimal-sequence: {excerpt(text)}")
    return bytes.fromhex(match.group(1))


def parse_resolution(text: str) -> Resolution:
    """Parse a decimal-resolution ``<width>x<height>`` (§4.2)."""
    match = _RESOLUTION.fullmatch(text)
    if match is None:
        raise PlaylistError(f"not a decimal-resolution: {excerpt(text)}")
    return Resolution(int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True, slots=True)
class AttributeList:
    """A parsed attribute list, in source order, with typed accessors.

    Accessors return ``None`` for an absent attribute and raise `PlaylistError`
    when the attribute is present with the wrong type (e.g. an unquoted URI).
    """

    items: tuple[Attribute, ...]

    def get(self, name: str) -> Attribute | None:
        """Return the attribute called ``name``, if present."""
        for item in self.items:
            if item.name == name:
                return item
        return None

    def __contains__(self, name: object) -> bool:
        return any(item.name == name for item in self.items)

    def names(self) -> tuple[str, ...]:
        """Return the attribute names in source order."""
        return tuple(item.name for item in self.items)

    def string(self, name: str) -> str | None:
        """Return a quoted-string value without its quotes."""
        item = self.get(name)
        if item is None:
            return None
        if not item.quoted:
            raise PlaylistError(f"{name} must be a quoted-string")
        return item.value

    def enum(self, name: str) -> str | None:
        """Return an enumerated-string value (unquoted)."""
        item = self.get(name)
        if item is None:
            return None
        if item.quoted:
            raise PlaylistError(f"{name} must not be quoted")
        return item.value

    def integer(self, name: str) -> int | None:
        """Return a decimal-integer value."""
        value = self.enum(name)
        return None if value is None else parse_decimal_integer(value)

    def decimal(self, name: str, *, signed: bool = False) -> float | None:
        """Return a (signed-)decimal-floating-point value."""
        value = self.enum(name)
        return None if value is None else parse_decimal_float(value, signed=signed)

    def hex(self, name: str) -> bytes | None:
        """Return a hexadecimal-sequence value as bytes."""
        value = self.enum(name)
        return None if value is None else parse_hex_sequence(value)

    def resolution(self, name: str) -> Resolution | None:
        """Return a decimal-resolution value."""
        value = self.enum(name)
        return None if value is None else parse_resolution(value)

    def span(self, name: str) -> tuple[int, int] | None:
        """Return the ``(start, end)`` of the value of ``name`` in the parsed text."""
        item = self.get(name)
        return None if item is None else (item.start, item.end)


_EMPTY = AttributeList(())


def parse_attribute_list(text: str, start: int = 0) -> AttributeList:
    """Parse the attribute list ``text[start:]`` (§4.2); spans index into ``text``.

    Passing the whole tag line with ``start`` just after its ``:`` yields spans
    that can be used to splice the line directly.
    """
    end = len(text)
    if start >= end:
        return _EMPTY
    items: list[Attribute] = []
    seen: set[str] = set()
    pos = start
    while True:
        match = _ATTRIBUTE.match(text, pos)
        if match is None:
            raise PlaylistError(f"malformed attribute list at column {pos}: {excerpt(text[pos:])}")
        name = match.group(1)
        if name in seen:
            # §4.2: an attribute-list MUST NOT contain the same AttributeName twice.
            raise PlaylistError(f"duplicate attribute {name}")
        seen.add(name)
        quoted = match.group(2) is not None
        group = 2 if quoted else 3
        items.append(
            Attribute(name, match.group(group), quoted, match.start(group), match.end(group))
        )
        pos = match.end()
        if pos == end:
            return AttributeList(tuple(items))
        separator = _SEPARATOR.match(text, pos)
        if separator is None or separator.end() == end:
            raise PlaylistError(f"malformed attribute list at column {pos}: {excerpt(text[pos:])}")
        pos = separator.end()


def parse_tag_attributes(line: str) -> AttributeList:
    """Parse the attribute list of a whole tag line; spans index into ``line``."""
    colon = line.find(":")
    return _EMPTY if colon < 0 else parse_attribute_list(line, colon + 1)
