"""The least a Python relay under gunicorn can do: a yardstick for the proxy, not a proxy.

It sends each request on to ``OLLAMA_DEFAULT_UPSTREAM`` with a fixed minimal head, over
kept-alive sockets, and relays the reply as llhttp reads it: no rewriting, no header
handling, no error handling, no timeouts. Measured in the proxy's place, it shows how much of
the proxy's cost is relaying at all (the HTTP client's sockets and parsing, in a gevent
worker) and how much is what the proxy does on top::

    PYTHONPATH=benchmarks .venv/bin/python benchmarks/proxy.py --worker-class gevent \\
        --proxy-app relay:app

The clients send the alias and the fake upstream echoes the model it is sent, so its replies
pass the benchmark's checks without any rewriting.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httptools

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

_UPSTREAM = urlsplit(os.environ.get("OLLAMA_DEFAULT_UPSTREAM", "http://127.0.0.1:11434"))
_ADDRESS = (_UPSTREAM.hostname or "127.0.0.1", _UPSTREAM.port or 80)
_HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding"}
_idle: deque[socket.socket] = deque()


class _Reply:
    """httptools callbacks for one reply."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[str, str]] = []
        self.pieces: list[bytes] = []
        self.head_done = self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in _HOP_BY_HOP:
            self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.pieces.append(body)

    def on_message_complete(self) -> None:
        self.done = True


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
    """Relay one request; the reply's pieces go out as they arrive."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    sock = _idle.pop() if _idle else socket.create_connection(_ADDRESS)
    head = (
        f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} HTTP/1.1\r\n"
        f"Host: {_UPSTREAM.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    sock.sendall(head.encode("latin-1") + body)
    reply = _Reply()
    while not reply.head_done:
        reply.parser.feed_data(sock.recv(65536))
    start_response(f"{reply.parser.get_status_code()} OK", reply.headers)
    return _pieces(sock, reply)


def _pieces(sock: socket.socket, reply: _Reply) -> Iterator[bytes]:
    while True:
        if reply.pieces:
            yield b"".join(reply.pieces)
            reply.pieces.clear()
        if reply.done:
            _idle.append(sock)
            return
        reply.parser.feed_data(sock.recv(65536))
