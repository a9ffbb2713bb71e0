"""Pin the fake Ollama's own wire behaviour, so other tests can trust it.

Each expectation comes from the project's ``ollama-api.md`` (section numbers in the test
names' docstrings); in-process through webtest's WSGI lint first, then over real sockets.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import requests
from fake_ollama import (
    FAIL_MIDSTREAM,
    MIDSTREAM_ERROR,
    FakeOllama,
    decode_go_json,
    go_json,
    parse_go_duration,
    serve,
)

with warnings.catch_warnings():
    # webob (under webtest) still imports the deprecated cgi module.
    warnings.simplefilter("ignore", DeprecationWarning)
    import webtest

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

JSON_CHARSET = "application/json; charset=utf-8"
USER_MESSAGE = [{"role": "user", "content": "hello"}]


@pytest.fixture
def fake() -> FakeOllama:
    return FakeOllama()


@pytest.fixture
def app(fake: FakeOllama) -> webtest.TestApp:
    return webtest.TestApp(fake, lint=True)


def post(
    app: webtest.TestApp,
    path: str,
    body: object,
    *,
    status: int = 200,
    content_type: str = "application/json",
) -> webtest.TestResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return app.post(path, raw, content_type=content_type, status=status)


def ndjson(response: webtest.TestResponse) -> list[dict[str, Any]]:
    assert response.body.endswith(b"\n")
    return [json.loads(line) for line in response.body.splitlines()]


def sse(response: webtest.TestResponse) -> list[tuple[str | None, str]]:
    """(event name, data) for each SSE event of a body."""
    assert response.body.endswith(b"\n\n")
    events = []
    for block in response.text.split("\n\n")[:-1]:
        name = None
        data = ""
        for line in block.split("\n"):
            key, _, value = line.partition(": ")
            if key == "event":
                name = value
            else:
                assert key == "data", block
                data = value
        events.append((name, data))
    return events


# -- the model string: echoed verbatim, listed normalised (§0.1, §0.2, §5) -------------


def _native_lines(response: webtest.TestResponse) -> list[str]:
    return [line["model"] for line in ndjson(response)]


def _single(response: webtest.TestResponse) -> list[str]:
    return [response.json["model"]]


def _openai_chunks(response: webtest.TestResponse) -> list[str]:
    return [json.loads(data)["model"] for _, data in sse(response) if data != "[DONE]"]


def _responses_events(response: webtest.TestResponse) -> list[str]:
    events = [(name, json.loads(data)) for name, data in sse(response)]
    with_model = [name for name, data in events if "model" in json.dumps(data)]
    assert with_model == ["response.created", "response.in_progress", "response.completed"]
    return [data["response"]["model"] for name, data in events if name in with_model]


def _anthropic_events(response: webtest.TestResponse) -> list[str]:
    events = [(name, json.loads(data)) for name, data in sse(response)]
    assert [name for name, data in events if '"model"' in json.dumps(data)] == ["message_start"]
    return [events[0][1]["message"]["model"]]


ECHO_CASES: list[tuple[str, dict[str, Any], Callable[[webtest.TestResponse], list[str]]]] = [
    ("/api/generate", {"prompt": "hi"}, _native_lines),
    ("/api/generate", {"prompt": "hi", "stream": False}, _single),
    ("/api/chat", {"messages": USER_MESSAGE}, _native_lines),
    ("/api/chat", {"messages": USER_MESSAGE, "stream": False}, _single),
    ("/api/chat", {"messages": []}, _single),
    ("/api/embed", {"input": "hi"}, _single),
    ("/v1/chat/completions", {"messages": USER_MESSAGE}, _single),
    (
        "/v1/chat/completions",
        {"messages": USER_MESSAGE, "stream": True, "stream_options": {"include_usage": True}},
        _openai_chunks,
    ),
    ("/v1/completions", {"prompt": "hi"}, _single),
    ("/v1/completions", {"prompt": "hi", "stream": True}, _openai_chunks),
    ("/v1/embeddings", {"input": ["a", "b"]}, _single),
    ("/v1/responses", {"input": "hi"}, _single),
    ("/v1/responses", {"input": "hi", "stream": True}, _responses_events),
    ("/v1/messages", {"max_tokens": 9, "messages": USER_MESSAGE}, _single),
    (
        "/v1/messages",
        {"max_tokens": 9, "messages": USER_MESSAGE, "stream": True},
        _anthropic_events,
    ),
]
SPELLINGS = [
    "llama3.2",
    "Llama3.2",
    "llama3.2:latest",
    "library/llama3.2",
    "registry.ollama.ai/library/LLAMA3.2:Latest",
    " llama3.2 ",
]


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize(
    ("path", "body", "models_of"),
    ECHO_CASES,
    ids=[
        f"{path}-{'stream' if i % 2 else 'single'}-{i}" for i, (path, _, _) in enumerate(ECHO_CASES)
    ],
)
def test_inference_echoes_the_request_model_verbatim(
    app: webtest.TestApp,
    spelling: str,
    path: str,
    body: dict[str, Any],
    models_of: Callable[[webtest.TestResponse], list[str]],
) -> None:
    if path.endswith("embed") or path.endswith("embeddings"):
        spelling = spelling.replace("llama3.2", "nomic-embed-text").replace("LLAMA3.2", "NOMIC")
        if "NOMIC" in spelling:
            spelling = spelling.replace("NOMIC", "Nomic-Embed-Text")
    response = post(app, path, {"model": spelling, **body})
    models = models_of(response)
    assert models
    assert set(models) == {spelling}


def test_generated_text_names_the_model_it_was_asked_for(app: webtest.TestApp) -> None:
    lines = ndjson(post(app, "/api/generate", {"model": "Llama3.2", "prompt": "hi"}))
    assert [line["response"] for line in lines] == ["I", " am", " Llama3.2", ""]
    chat = post(app, "/api/chat", {"model": "llama3.2", "messages": USER_MESSAGE, "stream": False})
    assert chat.json["message"] == {"role": "assistant", "content": "I am llama3.2"}


@pytest.mark.parametrize(
    ("tokens", "texts"),
    [(0, []), (1, ["I am m"]), (2, ["I", " am m"]), (5, ["I", " am", " m", " more", " more"])],
)
def test_tokens_sets_the_number_of_content_records(tokens: int, texts: list[str]) -> None:
    app = webtest.TestApp(FakeOllama(["m"], tokens=tokens), lint=True)
    lines = ndjson(post(app, "/api/generate", {"model": "m", "prompt": "hi"}))
    assert [line["response"] for line in lines[:-1]] == texts
    assert lines[-1]["done"] is True
    assert lines[-1]["eval_count"] == tokens


def test_listings_use_the_normalised_form() -> None:
    fake = FakeOllama(["Mistral", "library/llama3.2", "myuser/m:7b", "myreg:5000/ns/x:Q4"])
    app = webtest.TestApp(fake, lint=True)
    expected = ["Mistral:latest", "llama3.2:latest", "myuser/m:7b", "myreg:5000/ns/x:Q4"]
    tags = app.get("/api/tags").json["models"]
    assert [model["name"] for model in tags] == expected
    assert [model["model"] for model in tags] == expected
    models = app.get("/v1/models")
    assert models.content_type == "application/json"
    assert [item["id"] for item in models.json["data"]] == expected
    assert [item["owned_by"] for item in models.json["data"]] == [
        "library",
        "library",
        "myuser",
        "ns",
    ]
    post(app, "/api/generate", {"model": "MISTRAL", "prompt": "hi"})
    post(app, "/api/chat", {"model": "registry.ollama.ai/myuser/m:7b", "messages": []})
    ps = app.get("/api/ps").json["models"]
    assert sorted(model["name"] for model in ps) == ["Mistral:latest", "myuser/m:7b"]
    assert fake.loaded == {"Mistral:latest", "myuser/m:7b"}


def test_tags_entry_has_the_struct_field_order(app: webtest.TestApp) -> None:
    response = app.get("/api/tags")
    assert response.content_type == "application/json"
    assert response.headers["Content-Type"] == JSON_CHARSET
    entry = re.search(rb'\{"name":"llama3.2:latest".*?"capabilities":\[[^]]*\]\}', response.body)
    assert entry is not None
    keys = list(json.loads(entry.group(0)))
    assert keys == ["name", "model", "modified_at", "size", "digest", "details", "capabilities"]
    details = json.loads(entry.group(0))["details"]
    assert list(details) == [
        "parent_model",
        "format",
        "family",
        "families",
        "parameter_size",
        "quantization_level",
        "context_length",
    ]


def test_v1_models_is_null_without_models() -> None:
    app = webtest.TestApp(FakeOllama([]), lint=True)
    assert app.get("/v1/models").body == b'{"object":"list","data":null}\n'
    assert app.get("/api/tags").body == b'{"models":[]}'
    assert app.get("/api/ps").body == b'{"models":[]}'


def test_v1_model_retrieve_echoes_the_path_parameter(app: webtest.TestApp) -> None:
    response = app.get("/v1/models/Llama3.2")
    assert response.json == {
        "id": "Llama3.2",
        "object": "model",
        "created": response.json["created"],
        "owned_by": "library",
    }
    missing = app.get("/v1/models/nope", status=404)
    assert missing.json == {
        "error": {
            "message": "model 'nope:latest' not found",
            "type": "not_found_error",
            "param": None,
            "code": None,
        }
    }
    # gin path parameters stop at '/', so namespaced names are not routes (§1).
    assert app.get("/v1/models/user/m", status=404).body == b"404 page not found"


# -- missing, blank and unknown models (§4) --------------------------------------------


NATIVE = "native"
OPENAI = "openai"
ANTHROPIC = "anthropic"

MISSING_MODEL_ROWS: list[tuple[str, str, dict[str, Any], int, str, str]] = [
    ("POST", "/api/generate", {"prompt": "hi"}, 404, NATIVE, "model '' not found"),
    ("POST", "/v1/completions", {"prompt": "hi"}, 404, OPENAI, "model '' not found"),
    ("POST", "/api/chat", {"messages": USER_MESSAGE}, 400, NATIVE, "model is required"),
    ("POST", "/api/chat", {"model": "  ", "messages": []}, 400, NATIVE, "model is required"),
    ("POST", "/v1/chat/completions", {"messages": USER_MESSAGE}, 400, OPENAI, "model is required"),
    ("POST", "/v1/responses", {"input": "hi"}, 400, OPENAI, "model is required"),
    ("POST", "/api/embed", {"input": "hi"}, 404, NATIVE, "model '' not found"),
    ("POST", "/v1/embeddings", {"input": "hi"}, 404, OPENAI, "model '' not found"),
    ("POST", "/api/embeddings", {"prompt": "hi"}, 400, NATIVE, "model is required"),
    ("POST", "/api/show", {}, 400, NATIVE, "model is required"),
    ("POST", "/api/pull", {}, 400, NATIVE, "invalid model name"),
    ("POST", "/api/push", {}, 400, NATIVE, "model is required"),
    ("DELETE", "/api/delete", {}, 400, NATIVE, "model is required"),
    ("POST", "/api/create", {}, 400, NATIVE, "invalid model name"),
    ("POST", "/api/copy", {"destination": "x"}, 400, NATIVE, 'source "" is invalid'),
    ("POST", "/api/copy", {"source": "llama3.2"}, 400, NATIVE, 'destination "" is invalid'),
    (
        "POST",
        "/v1/messages",
        {"max_tokens": 9, "messages": USER_MESSAGE},
        400,
        ANTHROPIC,
        "model is required",
    ),
]


def _error_message(shape: str, response: webtest.TestResponse) -> str:
    document = response.json
    if shape == NATIVE:
        assert list(document) == ["error"]
        return str(document["error"])
    if shape == OPENAI:
        error = document["error"]
        kind = {400: "invalid_request_error", 404: "not_found_error"}[response.status_int]
        assert error == {"message": error["message"], "type": kind, "param": None, "code": None}
        return str(error["message"])
    assert document["type"] == "error"
    assert document["request_id"].startswith("req_")
    return str(document["error"]["message"])


def send(
    app: webtest.TestApp, method: str, path: str, body: dict[str, Any], status: int
) -> webtest.TestResponse:
    if method == "DELETE":
        raw = json.dumps(body).encode()
        return app.delete(path, raw, content_type="application/json", status=status)
    return post(app, path, body, status=status)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "shape", "message"),
    MISSING_MODEL_ROWS,
    ids=[f"{row[1]}-{row[4]}-{i}" for i, row in enumerate(MISSING_MODEL_ROWS)],
)
def test_missing_model_answers_per_endpoint(
    app: webtest.TestApp,
    method: str,
    path: str,
    body: dict[str, Any],
    status: int,
    shape: str,
    message: str,
) -> None:
    assert _error_message(shape, send(app, method, path, body, status)) == message


def test_transcription_without_model_is_an_openai_400(app: webtest.TestApp) -> None:
    response = app.post(
        "/v1/audio/transcriptions",
        {"response_format": "json"},
        upload_files=[("file", "a.wav", b"RIFF")],
        status=400,
    )
    assert _error_message(OPENAI, response) == "model is required"


UNKNOWN_MODEL_ROWS: list[tuple[str, str, dict[str, Any], int, str, str]] = [
    (
        "POST",
        "/api/generate",
        {"model": "Nope", "prompt": "x"},
        404,
        NATIVE,
        "model 'Nope' not found",
    ),
    (
        "POST",
        "/api/generate",
        {"model": "Nope", "prompt": ""},
        404,
        NATIVE,
        "model 'Nope' not found",
    ),
    ("POST", "/api/chat", {"model": "Nope", "messages": []}, 404, NATIVE, "model 'Nope' not found"),
    (
        "POST",
        "/api/embed",
        {"model": "Nope", "input": "x"},
        404,
        NATIVE,
        'model "Nope" not found, try pulling it first',
    ),
    (
        "POST",
        "/api/embeddings",
        {"model": "Nope", "prompt": "x"},
        404,
        NATIVE,
        'model "Nope" not found, try pulling it first',
    ),
    ("POST", "/api/show", {"model": "Nope"}, 404, NATIVE, "model 'Nope:latest' not found"),
    ("POST", "/api/show", {"name": "x/Nope:7b"}, 404, NATIVE, "model 'x/Nope:7b' not found"),
    ("DELETE", "/api/delete", {"model": "Nope"}, 404, NATIVE, "model 'Nope' not found"),
    (
        "POST",
        "/api/copy",
        {"source": "Nope", "destination": "b"},
        404,
        NATIVE,
        'model "Nope" not found',
    ),
    (
        "POST",
        "/api/generate",
        {"model": "nomic-embed-text", "prompt": "x"},
        400,
        NATIVE,
        '"nomic-embed-text" does not support generate',
    ),
    (
        "POST",
        "/api/chat",
        {"model": "Nomic-Embed-Text:latest", "messages": []},
        400,
        NATIVE,
        '"Nomic-Embed-Text:latest" does not support chat',
    ),
    (
        "POST",
        "/api/chat",
        {"model": "llama3.2", "messages": USER_MESSAGE, "think": True},
        400,
        NATIVE,
        '"llama3.2" does not support thinking',
    ),
    (
        "POST",
        "/v1/chat/completions",
        {"model": "Nope", "messages": USER_MESSAGE},
        404,
        OPENAI,
        "model 'Nope' not found",
    ),
    (
        "POST",
        "/v1/completions",
        {"model": "Nope", "prompt": "x"},
        404,
        OPENAI,
        "model 'Nope' not found",
    ),
    (
        "POST",
        "/v1/embeddings",
        {"model": "Nope", "input": "x"},
        404,
        OPENAI,
        'model "Nope" not found, try pulling it first',
    ),
    (
        "POST",
        "/v1/responses",
        {"model": "Nope", "input": "x"},
        404,
        OPENAI,
        "model 'Nope' not found",
    ),
    (
        "POST",
        "/v1/messages",
        {"model": "Nope", "max_tokens": 9, "messages": USER_MESSAGE},
        404,
        ANTHROPIC,
        "model 'Nope' not found",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "shape", "message"),
    UNKNOWN_MODEL_ROWS,
    ids=[f"{row[1]}-{i}" for i, row in enumerate(UNKNOWN_MODEL_ROWS)],
)
def test_unknown_model_errors_name_it_like_ollama(
    app: webtest.TestApp,
    method: str,
    path: str,
    body: dict[str, Any],
    status: int,
    shape: str,
    message: str,
) -> None:
    assert _error_message(shape, send(app, method, path, body, status)) == message


def test_error_content_types_follow_who_wrote_them(app: webtest.TestApp) -> None:
    """gin c.JSON for handlers and middleware checks; the writers' Encoder for the rest (§3)."""
    native = post(app, "/api/chat", {"model": "nope", "messages": []}, status=404)
    assert native.headers["Content-Type"] == JSON_CHARSET
    assert native.body == b'{"error":"model \'nope\' not found"}'
    written = post(
        app, "/v1/chat/completions", {"model": "nope", "messages": USER_MESSAGE}, status=404
    )
    assert written.headers["Content-Type"] == "application/json"
    assert written.body.endswith(b"}\n")
    middleware = post(
        app, "/v1/chat/completions", {"model": "llama3.2", "messages": []}, status=400
    )
    assert middleware.headers["Content-Type"] == JSON_CHARSET
    assert middleware.body == (
        b'{"error":{"message":"[] is too short - \'messages\'",'
        b'"type":"invalid_request_error","param":null,"code":null}}'
    )


# -- request bodies as Go decodes them (§4) --------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "missing request body"),
        (b"  \n", "missing request body"),
        (b"x", "invalid character 'x' looking for beginning of value"),
        (b'{"model":', "unexpected EOF"),
        (b'{"model" "x"}', "invalid character '\"' after object key"),
        (b'{"model":"x",}', "invalid character '}' looking for beginning of object key string"),
        (b'{"model":"x" "prompt"}', "invalid character '\"' after object key:value pair"),
        (b'{"model":tru}', "invalid character '}' in literal true (expecting 'e')"),
        (
            b'{"model":1}',
            "json: cannot unmarshal number into Go struct field GenerateRequest.model"
            " of type string",
        ),
        (b"[1]", "json: cannot unmarshal array into Go value of type api.GenerateRequest"),
        (b'{"model":"m","keep_alive":"3600"}', 'time: missing unit in duration "3600"'),
        (b'{"model":"m","keep_alive":true}', "Unsupported type: 'bool'"),
        (
            b'{"model":"m","stream":"yes"}',
            "json: cannot unmarshal string into Go struct field GenerateRequest.stream"
            " of type bool",
        ),
    ],
)
def test_bad_bodies_get_gos_messages(app: webtest.TestApp, body: bytes, message: str) -> None:
    response = post(app, "/api/generate", body, status=400)
    assert response.json == {"error": message}


def test_v1_bad_bodies_come_in_the_openai_shape(app: webtest.TestApp) -> None:
    empty = post(app, "/v1/chat/completions", b"", status=400)
    assert empty.json["error"]["message"] == "EOF"
    broken = post(app, "/v1/embeddings", b"{", status=400)
    assert broken.json["error"] == {
        "message": "unexpected EOF",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    anthropic = post(app, "/v1/messages", b"nope", status=400)
    assert anthropic.json["error"] == {
        "type": "invalid_request_error",
        "message": "invalid character 'o' in literal null (expecting 'u')",
    }


def test_body_is_json_whatever_the_content_type(app: webtest.TestApp) -> None:
    body = b'{"model":"llama3.2","prompt":"hi","stream":false} trailing bytes are ignored'
    response = post(app, "/api/generate", body, content_type="application/x-www-form-urlencoded")
    assert response.json["response"] == "I am llama3.2"


def test_null_body_and_case_insensitive_keys_decode_like_go(app: webtest.TestApp) -> None:
    assert post(app, "/api/generate", b"null", status=404).json == {"error": "model '' not found"}
    response = post(app, "/api/generate", {"MODEL": "llama3.2", "Prompt": "x", "stream": False})
    assert response.json["model"] == "llama3.2"


def test_go_decoder_helpers() -> None:
    assert decode_go_json(b' {"a": [1, 2.5, "x"]} {"ignored": 1}') == {"a": [1, 2.5, "x"]}
    assert parse_go_duration("1h30m") == 5400
    assert parse_go_duration("-1m") == -60
    assert parse_go_duration("0") == 0


# -- Go's JSON encoding (§3, Go encoding/json) -----------------------------------------


def test_go_json_is_compact_html_escaped_and_prints_integral_floats_bare() -> None:
    document = {"b": "<a&b>\u2028\u2029é", "a": 1.0, "c": [0.5, True, None]}
    assert go_json(document) == (
        b'{"b":"\\u003ca\\u0026b\\u003e\\u2028\\u2029\xc3\xa9","a":1,"c":[0.5,true,null]}'
    )


def test_replies_escape_html_like_go(app: webtest.TestApp) -> None:
    response = post(app, "/api/generate", {"model": "<b>&\u2028", "prompt": "x"}, status=404)
    assert response.body == b'{"error":"model \'\\u003cb\\u003e\\u0026\\u2028\' not found"}'
    show = post(app, "/api/show", {"model": "llama3.2"})
    assert b"\\u003c|eot_id|\\u003e" in show.body
    assert b"<" not in show.body


# -- streams: defaults, framing, content types (§0.5, §2.9, §3) ------------------------


def test_native_streams_ndjson_by_default(app: webtest.TestApp) -> None:
    response = post(app, "/api/chat", {"model": "llama3.2", "messages": USER_MESSAGE})
    assert response.headers["Content-Type"] == "application/x-ndjson"
    lines = ndjson(response)
    assert [line["done"] for line in lines] == [False, False, False, True]
    assert list(lines[0]) == ["model", "created_at", "message", "done"]
    assert list(lines[-1]) == [
        "model",
        "created_at",
        "message",
        "done",
        "done_reason",
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", lines[0]["created_at"])


def test_native_stream_yields_one_record_per_chunk(fake: FakeOllama) -> None:
    environ = webtest.TestRequest.blank(
        "/api/generate",
        method="POST",
        body=b'{"model":"llama3.2","prompt":"hi"}',
    ).environ
    chunks = list(_call_wsgi(fake, environ))
    assert len(chunks) == 4
    assert all(chunk.endswith(b"\n") and chunk.count(b"\n") == 1 for chunk in chunks)


def test_stream_false_answers_one_object(app: webtest.TestApp) -> None:
    response = post(app, "/api/generate", {"model": "llama3.2", "prompt": "hi", "stream": False})
    assert response.headers["Content-Type"] == JSON_CHARSET
    assert response.headers["Content-Length"] == str(len(response.body))
    assert list(response.json)[:6] == [
        "model",
        "created_at",
        "response",
        "done",
        "done_reason",
        "context",
    ]
    assert response.json["response"] == "I am llama3.2"


def test_v1_streams_only_when_asked(app: webtest.TestApp) -> None:
    single = post(app, "/v1/chat/completions", {"model": "llama3.2", "messages": USER_MESSAGE})
    assert single.headers["Content-Type"] == "application/json"
    assert single.body.endswith(b"}\n")
    assert list(single.json) == [
        "id",
        "object",
        "created",
        "model",
        "system_fingerprint",
        "choices",
        "usage",
    ]
    assert single.json["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "I am llama3.2"},
            "finish_reason": "stop",
        }
    ]
    assert single.json["usage"] == {"prompt_tokens": 26, "completion_tokens": 3, "total_tokens": 29}


def test_openai_chat_sse_frames(app: webtest.TestApp) -> None:
    body = {
        "model": "Llama3.2",
        "messages": USER_MESSAGE,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = post(app, "/v1/chat/completions", body)
    assert response.headers["Content-Type"] == "text/event-stream"
    text = re.sub(r'"id":"chatcmpl-\d+","object"', '"id":"ID","object"', response.text)
    text = re.sub(r'"created":\d+', '"created":0', text)
    head = (
        'data: {"id":"ID","object":"chat.completion.chunk","created":0,"model":"Llama3.2",'
        '"system_fingerprint":"fp_ollama","choices":'
    )
    choice = '[{"index":0,"delta":%s,"finish_reason":%s}]}\n\n'
    assert text == (
        head
        + choice % ('{"role":"assistant","content":"I"}', "null")
        + head
        + choice % ('{"content":" am"}', "null")
        + head
        + choice % ('{"content":" Llama3.2"}', "null")
        + head
        + choice % ("{}", '"stop"')
        + head
        + '[],"usage":{"prompt_tokens":26,"completion_tokens":3,"total_tokens":29}}\n\n'
        + "data: [DONE]\n\n"
    )


def test_openai_completions_sse_frames(app: webtest.TestApp) -> None:
    body = {
        "model": "llama3.2",
        "prompt": "hi",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events = [data for _, data in sse(post(app, "/v1/completions", body))]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(data) for data in events[:-1]]
    assert list(chunks[0]) == [
        "id",
        "object",
        "created",
        "choices",
        "model",
        "system_fingerprint",
        "usage",
    ]
    assert [chunk["choices"] for chunk in chunks] == [
        [{"text": "I", "index": 0, "finish_reason": None}],
        [{"text": " am", "index": 0, "finish_reason": None}],
        [{"text": " llama3.2", "index": 0, "finish_reason": None}],
        [{"text": "", "index": 0, "finish_reason": "stop"}],
        [],
    ]
    zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert [chunk["usage"] for chunk in chunks[:-1]] == [zero] * 4
    assert chunks[-1]["usage"] == {"prompt_tokens": 26, "completion_tokens": 3, "total_tokens": 29}


def test_responses_stream_uses_named_events_and_no_done(app: webtest.TestApp) -> None:
    response = post(app, "/v1/responses", {"model": "llama3.2", "input": "hi", "stream": True})
    events = sse(response)
    assert [name for name, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    payloads = [json.loads(data) for _, data in events]
    assert [payload["sequence_number"] for payload in payloads] == list(range(len(events)))
    assert all(payload["type"] == name for (name, _), payload in zip(events, payloads, strict=True))
    # Go marshals the converter's map[string]any events with sorted keys.
    assert all(list(payload) == sorted(payload) for payload in payloads)
    completed = payloads[-1]["response"]
    assert completed["status"] == "completed"
    assert completed["output"][0]["content"][0]["text"] == "I am llama3.2"
    assert b"[DONE]" not in response.body


def test_responses_single_reply(app: webtest.TestApp) -> None:
    response = post(app, "/v1/responses", {"model": "llama3.2", "input": "hi"})
    assert response.headers["Content-Type"] == "application/json"
    assert list(response.json)[:7] == [
        "id",
        "object",
        "created_at",
        "completed_at",
        "status",
        "incomplete_details",
        "model",
    ]
    assert response.json["output"][0]["content"][0]["text"] == "I am llama3.2"


def test_anthropic_messages(app: webtest.TestApp) -> None:
    body = {"model": "llama3.2", "max_tokens": 9, "messages": USER_MESSAGE}
    single = post(app, "/v1/messages", body)
    assert single.headers["Content-Type"] == "application/json"
    assert list(single.json) == ["id", "type", "role", "model", "content", "stop_reason", "usage"]
    assert single.json["content"] == [{"type": "text", "text": "I am llama3.2"}]
    events = sse(post(app, "/v1/messages", {**body, "stream": True}))
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(json.loads(data)["type"] == name for name, data in events)
    refused = post(app, "/v1/messages", {**body, "max_tokens": 0}, status=400)
    assert refused.json["error"]["message"] == "max_tokens is required and must be positive"


def test_midstream_error_ends_the_native_stream(app: webtest.TestApp) -> None:
    response = post(app, "/api/generate", {"model": "llama3.2", "prompt": FAIL_MIDSTREAM})
    assert response.status_int == 200
    lines = ndjson(response)
    assert lines[0]["response"] == "I"
    assert lines[1:] == [{"error": MIDSTREAM_ERROR}]
    failed = post(
        app,
        "/api/chat",
        {
            "model": "llama3.2",
            "messages": [{"role": "user", "content": FAIL_MIDSTREAM}],
            "stream": False,
        },
        status=500,
    )
    assert failed.json == {"error": MIDSTREAM_ERROR}


def test_midstream_error_on_openai_streams_sends_an_empty_model_chunk(app: webtest.TestApp) -> None:
    body = {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": FAIL_MIDSTREAM}],
        "stream": True,
    }
    events = [json.loads(data) for _, data in sse(post(app, "/v1/chat/completions", body))]
    assert [event["model"] for event in events] == ["llama3.2", ""]
    assert events[-1]["choices"] == [{"index": 0, "delta": {}, "finish_reason": None}]


# -- load and unload (§0.7, §6) --------------------------------------------------------


def test_empty_prompt_loads_and_keep_alive_zero_unloads(
    fake: FakeOllama, app: webtest.TestApp
) -> None:
    loaded = post(app, "/api/generate", {"model": "Llama3.2"})
    assert loaded.headers["Content-Type"] == JSON_CHARSET
    assert list(loaded.json) == ["model", "created_at", "response", "done", "done_reason"]
    assert loaded.json["model"] == "Llama3.2"
    assert loaded.json["done_reason"] == "load"
    assert fake.loaded == {"llama3.2:latest"}
    ps = app.get("/api/ps").json["models"]
    assert [model["name"] for model in ps] == ["llama3.2:latest"]
    assert list(ps[0]) == [
        "name",
        "model",
        "size",
        "digest",
        "details",
        "expires_at",
        "size_vram",
        "context_length",
    ]
    unloaded = post(app, "/api/generate", {"model": "llama3.2", "keep_alive": 0})
    assert unloaded.json["done_reason"] == "unload"
    assert fake.loaded == set()
    assert app.get("/api/ps").json == {"models": []}


def test_empty_messages_load_and_unload_chat(fake: FakeOllama, app: webtest.TestApp) -> None:
    loaded = post(
        app, "/api/chat", {"model": "aya-expanse:8b-q8_0", "messages": [], "keep_alive": -1}
    )
    assert loaded.headers["Content-Type"] == JSON_CHARSET
    assert loaded.json["message"] == {"role": "assistant", "content": ""}
    assert loaded.json["done_reason"] == "load"
    assert fake.loaded == {"aya-expanse:8b-q8_0"}
    expires = app.get("/api/ps").json["models"][0]["expires_at"]
    assert expires.startswith("23")  # keep_alive -1: about 292 years ahead
    unloaded = post(app, "/api/chat", {"model": "aya-expanse:8b-q8_0", "keep_alive": "0s"})
    assert unloaded.json["done_reason"] == "unload"
    assert fake.loaded == set()


def test_inference_and_embed_mark_the_model_loaded(fake: FakeOllama, app: webtest.TestApp) -> None:
    post(app, "/api/embed", {"model": "nomic-embed-text"})
    post(app, "/v1/chat/completions", {"model": "aya-expanse:8b-q8_0", "messages": USER_MESSAGE})
    assert fake.loaded == {"nomic-embed-text:latest", "aya-expanse:8b-q8_0"}


def test_embeddings_are_small_and_deterministic(app: webtest.TestApp) -> None:
    first = post(app, "/api/embed", {"model": "nomic-embed-text", "input": ["a", "b"]}).json
    again = post(app, "/api/embed", {"model": "nomic-embed-text", "input": ["a", "b"]}).json
    assert first == again
    assert [len(vector) for vector in first["embeddings"]] == [4, 4]
    assert post(app, "/api/embed", {"model": "nomic-embed-text", "input": []}).body == (
        b'{"model":"nomic-embed-text","embeddings":[]}'
    )
    legacy = post(app, "/api/embeddings", {"model": "nomic-embed-text", "prompt": "a"})
    assert legacy.json == {"embedding": first["embeddings"][0]}
    openai = post(app, "/v1/embeddings", {"model": "nomic-embed-text", "input": "a"}).json
    assert list(openai) == ["object", "data", "model", "usage"]
    assert openai["data"] == [
        {"object": "embedding", "embedding": first["embeddings"][0], "index": 0}
    ]


# -- the rest of the routes (§1, §2.4-§2.8) --------------------------------------------


def test_plain_text_routes_and_router_errors(app: webtest.TestApp) -> None:
    root = app.get("/")
    assert (root.headers["Content-Type"], root.body) == (
        "text/plain; charset=utf-8",
        b"Ollama is running",
    )
    assert app.get("/api/version").body == b'{"version":"0.33.0"}'
    missing = app.get("/api/nope", status=404)
    assert (missing.headers["Content-Type"], missing.body) == ("text/plain", b"404 page not found")
    wrong = app.get("/api/chat", status=405)
    assert (wrong.headers["Content-Type"], wrong.body) == ("text/plain", b"405 method not allowed")
    assert app.get("/v1/messages/count_tokens", status=404).body == b"404 page not found"
    moved = app.get("/api/tags/", status=301)
    assert moved.headers["Location"] == "/api/tags"


def test_head_keeps_the_get_headers_without_a_body(app: webtest.TestApp) -> None:
    get = app.get("/api/tags")
    head = app.head("/api/tags")
    assert head.body == b""
    assert head.headers["Content-Length"] == get.headers["Content-Length"]
    assert app.head("/").headers["Content-Length"] == "17"


def test_show(app: webtest.TestApp) -> None:
    response = post(app, "/api/show", {"name": "Llama3.2"})
    assert list(response.json) == [
        "license",
        "modelfile",
        "parameters",
        "template",
        "details",
        "model_info",
        "capabilities",
        "modified_at",
    ]
    assert "# FROM llama3.2:latest\n" in response.json["modelfile"]
    assert list(response.json["model_info"]) == sorted(response.json["model_info"])
    copilot = app.post(
        "/api/show",
        b'{"model":"Llama3.2"}',
        headers={"User-Agent": "GitHubCopilotChat/1.0"},
    )
    assert copilot.json["model_info"]["general.basename"] == "Llama3.2"


def test_pull_push_create_stream_progress(app: webtest.TestApp) -> None:
    pulled = post(app, "/api/pull", {"model": "Mistral"})
    assert pulled.headers["Content-Type"] == "application/x-ndjson"
    statuses = [line["status"] for line in ndjson(pulled)]
    assert statuses[0] == "pulling manifest"
    assert statuses[-1] == "success"
    assert "Mistral:latest" in [model["name"] for model in app.get("/api/tags").json["models"]]
    quiet = post(app, "/api/push", {"name": "llama3.2", "stream": False})
    assert quiet.headers["Content-Type"] == "application/json"
    assert quiet.body == b'{"status":"success"}'
    created = post(app, "/api/create", {"model": "mario", "from": "llama3.2"})
    assert ndjson(created)[-1] == {"status": "success"}
    assert app.get("/api/tags").json["models"][0]["name"] == "mario:latest"


def test_copy_and_delete_answer_empty_bodies(fake: FakeOllama, app: webtest.TestApp) -> None:
    copied = post(app, "/api/copy", {"source": "llama3.2", "destination": "llama3-backup"})
    assert (copied.body, copied.headers["Content-Length"]) == (b"", "0")
    assert "Content-Type" not in copied.headers
    names = [model["name"] for model in app.get("/api/tags").json["models"]]
    assert names[0] == "llama3-backup:latest"
    post(app, "/api/generate", {"model": "llama3-backup"})
    deleted = app.delete(
        "/api/delete", b'{"model":"llama3-backup"}', content_type="application/json"
    )
    assert deleted.body == b""
    assert "llama3-backup:latest" not in fake.loaded
    assert "llama3-backup:latest" not in [m["name"] for m in app.get("/api/tags").json["models"]]


def test_blobs(app: webtest.TestApp) -> None:
    import hashlib

    data = b"GGUF weights"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert app.head(f"/api/blobs/{digest}", status=404).body == b""
    wrong = post(
        app,
        f"/api/blobs/{digest}",
        b"other bytes",
        content_type="application/octet-stream",
        status=400,
    )
    assert wrong.json["error"].startswith(f'digest mismatch, expected "{digest}", got "sha256:')
    assert (
        post(
            app, f"/api/blobs/{digest}", data, content_type="application/octet-stream", status=201
        ).body
        == b""
    )
    assert app.head(f"/api/blobs/{digest}").status_int == 200


def test_transcription(app: webtest.TestApp) -> None:
    fields = {"model": "Llama3.2"}
    json_reply = app.post(
        "/v1/audio/transcriptions", fields, upload_files=[("file", "a.wav", b"RIFF")]
    )
    assert json_reply.headers["Content-Type"] == "application/json"
    assert json_reply.body == b'{"text":"I am Llama3.2"}\n'
    text = app.post(
        "/v1/audio/transcriptions",
        {**fields, "response_format": "text"},
        upload_files=[("file", "a.wav", b"RIFF")],
    )
    assert (text.headers["Content-Type"], text.body) == ("text/plain", b"I am Llama3.2")
    unknown = app.post(
        "/v1/audio/transcriptions",
        {"model": "nope"},
        upload_files=[("file", "a.wav", b"RIFF")],
        status=404,
    )
    assert _error_message(OPENAI, unknown) == "model 'nope' not found"


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("localhost:11434", 200),
        ("127.0.0.1:11434", 200),
        ("[::1]:11434", 200),
        ("192.168.1.20", 200),
        ("ollama.internal", 200),
        ("evil.example.com", 403),
        ("8.8.8.8:11434", 403),
    ],
)
def test_check_host_refuses_foreign_hosts_with_an_empty_403(host: str, status: int) -> None:
    app = webtest.TestApp(FakeOllama(check_host=True), lint=True)
    response = app.get("/api/version", headers={"Host": host}, status=status)
    if status == 403:
        assert response.body == b""
        assert "Content-Type" not in response.headers


def test_check_host_answers_options_204_for_allowed_hostnames() -> None:
    app = webtest.TestApp(FakeOllama(check_host=True), lint=True)
    response = app.options("/api/chat", headers={"Host": "localhost"}, status=204)
    assert response.body == b""


def test_requests_are_recorded(fake: FakeOllama, app: webtest.TestApp) -> None:
    app.post(
        "/api/chat?x=1",
        b'{"model":"llama3.2"}',
        headers={"X-Trace": "t"},
        content_type="text/plain",
    )
    app.get("/")
    first, second = fake.requests
    assert (first.method, first.path, first.query) == ("POST", "/api/chat", "x=1")
    assert first.headers["x-trace"] == "t"
    assert first.headers["content-type"] == "text/plain"
    assert first.json == {"model": "llama3.2"}
    assert (second.method, second.body, second.json) == ("GET", b"", None)


# -- the socket server -----------------------------------------------------------------


def _call_wsgi(app: Any, environ: dict[str, Any]) -> Iterator[bytes]:
    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return None

    body = app(environ, start_response)
    try:
        yield from body
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


def _raw_exchange(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while not received.endswith(b"0\r\n\r\n"):
            data = sock.recv(65536)
            if not data:
                break
            received += data
        return received


def _chunks(payload: bytes) -> list[bytes]:
    chunks: list[bytes] = []
    while True:
        size_line, _, payload = payload.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return chunks
        chunks.append(payload[:size])
        assert payload[size : size + 2] == b"\r\n"
        payload = payload[size + 2 :]


def test_serve_sends_each_record_as_its_own_chunk() -> None:
    body = b'{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"stream":true}'
    with serve(FakeOllama()) as url:
        request = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        raw = _raw_exchange(url, request)
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nTransfer-Encoding: chunked" in head
    assert b"\r\nContent-Type: text/event-stream" in head
    chunks = _chunks(payload)
    assert len(chunks) == 5
    assert all(chunk.startswith(b"data: ") and chunk.endswith(b"\n\n") for chunk in chunks)
    assert chunks[-1] == b"data: [DONE]\n\n"


def test_serve_flushes_each_chunk_at_once() -> None:
    release = threading.Event()

    def gated(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "application/x-ndjson")])
        yield b'{"first":true}\n'
        release.wait(timeout=5)
        yield b'{"last":true}\n'

    with (
        serve(gated) as url,
        requests.Session() as session,
        session.get(url, stream=True, timeout=5) as response,
    ):
        lines = response.iter_lines()
        assert next(lines) == b'{"first":true}'  # arrives while the app still waits
        release.set()
        assert next(lines) == b'{"last":true}'


def test_fake_streams_record_by_record_over_a_socket() -> None:
    fake = FakeOllama(tokens=3, token_delay_s=0.3)
    # keep_alive 0 unloads the model after the last record: seeing it still loaded proves
    # the first record reached the client before the stream ended.
    body = {"model": "llama3.2", "prompt": "hi", "keep_alive": 0}
    with serve(fake) as url, requests.Session() as session:
        started = time.monotonic()
        with session.post(f"{url}/api/generate", json=body, stream=True, timeout=5) as response:
            assert response.headers["Content-Type"] == "application/x-ndjson"
            assert "Content-Length" not in response.headers
            lines = response.iter_lines()
            assert json.loads(next(lines))["response"] == "I"
            first_after = time.monotonic() - started
            assert fake.loaded == {"llama3.2:latest"}
            rest = [json.loads(line) for line in lines]
        total = time.monotonic() - started
    assert [line["done"] for line in rest] == [False, False, True]
    assert fake.loaded == set()
    assert first_after + 0.5 < total


def test_client_leaving_mid_stream_closes_the_app_iterator() -> None:
    fake = FakeOllama(tokens=200, token_delay_s=0.02)
    with serve(fake) as url, requests.Session() as session:
        body = {"model": "llama3.2", "messages": USER_MESSAGE}
        with session.post(f"{url}/api/chat", json=body, stream=True, timeout=5) as response:
            assert json.loads(next(response.iter_lines()))["done"] is False
        # Leaving the block closed the socket; the server finds out on its next write.
        assert fake.disconnected.wait(timeout=5)
    assert fake.disconnects == 1


def test_serve_keeps_connections_alive_and_reads_chunked_uploads() -> None:
    fake = FakeOllama()
    with serve(fake) as url, requests.Session() as session:
        parts = iter([b'{"model":"llama3.2",', b'"prompt":"hi","stream":false}'])
        first = session.post(f"{url}/api/generate", data=parts, timeout=5)
        second = session.get(f"{url}/api/version", timeout=5)
        assert first.json()["response"] == "I am llama3.2"
        assert second.json() == {"version": "0.33.0"}
        first.close()
        second.close()
    assert fake.requests[0].headers["transfer-encoding"] == "chunked"
    assert fake.requests[0].json == {"model": "llama3.2", "prompt": "hi", "stream": False}


def test_serve_cleans_up_its_threads_and_socket() -> None:
    before = set(threading.enumerate())
    with serve(FakeOllama()) as url, requests.Session() as session:
        session.get(f"{url}/api/tags", timeout=5).close()
        port = int(url.rsplit(":", 1)[1])
    assert set(threading.enumerate()) <= before
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_check_host_over_a_socket() -> None:
    with serve(FakeOllama(check_host=True)) as url, requests.Session() as session:
        allowed = session.get(f"{url}/api/version", timeout=5)
        refused = session.get(f"{url}/api/version", headers={"Host": "evil.example"}, timeout=5)
        assert allowed.status_code == 200
        assert (refused.status_code, refused.content) == (403, b"")
        assert refused.headers["Content-Length"] == "0"
        allowed.close()
        refused.close()
