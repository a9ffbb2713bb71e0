"""Reading request bodies from clients: a total deadline for each, and a broken one
answered as the client's fault.

:class:`ReadGuard` wraps ``wsgi.input`` for everything behind it: ``DefaultModel``, which
reads the bodies that name a model, and the forwarder, which streams the others (blob
uploads) upstream. A body must arrive whole within ``body_timeout_s`` of the request's
head: one byte an hour no longer holds a connection for ever. A body larger than
``max_body_bytes`` (only a streamed one can be) gets ``body_timeout_s`` more for each
``max_body_bytes`` it holds, so a blob of gigabytes needs a steady pace (64 MiB every
2 minutes by default), not a fast link. A deadline that passes, or a body the server
cannot read (a bad chunk size, a client gone mid-body), is answered with 408 or 400 in
the client's dialect when nothing has been sent yet.

How a read is bounded depends on the server, and is decided per request:

- under gevent (``ollama-default serve``, or gunicorn's gevent workers) a
  ``gevent.Timeout`` bounds each read by what remains of the deadline, so the deadline is
  total whatever the client's pace;
- under threads, the client socket gunicorn puts in ``environ["gunicorn.socket"]`` gets
  what remains as its timeout before each read: each wait for the client is bounded, and
  the deadline is checked between reads (a client sending a byte at a time just within
  the timeout can take longer);
- under any other server only the check between reads is left: put a server that bounds
  its reads (nginx's ``client_body_timeout``) in front.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..core.errors import RequestError
from ..wsgi import content_length, cut_chunked_body, respond_error, short_body

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: The deadline for a body up to ``max_body_bytes``, in seconds: 64 MiB within it needs
#: half a MiB a second (4.5 Mbit/s), a chat with a few photos much less.
BODY_TIMEOUT_S = 120.0
#: The deadline for a request head, from its first byte (``ollama-default serve``).
HEAD_TIMEOUT_S = 10.0

Bound = Callable[[float], contextlib.AbstractContextManager[Any]]


class BodyReadError(RequestError):
    """Reading a request body failed: its deadline passed, or the server could not read it.

    A :class:`~ollama_default.core.errors.RequestError`, so whatever reads the body and
    answers refused requests (``DefaultModel``) answers this one too, in its dialect.
    """


class _Expired(Exception):
    """Raised into a read by the gevent timer bounding it."""


class ReadGuard:
    """WSGI middleware: a total deadline for reading each request body (see the module).

    :param app: the app that reads the bodies.
    :param body_timeout_s: the deadline for a body up to ``max_body_bytes``.
    :param max_body_bytes: a longer body gets ``body_timeout_s`` more for each of these.
    :param clock: seconds, as :func:`time.monotonic` counts them (for tests).
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        body_timeout_s: float,
        max_body_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.body_timeout_s = body_timeout_s
        self.max_body_bytes = max_body_bytes
        self._clock = clock

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            length = content_length(environ)
        except RequestError:
            length = None  # not a length: the app refuses it
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if (length is None and not chunked) or "wsgi.input" not in environ:
            return self.app(environ, start_response)  # no body to wait for
        body = GuardedInput(
            environ["wsgi.input"],
            deadline_s=self.body_timeout_s,
            per_bytes=self.max_body_bytes,
            length=length,
            bound=_bound_for(environ),
            clock=self._clock,
        )
        environ["wsgi.input"] = body
        started = False

        def guarded_start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            nonlocal started
            if body.failure is not None and not started:
                return _discard  # the app's answer to a failure it cannot explain: ours below
            started = True
            return start_response(status, headers, exc_info)

        try:
            app_iter = self.app(environ, guarded_start_response)
        except BodyReadError:
            if started or body.failure is None:
                raise
            # The failure's frames (its own, and its context's) hold the app's, the
            # forwarder's upstream socket among them: let them go now, not with the environ.
            body.failure.__traceback__ = body.failure.__context__ = None
            return respond_error(environ, start_response, body.failure)
        if body.failure is not None and not started:
            close = getattr(app_iter, "close", None)
            if close is not None:
                close()
            body.failure.__traceback__ = body.failure.__context__ = None
            return respond_error(environ, start_response, body.failure)
        return app_iter


def _discard(data: bytes) -> None:
    """The write() of a response that is not sent."""


class GuardedInput:
    """``wsgi.input`` whose reads all end by one deadline (see the module).

    :param deadline_s: the time a body up to ``per_bytes`` has.
    :param length: the body's ``Content-Length``; None for a chunked body, whose
        deadline grows as it arrives.
    :param bound: a context manager bounding one read by the seconds it is given.
    """

    def __init__(
        self,
        stream: Any,
        *,
        deadline_s: float,
        per_bytes: int,
        length: int | None,
        bound: Bound,
        clock: Callable[[], float],
    ) -> None:
        self._stream = stream
        self._deadline_s = deadline_s
        self._per_bytes = per_bytes
        self._bound = bound
        self._clock = clock
        self._started = clock()
        # What a body of this length has; a chunked body starts with one share.
        self._shares = max(1, math.ceil((length or 0) / per_bytes))
        self._chunked = length is None
        self._read = 0
        #: Why the body could not be read, once it could not.
        self.failure: BodyReadError | None = None

    def read(self, size: int | None = -1) -> bytes:
        """Read as the server's input reads, by the deadline."""
        data: bytes = self._guard(self._stream.read, -1 if size is None else size)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        """Read a line as the server's input reads it, by the deadline."""
        data: bytes = self._guard(self._stream.readline, -1 if size is None else size)
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:
        """Read the remaining lines, by the deadline."""
        return list(iter(self.readline, b""))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def _guard(self, read: Callable[[int], bytes], size: int) -> bytes:
        if self.failure is not None:
            raise self.failure
        deadline = self._started + self._deadline_s * self._shares
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise self._fail(self._late())
        try:
            with self._bound(remaining):
                data = read(size)
        except (_Expired, TimeoutError):
            raise self._fail(self._late()) from None
        except Exception as error:  # the server's: a malformed chunk, a client gone
            raise self._fail(_unreadable(error, chunked=self._chunked)) from None
        self._read += len(data)
        if self._chunked:
            self._shares = max(self._shares, 1 + self._read // self._per_bytes)
        return data

    def _late(self) -> BodyReadError:
        seconds = self._deadline_s * self._shares
        return BodyReadError(408, f"the request body did not arrive within {seconds:g} s")

    def _fail(self, error: BodyReadError) -> BodyReadError:
        self.failure = error
        return error


def _unreadable(error: Exception, *, chunked: bool) -> BodyReadError:
    # gunicorn says what was wrong with a body it cannot frame ("Invalid chunk size:
    # b'zz'"), in exceptions that were OSErrors before gunicorn 27; its NoMoreData, and
    # any other OSError, is a client gone: worded as everywhere else a body ends short.
    from_gunicorn = type(error).__module__.startswith("gunicorn.")
    if type(error).__name__ == "NoMoreData" or (isinstance(error, OSError) and not from_gunicorn):
        return BodyReadError(400, (cut_chunked_body() if chunked else short_body()).message)
    return BodyReadError(400, f"invalid request body: {error}")


def _bound_for(environ: WSGIEnvironment) -> Bound:
    """How a read is bounded under the server serving ``environ`` (see the module)."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("socket"):
        import gevent  # only where it already runs

        def gevent_bound(seconds: float) -> contextlib.AbstractContextManager[Any]:
            return gevent.Timeout(seconds, _Expired())  # type: ignore[no-any-return]

        return gevent_bound
    sock = environ.get("gunicorn.socket")
    if sock is not None and hasattr(sock, "settimeout") and hasattr(sock, "gettimeout"):
        return lambda seconds: _socket_timeout(sock, seconds)
    return lambda seconds: contextlib.nullcontext()


@contextlib.contextmanager
def _socket_timeout(sock: Any, seconds: float) -> Iterator[None]:
    previous = sock.gettimeout()
    sock.settimeout(seconds)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(previous)
