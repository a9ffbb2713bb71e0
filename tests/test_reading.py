"""ReadGuard: every request body has a total deadline, and a broken body is the client's
fault, answered in its dialect. In-process; ``test_hostile_reading.py`` runs the same
against ``ollama-default serve``."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from ollama_default import DefaultModel
from ollama_default.proxy.reading import ReadGuard

TARGET = "aya-expanse:8b-q8_0"
Environ = dict[str, Any]


class Clock:
    """Time that passes only when a read says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class SlowInput(io.RawIOBase):
    """A body that arrives ``piece`` bytes a read, each read taking ``seconds``."""

    def __init__(self, body: bytes, clock: Clock, seconds: float, piece: int = 10) -> None:
        self._body, self._clock, self._seconds, self._piece = body, clock, seconds, piece

    def read(self, size: int | None = -1) -> bytes:
        self._clock.now += self._seconds
        data, self._body = self._body[: self._piece], self._body[self._piece :]
        return data


class Reader:
    """An app that reads the whole body a piece at a time, as the forwarder streams one:
    up to its Content-Length, or to its end when chunked."""

    def __init__(self) -> None:
        self.read = b""

    def __call__(self, environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or -1)
        while length < 0 or len(self.read) < length:
            want = 10 if length < 0 else min(10, length - len(self.read))
            piece = environ["wsgi.input"].read(want)
            if not piece:
                break
            self.read += piece
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


def call(
    app: Any, body_input: Any, path: str = "/api/blobs/sha256:x", **environ: Any
) -> tuple[str, bytes]:
    statuses: list[str] = []
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "wsgi.input": body_input,
        **environ,
    }
    app_iter = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
    try:
        return statuses[0], b"".join(app_iter)
    finally:
        getattr(app_iter, "close", lambda: None)()


@pytest.fixture
def client_socket() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        yield ours, theirs


def guarded(app: Any, clock: Clock, timeout_s: float = 10, per_bytes: int = 100) -> ReadGuard:
    return ReadGuard(app, body_timeout_s=timeout_s, max_body_bytes=per_bytes, clock=clock)


def test_a_body_that_arrives_in_time_is_read_whole() -> None:
    clock, reader = Clock(), Reader()
    body = b"x" * 95
    status, _ = call(guarded(reader, clock), SlowInput(body, clock, 1.0), CONTENT_LENGTH="95")
    assert (status, reader.read) == ("200 OK", body)


def test_a_body_slower_than_its_deadline_gets_408_in_the_clients_dialect() -> None:
    clock, reader = Clock(), Reader()
    body = SlowInput(b"x" * 95, clock, 1.5)  # 10 reads of 1.5 s: 15 s for a 10 s deadline
    status, answer = call(guarded(reader, clock), body, "/v1/messages", CONTENT_LENGTH="95")
    assert status == "408 Request Timeout"
    assert json.loads(answer)["error"]["message"] == ("the request body did not arrive within 10 s")
    assert len(reader.read) < 95


def test_a_body_larger_than_the_limit_gets_more_time_for_each_limit_it_holds() -> None:
    # A blob streamed through: 250 bytes against 100 a share, so 3 x 10 s.
    clock, reader = Clock(), Reader()
    status, _ = call(guarded(reader, clock), SlowInput(b"x" * 250, clock, 1.1),
                     CONTENT_LENGTH="250")  # fmt: skip
    assert status == "200 OK"  # 25 reads x 1.1 s = 27.5 s: within 30 s
    clock, reader = Clock(), Reader()
    status, _ = call(guarded(reader, clock), SlowInput(b"x" * 250, clock, 1.3),
                     CONTENT_LENGTH="250")  # fmt: skip
    assert status == "408 Request Timeout"  # 32.5 s
    assert len(reader.read) < 250


def test_a_chunked_body_earns_more_time_as_it_arrives() -> None:
    # 10 s more for each 100 bytes arrived: 0.9 s for 10 bytes keeps ahead, 2 s does not.
    chunked = {"HTTP_TRANSFER_ENCODING": "chunked"}
    clock, reader = Clock(), Reader()
    status, _ = call(guarded(reader, clock), SlowInput(b"x" * 250, clock, 0.9), **chunked)
    assert (status, len(reader.read)) == ("200 OK", 250)
    clock, reader = Clock(), Reader()
    status, _ = call(guarded(reader, clock), SlowInput(b"x" * 250, clock, 2.0), **chunked)
    assert status == "408 Request Timeout"


def test_the_middleware_answers_a_late_body_in_its_endpoints_dialect(
    client_socket: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = client_socket
    theirs.sendall(b'{"model":"llmodel",')  # and no more
    app = ReadGuard(DefaultModel(Reader(), alias="llmodel", target=TARGET),
                    body_timeout_s=0.2, max_body_bytes=1000)  # fmt: skip
    with ours.makefile("rb") as stream:  # reads block until whole, as gunicorn's do
        status, answer = call(app, stream, "/v1/chat/completions", CONTENT_LENGTH="99",
                              **{"gunicorn.socket": ours})  # fmt: skip
    assert status == "408 Request Timeout"
    assert json.loads(answer)["error"] == {
        "message": "the request body did not arrive within 0.2 s",
        "type": "api_error",  # OpenAI's shape, as Ollama's OpenAI layer words a 408
        "param": None,
        "code": None,
    }


class Broken(io.RawIOBase):
    """The server's input failing as gunicorn's does on a malformed chunked body."""

    def read(self, size: int | None = -1) -> bytes:
        raise ValueError("Invalid chunk size: b'zz'")  # any exception of the server's


def test_a_body_the_server_cannot_read_is_a_400_not_an_upstream_failure() -> None:
    app = guarded(Reader(), Clock())
    status, answer = call(app, Broken(), HTTP_TRANSFER_ENCODING="chunked")
    assert status == "400 Bad Request"
    assert json.loads(answer) == {"error": "invalid request body: Invalid chunk size: b'zz'"}


def test_requests_without_a_body_are_not_touched() -> None:
    seen: list[Any] = []

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append(environ["wsgi.input"])
        start_response("200 OK", [])
        return []

    original = io.BytesIO()
    call(guarded(app, Clock()), original, REQUEST_METHOD="GET")
    assert seen == [original]


# The deadline bounds a read the client stalls in, not only the next one: over a real
# socket, as gunicorn's threaded workers give it (environ["gunicorn.socket"]).


def test_a_client_that_stops_sending_is_cut_at_the_deadline(
    client_socket: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = client_socket
    theirs.sendall(b"x" * 20)  # then nothing: 100 bytes promised
    reader = Reader()
    app = ReadGuard(reader, body_timeout_s=0.3, max_body_bytes=1000)
    with ours.makefile("rb", buffering=0) as stream:
        started = time.monotonic()
        status, _ = call(app, stream, CONTENT_LENGTH="100", **{"gunicorn.socket": ours})
        elapsed = time.monotonic() - started
    assert status == "408 Request Timeout"
    assert reader.read == b"x" * 20
    assert 0.25 < elapsed < 2
    assert ours.gettimeout() is None  # given back as it was


def test_a_client_that_sends_in_time_is_read_with_its_socket_as_it_was(
    client_socket: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = client_socket
    sender = threading.Thread(target=theirs.sendall, args=(b"y" * 100,))
    sender.start()
    reader = Reader()
    app = ReadGuard(reader, body_timeout_s=5, max_body_bytes=1000)
    with ours.makefile("rb", buffering=0) as stream:
        status, _ = call(app, stream, CONTENT_LENGTH="100", **{"gunicorn.socket": ours})
    sender.join(timeout=5)
    assert (status, reader.read) == ("200 OK", b"y" * 100)
    assert ours.gettimeout() is None
