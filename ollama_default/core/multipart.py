"""Transcription requests: decide the model where Ollama reads it, the query or the form.

Ollama takes the model of ``/v1/audio/transcriptions`` with Go's ``FormValue("model")``
(``middleware/openai.go:1277-1341`` at commit fb30760), which reads the query string
before the ``multipart/form-data`` body (:mod:`~ollama_default.core.goform` says how Go
reads both). So the model is decided:

- from the query, when it has a ``model`` pair: an alias there is replaced in the query
  (and the form left alone, since Ollama never reads its ``model``);
- else from the form's first ``model`` value, a part named ``model`` that is not a file;
  a part with ``filename=""`` is a value to Go, so it counts;
- else (no model anywhere, or a blank one) the default, in the query's place if the
  query named a blank model, else as a new form value Go reads first.

A query Go cannot parse (a ``;`` or a bad ``%`` escape) makes Ollama answer 400 whatever
the model: such a request goes on untouched, for Ollama to say so. A body Go's
``ParseMultipartForm`` cannot read is refused here with 400, as Ollama refuses it; a body
that does not claim to be a form (another media type, no boundary) goes on untouched.

Pure: bytes and text in, bytes and text out; no I/O, no WSGI.
"""

from __future__ import annotations

from typing import NamedTuple

from .aliases import AliasTable
from .endpoints import Endpoint
from .errors import RequestError
from .goform import (
    Form,
    FormError,
    parse_media_type,
    query_escape,
    query_values,
    quoted_printable,
    read_form,
)
from .naming import Naming
from .request_body import UNCHANGED, Decision, Rename, decide_name, default_rename


class QueryDecision(NamedTuple):
    """A decision made on the query string, and the query to send on (None: unchanged)."""

    decision: Decision
    query: str | None


def decide_query(
    query: str, endpoint: Endpoint, aliases: AliasTable | Naming
) -> QueryDecision | None:
    """Decide from the query string (a WSGI ``QUERY_STRING``), when Ollama reads the model
    there; None when the query names no model, and the form decides.
    """
    raw = query.encode("latin-1")  # PEP 3333: the bytes as sent, one character each
    if b"model" not in raw and b"%" not in raw:
        return None  # the common request: no model pair can be in it
    try:
        pairs = query_values(raw)
    except FormError:
        return QueryDecision(UNCHANGED, None)  # Ollama refuses this query: it says why
    found = next((pair for pair in pairs if pair[0] == b"model"), None)
    if found is None:
        return None
    _, value, start, end = found
    name = value.decode("utf-8", "replace")
    rename = _rename(name, endpoint, aliases)
    if rename is None:
        return QueryDecision(Decision(None, (), name or None, (name,) if name else ()), None)
    pair = "model=" + query_escape(rename.route.target)
    replaced = query[:start] + pair + query[end:]
    return QueryDecision(Decision(None, (rename,), rename.route.target), replaced)


def decide_multipart(
    body: bytes, content_type: str, endpoint: Endpoint, aliases: AliasTable | Naming
) -> Decision:
    """Decide what to send on for a ``multipart/form-data`` body, from its first ``model``
    value (see the module's docstring).

    :param content_type: the request's ``Content-Type`` (a WSGI ``CONTENT_TYPE``).
    :raises RequestError: 400 for a body Go's ``ParseMultipartForm`` cannot read.
    """
    parsed = parse_media_type(content_type.encode("latin-1"))
    if parsed is None or parsed[0] != "multipart/form-data" or "boundary" not in parsed[1]:
        return UNCHANGED  # not a form to Go: Ollama will say what is wrong
    boundary = parsed[1]["boundary"]
    try:
        form = read_form(body, boundary)
        found = _first_model_value(body, form)
    except FormError as error:
        raise RequestError(400, f"invalid multipart body: {error}") from None
    value, span = found if found is not None else (b"", None)
    name = value.decode("utf-8", "replace")
    rename = _rename(name, endpoint, aliases)
    if rename is None:
        return Decision(None, (), name or None, (name,) if name else ())
    part = _value_part(form.newline, rename.route.target)
    if span is not None:
        # The part Go reads the model from, headers and all, becomes a plain value.
        start, end = span
        body = body[:start] + part + body[end:]
    else:
        delimiter = b"--" + boundary + form.newline
        body = body[: form.closing] + delimiter + part + form.newline + body[form.closing :]
    return Decision(body, (rename,), rename.route.target)


def _first_model_value(body: bytes, form: Form) -> tuple[bytes, tuple[int, int]] | None:
    """The first value ``FormValue`` reads from the body, and the span of its part."""
    for part in form.parts:
        if part.name == b"model" and not part.is_file:
            value = body[part.content : part.end]
            if part.quoted_printable:
                value = quoted_printable(value)
            return value, (part.start, part.end)
    return None


def _value_part(newline: bytes, value: str) -> bytes:
    """A form part holding ``value`` under ``model``, without its delimiter line."""
    disposition = b'Content-Disposition: form-data; name="model"'
    return disposition + newline + newline + value.encode()


def _rename(name: str, endpoint: Endpoint, aliases: AliasTable | Naming) -> Rename | None:
    if not name.strip():  # modelref.ParseRef: blank is "model is required"
        return default_rename(aliases) if endpoint.takes_default else None
    return decide_name(name, aliases, endpoint)
