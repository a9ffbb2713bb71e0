"""``Forwarder``: a WSGI app that relays every request to one upstream Ollama.

It speaks HTTP/1.1 to the upstream over a small pool of keep-alive sockets and reads the
replies with httptools (llhttp, the parser of Node.js). A proxy pays its client's cost on
every request and every streamed record: llhttp parses a reply's head and its chunks in C,
where ``http.client`` parses headers with the ``email`` package and a chunked body one
chunk per call, and urllib3 and ``requests`` add their own layers on top
(``benchmarks/proxy.py``). The connect timeout is short, the read timeout long (the first
byte may wait for a large model to load). Each read hands on everything that has arrived,
never waiting to fill a fixed block. When the client goes away, the upstream connection is
closed, so Ollama stops generating: at once mid-stream, and within :data:`CLIENT_CHECK_S`
while the request waits for a reply (under gunicorn, which shows the client's socket).
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import os
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, unquote_to_bytes, urlsplit

import httptools
from werkzeug.http import is_hop_by_hop_header

from ..core.checks import positive_seconds
from ..core.dialects import cut_stream_record
from ..core.endpoints import dialect_for
from ..core.errors import ConfigError, RequestError
from ..wsgi import (
    CLIENT_LEFT_KEY,
    ERROR_KEY,
    REQUEST_ID_KEY,
    content_length,
    cut_chunked_body,
    respond_error,
    short_body,
    unsupported_transfer_coding,
)
from .http11 import ResponseReader, UpstreamError, connection_tokens, encode_request_head
from .pool import ConnectionPool

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The most one read takes; a read returns sooner with whatever has arrived.
READ_BYTES = 64 * 1024
#: How long a connection to the upstream may take: short, as a refused or unroutable
#: upstream should be a quick 502.
CONNECT_TIMEOUT_S = 5.0
#: How long each next piece of a reply may take: long, because the first byte can wait for
#: a large model to load.
READ_TIMEOUT_S = 600.0
#: Idle keep-alive connections kept to the upstream: what ``ollama-default serve``'s
#: worker serves at once (its default ``worker_connections`` is this).
DEFAULT_MAX_CONNECTIONS = 1000
#: How often a request waiting for the upstream looks whether its client is still there
#: (when the server shows the client's socket, as gunicorn does): at most this long after
#: a client leaves, the upstream connection closes and Ollama stops.
CLIENT_CHECK_S = 1.0
#: The environ key under which gunicorn puts the client's socket.
CLIENT_SOCKET_KEY = "gunicorn.socket"
# RFC 3986 section 3.3: characters a path segment may hold unencoded.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_DOT_SEGMENT = re.compile(r"(?:^|/)\.{1,2}(?:/|$)")
# Headers that belong to the client's connection to us, besides RFC 9110's hop-by-hop
# ones: the body is sent at once, so the upstream is never asked to confirm it first.
_NOT_FORWARDED = frozenset({"expect"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class Forwarder:
    """WSGI app: relays each request to ``upstream`` and the response back.

    >>> app = Forwarder("http://127.0.0.1:11434")  # doctest: +SKIP

    An upstream that fails is a 502 or 504 that says what went wrong but not where: the
    client gets a request id, and the access log the upstream's address with that id.

    :param upstream: the base URL; its path, if any, is put before every request's path.
        A user and password in it (``http://user:secret@host``) go as HTTP Basic
        ``Authorization``, in place of any the client sent, and nowhere else.
    :param connect_timeout_s: how long to wait for a connection.
    :param read_timeout_s: how long to wait for each next piece of the response.
    :param max_connections: idle keep-alive connections kept to the upstream.
    :param trusted_proxies: IP addresses and networks (``10.0.0.0/8``) of proxies in front
        of this one. A request from one of them keeps its ``Forwarded``, ``X-Real-IP`` and
        ``X-Forwarded-*`` headers (its ``X-Forwarded-For`` gets the peer's address added);
        from anyone else they are dropped, and the upstream gets ours: ``X-Forwarded-For``
        the peer, ``X-Forwarded-Proto`` the server's scheme, ``X-Forwarded-Host`` the
        client's ``Host``.
    :param pool: the keep-alive connections to use, when they outlive this forwarder (a
        reload hands the pool of an unchanged upstream to the new one); else its own.
    :param upstream_api_key: a key sent as ``Authorization: Bearer``, in place of any the
        client sent (and of a user and password in ``upstream``).
    :raises ConfigError: for a timeout that is not a positive number of seconds, or a
        trusted proxy that is not an IP address or network.
    """

    def __init__(
        self,
        upstream: str,
        *,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        read_timeout_s: float = READ_TIMEOUT_S,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        trusted_proxies: Iterable[str] = (),
        pool: ConnectionPool | None = None,
        upstream_api_key: str | None = None,
    ) -> None:
        connect_timeout_s = positive_seconds("connect_timeout_s", connect_timeout_s)
        read_timeout_s = positive_seconds("read_timeout_s", read_timeout_s)
        given = trusted_proxies if isinstance(trusted_proxies, str) else tuple(trusted_proxies)
        trusted = ip_networks("trusted_proxies", given)  # one string is refused, not split
        networks = [ipaddress.ip_network(network) for network in trusted]
        # None when nobody is: the common case asks nothing per request. Cached by the
        # peer's address (peers repeat; a network's hash is Python code).
        self._is_trusted = (
            functools.lru_cache(maxsize=1024)(functools.partial(_is_in, networks=networks))
            if networks
            else None
        )
        parts = urlsplit(upstream)
        #: The upstream's URL as it may be shown: without its user and password.
        self.upstream = without_userinfo(upstream).rstrip("/")
        self._base_path = parts.path.rstrip("/")
        self._host = parts.netloc.rpartition("@")[2]
        self._authorization = basic_authorization(upstream)
        if upstream_api_key:
            self._authorization = f"Bearer {upstream_api_key}"
        self._timeouts = (connect_timeout_s, read_timeout_s)
        self._check_s = min(CLIENT_CHECK_S, read_timeout_s)
        self._pool = pool or ConnectionPool(
            parts.scheme, parts.hostname or "", parts.port, connect_timeout_s, read_timeout_s,
            max_idle=max_connections,
        )  # fmt: skip

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "") or "/"
        # Never let a path reach another host or climb out of the upstream's base path.
        if not path.startswith("/") or path.startswith("//") or _DOT_SEGMENT.search(path):
            refused = RequestError(400, f"invalid request path {path!r}")
            return respond_error(environ, start_response, refused)
        target = self._base_path + _upstream_path(environ, path)
        if query := environ.get("QUERY_STRING"):
            target += "?" + query
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            body, chunked = _request_body(environ)
        except RequestError as error:
            return respond_error(environ, start_response, error)
        head = self._request_head(environ, method, target, body, chunked)
        if head is None:
            refused = RequestError(400, "invalid characters in the request head")
            return respond_error(environ, start_response, refused)
        try:
            sock = self._pool.connection()
        except OSError as error:
            return self._failure(error, connecting=True).respond(environ, start_response)
        response = ResponseReader(method)
        client = _watchable(environ.get(CLIENT_SOCKET_KEY))
        read_timeout_s = self._timeouts[1]
        try:
            _send(sock, head, body, chunked)
            if client is not None:
                # Waits come in slices; between two, a look at the client. The pool hands
                # the socket out again with the read timeout.
                sock.settimeout(self._check_s)
            _read_head(sock, response, client, read_timeout_s)
        except _BodyCutShort as cut:
            # The upstream has a head and part of a body, and would wait for the rest
            # (up to its own timeout) holding a slot: the connection ends here.
            sock.close()
            return respond_error(environ, start_response, cut.error)
        except _ClientLeft:
            # As when a client of Ollama's own hangs up: Go cancels the request's context,
            # and the model stops loading or generating for nobody.
            sock.close()
            environ[CLIENT_LEFT_KEY] = True
            return respond_error(environ, start_response, _CLIENT_LEFT)
        except (UpstreamError, httptools.HttpParserError, OSError) as error:
            sock.close()
            return self._failure(error).respond(environ, start_response)
        except BaseException:
            sock.close()  # a body read that failed otherwise (its deadline): never reused
            raise
        start_response(response.status, response.headers())
        if response.complete:  # the whole reply came with its head: a chat, say
            self._pool.release(sock, response.reusable())
            return response.pieces
        return _UpstreamBody(
            sock, response, self._pool, self._failure, environ, client, read_timeout_s
        )

    def _request_head(
        self,
        environ: WSGIEnvironment,
        method: str,
        target: str,
        body: object,
        chunked: bool,
    ) -> bytes | None:
        """The request line and headers for the upstream, or None if one would break a line."""
        is_trusted = self._is_trusted
        trusted = is_trusted is not None and is_trusted(environ.get("REMOTE_ADDR", ""))
        headers: dict[str, str] = {}
        for key, value in environ.items():
            if header := _forwarded_header(key):
                name, forwarding = header
                if trusted or not forwarding:
                    headers[name] = value
        if connection := environ.get("HTTP_CONNECTION"):
            for token in connection_tokens(connection):
                headers.pop(token.title(), None)
        if content_type := environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = content_type
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
        elif body is not None:
            headers["Content-Length"] = environ["CONTENT_LENGTH"]
        elif method in _BODY_METHODS:
            headers["Content-Length"] = "0"
        client_host = headers.pop("Host", "") or environ.get("SERVER_NAME", "")
        # Ours, unless a trusted proxy's came (then its chain grows by its address).
        remote = environ.get("REMOTE_ADDR", "")
        forwarded_for = headers.get("X-Forwarded-For")
        if remote:  # a peer on a unix socket has no address to add
            headers["X-Forwarded-For"] = f"{forwarded_for}, {remote}" if forwarded_for else remote
        headers.setdefault("X-Forwarded-Proto", environ.get("wsgi.url_scheme", "http"))
        headers.setdefault("X-Forwarded-Host", client_host)
        # Bodies must reach the rewriting readable: Ollama itself never compresses, but
        # what it relays from ollama.com might be.
        headers["Accept-Encoding"] = "identity"
        if self._authorization is not None:
            # The upstream URL's credentials: the client's own are for us, if anyone.
            headers["Authorization"] = self._authorization
        return encode_request_head(method, target, self._host, headers)

    def close(self) -> None:
        """Close the idle connections to the upstream (a server does this at shutdown)."""
        self._pool.close()

    def _failure(
        self, error: BaseException, *, connecting: bool = False, answering: bool = False
    ) -> UpstreamFailure:
        """The one mapping of upstream failures to what the client is told, before the
        first byte (as the response) and after it (as the stream's last record).

        :param connecting: the failure came while connecting.
        :param answering: it came after the head of the reply, in its body.
        """
        upstream = self.upstream
        if isinstance(error, TimeoutError):
            if connecting:
                told = f"did not accept a connection within {self._timeouts[0]:g} s"
            elif answering:
                told = f"sent nothing for {self._timeouts[1]:g} s"
            else:
                told = f"did not answer within {self._timeouts[1]:g} s"
            return UpstreamFailure(504, f"upstream {told}", f"upstream {upstream} {told}")
        if connecting and isinstance(error, OSError):
            reason = (error.strerror or str(error) or type(error).__name__).lower()
            return UpstreamFailure(
                502, "upstream unreachable", f"upstream {upstream} is unreachable: {reason}"
            )
        if isinstance(error, httptools.HttpParserError):
            return UpstreamFailure(
                502,
                "upstream sent an invalid response",
                f"upstream {upstream} sent an invalid HTTP response: {error}",
            )
        if isinstance(error, UpstreamError):  # our own words, which name nothing internal
            return UpstreamFailure(502, f"upstream {error}", f"upstream {upstream} {error}")
        return UpstreamFailure(
            502,
            "upstream connection failed",
            f"upstream {upstream} failed: {error or type(error).__name__}",
        )


class UpstreamFailure(RequestError):
    """An upstream that failed: what the client is told, and what the operator's log says.

    The client's message says what went wrong without the upstream's address (which
    :attr:`detail` has), and ends with a request id to quote; the access log line carries
    the same id (:data:`~ollama_default.wsgi.REQUEST_ID_KEY`).

    :param told: what the client is told, before the request id.
    :param detail: the whole reason, for the log.
    """

    def __init__(self, status: int, told: str, detail: str) -> None:
        # Made only on a failure, never on the way of a request that works.
        self.request_id = os.urandom(6).hex()
        super().__init__(status, f"{told} (request id {self.request_id})")
        self.told = told
        self.detail = detail

    def respond(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        """Answer with this failure, in the client's dialect, and log it."""
        environ[REQUEST_ID_KEY] = self.request_id
        return respond_error(environ, start_response, self, detail=self.detail)


def without_userinfo(url: str) -> str:
    """Return ``url`` as it may be shown: without the ``user:password@`` of its authority."""
    return _USERINFO.sub(r"\1", url, count=1)


# The authority ends at the first "/", "?" or "#"; its userinfo, at its last "@" (as
# urlsplit reads it).
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def basic_authorization(url: str) -> str | None:
    """Return the ``Authorization`` header a user and password in ``url`` stand for, or None.

    As curl does with such a URL: HTTP Basic (RFC 7617), of the percent-decoded user and
    password in UTF-8; a user without a password has an empty one.
    """
    userinfo, at, _ = urlsplit(url).netloc.rpartition("@")
    if not at:
        return None
    user, _, password = userinfo.partition(":")
    credentials = f"{unquote(user)}:{unquote(password)}".encode()
    return "Basic " + base64.b64encode(credentials).decode("ascii")


def _send(
    sock: socket.socket,
    head: bytes,
    body: bytes | Iterator[bytes] | None,
    chunked: bool,
) -> None:
    """Send the request: a small body in the same write as its head (one packet).

    :raises _BodyCutShort: when a body read as it is sent ends early or breaks.
    """
    if body is None or isinstance(body, bytes):
        data = head + body if body else head
        # One send takes a request this small whole; gevent's sendall would first ask the
        # kernel for the socket's buffer size.
        sent = sock.send(data)
        if sent < len(data):
            sock.sendall(data[sent:])
        return
    sock.sendall(head)
    for piece in body:
        if chunked:
            sock.sendall(b"%x\r\n%b\r\n" % (len(piece), piece))
        else:
            sock.sendall(piece)
    if chunked:
        sock.sendall(b"0\r\n\r\n")


def _read_head(
    sock: socket.socket,
    response: ResponseReader,
    client: socket.socket | None,
    read_timeout_s: float,
) -> None:
    """Read until the head is complete; what came of the body stays in ``pieces``.

    :raises _ClientLeft: when ``client`` (its socket, if watched) goes away first.
    """
    while not response.head_complete:
        data = _recv(sock, client, read_timeout_s)
        if data:
            response.feed(data)
        else:
            response.feed_eof()


class _ClientLeft(Exception):
    """The client went away while its request waited for the upstream."""


_CLIENT_LEFT = RequestError(499, "the client closed the connection before the upstream answered")


def _recv(sock: socket.socket, client: socket.socket | None, read_timeout_s: float) -> bytes:
    """Return what the upstream sends next, waiting up to ``read_timeout_s`` in all.

    Watching ``client`` (its socket), the socket's timeout is a slice of that wait: each
    time one passes in silence, the client is looked at. The common reply arrives within
    the first slice, at no cost but this function's call.

    :raises _ClientLeft: when the client has gone.
    :raises TimeoutError: after ``read_timeout_s`` of silence.
    """
    try:
        return sock.recv(READ_BYTES)
    except TimeoutError:
        if client is None:
            raise
    slice_s = sock.gettimeout() or read_timeout_s
    deadline = time.monotonic() + read_timeout_s - slice_s  # one slice has passed
    try:
        while True:
            if has_left(client):
                raise _ClientLeft
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(min(slice_s, remaining))
            try:
                return sock.recv(READ_BYTES)
            except TimeoutError:
                continue
    finally:
        sock.settimeout(slice_s)


def _watchable(client: Any) -> socket.socket | None:
    """The client's socket, if it is one to look at while a request waits; else None.

    Not over TLS: a TLS socket cannot be peeked at (and gunicorn's HTTP/2 shares one among
    requests).
    """
    if client is None or isinstance(client, ssl.SSLSocket):
        return None
    return client  # type: ignore[no-any-return]


def has_left(client: socket.socket) -> bool:
    """Whether the client has closed its end of the connection (or reset it).

    A look without waiting and without taking anything: bytes waiting to be read (the
    client's next request, pipelined) mean it is still there. A client that only stopped
    sending (``shutdown(SHUT_WR)``) counts as gone, as Go's ``net/http`` counts it when it
    cancels a request whose connection reads EOF.
    """
    timeout = client.gettimeout()
    client.settimeout(0)
    try:
        return client.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False  # nothing to read: still there
    except OSError:
        return True  # reset
    finally:
        client.settimeout(timeout)


def _upstream_path(environ: WSGIEnvironment, path: str) -> str:
    """Return ``path`` as the client encoded it, where the server kept that, else encoded.

    PEP 3333 servers decode ``PATH_INFO`` (``%2F`` becomes ``/``); gunicorn keeps the raw
    request target in ``RAW_URI``. That is used when it still describes this request (the
    middleware has not rewritten the path) and is in origin form.
    """
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
    raw_path = raw.split("?", 1)[0]
    script_name = environ.get("SCRIPT_NAME", "")
    if raw_path == script_name + path:
        return path  # sent unencoded: as it came
    if raw_path.startswith(script_name + "/"):
        tail = raw_path[len(script_name) :]
        if unquote_to_bytes(tail) == path.encode("latin-1"):
            return tail
    return quote(path.encode("latin-1"), safe=_PATH_SAFE)


@functools.lru_cache(maxsize=1024)
def _forwarded_header(environ_key: str) -> tuple[str, bool] | None:
    """The header an environ key holds, if it is one to forward (``HTTP_X_NOTE`` ->
    ``X-Note``), and whether it is one a proxy sets, which only a trusted one may.

    Cached: a server's environ has the same few dozen keys request after request.
    """
    if not environ_key.startswith("HTTP_"):
        return None
    name = environ_key[5:].replace("_", "-").title()
    if is_hop_by_hop_header(name) or name.lower() in _NOT_FORWARDED:
        return None
    return name, name in _PROXY_HEADERS or name.startswith("X-Forwarded-")


# Headers a proxy sets about the client's connection (RFC 7239; the de facto X- ones).
_PROXY_HEADERS = frozenset({"Forwarded", "X-Real-Ip"})


def _is_in(address: str, networks: list[IPNetwork]) -> bool:
    """Whether the peer at ``address`` is in one of ``networks``."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # no address: a unix socket
        return False
    return any(ip in network for network in networks)


def ip_networks(key: str, value: object) -> tuple[str, ...]:
    """Return ``value``, a list of IP addresses and networks (``10.0.0.0/8``), as a tuple.

    Each as ``ipaddress.ip_network`` reads it, strictly, as gunicorn reads its
    ``forwarded_allow_ips``: ``10.0.0.1/8`` is refused (host bits set), not read as
    ``10.0.0.0/8``.

    :raises ConfigError: naming ``key`` and the first entry that is not one.
    """
    if not isinstance(value, (list, tuple)):
        raise ConfigError(
            f"{key} must be a list of IP addresses or networks, such as ['10.0.0.0/8'], "
            f"not {value!r}",
            key=key,
        )
    for entry in value:
        try:
            ipaddress.ip_network(entry)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{key}: {entry!r} is not an IP address or network, such as 10.0.0.0/8",
                key=key,
            ) from None
    return tuple(value)


def _request_body(environ: WSGIEnvironment) -> tuple[bytes | Iterator[bytes] | None, bool]:
    """Return the body to send on, and whether it goes chunked (its length unknown).

    :raises RequestError: 400 for a ``Content-Length`` that is not a length, or a small
        body that ends before it; 501 for a transfer coding other than chunked alone.
    """
    length = content_length(environ)
    if length is not None:
        stream = environ["wsgi.input"]
        if length <= READ_BYTES:
            # A chat request: in the same packet as the head. PEP 3333 lets an app read
            # up to CONTENT_LENGTH from the input as it is.
            try:
                body: bytes = stream.read(length)
            except Exception:  # the server's reader: the client reset the connection
                raise short_body() from None
            if len(body) < length:
                raise short_body()
            return body, False
        return _body_pieces(stream, length), False
    # Only a body the client sent chunked goes on chunked: a GET, or a POST with
    # Content-Length: 0, must not grow a Transfer-Encoding (RFC 9112 section 6.1).
    if "HTTP_TRANSFER_ENCODING" in environ:
        refused = unsupported_transfer_coding(environ)
        if refused is not None:
            raise refused
        if environ.get("wsgi.input_terminated"):
            return _body_pieces(environ["wsgi.input"], None), True
    return None, False


class _BodyCutShort(Exception):
    """The request body ended early or broke while it was being sent on."""

    def __init__(self, error: RequestError) -> None:
        super().__init__(error.message)
        self.error = error


def _body_pieces(stream: Any, length: int | None) -> Iterator[bytes]:
    """Read the body in pieces of at most :data:`READ_BYTES`: ``length`` bytes, or to the
    end of a chunked body (the server ends the input there, ``wsgi.input_terminated``).

    Counted, so that a body ending short of its ``Content-Length`` (the client left) is
    told from one that is whole: the upstream, which got the length in the head, would
    wait for the rest.

    :raises _BodyCutShort: for a body that ends early, or whose reading fails (the client
        reset the connection; gunicorn raises ``NoMoreData`` for a chunked body cut off,
        and its own errors for broken chunk framing).
    """
    remaining = length
    while remaining is None or remaining > 0:
        try:
            piece = stream.read(READ_BYTES if remaining is None else min(READ_BYTES, remaining))
        except Exception:  # the server's reader, whatever it raises
            raise _BodyCutShort(short_body() if length else cut_chunked_body()) from None
        if not piece:
            if remaining is None:
                return
            raise _BodyCutShort(short_body())
        if remaining is not None:
            remaining -= len(piece)
        yield piece


class _UpstreamBody:
    """The upstream response as a WSGI iterable that ends cleanly whatever happens.

    Complete, the connection goes back to the pool; cut short (the client left, or the
    upstream broke), it is closed, so the upstream sees the disconnect at once.
    """

    def __init__(
        self,
        sock: socket.socket,
        response: ResponseReader,
        pool: ConnectionPool,
        failure: Callable[..., UpstreamFailure],
        environ: WSGIEnvironment,
        client: socket.socket | None,
        read_timeout_s: float,
    ) -> None:
        self._environ = environ
        self._sock = sock
        self._response = response
        self._pool = pool
        self._failure = failure
        self._client = client
        self._read_timeout_s = read_timeout_s

    def __iter__(self) -> Iterator[bytes]:
        response = self._response
        sock = self._sock
        last = b"\n"
        try:
            while True:
                if response.pieces:
                    data = response.take()
                    last = data[-1:]
                    yield data
                if response.complete:
                    return
                # Everything that has arrived, never waiting to fill a block.
                data = _recv(sock, self._client, self._read_timeout_s)
                if data:
                    response.feed(data)
                else:
                    response.feed_eof()
        except _ClientLeft:
            # Noticed while the upstream was silent: a relayed stream's client is seen
            # to go when a write to it fails, but a reply held whole for rewriting is not.
            self._environ[CLIENT_LEFT_KEY] = True
        except (UpstreamError, httptools.HttpParserError, OSError) as error:
            failure = self._failure(error, answering=True)
            self._environ[ERROR_KEY] = f"{failure.detail} (the stream was cut short)"
            self._environ[REQUEST_ID_KEY] = failure.request_id
            message = f"{failure.told} (the stream was cut short; request id {failure.request_id})"
            media_type = response.header(b"content-type").split(";", 1)[0].strip().lower()
            dialect = dialect_for(self._environ.get("PATH_INFO", ""))
            record = b""
            if not response.header(b"content-length"):  # a fixed length cannot grow
                record = cut_stream_record(
                    dialect, media_type, failure.status, message, at_line_start=last == b"\n"
                )
            if not record:
                # A document (or a body of fixed length) has no record to end it: the cut
                # must not pass for its end. Raised, it reaches a piece that still holds the
                # head (DefaultModel, rewriting a document) as an error to answer, and the
                # server as a failed response, whose connection it closes unfinished.
                raise failure from None
            yield record

    def close(self) -> None:
        # A stream cut short is not reusable: closing it tells Ollama to stop generating.
        self._pool.release(self._sock, self._response.reusable())
