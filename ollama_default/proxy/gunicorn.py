"""gunicorn glue, the one module that imports gunicorn: serve's worker, hooks, settings.

As a gunicorn configuration module it runs the proxy as ``ollama-default serve`` does::

    gunicorn -c python:ollama_default.proxy.gunicorn ollama_default.proxy:app

with serve's settings (the module-level names below, from
:data:`~ollama_default.proxy.cli.SERVE_DEFAULTS`) and the hook :func:`on_starting`, which
checks the configuration once, in the master, before any worker starts, and logs what the
proxy serves. gunicorn's own options on the command line still win.

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
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from types import FrameType
from typing import Any

import gevent
from gunicorn.errors import AppImportError
from gunicorn.workers.ggevent import GeventWorker as _GunicornGeventWorker

from ..core.errors import ConfigError
from .cli import SERVE_DEFAULTS, is_answering
from .config import load_settings
from .logs import configure_logging, log_startup

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
    log_startup(
        settings,
        upstream_answers=is_answering(settings.upstream),
        workers=f"{cfg.workers} x {cfg.worker_class_str} ({cfg.worker_connections} connections)",
    )


def app_import_error(message: str) -> Exception:
    """The error gunicorn prints as one line (no traceback) when a worker cannot load the
    app, stopping the server."""
    error: Exception = AppImportError(message)
    return error


class GeventWorker(_GunicornGeventWorker):  # type: ignore[misc]
    """gunicorn's gevent worker, which closes idle connections when told to stop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # greenlet -> the timeout it waits for a request head under.
        self._waiting: dict[Any, Any] = {}
        self._quitting = False

    def timeout_ctx(self) -> contextlib.AbstractContextManager[None]:
        """Wrap each wait for a request head (gunicorn's ``base_async`` keep-alive loop)."""
        return self._waiting_for_request()

    @contextlib.contextmanager
    def _waiting_for_request(self) -> Iterator[None]:
        # As gunicorn's own: a silent timeout, after which the connection closes. Once the
        # worker is stopping, a request not already here is not waited for.
        timeout = gevent.Timeout(self.cfg.keepalive if self.alive else 0, False)
        current = gevent.getcurrent()
        self._waiting[current] = timeout
        try:
            with timeout:
                yield
        finally:
            self._waiting.pop(current, None)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGTERM: stop accepting, close idle connections, finish the requests in flight."""
        super().handle_exit(sig, frame)
        if self._waiting:
            loop = gevent.get_hub().loop
            for waiter, timeout in list(self._waiting.items()):
                # The timeout ends the wait as if it had expired: gunicorn closes the
                # connection. Thrown from the loop, not from inside this signal handler.
                loop.run_callback(waiter.throw, timeout)

    def handle_quit(self, sig: int, frame: FrameType | None) -> None:
        """SIGINT, SIGQUIT: exit at once, as gunicorn's worker does, but only once."""
        if self._quitting:
            return
        self._quitting = True
        super().handle_quit(sig, frame)
