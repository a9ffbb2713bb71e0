"""Fair limits: the caps hold exactly, in one process and across gunicorn's workers; the
refused get 429 or 503 with ``Retry-After`` in their client's dialect; a queued request is
served when a slot frees; every slot comes back when its response ends, its client leaves
or its worker dies."""

from __future__ import annotations

import contextlib
import json
import logging
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
from ollama_default.ops.access_log import AccessLog
from ollama_default.ops.auth import ApiKey
from ollama_default.ops.limits import Gate, Limits, LocalCounts, Refusal, is_counted
from ollama_default.proxy.compose import build_app
from ollama_default.proxy.config import Settings
from ollama_default.proxy.reload import Reloading, SettingsSource
from ollama_default.proxy.slots import SharedCounts, process_gate
from ollama_default.wsgi import API_KEY_KEY, ERROR_KEY, KEY_ID_KEY, REFUSED_KEY

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
            environ[API_KEY_KEY] = ApiKey(key, b"", max_concurrent=limit)
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


def test_the_access_log_names_the_limit_as_the_refusals_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    held = Held()
    app = AccessLog(Limits(held, max_concurrent=1, max_queue=0))
    first = start(app)[0]
    next(iter(first))
    caplog.set_level(logging.INFO, logger="ollama_default.access")

    start(app)

    (record,) = [record for record in caplog.records if "503" in record.getMessage()]
    assert record.levelno == logging.WARNING
    assert record.fields["refused"] == "limit"  # type: ignore[attr-defined]
    assert " refused=limit error=" in record.getMessage()
    held.release.set()
    finish(first)


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
        # Hold the slot until three have been held at once (whoever gets in first waits
        # for the others), so that the cap is surely reached, whatever the scheduling.
        wait_until(lambda: occupancy[1] >= 3)
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


# --------------------------------------------------------------------------------------
# Through a real gunicorn with two workers

#: serve's gunicorn configuration module: two gevent workers, the shared counts made in
#: the master, a dead worker's slots reclaimed.
HOOKED = ("-c", "python:ollama_default.proxy.gunicorn")
SERVE = [sys.executable, "-m", "ollama_default.proxy.cli", "serve", "--workers", "2"]
CAP, QUEUE = 3, 2


@pytest.fixture(scope="module")
def fake() -> FakeOllama:
    return FakeOllama()


@pytest.fixture(scope="module")
def fake_url(fake: FakeOllama) -> Iterator[str]:
    with serve(fake) as url:
        yield url


def limit_settings(fake_url: str) -> dict[str, str]:
    return {
        "OLLAMA_DEFAULT_UPSTREAM": fake_url,
        "OLLAMA_DEFAULT_ALIAS": ALIAS,
        "OLLAMA_DEFAULT_TARGET": TARGET,
        "OLLAMA_DEFAULT_MAX_CONCURRENT": str(CAP),
        "OLLAMA_DEFAULT_MAX_QUEUE": str(QUEUE),
        "OLLAMA_DEFAULT_QUEUE_TIMEOUT_S": str(TIMEOUT_S),
    }


@pytest.fixture(scope="module")
def limited(fake_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornProcess]:
    log_dir = tmp_path_factory.mktemp("limited")
    with run_gunicorn(limit_settings(fake_url), log_dir=log_dir, options=HOOKED) as server:
        yield server
    assert "Traceback" not in server.stderr()


@pytest.fixture
def hold(fake: FakeOllama) -> Iterator[threading.Event]:
    """Hold every generation after its first token until the test sets the event; on the
    way out everything is released and the upstream idle again."""
    event = threading.Event()
    fake.hold = event
    fake.reset_max_in_flight()
    try:
        yield event
    finally:
        event.set()
        assert fake.wait_for_in_flight(lambda count: count == 0, TIMEOUT_S)
        fake.hold = None


def post(base_url: str, path: str, document: dict[str, Any]) -> tuple[int, Any, list[str]]:
    """POST and read the whole answer: (status, headers, its lines)."""
    with requests.post(f"{base_url}{path}", json=document, timeout=TIMEOUT_S * 2) as response:
        lines = [line for line in response.text.splitlines() if line]
        return response.status_code, response.headers, lines


def open_stream(port: int, path: str = "/api/chat") -> socket.socket:
    """A streamed chat over a raw socket, returned once its first record has arrived."""
    body = json.dumps({**CHAT, "stream": True}).encode()
    client = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
    client.sendall(
        f"POST {path} HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    received = b""
    while b'"done":false' not in received:
        data = client.recv(65536)
        assert data, f"the stream ended before its first record: {received!r}"
        received += data
    assert received.startswith(b"HTTP/1.1 200 ")
    return client


def finish_stream(client: socket.socket) -> bytes:
    """Read a stream from :func:`open_stream` to its end (the last chunk), then close it."""
    with client:
        received = b""
        while not received.endswith(b"0\r\n\r\n"):
            data = client.recv(65536)
            assert data, f"the stream was cut short: {received!r}"
            received += data
    return received


def chats_seen(fake: FakeOllama) -> int:
    return sum(1 for request in fake.requests if request.path == "/api/chat")


def wait_done(futures: list[Future[Any]], count: int) -> list[Future[Any]]:
    assert wait_until(lambda: sum(future.done() for future in futures) >= count)
    return [future for future in futures if future.done()]


def test_under_a_burst_of_streams_the_cap_holds_the_queue_waits_and_the_rest_get_503(
    limited: GunicornProcess, fake: FakeOllama, hold: threading.Event
) -> None:
    document = {**CHAT, "stream": True}
    with ThreadPoolExecutor(8) as pool:
        burst = [pool.submit(post, limited.base_url, "/api/chat", document) for _ in range(8)]
        # CAP reach the upstream and are held there, QUEUE wait, the rest are refused.
        assert fake.wait_for_in_flight(lambda count: count == CAP, TIMEOUT_S)
        refused = wait_done(burst, 8 - CAP - QUEUE)
        for future in refused:
            status, headers, lines = future.result()
            assert (status, headers["Retry-After"]) == (503, "5")
            assert "as many requests under way as it may (3) and the queue is full" in (
                error_message("/api/chat", json.loads(lines[0]), 503)
            )
        # A listing is not held back by a full cap (and is one more in flight upstream).
        assert requests.get(f"{limited.base_url}/api/tags", timeout=TIMEOUT_S).ok
        assert (fake.in_flight, len(refused)) == (CAP, 8 - CAP - QUEUE)
        fake.reset_max_in_flight()
        assert "refused=limit" in limited.log_line('"POST /api/chat" 503')

        hold.set()  # the held streams end; the queued are served in their slots
        answers = [future.result(TIMEOUT_S) for future in burst if future not in refused]
    assert [status for status, _, _ in answers] == [200] * (CAP + QUEUE)
    assert all(json.loads(lines[-1])["done"] for _, _, lines in answers)
    assert fake.max_in_flight == CAP


def fill_queue(pool: ThreadPoolExecutor, base_url: str) -> list[Future[Any]]:
    """With the cap held, send one request more than the queue holds: once one is refused,
    the others are certainly waiting, and the queue is full. Return those waiting."""
    sent = [pool.submit(post, base_url, "/api/chat", {**CHAT}) for _ in range(QUEUE + 1)]
    (refused,) = wait_done(sent, 1)
    assert refused.result()[0] == 503
    return [future for future in sent if future is not refused]


@pytest.mark.parametrize(("path", "document"), DIALECTS)
def test_a_refusal_speaks_the_dialect_of_its_path(
    limited: GunicornProcess, fake: FakeOllama, hold: threading.Event, path: str, document: Any
) -> None:
    streams = [open_stream(limited.port) for _ in range(CAP)]
    assert fake.wait_for_in_flight(lambda count: count == CAP, TIMEOUT_S)
    with ThreadPoolExecutor(QUEUE + 1) as pool:
        queued = fill_queue(pool, limited.base_url)

        status, headers, lines = post(limited.base_url, path, document)

        assert (status, headers["Retry-After"]) == (503, "5")
        message = error_message(path, json.loads(lines[0]), 503)
        assert message.startswith("the server has as many requests under way as it may (3)")
        hold.set()
        for stream in streams:
            assert b'"done":true' in finish_stream(stream)
        assert [future.result(TIMEOUT_S)[0] for future in queued] == [200] * QUEUE
    assert fake.max_in_flight == CAP


def test_the_official_clients_get_the_refusal_as_their_own_error(
    limited: GunicornProcess, fake: FakeOllama, hold: threading.Event
) -> None:
    streams = [open_stream(limited.port) for _ in range(CAP)]
    assert fake.wait_for_in_flight(lambda count: count == CAP, TIMEOUT_S)
    messages = [{"role": "user", "content": "hi"}]
    with ThreadPoolExecutor(QUEUE + 1) as pool:
        queued = fill_queue(pool, limited.base_url)
        with (
            openai.OpenAI(
                base_url=f"{limited.base_url}/v1", api_key="x", max_retries=0, timeout=TIMEOUT_S
            ) as client,
            pytest.raises(openai.APIStatusError) as openai_error,
        ):
            client.chat.completions.create(model=ALIAS, messages=messages)  # type: ignore[arg-type]
        with (
            anthropic.Anthropic(
                base_url=limited.base_url, api_key="x", max_retries=0, timeout=TIMEOUT_S
            ) as client,
            pytest.raises(anthropic.APIStatusError) as anthropic_error,
        ):
            client.messages.create(model=ALIAS, max_tokens=9, messages=messages)  # type: ignore[arg-type]
        hold.set()
        for stream in streams:
            assert b'"done":true' in finish_stream(stream)
        assert [future.result(TIMEOUT_S)[0] for future in queued] == [200] * QUEUE
    for error in (openai_error.value, anthropic_error.value):
        assert error.status_code == 503
        assert error.response.headers["Retry-After"] == "5"
        assert "as many requests under way as it may (3)" in error.message


def test_a_client_that_leaves_mid_stream_frees_its_slot_for_the_queue(
    limited: GunicornProcess, fake: FakeOllama, hold: threading.Event
) -> None:
    streams = [open_stream(limited.port) for _ in range(CAP)]
    assert fake.wait_for_in_flight(lambda count: count == CAP, TIMEOUT_S)
    seen = chats_seen(fake)
    with ThreadPoolExecutor(QUEUE + 1) as pool:
        queued = fill_queue(pool, limited.base_url)
        streams.pop().close()  # one client hangs up mid-stream

        # Its slot goes to one of the waiting requests, which reaches the upstream.
        assert wait_until(lambda: chats_seen(fake) == seen + 1)
        assert fake.wait_for_in_flight(lambda count: count == CAP, TIMEOUT_S)
        assert not any(future.done() for future in queued)  # held upstream, or waiting
        # The proxy gave the slot back as it closed the upstream connection; the upstream
        # notices a moment later (Go, when its connection's read sees the end), so it
        # may briefly count the next request with the one that is going.
        assert fake.max_in_flight <= CAP + 1
        fake.reset_max_in_flight()
        hold.set()  # the rest end as streams do; the last waiting request has a slot
        for stream in streams:
            assert b'"done":true' in finish_stream(stream)
        assert [future.result(TIMEOUT_S)[0] for future in queued] == [200] * QUEUE
    assert fake.max_in_flight == CAP
    # Every slot is back: the whole cap reaches the upstream again at once.
    assert fake.wait_for_in_flight(lambda count: count == 0, TIMEOUT_S)
    fake.hold = again = threading.Event()
    streams = []
    try:
        streams = [open_stream(limited.port) for _ in range(CAP)]
        assert fake.wait_for_in_flight(lambda count: count == CAP, TIMEOUT_S)
    finally:
        again.set()
        for stream in streams:
            finish_stream(stream)


def worker_pids(master: int) -> list[int]:
    """The processes whose parent is ``master`` (from /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == master:
                    children.append(int(entry.name))
    return children


def test_the_slots_of_a_killed_worker_are_reclaimed(
    fake_url: str, fake: FakeOllama, hold: threading.Event, tmp_path: Path
) -> None:
    server = start_server(SERVE, limit_settings(fake_url), log_dir=tmp_path)
    try:
        server.wait_until_ready()
        streams = [open_stream(server.port) for _ in range(CAP)]
        assert fake.wait_for_in_flight(lambda count: count == CAP, TIMEOUT_S)
        workers = worker_pids(server.process.pid)
        assert len(workers) == 2
        for pid in workers:
            os.kill(pid, signal.SIGKILL)  # no close(), no finally: the slots stay taken
        for stream in streams:
            stream.close()
        assert fake.wait_for_in_flight(lambda count: count == 0, TIMEOUT_S)
        server.log_line("request slot(s)")
        assert wait_until(lambda: len(set(worker_pids(server.process.pid)) - set(workers)) == 2)
        server.wait_until_ready()

        # Every slot is free again: the whole cap reaches the upstream at once.
        streams = [open_stream(server.port) for _ in range(CAP)]
        assert fake.wait_for_in_flight(lambda count: count == CAP, TIMEOUT_S)
        hold.set()
        for stream in streams:
            finish_stream(stream)
    finally:
        server.stop()
    stderr = server.stderr()
    assert "exited holding" in stderr
    assert "Traceback" not in stderr


# --------------------------------------------------------------------------------------
# With the hot reload: new caps, the same slots


def test_a_reload_changes_the_caps_and_the_streams_under_way_still_count(
    tmp_path: Path,
) -> None:
    config = tmp_path / "ollama-default.toml"

    def configure(cap: int) -> None:
        temporary = config.with_suffix(".tmp")
        temporary.write_text(f'max_concurrent = {cap}\nmax_queue = 0\n[aliases]\nllmodel = "m"\n')
        os.replace(temporary, config)

    held = Held()
    configure(2)
    app = Reloading(
        lambda loaded, pool: build_app(loaded.settings, backend=held),
        SettingsSource({}, config_file=str(config)),
        poll_interval_s=3600.0,  # never ticks: the test calls check()
        uses_pool=False,
    )
    unknown = "/api/not-yet-known"  # counted, and passed through by DefaultModel
    try:
        old = [start(app, unknown)[0] for _ in range(2)]
        for body in old:
            next(iter(body))
        assert start(app, unknown)[1][0].startswith("503 ")

        configure(3)
        assert app.check()
        third = start(app, unknown)[0]  # the new cap, counting the old graph's streams
        assert start(app, unknown)[1][0].startswith("503 ")

        configure(1)
        assert app.check()
        held.release.set()
        for body in [*old, third]:
            finish(body)
        assert finish(start(app, unknown)[0]).count(b"\n") == 2
        assert process_gate().totals() == (0, 0)
    finally:
        held.release.set()
        app.stop()


def test_through_the_proxys_composition_a_keys_cap_comes_after_its_check() -> None:
    held = Held()
    alice, bob = "alice-0123456789abcdef", "bob-0123456789abcdefgh"
    settings = Settings(
        aliases={ALIAS: TARGET}, api_keys=(alice, bob), max_concurrent_per_key=1, max_queue=0
    )
    app = build_app(settings, backend=held)
    unknown = "/api/not-yet-known"  # counted, and passed through by DefaultModel

    def call(key: str | None) -> tuple[Iterable[bytes], str, dict[str, Any]]:
        environ: dict[str, Any] = {"REQUEST_METHOD": "POST", "PATH_INFO": unknown}
        if key is not None:
            environ["HTTP_AUTHORIZATION"] = f"Bearer {key}"
        head: list[str] = []
        body = app(environ, lambda status, headers, exc_info=None: head.append(status))
        return body, head[0], environ

    first, status, _ = call(alice)
    assert status.startswith("200 ")
    next(iter(first))
    _, status, environ = call(alice)
    assert status.startswith("429 ") and environ[REFUSED_KEY] == "limit"
    other, status, _ = call(bob)  # another key has its own slots
    assert status.startswith("200 ")
    _, status, environ = call(None)  # no key: refused by the keys' check, not the limits
    assert status.startswith("401 ") and environ[REFUSED_KEY] == "auth"
    held.release.set()
    for body in (first, other):
        finish(body)
    assert process_gate().totals() == (0, 0)
