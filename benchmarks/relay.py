"""The least a Python relay under gunicorn can do: yardsticks for the proxy, not proxies.

``app`` sends each request on to ``OLLAMA_DEFAULT_UPSTREAM`` with a fixed minimal head, over
kept-alive sockets, and relays the reply as llhttp reads it: no rewriting, no header
handling, no error handling, no timeouts. ``rewriting_app`` is the same relay plus the
rewriting any proxy of aliases must do, with the package's own pure rules: the request's
alias replaced by ``OLLAMA_DEFAULT_TARGET`` (:func:`~ollama_default.core.request_body.decide_json`),
the alias restored in the reply through the package's own response plan
(:func:`~ollama_default.core.rewriting.plan_response`: record by record in a stream, a JSON
document whole with its ``Content-Length`` set anew). Measured in the proxy's place
(``benchmarks/proxy.py --relay`` does), they show how much of the proxy's cost is relaying
at all (the HTTP client's sockets and parsing, in a gevent worker), how much the rewriting
adds, and how much is the rest of what the proxy does (headers, path checks, timeouts,
errors, the WSGI layering)::

    PYTHONPATH=benchmarks .venv/bin/python benchmarks/proxy.py --worker-class gevent \\
        --proxy-app relay:rewriting_app

The clients send the alias and the fake upstream echoes the model it is sent, so ``app``'s
replies pass the benchmark's checks without any rewriting, and ``rewriting_app``'s pass
because it restores the alias the upstream never saw.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httptools

from ollama_default.core.aliases import AliasTable
from ollama_default.core.endpoints import find_endpoint
from ollama_default.core.framing import MAX_RECORD_BYTES
from ollama_default.core.request_body import UNCHANGED, decide_json
from ollama_default.core.response_body import NameRestorer
from ollama_default.core.rewriting import ResponsePlan, plan_response

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

_UPSTREAM = urlsplit(os.environ.get("OLLAMA_DEFAULT_UPSTREAM", "http://127.0.0.1:11434"))
_ADDRESS = (_UPSTREAM.hostname or "127.0.0.1", _UPSTREAM.port or 80)
_ALIASES = AliasTable(
    {
        os.environ.get("OLLAMA_DEFAULT_ALIAS", "llmodel"): os.environ.get(
            "OLLAMA_DEFAULT_TARGET", "aya-expanse:8b-q8_0"
        )
    }
)
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

    def status(self) -> str:
        return f"{self.parser.get_status_code()} OK"


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
    """Relay one request; the reply's pieces go out as they arrive."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    sock, reply = _exchange(environ, environ["wsgi.input"].read(length))
    start_response(reply.status(), reply.headers)
    return _pieces(sock, reply)


def rewriting_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Relay one request with the alias rewritten both ways."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    endpoint = find_endpoint(environ["PATH_INFO"])
    decision = decide_json(body, endpoint, _ALIASES) if endpoint and body else UNCHANGED
    sock, reply = _exchange(environ, body if decision.body is None else decision.body)
    if endpoint is None or not decision.renames:
        start_response(reply.status(), reply.headers)
        return _pieces(sock, reply)
    restorer = NameRestorer(decision.renames, endpoint.response_fields)
    method, status = environ["REQUEST_METHOD"], reply.status()
    plan = plan_response(method, status, reply.headers, restorer, MAX_RECORD_BYTES)
    return _rewritten(_pieces(sock, reply), plan, status, start_response)


def _exchange(environ: WSGIEnvironment, body: bytes) -> tuple[socket.socket, _Reply]:
    """Send the request on; return the socket and the reply, its head read."""
    sock = _idle.pop() if _idle else socket.create_connection(_ADDRESS)
    head = (
        f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} HTTP/1.1\r\n"
        f"Host: {_UPSTREAM.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode("latin-1") + body)
    reply = _Reply()
    while not reply.head_done:
        reply.parser.feed_data(sock.recv(65536))
    return sock, reply


def _pieces(sock: socket.socket, reply: _Reply) -> Iterator[bytes]:
    while True:
        if reply.pieces:
            yield b"".join(reply.pieces)
            reply.pieces.clear()
        if reply.done:
            _idle.append(sock)
            return
        reply.parser.feed_data(sock.recv(65536))


def _rewritten(
    pieces: Iterator[bytes], plan: ResponsePlan, status: str, start_response: StartResponse
) -> Iterator[bytes]:
    """Relay through the package's response plan; the head goes out with the first bytes
    (or at the end), once the plan has settled it."""
    started = False
    for piece in pieces:
        if output := plan.feed(piece):
            if not started:
                start_response(status, plan.headers)
                started = True
            yield output
    output = plan.finish()
    if not started:
        start_response(status, plan.headers)
    if output:
        yield output
