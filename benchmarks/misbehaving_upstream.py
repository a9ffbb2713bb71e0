"""A fake Ollama that misbehaves on request, for the soak test (``benchmarks/soak.py``).

Run it alone (``benchmarks/soak.py`` starts it for you)::

    .venv/bin/python benchmarks/misbehaving_upstream.py --port 0   # prints "listening on ..."

One asyncio process on a loopback port, speaking HTTP/1.1 with keep-alive. It answers
``POST /api/chat``, ``/api/generate`` and ``/v1/chat/completions`` as Ollama does, echoing
the ``model`` it is sent (records as in ``benchmarks/upstream.py``; ``"stream"`` is true by
default on the native endpoints and false on OpenAI's, as in Ollama): NDJSON records (one
HTTP chunk each), an SSE stream ending ``data: [DONE]``, or one JSON document with a
``Content-Length``. A body that is not a JSON object, or names no model, gets 400 in the
endpoint's error shape; ``GET /`` answers ``Ollama is running``; anything else 404.

Query parameters, which real Ollama ignores and the proxy passes on, choose what happens,
so the client that sent the request knows what to expect:

* ``fault=``: ``ok`` (the default) behaves well; ``reset`` sends the head and two records
  (or half the document), then resets the connection (``SO_LINGER`` 0); ``stall`` sends
  the head and two records (a document: nothing) and then nothing for ``--stall-s``
  seconds before closing; ``error500`` answers 500 with ``{"error": ...}`` (OpenAI's error
  object on ``/v1``); ``garbage`` sends bytes that are not HTTP, then closes; ``close``
  closes without answering;
* ``records=N``: tokens in the reply (default 8); ``delay_ms=D``: time between streamed
  records (default 0); ``hold_ms=H``: time before the reply starts (default 0);
* ``tag=T``: count this request under ``T`` in the statistics.

``GET /_soak/stats`` answers, as JSON, the connections open now and accepted so far, and
per tag: requests ``received``, replies ``completed`` (written in full), and replies whose
connection the peer closed before they were complete (``peer_left``), with how long after
the request that was (``peer_left_ms_max``, ``peer_left_ms_sum``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import struct
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from functools import partial
from typing import Any

from upstream import WORDS, created_at, document, final_record, go_json_string, record

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_RECORDS = 8
#: Records sent before a stream is reset or stalls.
RECORDS_BEFORE_FAULT = 2
FAULTS = ("ok", "reset", "stall", "error500", "garbage", "close")
ENDPOINTS = ("/api/chat", "/api/generate", "/v1/chat/completions")
STATS_PATH = "/_soak/stats"
GARBAGE_PREFIX = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"
_WORD_JSON = tuple(json.dumps(word).encode() for word in WORDS)
_GENERATE_METRICS = (
    b',"context":[1,2,3],"total_duration":4883583458,"load_duration":1334875,'
    b'"prompt_eval_count":26,"prompt_eval_duration":342546000,"eval_count":'
)


# --- The replies ----------------------------------------------------------------------------


def generate_record(model: bytes, index: int) -> bytes:
    """Streamed ``/api/generate`` line ``index``."""
    return b"".join(
        (
            b'{"model":',
            model,
            b',"created_at":"',
            created_at(),
            b'","response":',
            _WORD_JSON[index % len(WORDS)],
            b',"done":false}\n',
        )
    )


def generate_final(model: bytes, records: int, response: bytes = b'""') -> bytes:
    """The ``"done":true`` object of ``/api/generate`` (without its newline)."""
    return b"".join(
        (
            b'{"model":',
            model,
            b',"created_at":"',
            created_at(),
            b'","response":',
            response,
            b',"done":true,"done_reason":"stop"',
            _GENERATE_METRICS,
            str(records).encode(),
            b',"eval_duration":4535599000}',
        )
    )


def _text(records: int) -> bytes:
    return json.dumps("".join(WORDS[index % len(WORDS)] for index in range(records))).encode()


def openai_chunk(model: bytes, index: int | None, created: int) -> bytes:
    """One SSE event of an OpenAI chat stream; ``index`` None for the last (finish_reason)."""
    if index is None:
        delta, reason = b"{}", b'"stop"'
    else:
        role = b'"role":"assistant",' if index == 0 else b""
        delta, reason = b"{" + role + b'"content":' + _WORD_JSON[index % len(WORDS)] + b"}", b"null"
    return b"".join(
        (
            b'data: {"id":"chatcmpl-517","object":"chat.completion.chunk","created":',
            str(created).encode(),
            b',"model":',
            model,
            b',"system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":',
            delta,
            b',"finish_reason":',
            reason,
            b"}]}\n\n",
        )
    )


def openai_document(model: bytes, records: int, created: int) -> bytes:
    """The non-streaming OpenAI chat completion."""
    return b"".join(
        (
            b'{"id":"chatcmpl-517","object":"chat.completion","created":',
            str(created).encode(),
            b',"model":',
            model,
            b',"system_fingerprint":"fp_ollama","choices":[{"index":0,"message":'
            b'{"role":"assistant","content":',
            _text(records),
            b'},"finish_reason":"stop"}],"usage":{"prompt_tokens":26,"completion_tokens":',
            str(records).encode(),
            b',"total_tokens":',
            str(records + 26).encode(),
            b"}}",
        )
    )


def error_document(path: str, status: int, message: str) -> bytes:
    """An error as the endpoint's clients read it: Ollama's, or OpenAI's error object."""
    if path.startswith("/v1/"):
        kind = "invalid_request_error" if status == 400 else "api_error"
        error = {"message": message, "type": kind, "param": None, "code": None}
        return json.dumps({"error": error}, separators=(",", ":")).encode()
    return json.dumps({"error": message}, separators=(",", ":")).encode()


@dataclass
class Reply:
    """What a well-behaved upstream sends for one request: a stream of pieces or a document."""

    content_type: str
    pieces: list[Callable[[], bytes]]  # made when sent: created_at is the time of sending
    is_stream: bool


def plan_reply(path: str, model: bytes, is_stream: bool, records: int) -> Reply:
    """The reply for ``path``; ``model`` as Go's ``encoding/json`` writes it."""
    created = int(time.time())
    if path == "/v1/chat/completions":
        if not is_stream:
            return Reply(
                "application/json", [partial(openai_document, model, records, created)], False
            )
        pieces: list[Callable[[], bytes]] = [
            partial(openai_chunk, model, index, created) for index in range(records)
        ]
        pieces.append(partial(_openai_end, model, created))
        return Reply("text/event-stream", pieces, True)
    line: Callable[[bytes, int], bytes]
    final: Callable[[bytes, int], bytes]
    if path == "/api/generate":
        line, final = generate_record, generate_final
        full = partial(generate_final, model, records, _text(records))
    else:
        line, final = record, final_record
        full = partial(document, model, records)
    if not is_stream:
        return Reply("application/json; charset=utf-8", [full], False)
    pieces = [partial(line, model, index) for index in range(records)]
    pieces.append(partial(_final_line, final, model, records))
    return Reply("application/x-ndjson", pieces, True)


def _openai_end(model: bytes, created: int) -> bytes:
    return openai_chunk(model, None, created) + b"data: [DONE]\n\n"


def _final_line(final: Callable[[bytes, int], bytes], model: bytes, records: int) -> bytes:
    return final(model, records) + b"\n"


# --- The statistics -------------------------------------------------------------------------


class Stats:
    """What the soak asks at the end: connections, and what happened to tagged requests."""

    def __init__(self) -> None:
        self.open = 0
        self.accepted = 0
        self.tags: defaultdict[str, dict[str, float]] = defaultdict(
            lambda: dict.fromkeys(
                ("received", "completed", "peer_left", "peer_left_ms_max", "peer_left_ms_sum"),
                0,
            )
        )

    def count(self, tag: str, event: str, after_s: float = 0.0) -> None:
        if not tag:
            return
        counts = self.tags[tag]
        counts[event] += 1
        if event == "peer_left":
            after_ms = round(after_s * 1000, 1)
            counts["peer_left_ms_max"] = max(counts["peer_left_ms_max"], after_ms)
            counts["peer_left_ms_sum"] = round(counts["peer_left_ms_sum"] + after_ms, 1)

    def document(self) -> bytes:
        return json.dumps(
            {"open": self.open, "accepted": self.accepted, "tags": self.tags}, sort_keys=True
        ).encode()


# --- The asyncio server ---------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: bytes


class _Connection(asyncio.Protocol):
    """One connection from the proxy: requests answered in order, one at a time."""

    def __init__(self, stats: Stats, stall_s: float, reset_after_s: float, rng: random.Random):
        self._loop = asyncio.get_running_loop()
        self._stats = stats
        self._stall_s = stall_s
        self._reset_after_s = reset_after_s
        self._rng = rng
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._close_after = False
        self._timer: asyncio.TimerHandle | None = None
        # The reply being written: its tag and when its request came.
        self._busy = False
        self._tag = ""
        self._started = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._stats.open += 1
        self._stats.accepted += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._stats.open -= 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._busy:
            self._stats.count(self._tag, "peer_left", self._loop.time() - self._started)
            self._busy = False
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._serve()

    def _serve(self) -> None:
        while not self._busy and self._transport is not None and not self._close_after:
            request = self._parse()
            if request is None:
                return
            self._respond(request)

    def _parse(self) -> Request | None:
        """Take one whole request off the buffer; None while it is partial."""
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
        length, close = 0, version != "HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                # The proxy sends the bodies of these endpoints with a length.
                self._fail(501, "chunked request bodies are not supported here")
                return None
            elif name == "connection":
                tokens = value.lower()
                close = "close" in tokens or (close and "keep-alive" not in tokens)
        if length > MAX_BODY_BYTES:
            self._fail(413, "request body too large")
            return None
        start = end + 4
        if len(buffer) < start + length:
            return None
        body = bytes(buffer[start : start + length])
        del buffer[: start + length]
        self._close_after = close
        path, _, query_string = target.partition("?")
        query = dict(pair.partition("=")[::2] for pair in query_string.split("&") if pair)
        return Request(method, path, query, body)

    def _respond(self, request: Request) -> None:
        path = request.path
        if path == STATS_PATH and request.method == "GET":
            self._send(200, "application/json", self._stats.document())
        elif path in ENDPOINTS and request.method == "POST":
            self._inference(request)
        elif path == "/" and request.method in ("GET", "HEAD"):
            self._send(200, "text/plain; charset=utf-8", b"Ollama is running")
        else:
            self._send(404, "text/plain", b"404 page not found")

    def _inference(self, request: Request) -> None:
        path, query = request.path, request.query
        try:
            parsed: Any = json.loads(request.body)
        except ValueError as error:
            self._send(400, "application/json", error_document(path, 400, f"invalid JSON: {error}"))
            return
        model = parsed.get("model") if isinstance(parsed, dict) else None
        if not isinstance(model, str) or not model:
            self._send(400, "application/json", error_document(path, 400, "model is required"))
            return
        is_stream = parsed.get("stream", not path.startswith("/v1/")) is not False
        try:
            records = max(0, min(int(query.get("records", DEFAULT_RECORDS)), 100_000))
            delay_s = max(0.0, min(float(query.get("delay_ms", 0)), 60_000.0)) / 1000
            hold_s = max(0.0, min(float(query.get("hold_ms", 0)), 60_000.0)) / 1000
        except ValueError:
            self._send(400, "application/json", error_document(path, 400, "bad query"))
            return
        fault = query.get("fault", "ok")
        if fault not in FAULTS:
            self._send(400, "application/json", error_document(path, 400, f"no fault {fault!r}"))
            return
        reply = plan_reply(path, go_json_string(model), is_stream, records)
        self._busy, self._tag, self._started = True, query.get("tag", ""), self._loop.time()
        self._stats.count(self._tag, "received")
        self._later(hold_s, self._start_reply, path, reply, fault, delay_s)

    def _later(self, delay_s: float, callback: Callable[..., None], *args: Any) -> None:
        if delay_s > 0:
            self._timer = self._loop.call_later(delay_s, callback, *args)
        else:
            callback(*args)

    def _start_reply(self, path: str, reply: Reply, fault: str, delay_s: float) -> None:
        self._timer = None
        transport = self._transport
        if transport is None:
            return
        if fault in ("close", "garbage"):
            self._busy = False  # the fault is the reply: not the peer leaving
        if fault == "close":
            transport.close()
        elif fault == "garbage":
            transport.write(
                b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + self._rng.randbytes(200)
            )
            transport.close()
        elif fault == "error500":
            body = error_document(path, 500, "llama runner process has terminated: signal: killed")
            self._send(500, "application/json; charset=utf-8", body)
        elif fault == "stall" and not reply.is_stream:
            self._later(self._stall_s, self._close)
        elif reply.is_stream:
            head = self._head(200, reply.content_type, b"Transfer-Encoding: chunked\r\n")
            transport.write(head)
            self._next_piece(reply, fault, delay_s, 0)
        else:
            data = reply.pieces[0]()
            head = self._head(200, reply.content_type, b"Content-Length: %d\r\n" % len(data))
            if fault == "reset":
                transport.write(head + data[: len(data) // 2])
                self._later(self._reset_after_s, self._reset)
            else:
                transport.write(head + data)
                self._complete()

    def _next_piece(self, reply: Reply, fault: str, delay_s: float, index: int) -> None:
        self._timer = None
        transport = self._transport
        if transport is None:
            return
        if index == RECORDS_BEFORE_FAULT and fault in ("reset", "stall"):
            if fault == "reset":
                self._later(self._reset_after_s, self._reset)
            else:
                self._later(self._stall_s, self._close)
            return
        if index == len(reply.pieces):
            transport.write(b"0\r\n\r\n")
            self._complete()
            return
        data = reply.pieces[index]()
        transport.write(b"%x\r\n%b\r\n" % (len(data), data))
        self._later(delay_s, self._next_piece, reply, fault, delay_s, index + 1)

    def _complete(self) -> None:
        self._stats.count(self._tag, "completed")
        self._busy = False
        if self._close_after and self._transport is not None:
            self._transport.close()
            return
        self._loop.call_soon(self._serve)

    def _reset(self) -> None:
        self._timer = None
        if self._transport is None:
            return
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._busy = False  # the fault was the reply: not the peer leaving
        self._transport.abort()

    def _close(self) -> None:
        self._timer = None
        self._busy = False
        if self._transport is not None:
            self._transport.close()

    def _head(self, status: int, content_type: str, framing: bytes) -> bytes:
        close = b"Connection: close\r\n" if self._close_after else b""
        return b"HTTP/1.1 %d %b\r\nContent-Type: %b\r\nDate: %b\r\n%b%b\r\n" % (
            status,
            _REASONS.get(status, b"Error"),
            content_type.encode(),
            formatdate(usegmt=True).encode(),
            close,
            framing,
        )

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        if self._transport is None:
            return
        framing = b"Content-Length: %d\r\n" % len(body)
        self._transport.write(self._head(status, content_type, framing) + body)
        if self._busy:
            self._complete()
        elif self._close_after:
            self._transport.close()

    def _fail(self, status: int, message: str) -> None:
        self._close_after = True
        self._send(status, "text/plain", message.encode())


_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    413: b"Request Entity Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
}


async def serve(
    host: str,
    port: int,
    *,
    stall_s: float,
    reset_after_s: float,
    seed: int,
    parent_pid: int | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT (or until ``parent_pid`` is gone); print the URL."""
    loop = asyncio.get_running_loop()
    stats = Stats()
    rng = random.Random(seed)
    server = await loop.create_server(
        lambda: _Connection(stats, stall_s, reset_after_s, rng),
        host,
        port,
        backlog=1024,
        reuse_address=True,
    )
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
    """Run the misbehaving fake Ollama from the command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--stall-s", type=float, default=4.0, help="how long fault=stall lasts")
    parser.add_argument(
        "--reset-after-ms", type=float, default=50.0, help="pause before fault=reset's reset"
    )
    parser.add_argument("--seed", type=int, default=11, help="for fault=garbage's bytes")
    parser.add_argument("--parent-pid", type=int, help="exit when this process is gone")
    args = parser.parse_args(argv)
    asyncio.run(
        serve(
            args.host,
            args.port,
            stall_s=args.stall_s,
            reset_after_s=args.reset_after_ms / 1000,
            seed=args.seed,
            parent_pid=args.parent_pid,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
