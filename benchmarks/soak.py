"""A bounded soak of ``ollama-default serve``: mixed and hostile traffic, then a leak check.

Run from the project root (a default run takes about 2.5 minutes)::

    .venv/bin/python benchmarks/soak.py                  # 120 s of traffic
    .venv/bin/python benchmarks/soak.py --duration 30    # a quick run
    .venv/bin/python benchmarks/soak.py --strict         # the findings fail it too
    .venv/bin/python benchmarks/soak.py --proxy-env GUNICORN_CMD_ARGS='--keep-alive 2'

``--help`` lists every option. Everything runs on 127.0.0.1, on ports the kernel picks:

* **the upstream**: ``benchmarks/misbehaving_upstream.py``, a fake Ollama that misbehaves
  when a request's query asks it to: it resets the connection mid-stream, stalls longer than
  the proxy's read timeout, answers 500, sends bytes that are not HTTP, or closes without
  answering;
* **the proxy**: the ``.venv``'s ``ollama-default serve --bind fd://N --upstream URL --alias
  llmodel=aya-expanse:8b-q8_0`` (2 gevent workers), with ``OLLAMA_DEFAULT_READ_TIMEOUT_S``
  and the client deadlines ``OLLAMA_DEFAULT_HEAD_TIMEOUT_S`` and ``_BODY_TIMEOUT_S`` set
  low (``--read-timeout-s``, 2 s) so that stalls end within the run, and
  ``OLLAMA_DEFAULT_MAX_BODY_BYTES`` 1 MiB (``--max-body-bytes``);
* **the clients**: ``--clients`` threads (24), each picking what to send next with its own
  seeded RNG (``--seed``), by the shares of ``--mix``: normal chats to ``/api/chat``,
  ``/api/generate`` and ``/v1/chat/completions``, streamed or not, on keep-alive
  connections, each asking the upstream for a fault by the shares of ``--faults``; slow
  clients, sending their body in small pieces with pauses; clients that stall in the middle
  of a request head or body and leave a few seconds later; bodies twice the proxy's limit,
  with a ``Content-Length`` or chunked; clients that leave mid-stream, or before the first
  byte of a non-streamed reply; malformed requests (bad JSON, a ``Content-Length`` that is
  not a number, a body shorter than its ``Content-Length``). Every socket has a timeout
  (``--client-timeout-s``) and every wait a deadline.

Every outcome is classified: ``ok`` (the whole reply, naming ``llmodel`` everywhere), the
status of any other answer (``400``, ``413``, ``500``, ``502``, ``504`` ...), ``cut-502``
and ``cut-504`` (a stream the proxy ended with an error record, as Ollama ends a failed
stream, for a broken or a silent upstream), ``truncated`` (the connection ended inside a
reply), ``garbled`` (a 200 whose body is not the reply), ``wrong-model``, ``left`` (the
client left on purpose), ``held`` (a stalled client's connection was still open, unanswered,
when it gave up), ``closed`` (closed without an answer), ``client-timeout``, ``reset`` (the
connection was reset), ``other``. Each must be what was expected for what was sent (say,
``cut-504`` for a stream whose upstream stalls, ``413`` for an oversized body); anything
else is a **mismatch**. A few weaknesses of today's proxy are known and counted apart as
**findings**, each explained in the report: they fail the run only with ``--strict``. The
upstream counts what it saw of the tagged requests too, which shows whether the proxy
closed the upstream connection when its client left.

The proxy's processes (the gunicorn master and its workers) are sampled from ``/proc``
while idle, twice: after ``--warmup`` seconds of the same traffic (the start), and after
``--duration`` seconds more (the end). Each sample waits until every client has finished,
then 6 s more (gevent's idle DNS threads, which resolve even 127.0.0.1 for a worker's
connections, exit after ``GEVENT_THREADPOOL_IDLE_TASK_TIMEOUT``, 5 s), then until the
figures stop changing (within ``--settle-s``). It prints their open file descriptors
(sockets to clients, idle keep-alive connections to the upstream, upstream connections
closing, and the rest), threads, and resident memory. Targets: no worker died or was
replaced; no growth of file descriptors other than idle upstream connections, and those at
most one per client (the pool keeps what the peak concurrency opened; the upstream's own
count of open connections must match); no growth of threads; resident memory within
``--rss-tolerance`` (10 %) of the start, for each process: a worker's RSS moves by a MiB or
two as the allocator keeps freed arenas and caches fill, while a leak of a kilobyte a
request passes 10 % of a 30 MiB worker within a default run (the report says how small a
leak per request the run would have shown). The proxy's log is scanned for tracebacks.

The exit status is 0 only when there was no mismatch, nothing grew and the proxy logged no
traceback (and, with ``--strict``, there was no finding); 1 otherwise, 2 when a server did
not start, 130 on Ctrl-C. Every server the script starts is stopped on exit, Ctrl-C or
error.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from misbehaving_upstream import ENDPOINTS, FAULTS, STATS_PATH
from proxy import Server, _die_with_parent, _load_average, _process_tree, _read_line

from ollama_default.proxy.cli import SERVE_DEFAULTS

HOST = "127.0.0.1"
ALIAS = "llmodel"
TARGET = "aya-expanse:8b-q8_0"
TARGET_HEADER = "x-ollama-default-target"
BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
MAX_HEAD_BYTES = 64 * 1024
READ_BYTES = 64 * 1024
START_TIMEOUT_S = 30.0
#: Bounds on every loop: requests per client and phase, polls of a settling proxy.
MAX_REQUESTS_PER_CLIENT = 100_000
SETTLE_POLL_S = 0.25
#: gevent's default for ``GEVENT_THREADPOOL_IDLE_TASK_TIMEOUT``: the threads that resolve
#: names for a worker (as ``socket.create_connection`` does, even for 127.0.0.1) exit after
#: this long idle. A sample of an idle proxy waits that out, and a second more.
GEVENT_IDLE_THREAD_S = 5.0
#: How long after its phase a client may still be finishing what it started.
CLIENT_GRACE_S = 5.0
#: What a slow client sends its body in, and the pause between the pieces.
SLOW_PIECES = 6
SLOW_PAUSE_S = (0.02, 0.15)
#: A client leaving a non-streamed reply leaves this soon; the upstream holds its answer
#: for this share of the proxy's read timeout (longer, and the proxy would give up first).
LEAVE_AFTER_S = 0.25
LEAVE_HOLD_SHARE = 0.75
#: A stream left mid-way: records, and the time between them.
LEAVE_STREAM_RECORDS = 40
LEAVE_STREAM_DELAY_MS = 50
PROMPT = "Why is the sky blue?"

DEFAULT_MIX = {
    "normal": 70,
    "slow": 6,
    "stall-head": 2,
    "stall-body": 2,
    "oversized": 5,
    "leave-stream": 5,
    "leave-doc": 5,
    "malformed": 5,
}
DEFAULT_FAULTS = {"ok": 60, "reset": 8, "stall": 8, "error500": 8, "garbage": 8, "close": 8}


# --- What is sent, and what must come back ---------------------------------------------------


@dataclass(frozen=True)
class Expectation:
    """The outcomes that are right for one kind of request, and the known wrong ones."""

    expected: frozenset[str]
    #: outcome -> the finding it shows about today's proxy.
    known: Mapping[str, str] = field(default_factory=dict)


HELD_BODY = (
    "a client that stops sending in the middle of its body holds its connection and its "
    "greenlet until it leaves: the proxy has no deadline for reading a request body"
)
HELD_HEAD = (
    "a client that stops sending in the middle of its request head holds its connection "
    f"until gunicorn's keepalive timeout ({SERVE_DEFAULTS['keepalive']} s in serve) ends the wait"
)
GARBLED_DOCUMENT = (
    "an upstream reset in the middle of a non-streamed reply reaches the client as a 200 "
    "with the cut document and a Content-Length to match, kept alive (the alias unrestored "
    "where the cut document cannot be parsed: /v1/chat/completions names the target); only "
    "the proxy's access log says the reply was cut"
)
_NORMAL = {
    ("stream", "ok"): "ok",
    ("stream", "reset"): "cut-502",
    ("stream", "stall"): "cut-504",
    ("document", "ok"): "ok",
    ("document", "reset"): "502",
    ("document", "stall"): "504",
}
_KNOWN_NORMAL = {("document", "reset"): {"garbled": GARBLED_DOCUMENT}}
GAVE_UP = frozenset({"408", "400", "closed"})


def _expectations() -> dict[str, Expectation]:
    table: dict[str, Expectation] = {}
    for shape in ("stream", "document"):
        for fault in FAULTS:
            expected = _NORMAL.get((shape, fault), "500" if fault == "error500" else "502")
            known = _KNOWN_NORMAL.get((shape, fault), {})
            table[f"{shape}, upstream {fault}"] = Expectation(frozenset({expected}), known)
    table.update(
        {
            "slow body": Expectation(frozenset({"ok"})),
            # A server that gives up on a stalled client answers 408 (or 400), or closes.
            "stall mid-head": Expectation(GAVE_UP, {"held": HELD_HEAD}),
            "stall mid-body": Expectation(GAVE_UP, {"held": HELD_BODY}),
            "oversized, Content-Length": Expectation(frozenset({"413"})),
            "oversized, chunked": Expectation(frozenset({"413"})),
            "leave mid-stream": Expectation(frozenset({"left"})),
            "leave before 1st byte": Expectation(frozenset({"left"})),
            "bad JSON": Expectation(frozenset({"400"})),
            "bad Content-Length": Expectation(frozenset({"400"})),
            "short body": Expectation(frozenset({"400"})),
        }
    )
    return table


EXPECTATIONS = _expectations()
#: The tagged requests the upstream counts, and the findings its counts can show.
LEAVE_TAGS = {"leave mid-stream": "leave-stream", "leave before 1st byte": "leave-doc"}


@dataclass(frozen=True)
class Plan:
    """One request a client sends."""

    kind: str  # a key of --mix
    label: str  # a key of EXPECTATIONS: a row of the report
    endpoint: str = "/api/chat"
    is_stream: bool = True
    fault: str = "ok"
    records: int = 8


def choose_plan(rng: random.Random, mix: Mapping[str, float], faults: Mapping[str, float]) -> Plan:
    """What to send next, by the shares of ``mix`` and ``faults``."""
    kind = rng.choices(list(mix), weights=list(mix.values()))[0]
    endpoint = rng.choice(ENDPOINTS)
    is_stream = rng.random() < 0.5
    records = rng.randint(3, 24)
    if kind == "normal":
        fault = rng.choices(list(faults), weights=list(faults.values()))[0]
        label = f"{'stream' if is_stream else 'document'}, upstream {fault}"
        return Plan(kind, label, endpoint, is_stream, fault, records)
    if kind == "slow":
        return Plan(kind, "slow body", endpoint, is_stream, "ok", records)
    if kind == "oversized":
        shape = rng.choice(("Content-Length", "chunked"))
        return Plan(kind, f"oversized, {shape}", endpoint)
    if kind == "malformed":
        label = rng.choice(("bad JSON", "bad Content-Length", "short body"))
        return Plan(kind, label, endpoint)
    labels = {
        "stall-head": "stall mid-head",
        "stall-body": "stall mid-body",
        "leave-stream": "leave mid-stream",
        "leave-doc": "leave before 1st byte",
    }
    return Plan(kind, labels[kind], endpoint, kind == "leave-stream", "ok", records)


def request_body(plan: Plan, *, stream: bool | None = None, padding: int = 0) -> bytes:
    """The JSON body for ``plan``'s endpoint; ``padding`` bytes of prompt make it large."""
    content = PROMPT + "x" * padding
    if plan.endpoint == "/api/generate":
        document: dict[str, Any] = {"model": ALIAS, "prompt": content}
    else:
        document = {"model": ALIAS, "messages": [{"role": "user", "content": content}]}
    document["stream"] = plan.is_stream if stream is None else stream
    return json.dumps(document).encode()


def request_head(target: str, headers: Mapping[str, str]) -> bytes:
    """A POST's head, with ``headers``."""
    lines = [f"POST {target} HTTP/1.1", "Host: soak", "User-Agent: ollama-default-soak"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _target(plan: Plan, **query: object) -> str:
    pairs = {"fault": plan.fault, "records": plan.records, **query}
    return plan.endpoint + "?" + "&".join(f"{name}={value}" for name, value in pairs.items())


# --- A minimal HTTP/1.1 client on blocking sockets ---------------------------------------------


class NoAnswer(Exception):
    """The connection closed before a whole response head came."""


class Malformed(Exception):
    """What came back is not an HTTP/1.1 response."""


class Connection:
    """One client connection; every read waits at most ``timeout_s`` and until ``deadline``."""

    def __init__(self, port: int, timeout_s: float) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout_s = timeout_s
        self.buffer = bytearray()
        self.is_reusable = True

    def send(self, data: bytes) -> None:
        self.sock.settimeout(self.timeout_s)
        self.sock.sendall(data)

    def recv(self, deadline: float) -> bytes:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request's deadline passed")
        self.sock.settimeout(min(self.timeout_s, left))
        return self.sock.recv(READ_BYTES)

    def is_readable(self, wait_s: float) -> bool:
        """Whether something (data or the end) can be read within ``wait_s``."""
        if self.buffer:
            return True
        readable, _, _ = select.select([self.sock], [], [], max(0.0, wait_s))
        return bool(readable)

    def close(self) -> None:
        self.is_reusable = False
        with contextlib.suppress(OSError):
            self.sock.close()


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes
    #: The body ended as its framing says (not cut by the connection's end).
    complete: bool
    #: The reader stopped early, as asked (``stop_when``).
    stopped: bool = False


def read_response(
    connection: Connection, deadline: float, *, stop_when: Callable[[bytes], bool] | None = None
) -> Response:
    """Read one response; stop early once ``stop_when(body so far)`` is true.

    :raises NoAnswer: when the connection ends before a whole head.
    :raises Malformed: for what is not an HTTP/1.1 response.
    :raises OSError: for a reset, a timeout (``TimeoutError``), and the like.
    """
    buffer = connection.buffer
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        if len(buffer) > MAX_HEAD_BYTES:
            raise Malformed("response head too large")
        data = connection.recv(deadline)
        if not data:
            connection.is_reusable = False
            raise NoAnswer(f"closed after {len(buffer)} bytes of a head")
        buffer += data
    lines = buffer[:end].decode("latin-1").split("\r\n")
    del buffer[: end + 4]
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
        raise Malformed(f"status line {lines[0][:80]!r}")
    status = int(rest[:3])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "close" in headers.get("connection", "").lower() or version != "HTTP/1.1":
        connection.is_reusable = False
    if status < 200 or status in (204, 304):
        return Response(status, headers, b"", True)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _read_chunked(connection, deadline, status, headers, stop_when)
    length_text = headers.get("content-length")
    length = int(length_text) if length_text is not None and length_text.isdigit() else None
    while length is None or len(buffer) < length:
        if stop_when is not None and stop_when(bytes(buffer)):
            return Response(status, headers, bytes(buffer), False, stopped=True)
        data = connection.recv(deadline)
        if not data:  # the end of a body without a length, or a body cut short
            connection.is_reusable = False
            body = bytes(buffer)
            buffer.clear()
            return Response(status, headers, body, length is None)
        buffer += data
    body = bytes(buffer[:length])
    del buffer[:length]
    return Response(status, headers, body, True)


def _read_chunked(
    connection: Connection,
    deadline: float,
    status: int,
    headers: dict[str, str],
    stop_when: Callable[[bytes], bool] | None,
) -> Response:
    buffer = connection.buffer
    body = bytearray()
    while True:
        line_end = buffer.find(b"\r\n")
        if line_end >= 0:
            size_text = bytes(buffer[:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise Malformed(f"chunk size {size_text[:40]!r}") from None
            if size == 0:
                # The last chunk, then trailers (none, here) and an empty line.
                if (trailer_end := buffer.find(b"\r\n\r\n", line_end)) >= 0:
                    del buffer[: trailer_end + 4]
                    return Response(status, headers, bytes(body), True)
            elif len(buffer) >= line_end + 2 + size + 2:
                body += buffer[line_end + 2 : line_end + 2 + size]
                del buffer[: line_end + 2 + size + 2]
                if stop_when is not None and stop_when(bytes(body)):
                    return Response(status, headers, bytes(body), False, stopped=True)
                continue
        data = connection.recv(deadline)
        if not data:
            connection.is_reusable = False
            return Response(status, headers, bytes(body), False)
        buffer += data


# --- Judging a reply ---------------------------------------------------------------------------


def judge(plan: Plan, response: Response) -> tuple[str, str]:
    """Classify a reply to a chat: its outcome, and a detail for the report."""
    if response.status != 200:
        return str(response.status), response.body[:160].decode(errors="replace")
    if response.headers.get(TARGET_HEADER) != TARGET:
        return "wrong-model", f"{TARGET_HEADER}: {response.headers.get(TARGET_HEADER)!r}"
    if plan.is_stream:
        return _judge_stream(plan, response)
    if not response.complete:
        return "truncated", f"{len(response.body)} bytes, then the connection ended"
    try:
        document = json.loads(response.body)
    except ValueError:
        return "garbled", f"{len(response.body)} bytes, not JSON: {response.body[:110]!r}..."
    if not isinstance(document, dict) or document.get("model") != ALIAS:
        return "wrong-model", f"{response.body[:160]!r}"
    finished = (
        document.get("object") == "chat.completion"
        if plan.endpoint.startswith("/v1/")
        else document.get("done") is True
    )
    return ("ok", "") if finished else ("garbled", f"{response.body[:160]!r}")


def _judge_stream(plan: Plan, response: Response) -> tuple[str, str]:
    body = response.body
    is_sse = response.headers.get("content-type", "").startswith("text/event-stream")
    if is_sse:
        payloads = [line[6:] for line in body.split(b"\n") if line.startswith(b"data: ")]
        is_done = bool(payloads) and payloads[-1] == b"[DONE]"
        if is_done:
            payloads.pop()
    else:
        payloads = body.split(b"\n")
        is_done = payloads[-1] == b""  # every line ends with a newline
        payloads = [line for line in payloads if line]
    records = []
    for payload in payloads:
        try:
            records.append(json.loads(payload))
        except ValueError:
            return "garbled", f"a record is not JSON: {payload[:120]!r}"
    for index, item in enumerate(records):
        if not isinstance(item, dict):
            return "garbled", f"record {index} is {item!r}"
        if "error" in item:
            error = item["error"]
            message = error.get("message", "") if isinstance(error, dict) else str(error)
            if index != len(records) - 1:
                return "garbled", f"an error record before the end: {message}"
            if not response.complete:
                return "truncated", f"after an error record: {message}"
            return ("cut-504" if "sent nothing for" in message else "cut-502"), message[:160]
        if item.get("model") != ALIAS:
            return "wrong-model", f"record {index} names {item.get('model')!r}"
    if not response.complete:
        return "truncated", f"{len(records)} records, then the connection ended"
    if not is_done or len(records) != plan.records + 1:
        return "garbled", f"{len(records)} records of {plan.records + 1}, done={is_done}"
    if not is_sse and records[-1].get("done") is not True:
        return "garbled", "the last record is not done"
    return "ok", ""


# --- The clients ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientSettings:
    """What every client needs to know: where the proxy is, and how long to wait."""

    port: int
    timeout_s: float
    request_deadline_s: float
    stall_wait_s: float
    read_timeout_s: float
    oversized_bytes: int


class Tally:
    """Every outcome, per kind of request; shared by the client threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, Counter[str]] = {label: Counter() for label in EXPECTATIONS}
        self.mismatches: list[str] = []
        self.mismatch_count = 0
        #: (label, outcome) -> the first detail, for the findings.
        self.samples: dict[tuple[str, str], str] = {}

    def add(self, plan: Plan, outcome: str, detail: str) -> None:
        expectation = EXPECTATIONS[plan.label]
        with self._lock:
            self.counts[plan.label][outcome] += 1
            if outcome in expectation.expected:
                return
            if outcome in expectation.known:
                self.samples.setdefault((plan.label, outcome), f"{plan.endpoint}: {detail}")
                return
            self.mismatch_count += 1
            if len(self.mismatches) < 8:
                self.mismatches.append(
                    f"{plan.label} ({plan.endpoint}): {outcome}, expected "
                    f"{' or '.join(sorted(expectation.expected))}: {detail}"
                )

    def total(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for counts in self.counts.values():
            total.update(counts)
        return total

    def findings(self) -> Counter[tuple[str, str]]:
        """(label, outcome) -> count, for the known wrong outcomes that happened."""
        found: Counter[tuple[str, str]] = Counter()
        for label, counts in self.counts.items():
            for outcome, count in counts.items():
                if outcome in EXPECTATIONS[label].known:
                    found[label, outcome] += count
        return found


@dataclass
class Call:
    """One request under way: what to send, on which connection, until when."""

    plan: Plan
    connection: Connection
    settings: ClientSettings
    rng: random.Random
    deadline: float

    def send_request(self, target: str, body: bytes) -> None:
        """Send a JSON request with its length."""
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        self.connection.send(request_head(target, headers) + body)

    def response(self, **options: Any) -> Response:
        return read_response(self.connection, self.deadline, **options)


def run_plan(
    plan: Plan, settings: ClientSettings, rng: random.Random, kept: Connection | None
) -> tuple[str, str, Connection | None]:
    """Send ``plan``; return its outcome, a detail, and the connection to keep for the next."""
    is_normal = plan.kind == "normal"  # only normal requests use keep-alive connections
    connection: Connection | None = None
    try:
        # An idle connection with something to read was closed by the server (its
        # keep-alive timeout): take a fresh one, as the proxy's own pool does.
        if is_normal and kept is not None and kept.is_reusable and not kept.is_readable(0):
            connection = kept
        else:
            connection = Connection(settings.port, settings.timeout_s)
        deadline = time.monotonic() + settings.request_deadline_s
        outcome, detail = _SENDERS[plan.kind](Call(plan, connection, settings, rng, deadline))
    except TimeoutError as error:
        outcome, detail = "client-timeout", str(error) or "timed out"
    except (ConnectionResetError, BrokenPipeError) as error:
        outcome, detail = "reset", str(error)
    except NoAnswer as error:
        outcome, detail = "closed", str(error)
    except (Malformed, OSError) as error:
        outcome, detail = "other", f"{type(error).__name__}: {error}"
    if outcome in ("client-timeout", "reset", "closed", "other") and connection is not None:
        connection.is_reusable = False  # in an unknown state
    if not is_normal:
        if connection is not None:
            connection.close()
        return outcome, detail, kept
    if kept is not None and kept is not connection:
        kept.close()
    if connection is not None and connection.is_reusable:
        return outcome, detail, connection
    if connection is not None:
        connection.close()
    return outcome, detail, None


def _send_normal(call: Call) -> tuple[str, str]:
    call.send_request(_target(call.plan), request_body(call.plan))
    response = call.response()
    if not response.complete:
        call.connection.is_reusable = False
    return judge(call.plan, response)


def _send_slow(call: Call) -> tuple[str, str]:
    body = request_body(call.plan)
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    call.connection.send(request_head(_target(call.plan), headers))
    step = -(-len(body) // SLOW_PIECES)
    for start in range(0, len(body), step):
        time.sleep(call.rng.uniform(*SLOW_PAUSE_S))
        call.connection.send(body[start : start + step])
    return judge(call.plan, call.response())


def _send_stall(call: Call) -> tuple[str, str]:
    body = request_body(call.plan)
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    head = request_head(_target(call.plan), headers)
    is_head = call.plan.kind == "stall-head"
    call.connection.send(head[: len(head) // 2] if is_head else head + body[: len(body) // 2])
    wait_s = call.settings.stall_wait_s
    if not call.connection.is_readable(wait_s):
        return "held", f"no answer, and the connection still open, after {wait_s:g} s"
    try:
        response = call.response()
    except NoAnswer:
        return "closed", "closed by the proxy"
    return str(response.status), response.body[:160].decode(errors="replace")


def _send_oversized(call: Call) -> tuple[str, str]:
    plan, connection = call.plan, call.connection
    body = request_body(plan, stream=False, padding=call.settings.oversized_bytes)
    is_chunked = plan.label.endswith("chunked")
    framing = {"Transfer-Encoding": "chunked"} if is_chunked else {"Content-Length": str(len(body))}
    connection.send(request_head(_target(plan), {"Content-Type": "application/json", **framing}))
    sent, cut = 0, ""
    try:
        for start in range(0, len(body), READ_BYTES):
            if connection.is_readable(0):
                break  # answered already: the rest would not be read
            piece = body[start : start + READ_BYTES]
            connection.send(b"%x\r\n%b\r\n" % (len(piece), piece) if is_chunked else piece)
            sent += len(piece)
        else:
            if is_chunked:
                connection.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError) as error:
        cut = f" (sending stopped after {sent} bytes: {error})"
    response = call.response()
    return str(response.status), response.body[:120].decode(errors="replace") + cut


def _send_leave_stream(call: Call) -> tuple[str, str]:
    plan = dataclasses.replace(call.plan, is_stream=True, records=LEAVE_STREAM_RECORDS)
    target = _target(plan, delay_ms=LEAVE_STREAM_DELAY_MS, tag=LEAVE_TAGS[plan.label])
    call.send_request(target, request_body(plan))
    response = call.response(stop_when=lambda seen: b"\n" in seen)  # the first record
    return ("left", "") if response.stopped else judge(plan, response)


def _send_leave_document(call: Call) -> tuple[str, str]:
    plan = dataclasses.replace(call.plan, is_stream=False)
    hold_ms = round(call.settings.read_timeout_s * LEAVE_HOLD_SHARE * 1000)
    call.send_request(
        _target(plan, hold_ms=hold_ms, tag=LEAVE_TAGS[plan.label]), request_body(plan)
    )
    if call.connection.is_readable(LEAVE_AFTER_S):
        return judge(plan, call.response())
    return "left", ""


def _send_malformed(call: Call) -> tuple[str, str]:
    plan = call.plan
    body = request_body(plan)
    if plan.label == "bad JSON":
        body = body[: len(body) // 2]
        length = str(len(body))
    elif plan.label == "bad Content-Length":
        length = f"{len(body)}x"
    else:  # a short body: the client then says it has sent all it will
        length = str(len(body) + 20)
    headers = {"Content-Type": "application/json", "Content-Length": length}
    call.connection.send(request_head(_target(plan), headers) + body)
    if plan.label == "short body":
        call.connection.sock.shutdown(socket.SHUT_WR)
    response = call.response()
    return str(response.status), response.body[:160].decode(errors="replace")


_SENDERS: dict[str, Callable[[Call], tuple[str, str]]] = {
    "normal": _send_normal,
    "slow": _send_slow,
    "stall-head": _send_stall,
    "stall-body": _send_stall,
    "oversized": _send_oversized,
    "leave-stream": _send_leave_stream,
    "leave-doc": _send_leave_document,
    "malformed": _send_malformed,
}


def run_clients(
    phase: str, seconds: float, args: argparse.Namespace, settings: ClientSettings, tally: Tally
) -> None:
    """Run ``args.clients`` clients for ``seconds``; return once all have finished."""
    stop_at = time.monotonic() + seconds
    stop = threading.Event()
    errors: list[str] = []

    def client(index: int) -> None:
        rng = random.Random(f"{args.seed}:{phase}:{index}")
        kept: Connection | None = None
        try:
            for _ in range(MAX_REQUESTS_PER_CLIENT):
                if stop.is_set() or time.monotonic() >= stop_at:
                    break
                plan = choose_plan(rng, args.mix, args.faults)
                outcome, detail, kept = run_plan(plan, settings, rng, kept)
                tally.add(plan, outcome, detail)
        except Exception as error:  # a bug in the soak itself: stop and say so
            errors.append(f"client {index}: {type(error).__name__}: {error}")
            stop.set()
        finally:
            if kept is not None:
                kept.close()

    threads = [
        threading.Thread(target=client, args=(index,), name=f"soak-{phase}-{index}", daemon=True)
        for index in range(args.clients)
    ]
    try:
        for thread in threads:
            thread.start()
        # The longest a client may take after the end: one request's deadline.
        join_by = stop_at + settings.request_deadline_s + CLIENT_GRACE_S
        for thread in threads:
            while thread.is_alive() and time.monotonic() < join_by:
                thread.join(timeout=0.2)  # short joins: Ctrl-C is seen at once
    finally:
        stop.set()
    stuck = [thread.name for thread in threads if thread.is_alive()]
    if errors or stuck:
        raise RuntimeError("; ".join(errors) or f"clients did not finish in time: {stuck}")


# --- The proxy's processes ---------------------------------------------------------------------

_TCP_LISTEN = "0A"
_TCP_ESTABLISHED = "01"


@dataclass(frozen=True)
class ProcessSample:
    """One process's resources at one moment."""

    pid: int
    role: str  # master or worker
    fds: int
    clients: int  # sockets to clients
    pool: int  # idle keep-alive connections to the upstream
    closing: int  # connections to the upstream in any other state (CLOSE_WAIT, ...)
    threads: int
    rss_kib: int
    peak_kib: int

    @property
    def other_fds(self) -> int:
        """Every descriptor but the idle upstream connections, which the pool keeps."""
        return self.fds - self.pool


def _tcp_sockets(pid: int) -> dict[str, tuple[int, int, str]]:
    """inode -> (local port, remote port, state) for the TCP sockets of ``pid``'s namespace."""
    sockets: dict[str, tuple[int, int, str]] = {}
    for name in ("tcp", "tcp6"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/net/{name}") as file:
            for line in file.readlines()[1:]:
                fields = line.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
                local_port = int(local.rsplit(":", 1)[1], 16)
                remote_port = int(remote.rsplit(":", 1)[1], 16)
                sockets[inode] = (local_port, remote_port, state)
    return sockets


def _status_number(text: str, key: str) -> int:
    """A number from ``/proc/PID/status`` (memory in KiB)."""
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def sample_proxy(master_pid: int, proxy_port: int, upstream_port: int) -> list[ProcessSample]:
    """The master's and every worker's descriptors, threads and memory, now."""
    tcp = _tcp_sockets(master_pid)
    samples = []
    for pid in _process_tree(master_pid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            links = []
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):  # closed meanwhile
                    links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue  # gone meanwhile
        clients = pool = closing = 0
        for link in links:
            if not link.startswith("socket:["):
                continue
            local_port, remote_port, state = tcp.get(link[8:-1], (0, 0, ""))
            if state == _TCP_LISTEN:
                continue
            if local_port == proxy_port:
                clients += 1
            elif remote_port == upstream_port:
                if state == _TCP_ESTABLISHED:
                    pool += 1
                else:
                    closing += 1
        samples.append(
            ProcessSample(
                pid=pid,
                role="master" if pid == master_pid else "worker",
                fds=len(links),
                clients=clients,
                pool=pool,
                closing=closing,
                threads=_status_number(status, "Threads"),
                rss_kib=_status_number(status, "VmRSS"),
                peak_kib=_status_number(status, "VmHWM"),
            )
        )
    return samples


def settled_sample(
    master_pid: int, proxy_port: int, upstream_port: int, *, quiet_s: float, settle_s: float
) -> tuple[list[ProcessSample], float]:
    """Sample the idle proxy: ``quiet_s`` after the traffic, once no client is connected and
    the figures repeat; give up waiting for that after ``settle_s`` more.

    Returns the last sample and how long after the traffic it was taken.
    """
    started = time.monotonic()
    time.sleep(quiet_s)  # one wait, for the threads of gevent's idle DNS pool to exit
    previous: list[tuple[int, int, int, int, int, int]] = []
    sample = sample_proxy(master_pid, proxy_port, upstream_port)
    for _ in range(int(settle_s / SETTLE_POLL_S) + 1):
        key = [(s.pid, s.fds, s.clients, s.pool, s.closing, s.threads) for s in sample]
        if key == previous and not any(s.clients or s.closing for s in sample):
            break
        previous = key
        time.sleep(SETTLE_POLL_S)  # polling, bounded by settle_s
        sample = sample_proxy(master_pid, proxy_port, upstream_port)
    return sample, time.monotonic() - started


# --- The servers -------------------------------------------------------------------------------


def _child_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """This environment without our settings, gunicorn's or HTTP proxies, plus ``settings``."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OLLAMA_DEFAULT_", "GUNICORN_"))
        and name not in ("WEB_CONCURRENCY",)
        and name.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    environment.update(settings)
    return environment


def start_upstream(workdir: Path, args: argparse.Namespace) -> Server:
    """Start the misbehaving fake Ollama; return it once it has printed its address."""
    log = workdir / "upstream.log"
    command = [
        sys.executable,
        str(BENCH_DIR / "misbehaving_upstream.py"),
        "--port",
        "0",
        "--stall-s",
        f"{args.stall_s:g}",
        "--seed",
        str(args.seed),
        "--parent-pid",
        str(os.getpid()),
    ]
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=log_file,
            env=_child_environment({}),
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    server = Server("upstream", 0, process, log, " ".join(command[1:]))
    try:
        line = _read_line(process, START_TIMEOUT_S)
        if not line.startswith(f"listening on http://{HOST}:"):
            raise RuntimeError(f"the upstream did not start: {line!r}\n{server.log_tail()}")
        server.port = int(line.rsplit(":", 1)[1])
    except BaseException:
        server.stop()
        raise
    finally:
        assert process.stdout is not None
        process.stdout.close()
    return server


def _idle_thread_s(args: argparse.Namespace) -> float:
    """How long gevent keeps an idle DNS thread in the proxy's workers (-1 in gevent's
    setting, no limit, is 0 here: waiting would not help, and growth shows)."""
    name = "GEVENT_THREADPOOL_IDLE_TASK_TIMEOUT"
    value = args.proxy_env.get(name, os.environ.get(name, ""))
    try:
        seconds = float(value) if value else GEVENT_IDLE_THREAD_S
    except ValueError:
        return GEVENT_IDLE_THREAD_S
    return max(seconds, 0.0)


def _serve_command() -> list[str]:
    script = Path(sys.executable).with_name("ollama-default")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ollama_default"]


def start_proxy(workdir: Path, upstream: Server, args: argparse.Namespace) -> Server:
    """Start ``ollama-default serve`` on a socket bound here; return it once it answers."""
    settings = {
        "OLLAMA_DEFAULT_READ_TIMEOUT_S": f"{args.read_timeout_s:g}",
        # The client-side deadlines as short, so that stalled heads and bodies end in the run.
        "OLLAMA_DEFAULT_HEAD_TIMEOUT_S": f"{args.read_timeout_s:g}",
        "OLLAMA_DEFAULT_BODY_TIMEOUT_S": f"{args.read_timeout_s:g}",
        "OLLAMA_DEFAULT_MAX_BODY_BYTES": str(args.max_body_bytes),
        **args.proxy_env,
    }
    log = workdir / "proxy.log"
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, 0))
        listener.listen(1024)
        port = listener.getsockname()[1]
        options = [
            "--upstream",
            f"http://{HOST}:{upstream.port}",
            "--alias",
            f"{ALIAS}={TARGET}",
            "--workers",
            str(args.workers),
        ]
        command = [*_serve_command(), "serve", "--bind", f"fd://{listener.fileno()}", *options]
        with open(log, "wb") as log_file:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=_child_environment(settings),
                cwd=ROOT,
                pass_fds=(listener.fileno(),),
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
    finally:
        listener.close()  # gunicorn holds it now
    shown = " ".join(["ollama-default serve --bind fd://N", *options])
    shown += " (" + " ".join(f"{name}={value}" for name, value in settings.items()) + ")"
    server = Server("proxy", port, process, log, shown)
    try:
        _wait_until_ready(server, args.workers)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_until_ready(server: Server, workers: int) -> None:
    """Until every worker has started and one answers ``GET /`` (a bounded poll)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    last = ""
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the proxy exited:\n{server.log_tail()}")
        if len(_process_tree(server.process.pid)) > workers:
            connection = http.client.HTTPConnection(HOST, server.port, timeout=2)
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    return
                last = f"status {response.status}"
            except OSError as error:
                last = str(error)
            finally:
                connection.close()
        time.sleep(0.1)  # polling, bounded by the deadline
    raise RuntimeError(f"the proxy did not answer ({last}):\n{server.log_tail()}")


def upstream_stats(upstream: Server) -> dict[str, Any]:
    """What the upstream counted; its own connection for this request is left out."""
    connection = http.client.HTTPConnection(HOST, upstream.port, timeout=5)
    try:
        connection.request("GET", STATS_PATH)
        stats: dict[str, Any] = json.loads(connection.getresponse().read())
    finally:
        connection.close()
    stats["open"] -= 1
    return stats


# --- The report --------------------------------------------------------------------------------


def _outcomes(counts: Counter[str], label: str) -> str:
    known = EXPECTATIONS[label].known
    expected = EXPECTATIONS[label].expected
    cells = []
    for outcome, count in counts.most_common():
        mark = "" if outcome in expected else " (finding)" if outcome in known else " (MISMATCH)"
        cells.append(f"{outcome} {count}{mark}")
    return ", ".join(cells)


def report_requests(tally: Tally, warmup: Tally, seconds: float, args: argparse.Namespace) -> None:
    total = tally.total()
    sent = sum(total.values())
    print(
        f"\nRequests in the {args.duration:g} s run ({seconds:.0f} s until the last client "
        f"finished): {sent} sent ({sent / seconds:.0f}/s), {total['ok']} served ok, "
        f"{tally.mismatch_count} mismatches"
    )
    expected = {label: " or ".join(sorted(e.expected)) for label, e in EXPECTATIONS.items()}
    width = max(len(label) for label in EXPECTATIONS)
    column = max(len(text) for text in expected.values())
    print(f"  {'what was sent':<{width}} {'n':>6}  {'expected':<{column}}  what came back")
    for label, counts in tally.counts.items():
        n = sum(counts.values())
        outcomes = _outcomes(counts, label) or "-"
        print(f"  {label:<{width}} {n:>6}  {expected[label]:<{column}}  {outcomes}")
    errors = {kind: count for kind, count in total.items() if kind not in ("ok", "left")}
    shown = ", ".join(f"{kind} {count}" for kind, count in sorted(errors.items())) or "none"
    print(f"  errors by kind: {shown}")
    warm_total = sum(warmup.total().values())
    print(
        f"  warm-up ({args.warmup:g} s, before the start sample): {warm_total} requests, "
        f"{warmup.mismatch_count} mismatches"
    )
    for tally_ in (warmup, tally):
        for line in tally_.mismatches:
            print(f"  MISMATCH {line}")


LEFT_BUT_GENERATED = {
    "leave-doc": (
        "a client that leaves before the first byte of a non-streamed reply does not close "
        "the upstream connection: the upstream generates the whole reply for nobody"
    ),
    "leave-stream": (
        "a client that leaves mid-stream does not always close the upstream connection: the "
        "upstream generates the rest of the stream for nobody"
    ),
}


@dataclass
class Finding:
    text: str
    evidence: str


def upstream_findings(
    stats: Mapping[str, Any], tallies: Sequence[Tally]
) -> tuple[list[str], list[Finding]]:
    """What the upstream saw of clients that left: lines to print, and findings."""
    lines, findings = [], []
    for label, tag in LEAVE_TAGS.items():
        left = sum(t.counts[label]["left"] for t in tallies)
        seen = stats["tags"].get(tag, {})
        received = int(seen.get("received", 0))
        completed = int(seen.get("completed", 0))
        peer_left = int(seen.get("peer_left", 0))
        after = ""
        if peer_left:
            mean = seen["peer_left_ms_sum"] / peer_left
            longest = seen["peer_left_ms_max"]
            after = f" ({mean:.0f} ms after the request on average, {longest:.0f} at most)"
        lines.append(
            f"  {label}: {left} clients left; the upstream got {received} of these requests, "
            f"saw the proxy close {peer_left} connections early{after}, and wrote {completed} "
            f"replies in full"
        )
        if completed:
            evidence = f"{completed} of {received} such replies were written in full"
            findings.append(Finding(LEFT_BUT_GENERATED[tag], evidence))
    return lines, findings


@dataclass
class Verdict:
    """One target of the leak check, met or not."""

    name: str
    passed: bool
    text: str
    failure: str = "GREW"

    def line(self) -> str:
        return f"  {'ok' if self.passed else self.failure:<7} {self.name:<14} {self.text}"


def compare(
    start: list[ProcessSample],
    end: list[ProcessSample],
    requests: int,
    stats: Mapping[str, Any],
    args: argparse.Namespace,
) -> list[Verdict]:
    """The targets: the same processes, no growth of fds or threads, RSS within tolerance."""
    before = {s.pid: s for s in start}
    after = {s.pid: s for s in end}
    workers = sum(s.role == "worker" for s in end)
    same = before.keys() == after.keys() and workers == args.workers
    verdicts = [
        Verdict(
            "processes",
            same,
            f"the same master and {workers} workers throughout"
            if same
            else f"pids {sorted(before)} at the start, {sorted(after)} at the end",
            "CHANGED",
        )
    ]

    def totals(figure: Callable[[ProcessSample], int]) -> tuple[int, int]:
        return sum(figure(s) for s in start), sum(figure(s) for s in end)

    fds = totals(lambda s: s.other_fds)
    verdicts.append(
        Verdict(
            "fds",
            fds[1] <= fds[0],
            f"{fds[0]} -> {fds[1]}, idle upstream connections left out (no growth allowed)",
        )
    )
    pool = totals(lambda s: s.pool)
    verdicts.append(
        Verdict(
            "idle upstream",
            pool[1] <= args.clients and stats["open"] == pool[1],
            f"{pool[0]} -> {pool[1]}, the keep-alive pool (at most {args.clients}, one a "
            f"client; the upstream counts {stats['open']} open)",
        )
    )
    threads = totals(lambda s: s.threads)
    verdicts.append(
        Verdict(
            "threads",
            threads[1] <= threads[0],
            f"{threads[0]} -> {threads[1]} (no growth allowed)",
        )
    )
    tolerance = args.rss_tolerance / 100
    changes = {
        pid: after[pid].rss_kib / first.rss_kib - 1 for pid, first in before.items() if pid in after
    }
    worst = max(changes.values(), default=0.0)
    rss = totals(lambda s: s.rss_kib)
    # The smallest leak a worker's tolerance would show, spread over its share of requests.
    smallest_worker = min((s.rss_kib for s in start if s.role == "worker"), default=0)
    per_request = smallest_worker * 1024 * tolerance / max(1, requests // args.workers)
    verdicts.append(
        Verdict(
            "RSS",
            worst <= tolerance,
            f"{rss[0] / 1024:.1f} -> {rss[1] / 1024:.1f} MiB, {worst * 100:+.1f} % at most a "
            f"process (tolerance +{args.rss_tolerance:g} %: a leak over ~{per_request:.0f} "
            "bytes a request would show)",
        )
    )
    return verdicts


def report_processes(start: list[ProcessSample], end: list[ProcessSample]) -> None:
    print(
        "\nThe proxy's processes, idle, after the warm-up (start) and after the run (end)\n"
        "  process        when   fds  clients  idle upstream  closing  threads  RSS MiB  peak MiB"
    )
    ends = {s.pid: s for s in end}
    rows = [(s, "start") for s in start]
    rows += [(ends.pop(s.pid), "end") for s in start if s.pid in ends]
    rows += [(s, "end") for s in ends.values()]  # started during the run
    rows.sort(key=lambda row: (row[0].role != "master", row[0].pid, row[1] == "end"))
    shown = set()
    for s, when in rows:
        name = "" if s.pid in shown else f"{s.role} {s.pid}"
        shown.add(s.pid)
        print(
            f"  {name:<14} {when:<5} {s.fds:>5} {s.clients:>8} {s.pool:>14} {s.closing:>8} "
            f"{s.threads:>8} {s.rss_kib / 1024:>8.1f} {s.peak_kib / 1024:>9.1f}"
        )


def log_problems(log: Path) -> tuple[int, list[str]]:
    """Tracebacks in the proxy's log, and a few of its error lines."""
    text = log.read_text(errors="replace")
    errors = []
    for line in text.splitlines():
        if "[ERROR]" in line or " ERROR " in line or line.startswith("Traceback"):
            message = line.split("]", 3)[-1].strip()
            if message not in errors:
                errors.append(message)
    return text.count("Traceback (most recent call last)"), errors[:5]


# --- The run -----------------------------------------------------------------------------------


def _shares(text: str, names: Sequence[str]) -> dict[str, float]:
    """``NAME=SHARE,...`` as a dict; argparse names the option in its message."""
    shares: dict[str, float] = {}
    for part in text.split(","):
        name, equals, value = part.partition("=")
        name = name.strip()
        if not equals or name not in names:
            raise argparse.ArgumentTypeError(
                f"{part!r} is not NAME=SHARE with NAME one of {', '.join(names)}"
            )
        try:
            shares[name] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
        if shares[name] < 0:
            raise argparse.ArgumentTypeError(f"{part!r} is negative")
    if not any(shares.values()):
        raise argparse.ArgumentTypeError("every share is 0")
    return shares


def _text_shares(shares: Mapping[str, float]) -> str:
    return ",".join(f"{name}={value:g}" for name, value in shares.items())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n", 1)[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of traffic")
    parser.add_argument(
        "--warmup", type=float, default=10.0, help="seconds of traffic before the start sample"
    )
    parser.add_argument("--clients", type=int, default=24, help="client threads")
    parser.add_argument("--workers", type=int, default=2, help="the proxy's gunicorn workers")
    parser.add_argument("--seed", type=int, default=11, help="seeds every client's RNG")
    parser.add_argument(
        "--mix",
        type=lambda text: _shares(text, list(DEFAULT_MIX)),
        default=_text_shares(DEFAULT_MIX),
        help="what the clients send, as NAME=SHARE,...",
    )
    parser.add_argument(
        "--faults",
        type=lambda text: _shares(text, FAULTS),
        default=_text_shares(DEFAULT_FAULTS),
        help="what the upstream does with a normal request, as NAME=SHARE,...",
    )
    parser.add_argument(
        "--read-timeout-s",
        type=float,
        default=2.0,
        help="the proxy's upstream read timeout; stalls last it plus 1.5 s",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=1024 * 1024,
        help="the proxy's body limit; oversized bodies are twice this",
    )
    parser.add_argument(
        "--client-timeout-s", type=float, default=10.0, help="every client socket's timeout"
    )
    parser.add_argument(
        "--settle-s", type=float, default=5.0, help="the longest wait for an idle proxy"
    )
    parser.add_argument(
        "--rss-tolerance", type=float, default=10.0, help="%% of RSS growth allowed a process"
    )
    parser.add_argument(
        "--proxy-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a variable for the proxy's environment (repeat for more)",
    )
    parser.add_argument(
        "--log-dir", type=Path, help="keep the logs of the proxy and the upstream here"
    )
    parser.add_argument("--strict", action="store_true", help="fail on the findings too")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0 or args.clients < 1 or args.workers < 1:
        parser.error("--duration and --clients, --workers must be positive, --warmup not negative")
    if args.read_timeout_s <= 0 or args.max_body_bytes <= 0 or args.client_timeout_s <= 0:
        parser.error("--read-timeout-s, --max-body-bytes and --client-timeout-s must be positive")
    environment = {}
    for text in args.proxy_env:
        name, equals, value = text.partition("=")
        if not equals or not name:
            parser.error(f"--proxy-env {text!r} is not NAME=VALUE")
        environment[name] = value
    args.proxy_env = environment
    args.stall_s = args.read_timeout_s + 1.5
    return args


@dataclass
class Results:
    """What a run measured, for the report (made once every server has stopped)."""

    warmup: Tally
    tally: Tally
    seconds: float  # from the start of the run until its last client finished
    start: list[ProcessSample]
    end: list[ProcessSample]
    settled_s: tuple[float, float]
    stats: dict[str, Any]
    log: Path


def run(args: argparse.Namespace, workdir: Path) -> Results:
    """Start the servers, run the warm-up and the run, sample the proxy; stop everything."""
    with contextlib.ExitStack() as stack:
        upstream = start_upstream(workdir, args)
        stack.callback(upstream.stop)
        proxy = start_proxy(workdir, upstream, args)
        stack.callback(proxy.stop)
        print(f"upstream: {upstream.command}")
        print(f"proxy:    {proxy.command}", flush=True)
        settings = ClientSettings(
            port=proxy.port,
            timeout_s=args.client_timeout_s,
            request_deadline_s=max(args.client_timeout_s, args.stall_s + 5.0),
            stall_wait_s=args.stall_s,
            read_timeout_s=args.read_timeout_s,
            oversized_bytes=2 * args.max_body_bytes,
        )
        ports = (proxy.process.pid, proxy.port, upstream.port)
        waits = {"quiet_s": _idle_thread_s(args) + 1.0, "settle_s": args.settle_s}
        warmup = Tally()
        if args.warmup:
            run_clients("warmup", args.warmup, args, settings, warmup)
        start, settled_start = settled_sample(*ports, **waits)
        tally = Tally()
        began = time.monotonic()
        run_clients("run", args.duration, args, settings, tally)
        seconds = time.monotonic() - began
        end, settled_end = settled_sample(*ports, **waits)
        stats = upstream_stats(upstream)
    return Results(
        warmup, tally, seconds, start, end, (settled_start, settled_end), stats, proxy.log
    )


def report(results: Results, args: argparse.Namespace) -> bool:
    """Print the report; return whether the run passed."""
    report_requests(results.tally, results.warmup, results.seconds, args)
    lines, findings = upstream_findings(results.stats, [results.warmup, results.tally])
    print("\nWhat the upstream saw of the clients that left (the warm-up's included)")
    print(*lines, sep="\n")
    report_processes(results.start, results.end)
    print(
        f"  (sampled {results.settled_s[0]:.1f} s after the warm-up's last client finished and "
        f"{results.settled_s[1]:.1f} s after the run's: the threads of gevent's idle DNS pool "
        f"exit after {_idle_thread_s(args):g} s)"
    )
    requests = sum(results.tally.total().values())
    verdicts = compare(results.start, results.end, requests, results.stats, args)
    print("\nVerdict (start -> end)")
    for verdict in verdicts:
        print(verdict.line())
    tracebacks, errors = log_problems(results.log)
    where = f" ({results.log})" if args.log_dir else ""
    print(
        f"\nThe proxy's log{where}: {tracebacks} tracebacks, {len(errors)} distinct error lines"
        + "".join(f"\n  {line[:200]}" for line in errors)
    )
    found = results.warmup.findings() + results.tally.findings()
    samples = {**results.tally.samples, **results.warmup.samples}
    for (label, outcome), count in sorted(found.items()):
        evidence = f"{label}: {outcome} {count} times; e.g. {samples[label, outcome]}"
        findings.append(Finding(EXPECTATIONS[label].known[outcome], evidence))
    print(
        f"\nFindings about the proxy ({len(findings)}; they fail the run with --strict; the "
        "counts include the warm-up)"
    )
    for finding in findings:
        print(f"  - {finding.text}\n    [{finding.evidence[:300]}]")
    if not findings:
        print("  none")
    mismatches = results.warmup.mismatch_count + results.tally.mismatch_count
    failed = [v.name for v in verdicts if not v.passed]
    passed = not (mismatches or failed or tracebacks or (args.strict and findings))
    print(
        f"\nResult: {'PASS' if passed else 'FAIL'}: {mismatches} mismatches, "
        f"{'failed: ' + ', '.join(failed) if failed else 'nothing grew'}, {tracebacks} "
        f"tracebacks, {len(findings)} findings{' (strict)' if args.strict else ''}; load "
        f"average {_load_average()} at the end"
    )
    return passed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak; return 0 when nothing was amiss, 1 otherwise."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    print(
        f"Soak of ollama-default serve: {args.warmup:g} s of warm-up, then {args.duration:g} s "
        f"of traffic from {args.clients} clients (seed {args.seed})"
    )
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{_load_average()} at start"
    )
    print(f"mix: {_text_shares(args.mix)}; upstream faults: {_text_shares(args.faults)}")
    with contextlib.ExitStack() as stack:
        if args.log_dir:
            workdir = args.log_dir
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        results = run(args, workdir)
        passed = report(results, args)
    return 0 if passed else 1


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; every server started was stopped", file=sys.stderr)
        sys.exit(130)
    except RuntimeError as error:  # a server did not start, or the soak broke; all stopped
        print(f"soak failed: {error}", file=sys.stderr)
        sys.exit(2)
