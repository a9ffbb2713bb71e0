"""Framing: records come out as soon as they are complete, however the bytes arrive."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ollama_default.core.framing import NdjsonSplitter, SseSplitter


def test_ndjson_lines_come_out_as_soon_as_they_end() -> None:
    splitter = NdjsonSplitter()
    assert splitter.feed(b'{"a":1}\n') == [b'{"a":1}\n']
    assert splitter.feed(b'{"b":') == []
    assert splitter.feed(b'2}\n{"c":3}\n{"d"') == [b'{"b":2}\n', b'{"c":3}\n']
    assert splitter.flush() == b'{"d"'


@pytest.mark.parametrize("end", [b"\n\n", b"\r\n\r\n", b"\r\r", b"\n\r\n", b"\r\n\n"], ids=repr)
def test_sse_events_end_at_any_blank_line_the_spec_allows(end: bytes) -> None:
    splitter = SseSplitter()
    event = b"event: x\ndata: {}" + end
    assert splitter.feed(event + b"data: [DONE]") == [event]
    assert splitter.feed(end) == [b"data: [DONE]" + end]


def test_a_carriage_return_ends_an_event_without_waiting_for_a_line_feed() -> None:
    splitter = SseSplitter()
    assert splitter.feed(b"data: 1\r\n\r") == [b"data: 1\r\n\r"]
    assert splitter.feed(b"\ndata: 2\r\n\r\n") == [b"\ndata: 2\r\n\r\n"]


def test_a_record_over_the_limit_is_relayed_raw_until_it_ends() -> None:
    splitter = NdjsonSplitter(max_record_bytes=8)
    assert splitter.feed(b"12345") == []
    pieces = splitter.feed(b"67890")
    assert [type(p) for p in pieces] == [memoryview]
    assert bytes(pieces[0]) == b"1234567890"
    pieces = splitter.feed(b"abc\n{}\n")
    assert [bytes(p) for p in pieces] == [b"abc\n", b"{}\n"]
    assert [type(p) for p in pieces] == [memoryview, bytes]  # back to parsing after "\n"


@st.composite
def framed(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    body = draw(st.binary(max_size=300).map(lambda b: b.replace(b"\x00", b"\n")))
    cuts = sorted({0, len(body), *draw(st.lists(st.integers(0, len(body)), max_size=10))})
    return body, [body[a:b] for a, b in itertools.pairwise(cuts)]


@pytest.mark.parametrize("splitter_type", [NdjsonSplitter, SseSplitter])
@given(case=framed(), limit=st.integers(1, 64))
def test_nothing_is_lost_or_reordered(
    splitter_type: type[NdjsonSplitter], case: tuple[bytes, list[bytes]], limit: int
) -> None:
    body, chunks = case
    splitter = splitter_type(max_record_bytes=limit)
    out = b"".join(b"".join(splitter.feed(chunk)) for chunk in chunks) + splitter.flush()
    assert out == body


@given(case=framed())
def test_every_complete_record_comes_out_before_more_bytes_arrive(
    case: tuple[bytes, list[bytes]],
) -> None:
    _body, chunks = case
    splitter = NdjsonSplitter()
    seen = b""
    out = b""
    for chunk in chunks:
        seen += chunk
        out += b"".join(splitter.feed(chunk))
        assert out == seen[: seen.rfind(b"\n") + 1]
