"""What the package's WSGI pieces share: the one error responder, the reading of a
request's length, and the names of the keys they leave in ``environ``.

Every error we answer ourselves (refused input, the upstream unreachable or slow, a path
outside the prefix) goes through :func:`respond_error`, so each is worded in the dialect of
its endpoint and recorded for the access log. The middleware records what it decided in
``environ`` too, so that a piece further out can report it without parsing anything again
(PEP 3333 asks for key names of this dotted form).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING

from .core.dialects import Dialect, error_body
from .core.endpoints import dialect_for
from .core.errors import RequestError

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

#: The model name the client used, when it was an alias (or the default alias, when the
#: request named no model).
ALIAS_KEY = "ollama_default.alias"
#: The model the request was sent upstream with: the alias's target, or the model the
#: client named itself.
MODEL_KEY = "ollama_default.model"
#: The model the client named, when the default answered in its place because the upstream
#: does not have it (``fallback_to_default``).
FALLBACK_KEY = "ollama_default.fallback"
#: Why the request did not get the upstream's own answer: refused input, the upstream
#: unreachable or slow, a stream cut short. For the operator's log: it may name what the
#: client is not told, such as the upstream's address.
ERROR_KEY = "ollama_default.error"
#: True when the client went away while its request waited for the upstream, whose
#: connection was closed for it (so that Ollama stopped).
CLIENT_LEFT_KEY = "ollama_default.client_left"
#: The id a client was given with an error it did not cause (the upstream down, slow or
#: broken), to quote to the operator, whose log line carries it too.
REQUEST_ID_KEY = "ollama_default.request_id"

#: A short id of the API key a request was let in with (its name in the key file, or
#: ``key-`` and the first 8 hex digits of its hash), never the key itself; set by
#: :class:`~ollama_default.ops.auth.KeyCheck`.
KEY_ID_KEY = "ollama_default.key"
#: The :class:`~ollama_default.ops.auth.ApiKey` a request was let in with: its scope (the
#: aliases it may use, the store verbs it may use) and its ``max_concurrent``.
API_KEY_KEY = "ollama_default.api_key"
#: The aliases the request's key may use (a frozenset of the alias table's names), when it
#: is limited to some: :class:`~ollama_default.DefaultModel` refuses any other model, and
#: lists only these.
ALLOWED_ALIASES_KEY = "ollama_default.allowed_aliases"
#: Why a request was refused by an access rule, for the log and the status counts:
#: ``"auth"`` (no key, a wrong key, a model the key may not use), ``"management"`` (a
#: closed model-store verb) or ``"limit"`` (a concurrency cap).
REFUSED_KEY = "ollama_default.refused"

#: The response header naming the real model that answered a request for an alias.
TARGET_HEADER = "X-Ollama-Default-Target"


def respond_error(
    environ: WSGIEnvironment,
    start_response: StartResponse,
    error: RequestError,
    dialect: Dialect | None = None,
    *,
    detail: str | None = None,
) -> list[bytes]:
    """Answer ``error`` in the dialect of the request's endpoint (or ``dialect``).

    The one place a JSON error response is made; it leaves the message in ``environ``
    under :data:`ERROR_KEY` for the access log.

    :param detail: what the log says in place of the client's message, when the client
        is not to be told all of it (the upstream's address, say).
    """
    environ[ERROR_KEY] = error.message if detail is None else detail
    if dialect is None:
        dialect = dialect_for(environ.get("PATH_INFO", ""))
    body = error_body(dialect, error.status, error.message)
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    headers += error.headers
    start_response(status_line(error.status), headers)
    return [body]


def content_length(environ: WSGIEnvironment) -> int | None:
    """Return the request's ``Content-Length``, or None when it has none (or it is 0).

    :raises RequestError: 400 when it is not a length: Go's ``net/http`` refuses those too.
    """
    length = environ.get("CONTENT_LENGTH", "")
    if length in ("", "0"):
        return None
    if not (length.isascii() and length.isdigit()):
        raise RequestError(400, f"invalid Content-Length {length!r}")
    return int(length)


def short_body() -> RequestError:
    """The error for a body that ended before its ``Content-Length``."""
    return RequestError(400, "request body ended before its Content-Length")


def cut_chunked_body() -> RequestError:
    """The error for a chunked body that ended before its last chunk, or broke its framing."""
    return RequestError(400, "request body was cut short or its chunked framing is invalid")


def unsupported_transfer_coding(environ: WSGIEnvironment) -> RequestError | None:
    """The error for a request body in a transfer coding other than ``chunked`` alone, or
    None.

    gunicorn reads ``gzip, chunked`` (RFC 9112 section 7: codings stack, chunked last) by
    undoing the chunking only; the body comes out still compressed, and nothing says so
    once the header is gone. Go's ``net/http`` accepts exactly one coding, ``chunked``,
    and answers 501 to anything else, as RFC 9112 section 6.1 asks of a server that does
    not understand a coding; so do we.
    """
    coding = environ.get("HTTP_TRANSFER_ENCODING")
    if coding is None or coding.strip().lower() == "chunked":
        return None
    return RequestError(501, "unsupported transfer encoding: only chunked is accepted")


def status_line(status: int) -> str:
    """Return a WSGI status line such as ``"413 Request Entity Too Large"``."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = _OTHER_PHRASES[status]
    return f"{status} {phrase}"


# Statuses no RFC defines, which logs know: nginx's for a client that left first.
_OTHER_PHRASES = {499: "Client Closed Request"}


#: How long a client refused for want of buffer space is told to wait (``Retry-After``):
#: the bodies held are let go as soon as they are sent on, in seconds at most.
RETRY_AFTER_S = 5


class BufferBudget:
    """The request-body bytes one process holds at once, and the cap on them.

    Each body is reserved before it is read (its ``Content-Length``) or as it arrives
    (chunked), and given back once it is no longer held; a reservation over the cap is a
    503 with ``Retry-After``, not memory the process cannot have. Safe to share between
    threads and greenlets: the count is kept under a lock, held for no I/O.

    :param max_bytes: the cap.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._held = 0
        self._lock = threading.Lock()

    @property
    def held(self) -> int:
        """The bytes reserved now."""
        return self._held

    def reserve(self, amount: int, *, forced: bool = False) -> None:
        """Reserve ``amount`` bytes (give them back with a negative amount).

        :param forced: reserve them even over the cap (for a body already in memory).
        :raises RequestError: 503 when the cap would be passed.
        """
        with self._lock:
            if amount > 0 and not forced and self._held + amount > self.max_bytes:
                raise RequestError(
                    503,
                    f"the proxy holds as many request bodies as it may ({self.max_bytes} "
                    "bytes at once): retry shortly",
                    headers=[("Retry-After", str(RETRY_AFTER_S))],
                )
            self._held += amount


class Reservation:
    """One request's share of a :class:`BufferBudget`, given back once, whatever happens."""

    def __init__(self, budget: BufferBudget) -> None:
        self._budget = budget
        self.amount = 0

    def grow(self, amount: int, *, forced: bool = False) -> None:
        """Reserve ``amount`` more bytes (fewer, when negative).

        :raises RequestError: 503 when the budget's cap would be passed.
        """
        self._budget.reserve(amount, forced=forced)
        self.amount += amount

    def release(self) -> None:
        """Give back everything this request reserved; later calls do nothing."""
        amount, self.amount = self.amount, 0
        if amount:
            self._budget.reserve(-amount)


class HeldBody:
    """``wsgi.input`` over a request body held in memory, let go once read to its end.

    The body is dropped, and ``release`` called, when its last byte has been read or the
    input is closed: a stream that goes on for minutes after its request was sent on does
    not keep the request in memory.
    """

    def __init__(self, body: bytes, release: Callable[[], None]) -> None:
        self._body = body
        self._at = 0
        self._release: Callable[[], None] | None = release
        if not body:
            self.close()

    @property
    def body(self) -> bytes:
        """The whole body, before any of it is read (after, what is left unread)."""
        return self._body[self._at :] if self._at else self._body

    def read(self, size: int | None = -1) -> bytes:
        """Read ``size`` bytes (all that is left when None or negative)."""
        end = len(self._body) if size is None or size < 0 else self._at + size
        data = self._body[self._at : end]
        self._at += len(data)
        if self._at >= len(self._body):
            self.close()
        return data

    def readline(self, size: int | None = -1) -> bytes:
        """Read one line (at most ``size`` bytes)."""
        end = self._body.find(b"\n", self._at)
        end = len(self._body) if end < 0 else end + 1
        if size is not None and size >= 0:
            end = min(end, self._at + size)
        return self.read(end - self._at)

    def readlines(self, hint: int = -1) -> list[bytes]:
        """Read the remaining lines."""
        return list(iter(self.readline, b""))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def close(self) -> None:
        """Drop the body and give back its reservation."""
        self._body, self._at = b"", 0
        release, self._release = self._release, None
        if release is not None:
            release()
