"""The bad-input table: each case, its status, and its answer in the client's own shape.

``BAD_INPUT`` is also the table in the reference docs (``docs/reference.rst`` renders it),
so the documented behaviour is the tested one.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from webtest import TestApp

from ollama_default import DefaultModel
from ollama_default.middleware import MAX_BODY_BYTES

TARGET = "aya-expanse:8b-q8_0"
#: The first bytes of a zstd frame.
ZSTD = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True)
class BadInput:
    """One row: what a client sends, and what it gets."""

    id: str
    sent: str  # for the docs
    answer: str  # for the docs
    body: bytes
    status: int | None  # None: passed on to the app untouched
    message: str = ""  # part of the error message
    environ: dict[str, Any] = field(default_factory=dict)
    paths: tuple[str, ...] | None = None  # the endpoints it applies to; None: all


BAD_INPUT = [
    BadInput(
        "malformed", "JSON with a syntax error in the object",
        "400, with Go's words, as Ollama would answer: ``invalid JSON in request body: "
        "invalid character '}' looking for beginning of object key string``",
        b'{"model":"llmodel",}', 400,
        "invalid JSON in request body: invalid character '}' looking for beginning of object key",
    ),
    BadInput(
        "cut-json", "JSON that ends too soon",
        "400, ``invalid JSON in request body: unexpected EOF``",
        b'{"model":"llmodel",', 400, "invalid JSON in request body: unexpected EOF",
    ),
    BadInput(
        "not-object", "a JSON array, string, number or boolean",
        "400, ``request body must be a JSON object, not an array``",
        b'["llmodel"]', 400, "request body must be a JSON object, not an array",
    ),
    BadInput(
        "nan", "``NaN`` or ``Infinity`` as a member's value (not JSON; Python would read them)",
        "400, ``invalid JSON in request body: invalid character 'N' looking for beginning of "
        "value``",
        b'{"model":"llmodel","temperature":NaN}', 400,
        "invalid character 'N' looking for beginning of value",
    ),
    BadInput(
        "nested-error", "a syntax error inside a nested value (``NaN`` in ``options``)",
        "passed on with the model decided: only the brackets of nested values are read, so "
        "Ollama finds the error and answers 400 with the same words",
        b'{"model":"llmodel","options":{"temperature":NaN}}', None,
    ),
    BadInput(
        "overflow", "a number beyond float64, such as ``1e999``, or an integer of 5,000 digits",
        "passed on: Go's JSON syntax allows it; Ollama decides whether the field can hold it",
        b'{"model":"llmodel","options":{"temperature":1e999}}', None,
    ),
    BadInput(
        "too-deep", "nesting deeper than 10,000 levels (Go's limit)",
        "400, ``invalid JSON in request body: invalid character '[' exceeded max depth``",
        b'{"model":"llmodel","x":' + b"[" * 10_000 + b"]" * 10_000 + b"}", 400,
        "invalid character '[' exceeded max depth",
    ),
    BadInput(
        "not-utf8-syntax", "bytes that are not UTF-8 outside any string",
        "400, ``invalid JSON in request body: ...``",
        b'\xff{"model":"llmodel"}', 400, "invalid JSON in request body",
    ),
    BadInput(
        "not-utf8-text", "bytes that are not UTF-8 inside a string",
        "passed on as sent; read as U+FFFD, one per byte, as Ollama (Go) reads them",
        b'{"model":"llmodel","prompt":"caf\xe9"}', None,
    ),
    BadInput(
        "too-large", "a body over ``max_body_bytes`` (default 100 MiB), with Content-Length",
        "413 before a byte of it is read",
        b'{"model":"llmodel"}', 413, "request body is larger than the limit of 8 bytes",
    ),
    BadInput(
        "too-large-chunked", "a chunked body over ``max_body_bytes``",
        "413 once one byte more than the limit has arrived",
        b'{"model":"llmodel"}', 413, "request body is larger than the limit of 8 bytes",
        {"CONTENT_LENGTH": "", "wsgi.input_terminated": True},
    ),
    BadInput(
        "cut-short", "fewer bytes than Content-Length (the client went away)",
        "400, ``request body ended before its Content-Length``",
        b'{"model":"llmodel"}', 400, "request body ended before its Content-Length",
        {"CONTENT_LENGTH": "40"},
    ),
    BadInput(
        "bad-length", "a Content-Length that is not a length (gunicorn refuses it itself)",
        "400, ``invalid Content-Length '...'``",
        b'{"model":"llmodel"}', 400, "invalid Content-Length 'ten'", {"CONTENT_LENGTH": "ten"},
    ),
    BadInput(
        "empty", "an empty body",
        "passed on untouched: Ollama answers 400 ``missing request body``",
        b"", None,
    ),
    BadInput(
        "null", "the JSON ``null``",
        "read as ``{}``, as Ollama reads it: the request gets the default model",
        b"null", None,
    ),
    BadInput(
        "model-not-string", "a ``model`` that is not a string",
        "passed on untouched: Ollama answers 400 ``json: cannot unmarshal ...``",
        b'{"model":42}', None,
    ),
    BadInput(
        "trailing", "bytes after the JSON object",
        "ignored, as Ollama ignores them: only the object goes on",
        b'{"model":"llmodel"} trailing', None,
    ),
    BadInput(
        "zstd", "``Content-Encoding: zstd`` on a ``/v1/`` inference endpoint, where Ollama "
        "decodes it (a first value ``zstd``, exactly)",
        "415, ``zstd request bodies are not supported by this proxy: send the body "
        "uncompressed``, before the body is read",
        ZSTD, 415, "zstd request bodies are not supported by this proxy",
        {"HTTP_CONTENT_ENCODING": "zstd"}, paths=("/v1/chat/completions", "/v1/messages"),
    ),
    BadInput(
        "compressed", "any other ``Content-Encoding`` (gzip, ``ZSTD``, zstd on ``/api/``), "
        "on a compressed body",
        "decided on the raw bytes, which Ollama reads as JSON whatever the header says: "
        "400, ``invalid JSON in request body: ...``, as from Ollama",
        gzip.compress(b'{"model":"llmodel"}'), 400, "invalid JSON in request body",
        {"HTTP_CONTENT_ENCODING": "gzip"},
    ),
    BadInput(
        "labelled", "a ``Content-Encoding`` Ollama ignores, on a plain JSON body",
        "decided as any other: Ollama reads it as JSON",
        b'{"model":"llmodel"}', None, environ={"HTTP_CONTENT_ENCODING": "gzip"},
    ),
    BadInput(
        "zstd-native", "``Content-Encoding: zstd`` on a native ``/api/`` endpoint",
        "decided on the raw bytes: Ollama ignores the header there",
        b'{"model":"llmodel"}', None, environ={"HTTP_CONTENT_ENCODING": "zstd"},
    ),
]  # fmt: skip


def echo_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answers with the body it received, so a test sees exactly what went on."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [body]


def send(case: BadInput, path: str) -> tuple[int, bytes]:
    limit = 8 if case.status == 413 else MAX_BODY_BYTES
    middleware = DefaultModel(echo_app, alias="llmodel", target=TARGET, max_body_bytes=limit)
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(case.body)),
        "wsgi.input": io.BytesIO(case.body),
        **case.environ,
    }
    statuses: list[str] = []
    app_iter = middleware(environ, lambda status, headers, exc_info=None: statuses.append(status))
    body = b"".join(app_iter)
    return int(statuses[0].split()[0]), body


ERROR_SHAPES = [
    pytest.param("/api/chat", lambda e: e["error"], id="ollama"),
    pytest.param("/v1/chat/completions", lambda e: e["error"]["message"], id="openai"),
    pytest.param("/v1/messages", lambda e: e["error"]["message"], id="anthropic"),
]


REFUSED = [
    pytest.param(case, *shape.values, id=f"{case.id}-{shape.id}")
    for case in BAD_INPUT
    if case.status
    for shape in ERROR_SHAPES
    if case.paths is None or shape.values[0] in case.paths
]


@pytest.mark.parametrize(("case", "path", "message_of"), REFUSED)
def test_refused_input_gets_a_clear_error_in_the_clients_shape(
    case: BadInput, path: str, message_of: Callable[[Any], str]
) -> None:
    status, body = send(case, path)
    assert status == case.status
    assert case.message in message_of(json.loads(body))


def test_openai_errors_have_openais_error_type() -> None:
    _, body = send(BAD_INPUT[0], "/v1/chat/completions")
    assert json.loads(body)["error"] == {
        "message": json.loads(body)["error"]["message"],
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


def test_anthropic_errors_have_anthropics_shape() -> None:
    _, body = send(BAD_INPUT[0], "/v1/messages")
    document = json.loads(body)
    assert document["type"] == "error"
    assert document["error"]["type"] == "invalid_request_error"


EXPECTED_PASS_ON = {
    "not-utf8-text": b'{"model":"aya-expanse:8b-q8_0","prompt":"caf\xe9"}',
    "nested-error": b'{"model":"aya-expanse:8b-q8_0","options":{"temperature":NaN}}',
    "overflow": b'{"model":"aya-expanse:8b-q8_0","options":{"temperature":1e999}}',
    "empty": b"",
    "null": b'{"model":"aya-expanse:8b-q8_0"}',
    "model-not-string": b'{"model":42}',
    "trailing": b'{"model":"aya-expanse:8b-q8_0"}',
    "labelled": b'{"model":"aya-expanse:8b-q8_0"}',
    "zstd-native": b'{"model":"aya-expanse:8b-q8_0"}',
}


@pytest.mark.parametrize("case", [c for c in BAD_INPUT if not c.status], ids=lambda c: c.id)
def test_input_ollama_should_judge_goes_on_as_ollama_would_read_it(case: BadInput) -> None:
    status, body = send(case, "/api/chat")
    assert status == 200
    assert body == EXPECTED_PASS_ON[case.id]


def test_the_table_and_the_expectations_cover_the_same_cases() -> None:
    assert {c.id for c in BAD_INPUT if not c.status} == set(EXPECTED_PASS_ON)


def test_no_bad_input_becomes_a_500() -> None:
    app = TestApp(DefaultModel(echo_app, alias="llmodel", target=TARGET), lint=True)
    for body in (b"{", b"[", b'{"model":', b"\x00", b'{"model":{"a":1}}', b'{"model":[]}'):
        response = app.post("/api/chat", body, expect_errors=True)
        assert response.status_int in (200, 400)
