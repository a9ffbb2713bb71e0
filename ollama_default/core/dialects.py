"""The three dialects Ollama speaks, and how each says that something went wrong.

Ollama's native endpoints answer ``{"error": "..."}`` (``docs/api/errors.mdx``); its OpenAI
layer answers OpenAI's error object (``openai/openai.go`` ``NewError``); its Anthropic layer
answers Anthropic's (``anthropic/anthropic.go`` ``NewError``). Clients parse only their own
dialect, so every error we make must be in the one its endpoint speaks: before the first
byte as a whole body, after it as the last record of the stream.

Pure: no I/O, no WSGI.
"""

from __future__ import annotations

import json
from enum import Enum


class Dialect(Enum):
    """Which client family an endpoint serves, and so which error body it expects."""

    OLLAMA = "ollama"
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


# openai/openai.go NewError: 400 and 404 have their own types, everything else api_error.
_OPENAI_TYPES = {400: "invalid_request_error", 404: "not_found_error"}
# anthropic/anthropic.go NewError.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def error_body(dialect: Dialect, status: int, message: str) -> bytes:
    """Return the JSON error body a client of ``dialect`` expects for ``status``."""
    document: object
    if dialect is Dialect.OPENAI:
        error_type = _OPENAI_TYPES.get(status, "api_error")
        document = {"error": {"message": message, "type": error_type, "param": None, "code": None}}
    elif dialect is Dialect.ANTHROPIC:
        error_type = _ANTHROPIC_TYPES.get(status, "api_error")
        document = {"type": "error", "error": {"type": error_type, "message": message}}
    else:
        document = {"error": message}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def cut_stream_record(
    dialect: Dialect, media_type: str, status: int, message: str, *, at_line_start: bool
) -> bytes:
    """Return the record that ends a stream cut short, as the stream's clients read errors.

    NDJSON ends with ``{"error": ...}``, as Ollama ends a failed stream, and the ``ollama``
    client raises on it. An SSE stream ends with an event its client raises on: Anthropic's
    SDK skips unnamed events and raises on ``event: error``; OpenAI's raises on any event
    whose data holds ``error``. Any other media type gets nothing: its framing is unknown.

    :param at_line_start: whether the bytes sent so far end a line; if not, one is ended
        first, so the record is not glued to a record cut in half.
    """
    separator = b"" if at_line_start else b"\n"
    body = error_body(dialect, status, message)
    if media_type == "application/x-ndjson":
        return separator + error_body(Dialect.OLLAMA, status, message) + b"\n"
    if media_type != "text/event-stream":
        return b""
    # A blank line first: it ends whatever event was cut, so ours stands alone.
    if dialect is Dialect.ANTHROPIC:
        return separator + b"\nevent: error\ndata: " + body + b"\n\n"
    return separator + b"\ndata: " + error_body(Dialect.OPENAI, status, message) + b"\n\n"
