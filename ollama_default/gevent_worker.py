"""The gunicorn worker ``ollama-default serve`` runs: gevent's, stopping at once when idle.

gunicorn's gevent worker, told to stop gracefully (SIGTERM), waits until every connection
it holds has closed, up to ``graceful_timeout``; that grace is 60 s here, so that streams
under way can finish. But a connection waiting for its next request is held too: a client
that merely kept its connection alive held the stop for a minute. This worker closes the
connections that wait for a request when it is told to stop, and lets the requests in
flight finish within the grace as before.

And Ctrl-C sends SIGINT to the master and the workers alike, and the master then sends
SIGQUIT: a worker ran gunicorn's quick exit twice, and the second could print a traceback
as the interpreter shut down. A worker quits once here.

(The third way a stop took 60 s, a signal lost by a worker still booting, is closed in
the master: see :func:`ollama_default.cli.exit_on_stop_signals`.)

Imports gunicorn and gevent: only the ``serve`` master and its workers import it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import FrameType
from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventWorker as _GunicornGeventWorker


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
