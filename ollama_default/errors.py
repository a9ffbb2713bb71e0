"""Errors: the exception classes, and error bodies in the shape each client expects.

The one place that turns a failure into HTTP. Ollama's native endpoints answer
``{"error": "..."}`` (``docs/api/errors.mdx``); its OpenAI layer answers OpenAI's error
object (``openai/openai.go`` ``NewError``); its Anthropic layer answers Anthropic's
(``anthropic/anthropic.go`` ``NewError``). Clients parse only their own shape, so ours must
match theirs.

Pure: no I/O, no WSGI.
"""

from __future__ import annotations

import json
from enum import Enum
from http import HTTPStatus


class ConfigError(ValueError):
    """A configuration that cannot work; the message is one line naming key and value.

    The key and where it was set are attributes too, so a caller can add or show them
    without reading the message.

    :param key: the setting at fault (``upstream``, ``aliases``), when there is one.
    :param source: where that value was set: ``--upstream``, ``OLLAMA_DEFAULT_UPSTREAM``,
        ``config file '/etc/ollama-default.toml'``; None when not known.
    """

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.source = source


class RequestError(Exception):
    """A request we answer ourselves, with an HTTP status and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ErrorShape(Enum):
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


def error_body(shape: ErrorShape, status: int, message: str) -> bytes:
    """Return the JSON error body a client of ``shape`` expects for ``status``."""
    document: object
    if shape is ErrorShape.OPENAI:
        error_type = _OPENAI_TYPES.get(status, "api_error")
        document = {"error": {"message": message, "type": error_type, "param": None, "code": None}}
    elif shape is ErrorShape.ANTHROPIC:
        error_type = _ANTHROPIC_TYPES.get(status, "api_error")
        document = {"type": "error", "error": {"type": error_type, "message": message}}
    else:
        document = {"error": message}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def status_line(status: int) -> str:
    """Return a WSGI status line such as ``"413 Request Entity Too Large"``."""
    return f"{status} {HTTPStatus(status).phrase}"
