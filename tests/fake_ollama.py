"""A fake Ollama server for the test-suite, faithful to Ollama's wire format.

:class:`FakeOllama` is a WSGI app that answers every route Ollama registers
(``server/routes.go`` ``GenerateRoutes``) the way Ollama v0.33 does on the wire: the same
JSON field order, Go's compact HTML-escaping encoder, the same Content-Types, status codes and
error texts, NDJSON and SSE streams written one record per chunk. The source for all of it is
the project's ``ollama-api.md`` (written from Ollama's source); comments cite its sections.

:func:`serve` runs any WSGI app on a real loopback socket: HTTP/1.1, keep-alive, chunked
responses flushed per yielded chunk, chunked request bodies, and the app iterator closed when
the client goes away mid-stream.

Usage::

    fake = FakeOllama(tokens=5, token_delay_s=0.01)
    with serve(fake) as base_url:
        requests.post(f"{base_url}/api/generate", json={"model": "llama3.2", "prompt": "hi"})
    assert fake.requests[0].json["model"] == "llama3.2"

Generated text names the model it was asked for ("I am llama3.2"), so tests can tell generated
text from model fields. A prompt (or last message) of exactly ``FAIL_MIDSTREAM`` streams one
record and then fails the stream the way Ollama does after the 200 has gone out.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http
import io
import ipaddress
import json
import math
import random
import re
import select
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote_to_bytes, urlsplit

from werkzeug.formparser import parse_form_data

from ollama_default.core.names import ModelName, parse_name

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "DEFAULT_MODELS",
    "FAIL_MIDSTREAM",
    "MIDSTREAM_ERROR",
    "VERSION",
    "FakeOllama",
    "RecordedRequest",
    "go_json",
    "serve",
]

DEFAULT_MODELS = ("aya-expanse:8b-q8_0", "nomic-embed-text:latest", "llama3.2:latest")
VERSION = "0.33.0"
#: A prompt or last message with exactly this text fails its stream after the first record.
FAIL_MIDSTREAM = "FAIL_MIDSTREAM"
MIDSTREAM_ERROR = "an error was encountered while running the model: unexpected EOF"

JSON_CHARSET = "application/json; charset=utf-8"  # gin c.JSON (§3)
JSON_PLAIN = "application/json"  # OpenAI/Anthropic writers, waitForStream (§3)
NDJSON = "application/x-ndjson"
EVENT_STREAM = "text/event-stream"
TEXT_PLAIN_CHARSET = "text/plain; charset=utf-8"  # gin c.String
TEXT_PLAIN = "text/plain"  # gin serveError (404/405), transcription response_format=text

# net/http buffers this much before it picks Content-Length or chunked (§3): a body written
# in one Write larger than this goes out chunked.
GO_CHUNKING_THRESHOLD_BYTES = 2048
GO_MAX_INT64 = 2**63 - 1
DEFAULT_KEEP_ALIVE_S = 300.0  # OLLAMA_KEEP_ALIVE default 5m (§6)
#: How long a held stream waits for its hold to be released, at most (a test's bound).
HOLD_TIMEOUT_S = 30.0
#: How often a held stream looks whether its client has gone.
HOLD_CHECK_S = 0.02
#: The environ key under which the fake's own server passes the client's socket.
SOCKET_KEY = "fake_ollama.socket"
PROMPT_EVAL_COUNT = 26
MAX_TRANSCRIPTION_BYTES = 25 << 20

_METRICS_DURATIONS = {
    "total_duration": 10706818083,
    "load_duration": 6338219291,
    "prompt_eval_duration": 130079000,
    "eval_duration": 4232710000,
}


# --------------------------------------------------------------------------------------
# Go's encoding/json, both ways


def go_json(document: object) -> bytes:
    """Encode like Go's ``json.Marshal``: compact, HTML-escaped, integral floats bare.

    Go escapes ``<``, ``>``, ``&``, U+2028 and U+2029 (``encoding/json`` ``HTMLEscape``),
    writes non-ASCII as UTF-8, replaces invalid UTF-8 with ``\\ufffd`` and prints the float
    ``1.0`` as ``1``. Key order is the dict's insertion order (a Go struct's field order).
    """
    text = json.dumps(_go_numbers(document), ensure_ascii=False, separators=(",", ":"))
    text = (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
    return _SURROGATE.sub(r"\\ufffd", text).encode("utf-8")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _go_numbers(document: object) -> object:
    if isinstance(document, float) and document.is_integer() and abs(document) < 1e21:
        return int(document)
    if isinstance(document, dict):
        return {key: _go_numbers(value) for key, value in document.items()}
    if isinstance(document, list):
        return [_go_numbers(value) for value in document]
    return document


def _go_sorted(document: object) -> object:
    """Sort keys recursively, as Go marshals a ``map[string]any`` (Responses SSE events)."""
    if isinstance(document, dict):
        return {key: _go_sorted(document[key]) for key in sorted(document)}
    if isinstance(document, list):
        return [_go_sorted(value) for value in document]
    return document


def _go_quote(text: str) -> str:
    """Go's ``%q`` / ``strconv.Quote`` for the strings that appear in error messages."""
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_GO_ESCAPES["\v"] = "\\v"


def _go_quote_char(char: str) -> str:
    """Go's ``encoding/json`` ``quoteChar``: how its syntax errors show a character."""
    if char == "'":
        return "'\\''"
    if char == '"':
        return "'\"'"
    return "'" + _go_quote(char)[1:-1] + "'"


class GoJSONError(ValueError):
    """A body Go's ``json.Decoder`` rejects; the message is Go's ``err.Error()``."""


class _EmptyBody(GoJSONError):
    """``io.EOF``: the body held no JSON value at all."""

    def __init__(self) -> None:
        super().__init__("EOF")


class _GoScanner:
    """Find the end of the first JSON value, failing with ``encoding/json``'s messages.

    ``json.Decoder.Decode`` reads one value and ignores what follows (§4), and reports
    syntax errors as ``invalid character 'x' <context>`` (``encoding/json/scanner.go``).
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def first_value_end(self) -> int:
        self._skip_space()
        if self.pos >= len(self.text):
            raise _EmptyBody()
        self._value()
        return self.pos

    def _peek(self) -> str:
        if self.pos >= len(self.text):
            raise GoJSONError("unexpected EOF")
        return self.text[self.pos]

    def _fail(self, char: str, context: str) -> GoJSONError:
        return GoJSONError(f"invalid character {_go_quote_char(char)} {context}")

    def _skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
            self.pos += 1

    def _value(self) -> None:
        self._skip_space()
        char = self._peek()
        if char == "{":
            self._object()
        elif char == "[":
            self._array()
        elif char == '"':
            self._string()
        elif char == "-" or char.isdigit():
            self._number()
        elif char in "tfn":
            self._literal({"t": "true", "f": "false", "n": "null"}[char])
        else:
            raise self._fail(char, "looking for beginning of value")

    def _object(self) -> None:
        self.pos += 1
        self._skip_space()
        if self._peek() == "}":
            self.pos += 1
            return
        while True:
            self._skip_space()
            char = self._peek()
            if char != '"':
                raise self._fail(char, "looking for beginning of object key string")
            self._string()
            self._skip_space()
            char = self._peek()
            if char != ":":
                raise self._fail(char, "after object key")
            self.pos += 1
            self._value()
            self._skip_space()
            char = self._peek()
            self.pos += 1
            if char == "}":
                return
            if char != ",":
                raise self._fail(char, "after object key:value pair")

    def _array(self) -> None:
        self.pos += 1
        self._skip_space()
        if self._peek() == "]":
            self.pos += 1
            return
        while True:
            self._value()
            self._skip_space()
            char = self._peek()
            self.pos += 1
            if char == "]":
                return
            if char != ",":
                raise self._fail(char, "after array element")

    def _string(self) -> None:
        self.pos += 1
        while True:
            char = self._peek()
            self.pos += 1
            if char == '"':
                return
            if char == "\\":
                char = self._peek()
                self.pos += 1
                if char == "u":
                    for _ in range(4):
                        char = self._peek()
                        if char not in "0123456789abcdefABCDEF":
                            raise self._fail(char, "in \\u hexadecimal character escape")
                        self.pos += 1
                elif char not in 'bfnrt"\\/':
                    raise self._fail(char, "in string escape code")
            elif ord(char) < 0x20:
                raise self._fail(char, "in string literal")

    def _digits(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isdigit():
            self.pos += 1

    def _number(self) -> None:
        if self._peek() == "-":
            self.pos += 1
            if not self._peek().isdigit():
                raise self._fail(self._peek(), "in numeric literal")
        if self._peek() == "0":
            self.pos += 1
        else:
            self._digits()
        if self.pos < len(self.text) and self.text[self.pos] == ".":
            self.pos += 1
            if not self._peek().isdigit():
                raise self._fail(self._peek(), "after decimal point in numeric literal")
            self._digits()
        if self.pos < len(self.text) and self.text[self.pos] in "eE":
            self.pos += 1
            if self._peek() in "+-":
                self.pos += 1
            if not self._peek().isdigit():
                raise self._fail(self._peek(), "in exponent of numeric literal")
            self._digits()

    def _literal(self, word: str) -> None:
        for expected in word:
            char = self._peek()
            if char != expected:
                raise self._fail(char, f"in literal {word} (expecting {_go_quote_char(expected)})")
            self.pos += 1


def decode_go_json(body: bytes) -> Any:
    """Decode the first JSON value of ``body`` as ``json.Decoder.Decode`` would.

    :raises GoJSONError: with Go's message (``_EmptyBody`` for ``io.EOF``).
    """
    text = body.decode("utf-8", errors="replace")
    end = _GoScanner(text).first_value_end()
    return json.loads(text[:end])


def _json_kind(value: object) -> str:
    """The JSON kind Go names in ``UnmarshalTypeError``."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class _Struct:
    """A decoded JSON object seen through a Go struct: typed, case-insensitive fields.

    Go matches object keys to struct fields case-insensitively and the last matching key
    wins (``encoding/json`` ``Unmarshal``); a JSON ``null`` leaves the zero value.
    """

    def __init__(self, document: object, go_type: str) -> None:
        self.go_type = go_type
        if document is None:
            document = {}
        if not isinstance(document, dict):
            raise GoJSONError(
                f"json: cannot unmarshal {_json_kind(document)} into Go value of type {go_type}"
            )
        self.document: dict[str, Any] = document

    def raw(self, name: str) -> Any:
        value = None
        for key, item in self.document.items():
            if key == name or key.lower() == name.lower():
                value = item
        return value

    def _type_error(self, name: str, value: object, go_type: str) -> GoJSONError:
        struct_name = self.go_type.rsplit(".", 1)[-1]
        kind = _json_kind(value)
        if kind == "number" and go_type == "int":
            kind = f"number {json.dumps(value)}"
        return GoJSONError(
            f"json: cannot unmarshal {kind} into Go struct field {struct_name}.{name}"
            f" of type {go_type}"
        )

    def string(self, name: str) -> str:
        value = self.raw(name)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self._type_error(name, value, "string")
        return value

    def boolean(self, name: str) -> bool | None:
        value = self.raw(name)
        if value is None or isinstance(value, bool):
            return value
        raise self._type_error(name, value, "bool")

    def integer(self, name: str) -> int:
        value = self.raw(name)
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._type_error(name, value, "int")
        if isinstance(value, float) and not value.is_integer():
            raise self._type_error(name, value, "int")
        return int(value)

    def objects(self, name: str, element_type: str) -> list[dict[str, Any]]:
        value = self.raw(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._type_error(name, value, f"[]{element_type}")
        for item in value:
            if item is not None and not isinstance(item, dict):
                raise self._type_error(name, item, element_type)
        return [item if item is not None else {} for item in value]

    def keep_alive(self) -> float | None:
        """``api.Duration``: seconds, ``math.inf`` for forever, None when absent (§6)."""
        value = self.raw("keep_alive")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            go_types = {
                "bool": "bool",
                "array": "[]interface {}",
                "object": "map[string]interface {}",
            }
            raise GoJSONError(f"Unsupported type: '{go_types[_json_kind(value)]}'")
        seconds = parse_go_duration(value) if isinstance(value, str) else float(value)
        return math.inf if seconds < 0 else seconds


_DURATION_UNITS_S = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # Go accepts the micro sign and the Greek mu
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_NUMBER = re.compile(r"(\d*)(\.\d*)?")
_DURATION_UNIT = re.compile(r"[^\d.]+")


def parse_go_duration(text: str) -> float:
    """Go's ``time.ParseDuration``, in seconds, with Go's error messages."""
    rest, negative = text, False
    if rest[:1] in ("+", "-"):
        negative, rest = rest[0] == "-", rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise GoJSONError(f"time: invalid duration {_go_quote(text)}")
    total = 0.0
    while rest:
        number = _DURATION_NUMBER.match(rest)
        assert number is not None  # the pattern matches the empty string
        if number.group(0) in ("", "."):
            raise GoJSONError(f"time: invalid duration {_go_quote(text)}")
        rest = rest[number.end() :]
        unit = _DURATION_UNIT.match(rest)
        if unit is None:
            raise GoJSONError(f"time: missing unit in duration {_go_quote(text)}")
        rest = rest[unit.end() :]
        if unit.group(0) not in _DURATION_UNITS_S:
            raise GoJSONError(
                f"time: unknown unit {_go_quote(unit.group(0))} in duration {_go_quote(text)}"
            )
        total += float(number.group(0)) * _DURATION_UNITS_S[unit.group(0)]
    return -total if negative else total


# --------------------------------------------------------------------------------------
# Time, ids, text


def _go_time(epoch_ns: int, *, utc: bool = True) -> str:
    """Go's ``time.Time`` JSON form (RFC3339Nano: trailing zeros of the fraction dropped)."""
    seconds, nanos = divmod(epoch_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    if not utc:
        moment = moment.astimezone()
    fraction = f".{nanos:09d}".rstrip("0") if nanos else ""
    offset = moment.utcoffset()
    if not offset:
        zone = "Z"
    else:
        minutes = int(offset.total_seconds()) // 60
        sign = "+" if minutes >= 0 else "-"
        zone = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + zone


def _now() -> str:
    return _go_time(time.time_ns())


def _token_texts(model: str, count: int) -> list[str]:
    """The generated text: ``I am <model>`` in ``count`` pieces, padded with `` more``."""
    if count <= 0:
        return []
    pieces = ["I", " am", f" {model}"]
    if count < len(pieces):
        return [*pieces[: count - 1], "".join(pieces[count - 1 :])]
    return pieces + [" more"] * (count - len(pieces))


def _embedding(text: str, dimensions: int = 4) -> list[float]:
    """A small deterministic vector; values are short decimals Go prints identically."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    values = []
    for index in range(dimensions):
        raw = int.from_bytes(digest[2 * index : 2 * index + 2], "big")
        values.append((raw % 1999 - 999) / 10000 or 0.0001)
    return values


def _hex_id(prefix: str) -> str:
    return f"{prefix}_{random.getrandbits(96):024x}"


def _last_text(content: object) -> str:
    """The text of a message ``content``: a string, or the last text part of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        for part in reversed(content):
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                return str(part["text"])
    return ""


# --------------------------------------------------------------------------------------
# Models


@dataclass
class _Model:
    """One model as the fake's disk holds it."""

    name: ModelName
    modified_ns: int

    @property
    def display(self) -> str:
        return self.name.display_shortest()

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.display.lower().encode()).hexdigest()

    @property
    def is_embedding(self) -> bool:
        return "embed" in self.name.model.lower()

    @property
    def capabilities(self) -> list[str]:
        if self.is_embedding:
            return ["embedding"]
        capabilities = ["completion", "tools"]
        if any(hint in self.name.model.lower() for hint in ("qwen3", "deepseek-r1", "gpt-oss")):
            capabilities.append("thinking")
        return capabilities

    @property
    def family(self) -> str:
        lowered = self.name.model.lower()
        if self.is_embedding:
            return "nomic-bert"
        if lowered.startswith("aya"):
            return "command-r"
        return "llama"

    @property
    def parameter_size(self) -> str:
        if self.is_embedding:
            return "137M"
        match = re.search(r"(\d+(?:\.\d+)?)b", self.name.tag.lower())
        if match:
            return f"{float(match.group(1)):.1f}B"
        match = re.search(r"(\d+(?:\.\d+)?)$", self.name.model)
        return f"{float(match.group(1)):.1f}B" if match else "7.2B"

    @property
    def quantization_level(self) -> str:
        if self.is_embedding:
            return "F16"
        match = re.search(r"(q\d\w*|f16|fp16|bf16)", self.name.tag.lower())
        return match.group(1).upper() if match else "Q4_K_M"

    @property
    def context_length(self) -> int:
        return 2048 if self.is_embedding else 131072

    @property
    def size(self) -> int:
        return 200_000_000 + int(self.digest[:8], 16) % 8_000_000_000

    def details(self, *, context_length: bool) -> dict[str, Any]:
        details: dict[str, Any] = {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }
        if context_length:
            details["context_length"] = self.context_length
        return details


def _name_key(name: ModelName) -> tuple[str, str, str, str]:
    return (name.host.lower(), name.namespace.lower(), name.model.lower(), name.tag.lower())


# --------------------------------------------------------------------------------------
# Requests, replies


@dataclass
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # names lower-case
    body: bytes

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None when it is empty or not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class _Reply(NamedTuple):
    status: int
    headers: list[tuple[str, str]]
    body: Iterable[bytes]


class _Native(NamedTuple):
    """What a native handler wrote: one ``c.JSON`` object, or ``c.Stream`` NDJSON records."""

    status: int
    records: Iterable[dict[str, Any]]
    stream: bool = False

    @property
    def error(self) -> str:
        return str(next(iter(self.records))["error"])


def _native_error(status: int, message: str) -> _Native:
    return _Native(status, [{"error": message}])


class _HTTPError(Exception):
    """An error reply built before any handler ran (binding, validation)."""

    def __init__(self, reply: _Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def _body_reply(
    status: int, body: bytes, content_type: str | None, extra: Sequence[tuple[str, str]] = ()
) -> _Reply:
    """A body written in one Write: Content-Length when Go would know it (§3)."""
    headers = [("Content-Type", content_type)] if content_type else []
    headers.extend(extra)
    if len(body) <= GO_CHUNKING_THRESHOLD_BYTES:
        headers.append(("Content-Length", str(len(body))))
    return _Reply(status, headers, [body] if body else [])


def _json_reply(status: int, document: object, content_type: str = JSON_CHARSET) -> _Reply:
    """gin ``c.JSON``: ``json.Marshal``, no trailing newline."""
    return _body_reply(status, go_json(document), content_type)


def _encoder_reply(status: int, document: object) -> _Reply:
    """``json.NewEncoder(w).Encode``: what the OpenAI/Anthropic writers send (newline)."""
    return _body_reply(status, go_json(document) + b"\n", JSON_PLAIN)


def _empty_reply(status: int, extra: Sequence[tuple[str, str]] = ()) -> _Reply:
    return _Reply(status, [*extra, ("Content-Length", "0")], [])


def _openai_error(status: int, message: str) -> dict[str, Any]:
    """``openai.NewError`` (§4)."""
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _anthropic_error(status: int, message: str) -> dict[str, Any]:
    """``anthropic.NewError`` (§4)."""
    kinds = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
        503: "overloaded_error",
        529: "overloaded_error",
    }
    return {
        "type": "error",
        "error": {"type": kinds.get(status, "api_error"), "message": message},
        "request_id": _hex_id("req"),
    }


class _ClientGone(ConnectionResetError):
    """The client of a held generation hung up: an OSError, so the server drops the
    connection quietly."""


def _has_hung_up(client: socket.socket) -> bool:
    """Whether the client has closed its end (readable, and nothing to read)."""
    readable, _, _ = select.select([client], [], [], 0)
    if not readable:
        return False
    try:
        return client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class _InFlight:
    """A reply's body that says when the request is no longer in flight: once its last
    bytes are made, before they are written (as Ollama's handler has returned before Go's
    server ends the reply), or when it is closed before that."""

    def __init__(self, body: Iterable[bytes], landed: Callable[[], None]) -> None:
        self._body = body
        self._landed: Callable[[], None] | None = landed

    def __iter__(self) -> Iterator[bytes]:
        body = self._body
        if isinstance(body, list):  # a whole reply: landed before its last piece goes
            for index, data in enumerate(body):
                if index == len(body) - 1:
                    self._land()
                yield data
        else:
            yield from body  # a stream: its end comes before the last chunk's terminator
        self._land()

    def _land(self) -> None:
        landed, self._landed = self._landed, None
        if landed is not None:
            landed()

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._land()


class _StreamBody:
    """A streamed body that tells the fake when it was closed before its end."""

    def __init__(self, records: Iterator[bytes], on_early_close: Callable[[], None]) -> None:
        self._records = records
        self._on_early_close = on_early_close
        self._finished = False
        self._closed = False

    def __iter__(self) -> _StreamBody:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._records)
        except StopIteration:
            self._finished = True
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        close = getattr(self._records, "close", None)
        if close is not None:
            close()
        if not self._finished:
            self._on_early_close()


# --------------------------------------------------------------------------------------
# The fake


Handler = Callable[["FakeOllama", "_Call"], _Reply]


@dataclass
class _Call:
    """One request as handlers see it."""

    environ: WSGIEnvironment
    method: str
    path: str
    body: bytes
    param: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    def bind(self, go_type: str, *, missing_body: str = "missing request body") -> _Struct:
        """``c.ShouldBindJSON`` into ``go_type``; raises with Go's message."""
        try:
            return _Struct(decode_go_json(self.body), go_type)
        except _EmptyBody as error:
            raise GoJSONError(missing_body) from error


class FakeOllama:
    """A WSGI app that answers like Ollama (server/routes.go), for tests.

    :param models: the local models, in any spelling Ollama accepts; listings show them
        normalised (``llama3.2:latest``), newest first in the order given.
    :param token_delay_s: pause between stream records (the server's pace, not a sync aid).
    :param tokens: how many content records a generation stream has.
    :param check_host: answer 403 with an empty body to a ``Host`` Ollama would refuse on
        a loopback bind (§7.1).
    :param load_delay_s: how long loading a model that is not loaded takes; requests for it
        meanwhile wait for that one load, as Ollama's scheduler makes them (§6).
    :param max_loaded: how many models fit at once (0: any number); loading one more
        evicts the one loaded longest ago, as Ollama evicts when memory is short.

    :attr:`events` records each load and unload as ``(kind, model, time.monotonic())``.

    ``in_flight`` counts the requests being answered (from their arrival to the close of
    their response), ``max_in_flight`` the most at once. Setting ``hold`` to an Event holds
    every generation (stream or not) after its first token until it is set: a slow model,
    under the test's control. A held generation whose client hangs up ends, as Ollama's
    does when Go cancels the request's context.

    >>> fake = FakeOllama()
    >>> with serve(fake) as base_url:  # doctest: +SKIP
    ...     requests.get(f"{base_url}/api/tags").json()["models"][0]["name"]
    'aya-expanse:8b-q8_0'
    """

    def __init__(
        self,
        models: Sequence[str] = DEFAULT_MODELS,
        *,
        token_delay_s: float = 0.0,
        tokens: int = 3,
        check_host: bool = False,
        load_delay_s: float = 0.0,
        max_loaded: int = 0,
    ) -> None:
        self.load_delay_s = load_delay_s
        self.max_loaded = max_loaded
        self.events: list[tuple[str, str, float]] = []
        self._loading: dict[str, threading.Event] = {}
        self.token_delay_s = token_delay_s
        self.tokens = tokens
        self.check_host = check_host
        self.requests: list[RecordedRequest] = []
        self.loaded: set[str] = set()
        self.disconnects = 0
        self.disconnected = threading.Event()
        self.blobs: set[str] = set()
        self.hold: threading.Event | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self._flight = threading.Condition()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._expires_at_ns: dict[str, int] = {}
        self._models: dict[tuple[str, str, str, str], _Model] = {}
        base_ns = 1746405464_706015396  # 2025-05-04T17:37:44.706015396-07:00 (§2.5)
        for index, spelling in enumerate(models):
            parsed = parse_name(spelling)
            if parsed is None:
                raise ValueError(f"not an Ollama model name: {spelling!r}")
            self._models[_name_key(parsed)] = _Model(parsed, base_ns - index * 3_600_000_000_000)

    # -- WSGI --------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        with self._flight:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._flight.notify_all()
        try:
            reply = self._answer(environ, start_response)
        except BaseException:
            self._landed()
            raise
        return _InFlight(reply, self._landed)

    def wait_for_in_flight(self, predicate: Callable[[int], bool], timeout_s: float) -> bool:
        """Wait until ``predicate(in_flight)`` holds, up to ``timeout_s``; whether it does."""
        with self._flight:
            return self._flight.wait_for(lambda: predicate(self.in_flight), timeout_s)

    def reset_max_in_flight(self) -> None:
        """Start counting the most requests in flight at once from now."""
        with self._flight:
            self.max_in_flight = self.in_flight

    def _landed(self) -> None:
        with self._flight:
            self.in_flight -= 1
            self._flight.notify_all()

    def _answer(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        self._local.socket = environ.get(SOCKET_KEY)
        body = _read_body(environ)
        headers = _request_headers(environ)
        method = environ["REQUEST_METHOD"].upper()
        path = environ.get("PATH_INFO", "") or "/"
        with self._lock:
            self.requests.append(
                RecordedRequest(method, path, environ.get("QUERY_STRING", ""), headers, body)
            )
        reply = self._dispatch(_Call(environ, method, path, body, headers=headers))
        start_response(f"{reply.status} {_reason(reply.status)}", reply.headers)
        if method == "HEAD":
            # net/http keeps the headers of the GET reply and drops the body.
            close = getattr(reply.body, "close", None)
            if close is not None:
                close()
            return []
        return reply.body

    def _dispatch(self, call: _Call) -> _Reply:
        handlers, param = _route(call.path)
        handler = handlers.get(call.method) if handlers else None
        if handler is None and call.path.endswith("/") and call.path != "/":
            # gin RedirectTrailingSlash runs before any middleware (gin.go handleHTTPRequest).
            trimmed, _ = _route(call.path[:-1])
            if trimmed and call.method in trimmed:
                return _redirect(call.method, call.path[:-1])
        refused = self._check_host(call)
        if refused is not None:
            return refused
        if handler is None:
            if handlers:
                allow = ", ".join(sorted(handlers))
                return _body_reply(405, b"405 method not allowed", TEXT_PLAIN, [("Allow", allow)])
            return _body_reply(404, b"404 page not found", TEXT_PLAIN)
        call.param = param
        try:
            return handler(self, call)
        except _HTTPError as error:
            return error.reply

    def _check_host(self, call: _Call) -> _Reply | None:
        """``allowedHostsMiddleware`` (``server/routes.go``, §7.1): 403, empty body."""
        if not self.check_host:
            return None
        host = call.headers.get("host", "")
        if host.startswith("["):
            host = host[1 : host.find("]")] if "]" in host else host
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        host = host.lower()
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None:
            if address.is_loopback or address.is_private or address.is_unspecified:
                return None
            return _empty_reply(403)
        allowed = host in ("", "localhost", socket.gethostname().lower()) or host.endswith(
            (".localhost", ".local", ".internal")
        )
        if not allowed:
            return _empty_reply(403)
        if call.method == "OPTIONS":
            return _empty_reply(204)
        return None

    # -- model bookkeeping -------------------------------------------------------------

    def _lookup(self, name: str) -> _Model | None:
        parsed = parse_name(name)
        if parsed is None:
            return None
        with self._lock:
            return self._models.get(_name_key(parsed))

    def _add_model(self, name: ModelName) -> _Model:
        with self._lock:
            model = self._models.get(_name_key(name))
            if model is None:
                model = _Model(name, time.time_ns())
                self._models[_name_key(name)] = model
            return model

    def _mark_loaded(self, model: _Model, keep_alive: float | None) -> None:
        seconds = DEFAULT_KEEP_ALIVE_S if keep_alive is None else keep_alive
        self._load(model)
        now_ns = time.time_ns()
        expires = now_ns + (GO_MAX_INT64 if math.isinf(seconds) else int(seconds * 1e9))
        with self._lock:
            self.loaded.add(model.display)
            self._expires_at_ns[model.display] = expires  # Go: now + MaxInt64 is ~2318

    def _load(self, model: _Model) -> None:
        """Load ``model`` if it is not loaded: one load, which the others wait for."""
        with self._lock:
            if model.display in self.loaded:
                return
            other = self._loading.get(model.display)
            if other is None:
                loading = self._loading[model.display] = threading.Event()
                self.events.append(("load", model.display, time.monotonic()))
        if other is not None:  # another request loads it: wait for that load
            other.wait(timeout=60)
            return
        try:
            if self.load_delay_s > 0:
                time.sleep(self.load_delay_s)  # the load's duration, not a sync aid
            with self._lock:
                if self.max_loaded and len(self.loaded) >= self.max_loaded:
                    evicted = sorted(self.loaded, key=lambda name: self._expires_at_ns.get(name, 0))
                    for name in evicted[: len(self.loaded) - self.max_loaded + 1]:
                        self.loaded.discard(name)
                        self._expires_at_ns.pop(name, None)
                        self.events.append(("evict", name, time.monotonic()))
                self.loaded.add(model.display)
                self._expires_at_ns.setdefault(model.display, 0)
        finally:
            with self._lock:
                self._loading.pop(model.display, None)
            loading.set()

    def _unload(self, model: _Model) -> None:
        with self._lock:
            self.events.append(("unload", model.display, time.monotonic()))
            self.loaded.discard(model.display)
            self._expires_at_ns.pop(model.display, None)

    def _early_close(self) -> None:
        with self._lock:
            self.disconnects += 1
        self.disconnected.set()

    def _stream(
        self, content_type: str, chunks: Iterator[bytes], extra: Sequence[tuple[str, str]] = ()
    ) -> _Reply:
        headers = [("Content-Type", content_type), *extra]
        return _Reply(200, headers, _StreamBody(chunks, self._early_close))

    def _pace(self, index: int) -> None:
        if index and self.token_delay_s > 0:
            time.sleep(self.token_delay_s)
        hold = self.hold
        if index and hold is not None:
            client = getattr(self._local, "socket", None)
            deadline = time.monotonic() + HOLD_TIMEOUT_S
            while not hold.wait(HOLD_CHECK_S):
                if client is not None and _has_hung_up(client):
                    raise _ClientGone
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"a held generation was not released in {HOLD_TIMEOUT_S} s"
                    )

    # -- native inference cores (also behind the /v1 layers) ---------------------------

    def _inference_model(
        self, model: str, *, missing: _Native, verb: str, think: object = None
    ) -> _Model | _Native:
        """The checks generate and chat share: name, existence, capabilities (§4)."""
        if not model.strip():
            return missing
        found = self._lookup(model)
        if found is None:
            return _native_error(404, f"model '{model}' not found")
        if "completion" not in found.capabilities:
            return _native_error(400, f"{_go_quote(model)} does not support {verb}")
        if think not in (None, False) and "thinking" not in found.capabilities:
            return _native_error(400, f"{_go_quote(model)} does not support thinking")
        return found

    def _generate_core(
        self,
        *,
        model: str,
        prompt: str,
        stream: bool,
        keep_alive: float | None,
        has_images: bool = False,
        raw: bool = False,
        think: object = None,
    ) -> _Native:
        found = self._inference_model(
            model,
            missing=_native_error(404, f"model '{model}' not found"),
            verb="generate",
            think=think,
        )
        if isinstance(found, _Native):
            return found
        if not prompt and not has_images:
            reason = self._load_or_unload(found, keep_alive)
            return _Native(
                200,
                [
                    {
                        "model": model,
                        "created_at": _now(),
                        "response": "",
                        "done": True,
                        "done_reason": reason,
                    }
                ],
            )
        self._mark_loaded(found, keep_alive)
        texts = _token_texts(model, self.tokens)
        final: dict[str, Any] = {"done_reason": "stop"}
        if not raw:
            final["context"] = [1, 2, 3]

        def records() -> Iterator[dict[str, Any]]:
            for index, text in enumerate(texts):
                self._pace(index)
                yield {"model": model, "created_at": _now(), "response": text, "done": False}
                if prompt == FAIL_MIDSTREAM:
                    yield {"error": MIDSTREAM_ERROR}
                    return
            self._pace(len(texts))
            yield {
                "model": model,
                "created_at": _now(),
                "response": "",
                "done": True,
                **final,
                **self._metrics(len(texts)),
            }
            if keep_alive == 0:
                self._unload(found)

        if stream:
            return _Native(200, records(), stream=True)
        collected = list(records())
        if "error" in collected[-1]:
            return _native_error(500, collected[-1]["error"])
        last = dict(collected[-1])
        last["response"] = "".join(record["response"] for record in collected)
        return _Native(200, [last])

    def _chat_core(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        stream: bool,
        keep_alive: float | None,
        think: object = None,
    ) -> _Native:
        found = self._inference_model(
            model,
            missing=_native_error(400, "model is required"),
            verb="chat",
            think=think,
        )
        if isinstance(found, _Native):
            return found
        if not messages:
            reason = self._load_or_unload(found, keep_alive)
            return _Native(
                200,
                [
                    {
                        "model": model,
                        "created_at": _now(),
                        "message": {"role": "assistant", "content": ""},
                        "done": True,
                        "done_reason": reason,
                    }
                ],
            )
        self._mark_loaded(found, keep_alive)
        texts = _token_texts(model, self.tokens)
        fails = _last_text(messages[-1].get("content")) == FAIL_MIDSTREAM

        def records() -> Iterator[dict[str, Any]]:
            for index, text in enumerate(texts):
                self._pace(index)
                yield {
                    "model": model,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": text},
                    "done": False,
                }
                if fails:
                    yield {"error": MIDSTREAM_ERROR}
                    return
            self._pace(len(texts))
            yield {
                "model": model,
                "created_at": _now(),
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                **self._metrics(len(texts)),
            }
            if keep_alive == 0:
                self._unload(found)

        if stream:
            return _Native(200, records(), stream=True)
        collected = list(records())
        if "error" in collected[-1]:
            return _native_error(500, collected[-1]["error"])
        last = dict(collected[-1])
        content = "".join(record["message"]["content"] for record in collected)
        last["message"] = {"role": "assistant", "content": content}
        return _Native(200, [last])

    def _embed_core(
        self, *, model: str, inputs: list[str], keep_alive: float | None, dimensions: int = 0
    ) -> _Native:
        if not model.strip():
            return _native_error(404, f"model '{model}' not found")
        found = self._lookup(model)
        if found is None:
            return _native_error(404, f"model {_go_quote(model)} not found, try pulling it first")
        self._load_or_unload(found, keep_alive)
        if not inputs:
            return _Native(200, [{"model": model, "embeddings": []}])
        size = dimensions if 0 < dimensions < 4 else 4
        return _Native(
            200,
            [
                {
                    "model": model,
                    "embeddings": [_embedding(text, size) for text in inputs],
                    "total_duration": 14143917,
                    "load_duration": 1019500,
                    "prompt_eval_count": sum(len(text.split()) + 1 for text in inputs),
                }
            ],
        )

    def _load_or_unload(self, model: _Model, keep_alive: float | None) -> str:
        if keep_alive == 0:
            self._unload(model)
            return "unload"
        self._mark_loaded(model, keep_alive)
        return "load"

    @staticmethod
    def _metrics(eval_count: int) -> dict[str, int]:
        return {
            "total_duration": _METRICS_DURATIONS["total_duration"],
            "load_duration": _METRICS_DURATIONS["load_duration"],
            "prompt_eval_count": PROMPT_EVAL_COUNT,
            "prompt_eval_duration": _METRICS_DURATIONS["prompt_eval_duration"],
            "eval_count": eval_count,
            "eval_duration": _METRICS_DURATIONS["eval_duration"],
        }

    def _show_core(self, name: str, user_agent: str) -> _Native:
        if not name.strip():
            return _native_error(400, "model is required")
        parsed = parse_name(name)
        if parsed is None:
            return _native_error(400, "invalid model name")
        found = self._lookup(name)
        if found is None:
            # ShowHandler normalises req.Model before it looks the model up (§2.4).
            return _native_error(404, f"model '{parsed.display_shortest()}' not found")
        model_info: dict[str, Any] = {
            "general.architecture": found.family,
            "general.basename": found.name.model,
            "general.file_type": 15,
            "general.parameter_count": 3212749888,
            "general.quantization_version": 2,
            f"{found.family}.context_length": found.context_length,
            f"{found.family}.embedding_length": 3072,
        }
        if user_agent.startswith("GitHubCopilotChat/"):
            model_info["general.basename"] = name
        return _Native(
            200,
            [
                {
                    "license": "LLAMA 3.2 COMMUNITY LICENSE AGREEMENT",
                    "modelfile": (
                        '# Modelfile generated by "ollama show"\n'
                        "# To build a new Modelfile based on this, replace FROM with:\n"
                        f"# FROM {found.display}\n\n"
                        f"FROM /root/.ollama/models/blobs/sha256-{found.digest}\n"
                        'TEMPLATE """{{ .Prompt }}"""\n'
                        'PARAMETER stop "<|eot_id|>"\n'
                    ),
                    "parameters": 'stop                           "<|eot_id|>"',
                    "template": "{{ .Prompt }}",
                    "details": found.details(context_length=False),
                    "model_info": _go_sorted(model_info),
                    "capabilities": found.capabilities,
                    "modified_at": _go_time(found.modified_ns, utc=False),
                }
            ],
        )

    def _list_core(self) -> list[_Model]:
        with self._lock:
            models = list(self._models.values())
        return sorted(models, key=lambda model: model.modified_ns, reverse=True)

    # -- native endpoints --------------------------------------------------------------

    def _native_reply(self, native: _Native) -> _Reply:
        if native.stream:
            records = iter(native.records)
            return self._stream(NDJSON, (go_json(record) + b"\n" for record in records))
        return _json_reply(native.status, next(iter(native.records)))

    def _handle_root(self, call: _Call) -> _Reply:
        return _body_reply(200, b"Ollama is running", TEXT_PLAIN_CHARSET)

    def _handle_version(self, call: _Call) -> _Reply:
        return _json_reply(200, {"version": VERSION})

    def _handle_tags(self, call: _Call) -> _Reply:
        models = [
            {
                "name": model.display,
                "model": model.display,
                "modified_at": _go_time(model.modified_ns, utc=False),
                "size": model.size,
                "digest": model.digest,
                "details": model.details(context_length=True),
                "capabilities": model.capabilities,
            }
            for model in self._list_core()
        ]
        return _json_reply(200, {"models": models})

    def _handle_ps(self, call: _Call) -> _Reply:
        with self._lock:
            names = list(self.loaded)
            expiries = dict(self._expires_at_ns)
        default_ns = time.time_ns() + int(DEFAULT_KEEP_ALIVE_S * 1e9)
        rows = []
        for name in names:
            model = self._lookup(name)
            if model is None:
                continue
            rows.append((expiries.get(name, default_ns), model))
        rows.sort(key=lambda row: row[0], reverse=True)
        models = [
            {
                "name": model.display,
                "model": model.display,
                "size": model.size,
                "digest": model.digest,
                "details": model.details(context_length=False),
                "expires_at": _go_time(expires_ns, utc=False),
                "size_vram": model.size,
                "context_length": 4096,
            }
            for expires_ns, model in rows
        ]
        return _json_reply(200, {"models": models})

    def _native_bind(self, call: _Call, go_type: str) -> _Struct:
        try:
            return call.bind(go_type)
        except GoJSONError as error:
            raise _HTTPError(_json_reply(400, {"error": str(error)})) from error

    def _native_field(self, read: Callable[[], Any]) -> Any:
        try:
            return read()
        except GoJSONError as error:
            raise _HTTPError(_json_reply(400, {"error": str(error)})) from error

    def _handle_generate(self, call: _Call) -> _Reply:
        request = self._native_bind(call, "api.GenerateRequest")

        def read() -> _Native:
            images = request.raw("images")
            return self._generate_core(
                model=request.string("model"),
                prompt=request.string("prompt"),
                stream=request.boolean("stream") is not False,
                keep_alive=request.keep_alive(),
                has_images=bool(images),
                raw=bool(request.boolean("raw")),
                think=request.raw("think"),
            )

        return self._native_reply(self._native_field(read))

    def _handle_chat(self, call: _Call) -> _Reply:
        request = self._native_bind(call, "api.ChatRequest")

        def read() -> _Native:
            return self._chat_core(
                model=request.string("model"),
                messages=request.objects("messages", "api.Message"),
                stream=request.boolean("stream") is not False,
                keep_alive=request.keep_alive(),
                think=request.raw("think"),
            )

        return self._native_reply(self._native_field(read))

    def _handle_embed(self, call: _Call) -> _Reply:
        request = self._native_bind(call, "api.EmbedRequest")
        model = self._native_field(lambda: request.string("model"))
        keep_alive = self._native_field(request.keep_alive)
        dimensions = self._native_field(lambda: request.integer("dimensions"))
        raw_input = request.raw("input")
        inputs: list[str] = []
        if isinstance(raw_input, str):
            inputs = [raw_input] if raw_input else []
        elif isinstance(raw_input, list) and all(isinstance(item, str) for item in raw_input):
            inputs = list(raw_input)
        elif raw_input is not None:
            return _json_reply(400, {"error": "invalid input type"})
        return self._native_reply(
            self._embed_core(
                model=model, inputs=inputs, keep_alive=keep_alive, dimensions=dimensions
            )
        )

    def _handle_embeddings(self, call: _Call) -> _Reply:
        request = self._native_bind(call, "api.EmbeddingRequest")
        model = self._native_field(lambda: request.string("model"))
        prompt = self._native_field(lambda: request.string("prompt"))
        keep_alive = self._native_field(request.keep_alive)
        if not model.strip():
            return _json_reply(400, {"error": "model is required"})
        found = self._lookup(model)
        if found is None:
            message = f"model {_go_quote(model)} not found, try pulling it first"
            return _json_reply(404, {"error": message})
        self._load_or_unload(found, keep_alive)
        return _json_reply(200, {"embedding": _embedding(prompt) if prompt else []})

    def _handle_show(self, call: _Call) -> _Reply:
        request = self._native_bind(call, "api.ShowRequest")
        name = self._native_field(lambda: request.string("model") or request.string("name"))
        return self._native_reply(self._show_core(name, call.headers.get("user-agent", "")))

    def _progress(self, call: _Call, request: _Struct, lines: list[dict[str, Any]]) -> _Reply:
        """A progress stream (pull, push, create): NDJSON, or the last line (§2.7)."""
        stream = self._native_field(lambda: request.boolean("stream")) is not False
        if not stream:
            last = lines[-1]
            status = 500 if "error" in last else 200
            return _json_reply(status, last, JSON_PLAIN if status == 200 else JSON_CHARSET)

        def chunks() -> Iterator[bytes]:
            for index, line in enumerate(lines):
                self._pace(index)
                yield go_json(line) + b"\n"

        return self._stream(NDJSON, chunks())

    def _handle_pull(self, call: _Call) -> _Reply:
        request = self._native_bind(call, "api.PullRequest")
        name = self._native_field(lambda: request.string("model") or request.string("name"))
        parsed = parse_name(name) if name.strip() else None
        if parsed is None:
            return _json_reply(400, {"error": "invalid model name"})
        model = self._add_model(parsed)
        size = model.size
        lines: list[dict[str, Any]] = [
            {"status": "pulling manifest"},
            {
                "status": f"pulling {model.digest[:12]}",
                "digest": f"sha256:{model.digest}",
                "total": size,
                "completed": size,
            },
            {"status": "verifying sha256 digest"},
            {"status": "writing manifest"},
            {"status": "success"},
        ]
        return self._progress(call, request, lines)

    def _handle_push(self, call: _Call) -> _Reply:
        request = self._native_bind(call, "api.PushRequest")
        name = self._native_field(lambda: request.string("model") or request.string("name"))
        if not name.strip():
            return _json_reply(400, {"error": "model is required"})
        model = self._lookup(name)
        if model is None:
            parsed = parse_name(name)
            where = parsed.fully_qualified().replace(":", "/") if parsed else name
            lines: list[dict[str, Any]] = [
                {"status": "retrieving manifest"},
                {
                    "error": f"open /root/.ollama/models/manifests/{where}: "
                    "no such file or directory"
                },
            ]
        else:
            lines = [
                {"status": "retrieving manifest"},
                {
                    "status": f"pushing {model.digest[:12]}",
                    "digest": f"sha256:{model.digest}",
                    "total": model.size,
                    "completed": model.size,
                },
                {"status": "pushing manifest"},
                {"status": "success"},
            ]
        return self._progress(call, request, lines)

    def _handle_create(self, call: _Call) -> _Reply:
        request = self._native_bind(call, "api.CreateRequest")
        name = self._native_field(lambda: request.string("model") or request.string("name"))
        source = self._native_field(lambda: request.string("from"))
        parsed = parse_name(name) if name.strip() else None
        if parsed is None:
            return _json_reply(400, {"error": "invalid model name"})
        model = self._add_model(parsed)
        base = self._lookup(source) if source else None
        layer = (base or model).digest
        lines = [
            {"status": "gathering model components"},
            {"status": f"using existing layer sha256:{layer}"},
            {"status": "writing manifest"},
            {"status": "success"},
        ]
        return self._progress(call, request, lines)

    def _handle_copy(self, call: _Call) -> _Reply:
        request = self._native_bind(call, "api.CopyRequest")
        source = self._native_field(lambda: request.string("source"))
        destination = self._native_field(lambda: request.string("destination"))
        if parse_name(source) is None or not source.strip():
            return _json_reply(400, {"error": f"source {_go_quote(source)} is invalid"})
        target = parse_name(destination) if destination.strip() else None
        if target is None:
            return _json_reply(400, {"error": f"destination {_go_quote(destination)} is invalid"})
        if self._lookup(source) is None:
            return _json_reply(404, {"error": f"model {_go_quote(source)} not found"})
        self._add_model(target)
        return _empty_reply(200)

    def _handle_delete(self, call: _Call) -> _Reply:
        request = self._native_bind(call, "api.DeleteRequest")
        name = self._native_field(lambda: request.string("model") or request.string("name"))
        if not name.strip():
            return _json_reply(400, {"error": "model is required"})
        model = self._lookup(name)
        if model is None:
            return _json_reply(404, {"error": f"model '{name}' not found"})
        self._unload(model)
        with self._lock:
            self._models.pop(_name_key(model.name), None)
        return _empty_reply(200)

    def _handle_blob(self, call: _Call) -> _Reply:
        digest = call.param
        if not re.fullmatch(r"sha256[:-][0-9a-fA-F]{64}", digest):
            return _json_reply(400, {"error": "invalid digest format"})
        known = digest.replace("-", ":", 1).lower() in self.blobs
        if call.method == "HEAD":
            if not known:
                return _json_reply(404, {"error": f"blob {_go_quote(digest)} not found"})
            return _empty_reply(200)
        if known:
            return _empty_reply(200)
        actual = "sha256:" + hashlib.sha256(call.body).hexdigest()
        if actual != digest:
            message = f"digest mismatch, expected {_go_quote(digest)}, got {_go_quote(actual)}"
            return _json_reply(400, {"error": message})
        with self._lock:
            self.blobs.add(actual)
        return _empty_reply(201)

    # -- OpenAI compatibility (middleware/openai.go) -----------------------------------

    def _openai_bind(self, call: _Call, go_type: str) -> _Struct:
        """The middleware's ``ShouldBindJSON``: gin JSON error, ``EOF`` for no body."""
        try:
            return call.bind(go_type, missing_body="EOF")
        except GoJSONError as error:
            raise _HTTPError(_json_reply(400, _openai_error(400, str(error)))) from error

    def _openai_field(self, read: Callable[[], Any]) -> Any:
        try:
            return read()
        except GoJSONError as error:
            raise _HTTPError(_json_reply(400, _openai_error(400, str(error)))) from error

    @staticmethod
    def _openai_writer_error(native: _Native) -> _Reply:
        """``BaseWriter.writeError``: a native error in the OpenAI shape (§4)."""
        return _encoder_reply(native.status, _openai_error(native.status, native.error))

    def _handle_openai_chat(self, call: _Call) -> _Reply:
        request = self._openai_bind(call, "openai.ChatCompletionRequest")
        model = self._openai_field(lambda: request.string("model"))
        messages = self._openai_field(lambda: request.objects("messages", "openai.Message"))
        stream = bool(self._openai_field(lambda: request.boolean("stream")))
        options = request.raw("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        if not messages:
            error = _openai_error(400, "[] is too short - 'messages'")
            return _json_reply(400, error)
        native = self._chat_core(model=model, messages=messages, stream=stream, keep_alive=None)
        if native.status != 200:
            return self._openai_writer_error(native)
        completion_id = f"chatcmpl-{random.randrange(999)}"
        created = int(time.time())

        def chunk(model_name: str, choices: list[Any], usage: Any = None) -> bytes:
            document: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model_name,
                "system_fingerprint": "fp_ollama",
                "choices": choices,
            }
            if usage is not None:
                document["usage"] = usage
            return b"data: " + go_json(document) + b"\n\n"

        if not stream:
            record = next(iter(native.records))
            reason = record.get("done_reason") or None
            return _encoder_reply(
                200,
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": record["model"],
                    "system_fingerprint": "fp_ollama",
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": record["message"]["content"],
                            },
                            "finish_reason": reason,
                        }
                    ],
                    "usage": _usage(record),
                },
            )

        def events() -> Iterator[bytes]:
            first = True
            for record in native.records:
                if "error" in record:
                    # ChatWriter decodes the error line into an empty ChatResponse (§2.9).
                    yield chunk("", [{"index": 0, "delta": {}, "finish_reason": None}])
                    return
                content = record["message"]["content"]
                if not record["done"] or content:
                    # Only the first chunk carries the role (§2.9).
                    delta = {"role": "assistant", "content": content} if first else {}
                    delta["content"] = content
                    first = False
                    yield chunk(
                        record["model"], [{"index": 0, "delta": delta, "finish_reason": None}]
                    )
                if record["done"]:
                    reason = record.get("done_reason") or None
                    yield chunk(
                        record["model"], [{"index": 0, "delta": {}, "finish_reason": reason}]
                    )
                    if include_usage:
                        yield chunk(record["model"], [], _usage(record))
                    yield b"data: [DONE]\n\n"

        return self._stream(EVENT_STREAM, events())

    def _handle_openai_completions(self, call: _Call) -> _Reply:
        request = self._openai_bind(call, "openai.CompletionRequest")
        model = self._openai_field(lambda: request.string("model"))
        prompt = self._openai_field(lambda: request.string("prompt"))
        stream = bool(self._openai_field(lambda: request.boolean("stream")))
        options = request.raw("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        native = self._generate_core(model=model, prompt=prompt, stream=stream, keep_alive=None)
        if native.status != 200:
            return self._openai_writer_error(native)
        completion_id = f"cmpl-{random.randrange(999)}"
        created = int(time.time())

        def choice(record: dict[str, Any]) -> dict[str, Any]:
            reason = record.get("done_reason") or None
            return {"text": record.get("response", ""), "index": 0, "finish_reason": reason}

        if not stream:
            record = next(iter(native.records))
            return _encoder_reply(
                200,
                {
                    "id": completion_id,
                    "object": "text_completion",
                    "created": created,
                    "model": record["model"],
                    "system_fingerprint": "fp_ollama",
                    "choices": [choice(record)],
                    "usage": _usage(record),
                },
            )

        def chunk(record: dict[str, Any], choices: list[Any], usage: Any) -> bytes:
            document: dict[str, Any] = {
                "id": completion_id,
                "object": "text_completion",
                "created": created,
                "choices": choices,
                "model": record.get("model", ""),
                "system_fingerprint": "fp_ollama",
            }
            if usage is not None:
                document["usage"] = usage
            return b"data: " + go_json(document) + b"\n\n"

        zero_usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}

        def events() -> Iterator[bytes]:
            for record in native.records:
                # An error line decodes to an empty GenerateResponse: model "" (§2.9).
                yield chunk(record, [choice(record)], zero_usage if include_usage else None)
                if record.get("done"):
                    if include_usage:
                        yield chunk(record, [], _usage(record))
                    yield b"data: [DONE]\n\n"
                if "error" in record:
                    return

        return self._stream(EVENT_STREAM, events())

    def _handle_openai_embeddings(self, call: _Call) -> _Reply:
        request = self._openai_bind(call, "openai.EmbedRequest")
        model = self._openai_field(lambda: request.string("model"))
        encoding = self._openai_field(lambda: request.string("encoding_format"))
        dimensions = self._openai_field(lambda: request.integer("dimensions"))
        if encoding and encoding.lower() not in ("float", "base64"):
            message = (
                f"Invalid value for 'encoding_format' = {encoding}. "
                "Supported values: ['float', 'base64']."
            )
            return _json_reply(400, _openai_error(400, message))
        raw_input = request.raw("input")
        if raw_input == "":
            raw_input = [""]
        if raw_input is None or raw_input == []:
            return _json_reply(400, _openai_error(400, "invalid input"))
        inputs = [raw_input] if isinstance(raw_input, str) else raw_input
        if not isinstance(inputs, list) or not all(isinstance(item, str) for item in inputs):
            native = _native_error(400, "invalid input type")
        else:
            native = self._embed_core(
                model=model, inputs=inputs, keep_alive=None, dimensions=dimensions
            )
        if native.status != 200:
            return self._openai_writer_error(native)
        record = next(iter(native.records))
        data = []
        for index, vector in enumerate(record["embeddings"]):
            embedding: object = vector
            if encoding.lower() == "base64":
                packed = struct.pack(f"<{len(vector)}f", *vector)
                embedding = base64.b64encode(packed).decode("ascii")
            data.append({"object": "embedding", "embedding": embedding, "index": index})
        tokens = record.get("prompt_eval_count", 0)
        return _encoder_reply(
            200,
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    def _handle_openai_models(self, call: _Call) -> _Reply:
        data = [
            {
                "id": model.display,
                "object": "model",
                "created": model.modified_ns // 1_000_000_000,
                "owned_by": model.name.namespace,
            }
            for model in self._list_core()
        ]
        # ToListCompletion appends to a nil slice: no models marshal as null (§2.9).
        return _encoder_reply(200, {"object": "list", "data": data or None})

    def _handle_openai_model(self, call: _Call) -> _Reply:
        native = self._show_core(call.param, call.headers.get("user-agent", ""))
        if native.status != 200:
            return self._openai_writer_error(native)
        found = self._lookup(call.param)
        parsed = parse_name(call.param)
        assert found is not None and parsed is not None  # show found it
        return _encoder_reply(
            200,
            {
                "id": call.param,
                "object": "model",
                "created": found.modified_ns // 1_000_000_000,
                "owned_by": parsed.namespace,
            },
        )

    def _handle_openai_responses(self, call: _Call) -> _Reply:
        request = self._openai_bind(call, "openai.ResponsesRequest")
        model = self._openai_field(lambda: request.string("model"))
        stream = bool(self._openai_field(lambda: request.boolean("stream")))
        instructions = self._openai_field(lambda: request.string("instructions"))
        raw_input = request.raw("input")
        messages: list[dict[str, Any]] = []
        if instructions:
            messages.append({"role": "system", "content": instructions})
        if isinstance(raw_input, str):
            messages.append({"role": "user", "content": raw_input})
        elif isinstance(raw_input, list):
            for item in raw_input:
                if isinstance(item, dict) and "content" in item:
                    content = _last_text(item["content"])
                    messages.append({"role": item.get("role", "user"), "content": content})
        native = self._chat_core(model=model, messages=messages, stream=stream, keep_alive=None)
        if native.status != 200:
            return self._openai_writer_error(native)
        response_id = f"resp_{random.randrange(999999)}"
        item_id = f"msg_{random.randrange(999999)}"
        max_output = request.raw("max_output_tokens")
        temperature = request.raw("temperature")
        top_p = request.raw("top_p")

        def response_object(status: str, output: list[Any], usage: Any) -> dict[str, Any]:
            return {
                "id": response_id,
                "object": "response",
                "created_at": int(time.time()),
                "completed_at": int(time.time()) if status == "completed" else None,
                "status": status,
                "incomplete_details": None,
                "model": model,
                "previous_response_id": None,
                "instructions": instructions or None,
                "output": output,
                "error": None,
                "tools": [],
                "tool_choice": "auto",
                "truncation": "disabled",
                "parallel_tool_calls": True,
                "text": {"format": {"type": "text"}},
                "top_p": 1.0 if top_p is None else top_p,
                "presence_penalty": 0,
                "frequency_penalty": 0,
                "top_logprobs": 0,
                "temperature": 1.0 if temperature is None else temperature,
                "reasoning": None,
                "usage": usage,
                "max_output_tokens": max_output,
                "max_tool_calls": None,
                "store": False,
                "background": bool(request.raw("background")),
                "service_tier": "default",
                "metadata": {},
                "safety_identifier": None,
                "prompt_cache_key": None,
            }

        def message_item(text: str, status: str) -> dict[str, Any]:
            return {
                "id": item_id,
                "type": "message",
                "status": status,
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
                ],
            }

        def usage(record: dict[str, Any]) -> dict[str, Any]:
            prompt_tokens = record.get("prompt_eval_count", 0)
            output_tokens = record.get("eval_count", 0)
            return {
                "input_tokens": prompt_tokens,
                "output_tokens": output_tokens,
                "total_tokens": prompt_tokens + output_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            }

        if not stream:
            record = next(iter(native.records))
            text = record["message"]["content"]
            return _encoder_reply(
                200, response_object("completed", [message_item(text, "completed")], usage(record))
            )

        def events() -> Iterator[bytes]:
            sequence = 0

            def event(kind: str, data: dict[str, Any]) -> bytes:
                nonlocal sequence
                data = {**data, "type": kind, "sequence_number": sequence}
                sequence += 1
                # The converter builds map[string]any events: Go sorts map keys (§2.9).
                return f"event: {kind}\ndata: ".encode() + go_json(_go_sorted(data)) + b"\n\n"

            text = ""
            started = False
            first = True
            for record in native.records:
                if "error" in record:
                    return
                if first:
                    first = False
                    yield event(
                        "response.created", {"response": response_object("in_progress", [], None)}
                    )
                    yield event(
                        "response.in_progress",
                        {"response": response_object("in_progress", [], None)},
                    )
                content = record["message"]["content"]
                if content:
                    if not started:
                        started = True
                        item = message_item("", "in_progress")
                        item["content"] = []
                        yield event("response.output_item.added", {"output_index": 0, "item": item})
                        part = {
                            "type": "output_text",
                            "text": "",
                            "annotations": [],
                            "logprobs": [],
                        }
                        yield event(
                            "response.content_part.added",
                            {
                                "item_id": item_id,
                                "output_index": 0,
                                "content_index": 0,
                                "part": part,
                            },
                        )
                    text += content
                    yield event(
                        "response.output_text.delta",
                        {
                            "item_id": item_id,
                            "output_index": 0,
                            "content_index": 0,
                            "delta": content,
                            "logprobs": [],
                        },
                    )
                if record["done"]:
                    output = []
                    if started:
                        where = {"item_id": item_id, "output_index": 0, "content_index": 0}
                        yield event(
                            "response.output_text.done", {**where, "text": text, "logprobs": []}
                        )
                        part = {
                            "type": "output_text",
                            "text": text,
                            "annotations": [],
                            "logprobs": [],
                        }
                        yield event("response.content_part.done", {**where, "part": part})
                        done_item = message_item(text, "completed")
                        yield event(
                            "response.output_item.done", {"output_index": 0, "item": done_item}
                        )
                        output = [done_item]
                    yield event(
                        "response.completed",
                        {"response": response_object("completed", output, usage(record))},
                    )

        return self._stream(EVENT_STREAM, events(), [("Cache-Control", "no-cache")])

    def _handle_openai_transcriptions(self, call: _Call) -> _Reply:
        environ = dict(call.environ)
        environ["wsgi.input"] = io.BytesIO(call.body)
        environ["CONTENT_LENGTH"] = str(len(call.body))
        content_type = environ.get("CONTENT_TYPE", "")
        if not content_type.startswith("multipart/form-data"):
            message = (
                "failed to parse multipart form: request Content-Type isn't multipart/form-data"
            )
            return _json_reply(400, _openai_error(400, message))
        _, form, files = parse_form_data(environ, max_content_length=MAX_TRANSCRIPTION_BYTES)
        try:
            upload = files.get("file")
            audio = upload.read() if upload is not None else b""
        finally:
            for storage in files.values():
                storage.close()
        # Go's FormValue: the query's values come before the form's (net/http ParseForm).
        query = [pair.partition("=") for pair in environ.get("QUERY_STRING", "").split("&")]
        from_query = [unquote_to_bytes(v.replace("+", " ")) for k, _, v in query if k == "model"]
        model = from_query[0].decode() if from_query else form.get("model", "")
        if not model:
            return _json_reply(400, _openai_error(400, "model is required"))
        if upload is None:
            return _json_reply(400, _openai_error(400, "file is required: http: no such file"))
        if not audio:
            return _json_reply(400, _openai_error(400, "audio file is empty"))
        messages = [{"role": "user", "content": form.get("prompt", "") or "transcribe"}]
        native = self._chat_core(model=model, messages=messages, stream=False, keep_alive=None)
        if native.status != 200:
            return self._openai_writer_error(native)
        text = next(iter(native.records))["message"]["content"].strip()
        if form.get("response_format") == "text":
            return _body_reply(200, text.encode("utf-8"), TEXT_PLAIN)
        return _encoder_reply(200, {"text": text})

    # -- Anthropic compatibility (middleware/anthropic.go) -----------------------------

    def _handle_anthropic_messages(self, call: _Call) -> _Reply:
        def refuse(message: str) -> _HTTPError:
            return _HTTPError(_json_reply(400, _anthropic_error(400, message)))

        try:
            request = call.bind("anthropic.MessagesRequest", missing_body="EOF")
            model = request.string("model")
            max_tokens = request.integer("max_tokens")
            messages = request.objects("messages", "anthropic.MessageParam")
            stream = bool(request.boolean("stream"))
        except GoJSONError as error:
            raise refuse(str(error)) from error
        if model == "":
            raise refuse("model is required")
        if max_tokens <= 0:
            raise refuse("max_tokens is required and must be positive")
        if not messages:
            raise refuse("messages is required")
        native = self._chat_core(model=model, messages=messages, stream=stream, keep_alive=None)
        if native.status != 200:
            return _encoder_reply(native.status, _anthropic_error(native.status, native.error))
        message_id = _hex_id("msg")

        def stop_reason(record: dict[str, Any]) -> str | None:
            reason = record.get("done_reason", "")
            mapped = {"stop": "end_turn", "length": "max_tokens"}
            return mapped.get(reason, "stop_sequence" if reason else None)

        if not stream:
            record = next(iter(native.records))
            content = record["message"]["content"]
            document: dict[str, Any] = {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": record["model"],
                "content": [{"type": "text", "text": content}] if content else None,
            }
            reason = stop_reason(record)
            if reason:
                document["stop_reason"] = reason
            document["usage"] = {
                "input_tokens": record.get("prompt_eval_count", 0),
                "output_tokens": record.get("eval_count", 0),
            }
            return _encoder_reply(200, document)

        def events() -> Iterator[bytes]:
            def event(kind: str, data: dict[str, Any]) -> bytes:
                return f"event: {kind}\ndata: ".encode() + go_json(data) + b"\n\n"

            first = True
            text_started = False
            for record in native.records:
                if "error" in record:
                    return
                if first:
                    first = False
                    start = {
                        "id": message_id,
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "usage": {
                            "input_tokens": record.get("prompt_eval_count", 0),
                            "output_tokens": 0,
                        },
                    }
                    yield event("message_start", {"type": "message_start", "message": start})
                content = record["message"]["content"]
                if content:
                    if not text_started:
                        text_started = True
                        block = {"type": "text", "text": ""}
                        yield event(
                            "content_block_start",
                            {"type": "content_block_start", "index": 0, "content_block": block},
                        )
                    delta = {"type": "text_delta", "text": content}
                    yield event(
                        "content_block_delta",
                        {"type": "content_block_delta", "index": 0, "delta": delta},
                    )
                if record["done"]:
                    if text_started:
                        yield event(
                            "content_block_stop", {"type": "content_block_stop", "index": 0}
                        )
                    reason = stop_reason(record)
                    yield event(
                        "message_delta",
                        {
                            "type": "message_delta",
                            "delta": {"stop_reason": reason} if reason else {},
                            "usage": {"output_tokens": record.get("eval_count", 0)},
                        },
                    )
                    yield event("message_stop", {"type": "message_stop"})

        return self._stream(EVENT_STREAM, events(), [("Cache-Control", "no-cache")])


def _usage(record: dict[str, Any]) -> dict[str, int]:
    prompt_tokens = record.get("prompt_eval_count", 0)
    completion_tokens = record.get("eval_count", 0)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


# Routes GenerateRoutes registers (server/routes.go, §1). "HEAD" only where Ollama has it.
_ROUTES: dict[str, dict[str, Handler]] = {
    "/": {"GET": FakeOllama._handle_root, "HEAD": FakeOllama._handle_root},
    "/api/version": {"GET": FakeOllama._handle_version, "HEAD": FakeOllama._handle_version},
    "/api/tags": {"GET": FakeOllama._handle_tags, "HEAD": FakeOllama._handle_tags},
    "/api/ps": {"GET": FakeOllama._handle_ps},
    "/api/generate": {"POST": FakeOllama._handle_generate},
    "/api/chat": {"POST": FakeOllama._handle_chat},
    "/api/embed": {"POST": FakeOllama._handle_embed},
    "/api/embeddings": {"POST": FakeOllama._handle_embeddings},
    "/api/show": {"POST": FakeOllama._handle_show},
    "/api/pull": {"POST": FakeOllama._handle_pull},
    "/api/push": {"POST": FakeOllama._handle_push},
    "/api/create": {"POST": FakeOllama._handle_create},
    "/api/copy": {"POST": FakeOllama._handle_copy},
    "/api/delete": {"DELETE": FakeOllama._handle_delete},
    "/v1/chat/completions": {"POST": FakeOllama._handle_openai_chat},
    "/v1/completions": {"POST": FakeOllama._handle_openai_completions},
    "/v1/embeddings": {"POST": FakeOllama._handle_openai_embeddings},
    "/v1/models": {"GET": FakeOllama._handle_openai_models},
    "/v1/responses": {"POST": FakeOllama._handle_openai_responses},
    "/v1/messages": {"POST": FakeOllama._handle_anthropic_messages},
    "/v1/audio/transcriptions": {"POST": FakeOllama._handle_openai_transcriptions},
}
# gin path parameters: one non-empty segment (no '/').
_PARAM_ROUTES: dict[str, dict[str, Handler]] = {
    "/api/blobs/": {"HEAD": FakeOllama._handle_blob, "POST": FakeOllama._handle_blob},
    "/v1/models/": {"GET": FakeOllama._handle_openai_model},
}


def _route(path: str) -> tuple[dict[str, Handler] | None, str]:
    if path in _ROUTES:
        return _ROUTES[path], ""
    for prefix, handlers in _PARAM_ROUTES.items():
        if path.startswith(prefix):
            param = path[len(prefix) :]
            if param and "/" not in param:
                return handlers, param
    return None, ""


def _redirect(method: str, location: str) -> _Reply:
    """gin ``redirectTrailingSlash`` via ``http.Redirect``: 301 for GET, else 307."""
    status = 301 if method == "GET" else 307
    if method in ("GET", "HEAD"):
        body = f'<a href="{location}">{_reason(status)}</a>.\n\n'.encode()
        return _body_reply(status, body, "text/html; charset=utf-8", [("Location", location)])
    return _empty_reply(status, [("Location", location)])


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _read_body(environ: WSGIEnvironment) -> bytes:
    """The whole request body: Content-Length, or to the end when the server says so."""
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH", "")
    if length:
        wanted = int(length)
        chunks = []
        while wanted > 0:
            chunk = stream.read(wanted)
            if not chunk:
                break
            chunks.append(chunk)
            wanted -= len(chunk)
        return b"".join(chunks)
    if environ.get("wsgi.input_terminated"):
        return bytes(stream.read())
    return b""


def _request_headers(environ: WSGIEnvironment) -> dict[str, str]:
    headers = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = value
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return headers


# --------------------------------------------------------------------------------------
# A real socket server


class _WSGIRequestHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 for a WSGI app: keep-alive, chunked both ways, one flush per chunk."""

    protocol_version = "HTTP/1.1"
    server: _WSGIServer

    def setup(self) -> None:
        super().setup()
        # Go sets TCP_NODELAY; without it Nagle holds a small record back behind the last.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: no request log on stderr."""

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except OSError:
            self.close_connection = True
            return
        if len(self.raw_requestline) > 65536:
            self.send_error(414)
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if not self.parse_request():
            return
        try:
            self._run_wsgi()
        except OSError:
            self.close_connection = True

    def _read_request_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    return None
                if size == 0:
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            wanted = int(length)
        except ValueError:
            return None
        return self.rfile.read(wanted) if wanted > 0 else b""

    def _environ(self, body: bytes) -> dict[str, Any]:
        target = self.path
        if "://" in target.split("?", 1)[0]:
            parts = urlsplit(target)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
        raw_path, _, query = target.partition("?")
        host, port = self.server.server_address[:2]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(raw_path).decode("latin-1"),
            "QUERY_STRING": query,
            "RAW_URI": target,
            "REQUEST_URI": target,
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_PORT": str(self.client_address[1]),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            SOCKET_KEY: self.connection,
        }
        for name, value in self.headers.items():
            key = name.upper().replace("-", "_")
            if "_" in name:
                continue  # as gunicorn and werkzeug: underscores could spoof dashes
            if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                environ[key] = value
                continue
            key = f"HTTP_{key}"
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def _run_wsgi(self) -> None:
        body = self._read_request_body()
        if body is None:
            self.close_connection = True
            self.send_error(400, "malformed request body")
            return
        environ = self._environ(body)
        state: dict[str, Any] = {"status": None, "headers": None, "sent": False, "chunked": False}
        is_head = self.command == "HEAD"

        def send_headers() -> None:
            status, headers = state["status"], state["headers"]
            if status is None:
                raise AssertionError("the app returned without calling start_response")
            code_text, _, reason = str(status).partition(" ")
            code = int(code_text)
            names = {name.lower() for name, _ in headers}
            self.send_response_only(code, reason)
            self.send_header("Date", self.date_time_string())
            for name, value in headers:
                self.send_header(name, value)
            no_body = is_head or code in (204, 304) or 100 <= code < 200
            if "content-length" not in names and not no_body:
                if self.request_version >= "HTTP/1.1":
                    state["chunked"] = True
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.close_connection = True
            if "connection" in names and any(
                name.lower() == "connection" and value.lower() == "close" for name, value in headers
            ):
                self.close_connection = True
            elif self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            state["sent"] = True

        def write(data: bytes) -> None:
            if not state["sent"]:
                send_headers()
            if not data or is_head:
                return
            if state["chunked"]:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                self.wfile.write(data)
            self.wfile.flush()

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            if exc_info:
                try:
                    if state["sent"]:
                        raise exc_info[1].with_traceback(exc_info[2])
                finally:
                    exc_info = None
            elif state["status"] is not None:
                raise AssertionError("start_response called twice")
            state["status"], state["headers"] = status, list(headers)
            return write

        app_iter: Iterable[bytes] | None = None
        try:
            app_iter = self.server.app(environ, start_response)
            for data in app_iter:
                write(data)
            if not state["sent"]:
                send_headers()
            if state["chunked"]:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
        except OSError:
            self.close_connection = True
            raise
        except Exception:
            traceback.print_exc()
            self.close_connection = True
            if not state["sent"]:
                body_500 = b"Internal Server Error"
                self.send_response_only(500)
                self.send_header("Content-Type", TEXT_PLAIN)
                self.send_header("Content-Length", str(len(body_500)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body_500)
        finally:
            close = getattr(app_iter, "close", None)
            if close is not None:
                close()


class _WSGIServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """A threaded server whose ``server_close`` ends every connection and joins its thread."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True
    # Go's net/http listens with the system's backlog; socketserver's 5 has the kernel
    # reset connections when a proxy opens hundreds at once.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], app: WSGIApplication, family: int) -> None:
        self.address_family = family
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _WSGIRequestHandler)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def end_connections(self) -> None:
        """Wake every handler blocked on a keep-alive read or a slow stream."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def serve(
    app: WSGIApplication, *, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> Iterator[str]:
    """Serve any WSGI app on a real loopback socket (port 0), HTTP/1.1, threaded.

    Yield its base URL like ``http://127.0.0.1:PORT`` (``https://`` with a ``tls`` server
    context); on exit shut down, end every connection and join every thread (no
    ResourceWarning, no leaked thread).

    Each chunk the app yields goes out at once as one HTTP chunk; when the client goes away
    mid-stream the next write fails and the app iterator is closed.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server = _WSGIServer((host, 0), app, family)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    started = threading.Event()

    def run() -> None:
        started.set()
        server.serve_forever(poll_interval=0.05)

    thread = threading.Thread(target=run, name=f"serve-{server.server_address[1]}", daemon=True)
    try:
        thread.start()
        # The socket listens from the constructor on; this bounded wait covers the thread.
        if not started.wait(timeout=5):
            raise RuntimeError("the test server thread did not start")
        port = server.server_address[1]
        yield (
            f"{scheme}://[{host}]:{port}"
            if family == socket.AF_INET6
            else f"{scheme}://{host}:{port}"
        )
    finally:
        if thread.is_alive():
            server.shutdown()
        server.end_connections()
        server.server_close()
        thread.join(timeout=5)
