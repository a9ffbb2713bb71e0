"""``DefaultModel``: the WSGI middleware that gives an Ollama API aliases and a default.

A thin shell over the pure rules: look the endpoint up, read and decide the request,
hand it to the wrapped app, and pass the response through the framing and the record
rewriting. All per-request state lives in an :class:`_Exchange` made in ``__call__``;
the middleware itself is immutable after ``__init__``, so server threads share it, but for
the count of request-body bytes its requests hold (a :class:`~ollama_default.wsgi.BufferBudget`,
kept under a lock).
"""

from __future__ import annotations

import dataclasses
import functools
import time
import warnings
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING

from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.wsgi import ClosingIterator, get_input_stream

from .core.aliases import AliasTable, AliasValue
from .core.checks import at_least, positive_bytes
from .core.codings import check_content_encoding
from .core.endpoints import Body, Endpoint, find_endpoint
from .core.errors import ConfigError, RequestError
from .core.framing import MAX_RECORD_BYTES
from .core.gojson import SLICE_BYTES
from .core.listings import LISTS, Listing, ListingRewriter
from .core.multipart import decide_multipart, decide_query
from .core.naming import Naming, RefusedName, is_model_not_found
from .core.params import LoadTimeConflictWarning
from .core.request_body import Decision, decide_json, decide_json_steps, decide_name
from .core.response_body import NameRestorer
from .core.rewriting import DocumentEdit, Passthrough, ResponsePlan, plan_response
from .wsgi import (
    ALIAS_KEY,
    ALLOWED_ALIASES_KEY,
    ERROR_KEY,
    FALLBACK_KEY,
    MODEL_KEY,
    REFUSED_KEY,
    TARGET_HEADER,
    BufferBudget,
    HeldBody,
    Reservation,
    content_length,
    respond_error,
    short_body,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    ExcInfo = tuple[type[BaseException], BaseException, TracebackType]

#: The largest request body read: above the most the hosted APIs take (Anthropic's
#: Messages API 32 MB, OpenAI's 50 MB of images per request), so a client written for
#: either is never refused; a chat with a dozen phone photos (3-5 MB each, a third more
#: in base64) fits. See docs/proxy.rst, "Limits".
MAX_BODY_BYTES = 64 * 1024 * 1024
#: The request-body bytes one process holds at once: four bodies at the limit, or
#: thousands of ordinary chats.
MAX_BUFFERED_BYTES = 4 * MAX_BODY_BYTES
#: A chunked body is read, and reserved, this much at a time.
READ_STEP_BYTES = 1024 * 1024


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
    ...     mapping={"llmodel": "aya-expanse:8b-q8_0", "embed": "nomic-embed-text"},
    ...     default="llmodel",
    ... )

    :param app: the WSGI app that speaks Ollama's API.
    :param alias: one alias (with ``target``); it is also the default.
    :param target: the real model ``alias`` stands for.
    :param mapping: several aliases, alias -> real model (instead of alias and target), or
        an :class:`~ollama_default.AliasTable` already built (its default included). An
        alias with parameters is an :class:`~ollama_default.Alias` (or a dict of its keys)
        in place of the real model. Aliases that share a target but load it differently
        (``num_ctx``, ``keep_alive``...) are warned about
        (:class:`~ollama_default.core.params.LoadTimeConflictWarning`).
    :param default: the alias used when a request names no model.
    :param max_body_bytes: larger request bodies get 413 before they are read.
    :param max_buffered_bytes: the request-body bytes held at once, by all requests this
        middleware serves together; a body that would pass it gets 503 with
        ``Retry-After`` before it is read. At least ``max_body_bytes``.
    :param max_record_bytes: a response line or event longer than this is relayed as is,
        and so is a listing (``/api/tags``, ...) longer than this, without the aliases.
    :param hide_real_models: clients may name aliases only: a request naming any other model
        is refused with 404, worded as Ollama words a missing model, and never reaches
        ``app``; the ``X-Ollama-Default-Target`` header is not sent; the listings hold no
        other model.
    :param default_names: names that mean "the default alias" on the endpoints that take a
        default (``"default"``, ``"unknown"``), compared as Ollama compares model names.
    :param fallback_to_default: a request to an inference endpoint naming a model that ``app``
        answers is not found (404, Ollama's ``model ... not found``) is sent again, once,
        with the default in its place; responses show the default alias. With
        ``hide_real_models``, such names go to the default at once.
    :raises ConfigError: when the aliases do not make a consistent table, a limit is not
        a positive number of bytes, or the default names or the fallback do not fit the
        aliases (:meth:`~ollama_default.core.naming.Naming.build`).
    """

    def __init__(
        self,
        app: WSGIApplication,
        alias: str | None = None,
        target: str | None = None,
        *,
        mapping: Mapping[str, AliasValue] | AliasTable | None = None,
        default: str | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_buffered_bytes: int = MAX_BUFFERED_BYTES,
        max_record_bytes: int = MAX_RECORD_BYTES,
        hide_real_models: bool = False,
        default_names: Iterable[str] = (),
        fallback_to_default: bool = False,
    ) -> None:
        self.app = app
        if isinstance(mapping, AliasTable):
            if alias is not None or target is not None or default is not None:
                raise ConfigError("an AliasTable holds its aliases and default: give it alone")
            self.aliases = mapping
        else:
            self.aliases = AliasTable(_mapping(alias, target, mapping), default)
        for conflict in self.aliases.load_time_conflicts():
            warnings.warn(str(conflict), LoadTimeConflictWarning, stacklevel=2)
        self.max_body_bytes = positive_bytes("max_body_bytes", max_body_bytes)
        positive_bytes("max_buffered_bytes", max_buffered_bytes)
        at_least("max_buffered_bytes", max_buffered_bytes, "max_body_bytes", max_body_bytes)
        self.max_record_bytes = positive_bytes("max_record_bytes", max_record_bytes)
        self.naming = Naming.build(
            self.aliases,
            default_names=default_names,
            hide_real_models=hide_real_models,
            fallback_to_default=fallback_to_default,
        )
        self.hide_real_models = self.naming.hide_real_models
        # A request tried again with the default reads its names this way: every name that
        # is not an alias goes to the default.
        self._falling_back = dataclasses.replace(
            self.naming, hide_real_models=True, fallback_to_default=True
        )
        self.listings = ListingRewriter(self.aliases, hide_real_models=self.hide_real_models)
        # Per set of aliases an API key is limited to: few, and the same ones again.
        self._scoped_listings = functools.lru_cache(maxsize=256)(self._build_scoped_listings)
        # The one piece of state requests share: the bytes their bodies hold.
        self.buffered = BufferBudget(max_buffered_bytes)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        endpoint = find_endpoint(environ.get("PATH_INFO", ""))
        method = environ.get("REQUEST_METHOD", "GET")
        if endpoint is None or method not in endpoint.methods:
            return self.app(environ, start_response)
        allowed: frozenset[str] | None = environ.get(ALLOWED_ALIASES_KEY)
        if not endpoint.names_a_model:
            if endpoint.listing in LISTS and method == "GET":
                # The aliases join the upstream's list (HEAD has no body: it passes); a
                # key limited to some aliases sees those only.
                listings = self.listings if allowed is None else self._scoped_listings(allowed)
                edit = functools.partial(listings.rewrite_list, endpoint.listing)
                return _Exchange(
                    self.app, environ, start_response, None, self.max_record_bytes, listing=edit
                )
            return self.app(environ, start_response)
        reservation = Reservation(self.buffered)
        body: bytes | None = None
        try:
            decision = self._decide(environ, endpoint, reservation, self.naming)
            if allowed is not None:
                _check_allowed(environ, decision, allowed)
            may_fall_back = (
                not decision.renames
                and decision.model is not None
                and self.naming.may_fall_back(endpoint)
            )
            if may_fall_back:
                body = self._keep_body(environ, reservation)
        except RequestError as error:
            reservation.release()
            if isinstance(error, RefusedName):
                _record_refused(environ, error)
            return respond_error(environ, start_response, error, endpoint.dialect)
        except BaseException:
            reservation.release()
            raise
        if decision.model is not None:
            environ[MODEL_KEY] = decision.model
        app_iter: Iterable[bytes]
        try:
            if decision.renames:
                app_iter = self._exchange(environ, start_response, endpoint, decision)
            elif may_fall_back:
                app_iter = self._attempt(environ, start_response, endpoint, reservation, body)
            else:
                app_iter = self.app(environ, start_response)
        except BaseException:
            reservation.release()
            raise
        if reservation.amount:
            # The app has not read the whole body yet: it is held until the response ends.
            return ClosingIterator(app_iter, reservation.release)
        return app_iter

    def _build_scoped_listings(self, allowed: frozenset[str]) -> ListingRewriter:
        """The listings a key limited to the aliases ``allowed`` sees: those only."""
        routes = {alias: route for alias, route in self.aliases.items() if alias in allowed}
        return ListingRewriter(routes, hide_real_models=True)

    def _exchange(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        endpoint: Endpoint,
        decision: Decision,
    ) -> _Exchange:
        """Call the app for a request that used an alias (or got the default)."""
        environ[ALIAS_KEY] = decision.renames[0].client_name
        restorer = NameRestorer(decision.renames, endpoint.response_fields)
        targets = None
        if not self.hide_real_models:
            targets = ", ".join(rename.route.target for rename in decision.renames)
        return _Exchange(
            self.app,
            environ,
            start_response,
            restorer,
            self.max_record_bytes,
            targets,
            listing=self._details(endpoint.listing, decision),
        )

    def _attempt(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        endpoint: Endpoint,
        reservation: Reservation,
        body: bytes | None,
    ) -> _FallbackAttempt:
        """Call the app for a request naming a real model, ready to send it again with the
        default if the upstream says it does not have the model.

        :param body: the request's body, kept (:meth:`_keep_body`); the query and the raw
            request line are kept here, for a retry to decide anew.
        """
        kept = {key: environ[key] for key in _RETRY_KEYS if key in environ}

        def retry() -> Iterable[bytes]:
            asked = environ[MODEL_KEY]
            for key in _RETRY_KEYS:
                environ.pop(key, None)
            environ.update(kept)
            decision = self._decide(
                environ, endpoint, reservation, self._falling_back, held_body=body
            )
            if not decision.renames:  # pragma: no cover - every name falls back
                return self.app(environ, start_response)
            environ[MODEL_KEY] = decision.renames[0].route.target
            environ[FALLBACK_KEY] = asked
            return self._exchange(environ, start_response, endpoint, decision)

        return _FallbackAttempt(self.app, environ, start_response, retry)

    def _keep_body(self, environ: WSGIEnvironment, reservation: Reservation) -> bytes | None:
        """Return the request's body, read if the decision did not need it, and keep it until
        the response ends (reserved as long), so that it can be sent twice.

        :raises RequestError: as :meth:`_read_body`.
        """
        held = environ.get("wsgi.input")
        if isinstance(held, HeldBody):
            body: bytes | None = held.body
        else:  # a model in the query decided: the form has not been read
            body = self._read_body(environ, reservation)
            if body is None:
                return None
            _set_body(environ, body, reservation)
        environ["wsgi.input"] = HeldBody(body or b"", _keep)
        return body

    def _details(self, listing: Listing | None, decision: Decision) -> DocumentEdit | None:
        """The edit that makes a reply about the model a request named (``/api/show``,
        ``/v1/models/{model}``) describe the alias it used, as an installed model."""
        if listing is None or listing in LISTS:
            return None
        rename = decision.renames[0]
        return functools.partial(
            self.listings.rewrite_details,
            listing,
            client_name=rename.client_name,
            route=rename.route,
        )

    def _decide(
        self,
        environ: WSGIEnvironment,
        endpoint: Endpoint,
        reservation: Reservation,
        naming: Naming,
        *,
        held_body: bytes | None = None,
    ) -> Decision:
        """Decide the request, and leave in ``environ`` what is sent on.

        :param held_body: the body already read, for a request decided again.
        """
        if endpoint.path_model:
            return _decide_path(environ, endpoint, naming)
        if endpoint.body is Body.MULTIPART:
            # Go's FormValue reads the query before the form: a model there decides,
            # and the body is not read at all.
            decided = decide_query(environ.get("QUERY_STRING", ""), endpoint, naming)
            if decided is not None:
                if decided.query is not None:
                    _set_query(environ, decided.query)
                if held_body is not None:
                    _set_body(environ, held_body, reservation)
                return decided.decision
        if held_body is None:
            # Refused before a byte is read: a body Ollama would decode first.
            check_content_encoding(endpoint, environ.get("HTTP_CONTENT_ENCODING"))
        body = held_body if held_body is not None else self._read_body(environ, reservation)
        if body is None:
            return Decision(None, ())
        # Any other Content-Encoding: Ollama reads the raw bytes, and so do we.
        if endpoint.body is Body.MULTIPART:
            content_type = environ.get("CONTENT_TYPE", "")
            decision = decide_multipart(body, content_type, endpoint, naming)
        elif len(body) <= SLICE_BYTES:
            decision = decide_json(body, endpoint, naming)
        else:
            decision = _yielding(decide_json_steps(body, endpoint, naming))
        if decision.body is not None:
            # The body sent on replaces the one read: hold what it holds.
            reservation.grow(len(decision.body) - len(body), forced=True)
            body = decision.body
        _set_body(environ, body, reservation)
        return decision

    def _read_body(self, environ: WSGIEnvironment, reservation: Reservation) -> bytes | None:
        """Read the whole request body, reserving it as it is read, or return None when
        there is none to read.

        :raises RequestError: 413 over the limit, 503 over the buffer budget, 400 for a
            body cut short.
        """
        length = content_length(environ)
        if length is None and not environ.get("wsgi.input_terminated"):
            return None  # no body, or one this server cannot frame: leave it to the app
        if length is not None:
            if length > self.max_body_bytes:
                raise self._too_large()  # refused before reading a byte of it
            reservation.grow(length)  # likewise when there is no room for it
            # PEP 3333: an app may read up to CONTENT_LENGTH from the input as it is.
            body: bytes = environ["wsgi.input"].read(length)
            if len(body) < length:
                raise short_body()
            return body
        pieces: list[bytes] = []
        size = 0
        try:
            # One byte over the limit: a bounded stream (chunked input) stops at its
            # limit without a word, so only an extra byte tells "at" from "over".
            stream = get_input_stream(environ, max_content_length=self.max_body_bytes + 1)
            while size <= self.max_body_bytes:
                step = min(READ_STEP_BYTES, self.max_body_bytes + 1 - size)
                # Reserved before it is read (but the byte past the limit, which only
                # ever comes to be refused).
                reserved = min(step, self.max_body_bytes - size)
                reservation.grow(reserved)
                piece = stream.read(step)
                reservation.grow(len(piece) - reserved, forced=True)
                if not piece:
                    break
                pieces.append(piece)
                size += len(piece)
        except RequestEntityTooLarge:
            raise self._too_large() from None
        except ClientDisconnected:
            raise short_body() from None
        if size > self.max_body_bytes:
            raise self._too_large()
        return b"".join(pieces)

    def _too_large(self) -> RequestError:
        return RequestError(
            413, f"request body is larger than the limit of {self.max_body_bytes} bytes"
        )


def _mapping(
    alias: str | None, target: str | None, mapping: Mapping[str, AliasValue] | None
) -> Mapping[str, AliasValue]:
    if mapping is not None:
        if alias is not None or target is not None:
            raise ConfigError("give either alias and target, or mapping, not both")
        return mapping
    if alias is None or target is None:
        raise ConfigError("give alias and target, or a mapping of aliases")
    return {alias: target}


def _yielding(steps: Generator[int, None, Decision]) -> Decision:
    """Run the steps of a decision, letting other requests run between them: under gevent's
    monkey-patching, ``time.sleep(0)`` yields to other greenlets (streams on the same worker
    go on); under threads it releases the GIL."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            decision: Decision = done.value
            return decision
        time.sleep(0)


def _set_body(environ: WSGIEnvironment, body: bytes, reservation: Reservation) -> None:
    environ["wsgi.input"] = HeldBody(body, reservation.release)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ["wsgi.input_terminated"] = True
    environ.pop("HTTP_TRANSFER_ENCODING", None)


def _set_query(environ: WSGIEnvironment, query: str) -> None:
    environ["QUERY_STRING"] = query
    # The server's raw request target keeps its path, which the forwarder sends as the
    # client encoded it, with the new query.
    for key in ("RAW_URI", "REQUEST_URI"):
        raw = environ.get(key)
        if raw:
            environ[key] = raw.split("?", 1)[0] + "?" + query


def _decide_path(environ: WSGIEnvironment, endpoint: Endpoint, naming: Naming) -> Decision:
    path: str = environ["PATH_INFO"]
    prefix = endpoint.path.split("{", 1)[0]
    # PEP 3333: PATH_INFO is bytes decoded as latin-1; Ollama reads the path as UTF-8.
    name = path[len(prefix) :].encode("latin-1").decode("utf-8", "replace")
    rename = decide_name(name, naming, endpoint)
    if rename is None:
        return Decision(None, (), name, (name,) if name else ())
    environ["PATH_INFO"] = prefix + rename.route.target.encode().decode("latin-1")
    # The server's raw request line no longer describes the request.
    environ.pop("RAW_URI", None)
    environ.pop("REQUEST_URI", None)
    return Decision(None, (rename,), rename.route.target)


class _Exchange:
    """One request's response: captures the app's head, plans the rewriting, relays.

    What is rewritten, and how, is the pure :func:`~ollama_default.rewriting.plan_response`'s
    choice; this class only moves bytes and calls ``start_response`` when the first of them
    (or the end) is ready. Every response to a request for an alias names the real model in
    its ``X-Ollama-Default-Target`` header (``targets``; None while real models are hidden);
    the body keeps the alias. A listing's reply has no ``restorer`` and no ``targets``: only
    its ``listing`` edit.
    """

    def __init__(
        self,
        app: WSGIApplication,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        restorer: NameRestorer | None,
        max_record_bytes: int,
        targets: str | None = None,
        *,
        listing: DocumentEdit | None = None,
    ) -> None:
        self._targets = targets
        self._listing = listing
        self._environ = environ
        self._start_response = start_response
        self._restorer = restorer
        self._max_record_bytes = max_record_bytes
        self._method = environ.get("REQUEST_METHOD", "GET")
        self._status = ""
        self._plan: ResponsePlan = Passthrough([])
        self._exc_info: ExcInfo | None = None
        self._write: Callable[[bytes], object] | None = None
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
        self._status, self._exc_info = status, exc_info
        if self._targets is not None:
            headers = [*headers, (TARGET_HEADER, self._targets)]
        self._plan = plan_response(
            self._method,
            status,
            headers,
            self._restorer,
            self._max_record_bytes,
            listing=self._listing,
        )
        return self._app_write

    def _send_headers(self) -> Callable[[bytes], object]:
        if self._write is None:
            self._write = self._start_response(self._status, self._plan.headers, self._exc_info)
        return self._write

    def _app_write(self, data: bytes) -> None:
        """The ``write()`` callable PEP 3333 gives apps: same rewriting, sent at once."""
        output = self._plan.feed(data)
        if output:
            self._send_headers()(output)

    def __iter__(self) -> Iterator[bytes]:
        try:
            for data in self._app_iter:
                output = self._plan.feed(data)
                if output:
                    self._send_headers()
                    yield output
            output = self._plan.finish()
        except RequestError as error:
            # The app failed mid-body (an upstream cut a reply short). With the head still
            # held, a document being rewritten, the client gets the error, not a part of
            # the reply passed off as all of it; once the head has gone, the server closes
            # the connection unfinished.
            if self._write is not None:
                raise
            detail = self._environ.get(ERROR_KEY)
            yield from respond_error(self._environ, self._start_response, error, detail=detail)
            return
        self._send_headers()
        if output:
            yield output

    def close(self) -> None:
        """Close the app's iterable, so an upstream stream stops when the client leaves."""
        close = getattr(self._app_iter, "close", None)
        if close is not None:
            close()


#: The largest answer held to tell whether the upstream lacks the model a request named:
#: Ollama's 404 is one short line of JSON.
MAX_NOT_FOUND_BYTES = 64 * 1024
# What a retry restores before it decides again: the request as the client sent it.
_RETRY_KEYS = ("QUERY_STRING", "RAW_URI", "REQUEST_URI")


def _keep() -> None:
    """The release of a body kept for a retry: its reservation ends with the response."""


def _check_allowed(environ: WSGIEnvironment, decision: Decision, allowed: frozenset[str]) -> None:
    """Refuse a request whose API key may use the aliases ``allowed`` only, when it names
    any other model (or names none, and the default is not one of them).

    :raises RequestError: 403, leaving ``auth`` as the reason for the log.
    """
    refused = list(decision.unaliased)
    refused += [r.client_name for r in decision.renames if r.route.alias not in allowed]
    if refused:
        environ[REFUSED_KEY] = "auth"
        shown = ", ".join(sorted(allowed)) or "none"
        raise RequestError(403, f"this API key may not use the model {refused[0]!r}: only {shown}")


def _record_refused(environ: WSGIEnvironment, error: RefusedName) -> None:
    """Leave the names a refused request held for the log: both, when it named an alias."""
    if error.route is not None:
        environ[ALIAS_KEY] = error.name
        environ[MODEL_KEY] = error.route.target
    else:
        environ[MODEL_KEY] = error.name


class _FallbackAttempt:
    """The answer to a request naming a model that is not an alias, where the default may
    stand in: a 404 saying the model is not found (Ollama's ``model ... not found``), held
    before a byte of it went out, is replaced by the answer to ``retry``, the request sent
    again with the default. Any other answer goes out as it comes.

    :param retry: sends the request again, and returns the app's iterable for it.
    """

    def __init__(
        self,
        app: WSGIApplication,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        retry: Callable[[], Iterable[bytes]],
    ) -> None:
        self._start_response = start_response
        self._retry = retry
        self._head: tuple[str, list[tuple[str, str]], ExcInfo | None] | None = None
        self._held: list[bytes] | None = None
        self._app_iter: Iterable[bytes] = app(environ, self._capture_start)

    def _capture_start(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: ExcInfo | tuple[None, None, None] | None = None,
    ) -> Callable[[bytes], object]:
        if exc_info is not None and exc_info[0] is None:
            exc_info = None
        if exc_info is None and status.startswith("404") and _is_json(headers):
            self._head, self._held = (status, headers, exc_info), []
            return self._held.append
        self._head = self._held = None
        return self._start_response(status, headers, exc_info)

    def __iter__(self) -> Iterator[bytes]:
        held_bytes = 0
        for data in self._app_iter:
            if self._held is None:
                yield data
                continue
            self._held.append(data)
            held_bytes += len(data)
            if held_bytes > MAX_NOT_FOUND_BYTES:
                yield from self._release()
        if self._held is None:
            return
        if not is_model_not_found(b"".join(self._held)):
            yield from self._release()
            return
        self.close()
        self._held = None
        self._app_iter = self._retry()
        yield from self._app_iter

    def _release(self) -> Iterator[bytes]:
        """Send the held head, and the bytes held; from now on the answer goes as it comes."""
        if self._head is not None:
            status, headers, exc_info = self._head
            self._start_response(status, headers, exc_info)
        held, self._held = b"".join(self._held or ()), None
        if held:
            yield held

    def close(self) -> None:
        """Close the app's iterable (the retry's, once there is one)."""
        close = getattr(self._app_iter, "close", None)
        if close is not None:
            close()


def _is_json(headers: list[tuple[str, str]]) -> bool:
    for name, value in headers:
        if name.lower() == "content-type":
            return value.split(";", 1)[0].strip().lower() == "application/json"
    return False
