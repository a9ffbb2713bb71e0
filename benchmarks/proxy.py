"""What the proxy costs on top of the HTTP server and the upstream, under gunicorn.

Run from the project root (a default run takes about 3 minutes)::

    .venv/bin/python benchmarks/proxy.py                       # gthread and gevent
    .venv/bin/python benchmarks/proxy.py --worker-class gthread --rounds 5
    .venv/bin/python benchmarks/proxy.py --scenarios slow --sync-check
    .venv/bin/python benchmarks/proxy.py --worker-class gevent --relay --rounds 5
    PYTHONPATH=/some/dir .venv/bin/python benchmarks/proxy.py --proxy-app candidate:app

The last form measures a candidate proxy app (say, with another forwarder) in place of
``ollama_default.proxy:app``; ``--help`` lists every option.

It starts, all on 127.0.0.1:

* **direct**: the fake Ollama of ``benchmarks/upstream.py`` (one asyncio process);
* **floor[W]**: ``upstream:floor``, a WSGI app answering the same bytes by itself, under
  gunicorn with worker class ``W``: what the server alone costs;
* **proxy[W]**: ``ollama_default.proxy:app`` under the same gunicorn settings, with
  ``OLLAMA_DEFAULT_UPSTREAM`` the fake, ``OLLAMA_DEFAULT_ALIAS=llmodel`` and
  ``OLLAMA_DEFAULT_TARGET=aya-expanse:8b-q8_0``;
* with ``--relay``, two yardsticks from ``benchmarks/relay.py`` under the same gunicorn:
  **relay[W]**, the least a Python relay does (no rewriting, no header handling), and
  **relay+rw[W]**, that relay plus the package's rewriting rules, the least a proxy of
  aliases does: how much of the proxy's cost is relaying at all, and how much rewriting.
  The targets are printed for them too, for comparison; only the proxy's are counted.

gunicorn gets ``ollama_default.proxy.cli.SERVE_DEFAULTS`` (what ``ollama-default serve`` runs)
with the worker class, workers, threads and worker connections of the command line. Clients
send ``"model":"llmodel"``; every server must answer with ``"model":"llmodel"`` everywhere
(the fake echoes what it is sent, the proxy restores the alias), and the replies are
checked: a wrong one counts as an error and fails its scenario.

The load comes from separate client processes (``--client-processes``), each an asyncio
loop with one keep-alive connection per simulated client and a minimal HTTP/1.1 parser.
Every measurement is interleaved: each round runs every scenario against every server, in
an order that rotates from round to round, and the figures are the medians over rounds
(with the half-range in per cent, to show the noise of this shared machine). Each
measurement opens its connections, runs ``--warmup`` seconds, then counts the responses
completed in the next ``--duration`` seconds. Scenarios:

* ``chat``: non-streaming ``/api/chat`` (8 tokens), closed loop at concurrency 1, 8 and
  64, replies with ``Content-Length`` and chunked: p50/p99 latency, requests/s;
* ``stream``: streaming ``/api/chat`` of 200 tokens (201 NDJSON lines, one HTTP chunk each
  from the upstream) at concurrency 1 and 8: time to first byte, lines ("chunks")/s;
* ``slow``: 256 streams opened at once, 100 tokens 20 ms apart (ideal 2.0 s): all
  correct (every record, in order, model shown as the alias, checked by parsing each
  line), wall time over the ideal, TTFB (connect included) p99.

Targets (the issue's): the proxy's latency limit is floor + direct latency at concurrency
1, its throughput limit ``1/(1/floor + 1/direct)`` requests/s (both CPU-bound); p50
latency within 1.3x the limit, throughput at least 0.8x it (at concurrency 8 and 64); a
stream's lines/s at least 0.7x direct at concurrency 8 and its TTFB within 4.9x direct at
concurrency 1; the 256 slow streams all correct, under 0.5 s over the ideal and with a TTFB
p99 under 150 ms. Each is printed with PASS or MISS, per worker class; the same ratios at
the other concurrencies are printed as "info". The CPU each process used while measuring
(read from ``/proc``) shows whether the client or the upstream was a bottleneck, and the
busiest gunicorn worker's share of its server's CPU whether the connections spread over the
workers (50% with two workers is even; clients connect one by one during the warm-up, so
they do). The exit
status is 0 only when every target is met.

``--sync-check`` also runs plain ``gunicorn -w 2 ollama_default.proxy:app`` (the sync
worker) on the slow scenario, cut off after ``--sync-timeout`` seconds, to show why it is
not recommended. Every server the script starts is stopped on exit, Ctrl-C or error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import http.client
import json
import math
import multiprocessing
import os
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType
from typing import Any

from upstream import WORDS

ALIAS = "llmodel"
TARGET = "aya-expanse:8b-q8_0"
HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
PREFIX = b'{"model":"' + ALIAS.encode() + b'","created_at":"'
MAX_HEAD_BYTES = 64 * 1024
#: How long a server may take to start, a stop to finish, a job to answer beyond its plan.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
JOB_GRACE_S = 30.0
#: Time for the client processes to get a job and open their connections before it starts.
START_DELAY_S = 0.25

# The targets.
LATENCY_TARGET = 1.30  # proxy p50 <= 1.3 x (floor + direct), concurrency 1
THROUGHPUT_TARGET = 0.80  # proxy req/s >= 0.8 x 1/(1/floor + 1/direct)
STREAM_RATE_TARGET = 0.70  # proxy lines/s >= 0.7 x direct, concurrency 8
STREAM_TTFB_TARGET = 4.9  # proxy TTFB <= 4.9 x direct, concurrency 1
SLOW_ADDED_TARGET_S = 0.5
SLOW_TTFB_P99_TARGET_MS = 150.0

CHAT_ROWS = (
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("rps", "req/s"),
    ("server_cpu_ms", "CPU ms/req"),
)
STREAM_ROWS = (
    ("ttfb_p50_ms", "TTFB50 ms"),
    ("ttfb_p99_ms", "TTFB99 ms"),
    ("lines_per_s", "lines/s"),
    ("rps", "streams/s"),
)


# --- The load generator (runs in the client processes) -------------------------------------


class _Client(asyncio.Protocol):
    """One simulated client's connection: sends a request, parses the response, repeats."""

    def __init__(self, runner: _Runner) -> None:
        self.runner = runner
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.sent_at = 0.0
        self.first_at = 0.0
        self.busy = False
        self._reset()

    def _reset(self) -> None:
        self.has_head = False
        self.status = 0
        self.length = -1  # -1: chunked or until EOF
        self.is_chunked = False
        self.will_close = False
        self.parts: list[bytes] = []
        self.first_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, started_at: float) -> None:
        assert self.transport is not None
        self.sent_at = started_at
        self.busy = True
        self.transport.write(self.runner.request)

    def data_received(self, data: bytes) -> None:
        if not self.first_at:
            self.first_at = time.monotonic()
            self.runner.first_bytes += 1
        buffer = self.buffer
        buffer += data
        if not self.has_head:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    self._broken("response head too large")
                return
            self._head(bytes(buffer[:end]))
            del buffer[: end + 4]
        if self.is_chunked:
            if not self._chunks():
                return
        elif self.length >= 0:
            if len(buffer) < self.length:
                return
            self.parts.append(bytes(buffer[: self.length]))
            del buffer[: self.length]
        else:
            return  # the body ends with the connection
        self._complete()

    def _head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        self.status = int(rest[:3])
        self.will_close = version != "HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                self.length = int(value)
            elif name == "transfer-encoding":
                self.is_chunked = "chunked" in value.lower()
            elif name == "connection":
                self.will_close = "close" in value.lower()
        self.has_head = True

    def _chunks(self) -> bool:
        """Take whole chunks off the buffer; True once the last one is there."""
        buffer, position, parts = self.buffer, 0, self.parts
        done = False
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                break
            size = int(buffer[position:line_end].split(b";", 1)[0], 16)
            if size == 0:
                trailer_end = buffer.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    break
                position, done = trailer_end + 4, True
                break
            end = line_end + 2 + size
            if len(buffer) < end + 2:
                break
            parts.append(bytes(buffer[line_end + 2 : end]))
            position = end + 2
        if position:
            del buffer[:position]
        return done

    def _complete(self) -> None:
        now = time.monotonic()
        body = b"".join(self.parts)
        status, first_at, will_close = self.status, self.first_at, self.will_close
        self._reset()
        self.busy = False
        if will_close and self.transport is not None:
            self.transport.close()
            self.transport = None
        self.runner.finished(self, status, body, first_at, now)

    def _broken(self, why: str) -> None:
        if self.transport is not None:
            self.transport.abort()
            self.transport = None
        self.busy = False
        self._reset()
        self.runner.failed(self, why)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:
            return  # closed on purpose
        self.transport = None
        if self.busy and self.has_head and not self.is_chunked and self.length < 0:
            self.parts.append(bytes(self.buffer))  # a body delimited by the connection's end
            self.buffer.clear()
            self._complete()
        elif self.busy:
            self.busy = False
            self._reset()
            self.runner.failed(self, f"connection lost mid-response ({exc or 'closed'})")
        else:
            self.runner.closed(self)


class _Runner:
    """Runs one job in one client process: a closed loop (``loop``) or one burst (``burst``)."""

    def __init__(self, job: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        self.job = job
        self.loop = loop
        self.request: bytes = job["request"]
        self.records: int | None = job["records"]
        self.full_check: bool = job["full_check"]
        self.window_start = job["start_at"] + job["warmup_s"]
        self.window_end = self.window_start + job["duration_s"]
        self.latencies: list[float] = []
        self.ttfbs: list[float] = []
        self.lines = 0
        self.first_bytes = 0
        self.errors = 0
        self.error_samples: list[str] = []
        self.started: list[float] = []
        self.ended: list[float] = []
        self.active = 0
        self.clients: list[_Client] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.cpu_marks: dict[str, float] = {}
        self.all_done: asyncio.Future[None] = loop.create_future()

    async def run(self) -> None:
        job, loop = self.job, self.loop
        if job["kind"] == "loop":
            # The event loop's clock is time.monotonic(), shared with the parent process.
            for mark, when in (("start", self.window_start), ("end", self.window_end)):
                loop.call_at(when, self._mark_cpu, mark)
            self.active = connections = job["connections"]
            # Clients arrive one by one during the warm-up, each starting its loop at once,
            # as clients do: a worker busy with the first ones is slower to accept the next
            # than an idle one, so the connections spread over the workers. Opened all at
            # once, they land on whichever worker wakes first, often all on one.
            spacing = job["warmup_s"] / 2 / connections
            for index in range(connections):
                await asyncio.sleep(max(0.0, job["start_at"] + index * spacing - time.monotonic()))
                try:
                    client = await self._connect()
                except OSError as error:
                    self._error(f"connect failed: {error}")
                    self._one_done()
                else:
                    client.send(time.monotonic())
        else:
            await asyncio.sleep(max(0.0, job["start_at"] - time.monotonic()))
            self.active = job["connections"]
            for _ in range(job["connections"]):
                self._spawn(self._open_and_send())
        deadline = job["start_at"] + job["warmup_s"] + job["duration_s"] + job["timeout_s"]
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(
                asyncio.shield(self.all_done), max(0.0, deadline - time.monotonic())
            )
        for client in self.clients:
            if client.transport is not None:
                client.transport.abort()
                client.transport = None

    def _mark_cpu(self, mark: str) -> None:
        self.cpu_marks[mark] = time.process_time()

    async def _connect(self) -> _Client:
        _, client = await self.loop.create_connection(
            lambda: _Client(self), self.job["host"], self.job["port"]
        )
        self.clients.append(client)
        return client

    async def _open_and_send(self) -> None:
        started = time.monotonic()
        self.started.append(started)
        try:
            client = await self._connect()
        except OSError as error:
            self._error(f"connect failed: {error}")
            self._one_done()
            return
        client.send(started)

    def finished(
        self, client: _Client, status: int, body: bytes, first_at: float, now: float
    ) -> None:
        problem = self._check(status, body)
        if problem:
            self._error(problem)
        if self.job["kind"] == "burst":
            self.ttfbs.append(first_at - client.sent_at)
            self.ended.append(now)
            if not problem:
                self.latencies.append(now - client.sent_at)
                self.lines += self.records + 1 if self.records is not None else 0
            if client.transport is not None:
                client.transport.close()
                client.transport = None
            self._one_done()
            return
        if not problem and self.window_start <= now <= self.window_end:  # completed in it
            self.latencies.append(now - client.sent_at)
            self.ttfbs.append(first_at - client.sent_at)
            self.lines += self.records + 1 if self.records is not None else 0
        self._next(client, now)

    def failed(self, client: _Client, why: str) -> None:
        self._error(why)
        if self.job["kind"] == "burst":
            self.ended.append(time.monotonic())
            self._one_done()
        else:
            self._next(client, time.monotonic())

    def closed(self, client: _Client) -> None:
        """An idle connection closed by the server (keep-alive ended)."""

    def _next(self, client: _Client, now: float) -> None:
        if now >= self.window_end:
            if client.transport is not None:
                client.transport.close()
                client.transport = None
            self._one_done()
        elif client.transport is not None:
            client.send(now)
        else:
            self._spawn(self._reconnect(now))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _reconnect(self, started: float) -> None:
        try:
            client = await self._connect()
        except OSError as error:
            self._error(f"reconnect failed: {error}")
            self._one_done()
            return
        client.send(started)

    def _one_done(self) -> None:
        self.active -= 1
        if self.active <= 0 and not self.all_done.done():
            self.all_done.set_result(None)

    def _error(self, why: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 3:
            self.error_samples.append(why[:300])

    def _check(self, status: int, body: bytes) -> str:
        """Return what is wrong with a reply, or '' when it is what the fake sends."""
        if status != 200:
            return f"status {status}: {body[:200]!r}"
        if self.records is None:
            if body.startswith(PREFIX) and body.endswith(b"}") and b'"done":true' in body:
                return ""
            return f"bad document: {body[:200]!r}"
        if self.full_check:
            return _check_records(body, self.records)
        lines = self.records + 1
        last = body[body.rfind(b"\n", 0, len(body) - 1) + 1 :]
        if (
            body.count(b"\n") == lines
            and body.count(PREFIX) == lines
            and body.count(b'},"done":false}\n') == self.records
            and last.startswith(PREFIX)
            and b'},"done":true,' in last
        ):
            return ""
        lines_seen = body.count(b"\n")
        return f"bad stream of {lines_seen} lines: {body[:200]!r}...{body[-200:]!r}"

    def outcome(self, cpu_s: float) -> dict[str, Any]:
        if "end" in self.cpu_marks and "start" in self.cpu_marks:
            cpu_s = self.cpu_marks["end"] - self.cpu_marks["start"]  # the window alone
        return {
            "latencies": self.latencies,
            "ttfbs": self.ttfbs,
            "lines": self.lines,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "started": min(self.started, default=self.job["start_at"]),
            "ended": max(self.ended, default=0.0),
            "unfinished": max(self.active, 0),
            "first_bytes": self.first_bytes,
            "cpu_s": cpu_s,
        }


def _check_records(body: bytes, records: int) -> str:
    """Parse every line: the alias everywhere, every token in order, one final line."""
    lines = body.split(b"\n")
    if lines[-1] != b"" or len(lines) != records + 2:
        return f"{len(lines) - 1} lines instead of {records + 1}"
    for index, line in enumerate(lines[:-1]):
        try:
            item = json.loads(line)
        except ValueError:
            return f"line {index} is not JSON: {line[:200]!r}"
        if item.get("model") != ALIAS:
            return f"line {index} names model {item.get('model')!r}"
        expected = WORDS[index % len(WORDS)] if index < records else ""
        if item.get("message", {}).get("content") != expected:
            return f"line {index} has content {item.get('message')!r}, not {expected!r}"
        if item.get("done") is not (index == records):
            return f"line {index} has done={item.get('done')!r}"
    return ""


async def _run_job(job: dict[str, Any]) -> dict[str, Any]:
    runner = _Runner(job, asyncio.get_running_loop())
    cpu = time.process_time()
    await runner.run()
    return runner.outcome(time.process_time() - cpu)


def _client_main(pipe: Connection) -> None:
    """A client process: runs the jobs it is sent until it is sent None (or the pipe ends)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C, then stops us
    while True:
        try:
            job = pipe.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            pipe.send(asyncio.run(_run_job(job)))
        except Exception as error:  # reported to the parent, which stops the run
            pipe.send({"crash": f"{type(error).__name__}: {error}"})


class ClientPool:
    """The client processes; a job's connections are split between them."""

    def __init__(self, processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipes: list[Connection] = []
        self._processes: list[multiprocessing.process.BaseProcess] = []
        for _ in range(processes):
            parent, child = context.Pipe()
            process = context.Process(target=_client_main, args=(child,), daemon=True)
            process.start()
            child.close()
            self._pipes.append(parent)
            self._processes.append(process)

    def run(self, job: dict[str, Any], sample: Callable[[str], None]) -> dict[str, Any]:
        """Run ``job`` on every process at once; return the merged outcome.

        ``sample("start")`` and ``sample("end")`` are called when the measuring window
        opens and closes (for a burst: before it starts and once it is over).
        """
        count = len(self._pipes)
        shares = [
            job["connections"] // count + (i < job["connections"] % count) for i in range(count)
        ]
        busy = [pipe for pipe, share in zip(self._pipes, shares, strict=True) if share]
        for pipe, share in zip(busy, (s for s in shares if s), strict=True):
            pipe.send({**job, "connections": share})
        if job["kind"] == "loop":
            window_start = job["start_at"] + job["warmup_s"]
            for phase, when in (("start", window_start), ("end", window_start + job["duration_s"])):
                time.sleep(max(0.0, when - time.monotonic()))  # a timestamp, not a handshake
                sample(phase)
        else:
            sample("start")
        budget = job["start_at"] + job["warmup_s"] + job["duration_s"] + job["timeout_s"]
        outcomes = []
        for pipe in busy:
            if not pipe.poll(max(0.0, budget - time.monotonic()) + JOB_GRACE_S):
                raise RuntimeError("a client process did not answer in time")
            outcome = pipe.recv()
            if "crash" in outcome:
                raise RuntimeError(f"a client process crashed: {outcome['crash']}")
            outcomes.append(outcome)
        if job["kind"] != "loop":
            sample("end")
        merged = {
            "latencies": [x for o in outcomes for x in o["latencies"]],
            "ttfbs": [x for o in outcomes for x in o["ttfbs"]],
            "error_samples": [x for o in outcomes for x in o["error_samples"]][:3],
            "started": min(o["started"] for o in outcomes),
            "ended": max(o["ended"] for o in outcomes),
            "cpu_s": max(o["cpu_s"] for o in outcomes),
        }
        for key in ("lines", "errors", "unfinished", "first_bytes"):
            merged[key] = sum(o[key] for o in outcomes)
        return merged

    def close(self) -> None:
        for pipe in self._pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        for process in self._processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)


# --- The servers ----------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In a child before exec: get SIGTERM when the benchmark dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Server:
    """A server the benchmark started, and how to reach, measure and stop it."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    command: str = ""

    def cpu_s(self) -> float:
        """CPU seconds used so far by the server's processes (gunicorn: arbiter and workers)."""
        return sum(_process_cpu_s(pid) for pid in _process_tree(self.process.pid))

    def worker_cpu_s(self) -> dict[int, float]:
        """CPU seconds used so far by each process the server started (gunicorn's workers)."""
        return {pid: _process_cpu_s(pid) for pid in _process_tree(self.process.pid)[1:]}

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to the whole process group if it does not end in time."""
        process = self.process
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # its own group (start_new_session)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT_S)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _process_cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            fields = file.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


def _process_tree(pid: int) -> list[int]:
    pids: list[int] = []
    pending = [pid]
    while pending and len(pids) < 1000:
        current = pending.pop()
        pids.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children") as file:
                pending.extend(int(child) for child in file.read().split())
        except OSError:
            continue
    return pids


def _read_line(process: subprocess.Popen[bytes], timeout_s: float) -> str:
    """The first line ``process`` prints, waiting at most ``timeout_s``."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    data = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0 or process.poll() is not None:
                break
            if selector.select(min(left, 0.5)):
                chunk = os.read(process.stdout.fileno(), 4096)
                if not chunk:
                    break
                data += chunk
    return data.decode(errors="replace").split("\n", 1)[0] if b"\n" in data else ""


def start_upstream(workdir: Path) -> Server:
    """Start the fake Ollama; return it once it has printed its address."""
    log = workdir / "upstream.log"
    command = [
        sys.executable,
        str(BENCH_DIR / "upstream.py"),
        "--port",
        "0",
        "--parent-pid",
        str(os.getpid()),
    ]
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=log_file,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    server = Server("direct", 0, process, log, " ".join(command))
    try:
        line = _read_line(process, START_TIMEOUT_S)
        if not line.startswith("listening on http://"):
            raise RuntimeError(f"the fake upstream did not start: {line!r}\n{server.log_tail()}")
        server.port = int(line.rsplit(":", 1)[1])
        _wait_until_answering(server, time.monotonic() + START_TIMEOUT_S)
    except BaseException:
        server.stop()
        raise
    finally:
        assert process.stdout is not None
        process.stdout.close()
    return server


_READY_HOOK = """
def post_worker_init(worker):
    worker.log.info("benchmark: worker %s ready", worker.pid)
"""


def start_gunicorn(
    name: str,
    app: str,
    workdir: Path,
    *,
    options: dict[str, Any],
    cli: Sequence[str],
    env: dict[str, str],
    workers: int,
) -> Server:
    """Start gunicorn serving ``app``; return it once every worker has loaded the app.

    The listening socket is made here (port 0) and handed over as ``fd://``, so the port
    is known without a race; ``options`` go in a config file, ``cli`` on the command line.
    """
    config = workdir / f"{name}.conf.py"
    settings = "".join(f"{key} = {value!r}\n" for key, value in options.items())
    config.write_text(_READY_HOOK + settings)
    log = workdir / f"{name}.log"
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, 0))  # gunicorn calls listen() with its own backlog
        port = listener.getsockname()[1]
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            str(config),
            "--bind",
            f"fd://{listener.fileno()}",
            *cli,
            app,
        ]
        with open(log, "wb") as log_file:
            process = subprocess.Popen(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                pass_fds=(listener.fileno(),),
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
    finally:
        listener.close()
    shown = " ".join(["gunicorn", *cli, app])
    if options:
        shown += f" ({', '.join(f'{key}={value!r}' for key, value in options.items())})"
    server = Server(name, port, process, log, shown)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while log.read_text(errors="replace").count("benchmark: worker") < workers:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{server.log_tail()}")
            time.sleep(0.05)  # polling the log, bounded by the deadline
        _wait_until_answering(server, deadline)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_until_answering(server: Server, deadline: float) -> None:
    """Poll ``GET /`` until the server answers 200, until ``deadline``."""
    last = ""
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
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
        time.sleep(0.05)  # polling, bounded by the deadline
    raise RuntimeError(f"{server.name} does not answer ({last}):\n{server.log_tail()}")


# --- Scenarios and measurement ------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One load shape: closed-loop chats or streams, or one burst of slow streams."""

    key: str
    kind: str  # "loop" or "burst"
    target: str  # path and query
    is_stream: bool
    connections: int
    records: int | None  # token records of a stream; None for a document


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    chosen: list[Scenario] = []
    if "chat" in args.scenarios:
        for framing, query in (("length", ""), ("chunked", "?framing=chunked")):
            for concurrency in args.chat_concurrency:
                chosen.append(
                    Scenario(
                        f"chat-{framing}-c{concurrency}",
                        "loop",
                        "/api/chat" + query,
                        False,
                        concurrency,
                        None,
                    )
                )
    if "stream" in args.scenarios:
        for concurrency in args.stream_concurrency:
            target = f"/api/chat?records={args.stream_records}"
            chosen.append(
                Scenario(
                    f"stream-c{concurrency}", "loop", target, True, concurrency, args.stream_records
                )
            )
    if "slow" in args.scenarios:
        target = f"/api/chat?records={args.slow_records}&delay_ms={args.slow_delay_ms:g}"
        chosen.append(Scenario("slow", "burst", target, True, args.streams, args.slow_records))
    return chosen


def request_bytes(scenario: Scenario, port: int) -> bytes:
    body = json.dumps(
        {
            "model": ALIAS,
            "messages": [{"role": "user", "content": "Why is the sky blue?"}],
            "stream": scenario.is_stream,
        },
        separators=(",", ":"),
    ).encode()
    head = (
        f"POST {scenario.target} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"User-Agent: benchmark\r\nAccept: */*\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))]


def measure(
    pool: ClientPool,
    server: Server,
    scenario: Scenario,
    args: argparse.Namespace,
    others: Sequence[Server] = (),
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Run ``scenario`` against ``server`` once; return its figures."""
    is_burst = scenario.kind == "burst"
    duration = 0.0 if is_burst else args.duration
    warmup = 0.0 if is_burst else args.warmup
    ideal = (scenario.records or 0) * args.slow_delay_ms / 1000 if is_burst else 0.0
    job = {
        "kind": scenario.kind,
        "host": HOST,
        "port": server.port,
        "request": request_bytes(scenario, server.port),
        "connections": scenario.connections,
        "records": scenario.records,
        "full_check": is_burst,
        "start_at": time.monotonic() + START_DELAY_S,
        "warmup_s": warmup,
        "duration_s": duration,
        "timeout_s": timeout_s if timeout_s is not None else ideal + JOB_GRACE_S,
    }
    watched = [server, *others]
    cpu: dict[str, list[float]] = {}

    workers: dict[str, dict[int, float]] = {}

    def sample(phase: str) -> None:
        cpu[phase] = [s.cpu_s() for s in watched]
        workers[phase] = server.worker_cpu_s()

    outcome = pool.run(job, sample)
    cpu_used = [end - start for end, start in zip(cpu["end"], cpu["start"], strict=True)]
    latencies, ttfbs = outcome["latencies"], outcome["ttfbs"]
    figures: dict[str, Any] = {
        "errors": outcome["errors"] + outcome["unfinished"],
        "error_samples": outcome["error_samples"],
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "ttfb_p50_ms": _percentile(ttfbs, 0.50) * 1000,
        "ttfb_p99_ms": _percentile(ttfbs, 0.99) * 1000,
        "client_cpu": outcome["cpu_s"] / max(duration, 1e-9),
    }
    if is_burst:
        wall = outcome["ended"] - outcome["started"] if outcome["ended"] else math.nan
        figures.update(
            completed=len(latencies),
            first_bytes=outcome["first_bytes"],
            wall_s=wall,
            added_s=wall - ideal,
            ideal_s=ideal,
            is_correct=len(latencies) == scenario.connections and figures["errors"] == 0,
            server_cpu_pct=cpu_used[0] / wall * 100 if wall > 0 else math.nan,
        )
    else:
        requests = len(latencies)
        figures.update(
            rps=requests / duration,
            lines_per_s=outcome["lines"] / duration,
            server_cpu_ms=cpu_used[0] * 1000 / max(requests, 1),
            upstream_cpu=sum(cpu_used[1:]) / duration,
            server_cpu=cpu_used[0] / duration,
            busiest_worker=_busiest_share(workers["start"], workers["end"]),
        )
    return figures


def _busiest_share(start: dict[int, float], end: dict[int, float]) -> float:
    """The busiest worker's share of the workers' CPU: 1/workers when even, 1 when one
    worker did everything; NaN for a server without workers."""
    used = [end[pid] - start[pid] for pid in end if pid in start]
    return max(used) / sum(used) if len(used) > 1 and sum(used) > 0 else math.nan


# --- Reporting ------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def _spread(values: Sequence[float]) -> float:
    """Half the range, in per cent of the median: the noise between rounds."""
    finite = [v for v in values if not math.isnan(v)]
    middle = _median(finite)
    if len(finite) < 2 or not middle:
        return 0.0
    return (max(finite) - min(finite)) / 2 / abs(middle) * 100


def _cell(values: Sequence[float]) -> str:
    middle = _median(values)
    if math.isnan(middle):
        return "-"
    text = f"{middle:.3g}" if abs(middle) < 1000 else f"{middle:.0f}"
    return f"{text} ±{_spread(values):.0f}%"


class Results:
    """Figures per (scenario, server), one dict per round."""

    def __init__(self) -> None:
        self.figures: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def add(self, scenario: str, server: str, figures: dict[str, Any]) -> None:
        self.figures.setdefault((scenario, server), []).append(figures)

    def values(self, scenario: str, server: str, metric: str) -> list[float]:
        return [float(f[metric]) for f in self.figures.get((scenario, server), [])]

    def errors(self, scenario: str, server: str) -> int:
        return sum(int(f["errors"]) for f in self.figures.get((scenario, server), []))

    def table(self, title: str, names: Sequence[str], rows: Sequence[tuple[str, str, str]]) -> None:
        """Print ``rows`` of (label, scenario, metric): medians over rounds, ±half-range."""
        print(f"\n{title}: median over rounds ±half-range")
        width = max(16, *(len(name) + 2 for name in names))
        print(f"{'':<24}" + "".join(f"{name:>{width}}" for name in names))
        for label, key, metric in rows:
            cells = "".join(f"{_cell(self.values(key, name, metric)):>{width}}" for name in names)
            print(f"{label:<24}{cells}")


@dataclass
class Verdict:
    """One figure of one worker class against its target; ``passed`` None: for information."""

    worker_class: str
    label: str
    detail: str
    shown: str
    target: str
    passed: bool | None
    span: str = ""

    def line(self) -> str:
        verdict = {True: "PASS", False: "MISS", None: "info"}[self.passed]
        return (
            f"  {self.label:<30} {self.detail:<52} {self.shown:>8}  {self.target:<9} "
            f"{verdict}  {self.span}"
        ).rstrip()


def _ratio(
    worker_class: str,
    label: str,
    detail: str,
    ratios: Sequence[float],
    target: str,
    is_clean: bool,
    *,
    is_info: bool = False,
) -> Verdict:
    """A verdict on the median of per-round ratios, against ``target`` ("<= 1.3" or ">= 0.8")."""
    middle = _median(ratios)
    operator, limit = target.split()
    met = middle <= float(limit) if operator == "<=" else middle >= float(limit)
    finite = [r for r in ratios if not math.isnan(r)]
    span = f"[{min(finite):.2f}-{max(finite):.2f}]" if len(finite) > 1 else ""
    passed = None if is_info else is_clean and met
    return Verdict(worker_class, label, detail, f"{middle:.2f}x", target + "x", passed, span)


def targets(
    results: Results, proxy: str, worker_class: str, chosen: Sequence[Scenario]
) -> list[Verdict]:
    """The issue's targets for the server ``proxy`` (of ``worker_class``), from the per-round
    figures."""
    floor = f"floor[{worker_class}]"
    verdicts: list[Verdict] = []

    def per_round(key: str, metric: str) -> tuple[list[float], list[float], list[float]]:
        return (
            results.values(key, "direct", metric),
            results.values(key, floor, metric),
            results.values(key, proxy, metric),
        )

    for s in chosen:
        is_clean = not results.errors(s.key, proxy)
        if s.key.startswith("chat-"):
            framing = "length" if "-length-" in s.key else "chunked"
            if s.connections == 1:
                direct, under, mine = per_round(s.key, "p50_ms")
                ratios = [p / (f + d) for d, f, p in zip(direct, under, mine, strict=True)]
                detail = (
                    f"{_median(mine):.3f} ms vs {_median(under):.3f} + {_median(direct):.3f} ms"
                )
                verdicts.append(
                    _ratio(
                        worker_class,
                        f"chat {framing} c=1 p50 latency",
                        detail,
                        ratios,
                        f"<= {LATENCY_TARGET}",
                        is_clean,
                    )
                )
            direct, under, mine = per_round(s.key, "rps")
            ratios = [p * (1 / f + 1 / d) for d, f, p in zip(direct, under, mine, strict=True)]
            limits = [1 / (1 / f + 1 / d) for d, f in zip(direct, under, strict=True)]
            detail = (
                f"{_median(mine):.0f}/s vs {_median(limits):.0f}/s (floor "
                f"{_median(under):.0f}, direct {_median(direct):.0f})"
            )
            verdicts.append(
                _ratio(
                    worker_class,
                    f"chat {framing} c={s.connections} req/s",
                    detail,
                    ratios,
                    f">= {THROUGHPUT_TARGET}",
                    is_clean,
                    is_info=s.connections == 1,
                )
            )
        elif s.key.startswith("stream-"):
            direct, _, mine = per_round(s.key, "lines_per_s")
            ratios = [p / d for d, p in zip(direct, mine, strict=True)]
            detail = f"{_median(mine):.0f}/s vs direct {_median(direct):.0f}/s"
            verdicts.append(
                _ratio(
                    worker_class,
                    f"stream c={s.connections} lines/s",
                    detail,
                    ratios,
                    f">= {STREAM_RATE_TARGET}",
                    is_clean,
                    is_info=s.connections != 8,
                )
            )
            direct, _, mine = per_round(s.key, "ttfb_p50_ms")
            ratios = [p / d for d, p in zip(direct, mine, strict=True)]
            detail = f"{_median(mine):.3f} ms vs direct {_median(direct):.3f} ms"
            verdicts.append(
                _ratio(
                    worker_class,
                    f"stream c={s.connections} TTFB p50",
                    detail,
                    ratios,
                    f"<= {STREAM_TTFB_TARGET}",
                    is_clean,
                    is_info=s.connections != 1,
                )
            )
        elif s.key == "slow":
            runs = results.figures.get(("slow", proxy), [])
            correct = sum(1 for f in runs if f["is_correct"])
            all_correct = bool(runs) and correct == len(runs)
            completed = results.values("slow", proxy, "completed")
            verdicts.append(
                Verdict(
                    worker_class,
                    f"{s.connections} slow streams correct",
                    f"{min(completed):.0f}/{s.connections} at worst; every one correct in",
                    f"{correct}/{len(runs)}",
                    "rounds",
                    all_correct,
                )
            )
            direct, _, mine = per_round("slow", "added_s")
            detail = f"over the ideal {runs[0]['ideal_s']:.2f} s (direct {_median(direct):.3f} s)"
            verdicts.append(
                Verdict(
                    worker_class,
                    f"{s.connections} slow streams added time",
                    detail,
                    f"{_median(mine):.3f} s",
                    f"< {SLOW_ADDED_TARGET_S} s",
                    all_correct and _median(mine) < SLOW_ADDED_TARGET_S,
                    f"[{min(mine):.3f}-{max(mine):.3f}]",
                )
            )
            direct, _, mine = per_round("slow", "ttfb_p99_ms")
            verdicts.append(
                Verdict(
                    worker_class,
                    f"{s.connections} slow streams TTFB p99",
                    f"connect included (direct {_median(direct):.1f} ms)",
                    f"{_median(mine):.1f} ms",
                    f"< {SLOW_TTFB_P99_TARGET_MS:.0f} ms",
                    all_correct and _median(mine) < SLOW_TTFB_P99_TARGET_MS,
                    f"[{min(mine):.1f}-{max(mine):.1f}]",
                )
            )
    return verdicts


def report(
    results: Results, names: Sequence[str], classes: Sequence[str], chosen: Sequence[Scenario]
) -> list[Verdict]:
    """Print the figures, the errors and the targets; return the verdicts."""
    chat = [s for s in chosen if s.key.startswith("chat-")]
    if chat:
        rows = [
            (
                f"{'length' if '-length-' in s.key else 'chunked'} c={s.connections}"
                if index == 0
                else "",
                s.key,
                metric,
            )
            for s in chat
            for index, metric in enumerate(("p50_ms", "p99_ms", "rps", "server_cpu_ms"))
        ]
        labels = ("p50 ms", "p99 ms", "req/s", "CPU ms/req")
        rows = [
            (f"{prefix:<13}{labels[i % 4]}", key, metric)
            for i, (prefix, key, metric) in enumerate(rows)
        ]
        results.table("Non-streaming POST /api/chat (8 tokens)", names, rows)
    streams = [s for s in chosen if s.key.startswith("stream-")]
    if streams:
        labels = ("TTFB p50 ms", "TTFB p99 ms", "lines/s", "streams/s")
        metrics = ("ttfb_p50_ms", "ttfb_p99_ms", "lines_per_s", "rps")
        rows = [
            (f"{f'c={s.connections}' if i == 0 else '':<8}{labels[i]}", s.key, metrics[i])
            for s in streams
            for i in range(4)
        ]
        records = streams[0].records or 0
        results.table(f"Streaming POST /api/chat ({records + 1} NDJSON lines)", names, rows)
    slow = next((s for s in chosen if s.key == "slow"), None)
    if slow is not None:
        rows = [
            (label, "slow", metric)
            for label, metric in (
                ("complete and correct", "completed"),
                ("wall s", "wall_s"),
                ("added s", "added_s"),
                ("TTFB p50 ms", "ttfb_p50_ms"),
                ("TTFB p99 ms", "ttfb_p99_ms"),
                ("server CPU %", "server_cpu_pct"),
            )
        ]
        ideal = (slow.records or 0) * float(slow.target.rsplit("=", 1)[1]) / 1000
        title = (
            f"{slow.connections} slow streams at once ({slow.records} tokens, ideal {ideal:.2f} s)"
        )
        results.table(title, names, rows)
    failures = [(key, name) for key, name in results.figures if results.errors(key, name)]
    if failures:
        print("\nERRORS (a scenario with errors misses its targets):")
        for key, name in failures:
            samples = [x for f in results.figures[key, name] for x in f["error_samples"]]
            print(
                f"  {key} on {name}: {results.errors(key, name)} errors or unfinished, "
                f"e.g. {samples[0] if samples else 'cut off by the time limit'}"
            )
    verdicts: list[Verdict] = []
    for worker_class in classes:
        for role in ("proxy", "relay", "relay+rw"):
            name = f"{role}[{worker_class}]"
            if name not in names:
                continue
            note = "" if role == "proxy" else ", a yardstick: not counted"
            print(f"\nTargets for {name} (median of per-round ratios, [min-max]{note})")
            mine = targets(results, name, worker_class, chosen)
            for verdict in mine:
                print(verdict.line())
            if role == "proxy":
                verdicts += mine
    return verdicts


def _diagnostics(results: Results, names: Sequence[str], chosen: Sequence[Scenario]) -> None:
    """Who used the CPU: the client (it must not be the bottleneck) and the upstream."""
    loops = [s for s in chosen if s.kind == "loop"]
    if not loops:
        return
    busiest = max(
        (f["client_cpu"], key, name)
        for (key, name), runs in results.figures.items()
        if key != "slow"
        for f in runs
    )
    print(
        "\nCPU while measuring, in % of one core (the machine has "
        f"{os.cpu_count()}): the busiest client process used {busiest[0] * 100:.0f}% "
        f"({busiest[1]} on {busiest[2]})"
    )
    for s in loops:
        cells = []
        for name in names:
            server = _median(results.values(s.key, name, "server_cpu")) * 100
            client = _median(results.values(s.key, name, "client_cpu")) * 100
            upstream = _median(results.values(s.key, name, "upstream_cpu")) * 100
            extra = f" + upstream {upstream:.0f}" if name.startswith(("proxy", "relay")) else ""
            share = _median(results.values(s.key, name, "busiest_worker"))
            split = "" if math.isnan(share) else f", busiest worker {share * 100:.0f}%"
            cells.append(f"{name} {server:.0f}{extra} (client {client:.0f}{split})")
        print(f"  {s.key:<17} " + "; ".join(cells))


def _load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _gunicorn_env(upstream: Server) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OLLAMA_DEFAULT_", "GUNICORN_")) and k != "WEB_CONCURRENCY"
    }
    env.update(
        OLLAMA_DEFAULT_UPSTREAM=f"http://{HOST}:{upstream.port}",
        OLLAMA_DEFAULT_ALIAS=ALIAS,
        OLLAMA_DEFAULT_TARGET=TARGET,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")])),
    )
    return env


def _worker_cli(worker_class: str, args: argparse.Namespace) -> list[str]:
    cli = ["--workers", str(args.workers), "--worker-class", worker_class]
    if worker_class == "gthread":
        cli += ["--threads", str(args.threads)]
    cli += ["--worker-connections", str(args.worker_connections)]
    return cli


def sync_check(
    pool: ClientPool,
    upstream: Server,
    workdir: Path,
    args: argparse.Namespace,
    slow: Scenario,
    stack: contextlib.ExitStack,
) -> None:
    """Plain ``gunicorn -w 2 ollama_default.proxy:app`` on the slow streams, cut off early."""
    server = start_gunicorn(
        "proxy[sync]",
        "ollama_default.proxy:app",
        workdir,
        options={},
        cli=["--workers", "2"],
        env=_gunicorn_env(upstream),
        workers=2,
    )
    stack.callback(server.stop)
    print(f"\nPlain gunicorn (sync worker): {server.command}")
    figures = measure(pool, server, slow, args, timeout_s=args.sync_timeout)
    server.stop()
    ideal = figures["ideal_s"]
    print(
        f"  {slow.connections} slow streams, cut off after {args.sync_timeout:g} s: "
        f"{figures['completed']} complete, {figures['first_bytes']} had a first byte; "
        f"TTFB p50 {figures['ttfb_p50_ms']:.0f} ms over those"
    )
    print(
        f"  one stream per worker at a time: all {slow.connections} would take about "
        f"{slow.connections / 2 * ideal:.0f} s instead of {ideal:.1f} s "
        f"(the last client waits {(slow.connections / 2 - 1) * ideal:.0f} s for a first byte)"
    )
    warned = "sync worker serves one request" in server.log_tail(200)
    print(f"  the proxy's warning about the sync worker: {'logged' if warned else 'NOT logged'}")


def warm_up(pool: ClientPool, servers: Sequence[Server], args: argparse.Namespace) -> None:
    """Open (and pool, in the proxy) as many connections as the slow scenario needs."""
    burst = Scenario("warm-up", "burst", "/api/chat?records=1", True, args.streams, 1)
    for server in servers:
        figures = measure(pool, server, burst, args)
        if figures["errors"]:
            raise RuntimeError(f"{server.name} fails: {figures['error_samples']}")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from ollama_default.proxy.cli import SERVE_DEFAULTS

    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n", 1)[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )

    def csv_of(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
        return lambda text: [kind(part) for part in text.split(",") if part]

    parser.add_argument(
        "--worker-class",
        type=csv_of(str),
        default=["gthread", "gevent"],
        help="comma-separated gunicorn worker classes: gthread, gevent",
    )
    parser.add_argument(
        "--workers", type=int, default=SERVE_DEFAULTS.get("workers", 2), help="gunicorn workers"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=SERVE_DEFAULTS.get("threads", 128),
        help="threads per gthread worker",
    )
    parser.add_argument(
        "--worker-connections",
        type=int,
        default=SERVE_DEFAULTS.get("worker_connections", 1000),
        help="connections per worker (gevent: its concurrency)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--duration", type=float, default=0.6, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=0.15, help="seconds before each one")
    parser.add_argument(
        "--scenarios",
        type=csv_of(str),
        default=["chat", "stream", "slow"],
        help="comma-separated: chat, stream, slow",
    )
    parser.add_argument("--chat-concurrency", type=csv_of(int), default=[1, 8, 64])
    parser.add_argument("--stream-concurrency", type=csv_of(int), default=[1, 8])
    parser.add_argument("--stream-records", type=int, default=200, help="tokens per stream")
    parser.add_argument("--streams", type=int, default=256, help="slow streams at once")
    parser.add_argument("--slow-records", type=int, default=100, help="tokens per slow stream")
    parser.add_argument("--slow-delay-ms", type=float, default=20.0, help="between tokens")
    parser.add_argument("--client-processes", type=int, default=1, help="load generators")
    parser.add_argument(
        "--proxy-app",
        default="ollama_default.proxy:app",
        help="the proxy's WSGI app for gunicorn (to measure a candidate change)",
    )
    parser.add_argument(
        "--relay",
        action="store_true",
        help="also measure relay[W] and relay+rw[W], the least a Python relay does, without "
        "and with rewriting (benchmarks/relay.py)",
    )
    parser.add_argument(
        "--sync-check",
        action="store_true",
        help="also run plain gunicorn (sync worker) on the slow streams",
    )
    parser.add_argument(
        "--sync-timeout", type=float, default=8.0, help="seconds before the sync check is cut off"
    )
    args = parser.parse_args(argv)
    unknown = set(args.worker_class) - {"gthread", "gevent"}
    if unknown or not args.worker_class:
        parser.error(f"--worker-class: gthread and/or gevent, not {sorted(unknown)}")
    unknown = set(args.scenarios) - {"chat", "stream", "slow"}
    if unknown or not args.scenarios:
        parser.error(f"--scenarios: chat, stream and/or slow, not {sorted(unknown)}")
    if args.rounds < 1 or args.duration <= 0 or args.client_processes < 1:
        parser.error("--rounds, --duration and --client-processes must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return 0 when every target was met, 1 otherwise."""
    from ollama_default.proxy.cli import SERVE_DEFAULTS

    args = _parse_args(argv)
    # What the command line sets is left out; the rest is what `ollama-default serve` runs.
    cli_keys = ("bind", "workers", "worker_class", "threads", "worker_connections")
    options = {key: value for key, value in SERVE_DEFAULTS.items() if key not in cli_keys}
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    chosen = scenarios(args)
    started = time.monotonic()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load average {_load_average()} at start"
    )
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-proxy-")))
        pool = ClientPool(args.client_processes)
        stack.callback(pool.close)
        upstream = start_upstream(workdir)
        stack.callback(upstream.stop)
        servers = [upstream]
        for worker_class in args.worker_class:
            cli = _worker_cli(worker_class, args)
            roles = [
                ("floor", "upstream:floor", ["--pythonpath", str(BENCH_DIR)]),
                ("proxy", args.proxy_app, []),
            ]
            if args.relay:
                roles += [
                    ("relay", "relay:app", ["--pythonpath", str(BENCH_DIR)]),
                    ("relay+rw", "relay:rewriting_app", ["--pythonpath", str(BENCH_DIR)]),
                ]
            for role, app, extra in roles:
                server = start_gunicorn(
                    f"{role}[{worker_class}]",
                    app,
                    workdir,
                    options=options,
                    cli=[*cli, *extra],
                    env=_gunicorn_env(upstream),
                    workers=args.workers,
                )
                stack.callback(server.stop)
                servers.append(server)
        print(f"direct: {upstream.command}")
        for server in servers[1:]:
            print(f"{server.name}: {server.command}")
        warm_up(pool, servers, args)
        results = Results()
        for round_index in range(args.rounds):
            print(f"round {round_index + 1}/{args.rounds} ...", flush=True)
            shift = round_index % len(servers)
            order = servers[shift:] + servers[:shift]
            for scenario in chosen:
                for server in order:
                    watched = [upstream] if server.name.startswith(("proxy", "relay")) else []
                    figures = measure(pool, server, scenario, args, watched)
                    results.add(scenario.key, server.name, figures)
        names = [s.name for s in servers]
        verdicts = report(results, names, args.worker_class, chosen)
        _diagnostics(results, names, chosen)
        if args.sync_check and any(s.key == "slow" for s in chosen):
            slow = next(s for s in chosen if s.key == "slow")
            sync_check(pool, upstream, workdir, args, slow, stack)
        print(
            f"\nSummary ({args.rounds} rounds, {time.monotonic() - started:.0f} s, "
            f"load average {_load_average()} at the end):"
        )
        for worker_class in args.worker_class:
            mine = [v for v in verdicts if v.worker_class == worker_class]
            judged = [v.passed for v in mine if v.passed is not None]
            print(f"  {worker_class:<8} {sum(judged)}/{len(judged)} targets met")
    return 0 if verdicts and all(v.passed is not False for v in verdicts) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; every server started was stopped", file=sys.stderr)
        sys.exit(130)
    except RuntimeError as error:  # a server or client process failed; all were stopped
        print(f"benchmark failed: {error}", file=sys.stderr)
        sys.exit(2)
