"""``Forwarder``: a WSGI app that relays every request to one upstream Ollama.

Built on the standard library's ``http.client`` with a small pool of keep-alive
connections: per request it costs half of what urllib3 does and a fraction of what
``requests`` does (``benchmarks/proxy.py``), and a proxy pays it on every request. The
connect timeout is short, the read timeout long (the first byte may wait for a large model
to load). Responses are relayed as the upstream sends them, each read returning what has
arrived (``read1``: one chunk of a chunked reply), never waiting to fill a fixed block;
when the client goes away, the upstream connection is closed at once, so Ollama stops
generating.
"""

from __future__ import annotations

import http.client
import json
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING
from urllib.parse import quote, unquote_to_bytes, urlsplit

from urllib3.util.wait import wait_for_read
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
        self._pool = _ConnectionPool(
            parts.scheme, parts.hostname or "", parts.port, connect_timeout_s, read_timeout_s,
            max_idle=max_connections,
        )  # fmt: skip

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
            connection = self._pool.connection()
        except TimeoutError:
            return _error(start_response, shape, 504, self._unanswered(connect=True))
        except OSError as error:
            return _error(start_response, shape, 502, self._unreachable(error))
        try:
            connection.request(
                method, target, body, self._request_headers(environ), encode_chunked=chunked
            )
            response = connection.getresponse()
        except TimeoutError:
            connection.close()
            return _error(start_response, shape, 504, self._unanswered(connect=False))
        except (http.client.HTTPException, OSError) as error:
            connection.close()
            return _error(start_response, shape, 502, self._failed(error))
        listed = _connection_tokens(response.getheader("Connection", ""))
        headers = [
            (name, value)
            for name, value in response.getheaders()
            if not is_hop_by_hop_header(name) and name.lower() not in listed
        ]
        start_response(f"{response.status} {response.reason}".rstrip(), headers)
        return _UpstreamBody(connection, response, self._pool, self._failed)

    def _request_headers(self, environ: WSGIEnvironment) -> dict[str, str]:
        headers: dict[str, str] = {}
        listed = _connection_tokens(environ.get("HTTP_CONNECTION", ""))
        for key, value in environ.items():
            if not key.startswith("HTTP_"):
                continue
            name = key[5:].replace("_", "-").title()
            if is_hop_by_hop_header(name) or name.lower() in listed:
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

    def close(self) -> None:
        """Close the idle connections to the upstream (a server does this at shutdown)."""
        self._pool.close()

    def _unreachable(self, error: OSError) -> str:
        reason = error.strerror or str(error) or type(error).__name__
        return f"upstream {self.upstream} is unreachable: {reason.lower()}"

    def _unanswered(self, *, connect: bool) -> str:
        if connect:
            return (
                f"upstream {self.upstream} did not accept a connection "
                f"within {self._timeouts[0]:g} s"
            )
        return f"upstream {self.upstream} sent nothing for {self._timeouts[1]:g} s"

    def _failed(self, error: BaseException) -> str:
        if isinstance(error, TimeoutError):
            return self._unanswered(connect=False)
        if isinstance(error, http.client.RemoteDisconnected):
            return f"upstream {self.upstream} closed the connection without answering"
        return f"upstream {self.upstream} failed: {error or type(error).__name__}"


class _ConnectionPool:
    """Idle keep-alive connections to the upstream, shared by a worker's threads.

    ``deque.append`` and ``pop`` are atomic, so taking and returning need no lock.
    """

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int | None,
        connect_timeout_s: float,
        read_timeout_s: float,
        *,
        max_idle: int,
    ) -> None:
        self._factory = (
            http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        )
        self._address = (host, port)
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._max_idle = max_idle
        self._idle: deque[http.client.HTTPConnection] = deque()

    def connection(self) -> http.client.HTTPConnection:
        """Return a connected connection: an idle one still open, else a new one.

        :raises TimeoutError: when the upstream does not accept in time.
        :raises OSError: when it refuses, or cannot be found.
        """
        while True:
            try:
                idle = self._idle.pop()
            except IndexError:
                break
            # Readable while idle means the upstream closed it (or sent junk): drop it.
            if idle.sock is not None and not wait_for_read(idle.sock, timeout=0):
                return idle
            idle.close()
        connection = self._factory(
            *self._address, timeout=self._connect_timeout_s, blocksize=READ_BYTES
        )
        connection.connect()
        if connection.sock is not None:  # connect() set it; the read timeout is longer
            connection.sock.settimeout(self._read_timeout_s)
        return connection

    def close(self) -> None:
        """Close every idle connection."""
        while self._idle:
            self._idle.pop().close()

    def give_back(self, connection: http.client.HTTPConnection) -> None:
        """Keep ``connection`` for the next request, or close it when enough are idle."""
        if len(self._idle) < self._max_idle:
            self._idle.append(connection)
        else:
            connection.close()


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


def _connection_tokens(value: str) -> set[str]:
    """The header names a ``Connection`` header lists: hop-by-hop too (RFC 9110 7.6.1)."""
    return {token.strip().lower() for token in value.split(",")}


def _request_body(
    environ: WSGIEnvironment,
) -> tuple[bytes | IO[bytes] | Iterator[bytes] | None, bool]:
    """Return the body to send on, and whether it goes chunked (its length unknown)."""
    length = environ.get("CONTENT_LENGTH", "")
    if length not in ("", "0"):
        stream = get_input_stream(environ)
        # http.client writes bytes together with the headers, a file in writes of its own:
        # a small body (a chat request) goes in the same packet as its headers.
        return (stream.read() if int(length) <= READ_BYTES else stream), False
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
        self,
        connection: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        pool: _ConnectionPool,
        describe: Callable[[BaseException], str],
    ) -> None:
        self._connection = connection
        self._response = response
        self._pool = pool
        self._describe = describe
        self._complete = False

    def __iter__(self) -> Iterator[bytes]:
        read1 = self._response.read1
        last = b"\n"
        try:
            while data := read1(READ_BYTES):
                last = data[-1:]
                yield data
        except (http.client.HTTPException, OSError) as error:
            yield from _stream_error(self._response, self._describe(error), last)
            return
        self._complete = True

    def close(self) -> None:
        if self._complete and not self._response.will_close:
            # read1 at a Content-Length end does not mark the response done; closing it
            # does, and leaves the socket to the connection.
            self._response.close()
            self._pool.give_back(self._connection)
        else:
            self._connection.close()  # drops the connection: Ollama stops generating


def _stream_error(response: http.client.HTTPResponse, message: str, last: bytes) -> Iterator[bytes]:
    """Close a stream cut mid-way with one error record, as Ollama ends a failed stream."""
    media_type = response.getheader("Content-Type", "").split(";", 1)[0].strip()
    if response.getheader("Content-Length"):
        return  # a fixed length cannot grow; the short body tells the client
    separator = b"" if last == b"\n" else b"\n"
    note = f"{message} (the stream was cut short)"
    if media_type == "application/x-ndjson":
        yield separator + json.dumps({"error": note}).encode() + b"\n"
    elif media_type == "text/event-stream":
        document = json.loads(error_body(ErrorShape.OPENAI, 502, note))
        yield separator + b"\ndata: " + json.dumps(document).encode() + b"\n\n"
