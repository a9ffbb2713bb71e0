"""HTTP/1.1 to the upstream without a socket: request heads out, a response reader fed bytes.

The reader is fed whatever the socket gave (``feed``) and told when the connection ended
(``feed_eof``); it keeps the head, the body pieces that have arrived, and whether the reply
is complete and its connection reusable. Parsing is llhttp's (httptools), Node.js's parser
in C: a proxy pays its HTTP client's cost on every request and every streamed record, and
``http.client`` parses headers with the ``email`` package (``benchmarks/proxy.py``). Like
h11, this holds no socket, so every edge of the protocol is tested with bytes alone.
"""

from __future__ import annotations

import functools

import httptools
from werkzeug.http import is_hop_by_hop_header

#: The longest response head accepted from the upstream.
MAX_HEAD_BYTES = 1024 * 1024


class UpstreamError(Exception):
    """The upstream broke the HTTP exchange: closed it early or sent what is not HTTP."""


def encode_request_head(
    method: str, target: str, host: str, headers: dict[str, str]
) -> bytes | None:
    """The request line and headers, or None when a value would break a line.

    :param target: the request target in origin form, ``/api/chat?x=1``.
    :param host: the ``Host`` to send: the upstream's own (Ollama on loopback refuses names
        it does not know, a DNS-rebinding guard).
    """
    head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n" + "".join(
        [f"{name}: {value}\r\n" for name, value in headers.items()]
    )
    # Each header is one line: nothing may split one or end the head early.
    lines = len(headers) + 2
    if head.count("\n") != lines or head.count("\r") != lines or "\0" in head:
        return None
    return (head + "\r\n").encode("latin-1")


class ResponseReader:
    """One upstream response as llhttp reports it: its head, then its body in pieces.

    >>> reader = ResponseReader("POST")
    >>> reader.feed(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\n{}")
    >>> reader.status, reader.pieces, reader.complete
    ('200 OK', [b'{}'], True)

    The ``on_*`` methods are httptools' callbacks, called during :meth:`feed`.
    """

    def __init__(self, method: str) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._is_head = method == "HEAD"
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        #: Body bytes that have arrived and not been taken yet.
        self.pieces: list[bytes] = []
        self.head_complete = False
        self.complete = False
        self._keep_alive = False
        self.status = ""

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._reason = b""
        self._headers = []

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        code = self._parser.get_status_code()
        if code < 200:
            return  # an interim response (100 Continue): the real one follows
        self.status = f"{code} {self._reason.decode('latin-1')}".rstrip()
        self.head_complete = True
        # Asked now: llhttp forgets a message's framing once the message is over.
        self._keep_alive = self._parser.should_keep_alive()
        # llhttp cannot be told a HEAD reply has no body: it is complete with its head.
        self.complete = self._is_head

    def on_body(self, body: bytes) -> None:
        self.pieces.append(body)

    def on_message_complete(self) -> None:
        if self.head_complete:
            self.complete = True

    # feeding

    def feed(self, data: bytes) -> None:
        """Parse ``data``, the next bytes from the connection.

        :raises UpstreamError: for a head over :data:`MAX_HEAD_BYTES`, or a switch of
            protocols nobody asked for.
        :raises httptools.HttpParserError: for bytes that are not an HTTP response.
        """
        if not self.head_complete:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                raise UpstreamError(f"sent a response head over {MAX_HEAD_BYTES} bytes")
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Upgrade is hop-by-hop, never passed on: nobody asked for another protocol.
            raise UpstreamError("switched protocols unasked") from None

    def feed_eof(self) -> None:
        """The upstream closed the connection: the end of a reply that runs to the close.

        :raises UpstreamError: when the reply was not over.
        """
        if not self.head_complete:
            if self._head_bytes:
                raise UpstreamError("closed the connection in the middle of its reply")
            raise UpstreamError("closed the connection without answering")
        if self.complete:
            return
        # RFC 9112 section 6.3: with neither framing header, the body runs to the close.
        if self.header(b"content-length") or self.header(b"transfer-encoding"):
            raise UpstreamError("closed the connection in the middle of its reply")
        self.complete = True

    # reading

    def take(self) -> bytes:
        """Return the body bytes that have arrived, and forget them."""
        pieces = self.pieces
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        pieces.clear()
        return data

    def reusable(self) -> bool:
        """Whether the connection may carry another request after this complete reply."""
        if self._is_head and self.pieces:
            return False  # bytes after a HEAD reply's head: the connection is out of step
        return self.complete and self._keep_alive

    def header(self, name: bytes) -> str:
        """The value of the first header called ``name`` (lower case), or ``""``."""
        for field, value in self._headers:
            if field.lower() == name:
                return value.decode("latin-1")
        return ""

    def headers(self) -> list[tuple[str, str]]:
        """The end-to-end headers, for the client (RFC 9110 section 7.6.1)."""
        kept = []
        listed = ""
        for name, value in self._headers:
            if _is_hop_by_hop(name):
                if name.lower() == b"connection":
                    listed += "," + value.decode("latin-1").lower()
            else:
                kept.append((name.decode("latin-1"), value.decode("latin-1")))
        if listed.strip(", ") not in ("", "keep-alive", "close"):
            also_hop_by_hop = connection_tokens(listed)
            kept = [(name, value) for name, value in kept if name.lower() not in also_hop_by_hop]
        return kept


@functools.lru_cache(maxsize=256)
def _is_hop_by_hop(name: bytes) -> bool:
    """Whether a response header is hop-by-hop (cached: replies repeat the same few)."""
    return is_hop_by_hop_header(name.decode("latin-1"))


def connection_tokens(value: str) -> set[str]:
    """The header names a ``Connection`` header lists: hop-by-hop too (RFC 9110 7.6.1)."""
    return {token.strip().lower() for token in value.split(",")}
