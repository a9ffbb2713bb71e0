"""The request bodies DefaultModel holds: reserved before they are read, capped in total,
given back as soon as the app has read them (or the response ends)."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from ollama_default import ConfigError, DefaultModel
from ollama_default.middleware import MAX_BODY_BYTES, MAX_BUFFERED_BYTES
from ollama_default.wsgi import BufferBudget, HeldBody, Reservation

TARGET = "aya-expanse:8b-q8_0"
BODY = b'{"model":"llmodel","prompt":"' + b"x" * 80 + b'"}'  # 110 bytes
Environ = dict[str, Any]


class Unreadable(io.BytesIO):
    def read(self, *args: Any) -> bytes:
        raise AssertionError("the body was read")


class Started:
    """One request through the middleware, its response not yet consumed."""

    def __init__(self, middleware: DefaultModel, body: bytes, **environ: Any) -> None:
        self.statuses: list[str] = []
        self.headers: list[list[tuple[str, str]]] = []
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/api/generate",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            **environ,
        }
        self.app_iter = middleware(environ, self.start_response)

    def start_response(self, status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
        self.statuses.append(status)
        self.headers.append(headers)
        return lambda data: None

    def finish(self) -> bytes:
        try:
            return b"".join(self.app_iter)
        finally:
            getattr(self.app_iter, "close", lambda: None)()


def not_reading(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
    """An app that answers without reading the body (until its response is iterated)."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return iter([b"ok"])


def reading(environ: Environ, start_response: Callable[..., Any]) -> Iterator[bytes]:
    """An app that sends the body on while it is called, as the forwarder does."""
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return iter([b"ok"])


def test_a_body_is_held_until_the_response_ends_when_the_app_has_not_read_it() -> None:
    middleware = DefaultModel(not_reading, alias="llmodel", target=TARGET, max_body_bytes=200,
                              max_buffered_bytes=300)  # fmt: skip
    first = Started(middleware, BODY)
    assert middleware.buffered.held == len(BODY) + len(TARGET) - len("llmodel")
    second = Started(middleware, BODY)
    # A third body does not fit beside the two: refused unread, in the client's shape.
    third = Started(middleware, BODY, **{"wsgi.input": Unreadable()})
    assert third.statuses == ["503 Service Unavailable"]
    assert ("Retry-After", "5") in third.headers[0]
    assert "retry shortly" in json.loads(third.finish())["error"]
    first.finish()
    second.finish()
    assert middleware.buffered.held == 0
    assert Started(middleware, BODY).finish() == b"ok"
    assert middleware.buffered.held == 0


def test_a_body_the_app_has_sent_on_is_let_go_while_the_response_goes_on() -> None:
    middleware = DefaultModel(reading, alias="llmodel", target=TARGET, max_body_bytes=200,
                              max_buffered_bytes=200)  # fmt: skip
    streams = [Started(middleware, BODY) for _ in range(5)]  # five responses under way
    assert middleware.buffered.held == 0
    assert [s.finish() for s in streams] == [b"ok"] * 5


def test_a_chunked_body_is_reserved_as_it_arrives() -> None:
    middleware = DefaultModel(not_reading, alias="llmodel", target=TARGET, max_body_bytes=200,
                              max_buffered_bytes=200)  # fmt: skip
    held = Started(middleware, BODY)
    chunked = {"CONTENT_LENGTH": "", "wsgi.input_terminated": True}
    refused = Started(middleware, BODY, **chunked)
    assert refused.statuses == ["503 Service Unavailable"]
    held.finish()
    assert Started(middleware, BODY, **chunked).finish() == b"ok"
    assert middleware.buffered.held == 0


@pytest.mark.parametrize(
    "body",
    [b'{"model":', b"[1]", b'{"model":"llmodel"}' + b" " * 300],
    ids=["invalid", "not-object", "too-large"],
)
def test_a_refused_body_gives_its_reservation_back(body: bytes) -> None:
    middleware = DefaultModel(not_reading, alias="llmodel", target=TARGET, max_body_bytes=200,
                              max_buffered_bytes=200)  # fmt: skip
    for framing in ({}, {"CONTENT_LENGTH": "", "wsgi.input_terminated": True}):
        started = Started(middleware, body, **framing)
        assert started.statuses[0].startswith(("400 ", "413 "))
        assert middleware.buffered.held == 0


def test_an_app_that_raises_gives_the_reservation_back() -> None:
    def broken(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        raise RuntimeError("broken")

    middleware = DefaultModel(broken, alias="llmodel", target=TARGET)
    with pytest.raises(RuntimeError):
        Started(middleware, BODY)
    assert middleware.buffered.held == 0


def test_the_budget_is_shared_safely_between_threads() -> None:
    budget = BufferBudget(1000)
    refused: list[int] = []

    def take_and_give_back() -> None:
        for _ in range(2000):
            reservation = Reservation(budget)
            try:
                reservation.grow(10)
            except Exception:
                refused.append(1)
            reservation.release()

    threads = [threading.Thread(target=take_and_give_back) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert budget.held == 0
    assert not refused  # 8 x 10 bytes at most at once


def test_a_held_body_reads_like_an_input_and_lets_go_at_its_end() -> None:
    released: list[bool] = []
    body = HeldBody(b"one\ntwo\nthree", lambda: released.append(True))
    assert body.readline() == b"one\n"
    assert body.read(2) == b"tw"
    assert list(body) == [b"o\n", b"three"]
    assert released == [True]
    assert body.read() == b""
    body.close()
    assert released == [True]


def test_the_defaults_and_a_budget_smaller_than_one_body() -> None:
    assert MAX_BUFFERED_BYTES == 4 * MAX_BODY_BYTES == 256 * 1024 * 1024
    with pytest.raises(ConfigError, match=r"max_buffered_bytes \(10\) must be at least"):
        DefaultModel(not_reading, alias="a", target="b", max_body_bytes=20,
                     max_buffered_bytes=10)  # fmt: skip
