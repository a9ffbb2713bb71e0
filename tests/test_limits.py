"""Fair limits: the caps hold exactly, in one process and across gunicorn's workers; the
refused get 429 or 503 with ``Retry-After`` in their client's dialect; a queued request is
served when a slot frees; every slot comes back when its response ends, its client leaves
or its worker dies."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anthropic
import openai
import pytest
import requests
import webtest
from fake_ollama import FakeOllama, serve
from gunicorn_process import GunicornProcess, run_gunicorn, start_server

from ollama_default.core.errors import ConfigError
from ollama_default.ops.limits import Gate, LocalCounts, Limits, Refusal, is_counted
from ollama_default.proxy.slots import SharedCounts
from ollama_default.wsgi import ERROR_KEY, KEY_ID_KEY, KEY_LIMIT_KEY, REFUSED_KEY

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

TIMEOUT_S = 10.0
ALIAS, TARGET = "llmodel", "aya-expanse:8b-q8_0"
CHAT = {"model": ALIAS, "messages": [{"role": "user", "content": "hi"}]}
#: One request per dialect, with what its error body looks like.
DIALECTS = [
    pytest.param("/api/chat", {**CHAT, "stream": True}, id="ollama"),
    pytest.param("/v1/chat/completions", {**CHAT, "stream": True}, id="openai"),
    pytest.param("/v1/messages", {**CHAT, "max_tokens": 9, "stream": True}, id="anthropic"),
]


def error_message(path: str, document: Any, status: int) -> str:
    """The message of an error body, checking it has the shape of its path's dialect."""
    if path.startswith("/v1/messages"):
        kind = {429: "rate_limit_error", 503: "overloaded_error"}[status]
        assert document["type"] == "error" and document["error"]["type"] == kind
        return str(document["error"]["message"])
    if path.startswith("/v1/"):
        assert set(document["error"]) == {"message", "type", "param", "code"}
        return str(document["error"]["message"])
    assert set(document) == {"error"}
    return str(document["error"])


# --------------------------------------------------------------------------------------
# Which requests count


@pytest.mark.parametrize(
    ("method", "path", "counted"),
    [
        ("POST", "/api/chat", True),
        ("POST", "/api/generate", True),
        ("POST", "/v1/chat/completions", True),
        ("POST", "/v1/messages", True),
        ("POST", "/api/embed", True),
        ("POST", "/api/pull", True),
        ("DELETE", "/api/delete", True),
        ("POST", "/api/blobs/sha256:aa", True),
        ("POST", "/api/not-yet-known", True),
        ("GET", "/api/tags", False),
        ("HEAD", "/api/tags", False),
        ("GET", "/api/ps", False),
        ("GET", "/v1/models", False),
        ("GET", "/api/version", False),
        ("POST", "/api/show", False),
        ("HEAD", "/api/blobs/sha256:aa", False),
        ("OPTIONS", "/api/chat", False),
        ("POST", "/-/status", False),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_what_makes_the_upstream_work_counts_and_reads_do_not(
    method: str, path: str, counted: bool
) -> None:
    assert is_counted(method, path) is counted


# --------------------------------------------------------------------------------------
# In one process


class Held:
    """A WSGI app whose responses stream until released; counts them under way."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.under_way = 0
        self.most = 0
        self.lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        with self.lock:
            self.under_way += 1
            self.most = max(self.most, self.under_way)
        start_response("200 OK", [("Content-Type", "application/x-ndjson")])
        return self._body()

    def _body(self) -> Iterator[bytes]:
        try:
            yield b'{"done":false}\n'
            assert self.release.wait(TIMEOUT_S)
            yield b'{"done":true}\n'
        finally:
            with self.lock:
                self.under_way -= 1


def with_key(app: WSGIApplication, key: str | None, limit: int | None = None) -> WSGIApplication:
    """What the keys' layer leaves in environ for the limits."""

    def keyed(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if key is not None:
            environ[KEY_ID_KEY] = key
        if limit is not None:
            environ[KEY_LIMIT_KEY] = limit
        return app(environ, start_response)

    return keyed


def start(
    app: WSGIApplication, path: str = "/api/chat"
) -> tuple[Iterable[bytes], list[Any], dict[str, Any]]:
    """Call ``app`` as a server would, without iterating: (body, [status, headers], environ)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "wsgi.multiprocess": False,
    }
    head: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        head[:] = [status, headers]
        return lambda data: None

    return app(environ, start_response), head, environ


def finish(body: Iterable[bytes]) -> bytes:
    """Send the body whole and close it, as a server does."""
    try:
        return b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


def test_the_total_cap_holds_and_a_full_queue_refuses_with_503() -> None:
    held = Held()
    app = Limits(held, max_concurrent=2, max_queue=0)
    bodies = [start(app)[0] for _ in range(2)]
    for body in bodies:
        next(iter(body))  # both stream

    _, (status, headers), environ = start(app)

    assert status.startswith("503 ")
    assert ("Retry-After", "5") in headers
    assert environ[REFUSED_KEY] == "limit"
    assert "as many requests under way as it may (2)" in environ[ERROR_KEY]
    assert held.under_way == 2
    held.release.set()
    for body in bodies:
        finish(body)
    assert held.most == 2
    assert finish(start(app)[0]) == b'{"done":false}\n{"done":true}\n'  # free again


@pytest.mark.parametrize(("path", "document"), DIALECTS)
def test_a_key_at_its_cap_gets_429_in_its_dialect_and_others_go_on(
    path: str, document: dict[str, Any]
) -> None:
    held = Held()
    limits = Limits(held, max_concurrent=10, max_concurrent_per_key=1, max_queue=0)
    alice = webtest.TestApp(with_key(limits, "alice"), lint=False)
    first = start(with_key(limits, "alice"), path)[0]
    next(iter(first))

    refused = alice.post_json(path, document, status=429)
    other = start(with_key(limits, "bob"), path)[0]  # another key is not held back
    nokey = start(with_key(limits, None), path)[0]  # nor a request without one

    assert refused.headers["Retry-After"] == "5"
    message = error_message(path, refused.json, 429)
    assert message.startswith("this API key has as many requests under way as it may (1)")
    held.release.set()
    # The first had sent its first line already.
    assert [finish(body).count(b"\n") for body in (first, other, nokey)] == [1, 2, 2]


def test_a_keys_own_cap_wins_over_the_setting() -> None:
    held = Held()
    limits = Limits(held, max_concurrent_per_key=1, max_queue=0)
    bodies = [start(with_key(limits, "team", limit=3))[0] for _ in range(3)]

    _, (status, _), _ = start(with_key(limits, "team", limit=3))

    assert status.startswith("429 ")
    assert held.under_way == 3
    held.release.set()
    for body in bodies:
        finish(body)


def test_a_queued_request_gets_the_slot_a_response_frees_before_a_newcomer() -> None:
    held = Held()
    gate = Gate(LocalCounts())
    app = Limits(held, max_concurrent=1, max_queue=1, queue_timeout_s=TIMEOUT_S, gate=gate)
    first = start(app)[0]
    next(iter(first))
    with ThreadPoolExecutor(1) as pool:
        queued = pool.submit(start, app)
        assert wait_until(lambda: gate.totals() == (1, 1))
        # The queue is full: a newcomer is refused, not let in before the one waiting.
        _, (status, _), _ = start(app)
        assert status.startswith("503 ")
        held.release.set()
        finish(first)  # its slot goes to the waiting request
        body, (status, _), _ = queued.result(TIMEOUT_S)
    assert status.startswith("200 ")
    assert finish(body).count(b"\n") == 2
    assert held.most == 1
    assert gate.totals() == (0, 0)


def test_a_wait_that_runs_out_is_refused_and_leaves_the_queue() -> None:
    held = Held()
    gate = Gate(LocalCounts(), poll_s=0.01)
    app = Limits(held, max_concurrent=1, queue_timeout_s=0.05, gate=gate)
    first = start(app)[0]
    next(iter(first))

    _, (status, headers), environ = start(app)

    assert status.startswith("503 ")
    assert ("Retry-After", "5") in headers
    assert "no slot came free within 0.05 s" in environ[ERROR_KEY]
    assert gate.totals() == (1, 0)
    held.release.set()
    finish(first)
    assert gate.totals() == (0, 0)


def test_a_slot_comes_back_when_the_app_fails_or_its_close_does() -> None:
    gate = Gate()

    def failing(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        raise RuntimeError("boom")

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"x"

        def close(self) -> None:
            raise RuntimeError("close failed")

    def closing_badly(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return Body()

    with pytest.raises(RuntimeError, match="boom"):
        start(Limits(failing, max_concurrent=1, gate=gate))
    body = start(Limits(closing_badly, max_concurrent=1, gate=gate))[0]
    with pytest.raises(RuntimeError, match="close failed"):
        finish(body)
    assert gate.totals() == (0, 0)


def test_reads_and_our_own_paths_pass_a_full_cap() -> None:
    held = Held()
    app = Limits(held, max_concurrent=1, max_queue=0)
    first = start(app)[0]
    next(iter(first))
    for path, method in [("/api/tags", "GET"), ("/api/show", "POST"), ("/-/status", "GET")]:
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path}
        body = app(environ, lambda status, headers, exc_info=None: None)
        assert next(iter(body)) == b'{"done":false}\n'
    held.release.set()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_concurrent": -1}, "max_concurrent must be a whole number (0 for none), not -1"),
        ({"max_concurrent_per_key": True}, "max_concurrent_per_key must be a whole number"),
        ({"max_queue": -2}, "max_queue must be a whole number, 0 or more, not -2"),
        ({"queue_timeout_s": 0}, "queue_timeout_s must be a positive number of seconds"),
    ],
    ids=["max_concurrent", "per_key", "max_queue", "queue_timeout_s"],
)
def test_the_middleware_refuses_a_bad_option_as_the_settings_do(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Limits(Held(), **options)


def test_the_queue_is_twice_the_cap_by_default_and_no_cap_is_none() -> None:
    assert Limits(Held(), max_concurrent=3).max_queue == 6
    assert Limits(Held(), max_concurrent=0).max_concurrent is None
    assert Limits(Held(), max_concurrent=3, max_queue=0).max_queue == 0


# --------------------------------------------------------------------------------------
# Across processes


def wait_until(condition: Callable[[], bool], timeout_s: float = TIMEOUT_S) -> bool:
    """Poll ``condition`` until it holds or ``timeout_s`` has passed; whether it held."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _contend(counts: SharedCounts, occupancy: Any, rounds: int) -> None:
    """In a forked child: take a slot, note how many hold one, give it back; often."""
    gate = Gate(counts, poll_s=0.001)
    for _ in range(rounds):
        gate.enter(None, total_cap=3, key_cap=None, max_queue=100, timeout_s=TIMEOUT_S)
        with occupancy.get_lock():
            occupancy[0] += 1
            occupancy[1] = max(occupancy[1], occupancy[0])
        time.sleep(0)
        with occupancy.get_lock():
            occupancy[0] -= 1
        gate.leave(None)


def test_the_shared_counts_hold_a_cap_exactly_across_processes() -> None:
    counts = SharedCounts()
    occupancy = multiprocessing.get_context("fork").Array("i", [0, 0])
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_contend, args=(counts, occupancy, 300)) for _ in range(6)]
    for child in children:
        child.start()
    for child in children:
        child.join(TIMEOUT_S * 3)
    assert [child.exitcode for child in children] == [0] * 6
    assert occupancy[1] == 3  # reached, never passed
    assert counts.totals() == (0, 0)


def _hold_and_die(counts: SharedCounts) -> None:
    gate = Gate(counts)
    for key in ("alice", "alice", None):
        gate.enter(key, total_cap=10, key_cap=5 if key else None, max_queue=0, timeout_s=1)
    os._exit(0)  # as if killed: nothing given back


def test_a_dead_processs_slots_are_reclaimed() -> None:
    counts = SharedCounts()
    child = multiprocessing.get_context("fork").Process(target=_hold_and_die, args=(counts,))
    child.start()
    child.join(TIMEOUT_S)
    assert counts.totals() == (3, 0)
    with counts.locked() as tally:
        assert tally.held("alice") == 2

    assert counts.reclaim(child.pid or 0) == (3, 0)

    assert counts.totals() == (0, 0)
    with counts.locked() as tally:
        assert tally.held("alice") == 0


def test_the_shared_counts_refuse_more_keys_at_once_than_they_track() -> None:
    counts = SharedCounts()
    gate = Gate(counts)
    from ollama_default.proxy.slots import MAX_KEYS

    for index in range(MAX_KEYS):
        gate.enter(f"k{index}", total_cap=None, key_cap=1, max_queue=0, timeout_s=1)
    with pytest.raises(Refusal):
        gate.enter("one too many", total_cap=None, key_cap=1, max_queue=0, timeout_s=1)
    for index in range(MAX_KEYS):
        gate.leave(f"k{index}")
    assert counts.totals() == (0, 0)
    gate.enter("one too many", total_cap=None, key_cap=1, max_queue=0, timeout_s=1)
    gate.leave("one too many")
