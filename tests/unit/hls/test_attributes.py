"""Attribute lists (RFC 8216 §4.2): values, types, spans and malformed input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hls import AttributeList, PlaylistError, Resolution, parse_attribute_list
from hls.attributes import (
    parse_decimal_float,
    parse_decimal_integer,
    parse_hex_sequence,
    parse_resolution,
    parse_tag_attributes,
)


def test_quoted_strings_keep_commas_and_equals() -> None:
    attributes = parse_attribute_list(
        'BANDWIDTH=1100000,CODECS="avc1.64001e,mp4a.40.2",X-NOTE="a=b, c",RESOLUTION=854x480'
    )

    assert attributes.names() == ("BANDWIDTH", "CODECS", "X-NOTE", "RESOLUTION")
    assert attributes.integer("BANDWIDTH") == 1_100_000
    assert attributes.string("CODECS") == "avc1.64001e,mp4a.40.2"
    assert attributes.string("X-NOTE") == "a=b, c"
    assert attributes.resolution("RESOLUTION") == Resolution(854, 480)


def test_typed_values() -> None:
    attributes = parse_attribute_list(
        "METHOD=AES-128,IV=0x0000000000000000000000000000A001,TIME-OFFSET=-12.5,FRAME-RATE=25.000"
    )

    assert attributes.enum("METHOD") == "AES-128"
    assert attributes.hex("IV") == bytes.fromhex("0000000000000000000000000000A001")
    assert attributes.decimal("TIME-OFFSET", signed=True) == -12.5
    assert attributes.decimal("FRAME-RATE") == 25.0
    assert attributes.string("URI") is None
    assert "METHOD" in attributes
    assert "URI" not in attributes


def test_span_points_at_the_value_inside_the_quotes() -> None:
    line = '#EXT-X-KEY:METHOD=AES-128,URI="k0002.key",IV=0x01'
    attributes = parse_tag_attributes(line)

    span = attributes.span("URI")

    assert span is not None
    assert line[span[0] : span[1]] == "k0002.key"
    assert line[: span[0]] == '#EXT-X-KEY:METHOD=AES-128,URI="'
    assert line[span[1] :] == '",IV=0x01'


def test_tag_without_attributes_is_empty() -> None:
    assert parse_tag_attributes("#EXT-X-ENDLIST") == AttributeList(())
    assert parse_attribute_list("") == AttributeList(())


def test_spaces_after_commas_are_tolerated() -> None:
    attributes = parse_attribute_list('BANDWIDTH=1, CODECS="mp4a.40.2"')

    assert attributes.string("CODECS") == "mp4a.40.2"


@pytest.mark.parametrize(
    "text",
    [
        "BANDWIDTH",  # no value
        "BANDWIDTH=",  # empty unquoted value
        'URI="unterminated',
        'URI="a"b',  # junk after a quoted string
        "A=1,,B=2",
        "A=1,",  # trailing comma
        "lower=1",  # names are upper case
        "A=1,A=2",  # §4.2: duplicate names
        " A=1",
    ],
)
def test_malformed_lists_raise(text: str) -> None:
    with pytest.raises(PlaylistError):
        parse_attribute_list(text)


def test_wrong_types_raise() -> None:
    attributes = parse_attribute_list('URI=plain,BANDWIDTH="1",RESOLUTION=wide')

    with pytest.raises(PlaylistError):
        attributes.string("URI")
    with pytest.raises(PlaylistError):
        attributes.integer("BANDWIDTH")
    with pytest.raises(PlaylistError):
        attributes.resolution("RESOLUTION")


@pytest.mark.parametrize("text", ["", "-1", "1.0", "\uff11\uff12", "12" * 11, "1_000", "²"])
def test_decimal_integer_rejects(text: str) -> None:
    with pytest.raises(PlaylistError):
        parse_decimal_integer(text)


@pytest.mark.parametrize("text", ["", "nan", "inf", "1e3", "1_0.0", "-1", "1.2.3", "."])
def test_decimal_float_rejects(text: str) -> None:
    with pytest.raises(PlaylistError):
        parse_decimal_float(text)


def test_scalar_parsers_accept() -> None:
    assert parse_decimal_integer("18446744073709551615") == 2**64 - 1
    assert parse_decimal_float("6.006000") == pytest.approx(6.006)
    assert parse_decimal_float("-2.5", signed=True) == -2.5
    assert parse_hex_sequence("0XfF01") == b"\xff\x01"
    assert parse_resolution("1920x1080") == Resolution(1920, 1080)
    assert str(Resolution(1280, 720)) == "1280x720"


names = st.from_regex(r"[A-Z0-9-]{1,12}", fullmatch=True)
quoted = st.text(alphabet=st.characters(exclude_characters='"\r\n'), max_size=20)
unquoted = st.from_regex(r'[^",\s]{1,12}', fullmatch=True)


@given(
    st.lists(
        st.tuples(
            names, st.one_of(quoted.map(lambda v: (v, True)), unquoted.map(lambda v: (v, False)))
        ),
        max_size=8,
        unique_by=lambda item: item[0],
    )
)
def test_serialised_lists_parse_back_with_exact_spans(
    pairs: list[tuple[str, tuple[str, bool]]],
) -> None:
    text = ",".join(f'{n}="{v}"' if q else f"{n}={v}" for n, (v, q) in pairs)

    attributes = parse_attribute_list(text)

    assert [(a.name, a.value, a.quoted) for a in attributes.items] == [
        (n, v, q) for n, (v, q) in pairs
    ]
    for item in attributes.items:
        assert text[item.start : item.end] == item.value


@given(st.text(max_size=60))
def test_random_text_raises_only_playlist_error(text: str) -> None:
    try:
        attributes = parse_attribute_list(text)
    except PlaylistError:
        return
    for item in attributes.items:
        for accessor in (
            attributes.integer,
            attributes.decimal,
            attributes.hex,
            attributes.resolution,
            attributes.string,
        ):
            with contextlib.suppress(PlaylistError):
                accessor(item.name)
