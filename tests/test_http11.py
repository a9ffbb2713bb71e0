"""HTTP/1.1 to the upstream with bytes alone: the response reader fed however the network
split the reply, and request heads that cannot be split or smuggled."""

from __future__ import annotations

import socket

import httptools
import pytest

from ollama_default.proxy.http11 import (
    MAX_HEAD_BYTES,
    ResponseReader,
    UpstreamError,
    encode_request_head,
)
from ollama_default.proxy.pool import ConnectionPool, is_open

CHUNKED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
    b"3\r\nab\n\r\n3\r\ncd\n\r\n0\r\n\r\n"
)


def read(reply: bytes, *, method: str = "POST", size: int | None = None) -> ResponseReader:
    reader = ResponseReader(method)
    size = size or len(reply)
    for start in range(0, len(reply), size):
        reader.feed(reply[start : start + size])
    return reader


@pytest.mark.parametrize("size", [1, 2, 7, None], ids=["bytewise", "2", "7", "whole"])
def test_a_chunked_reply_reads_the_same_however_it_is_split(size: int | None) -> None:
    reader = read(CHUNKED, size=size)
    assert (reader.status, reader.complete, reader.reusable()) == ("200 OK", True, True)
    assert reader.take() == b"ab\ncd\n"
    assert reader.headers() == [("Content-Type", "application/x-ndjson")]  # no framing


def test_a_reply_in_progress_hands_on_what_has_arrived() -> None:
    reader = read(CHUNKED[: CHUNKED.index(b"3\r\ncd")])
    assert reader.head_complete and not reader.complete
    assert reader.take() == b"ab\n"
    assert reader.take() == b""


def test_an_interim_reply_is_skipped() -> None:
    reader = read(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
    assert (reader.status, reader.complete) == ("201 Created", True)


def test_a_head_reply_is_complete_with_its_head() -> None:
    reader = read(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", method="HEAD")
    assert (reader.complete, reader.reusable(), reader.pieces) == (True, True, [])


def test_bytes_after_a_head_reply_make_the_connection_unusable() -> None:
    reader = read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", method="HEAD")
    assert reader.complete and not reader.reusable()


def test_a_reply_without_framing_runs_to_the_close_and_is_not_reused() -> None:
    reader = read(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of")
    assert not reader.complete
    reader.feed(b" it")
    reader.feed_eof()
    assert (reader.complete, reader.take(), reader.reusable()) == (True, b"all of it", False)


@pytest.mark.parametrize(
    ("received", "message"),
    [
        (b"", "closed the connection without answering"),
        (b"HTTP/1.1 200 OK\r\nContent-", "closed the connection in the middle of its reply"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", "in the middle of its reply"),
        (CHUNKED[:-5], "closed the connection in the middle of its reply"),
    ],
    ids=["nothing", "half-a-head", "short-length", "unfinished-chunks"],
)
def test_a_close_before_the_end_is_an_upstream_error(received: bytes, message: str) -> None:
    reader = read(received) if received else ResponseReader("POST")
    with pytest.raises(UpstreamError, match=message):
        reader.feed_eof()


def test_an_unasked_protocol_switch_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError, match="switched protocols unasked"):
        read(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")


def test_what_is_not_http_is_a_parser_error() -> None:
    with pytest.raises(httptools.HttpParserError):
        read(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")


def test_a_head_without_end_is_refused_past_the_limit() -> None:
    reader = ResponseReader("GET")
    reader.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(UpstreamError, match=f"head over {MAX_HEAD_BYTES} bytes"):
        for _ in range(MAX_HEAD_BYTES // 1000 + 1):
            reader.feed(b"X-Filler: " + b"a" * 988 + b"\r\n")


def test_headers_a_connection_header_lists_are_dropped_with_it() -> None:
    reader = read(
        b"HTTP/1.1 200 OK\r\nConnection: X-Secret, keep-alive\r\nX-Secret: 1\r\n"
        b"Keep-Alive: timeout=5\r\nX-Kept: 2\r\nContent-Length: 0\r\n\r\n"
    )
    assert reader.headers() == [("X-Kept", "2"), ("Content-Length", "0")]


def test_connection_close_makes_a_reply_not_reusable() -> None:
    reader = read(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert reader.complete and not reader.reusable()


def test_a_request_head_is_one_line_per_header() -> None:
    head = encode_request_head("POST", "/api/chat", "localhost:11434", {"Content-Length": "2"})
    assert head == b"POST /api/chat HTTP/1.1\r\nHost: localhost:11434\r\nContent-Length: 2\r\n\r\n"


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00b"])
def test_a_request_head_that_a_value_would_split_is_refused(value: str) -> None:
    assert encode_request_head("GET", "/", "h", {"X-Note": value}) is None


def test_an_idle_connection_the_peer_closed_is_not_open() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert is_open(ours)
        theirs.close()
        assert not is_open(ours)


def test_a_pool_keeps_reusable_connections_up_to_its_limit() -> None:
    pool = ConnectionPool("http", "127.0.0.1", 9, 1.0, 1.0, max_idle=1)
    first, peer1 = socket.socketpair()
    second, peer2 = socket.socketpair()
    with peer1, peer2:
        pool.release(first, reusable=True)
        pool.release(second, reusable=True)  # over the limit: closed
        assert second.fileno() == -1
        assert pool.connection() is first
        pool.release(first, reusable=False)
        assert first.fileno() == -1
        pool.close()
