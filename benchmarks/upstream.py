"""A fast fake Ollama for the proxy benchmark, and the same replies as a bare WSGI app.

Run it alone (``benchmarks/proxy.py`` starts it for you)::

    .venv/bin/python benchmarks/upstream.py --port 0     # prints "listening on http://..."

It is one asyncio process speaking HTTP/1.1 with keep-alive on a loopback port, and just
enough of Ollama (``ollama-api.md`` §2.2 and §3):

* ``POST /api/chat`` echoes the request's ``model`` byte for byte, as Ollama does. With
  ``"stream": false`` it answers one ``application/json; charset=utf-8`` document with a
  ``Content-Length``; with ``stream`` absent or true, ``application/x-ndjson`` records, one
  HTTP chunk each (Ollama flushes every record), then the ``"done":true`` line.
* ``GET /`` answers ``Ollama is running`` (for readiness probes); anything else 404.

The records are what Ollama writes (Go ``encoding/json``: compact, struct field order)::

    {"model":"<model>","created_at":"...","message":{"role":"assistant","content":"tok"},"done":false}

Query parameters, which real Ollama ignores and the proxy passes on, shape the reply:

* ``records=N``: tokens in the reply (default 8), i.e. records before the final line;
* ``delay_ms=D``: time between streamed lines (default 0); token ``k`` is due at
  ``start + k * D``, so ``N`` records take ``N * D`` whatever the scheduling jitter;
* ``framing=chunked``: a non-streaming reply without ``Content-Length``, chunked, as Go
  sends JSON over 2 KiB.

:func:`floor` is a WSGI app giving the same replies by itself (for gunicorn): what the
HTTP server alone costs, with no forwarding and no rewriting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from email.utils import formatdate
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

DEFAULT_RECORDS = 8
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
#: Tokens the fake model "generates", cycled; ``created_at`` and these vary, nothing else.
WORDS = (
    "The",
    " sky",
    " is",
    " blue",
    " because",
    " molecules",
    " in",
    " the",
    " air",
    " scatter",
    " short",
    " wavelengths",
    " of",
    " sunlight",
    " more",
    " than",
    " long",
    " ones",
    ",",
    " an",
    " effect",
    " called",
    " Rayleigh",
    " scattering",
    ".",
)
_WORD_JSON = tuple(json.dumps(word).encode() for word in WORDS)
_METRICS = (
    b',"total_duration":4883583458,"load_duration":1334875,"prompt_eval_count":26,'
    b'"prompt_eval_duration":342546000,"eval_count":'
)

_model_json: dict[str, bytes] = {}
_clock: tuple[int, str] = (-1, "")


def go_json_string(text: str) -> bytes:
    """``text`` as Go's ``encoding/json`` writes a string (HTML characters escaped)."""
    encoded = _model_json.get(text)
    if encoded is None:
        encoded = (
            json.dumps(text, ensure_ascii=False)
            .replace("<", "\\u003c")
            .replace(">", "\\u003e")
            .replace("&", "\\u0026")
            .replace("\u2028", "\\u2028")
            .replace("\u2029", "\\u2029")
            .encode()
        )
        if len(_model_json) > 1024:
            _model_json.clear()
        _model_json[text] = encoded
    return encoded


def created_at() -> bytes:
    """Now, in UTC, as Go's ``time.RFC3339Nano`` (trailing zeros of the fraction dropped)."""
    global _clock
    seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
    if _clock[0] != seconds:
        _clock = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    fraction = f".{nanoseconds:09d}".rstrip("0") if nanoseconds else ""
    return f"{_clock[1]}{fraction}Z".encode()


def record(model: bytes, index: int) -> bytes:
    """Streamed line ``index`` (from 0) for the Go-encoded ``model``."""
    return b"".join(
        (
            b'{"model":',
            model,
            b',"created_at":"',
            created_at(),
            b'","message":{"role":"assistant","content":',
            _WORD_JSON[index % len(WORDS)],
            b'},"done":false}\n',
        )
    )


def final_record(model: bytes, records: int, content: bytes = b'""') -> bytes:
    """The ``"done":true`` object (without its newline) after ``records`` tokens."""
    return b"".join(
        (
            b'{"model":',
            model,
            b',"created_at":"',
            created_at(),
            b'","message":{"role":"assistant","content":',
            content,
            b'},"done":true,"done_reason":"stop"',
            _METRICS,
            str(records).encode(),
            b',"eval_duration":4535599000}',
        )
    )


def document(model: bytes, records: int) -> bytes:
    """The non-streaming reply: all ``records`` tokens in one message."""
    text = "".join(WORDS[index % len(WORDS)] for index in range(records))
    return final_record(model, records, json.dumps(text).encode())


class ChatRequest:
    """What a chat request asks of the fake: its model and the shape of the reply."""

    __slots__ = ("delay_s", "is_chunked", "is_stream", "model", "records")

    def __init__(self, body: bytes, query: str) -> None:
        parsed = json.loads(body)
        if not isinstance(parsed, dict):
            raise ValueError("the body is not a JSON object")
        model = parsed.get("model")
        if not isinstance(model, str) or not model:
            raise ValueError("model is required")
        self.model = go_json_string(model)
        self.is_stream = parsed.get("stream", True) is not False
        self.records = DEFAULT_RECORDS
        self.delay_s = 0.0
        self.is_chunked = False
        for pair in query.split("&") if query else ():
            name, _, value = pair.partition("=")
            if name == "records":
                self.records = max(0, min(int(value), 1_000_000))
            elif name == "delay_ms":
                self.delay_s = max(0.0, min(float(value), 60_000.0)) / 1000
            elif name == "framing":
                self.is_chunked = value == "chunked"


# --- The asyncio server -------------------------------------------------------------------

_date: tuple[int, bytes] = (-1, b"")


def _date_header() -> bytes:
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, formatdate(now, usegmt=True).encode())
    return _date[1]


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


class _Connection(asyncio.Protocol):
    """One client connection: requests are answered in order, one at a time."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._busy = False  # a (delayed) stream is being written
        self._close_after = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._busy:
            self._serve()

    def _serve(self) -> None:
        while not self._busy and self._transport is not None and not self._close_after:
            request = self._parse()
            if request is None:
                return
            self._respond(*request)

    def _parse(self) -> tuple[str, str, bytes] | None:
        """Take one whole request off the buffer: method, target, body; None if partial."""
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                self._fail(431, "request head too large")
            return None
        lines = buffer[:end].decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            self._fail(400, "malformed request line")
            return None
        length, is_chunked, close = 0, False, version != "HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                is_chunked = "chunked" in value.lower()
            elif name == "connection":
                tokens = value.lower()
                close = "close" in tokens or (close and "keep-alive" not in tokens)
        start = end + 4
        if is_chunked:
            parsed = _dechunk(buffer, start)
            if parsed is None:
                return None
            body, consumed = parsed
        else:
            if length > MAX_BODY_BYTES:
                self._fail(413, "request body too large")
                return None
            if len(buffer) < start + length:
                return None
            body, consumed = bytes(buffer[start : start + length]), start + length
        del buffer[:consumed]
        self._close_after = close
        return method, target, body

    def _respond(self, method: str, target: str, body: bytes) -> None:
        path, _, query = target.partition("?")
        if path == "/api/chat" and method == "POST":
            try:
                request = ChatRequest(body, query)
            except ValueError as error:
                self._send(
                    400,
                    "application/json; charset=utf-8",
                    json.dumps({"error": str(error)}).encode(),
                )
                return
            if request.is_stream:
                self._stream(request)
            else:
                reply = document(request.model, request.records)
                self._send(200, "application/json; charset=utf-8", reply, request.is_chunked)
        elif path == "/" and method in ("GET", "HEAD"):
            self._send(200, "text/plain; charset=utf-8", b"Ollama is running")
        else:
            self._send(404, "text/plain", b"404 page not found")

    def _head(self, status: int, content_type: str, framing: bytes) -> bytes:
        reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}.get(status, b"Error")
        close = b"Connection: close\r\n" if self._close_after else b""
        return b"HTTP/1.1 %d %b\r\nContent-Type: %b\r\nDate: %b\r\n%b%b\r\n" % (
            status,
            reason,
            content_type.encode(),
            _date_header(),
            close,
            framing,
        )

    def _send(self, status: int, content_type: str, body: bytes, is_chunked: bool = False) -> None:
        assert self._transport is not None
        if is_chunked:
            framing = b"Transfer-Encoding: chunked\r\n"
            payload = _chunk(body) + b"0\r\n\r\n"
        else:
            framing, payload = b"Content-Length: %d\r\n" % len(body), body
        self._transport.write(self._head(status, content_type, framing) + payload)
        self._done()

    def _stream(self, request: ChatRequest) -> None:
        assert self._transport is not None
        head = self._head(200, "application/x-ndjson", b"Transfer-Encoding: chunked\r\n")
        model, records = request.model, request.records
        if request.delay_s <= 0:
            # Every record is its own write and HTTP chunk, as Ollama flushes each one.
            write = self._transport.write
            first = record(model, 0) if records else final_record(model, 0) + b"\n"
            write(head + _chunk(first))
            for index in range(1, records):
                write(_chunk(record(model, index)))
            if records:
                write(_chunk(final_record(model, records) + b"\n"))
            write(b"0\r\n\r\n")
            self._done()
            return
        self._busy = True
        self._transport.write(head)
        start = self._loop.time()
        self._next_line(request, start, 0)

    def _next_line(self, request: ChatRequest, start: float, index: int) -> None:
        self._timer = None
        if self._transport is None:
            return  # the client left: stop "generating"
        if index < request.records:
            self._transport.write(_chunk(record(request.model, index)))
            when = start + (index + 1) * request.delay_s
            self._timer = self._loop.call_at(when, self._next_line, request, start, index + 1)
            return
        self._transport.write(_chunk(final_record(request.model, index) + b"\n") + b"0\r\n\r\n")
        self._busy = False
        self._done()
        self._serve()

    def _done(self) -> None:
        if self._close_after and self._transport is not None:
            self._transport.close()

    def _fail(self, status: int, message: str) -> None:
        self._close_after = True
        self._send(status, "text/plain", message.encode())


def _dechunk(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """Decode a chunked request body starting at ``start``; None until it is all there."""
    parts: list[bytes] = []
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(buffer[position:line_end].split(b";", 1)[0], 16)
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", line_end)
            if trailer_end < 0:
                return None
            return b"".join(parts), trailer_end + 4
        data_start = line_end + 2
        if len(buffer) < data_start + size + 2:
            return None
        parts.append(bytes(buffer[data_start : data_start + size]))
        position = data_start + size + 2


async def serve(host: str, port: int, *, parent_pid: int | None = None) -> None:
    """Serve until SIGTERM or SIGINT (or until ``parent_pid`` is gone); print the URL."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Connection, host, port, backlog=4096, reuse_address=True)
    bound = server.sockets[0].getsockname()
    print(f"listening on http://{bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        while not stop.is_set():
            if parent_pid is not None and os.getppid() != parent_pid:
                break  # orphaned: whoever started us is gone
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)


def main(argv: list[str] | None = None) -> int:
    """Run the fake Ollama from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--parent-pid", type=int, help="exit when this process is gone")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, parent_pid=args.parent_pid))
    return 0


# --- The same replies as a WSGI app ---------------------------------------------------------


def floor(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes] | list[bytes]:
    """WSGI app answering like the fake Ollama, by itself: the server's own cost."""
    path = environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD", "GET")
    if path == "/api/chat" and method == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else environ["wsgi.input"].read()
        try:
            request = ChatRequest(body, environ.get("QUERY_STRING", ""))
        except ValueError as error:
            reply = json.dumps({"error": str(error)}).encode()
            headers = [
                ("Content-Type", "application/json; charset=utf-8"),
                ("Content-Length", str(len(reply))),
            ]
            start_response("400 Bad Request", headers)
            return [reply]
        if request.is_stream:
            start_response("200 OK", [("Content-Type", "application/x-ndjson")])
            return _floor_stream(request)
        reply = document(request.model, request.records)
        headers = [("Content-Type", "application/json; charset=utf-8")]
        if not request.is_chunked:
            headers.append(("Content-Length", str(len(reply))))
        start_response("200 OK", headers)
        return [reply]
    if path == "/" and method in ("GET", "HEAD"):
        reply = b"Ollama is running"
        start_response(
            "200 OK",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(reply)))],
        )
        return [reply]
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "18")])
    return [b"404 page not found"]


def _floor_stream(request: ChatRequest) -> Iterator[bytes]:
    start = time.monotonic()
    for index in range(request.records):
        if request.delay_s and index:
            # time.sleep is cooperative under gunicorn's gevent worker (monkey-patched).
            time.sleep(max(0.0, start + index * request.delay_s - time.monotonic()))
        yield record(request.model, index)
    if request.delay_s and request.records:
        time.sleep(max(0.0, start + request.records * request.delay_s - time.monotonic()))
    yield final_record(request.model, request.records) + b"\n"


if __name__ == "__main__":
    sys.exit(main())
