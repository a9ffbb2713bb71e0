"""Clients that send slowly, stop half-way or send nonsense, against ``ollama-default serve``.

Each test drives a real ``serve`` (gunicorn, serve's gevent worker) with raw sockets, since
no HTTP client library sends half a head on purpose, and checks what the client gets and
that the proxy goes on serving others. Deadlines are set short (1 s) by the settings'
variables; the waits in the tests are the clients' behaviour under test, bounded, never a
way to wait for the server to be ready.
"""

from __future__ import annotations

import json
import re
import select
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_ollama import FakeOllama, serve
from gunicorn_process import GunicornProcess, start_server

SERVE = [sys.executable, "-m", "ollama_default.proxy.cli", "serve"]
DEADLINE_S = 1.0
#: How long any answer may take to come, deadline included.
ANSWER_S = 10.0
CHAT = b'{"model":"llmodel","messages":[{"role":"user","content":"hi"}],"stream":false}'


@pytest.fixture(scope="module")
def fake_url() -> Iterator[str]:
    with serve(FakeOllama()) as url:
        yield url


def start(fake_url: str, log_dir: Path, *options: str, **settings: str) -> GunicornProcess:
    environment = {
        "OLLAMA_DEFAULT_ALIAS": "llmodel",
        "OLLAMA_DEFAULT_TARGET": "aya-expanse:8b-q8_0",
        "OLLAMA_DEFAULT_HEAD_TIMEOUT_S": str(DEADLINE_S),
        "OLLAMA_DEFAULT_BODY_TIMEOUT_S": str(DEADLINE_S),
        "OLLAMA_DEFAULT_ACCESS_LOG": "0",
        # Blob uploads are streamed bodies these tests send; the store is closed by default.
        "OLLAMA_DEFAULT_OPEN_MODEL_STORE": "blobs",
        **{f"OLLAMA_DEFAULT_{key.upper()}": value for key, value in settings.items()},
    }
    command = [*SERVE, "--workers", "1", "--upstream", fake_url, *options]
    server = start_server(command, environment, log_dir=log_dir)
    server.wait_until_ready()
    return server


@pytest.fixture(scope="module")
def proxy(fake_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornProcess]:
    server = start(fake_url, tmp_path_factory.mktemp("hostile"))
    try:
        yield server
    finally:
        server.stop()
    assert "Traceback" not in server.stderr()


def connect(server: GunicornProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=ANSWER_S)


def response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one response with a Content-Length: (status, headers, body)."""
    data = b""
    deadline = time.monotonic() + ANSWER_S
    while time.monotonic() < deadline:
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length: *(\d+)", head)
        if length and len(body) >= int(length.group(1)):
            lines = head.decode("latin-1").split("\r\n")
            headers = dict(line.split(": ", 1) for line in lines[1:])
            return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    raise AssertionError(f"no whole response: {data!r}")


def request(path: str, body: bytes, *, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return (
        f"POST {path} HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode() + body


# --------------------------------------------------------------------------------------
# Request heads


def test_a_head_that_stops_half_way_gets_408_in_the_paths_dialect(proxy: GunicornProcess) -> None:
    with connect(proxy) as client:
        started = time.monotonic()
        client.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: proxy\r\n")  # and no more
        status, headers, body = response(client)
        elapsed = time.monotonic() - started
        assert client.recv(1) == b""  # then the connection is closed
    assert status == 408
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "type": "error",
        "error": {"type": "api_error", "message": "the request head did not arrive within 1 s"},
    }
    assert DEADLINE_S <= elapsed < DEADLINE_S + 3


def test_a_head_sent_a_byte_at_a_time_is_cut_at_its_total_deadline(
    proxy: GunicornProcess,
) -> None:
    head = request("/api/chat", CHAT)
    with connect(proxy) as client:
        started = time.monotonic()
        for byte in head[:40]:  # 0.2 s a byte: 8 s for these alone
            client.sendall(bytes([byte]))
            if select.select([client], [], [], 0.2)[0]:
                break
        status, _, body = response(client)
        elapsed = time.monotonic() - started
    assert status == 408
    assert json.loads(body) == {"error": "the request head did not arrive within 1 s"}
    assert elapsed < DEADLINE_S + 1


def test_a_head_begun_in_the_same_packet_as_the_request_before_it_has_its_deadline(
    proxy: GunicornProcess,
) -> None:
    """gunicorn reads the start of the next head with the request before it: the head has
    begun, though no byte waits on the socket (found by benchmarks/soak.py)."""
    with connect(proxy) as client:
        started = time.monotonic()
        client.sendall(request("/api/chat", CHAT) + b"POST /api/chat HTTP/1.1\r\nHost: p")
        assert response(client)[0] == 200
        status, _, body = response(client)  # and no more of the second head
        elapsed = time.monotonic() - started
    assert status == 408
    assert json.loads(body) == {"error": "the request head did not arrive within 1 s"}
    assert elapsed < DEADLINE_S + 3  # not the keep-alive's time (75 s)


def test_an_idle_connection_keeps_alive_beyond_the_head_deadline(proxy: GunicornProcess) -> None:
    with connect(proxy) as client:
        client.sendall(request("/api/chat", CHAT))
        assert response(client)[0] == 200
        time.sleep(2 * DEADLINE_S)  # idle between requests: keep-alive's time, not a head's
        client.sendall(request("/api/chat", CHAT))
        assert response(client)[0] == 200


def test_stalled_heads_free_their_slots_for_other_clients(fake_url: str, tmp_path: Path) -> None:
    # A worker of 8 connections, all taken by clients that stop half-way through a head:
    # they are cut after 1 s, not after keep-alive's 75 s, and the ninth client is served.
    server = start(fake_url, tmp_path, "--worker-connections", "8")
    stalled = [connect(server) for _ in range(8)]
    try:
        for client in stalled:
            client.sendall(b"POST /api/chat HTTP/1.1\r\nHost: p")
        started = time.monotonic()
        with connect(server) as client:
            client.sendall(request("/api/chat", CHAT))
            status, _, body = response(client)
        elapsed = time.monotonic() - started
        assert status == 200
        assert json.loads(body)["model"] == "llmodel"
        assert elapsed < DEADLINE_S + 5
    finally:
        for client in stalled:
            client.close()
        server.stop()
    assert "Traceback" not in server.stderr()


# --------------------------------------------------------------------------------------
# Request bodies


@pytest.mark.parametrize("path", ["/api/chat", "/api/blobs/sha256:0"], ids=["read", "streamed"])
def test_a_body_that_stops_half_way_gets_408(proxy: GunicornProcess, path: str) -> None:
    with connect(proxy) as client:
        started = time.monotonic()
        client.sendall(request(path, CHAT[:20], length=len(CHAT)))
        status, _, body = response(client)
        elapsed = time.monotonic() - started
    assert status == 408
    assert json.loads(body) == {"error": "the request body did not arrive within 1 s"}
    assert DEADLINE_S <= elapsed < DEADLINE_S + 3


def test_a_body_sent_a_byte_at_a_time_is_cut_at_its_total_deadline(
    proxy: GunicornProcess,
) -> None:
    with connect(proxy) as client:
        started = time.monotonic()
        client.sendall(request("/v1/chat/completions", b"", length=len(CHAT)))
        for byte in CHAT:  # 0.2 s a byte: 16 s for the whole body
            client.sendall(bytes([byte]))
            if select.select([client], [], [], 0.2)[0]:
                break
        status, _, body = response(client)
        elapsed = time.monotonic() - started
    assert status == 408
    assert json.loads(body)["error"]["message"] == "the request body did not arrive within 1 s"
    assert elapsed < DEADLINE_S + 1


def test_a_bad_chunk_size_is_a_400_in_json(proxy: GunicornProcess) -> None:
    with connect(proxy) as client:
        client.sendall(
            b"POST /api/chat HTTP/1.1\r\nHost: proxy\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"zz\r\n{}\r\n0\r\n\r\n"
        )
        status, headers, body = response(client)
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"].startswith("invalid request body: Invalid chunk size")


# --------------------------------------------------------------------------------------
# What gunicorn refuses itself: JSON in the path's dialect, with gunicorn's status.


@pytest.mark.parametrize(
    ("sent", "status", "message_of"),
    [
        (b"GET /api/tags HTTP/1.1\r\nHost: p\r\nX-Big: " + b"x" * 9000 + b"\r\n\r\n", 431,
         lambda d: d["error"]),
        (b"POST /v1/messages HTTP/1.1\r\nHost: p\r\nX-Big: " + b"x" * 9000 + b"\r\n\r\n", 431,
         lambda d: d["type"] == "error" and d["error"]["message"]),
        (b"".join(b"X-%d: y\r\n" % n for n in range(200)).join(
            [b"GET /v1/models HTTP/1.1\r\n", b"\r\n"]), 431, lambda d: d["error"]["message"]),
        (b"GARBAGE\r\n\r\n", 400, lambda d: d["error"]),
        # gunicorn before 27 calls it an invalid request line: 400.
        (b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\n\r\n", (414, 400), lambda d: d["error"]),
        (b"POST /v1/chat/completions HTTP/1.1\r\nHost: p\r\nContent-Length: 1\r\n"
         b"Content-Length: 2\r\n\r\n", 400, lambda d: d["error"]["message"]),
    ],
    ids=["long-header", "long-header-anthropic", "too-many-headers", "bad-request-line",
         "long-request-line", "two-lengths"],
)  # fmt: skip
def test_gunicorns_refusals_are_json_in_the_paths_dialect(
    proxy: GunicornProcess, sent: bytes, status: int | tuple[int, ...], message_of: object
) -> None:
    with connect(proxy) as client:
        client.sendall(sent)
        got, headers, body = response(client)
    assert got in (status if isinstance(status, tuple) else (status,))
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert message_of(json.loads(body))  # type: ignore[operator]


# --------------------------------------------------------------------------------------
# Memory


def test_bodies_over_the_workers_budget_get_503_until_one_is_let_go(
    fake_url: str, tmp_path: Path
) -> None:
    server = start(fake_url, tmp_path, MAX_BODY_BYTES="1000", MAX_BUFFERED_BYTES="2000",
                   BODY_TIMEOUT_S="60")  # fmt: skip
    body = CHAT + b" " * (1000 - len(CHAT))
    holding = [connect(server) for _ in range(2)]
    try:
        for client in holding:  # each reserves its 1000 bytes, and sends 10
            client.sendall(request("/api/chat", body[:10], length=1000))
        refused = _until_status(server, body, 503)
        assert refused[1]["retry-after"] == "5"
        assert "retry shortly" in json.loads(refused[2])["error"]
        holding.pop().close()  # its body is let go
        assert _until_status(server, body, 200)[0] == 200
    finally:
        for client in holding:
            client.close()
        server.stop()
    assert "Traceback" not in server.stderr()


def _until_status(
    server: GunicornProcess, body: bytes, wanted: int
) -> tuple[int, dict[str, str], bytes]:
    """Send whole requests until one gets ``wanted`` (the worker takes the stalled ones in
    its own time); at most 50."""
    for _ in range(50):
        with connect(server) as client:
            client.sendall(request("/api/chat", body))
            answer = response(client)
        if answer[0] == wanted:
            return answer
        select.select([], [], [], 0.1)
    raise AssertionError(f"never {wanted}: last {answer!r}")
