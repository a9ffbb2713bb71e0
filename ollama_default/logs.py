"""The package's log: one line per request, a start-up summary, and where they go.

Everything logs under the logger ``ollama_default`` (the access log under
``ollama_default.access``), never under gunicorn's, so an operator can route, silence or
ship it on its own. :func:`configure_logging` gives that logger its level, destination
and format (readable text, or one JSON object per line for log shippers) from the
settings; :class:`AccessLog` is a WSGI middleware that writes one line per request.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import ConfigError
from .response_body import STREAM_MEDIA_TYPES
from .wsgi import ALIAS_KEY, ERROR_KEY, MODEL_KEY

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .settings import Settings

LOGGER_NAME = "ollama_default"
#: The logger of :class:`AccessLog`.
access_logger = logging.getLogger(LOGGER_NAME + ".access")
_log = logging.getLogger(LOGGER_NAME)

# gunicorn's own error-log layout, so that both read as one log.
_TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
_TEXT_DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, message, and the event's fields.

    An access line carries its fields (``method``, ``path``, ``status``, ``alias``,
    ``model``, ``duration_ms``, ``bytes``, ``ttfb_ms``, ``client``, ``error``) as members,
    so a log shipper needs no parsing.
    """

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        document.update(getattr(record, "fields", {}))
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False)


# The handler configure_logging installed, replaced (not added to) when it is called again.
_installed: list[logging.Handler] = []


def configure_logging(settings: Settings) -> None:
    """Send the package's log where ``settings`` say, at their level, in their format.

    Calling it again replaces what the previous call set up.

    :raises ConfigError: when the log file cannot be opened for appending.
    """
    logger = logging.getLogger(LOGGER_NAME)
    handler: logging.Handler
    if settings.log_file == "-":
        handler = logging.StreamHandler(sys.stderr)
    else:
        try:
            # Watched: reopened when logrotate moves the file away.
            handler = logging.handlers.WatchedFileHandler(settings.log_file)
        except OSError as error:
            raise ConfigError(
                f"log_file {settings.log_file!r} cannot be opened: {error.strerror}",
            ) from None
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT, _TEXT_DATE_FORMAT))
    while _installed:
        old = _installed.pop()
        logger.removeHandler(old)
        old.close()
    _installed.append(handler)
    logger.addHandler(handler)
    logger.setLevel(settings.log_level.upper())
    logger.propagate = False


def startup_summary(
    settings: Settings, *, upstream_answers: bool | None, demo: str | None, workers: str | None
) -> list[str]:
    """Return the lines the proxy logs when it starts.

    :param upstream_answers: whether the upstream accepted a connection (None: not tried).
    :param demo: why the demo backend is served instead of the upstream, or None.
    :param workers: how many workers of which kind serve, or None when unknown.
    """
    if demo is not None:
        backend = f"serving the built-in demo backend: {demo}"
    else:
        state = {True: " (answering)", False: " (not answering yet)", None: ""}[upstream_answers]
        backend = f"forwarding to {settings.upstream}{state}"
    default = settings.default if settings.default is not None else None
    if default is None and len(settings.aliases) == 1:
        default = next(iter(settings.aliases))
    aliases = ", ".join(
        f"{alias} -> {target}" + (" (default)" if alias == default else "")
        for alias, target in settings.aliases.items()
    )
    access = "off"
    if settings.access_log:
        where = "standard error" if settings.log_file == "-" else settings.log_file
        access = f"on, {settings.log_format}, to {where}"
    return [
        f"ollama-default {__version__}: {backend}",
        f"aliases: {aliases or 'none'}",
        f"prefix: {settings.prefix or 'none'}; workers: {workers or 'unknown'}",
        f"access log: {access}; level {settings.log_level}",
    ]


def log_startup(
    settings: Settings,
    *,
    upstream_answers: bool | None,
    demo: str | None = None,
    workers: str | None = None,
) -> None:
    """Log :func:`startup_summary` at INFO."""
    for line in startup_summary(
        settings, upstream_answers=upstream_answers, demo=demo, workers=workers
    ):
        _log.info(line)


class AccessLog:
    """WSGI middleware: one log line per request, written when its response has ended.

    Each line names the client, the method and path, the status, the alias the client used
    and the model that answered (left in ``environ`` by :class:`~ollama_default.DefaultModel`),
    the duration, the bytes sent, and for streams the time to the first byte. A request we
    refused, an unreachable or slow upstream and a stream cut short are logged at WARNING
    with their reason; everything else at INFO. A client that leaves before the end of its
    response is noted.

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
        if self.first_byte_at is not None and self._is_stream():
            fields["ttfb_ms"] = round((self.first_byte_at - self.started_at) * 1000, 1)
        if not ended and error is None:
            fields["client_left"] = True
        if error is not None:
            fields["error"] = error
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
            f"time={fields['duration_ms'] / 1000:.3f}s",
            f"bytes={fields['bytes']}",
        ]
        if "ttfb_ms" in fields:
            parts.append(f"ttfb={fields['ttfb_ms'] / 1000:.3f}s")
        if fields.get("client_left"):
            parts.append("client-left")
        if "error" in fields:
            parts.append(f"error={json.dumps(fields['error'], ensure_ascii=False)}")
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
