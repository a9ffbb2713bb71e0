"""The package's exceptions: a configuration that cannot work, a request we answer.

How an answer is worded for each client family is :mod:`ollama_default.dialects`'s business.

Pure: no I/O, no WSGI.
"""

from __future__ import annotations

from collections.abc import Sequence


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
    """A request we answer ourselves, with an HTTP status and a message for the client.

    :param headers: response headers the answer needs besides its body's, such as the
        ``Retry-After`` of a 503.
    """

    def __init__(
        self, status: int, message: str, *, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = tuple(headers)
