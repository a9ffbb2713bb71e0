"""``DefaultModel``: the WSGI middleware that gives an Ollama API aliases and a default.

A thin shell over the pure rules: look the endpoint up, read and decide the request,
hand it to the wrapped app, and pass the response through the framing and the record
rewriting. All per-request state lives in an :class:`_Exchange` made in ``__call__``;
the middleware itself is immutable after ``__init__``, so server threads share it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING

from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.wsgi import get_input_stream

from .aliases import AliasTable
from .endpoints import Body, Endpoint, find_endpoint
from .errors import ConfigError, RequestError
from .framing import MAX_RECORD_BYTES
from .request_body import Decision, decide_json, decide_multipart, decide_name
from .response_body import STREAM_MEDIA_TYPES, NameRestorer, StreamRestorer
from .wsgi import (
    ALIAS_KEY,
    MODEL_KEY,
    TARGET_HEADER,
    content_length,
    respond_error,
    short_body,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    ExcInfo = tuple[type[BaseException], BaseException, TracebackType]

#: Large enough for multimodal requests, whose base64 images run to tens of MiB.
MAX_BODY_BYTES = 100 * 1024 * 1024

# Bodies without one of these are never read or changed (PEP 3333 status line first word).
_NO_BODY_STATUSES = ("1", "204", "304")


class DefaultModel:
    """WSGI middleware: aliases for Ollama models, and a model for requests that name none.

    Requests naming an alias reach ``app`` naming the alias's target; requests naming no
    model get the default alias's target. Responses to those requests show the name the
    client used wherever a model-name field names the target. Everything else, and every
    request that named a real model, passes through untouched.

    >>> def ollama(environ, start_response): ...
    >>> app = DefaultModel(ollama, alias="llmodel", target="aya-expanse:8b-q8_0")
    >>> app = DefaultModel(
    ...     ollama,
    ...     mapping={"llmodel": "aya-expanse:8b-q8_0", "embed": "nomic-embed-text:latest"},
    ...     default="llmodel",
    ... )

    :param app: the WSGI app that speaks Ollama's API.
    :param alias: one alias (with ``target``); it is also the default.
    :param target: the real model ``alias`` stands for.
    :param mapping: several aliases, alias -> real model (instead of alias and target).
    :param default: the alias used when a request names no model.
    :param max_body_bytes: larger request bodies get 413 before they are read.
    :param max_record_bytes: a response line or event longer than this is relayed as is.
    :raises ConfigError: when the aliases do not make a consistent table.
    """

    def __init__(
        self,
        app: WSGIApplication,
        alias: str | None = None,
        target: str | None = None,
        *,
        mapping: Mapping[str, str] | None = None,
        default: str | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_record_bytes: int = MAX_RECORD_BYTES,
    ) -> None:
        self.app = app
        self.aliases = AliasTable(_mapping(alias, target, mapping), default)
        for name, value in (("max_body_bytes", max_body_bytes),
                            ("max_record_bytes", max_record_bytes)):  # fmt: skip
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive number of bytes, not {value!r}")
        self.max_body_bytes = max_body_bytes
        self.max_record_bytes = max_record_bytes

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        endpoint = find_endpoint(environ.get("PATH_INFO", ""))
        if (
            endpoint is None
            or not endpoint.names_a_model
            or environ.get("REQUEST_METHOD", "GET") not in endpoint.methods
        ):
            return self.app(environ, start_response)
        try:
            decision = self._decide(environ, endpoint)
        except RequestError as error:
            return respond_error(environ, start_response, error, endpoint.dialect)
        if decision.model is not None:
            environ[MODEL_KEY] = decision.model
        if not decision.renames:
            return self.app(environ, start_response)
        environ[ALIAS_KEY] = decision.renames[0].client_name
        restorer = NameRestorer(decision.renames, endpoint.response_fields)
        targets = ", ".join(rename.route.target for rename in decision.renames)
        return _Exchange(
            self.app, environ, start_response, restorer, self.max_record_bytes, targets
        )

    def _decide(self, environ: WSGIEnvironment, endpoint: Endpoint) -> Decision:
        if endpoint.path_model:
            return _decide_path(environ, endpoint, self.aliases)
        body = self._read_body(environ)
        if body is None:
            return Decision(None, ())
        if environ.get("HTTP_CONTENT_ENCODING", "identity").lower() != "identity":
            decision = Decision(None, ())  # compressed: passed on as it came (see docs)
        elif endpoint.body is Body.MULTIPART:
            content_type = environ.get("CONTENT_TYPE", "")
            decision = decide_multipart(body, content_type, endpoint, self.aliases)
        else:
            decision = decide_json(body, endpoint, self.aliases)
        _set_body(environ, body if decision.body is None else decision.body)
        return decision

    def _read_body(self, environ: WSGIEnvironment) -> bytes | None:
        """Read the whole request body, or return None when there is none to read."""
        length = content_length(environ)
        if length is None and not environ.get("wsgi.input_terminated"):
            return None  # no body, or one this server cannot frame: leave it to the app
        if length is not None:
            if length > self.max_body_bytes:
                raise self._too_large()  # refused before reading a byte of it
            # PEP 3333: an app may read up to CONTENT_LENGTH from the input as it is.
            body: bytes = environ["wsgi.input"].read(length)
            if len(body) < length:
                raise short_body()
            return body
        try:
            # One byte over the limit: a bounded stream (chunked input) stops at its
            # limit without a word, so only an extra byte tells "at" from "over".
            stream = get_input_stream(environ, max_content_length=self.max_body_bytes + 1)
            body = stream.read()
        except RequestEntityTooLarge:
            raise self._too_large() from None
        except ClientDisconnected:
            raise short_body() from None
        if len(body) > self.max_body_bytes:
            raise self._too_large()
        return body

    def _too_large(self) -> RequestError:
        return RequestError(
            413, f"request body is larger than the limit of {self.max_body_bytes} bytes"
        )


def _mapping(
    alias: str | None, target: str | None, mapping: Mapping[str, str] | None
) -> Mapping[str, str]:
    if mapping is not None:
        if alias is not None or target is not None:
            raise ConfigError("give either alias and target, or mapping, not both")
        return mapping
    if alias is None or target is None:
        raise ConfigError("give alias and target, or a mapping of aliases")
    return {alias: target}


def _set_body(environ: WSGIEnvironment, body: bytes) -> None:
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ["wsgi.input_terminated"] = True
    environ.pop("HTTP_TRANSFER_ENCODING", None)


def _decide_path(environ: WSGIEnvironment, endpoint: Endpoint, aliases: AliasTable) -> Decision:
    path: str = environ["PATH_INFO"]
    prefix = endpoint.path.split("{", 1)[0]
    # PEP 3333: PATH_INFO is bytes decoded as latin-1; Ollama reads the path as UTF-8.
    name = path[len(prefix) :].encode("latin-1").decode("utf-8", "replace")
    rename = decide_name(name, aliases)
    if rename is None:
        return Decision(None, (), name)
    environ["PATH_INFO"] = prefix + rename.route.target.encode().decode("latin-1")
    # The server's raw request line no longer describes the request.
    environ.pop("RAW_URI", None)
    environ.pop("REQUEST_URI", None)
    return Decision(None, (rename,), rename.route.target)


class _Exchange:
    """One request's response: captures the app's headers, picks the rewriting, relays.

    Streams (NDJSON, SSE) are rewritten record by record as they arrive; a JSON document
    is collected (up to ``max_record_bytes``) so its ``Content-Length`` can be set right;
    anything else, and anything compressed, is relayed untouched. Every response names
    the real model in its ``X-Ollama-Default-Target`` header; the body keeps the alias.
    """

    def __init__(
        self,
        app: WSGIApplication,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        restorer: NameRestorer,
        max_record_bytes: int,
        targets: str,
    ) -> None:
        self._targets = targets
        self._start_response = start_response
        self._restorer = restorer
        self._max_record_bytes = max_record_bytes
        self._is_head = environ.get("REQUEST_METHOD") == "HEAD"
        self._status = ""
        self._headers: list[tuple[str, str]] = []
        self._exc_info: ExcInfo | None = None
        self._write: Callable[[bytes], object] | None = None
        self._feed: Callable[[bytes], bytes] = _unchanged
        self._finish: Callable[[], bytes] = _nothing
        self._document: list[bytes] | None = None  # a JSON body being collected
        self._document_bytes = 0
        self._app_iter = app(environ, self._capture_start)

    def _capture_start(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: ExcInfo | tuple[None, None, None] | None = None,
    ) -> Callable[[bytes], object]:
        if exc_info is not None and exc_info[0] is None:
            exc_info = None
        if exc_info is not None and self._write is not None:
            # PEP 3333: headers already went out; the server re-raises.
            self._start_response(status, headers, exc_info)
        self._status, self._headers, self._exc_info = status, list(headers), exc_info
        self._headers.append((TARGET_HEADER, self._targets))
        self._choose_rewriting()
        return self._app_write

    def _choose_rewriting(self) -> None:
        self._feed, self._finish, self._document = _unchanged, _nothing, None
        media_type, encoding = "", "identity"
        for name, value in self._headers:
            lowered = name.lower()
            if lowered == "content-type":
                media_type = value.split(";", 1)[0].strip().lower()
            elif lowered == "content-encoding":
                encoding = value.strip().lower()
        if self._is_head or self._status.startswith(_NO_BODY_STATUSES) or encoding != "identity":
            return  # no body to read, or one we cannot read without decoding it
        if media_type in STREAM_MEDIA_TYPES:
            self._stream(media_type)
        elif media_type == "application/json":
            self._document = []
            self._document_bytes = 0

    def _stream(self, media_type: str) -> None:
        self._headers = [(n, v) for n, v in self._headers if n.lower() != "content-length"]
        stream = StreamRestorer(self._restorer, media_type, self._max_record_bytes)
        self._feed, self._finish = stream.feed, stream.finish

    def _send_headers(self) -> Callable[[bytes], object]:
        if self._write is None:
            self._write = self._start_response(self._status, self._headers, self._exc_info)
        return self._write

    def _app_write(self, data: bytes) -> None:
        """The ``write()`` callable PEP 3333 gives apps: same rewriting, sent at once."""
        output = self._relay(data)
        if output:
            self._send_headers()(output)

    def _relay(self, data: bytes) -> bytes:
        """Return what can go to the client now that ``data`` came from the app."""
        if self._document is None:
            return self._feed(data)
        self._document.append(data)
        self._document_bytes += len(data)
        if self._document_bytes <= self._max_record_bytes:
            return b""
        held, self._document = b"".join(self._document), None
        return held  # too large to be one record: relayed as it is, and the rest too

    def _end(self) -> bytes:
        """Return what is left to send once the app's body has ended."""
        if self._document is None:
            return self._finish()
        document = self._restorer.restore(b"".join(self._document))
        self._document = None
        self._headers = [(n, v) for n, v in self._headers if n.lower() != "content-length"]
        self._headers.append(("Content-Length", str(len(document))))
        return document

    def __iter__(self) -> Iterator[bytes]:
        relay = self._relay
        for data in self._app_iter:
            output = relay(data)
            if output:
                self._send_headers()
                yield output
        output = self._end()
        self._send_headers()
        if output:
            yield output

    def close(self) -> None:
        """Close the app's iterable, so an upstream stream stops when the client leaves."""
        close = getattr(self._app_iter, "close", None)
        if close is not None:
            close()


def _unchanged(data: bytes) -> bytes:
    return data


def _nothing() -> bytes:
    return b""
