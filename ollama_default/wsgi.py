"""What the package's WSGI pieces share: the one error responder, the reading of a
request's length, and the names of the keys they leave in ``environ``.

Every error we answer ourselves (refused input, the upstream unreachable or slow, a path
outside the prefix) goes through :func:`respond_error`, so each is worded in the dialect of
its endpoint and recorded for the access log. The middleware records what it decided in
``environ`` too, so that a piece further out can report it without parsing anything again
(PEP 3333 asks for key names of this dotted form).
"""

from __future__ import annotations

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
