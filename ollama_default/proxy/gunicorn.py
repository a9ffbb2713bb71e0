"""gunicorn glue, the one module that imports gunicorn: serve's worker, hooks, settings.

As a gunicorn configuration module it runs the proxy as ``ollama-default serve`` does::

    gunicorn -c python:ollama_default.proxy.gunicorn ollama_default.proxy:app

with serve's settings (the module-level names below, from
:data:`~ollama_default.proxy.cli.SERVE_DEFAULTS`) and the hook :func:`on_starting`, which
checks the configuration once, in the master, before any worker starts, logs what the
proxy serves and makes the concurrency limits' shared counts; :func:`when_ready`, which
starts the reload coordinator the workers follow (SIGHUP makes it look at the file at
once); and :func:`child_exit`, which gives back the slots of a worker that died holding
them. gunicorn's own options on the command line still win.

:class:`GeventWorker` is gunicorn's gevent worker, stopping at once when idle. Told to stop
gracefully (SIGTERM), gunicorn's waits until every connection it holds has closed, up to
``graceful_timeout``; that grace is 60 s here, so that streams under way can finish. But a
connection waiting for its next request is held too: a client that merely kept its
connection alive held the stop for a minute. This worker closes the connections that wait
for a request when it is told to stop, and lets the requests in flight finish within the
grace as before. And Ctrl-C sends SIGINT to the master and the workers alike, and the
master then sends SIGQUIT: a worker ran gunicorn's quick exit twice, and the second could
print a traceback as the interpreter shut down. A worker quits once here. (The third way a
stop took 60 s, a signal lost by a worker still booting, is closed in the master: see
:func:`ollama_default.proxy.cli.exit_on_stop_signals`.)

It also bounds the reading of each request head. gunicorn waits for a request under one
timer, ``keepalive`` (75 s here), from the end of the last response to the end of the
next head: a client that sends half a head and stops held a connection for that long,
and the next one as long again. Here the wait for a head's first byte keeps the
keep-alive time, and from that byte the whole head has ``head_timeout_s`` (10 s); a head
that does not arrive in time gets 408. And where gunicorn refuses a request itself (a
malformed request line, headers too large, a bad chunk size) it writes an HTML page; this
worker answers JSON in the dialect of the request's path, with gunicorn's status.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import html
import os
import re
import sys
import termios
import traceback
from collections.abc import Iterator
from types import FrameType
from typing import Any

import gevent
from gunicorn import util
from gunicorn.errors import AppImportError
from gunicorn.http.message import Request
from gunicorn.http.unreader import Unreader
from gunicorn.workers.ggevent import GeventWorker as _GunicornGeventWorker

from ..core.dialects import error_body
from ..core.endpoints import dialect_for
from ..core.errors import ConfigError
from .cli import SERVE_DEFAULTS, gunicorn_trust, probe_upstream
from .config import Settings, load_settings
from .logs import configure_logging, log_startup
from .reading import HEAD_TIMEOUT_S
from .reload import SettingsSource, start_coordinator
from .reload import on_exit as stop_coordinator
from .reload import on_reload as reload_now
from .slots import install_shared_counts, reclaim

# libev's and libuv's "readable" event, as gevent's loop.io takes it.
_READ = 1
# gunicorn's error page (gunicorn.util.write_error): its status line, and its message.
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ([^\r\n]*)")
_PAGE_MESSAGE = re.compile(rb"</h1>(.*)</body>", re.DOTALL)

# serve's settings, read by gunicorn from this module when it is given with -c.
bind = SERVE_DEFAULTS["bind"]
workers = SERVE_DEFAULTS["workers"]
worker_class = SERVE_DEFAULTS["worker_class"]
worker_connections = SERVE_DEFAULTS["worker_connections"]
keepalive = SERVE_DEFAULTS["keepalive"]
graceful_timeout = SERVE_DEFAULTS["graceful_timeout"]
control_socket_disable = SERVE_DEFAULTS["control_socket_disable"]


def on_starting(server: Any) -> None:
    """gunicorn hook, in the master before any worker: check the configuration once, set
    up the log, and say what the proxy serves; a bad configuration stops gunicorn here with
    one line."""
    try:
        settings = load_settings(os.environ)
        configure_logging(settings)
    except ConfigError as error:
        print(f"ollama-default: configuration error: {error}", file=sys.stderr)
        sys.exit(2)
    cfg = server.cfg
    # Whose scheme and SCRIPT_NAME headers gunicorn believes: the same peers the forwarder
    # believes about the client (none by default), before any worker reads them.
    for key, value in gunicorn_trust(settings.trusted_proxies).items():
        cfg.set(key, value)
    # Before any worker is forked, so that all of them count in it.
    install_shared_counts()
    probe = probe_upstream(settings.upstream)
    log_startup(
        settings,
        upstream_answers=probe.answers,
        installed=probe.installed,
        workers=f"{cfg.workers} x {cfg.worker_class_str} ({cfg.worker_connections} connections)",
    )


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn hook, in the master once a worker has exited: give back the slots of the
    concurrency limits it held (a worker killed mid-stream never closed its responses)."""
    held, queued = reclaim(worker.pid)
    if held or queued:
        server.log.warning(
            "worker %s exited holding %d request slot(s) and %d queued request(s); "
            "they are free again",
            worker.pid,
            held,
            queued,
        )


def when_ready(server: Any) -> None:
    """gunicorn hook, in the master once it listens and before it forks a worker: start the
    reload coordinator (:mod:`~ollama_default.proxy.reload`), which the workers follow."""
    try:
        start_coordinator(server, SettingsSource(dict(os.environ)))
    except ConfigError as error:
        print(f"ollama-default: configuration error: {error}", file=sys.stderr)
        sys.exit(2)


# gunicorn's SIGHUP looks at the config file at once; its exit removes the runtime files.
on_reload = reload_now
on_exit = stop_coordinator


def app_import_error(message: str) -> Exception:
    """The error gunicorn prints as one line (no traceback) when a worker cannot load the
    app, stopping the server."""
    error: Exception = AppImportError(message)
    return error


class GeventWorker(_GunicornGeventWorker):  # type: ignore[misc]
    """gunicorn's gevent worker, which closes idle connections when told to stop, bounds
    each request head, and answers its own refusals in JSON."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # greenlet -> its wait for a request head; greenlet -> its client's socket.
        self._waiting: dict[Any, _RequestWait] = {}
        _HEAD_WAITS[:] = [self._waiting]  # one worker a process
        _hook_reads()
        self._clients: dict[Any, Any] = {}
        self._quitting = False
        self._head_timeout_s = HEAD_TIMEOUT_S
        self._prefix = ""

    def load_wsgi(self) -> None:
        """Load the app, and the settings this worker reads itself."""
        super().load_wsgi()
        # serve hands its settings over; under gunicorn itself they come from the
        # environment, as the app's own do (a bad one has stopped gunicorn already).
        settings: Settings | None = getattr(self.app, "proxy_settings", None)
        if settings is None:
            with contextlib.suppress(ConfigError):
                settings = load_settings(os.environ)
        if settings is not None:
            self._head_timeout_s = settings.head_timeout_s
            self._prefix = settings.prefix

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        """Serve one connection, its socket known to the waits for its request heads."""
        current = gevent.getcurrent()
        self._clients[current] = client
        try:
            super().handle(listener, client, addr)
        finally:
            self._clients.pop(current, None)

    def timeout_ctx(self) -> contextlib.AbstractContextManager[None]:
        """Wrap each wait for a request head (gunicorn's ``base_async`` keep-alive loop)."""
        return self._waiting_for_request()

    @contextlib.contextmanager
    def _waiting_for_request(self) -> Iterator[None]:
        # As gunicorn's own, silent when it ends: gunicorn closes the connection. Once the
        # worker is stopping, a request not already here is not waited for.
        current = gevent.getcurrent()
        client = self._clients.get(current)
        alive = self.alive
        wait = _RequestWait(
            current,
            client.fileno() if client is not None and alive else None,
            self.cfg.keepalive if alive else 0,
            self._head_timeout_s,
        )
        self._waiting[current] = wait
        try:
            yield
        except _WaitEnded as ended:
            if ended.head and not ended.stopping and client is not None:
                self._answer_late_head(client, ended)
        finally:
            wait.close()
            self._waiting.pop(current, None)

    def _answer_late_head(self, client: Any, ended: _WaitEnded) -> None:
        """408, when the wait ended in the middle of a request head (not while gunicorn
        drained the last request's unread body)."""
        request = _request_in(ended)
        if request is None:
            return
        message = f"the request head did not arrive within {self._head_timeout_s:g} s"
        self.log.debug("%s; closing the connection", message)
        _write_json(client, 408, "Request Timeout", self._dialect_path(request.path), message)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Answer a request gunicorn refuses (or an app's crash) in JSON, not HTML.

        gunicorn picks the status and logs as always, writing its page to a stand-in
        socket; the client gets that status and message in its dialect.
        """
        page = _Page()
        super().handle_error(req, page, addr, exc)
        status = _STATUS_LINE.match(page.data)
        if status is None:
            _send(client, page.data)  # not the page we know: as gunicorn wrote it
            return
        code, reason = int(status.group(1)), status.group(2).decode("latin-1")
        found = _PAGE_MESSAGE.search(page.data)
        message = html.unescape(found.group(1).decode("latin-1")).strip() if found else ""
        request = req if req is not None else getattr(exc, "req", None) or _request_in(exc)
        path = getattr(request, "path", None)
        _write_json(client, code, reason, self._dialect_path(path), message or reason)

    def _dialect_path(self, path: object) -> str:
        """The path a dialect is chosen by: the request's, without the proxy's prefix."""
        if not isinstance(path, str):
            return ""
        if self._prefix and path.startswith(self._prefix + "/"):
            return path[len(self._prefix) :]
        return path

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGTERM: stop accepting, close idle connections, finish the requests in flight."""
        super().handle_exit(sig, frame)
        if self._waiting:
            loop = gevent.get_hub().loop
            for wait in list(self._waiting.values()):
                # The wait ends as if its time were up: gunicorn closes the connection.
                # From the loop, not from inside this signal handler.
                loop.run_callback(wait.end, True)

    def handle_quit(self, sig: int, frame: FrameType | None) -> None:
        """SIGINT, SIGQUIT: exit at once, as gunicorn's worker does, but only once."""
        if self._quitting:
            return
        self._quitting = True
        super().handle_quit(sig, frame)


class _WaitEnded(BaseException):
    """Ends a wait for a request head. A BaseException, as gevent's Timeout is, so that
    nothing gunicorn does on the way catches it."""

    def __init__(self, *, head: bool, stopping: bool) -> None:
        super().__init__()
        self.head = head
        self.stopping = stopping


class _RequestWait:
    """One wait for a request head: ``idle_s`` for its first byte, then ``head_s`` for all
    of it. Timers and the readiness of the client's socket on gevent's loop; when time
    is up, the waiting greenlet gets :class:`_WaitEnded`, as a gevent Timeout throws."""

    def __init__(self, greenlet: Any, fd: int | None, idle_s: float, head_s: float) -> None:
        self._loop = gevent.get_hub().loop
        self._greenlet = greenlet
        self._head_s = head_s
        self._closed = False
        self.head = False
        self._timer = self._loop.timer(idle_s)
        self._timer.start(self.end)
        self._watcher = None
        if fd is None:
            return
        # Bytes waiting on the socket, or arriving while gunicorn waits for them: a head
        # has begun. (Bytes gunicorn has already read ahead need no waiting for.) Those
        # already here are counted, since gunicorn reads them before the loop looks.
        if _bytes_waiting(fd):
            self._first_byte()
        else:
            self._watcher = self._loop.io(fd, _READ)
            self._watcher.start(self._first_byte)

    def bytes_read(self) -> None:
        """gunicorn has read bytes of the head (the socket's, or some it had read ahead):
        the head has begun, whatever the watcher saw."""
        if not self.head and not self._closed:
            self._first_byte()

    def _first_byte(self) -> None:
        self._stop_watching()
        self.head = True
        self._timer.stop()
        self._timer.close()
        self._timer = self._loop.timer(self._head_s)
        self._timer.start(self.end)

    def end(self, stopping: bool = False) -> None:
        """End the wait now (time is up, or the worker is stopping)."""
        if self._closed:
            return
        head = self.head
        self.close()
        self._greenlet.throw(_WaitEnded(head=head, stopping=stopping))

    def close(self) -> None:
        """Stop the timers and the watching; the wait is over."""
        self._closed = True
        self._stop_watching()
        self._timer.stop()
        self._timer.close()

    def _stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher.close()
            self._watcher = None


#: The waits for request heads of this process's worker, by greenlet.
_HEAD_WAITS: list[dict[Any, _RequestWait]] = []


def _hook_reads() -> None:
    """Have gunicorn's reads of a request tell the wait for its head that bytes came.

    The io watcher alone misses bytes that arrive between the look at the socket and
    gunicorn's first ``recv`` (which takes them at once, without the loop), and bytes
    gunicorn read ahead with the previous request: the head has begun, but the wait
    would stay on the keep-alive timer (found by benchmarks/soak.py).
    """
    if getattr(Unreader.read, "_tells_head_waits", False):
        return
    read = Unreader.read

    def reading(self: Unreader, *args: Any, **kwargs: Any) -> bytes:
        data: bytes = read(self, *args, **kwargs)
        if data and _HEAD_WAITS:
            wait = _HEAD_WAITS[0].get(gevent.getcurrent())
            if wait is not None:
                wait.bytes_read()
        return data

    reading._tells_head_waits = True  # type: ignore[attr-defined]
    Unreader.read = reading


def _bytes_waiting(fd: int) -> int:
    """How many bytes wait to be read on the socket ``fd`` (FIONREAD); 0 if unknown."""
    count = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, count, True)
    except OSError:
        return 0
    return count[0]


def _request_in(exc: BaseException) -> Any:
    """The gunicorn Request that was being read when ``exc`` was raised, if one was.

    gunicorn builds the request as it reads its head, and a failure part-way drops it:
    only the frames of the traceback still hold it (with its path once the request line
    was read).
    """
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, Request):
            return candidate
    return None


def _write_json(client: Any, status: int, reason: str, path: str, message: str) -> None:
    body = error_body(dialect_for(path), status, message)
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    _send(client, head.encode("latin-1") + body)


def _send(client: Any, data: bytes) -> None:
    # As gunicorn sends its page: at once or not at all, never waiting on the client.
    with contextlib.suppress(Exception):
        util.write_nonblock(client, data)


class _Page:
    """Stands in for the client's socket while gunicorn writes its error page."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float | None:
        return None

    def setblocking(self, flag: bool) -> None:
        """As a socket's; nothing to set."""

    def sendall(self, data: bytes) -> None:
        self.data += data
