"""``Forwarder``: a WSGI app that relays every request to one upstream Ollama.

Built on urllib3's connection pool (what ``requests`` uses underneath, without its
per-call overhead): keep-alive connections, a short connect timeout and a long read
timeout (the first byte may wait for a large model to load). Responses are relayed as the
upstream sends them, each read returning what has arrived (``read1``), never waiting to
fill a fixed block; when the client goes away, the upstream connection is closed at once,
so Ollama stops generating.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING
from urllib.parse import quote, unquote_to_bytes, urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ReadTimeoutError,
)
from werkzeug.http import is_hop_by_hop_header
from werkzeug.wsgi import get_input_stream

from .endpoints import error_shape
from .errors import ErrorShape, error_body, status_line

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

#: The most one read hands on; a read returns sooner with whatever has arrived.
READ_BYTES = 64 * 1024
#: Idle keep-alive connections kept to the upstream: what ``ollama-default serve``'s
#: worker serves at once (``worker_connections``).
DEFAULT_MAX_CONNECTIONS = 1000
# RFC 3986 section 3.3: characters a path segment may hold unencoded.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_DOT_SEGMENT = re.compile(r"(?:^|/)\.{1,2}(?:/|$)")


class Forwarder:
    """WSGI app: relays each request to ``upstream`` and the response back.

    >>> app = Forwarder("http://127.0.0.1:11434")  # doctest: +SKIP

    :param upstream: the base URL; its path, if any, is put before every request's path.
    :param connect_timeout_s: how long to wait for a connection.
    :param read_timeout_s: how long to wait for each next piece of the response.
    :param max_connections: idle keep-alive connections kept to the upstream.
    """

    def __init__(
        self,
        upstream: str,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 600.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream = upstream.rstrip("/")
        self._base_path = parts.path.rstrip("/")
        self._host = parts.netloc
        self._timeouts = (connect_timeout_s, read_timeout_s)
        self._pool = urllib3.connection_from_url(
            upstream,
            maxsize=max_connections,
            block=False,
            retries=False,
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "") or "/"
        shape = error_shape(path)
        # Never let a path reach another host or climb out of the upstream's base path.
        if not path.startswith("/") or path.startswith("//") or _DOT_SEGMENT.search(path):
            return _error(start_response, shape, 400, f"invalid request path {path!r}")
        target = self._base_path + _upstream_path(environ, path)
        if query := environ.get("QUERY_STRING"):
            target += "?" + query
        method = environ.get("REQUEST_METHOD", "GET")
        body, chunked = _request_body(environ)
        try:
            response = self._pool.urlopen(
                method,
                target,
                body=body,
                headers=self._request_headers(environ),
                chunked=chunked,
                redirect=False,
                assert_same_host=False,
                preload_content=False,
                decode_content=False,
                release_conn=False,
            )
        except NewConnectionError as error:
            # urllib3 makes this a ConnectTimeoutError; a refusal is no timeout.
            return _error(start_response, shape, 502, self._describe(error))
        except (ConnectTimeoutError, ReadTimeoutError) as error:
            return _error(start_response, shape, 504, self._describe(error))
        except (HTTPError, OSError) as error:
            return _error(start_response, shape, 502, self._describe(error))
        headers = [(n, v) for n, v in response.headers.items() if not _is_hop_by_hop(n, response)]
        start_response(f"{response.status} {response.reason or ''}".rstrip(), headers)
        return _UpstreamBody(response, self._describe)

    def _request_headers(self, environ: WSGIEnvironment) -> dict[str, str]:
        headers: dict[str, str] = {}
        connection_tokens = {
            token.strip().lower() for token in environ.get("HTTP_CONNECTION", "").split(",")
        }
        for key, value in environ.items():
            if not key.startswith("HTTP_"):
                continue
            name = key[5:].replace("_", "-").title()
            if is_hop_by_hop_header(name) or name.lower() in connection_tokens:
                continue
            headers[name] = value
        for key, name in (("CONTENT_TYPE", "Content-Type"), ("CONTENT_LENGTH", "Content-Length")):
            if environ.get(key):
                headers[name] = environ[key]
        client_host = headers.pop("Host", "") or environ.get("SERVER_NAME", "")
        # Ollama on loopback refuses Host names it does not know (DNS-rebinding guard).
        headers["Host"] = self._host
        remote = environ.get("REMOTE_ADDR", "")
        forwarded_for = headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{forwarded_for}, {remote}" if forwarded_for else remote
        headers.setdefault("X-Forwarded-Proto", environ.get("wsgi.url_scheme", "http"))
        headers.setdefault("X-Forwarded-Host", client_host)
        # Bodies must reach the rewriting readable: Ollama itself never compresses, but
        # what it relays from ollama.com might be.
        headers["Accept-Encoding"] = "identity"
        return headers

    def _describe(self, error: BaseException) -> str:
        if isinstance(error, MaxRetryError) and error.reason is not None:
            error = error.reason
        if isinstance(error, NewConnectionError):  # before its base, ConnectTimeoutError
            reason = str(error).rsplit("] ", 1)[-1].rstrip(")").lower()
            return f"upstream {self.upstream} is unreachable: {reason}"
        if isinstance(error, ConnectTimeoutError):
            return (
                f"upstream {self.upstream} did not accept a connection "
                f"within {self._timeouts[0]:g} s"
            )
        if isinstance(error, ReadTimeoutError):
            return f"upstream {self.upstream} sent nothing for {self._timeouts[1]:g} s"
        return f"upstream {self.upstream} failed: {error}"


def _upstream_path(environ: WSGIEnvironment, path: str) -> str:
    """Return ``path`` as the client encoded it, where the server kept that, else encoded.

    PEP 3333 servers decode ``PATH_INFO`` (``%2F`` becomes ``/``); gunicorn keeps the raw
    request target in ``RAW_URI``. That is used when it still describes this request (the
    middleware has not rewritten the path) and is in origin form.
    """
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
    raw_path = raw.split("?", 1)[0]
    script_name = environ.get("SCRIPT_NAME", "")
    if raw_path.startswith(script_name + "/"):
        tail = raw_path[len(script_name) :]
        if unquote_to_bytes(tail) == path.encode("latin-1"):
            return tail
    return quote(path.encode("latin-1"), safe=_PATH_SAFE)


def _is_hop_by_hop(name: str, response: urllib3.BaseHTTPResponse) -> bool:
    if is_hop_by_hop_header(name):
        return True
    listed = response.headers.get("Connection", "")
    return name.lower() in {token.strip().lower() for token in listed.split(",")}


def _request_body(environ: WSGIEnvironment) -> tuple[IO[bytes] | Iterator[bytes] | None, bool]:
    """Return the body to send on, and whether it goes chunked (its length unknown)."""
    if environ.get("CONTENT_LENGTH", "") not in ("", "0"):
        return get_input_stream(environ), False
    # Only a body the client sent chunked goes on chunked: a GET, or a POST with
    # Content-Length: 0, must not grow a Transfer-Encoding (RFC 9112 section 6.1).
    is_chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if is_chunked and environ.get("wsgi.input_terminated"):
        stream = environ["wsgi.input"]
        return iter(lambda: stream.read(READ_BYTES), b""), True
    return None, False


def _error(
    start_response: StartResponse, shape: ErrorShape, status: int, message: str
) -> list[bytes]:
    body = error_body(shape, status, message)
    start_response(
        status_line(status),
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


class _UpstreamBody:
    """The upstream response as a WSGI iterable that ends cleanly whatever happens.

    Complete, the connection goes back to the pool; cut short (the client left, or the
    upstream broke), it is closed, so the upstream sees the disconnect at once.
    """

    def __init__(
        self, response: urllib3.BaseHTTPResponse, describe: Callable[[BaseException], str]
    ) -> None:
        self._response = response
        self._describe = describe
        self._complete = False

    def __iter__(self) -> Iterator[bytes]:
        read1 = self._response.read1
        last = b"\n"
        try:
            while data := read1(READ_BYTES):
                last = data[-1:]
                yield data
        except (HTTPError, OSError) as error:
            yield from _stream_error(self._response, self._describe(error), last)
            return
        self._complete = True

    def close(self) -> None:
        if not self._complete:
            self._response.close()  # drops the connection: Ollama stops generating
        self._response.release_conn()


def _stream_error(response: urllib3.BaseHTTPResponse, message: str, last: bytes) -> Iterator[bytes]:
    """Close a stream cut mid-way with one error record, as Ollama ends a failed stream."""
    media_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip()
    if response.headers.get("Content-Length"):
        return  # a fixed length cannot grow; the short body tells the client
    separator = b"" if last == b"\n" else b"\n"
    note = f"{message} (the stream was cut short)"
    if media_type == "application/x-ndjson":
        yield separator + json.dumps({"error": note}).encode() + b"\n"
    elif media_type == "text/event-stream":
        document = json.loads(error_body(ErrorShape.OPENAI, 502, note))
        yield separator + b"\ndata: " + json.dumps(document).encode() + b"\n\n"
