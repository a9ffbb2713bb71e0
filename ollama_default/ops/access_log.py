"""The access log: one line per request, written when its response has ended.

A WSGI middleware usable around any app: :class:`AccessLog` reads what
:class:`~ollama_default.DefaultModel` and the proxy's pieces left in ``environ`` (the alias,
the model, why a request was refused or failed), so it parses nothing again. Lines go to
the logger ``ollama_default.access``; :func:`ollama_default.proxy.logs.configure_logging`
(or any logging setup) says where they end up and in which format.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..core.response_body import STREAM_MEDIA_TYPES
from ..wsgi import (
    ALIAS_KEY,
    CLIENT_LEFT_KEY,
    ERROR_KEY,
    FALLBACK_KEY,
    KEY_ID_KEY,
    MODEL_KEY,
    REFUSED_KEY,
    REQUEST_ID_KEY,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: The logger of :class:`AccessLog`.
access_logger = logging.getLogger("ollama_default.access")


class AccessLog:
    """WSGI middleware: one log line per request, written when its response has ended.

    Each line names the client, the method and path, the status, the alias the client used
    and the model that answered (left in ``environ`` by :class:`~ollama_default.DefaultModel`),
    the duration, the bytes sent, and for streams the time to the first byte; when the default
    answered for a model the upstream does not have, the model asked for (``fallback_from``);
    the id of the API key used (``key``: its name, never the key); for a request an access
    rule refused, why (``refused``: ``auth``, ``management``, ``limit``).
    A request we refused, an unreachable or slow upstream and a stream cut short are logged
    at WARNING with their reason (in full, where the client is told less: an upstream's address is
    for the operator only, and the client gets the line's ``request_id`` to quote);
    everything else at INFO. A client that leaves before the end of its response is noted.

    >>> app = DefaultModel(app, alias="llmodel", target="qwen3:4b")  # doctest: +SKIP
    >>> app = AccessLog(app)  # doctest: +SKIP

    :param app: the WSGI app to log the requests of.
    :param logger: where the lines go (``ollama_default.access`` by default).
    """

    def __init__(self, app: WSGIApplication, logger: logging.Logger = access_logger) -> None:
        self.app = app
        self.logger = logger

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        entry = _Entry(self.logger, environ)

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            entry.status, entry.headers = status, headers
            return start_response(status, headers, exc_info)

        try:
            app_iter = self.app(environ, capture)
        except BaseException as error:
            entry.write(ended=False, failure=error)
            raise
        if type(app_iter) is list:  # a whole reply: it is sent as soon as we return it
            entry.sent_bytes = sum(map(len, app_iter))
            entry.write(ended=True)
            return app_iter
        return _LoggedBody(app_iter, entry)


class _Entry:
    """What one access line says, gathered while the request is served."""

    __slots__ = (
        "environ", "first_byte_at", "headers", "logger", "path", "sent_bytes", "started_at",
        "status",
    )  # fmt: skip

    def __init__(self, logger: logging.Logger, environ: WSGIEnvironment) -> None:
        self.logger = logger
        self.environ = environ
        self.started_at = time.perf_counter()
        # Before any mount or rewrite moves it: the path as the client asked for it.
        self.path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        self.status = ""
        self.headers: list[tuple[str, str]] = []
        self.sent_bytes = 0
        self.first_byte_at: float | None = None

    def write(self, *, ended: bool, failure: BaseException | None = None) -> None:
        environ = self.environ
        error = environ.get(ERROR_KEY)
        level = logging.WARNING if error is not None else logging.INFO
        if failure is not None:
            level, error = logging.ERROR, f"the app raised {type(failure).__name__}: {failure}"
        if not self.logger.isEnabledFor(level):
            return
        now = time.perf_counter()
        fields: dict[str, Any] = {
            "client": environ.get("REMOTE_ADDR") or "-",
            "method": environ.get("REQUEST_METHOD", ""),
            "path": self.path,
            "status": int(self.status[:3]) if self.status[:3].isdigit() else None,
            "alias": environ.get(ALIAS_KEY),
            "model": environ.get(MODEL_KEY),
            "duration_ms": round((now - self.started_at) * 1000, 1),
            "bytes": self.sent_bytes,
        }
        if (key_id := environ.get(KEY_ID_KEY)) is not None:
            fields["key"] = key_id  # the key's id, never the key
        if (fallback := environ.get(FALLBACK_KEY)) is not None:
            fields["fallback_from"] = fallback
        if self.first_byte_at is not None and self._is_stream():
            fields["ttfb_ms"] = round((self.first_byte_at - self.started_at) * 1000, 1)
        if environ.get(CLIENT_LEFT_KEY) or (not ended and error is None):
            fields["client_left"] = True
        if error is not None:
            fields["error"] = error
        if (refused := environ.get(REFUSED_KEY)) is not None:
            fields["refused"] = refused
        if (request_id := environ.get(REQUEST_ID_KEY)) is not None:
            fields["request_id"] = request_id
        self.logger.log(level, "%s", _AccessLine(fields), extra={"fields": fields})

    def _is_stream(self) -> bool:
        for name, value in self.headers:
            if name.lower() == "content-type":
                return value.split(";", 1)[0].strip().lower() in STREAM_MEDIA_TYPES
        return False


class _AccessLine:
    """The text form of an access line, built only if a handler formats it::

    127.0.0.1 "POST /api/chat" 200 alias=llmodel model=qwen3:4b time=0.532s bytes=1234 ttfb=0.012s
    """

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        fields = self.fields
        parts = [
            fields["client"],
            json.dumps(f"{fields['method']} {fields['path']}", ensure_ascii=False),
            str(fields["status"] if fields["status"] is not None else "-"),
            f"alias={_value(fields['alias'])}",
            f"model={_value(fields['model'])}",
        ]
        if "key" in fields:
            parts.append(f"key={_value(fields['key'])}")
        if "fallback_from" in fields:
            parts.append(f"fallback_from={_value(fields['fallback_from'])}")
        parts += [
            f"time={fields['duration_ms'] / 1000:.3f}s",
            f"bytes={fields['bytes']}",
        ]
        if "ttfb_ms" in fields:
            parts.append(f"ttfb={fields['ttfb_ms'] / 1000:.3f}s")
        if fields.get("client_left"):
            parts.append("client-left")
        if "refused" in fields:
            parts.append(f"refused={_value(fields['refused'])}")
        if "error" in fields:
            parts.append(f"error={json.dumps(fields['error'], ensure_ascii=False)}")
        if "request_id" in fields:
            parts.append(f"request_id={_value(fields['request_id'])}")
        return " ".join(parts)


def _value(value: str | None) -> str:
    """A name as it reads in a line: bare when it is one word, else quoted and escaped,
    so a client cannot start a line of its own in our log."""
    if value is None:
        return "-"
    if value and value.isprintable() and " " not in value and '"' not in value:
        return value
    return json.dumps(value, ensure_ascii=False)


class _LoggedBody:
    """The app's iterable, counted as it is sent; the line is written when it closes."""

    __slots__ = ("_app_iter", "_ended", "_entry")

    def __init__(self, app_iter: Iterable[bytes], entry: _Entry) -> None:
        self._app_iter = app_iter
        self._entry = entry
        self._ended = False

    def __iter__(self) -> Iterator[bytes]:
        entry = self._entry
        for data in self._app_iter:
            if data:
                if entry.first_byte_at is None:
                    entry.first_byte_at = time.perf_counter()
                entry.sent_bytes += len(data)
            yield data
        self._ended = True

    def close(self) -> None:
        try:
            close = getattr(self._app_iter, "close", None)
            if close is not None:
                close()
        finally:
            self._entry.write(ended=self._ended)
