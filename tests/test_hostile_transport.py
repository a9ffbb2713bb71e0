"""Hostile and careless clients at the transport level, against the proxy as users run it.

``ollama-default serve`` (gunicorn with gevent workers) and plain gunicorn's gthread
worker, in front of :class:`WatchingUpstream`, a loopback upstream that records each
request byte for byte and sees when the proxy ends its connection. Clients are raw sockets:
they leave mid-upload, leave while the upstream thinks, send framings Ollama refuses. The
proxies log JSON lines, so a test reads the access line of its request as fields.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from gunicorn_process import GunicornProcess, run_gunicorn, start_server

TIMEOUT_S = 10.0
#: How long the proxy may take to end its upstream connection once it should.
PROMPT_S = 3.0
SERVE = [sys.executable, "-m", "ollama_default.proxy.cli", "serve", "--workers", "1"]
GTHREAD = ("--worker-class", "gthread", "--workers", "1", "--threads", "4")
OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
    b"Content-Length: 2\r\n\r\n{}"
)


# --------------------------------------------------------------------------------------
# An upstream that sees how each connection ends


@dataclass
class Exchange:
    """One request as the upstream read it, and how its connection went."""

    head: bytes
    body: bytes = b""
    #: The connection ended in the middle of the body.
    cut: bool = False
    #: Set once the proxy has ended the connection (closed or reset it).
    ended: threading.Event = field(default_factory=threading.Event)

    @property
    def request_line(self) -> bytes:
        return self.head.split(b"\r\n", 1)[0]

    def header(self, name: bytes) -> bytes | None:
        """The value of the header ``name`` (lower case), None when absent."""
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name:
                return value.strip()
        return None

    def headers_named(self, prefix: bytes) -> dict[bytes, bytes]:
        """Every header whose lower-case name starts with ``prefix``."""
        found = {}
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower().startswith(prefix):
                found[key.strip().lower()] = value.strip()
        return found


#: What the upstream does once it has read a request whole.
Behaviour = Callable[[socket.socket, Exchange], None]


def answers_ok(connection: socket.socket, exchange: Exchange) -> None:
    """Answer ``{}`` and keep the connection open for the next request."""
    connection.sendall(OK)


def stays_silent(connection: socket.socket, exchange: Exchange) -> None:
    """Answer nothing, as Ollama loading a model or generating a whole reply."""


class WatchingUpstream:
    """A loopback upstream: reads each request whole, does ``behaviour``, and records in
    ``exchanges`` what it read and when the proxy ended the connection.

    Each connection is served by its own thread until the proxy ends it (or the upstream
    is closed); a request whose body the connection cuts short is not answered.
    """

    def __init__(self) -> None:
        self.behaviour: Behaviour = answers_ok
        self.exchanges: list[Exchange] = []
        self.arrived = threading.Condition()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._stopping = threading.Event()
        self._connections: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def next_exchange(self, after: int) -> Exchange:
        """Wait for the request after the first ``after`` ones; return it."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.exchanges) > after, TIMEOUT_S):
                raise AssertionError("no request reached the upstream")
            return self.exchanges[after]

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            self._connections.append(connection)
            self._threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        connection.settimeout(TIMEOUT_S)
        last: Exchange | None = None
        try:
            with connection.makefile("rb") as reader:
                for _ in range(100):  # requests on one connection, until it ends
                    exchange = self._read(reader)
                    if exchange is None or exchange.cut:
                        break
                    last = exchange
                    self.behaviour(connection, exchange)
        except TimeoutError:
            return  # the proxy kept the connection open: ended stays unset
        except (OSError, ValueError):
            pass  # reset by the proxy, or closed by close()
        if last is not None:
            last.ended.set()

    def _read(self, reader: BinaryIO) -> Exchange | None:
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = reader.readline(65537)
            if not line:
                return None
            head += line
        exchange = Exchange(head)
        with self.arrived:
            self.exchanges.append(exchange)
            self.arrived.notify_all()
        if b"chunked" in (exchange.header(b"transfer-encoding") or b"").lower():
            for _ in range(100_000):
                size_line = reader.readline(65537)
                if not size_line.endswith(b"\r\n"):
                    break
                size = int(size_line, 16)
                chunk = reader.read(size + 2)
                exchange.body += chunk[:size]
                if len(chunk) < size + 2:
                    break
                if size == 0:
                    return exchange
            exchange.cut = True
        else:
            length = int(exchange.header(b"content-length") or b"0")
            exchange.body = reader.read(length)
            exchange.cut = len(exchange.body) < length
        if exchange.cut:
            exchange.ended.set()
        return exchange

    def close(self) -> None:
        self._stopping.set()
        self._acceptor.join(timeout=5)
        for connection in self._connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[WatchingUpstream]:
    watching = WatchingUpstream()
    try:
        yield watching
    finally:
        watching.close()


@pytest.fixture
def upstream_that(
    upstream: WatchingUpstream, monkeypatch: pytest.MonkeyPatch
) -> Callable[[Behaviour], WatchingUpstream]:
    def set_behaviour(behaviour: Behaviour) -> WatchingUpstream:
        monkeypatch.setattr(upstream, "behaviour", behaviour)
        return upstream

    return set_behaviour


def proxy_settings(upstream: WatchingUpstream, **more: str) -> dict[str, str]:
    """The environment of a proxy in front of ``upstream``: a long read timeout (a proxy
    that waits for it fails the test), JSON log lines."""
    return {
        "OLLAMA_DEFAULT_UPSTREAM": upstream.url,
        "OLLAMA_DEFAULT_ALIAS": "llmodel",
        "OLLAMA_DEFAULT_TARGET": "aya-expanse:8b-q8_0",
        "OLLAMA_DEFAULT_READ_TIMEOUT_S": "60",
        "OLLAMA_DEFAULT_LOG_FORMAT": "json",
        **more,
    }


@pytest.fixture(scope="module", params=["serve", "gthread"])
def proxy(
    request: pytest.FixtureRequest,
    upstream: WatchingUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GunicornProcess]:
    """``ollama-default serve`` (gevent), or plain gunicorn with the gthread worker."""
    log_dir = tmp_path_factory.mktemp(request.param)
    settings = proxy_settings(upstream)
    if request.param == "serve":
        with serving(settings, log_dir) as server:
            yield server
    else:
        with run_gunicorn(settings, log_dir=log_dir, options=GTHREAD) as server:
            yield server
    assert "Traceback" not in server.stderr()


@contextlib.contextmanager
def serving(settings: dict[str, str], log_dir: Path, *flags: str) -> Iterator[GunicornProcess]:
    """Run ``ollama-default serve`` with one worker until the block ends."""
    server = start_server([*SERVE, *flags], settings, log_dir=log_dir)
    try:
        server.wait_until_ready()
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------------------
# Helpers


def access_lines(server: GunicornProcess) -> list[dict[str, Any]]:
    """The access log's lines so far, as fields."""
    lines = []
    for line in server.stderr().splitlines():
        if line.startswith("{"):
            fields = json.loads(line)
            if fields.get("logger") == "ollama_default.access":
                lines.append(fields)
    return lines


def access_line(server: GunicornProcess, path: str, after: int = 0) -> dict[str, Any]:
    """The access line of the first request for ``path`` after the first ``after`` lines.

    The line is written once the response has ended, which a client that left does not
    see: polled for, up to ``TIMEOUT_S``.
    """
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        for fields in access_lines(server)[after:]:
            if fields["path"] == path:
                return fields
        if time.monotonic() > deadline:
            raise AssertionError(f"no access line for {path}:\n{server.stderr()}")
        time.sleep(0.02)


def exchange(server: GunicornProcess, request: bytes) -> tuple[int, bytes, bytes]:
    """Send ``request`` on a new connection; return the status, the head and the body the
    proxy answers with (read to the close, which the request asks for)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S) as sock:
        sock.sendall(request)
        received = b""
        while data := sock.recv(65536):
            received += data
    head, _, body = received.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return int(head.split(b" ", 2)[1]), head, body


def dechunk(body: bytes) -> bytes:
    data = b""
    while body:
        size_text, _, rest = body.partition(b"\r\n")
        size = int(size_text, 16)
        if size == 0:
            break
        data, body = data + rest[:size], rest[size + 2 :]
    return data


# --------------------------------------------------------------------------------------
# Aborted uploads

LARGE = 200_000  # over the 64 KiB the forwarder sends with the head: streamed upstream


@pytest.mark.parametrize(
    ("framing", "message"),
    [
        (b"Content-Length: %d\r\n\r\n" % LARGE + b"x" * (LARGE // 2),
         "request body ended before its Content-Length"),
        (b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % (LARGE // 2) + b"x" * (LARGE // 2)
         + b"\r\n",
         "request body was cut short or its chunked framing is invalid"),
    ],
    ids=["content-length", "chunked"],
)  # fmt: skip
def test_an_upload_the_client_abandons_ends_upstream_at_once_and_is_logged_as_a_400(
    proxy: GunicornProcess,
    upstream_that: Callable[[Behaviour], WatchingUpstream],
    framing: bytes,
    message: str,
) -> None:
    upstream = upstream_that(answers_ok)
    before, logged = len(upstream.exchanges), len(access_lines(proxy))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT_S) as client:
        client.sendall(b"POST /api/upload HTTP/1.1\r\nHost: p\r\n" + framing)
        received = upstream.next_exchange(before)
    # The client has gone; the upstream must not wait for the rest of the body.
    assert received.ended.wait(PROMPT_S), "the upstream connection is still open"
    assert received.cut
    assert len(received.body) <= LARGE // 2
    line = access_line(proxy, "/api/upload", after=logged)
    assert (line["status"], line["error"]) == (400, message)


# --------------------------------------------------------------------------------------
# Leaving early


def sends_part_of_a_body(connection: socket.socket, exchange: Exchange) -> None:
    """Send a head and the first byte of a JSON body, then think."""
    connection.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
        b"Content-Length: 99\r\n\r\n{"
    )


CHAT = json.dumps({"model": "llmodel", "messages": [], "stream": False}).encode()


@pytest.mark.parametrize(
    ("behaviour", "status"),
    [(stays_silent, 499), (sends_part_of_a_body, 200)],
    ids=["before-the-head", "in-a-body-held-for-rewriting"],
)
def test_a_client_that_leaves_while_ollama_thinks_stops_it(
    proxy: GunicornProcess,
    upstream_that: Callable[[Behaviour], WatchingUpstream],
    behaviour: Behaviour,
    status: int,
) -> None:
    upstream = upstream_that(behaviour)
    before, logged = len(upstream.exchanges), len(access_lines(proxy))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT_S) as client:
        client.sendall(
            b"POST /api/chat HTTP/1.1\r\nHost: p\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(CHAT), CHAT)
        )
        received = upstream.next_exchange(before)
    # Gone, as a client that gave up on a slow model: Ollama must see it too.
    assert received.ended.wait(PROMPT_S), "the upstream connection is still open"
    assert json.loads(received.body)["model"] == "aya-expanse:8b-q8_0"
    line = access_line(proxy, "/api/chat", after=logged)
    assert (line["status"], line["client_left"]) == (status, True)
    if status == 499:
        assert line["error"] == "the client closed the connection before the upstream answered"


def test_a_client_that_waits_for_a_slow_upstream_gets_its_reply(
    proxy: GunicornProcess, upstream_that: Callable[[Behaviour], WatchingUpstream]
) -> None:
    def thinks_then_answers(connection: socket.socket, exchange: Exchange) -> None:
        # Not synchronisation: a model that takes longer than the proxy takes between two
        # looks at its client (CLIENT_CHECK_S, 1 s), so the client is looked at.
        time.sleep(1.5)
        connection.sendall(OK)

    upstream_that(thinks_then_answers)
    logged = len(access_lines(proxy))
    request = b"GET /api/tags HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"

    status, _, body = exchange(proxy, request)

    assert (status, body) == (200, b"{}")
    line = access_line(proxy, "/api/tags", after=logged)
    assert "client_left" not in line
    assert line["duration_ms"] >= 1500


# --------------------------------------------------------------------------------------
# Transfer codings


CHUNKED_BODY = b'e\r\n{"model":"m1"}\r\n0\r\n\r\n'
GUNICORN_27 = int(importlib.metadata.version("gunicorn").split(".")[0]) >= 27


#: Transfer-Encoding values, and the status they get from gunicorn itself (in HTML) or,
#: for those gunicorn lets through, from the proxy (in the client's dialect): Go's
#: net/http answers 501 to any coding but chunked alone. gunicorn lets a compression coding
#: before chunked through, undoing the chunking and leaving the body compressed: sent on
#: as plain chunked, the coding would be lost.
CODINGS = [
    pytest.param("gzip, chunked", 501, "proxy", id="gzip"),
    pytest.param("deflate,chunked", 501, "proxy", id="deflate"),
    pytest.param("identity, chunked", 501, "proxy", id="identity"),
    pytest.param("x-custom, chunked", 501, "gunicorn", id="unknown"),
    pytest.param("chunked, gzip", 400, "gunicorn", id="chunked-first"),
    # gunicorn 27 refuses a coding that does not end with chunked (RFC 9112 section 6.3);
    # older ones read such a body to the close, and the proxy refuses it.
    pytest.param("gzip", *((400, "gunicorn") if GUNICORN_27 else (501, "proxy")), id="gzip-alone"),
    pytest.param("chunked, chunked", 400, "gunicorn", id="chunked-twice"),
]


@pytest.mark.parametrize(("coding", "status", "refused_by"), CODINGS)
@pytest.mark.parametrize("path", ["/api/chat", "/api/upload", "/v1/chat/completions"])
def test_a_body_in_a_transfer_coding_other_than_chunked_is_refused_and_not_forwarded(
    proxy: GunicornProcess,
    upstream_that: Callable[[Behaviour], WatchingUpstream],
    coding: str,
    status: int,
    refused_by: str,
    path: str,
) -> None:
    upstream = upstream_that(answers_ok)
    before = len(upstream.exchanges)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: p\r\nConnection: close\r\n"
        f"Transfer-Encoding: {coding}\r\n\r\n"
    ).encode() + CHUNKED_BODY

    answered, head, body = exchange(proxy, request)

    assert answered == status
    # Answered before the upstream was asked: a forwarded request would be there first.
    assert len(upstream.exchanges) == before
    if refused_by == "proxy":
        error = json.loads(body)["error"]
        message = error["message"] if path.startswith("/v1/") else error
        assert message == "unsupported transfer encoding: only chunked is accepted"
    elif "serve" in proxy.stderr_path.parent.name:  # serve's worker words gunicorn's refusal
        assert b"Content-Type: application/json" in head
        error = json.loads(body)["error"]
        assert isinstance(error["message"] if path.startswith("/v1/") else error, str)
    else:  # plain gunicorn refuses it with its own page
        assert b"Content-Type: text/html" in head


def test_a_body_sent_chunked_alone_is_forwarded(
    proxy: GunicornProcess, upstream_that: Callable[[Behaviour], WatchingUpstream]
) -> None:
    upstream = upstream_that(answers_ok)
    before = len(upstream.exchanges)
    request = (
        b"POST /api/upload HTTP/1.1\r\nHost: p\r\nConnection: close\r\n"
        b"Transfer-Encoding: Chunked\r\n\r\n" + CHUNKED_BODY
    )

    assert exchange(proxy, request)[0] == 200
    received = upstream.exchanges[before]
    assert (received.header(b"transfer-encoding"), received.body) == (b"chunked", b'{"model":"m1"}')


# --------------------------------------------------------------------------------------
# Headers that say where a request came from


#: A client's claims about where it came from, and gunicorn's own SCRIPT_NAME header.
CLAIMS = (
    b"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n"
    b"X-Forwarded-Host: claimed.example\r\nForwarded: for=6.6.6.6;proto=https\r\n"
    b"X-Real-IP: 6.6.6.6\r\nSCRIPT_NAME: /api\r\n"
)
CLAIMED = b"GET /api/tags HTTP/1.1\r\nHost: p\r\nConnection: close\r\n" + CLAIMS + b"\r\n"


def forwarded(upstream: WatchingUpstream, server: GunicornProcess) -> Exchange:
    """Send the claims through ``server``; return the request the upstream received."""
    before = len(upstream.exchanges)
    assert exchange(server, CLAIMED)[0] == 200
    return upstream.exchanges[before]


def test_a_clients_claims_about_where_it_came_from_change_nothing(
    proxy: GunicornProcess,
    upstream_that: Callable[[Behaviour], WatchingUpstream],
    request: pytest.FixtureRequest,
) -> None:
    received = forwarded(upstream_that(answers_ok), proxy)

    # The forwarder believes nobody by default: the upstream gets the proxy's own words.
    assert received.header(b"x-forwarded-for") == b"127.0.0.1"
    assert received.header(b"x-forwarded-host") == b"p"
    assert received.header(b"forwarded") is None
    assert received.header(b"x-real-ip") is None
    if request.node.callspec.params["proxy"] == "serve":
        # Nor does serve's gunicorn: the scheme is the connection's, the path the client's.
        assert received.header(b"x-forwarded-proto") == b"http"
        assert received.request_line == b"GET /api/tags HTTP/1.1"
    else:
        # Plain gunicorn believes 127.0.0.1 (its forwarded_allow_ips) about the scheme and
        # SCRIPT_NAME: the reason serve sets them from trusted_proxies.
        assert received.header(b"x-forwarded-proto") == b"https"
        assert received.request_line == b"GET /tags HTTP/1.1"


def test_under_serves_gunicorn_configuration_gunicorn_believes_no_client_either(
    upstream: WatchingUpstream,
    upstream_that: Callable[[Behaviour], WatchingUpstream],
    tmp_path: Path,
) -> None:
    options = ("-c", "python:ollama_default.proxy.gunicorn", "--workers", "1")
    with run_gunicorn(proxy_settings(upstream), log_dir=tmp_path, options=options) as server:
        received = forwarded(upstream_that(answers_ok), server)
    assert received.header(b"x-forwarded-proto") == b"http"
    assert received.request_line == b"GET /api/tags HTTP/1.1"


@pytest.fixture(scope="module")
def trusting_proxy(
    upstream: WatchingUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GunicornProcess]:
    """``ollama-default serve`` trusting the proxies on 127.0.0.1 (the tests' clients)."""
    settings = proxy_settings(upstream, OLLAMA_DEFAULT_TRUSTED_PROXIES="127.0.0.1")
    with serving(settings, tmp_path_factory.mktemp("trusting")) as server:
        yield server
    assert "Traceback" not in server.stderr()


def test_a_trusted_proxys_claims_pass_on_with_its_address_added(
    trusting_proxy: GunicornProcess, upstream_that: Callable[[Behaviour], WatchingUpstream]
) -> None:
    received = forwarded(upstream_that(answers_ok), trusting_proxy)

    assert received.header(b"x-forwarded-for") == b"6.6.6.6, 127.0.0.1"
    assert received.header(b"x-forwarded-proto") == b"https"
    assert received.header(b"x-forwarded-host") == b"claimed.example"
    assert received.header(b"forwarded") == b"for=6.6.6.6;proto=https"
    assert received.header(b"x-real-ip") == b"6.6.6.6"
    # gunicorn, given the same list, believes its SCRIPT_NAME header too.
    assert received.request_line == b"GET /tags HTTP/1.1"


# --------------------------------------------------------------------------------------
# Credentials in the upstream URL


def test_the_upstream_urls_credentials_go_as_basic_authorization_and_are_logged_nowhere(
    upstream: WatchingUpstream,
    upstream_that: Callable[[Behaviour], WatchingUpstream],
    tmp_path: Path,
) -> None:
    upstream_that(answers_ok)
    with_credentials = upstream.url.replace("http://", "http://me:s3cret@")
    settings = proxy_settings(upstream, OLLAMA_DEFAULT_UPSTREAM=with_credentials)
    before = len(upstream.exchanges)
    with serving(settings, tmp_path) as server:
        status, _, _ = exchange(
            server,
            b"GET /api/tags HTTP/1.1\r\nHost: p\r\nConnection: close\r\n"
            b"Authorization: Bearer for-the-proxy\r\n\r\n",
        )
        line = access_line(server, "/api/tags")
    received = upstream.exchanges[before]
    assert (status, line["status"]) == (200, 200)
    assert received.header(b"authorization") == b"Basic bWU6czNjcmV0"  # me:s3cret
    assert received.header(b"host") == upstream.url.removeprefix("http://").encode()
    stderr = server.stderr()
    assert f"forwarding to {upstream.url} (answering), with the user and password" in stderr
    assert "s3cret" not in stderr
    assert "me@" not in stderr
