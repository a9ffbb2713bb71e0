"""The Forwarder on its own: keep-alive connections, reused while they are good, and
upstream replies at the edges of HTTP/1.1, from an upstream that answers scripted bytes."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import trustme
from fake_ollama import FakeOllama, serve
from werkzeug.test import Client

from ollama_default import ConfigError, DefaultModel
from ollama_default.proxy import forwarder as forwarder_module
from ollama_default.proxy.forwarder import (
    Forwarder,
    UpstreamFailure,
    _send,
    basic_authorization,
    has_left,
    without_userinfo,
)
from ollama_default.wsgi import CLIENT_LEFT_KEY, ERROR_KEY, REQUEST_ID_KEY

TIMEOUT_S = 10.0
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every TCP connection http.client opens, by address."""
    opened: list[tuple[str, int]] = []
    create_connection = socket.create_connection

    def counting(address: tuple[str, int], *args: object, **kwargs: object) -> socket.socket:
        opened.append(address)
        return create_connection(address, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "create_connection", counting)
    return opened


@pytest.fixture
def client() -> Iterator[Client]:
    with serve(FakeOllama()) as url:
        forwarder = Forwarder(url)
        yield Client(forwarder)
        forwarder.close()


def test_one_connection_serves_requests_one_after_another(
    client: Client, connects: list[tuple[str, int]]
) -> None:
    bodies = [
        {"model": "llama3.2", "prompt": "hi", "stream": False},  # Content-Length
        {"model": "llama3.2", "prompt": "hi"},  # chunked NDJSON
        {"model": "llama3.2", "prompt": "hi", "stream": False},
    ]
    for body in bodies:
        with client.post("/api/generate", json=body) as response:
            assert response.status_code == 200
            assert b'"model":"llama3.2"' in response.get_data()
    with client.head("/api/tags") as response:
        assert response.status_code == 200
    assert len(connects) == 1


def test_a_stream_the_client_left_does_not_go_back_to_the_pool(
    connects: list[tuple[str, int]],
) -> None:
    with serve(FakeOllama(tokens=50, token_delay_s=0.02)) as url:
        forwarder = Forwarder(url)
        client = Client(forwarder)
        response = client.post(
            "/api/generate", json={"model": "llama3.2", "prompt": "hi"}, buffered=False
        )
        next(iter(response.response))  # the first record, then the client goes away
        response.close()
        with client.get("/api/version") as version:
            assert version.status_code == 200
        forwarder.close()
    assert len(connects) == 2  # the half-read connection was closed, not reused


def test_a_stream_read_to_its_end_goes_back_to_the_pool(
    client: Client, connects: list[tuple[str, int]]
) -> None:
    for _ in range(2):
        response = client.post(
            "/api/generate", json={"model": "llama3.2", "prompt": "hi"}, buffered=False
        )
        records = b"".join(response.response).splitlines()
        response.close()
        assert b'"done":true' in records[-1]
    assert len(connects) == 1


# --------------------------------------------------------------------------------------
# Replies at the edges of HTTP/1.1


class ScriptedUpstream:
    """A loopback server that answers the n-th request it reads with ``replies[n]``.

    A reply is raw bytes; after it the connection stays open for the next request, or is
    closed when the reply is followed by ``None`` in the script. Every request head it read
    is kept in ``heads``, and every connection it accepted counts in ``connections``; a
    request whose body ends with its connection is not answered.
    """

    def __init__(self, replies: list[bytes | None]) -> None:
        self._replies = list(replies)
        self.heads: list[bytes] = []
        self.connections = 0
        #: How much of each body cut short by the end of its connection arrived.
        self.short_bodies: list[int] = []
        self.hung_up = threading.Event()  # set each time it has closed a connection
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(TIMEOUT_S)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self._replies:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed
            self.connections += 1
            with connection, contextlib.suppress(OSError):
                connection.settimeout(TIMEOUT_S)
                self._answer(connection)
            self.hung_up.set()

    def _answer(self, connection: socket.socket) -> None:
        with connection.makefile("rb") as reader:
            self._answer_requests(connection, reader)

    def _answer_requests(self, connection: socket.socket, reader: BinaryIO) -> None:
        while self._replies:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = reader.readline()
                if not line:
                    return
                head += line
            self.heads.append(head)
            body = _read_body(head, reader)
            if body is not None:  # the connection ended in the middle of the body
                self.short_bodies.append(len(body))
                return
            connection.sendall(self._replies.pop(0) or b"")
            if self._replies and self._replies[0] is None:
                self._replies.pop(0)
                return

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes a waiting accept() on Linux
        self._listener.close()
        self._thread.join(TIMEOUT_S)
        assert not self._thread.is_alive()


def _read_body(head: bytes, reader: BinaryIO) -> bytes | None:
    """Read the body ``head`` announces; return what came of it if the connection ended
    first, else None."""
    fields = dict(line.lower().split(b":", 1) for line in head.split(b"\r\n")[1:] if line)
    if b"chunked" not in fields.get(b"transfer-encoding", b""):
        length = int(fields.get(b"content-length", b"0"))
        body = reader.read(length)
        return body if len(body) < length else None
    body = b""
    for _ in range(10_000):  # chunks
        size_line = reader.readline()
        if not size_line.endswith(b"\r\n"):
            return body
        size = int(size_line, 16)
        chunk = reader.read(size + 2)
        body += chunk[:size]
        if len(chunk) < size + 2:
            return body
        if size == 0:
            return None
    raise AssertionError("too many chunks")


@contextlib.contextmanager
def scripted(*replies: bytes | None) -> Iterator[tuple[ScriptedUpstream, Client]]:
    upstream = ScriptedUpstream(list(replies))
    forwarder = Forwarder(upstream.url, read_timeout_s=TIMEOUT_S)
    try:
        yield upstream, Client(forwarder)
    finally:
        forwarder.close()
        upstream.close()


def test_an_interim_100_continue_is_skipped_for_the_final_reply() -> None:
    with scripted(b"HTTP/1.1 100 Continue\r\n\r\n" + OK) as (_, client):
        response = client.post("/api/chat", data=b"{}", buffered=True)
    assert (response.status_code, response.get_data()) == (200, b"{}")


def test_a_reply_that_runs_to_the_close_is_relayed_whole_and_not_reused() -> None:
    close_delimited = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it"
    with scripted(close_delimited, None, OK) as (upstream, client):
        assert client.get("/api/version", buffered=True).get_data() == b"all of it"
        assert client.get("/api/version", buffered=True).get_data() == b"{}"
    assert upstream.connections == 2


def test_an_idle_connection_the_upstream_closed_is_not_used_again() -> None:
    with scripted(OK, None, OK) as (upstream, client):
        assert client.get("/api/version", buffered=True).status_code == 200
        assert upstream.hung_up.wait(TIMEOUT_S)  # it closed the connection kept idle
        second = client.get("/api/version", buffered=True)
    assert (second.status_code, upstream.connections) == (200, 2)


def test_a_head_reply_ends_with_its_head_and_keeps_the_connection() -> None:
    head_reply = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
    with scripted(head_reply, OK) as (upstream, client):
        head = client.head("/api/tags", buffered=True)
        assert (head.status_code, head.headers["Content-Length"]) == (200, "1234")
        assert client.get("/api/version", buffered=True).get_data() == b"{}"
    assert upstream.connections == 1


class Recording:
    """A WSGI app around ``app`` that keeps the environ of the last request, to read what
    the forwarder left there for the log."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.environ: dict[str, Any] = {}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.environ = environ
        return self.app(environ, start_response)


@pytest.mark.parametrize(
    ("reply", "told", "logged"),
    [
        (b"", "upstream closed the connection without answering",
         "closed the connection without answering"),
        (b"HTTP/1.1 200 OK\r\nContent-", "upstream closed the connection in the middle of its "
         "reply", "closed the connection in the middle of its reply"),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "upstream sent an invalid response",
         "sent an invalid HTTP response: "),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
         "upstream switched protocols unasked", "switched protocols unasked"),
    ],
    ids=["nothing", "half-a-head", "not-http", "upgrade"],
)  # fmt: skip
def test_an_upstream_that_breaks_http_is_a_502_whose_address_only_the_log_gets(
    reply: bytes, told: str, logged: str
) -> None:
    with scripted(reply, None) as (upstream, _):
        recording = Recording(Forwarder(upstream.url, read_timeout_s=TIMEOUT_S))
        try:
            response = Client(recording).post("/api/chat", data=b"{}", buffered=True)
        finally:
            recording.app.close()
    request_id = recording.environ[REQUEST_ID_KEY]
    assert response.status_code == 502
    assert json.loads(response.get_data())["error"] == f"{told} (request id {request_id})"
    assert recording.environ[ERROR_KEY].startswith(f"upstream {upstream.url} {logged}")
    assert re.fullmatch("[0-9a-f]{12}", request_id)


def test_each_failure_has_its_own_request_id() -> None:
    with scripted(b"", None, b"", None) as (upstream, _):
        recording = Recording(Forwarder(upstream.url, read_timeout_s=TIMEOUT_S))
        client = Client(recording)
        try:
            ids = set()
            for _ in range(2):
                client.get("/api/version", buffered=True)
                ids.add(recording.environ[REQUEST_ID_KEY])
        finally:
            recording.app.close()
    assert len(ids) == 2


def test_credentials_in_the_upstream_url_go_as_basic_authorization_and_nowhere_else() -> None:
    with scripted(OK, b"", None) as (upstream, _):
        url = upstream.url.replace("http://", "http://us%40er:p%3Ass@") + "/"
        recording = Recording(Forwarder(url, read_timeout_s=TIMEOUT_S))
        client = Client(recording)
        try:
            headers = {"Authorization": "Bearer for-the-proxy"}
            assert client.get("/api/version", headers=headers, buffered=True).status_code == 200
            failed = client.get("/api/version", buffered=True)  # the upstream hangs up
        finally:
            recording.app.close()
    credentials = base64.b64encode(b"us@er:p:ss").decode()
    head = upstream.heads[0].decode("latin-1")
    assert f"\r\nAuthorization: Basic {credentials}\r\n" in head
    assert "for-the-proxy" not in head
    assert head.startswith(
        f"GET /api/version HTTP/1.1\r\nHost: {upstream.url[len('http://') :]}\r\n"
    )
    assert recording.app.upstream == upstream.url
    assert failed.status_code == 502
    logged = recording.environ[ERROR_KEY]
    assert logged.startswith(f"upstream {upstream.url} closed the connection")
    for shown in (logged, failed.get_data(as_text=True)):
        assert "us%40er" not in shown and "p%3Ass" not in shown


@pytest.mark.parametrize(
    ("url", "shown", "authorization"),
    [
        ("http://h:1", "http://h:1", None),
        ("https://user:secret@h:1/base", "https://h:1/base", b"user:secret"),
        ("http://user@h", "http://h", b"user:"),
        ("http://a@b:c@h/x@y", "http://h/x@y", b"a@b:c"),  # urlsplit's last "@"
        ("http://u:p%20w@[::1]:8080", "http://[::1]:8080", b"u:p w"),
        ("http://h/p@th", "http://h/p@th", None),  # an "@" in the path is no userinfo
    ],
)
def test_a_user_and_password_are_taken_out_of_the_url_shown(
    url: str, shown: str, authorization: bytes | None
) -> None:
    assert without_userinfo(url) == shown
    expected = (
        None if authorization is None else "Basic " + base64.b64encode(authorization).decode()
    )
    assert basic_authorization(url) == expected


@pytest.mark.parametrize(
    "value", ["a\r\nX-Injected: 1", "a\nX-Injected: 1", "a\rb", "a\x00b", "a\r\n\r\nGET / HTTP/1.1"]
)
def test_a_header_that_would_break_the_request_head_is_a_400_and_not_sent(value: str) -> None:
    with scripted(OK) as (upstream, client):
        response = client.get(
            "/api/version", environ_overrides={"HTTP_X_NOTE": value}, buffered=True
        )
        assert response.status_code == 400
        assert "invalid characters" in json.loads(response.get_data())["error"]
    assert upstream.heads == []


#: What a client says about where it came from: a proxy's words, if it is not one.
CLAIMS = {
    "X-Forwarded-For": "6.6.6.6",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "claimed.example",
    "X-Forwarded-Port": "443",
    "Forwarded": "for=6.6.6.6;proto=https",
    "X-Real-Ip": "6.6.6.6",
}


def forwarding_headers(head: bytes) -> dict[str, str]:
    """The headers of a request head that say where the request came from."""
    found = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(": ")
        if name in CLAIMS:
            found[name] = value
    return found


@pytest.mark.parametrize(
    ("trusted", "peer", "believed"),
    [
        ((), "127.0.0.1", False),
        (("10.0.0.0/8",), "127.0.0.1", False),
        (("127.0.0.1",), "127.0.0.1", True),
        (("10.0.0.0/8", "::1"), "10.1.2.3", True),
        (("fd00::/8",), "fd00::7", True),
        (("127.0.0.1",), "", False),  # no address: a unix socket
    ],
    ids=["nobody", "another", "the-peer", "its-network", "ipv6-network", "unix-socket"],
)
def test_a_clients_forwarding_headers_are_believed_only_from_a_trusted_proxy(
    trusted: tuple[str, ...], peer: str, believed: bool
) -> None:
    with scripted(OK) as (upstream, _):
        forwarder = Forwarder(upstream.url, read_timeout_s=TIMEOUT_S, trusted_proxies=trusted)
        try:
            Client(forwarder).get(
                "/api/version",
                headers={"Host": "proxy.example", **CLAIMS},
                environ_overrides={"REMOTE_ADDR": peer},
                buffered=True,
            )
        finally:
            forwarder.close()
    sent = forwarding_headers(upstream.heads[0])
    if believed:
        assert sent == {**CLAIMS, "X-Forwarded-For": f"6.6.6.6, {peer}"}
    elif peer:
        assert sent == {
            "X-Forwarded-For": peer,
            "X-Forwarded-Proto": "http",
            "X-Forwarded-Host": "proxy.example",
        }
    else:
        assert sent == {"X-Forwarded-Proto": "http", "X-Forwarded-Host": "proxy.example"}


def test_trusted_proxies_given_as_one_string_fail_at_construction() -> None:
    with pytest.raises(ConfigError, match=r"^trusted_proxies must be a list of IP addresses"):
        Forwarder("http://127.0.0.1:11434", trusted_proxies="127.0.0.1")


@pytest.mark.parametrize("entry", ["*", "10.0.0.1/8", "localhost", ""])
def test_a_trusted_proxy_that_is_not_an_address_or_network_fails_at_construction(
    entry: str,
) -> None:
    with pytest.raises(ConfigError) as raised:
        Forwarder("http://127.0.0.1:11434", trusted_proxies=[entry])
    assert str(raised.value) == (
        f"trusted_proxies: {entry!r} is not an IP address or network, such as 10.0.0.0/8"
    )


def test_expect_100_continue_is_answered_here_not_passed_on() -> None:
    with scripted(OK) as (upstream, client):
        client.post("/api/chat", data=b"{}", headers={"Expect": "100-continue"}, buffered=True)
    assert b"expect" not in upstream.heads[0].lower()


@pytest.mark.parametrize(
    ("content_length", "message"),
    [("10", "ended before its Content-Length"), ("ten", "invalid Content-Length 'ten'")],
)
def test_a_body_that_does_not_match_its_length_is_a_400_and_not_sent(
    content_length: str, message: str
) -> None:
    with scripted(OK) as (upstream, client):
        response = client.post(
            "/api/chat",
            input_stream=io.BytesIO(b"{}"),
            environ_overrides={"CONTENT_LENGTH": content_length},
            buffered=True,
        )
        assert response.status_code == 400
        assert message in json.loads(response.get_data())["error"]
    assert upstream.heads == []


def test_a_body_in_another_transfer_coding_than_chunked_is_a_501_and_not_sent() -> None:
    with scripted(OK) as (upstream, client):
        response = client.post(
            "/api/unknown",
            input_stream=io.BytesIO(b"\x1f\x8b"),
            environ_overrides={"CONTENT_LENGTH": "", "HTTP_TRANSFER_ENCODING": "gzip, chunked",
                               "wsgi.input_terminated": True},
            buffered=True,
        )  # fmt: skip
        assert response.status_code == 501
        assert json.loads(response.get_data())["error"] == (
            "unsupported transfer encoding: only chunked is accepted"
        )
    assert upstream.heads == []


class BreakingInput(io.BytesIO):
    """A request body that breaks after its bytes, as a server's reader does when the
    client resets the connection or cuts a chunked body (gunicorn raises NoMoreData)."""

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if not data:
            raise OSError("client connection lost")
        return data


LARGE = 200_000  # over the 64 KiB sent in the same write as the head: streamed upstream


@pytest.mark.parametrize(
    ("body", "environ", "message"),
    [
        (io.BytesIO(b"x" * (LARGE // 2)), {"CONTENT_LENGTH": str(LARGE)},
         "request body ended before its Content-Length"),
        (BreakingInput(b"x" * (LARGE // 2)), {"CONTENT_LENGTH": str(LARGE)},
         "request body ended before its Content-Length"),
        (BreakingInput(b"x" * 100), {"CONTENT_LENGTH": "1000"},
         "request body ended before its Content-Length"),
        (BreakingInput(b"x" * (LARGE // 2)),
         {"CONTENT_LENGTH": "", "HTTP_TRANSFER_ENCODING": "chunked",
          "wsgi.input_terminated": True},
         "request body was cut short or its chunked framing is invalid"),
    ],
    ids=["short", "reset", "small-reset", "chunked-cut"],
)  # fmt: skip
def test_a_body_cut_short_closes_the_upstream_connection_and_is_a_400(
    connects: list[tuple[str, int]], body: io.BytesIO, environ: dict[str, Any], message: str
) -> None:
    with scripted(OK) as (upstream, client):
        response = client.post(
            "/api/unknown", input_stream=body, environ_overrides=environ, buffered=True
        )
        assert response.status_code == 400
        assert json.loads(response.get_data())["error"] == message
        # Whatever the upstream got of the request, its connection is not used again.
        assert client.get("/api/version", buffered=True).status_code == 200
    if environ["CONTENT_LENGTH"] == "1000":  # read whole before connecting: nothing went
        assert [head.split(b" ")[0] for head in upstream.heads] == [b"GET"]
        assert len(connects) == 1
    else:  # the head went first; the upstream saw its connection end, not time out
        assert [head.split(b" ")[0] for head in upstream.heads] == [b"POST", b"GET"]
        assert upstream.short_bodies == [LARGE // 2]
        assert len(connects) == 2


def test_a_request_larger_than_the_socket_buffer_is_sent_whole() -> None:
    sender, receiver = socket.socketpair()
    with sender, receiver:
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sender.settimeout(TIMEOUT_S)  # as the pool's sockets: a first send() sends a part
        received: list[bytes] = []
        reader = threading.Thread(target=_read_all, args=(receiver, received))
        reader.start()
        head, body = b"POST /api/chat HTTP/1.1\r\n\r\n", bytes(range(256)) * 250
        _send(sender, head, body, chunked=False)
        sender.shutdown(socket.SHUT_WR)
        reader.join(TIMEOUT_S)
    assert b"".join(received) == head + body


def _read_all(sock: socket.socket, into: list[bytes]) -> None:
    sock.settimeout(TIMEOUT_S)
    while data := sock.recv(65536):
        into.append(data)


# --------------------------------------------------------------------------------------
# An upstream behind TLS


@pytest.fixture(scope="module")
def tls_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The fake Ollama over HTTPS with a certificate for 127.0.0.1; its CA's PEM file."""
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path_factory.mktemp("tls") / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    with serve(FakeOllama(), tls=server_context) as url:
        yield url, ca_file


def test_an_https_upstream_is_reached_over_verified_tls(
    tls_upstream: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ca_file = tls_upstream
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # the system's trust store, as set
    forwarder = Forwarder(url)
    try:
        response = Client(forwarder).get("/api/version", buffered=True)
    finally:
        forwarder.close()
    assert response.status_code == 200
    assert "version" in json.loads(response.get_data())


def test_an_https_upstream_with_an_untrusted_certificate_is_a_502(
    tls_upstream: tuple[str, Path],
) -> None:
    url, _ = tls_upstream
    recording = Recording(Forwarder(url))
    try:
        response = Client(recording).get("/api/version", buffered=True)
    finally:
        recording.app.close()
    assert response.status_code == 502
    message = json.loads(response.get_data())["error"]
    assert message.startswith("upstream unreachable (request id ")
    logged = recording.environ[ERROR_KEY]
    assert logged.startswith(f"upstream {url} is unreachable: ")
    assert "certificate verify failed" in logged


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"connect_timeout_s": 0}, "connect_timeout_s must be a positive number of seconds, not 0"),
        ({"read_timeout_s": True}, "read_timeout_s must be a positive number of seconds, not True"),
        ({"read_timeout_s": float("inf")}, "read_timeout_s must be a finite number of seconds"),
    ],
    ids=["zero", "bool", "infinite"],
)
def test_a_bad_timeout_fails_at_construction(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Forwarder("http://127.0.0.1:11434", **options)


@pytest.mark.parametrize(
    ("media_type", "path", "record"),
    [
        ("Application/X-NDJSON", "/api/chat", b'{"error":'),
        ("TEXT/Event-Stream; charset=utf-8", "/v1/chat/completions", b'\ndata: {"error":{'),
        ("text/event-stream", "/v1/messages", b"\nevent: error\ndata: "),
    ],
    ids=["ndjson-any-case", "sse-any-case", "anthropic"],
)
def test_a_cut_stream_ends_with_an_error_record_in_its_dialect(
    media_type: str, path: str, record: bytes
) -> None:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {media_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    first = b"data: {}\n\n" if "event" in media_type.lower() else b"{}\n"
    with scripted(head.encode() + b"%x\r\n%b\r\n" % (len(first), first), None) as (_, client):
        body = client.post(path, data=b"{}", buffered=True).get_data()
    assert body.startswith(first)
    assert body[len(first) :].startswith(record), body
    assert b"the stream was cut short" in body


# --------------------------------------------------------------------------------------
# A client that leaves while the upstream thinks


@contextlib.contextmanager
def thinking_upstream(
    reply: bytes = b"", answer: bytes = b"", answer_when: threading.Event | None = None
) -> Iterator[tuple[str, threading.Event]]:
    """An upstream that reads one request, sends ``reply`` (a head, a part of a body, or
    nothing) and thinks: it sends ``answer`` once ``answer_when`` is set, if given. Yields
    its URL and an event set when the proxy ends the connection (not when it times out)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT_S)
    ended = threading.Event()

    def serve() -> None:
        with contextlib.suppress(OSError):
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(TIMEOUT_S)
                received = b""
                while b"\r\n\r\n" not in received:
                    received += connection.recv(65536) or b"\r\n\r\n"
                connection.sendall(reply)
                if answer_when is not None and answer_when.wait(TIMEOUT_S):
                    connection.sendall(answer)
                while connection.recv(65536):
                    pass
                ended.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", ended
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(TIMEOUT_S)


@pytest.fixture
def quick_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forwarders made in the test look at their clients every 50 ms."""
    monkeypatch.setattr(forwarder_module, "CLIENT_CHECK_S", 0.05)


@pytest.mark.usefixtures("quick_checks")
@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (b"", 499),  # before the head: a model loading, a whole reply being generated
        (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 99\r\n\r\n{",
         200),  # in a body the client would get whole, once rewritten
    ],
    ids=["head", "body"],
)  # fmt: skip
def test_a_client_gone_while_the_upstream_thinks_ends_the_upstream_connection(
    reply: bytes, status: int
) -> None:
    client, ours = socket.socketpair()
    client.close()
    with thinking_upstream(reply) as (url, ended), ours:
        recording = Recording(Forwarder(url, read_timeout_s=TIMEOUT_S))
        try:
            response = Client(recording).post(
                "/api/chat", data=b"{}", environ_overrides={"gunicorn.socket": ours}, buffered=True
            )
        finally:
            recording.app.close()
        assert ended.wait(TIMEOUT_S), "the upstream connection is still open"
    assert response.status_code == status
    assert recording.environ[CLIENT_LEFT_KEY] is True
    if status == 499:
        assert json.loads(response.get_data())["error"] == (
            "the client closed the connection before the upstream answered"
        )


def test_a_client_that_sent_its_next_request_is_still_there(
    monkeypatch: pytest.MonkeyPatch, quick_checks: None
) -> None:
    looked = threading.Event()
    has_left = forwarder_module.has_left

    def looking(client: socket.socket) -> bool:
        left = has_left(client)
        looked.set()  # the upstream answers once the forwarder has looked
        return left

    monkeypatch.setattr(forwarder_module, "has_left", looking)
    client, ours = socket.socketpair()
    with client, ours, thinking_upstream(answer=OK, answer_when=looked) as (url, _):
        client.sendall(b"GET /api/version HTTP/1.1\r\n\r\n")  # pipelined after this one
        forwarder = Forwarder(url, read_timeout_s=TIMEOUT_S)
        try:
            response = Client(forwarder).post(
                "/api/chat", data=b"{}", environ_overrides={"gunicorn.socket": ours}, buffered=True
            )
        finally:
            forwarder.close()
        assert ours.recv(100, socket.MSG_DONTWAIT).startswith(b"GET /api/version")  # untaken
    assert looked.is_set()
    assert (response.status_code, response.get_data()) == (200, b"{}")


@pytest.mark.usefixtures("quick_checks")
def test_the_read_timeout_is_still_the_whole_wait_when_the_client_is_watched() -> None:
    client, ours = socket.socketpair()
    with client, ours, thinking_upstream() as (url, _):
        recording = Recording(Forwarder(url, read_timeout_s=0.3))
        started = time.monotonic()
        try:
            response = Client(recording).post(
                "/api/chat", data=b"{}", environ_overrides={"gunicorn.socket": ours}, buffered=True
            )
        finally:
            recording.app.close()
        waited = time.monotonic() - started
    assert response.status_code == 504
    assert recording.environ[ERROR_KEY].endswith(" did not answer within 0.3 s")
    assert 0.3 <= waited < 0.3 + 2  # not one slice, not forever
    assert ours.gettimeout() is None  # the client's socket as it was


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    return client, ours


@pytest.mark.parametrize(
    ("client_does", "left"),
    [
        (lambda client: None, False),
        (lambda client: client.send(b"GET / HTTP/1.1\r\n\r\n"), False),
        (lambda client: client.shutdown(socket.SHUT_WR), True),
        (lambda client: client.close(), True),
        (lambda client: (client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           b"\x01\x00\x00\x00" * 2), client.close()), True),
    ],
    ids=["idle", "pipelined", "half-closed", "closed", "reset"],
)  # fmt: skip
def test_a_client_has_left_when_its_end_is_closed(
    client_does: Callable[[socket.socket], object], left: bool
) -> None:
    client, ours = tcp_pair()
    with client, ours:
        ours.settimeout(7.0)
        if client_does(client) is not None or left:
            # What the client did has arrived once the socket is readable.
            assert select.select([ours], [], [], TIMEOUT_S)[0]
        assert has_left(ours) is left
        assert has_left(ours) is left  # nothing was taken
        assert ours.gettimeout() == 7.0


@pytest.mark.parametrize(
    "framing",
    [b"Content-Length: 100\r\n\r\n", b"Transfer-Encoding: chunked\r\n\r\nff\r\n"],
    ids=["length", "chunked"],
)
def test_a_document_cut_short_is_an_error_not_a_shorter_document(framing: bytes) -> None:
    half = b'{"model":"aya-expanse:8b-q8_0","message":{"content":"a long answ'
    reply = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + framing + half
    # Rewritten (the head is held until the document ends): the client gets the error.
    with scripted(reply, None) as (upstream, _):
        forwarder = Forwarder(upstream.url, read_timeout_s=TIMEOUT_S)
        app = DefaultModel(forwarder, alias="llmodel", target="aya-expanse:8b-q8_0")
        with Client(app).post("/v1/chat/completions", data=b'{"model":"llmodel"}') as response:
            assert response.status_code == 502
            message = json.loads(response.get_data())["error"]["message"]
        forwarder.close()
        assert message.startswith("upstream ") and "(request id " in message
        assert upstream.url not in message
    # Relayed as it comes: the server sees the failure, so the reply is not finished.
    with scripted(reply, None) as (upstream, client):
        streamed = client.post("/api/chat", data=b"{}", buffered=False)
        with pytest.raises(UpstreamFailure):
            b"".join(streamed.response)
        streamed.close()
