"""The response plan: from a response's head, how its body is rewritten on the way out.

Chosen once per response, from the request method, the status and the headers (as
starlette's gzip middleware picks a responder from the head): a stream (NDJSON, SSE) is
restored record by record as it arrives and loses its ``Content-Length``; a JSON document
is collected, up to ``max_record_bytes``, restored whole and given its new
``Content-Length``; a listing's successful reply (``/api/tags``, ...) gets the aliases
in it the same way (:mod:`~ollama_default.core.listings`); anything else (no body, a
compressed body, another media type, a document past the cap) passes through byte for
byte. Each plan has the same two calls:
``feed(data)`` returns what may go out now, ``finish()`` what is left at the end; its
``headers`` are final once either has returned bytes, or after ``finish()``.

Pure: bytes and header lists in, bytes out; no I/O, no WSGI.
"""

from __future__ import annotations

from collections.abc import Callable

from .response_body import STREAM_MEDIA_TYPES, NameRestorer, StreamRestorer

Headers = list[tuple[str, str]]
#: What a JSON document becomes: bytes in, bytes out.
DocumentEdit = Callable[[bytes], bytes]

# Responses to HEAD, and with these statuses, have no body to rewrite (RFC 9110 6.4.1).
_NO_BODY_STATUSES = ("1", "204", "304")


class Passthrough:
    """The body goes out as it came, and so do the headers."""

    def __init__(self, headers: Headers) -> None:
        self.headers = headers

    def feed(self, data: bytes) -> bytes:
        """Return ``data``: nothing is held."""
        return data

    def finish(self) -> bytes:
        """Return nothing: nothing was held."""
        return b""


class StreamRewrite:
    """A stream restored record by record; its length is no longer known in advance."""

    def __init__(
        self, headers: Headers, restorer: NameRestorer, media_type: str, max_record_bytes: int
    ) -> None:
        self.headers = _without_length(headers)
        stream = StreamRestorer(restorer, media_type, max_record_bytes)
        self.feed = stream.feed
        self.finish = stream.finish


class DocumentRewrite:
    """A JSON document, held until it ends, then rewritten whole by ``edit`` (the names
    restored, a listing's aliases added) and sent with its new length.

    One that grows past ``max_record_bytes`` is let go as it came, with its own length:
    what was held goes out at once, and the rest as it arrives.
    """

    def __init__(self, headers: Headers, edit: DocumentEdit, max_record_bytes: int) -> None:
        self.headers = headers
        self._edit = edit
        self._max_record_bytes = max_record_bytes
        self._held: list[bytes] | None = []
        self._held_bytes = 0

    def feed(self, data: bytes) -> bytes:
        """Hold ``data``; return what was held once the document is too large to restore."""
        if self._held is None:
            return data
        self._held.append(data)
        self._held_bytes += len(data)
        if self._held_bytes <= self._max_record_bytes:
            return b""
        held, self._held = b"".join(self._held), None
        return held

    def finish(self) -> bytes:
        """Return the rewritten document, and set its ``Content-Length``."""
        if self._held is None:
            return b""
        document = self._edit(b"".join(self._held))
        self._held = None
        self.headers = [*_without_length(self.headers), ("Content-Length", str(len(document)))]
        return document


ResponsePlan = Passthrough | StreamRewrite | DocumentRewrite


def plan_response(
    method: str,
    status: str,
    headers: Headers,
    restorer: NameRestorer | None,
    max_record_bytes: int,
    *,
    listing: DocumentEdit | None = None,
) -> ResponsePlan:
    """Choose how the body of a response with this head is rewritten.

    :param method: the request's method (a reply to HEAD has no body).
    :param status: the WSGI status line, ``"200 OK"``.
    :param headers: the response's headers.
    :param restorer: restores the client's model names in one record; None when the
        request used no alias.
    :param max_record_bytes: the longest stream record or JSON document rewritten.
    :param listing: the aliases' part in a successful JSON reply (after ``restorer``'s);
        an error passes without it.
    """
    media_type, encoding = "", "identity"
    for name, value in headers:
        lowered = name.lower()
        if lowered == "content-type":
            media_type = value.split(";", 1)[0].strip().lower()
        elif lowered == "content-encoding":
            encoding = value.strip().lower()
    if method == "HEAD" or status.startswith(_NO_BODY_STATUSES) or encoding != "identity":
        return Passthrough(headers)  # no body to read, or one we cannot read undecoded
    if media_type in STREAM_MEDIA_TYPES and restorer is not None:
        return StreamRewrite(headers, restorer, media_type, max_record_bytes)
    if media_type == "application/json":
        if not status.startswith("200"):
            listing = None
        edit = _document_edit(restorer, listing)
        if edit is not None:
            return DocumentRewrite(headers, edit, max_record_bytes)
    return Passthrough(headers)


def _document_edit(
    restorer: NameRestorer | None, listing: DocumentEdit | None
) -> DocumentEdit | None:
    if restorer is None:
        return listing
    if listing is None:
        return restorer.restore
    restore = restorer.restore
    return lambda document: listing(restore(document))


def _without_length(headers: Headers) -> Headers:
    return [(name, value) for name, value in headers if name.lower() != "content-length"]
