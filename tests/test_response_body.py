"""Response records: model-name fields show the client's name; every other byte stays."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from fake_ollama import go_json
from hypothesis import given, settings
from hypothesis import strategies as st

from ollama_default.core.aliases import Route
from ollama_default.core.endpoints import find_endpoint
from ollama_default.core.request_body import Rename
from ollama_default.core.response_body import NameRestorer, StreamRestorer

TARGET = "aya-expanse:8b-q8_0"


def restorer(
    path: str, client_name: str = "llmodel", target: str = TARGET, **kw: Any
) -> NameRestorer:
    endpoint = find_endpoint(path)
    assert endpoint is not None
    rename = Rename(client_name, Route.build("llmodel", target))
    return NameRestorer([rename], endpoint.response_fields, **kw)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (
            b'{"model":"aya-expanse:8b-q8_0","created_at":"2026-08-21T12:00:00Z",'
            b'"message":{"role":"assistant","content":"I am aya-expanse:8b-q8_0"},"done":false}\n',
            b'{"model":"llmodel","created_at":"2026-08-21T12:00:00Z",'
            b'"message":{"role":"assistant","content":"I am aya-expanse:8b-q8_0"},"done":false}\n',
        ),
        (
            b'{ "model" : "aya-expanse:8b-q8_0" , "response":"\\"model\\":\\"x\\""}',
            b'{ "model" : "llmodel" , "response":"\\"model\\":\\"x\\""}',
        ),
        (
            b'{"done":true,"model":"AYA-EXPANSE:8b-q8_0"}',
            b'{"done":true,"model":"llmodel"}',
        ),
        (b'{"model":"llama3.2","response":"hi"}', b'{"model":"llama3.2","response":"hi"}'),
    ],
    ids=["chat-line", "spaced", "other-case", "other-model"],
)
def test_the_top_level_model_shows_the_client_name(record: bytes, expected: bytes) -> None:
    assert restorer("/api/chat").restore(record) == expected


def test_a_model_key_inside_generated_tool_arguments_is_generated_text() -> None:
    record = go_json(
        {
            "model": TARGET,
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "pick", "arguments": {"model": TARGET}}}],
            },
            "done": False,
        }
    )
    restored = json.loads(restorer("/api/chat").restore(record))
    assert restored["model"] == "llmodel"
    assert restored["message"]["tool_calls"][0]["function"]["arguments"] == {"model": TARGET}


def test_the_name_shown_is_the_one_the_client_sent() -> None:
    record = b'{"model":"aya-expanse:8b-q8_0"}'
    assert restorer("/api/chat", "LLModel:latest").restore(record) == b'{"model":"LLModel:latest"}'


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        ("model 'aya-expanse:8b-q8_0' not found", "model 'llmodel' not found"),
        (
            'model "aya-expanse:8b-q8_0" not found, try pulling it first',
            'model "llmodel" not found, try pulling it first',
        ),
        (
            "registry.ollama.ai/library/aya-expanse:8b-q8_0 does not support tools",
            "llmodel does not support tools",
        ),
        ('"aya-expanse:8b-q8_0" does not support thinking', '"llmodel" does not support thinking'),
        ("model 'aya-expanse:8b-q8_01' not found", "model 'aya-expanse:8b-q8_01' not found"),
        ("server busy, please try again", "server busy, please try again"),
    ],
    ids=["not-found", "not-found-pull", "fully-qualified", "no-thinking", "longer-name", "none"],
)
def test_error_messages_name_the_model_as_the_client_did(error: str, shown: str) -> None:
    native = restorer("/api/chat").restore(go_json({"error": error}))
    assert json.loads(native) == {"error": shown}
    openai = restorer("/v1/chat/completions").restore(
        go_json({"error": {"message": error, "type": "api_error", "param": None, "code": None}})
    )
    assert json.loads(openai)["error"]["message"] == shown


def test_normalised_names_in_errors_are_restored_too() -> None:
    record = go_json({"error": "model 'mistral:latest' not found"})
    restored = restorer("/api/show", target="mistral").restore(record)
    assert json.loads(restored) == {"error": "model 'llmodel' not found"}


def test_a_cloud_target_echoed_by_its_base_name_is_restored() -> None:
    record = b'{"model":"gpt-oss:120b","response":"hi"}'
    restored = restorer("/api/generate", target="gpt-oss:120b-cloud").restore(record)
    assert restored == b'{"model":"llmodel","response":"hi"}'


@pytest.mark.parametrize(
    ("path", "event", "expected"),
    [
        (
            "/v1/chat/completions",
            b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,'
            b'"model":"aya-expanse:8b-q8_0","choices":[{"index":0,"delta":{"content":"x"}}]}\n\n',
            b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,'
            b'"model":"llmodel","choices":[{"index":0,"delta":{"content":"x"}}]}\n\n',
        ),
        (
            "/v1/completions",
            b'data: {"id":"cmpl-42","object":"text_completion","created":1,"choices":[{"text":'
            b'"Hel","index":0,"finish_reason":null}],"model":"aya-expanse:8b-q8_0",'
            b'"system_fingerprint":"fp_ollama"}\n\n',
            b'data: {"id":"cmpl-42","object":"text_completion","created":1,"choices":[{"text":'
            b'"Hel","index":0,"finish_reason":null}],"model":"llmodel",'
            b'"system_fingerprint":"fp_ollama"}\n\n',
        ),
        (
            "/v1/completions",
            b'data: {"id":"cmpl-42","object":"text_completion","created":1,"choices":[{"text":'
            b'"[{","index":0,"finish_reason":null}],"model":"aya-expanse:8b-q8_0",'
            b'"system_fingerprint":"fp_ollama","usage":{"prompt_tokens":0}}\n\n',
            b'data: {"id":"cmpl-42","object":"text_completion","created":1,"choices":[{"text":'
            b'"[{","index":0,"finish_reason":null}],"model":"llmodel",'
            b'"system_fingerprint":"fp_ollama","usage":{"prompt_tokens":0}}\n\n',
        ),
        ("/v1/chat/completions", b"data: [DONE]\n\n", b"data: [DONE]\n\n"),
        (
            "/v1/responses",
            b'event: response.created\ndata: {"type":"response.created","sequence_number":0,'
            b'"response":{"id":"resp_1","model":"aya-expanse:8b-q8_0"}}\n\n',
            b'event: response.created\ndata: {"type":"response.created","sequence_number":0,'
            b'"response":{"id":"resp_1","model":"llmodel"}}\n\n',
        ),
        (
            "/v1/messages",
            b'event: message_start\r\ndata: {"type":"message_start","message":{"id":"msg_1",'
            b'"model":"aya-expanse:8b-q8_0"}}\r\n\r\n',
            b'event: message_start\r\ndata: {"type":"message_start","message":{"id":"msg_1",'
            b'"model":"llmodel"}}\r\n\r\n',
        ),
        (
            "/v1/messages",
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
            b'"delta":{"type":"text_delta","text":"\\"model\\":\\"aya-expanse:8b-q8_0\\""}}\n\n',
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
            b'"delta":{"type":"text_delta","text":"\\"model\\":\\"aya-expanse:8b-q8_0\\""}}\n\n',
        ),
    ],
    ids=[
        "openai-chunk",
        "completions-chunk",
        "completions-usage",
        "done",
        "responses",
        "anthropic-crlf",
        "text",
    ],
)
def test_server_sent_events(path: str, event: bytes, expected: bytes) -> None:
    assert restorer(path).restore_event(event) == expected
    assert restorer(path, fast=False).restore_event(event) == expected


def test_v1_model_details_restore_the_id() -> None:
    record = b'{"id":"aya-expanse:8b-q8_0","object":"model","created":1,"owned_by":"library"}'
    restored = restorer("/v1/models/llmodel").restore(record)
    assert restored == b'{"id":"llmodel","object":"model","created":1,"owned_by":"library"}'


@pytest.mark.parametrize(
    "record",
    [b"", b"not json", b'["model"]', b'{"model":"aya-expanse:8b-q8_0"', b"\xff\xfe", b"{}{}"],
    ids=["empty", "text", "array", "cut", "binary", "two-documents"],
)
def test_what_is_not_one_json_object_passes_through(record: bytes) -> None:
    assert restorer("/api/chat", fast=False).restore(record) == record


# -- properties ------------------------------------------------------------------------

NAMES = st.sampled_from(
    [TARGET, "AYA-Expanse:8b-q8_0", "library/aya-expanse:8b-q8_0", "llama3.2", "llmodel", ""]
)
TEXT = st.one_of(
    st.text(),
    st.sampled_from(['"model":"' + TARGET + '"', '{"model":"' + TARGET + '"}', "<&>", "\u2028"]),
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["model", "content", "text", "x"]), inner, max_size=3),
    ),
    max_leaves=8,
)


@st.composite
def records(draw: st.DrawFn) -> bytes:
    """Ollama-like records, with the tricky cases mixed in."""
    members: list[tuple[str, Any]] = []
    if draw(st.booleans()):
        members.append(("model", draw(NAMES)))
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(["message", "response", "done", "model", "Model", "error"]))
        members.append((key, draw(VALUES)))
    if draw(st.booleans()):
        draw(st.randoms()).shuffle(members)
    encoder = draw(st.sampled_from(["go", "python", "ascii"]))
    parts = []
    for key, value in members:
        if encoder == "go":
            parts.append(go_json(key) + b":" + go_json(value))
        else:
            ascii_only = encoder == "ascii"
            parts.append(
                (json.dumps(key) + ": " + json.dumps(value, ensure_ascii=ascii_only)).encode()
            )
    return b"{" + b",".join(parts) + b"}"


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions", "/v1/responses"])
@given(record=records())
def test_the_fast_path_agrees_with_the_full_parse(path: str, record: bytes) -> None:
    line = record + b"\n"
    assert restorer(path).restore(line) == restorer(path, fast=False).restore(line)
    event = b"data: " + record + b"\n\n"
    assert restorer(path).restore_event(event) == restorer(path, fast=False).restore_event(event)


@given(record=records())
def test_restoring_changes_only_top_level_model_values(record: bytes) -> None:
    before = json.loads(record)
    after = json.loads(restorer("/api/generate").restore(record))
    if isinstance(before.get("model"), str) and before["model"].lower() in (
        TARGET.lower(),
        "library/" + TARGET.lower(),
    ):
        before["model"] = "llmodel"
    if isinstance(before.get("error"), str):
        after["error"] = before["error"]  # error text is checked by the example tests
    assert after == before


@st.composite
def streams(draw: st.DrawFn) -> tuple[str, bytes]:
    media_type = draw(st.sampled_from(["application/x-ndjson", "text/event-stream"]))
    body = b""
    for record in draw(st.lists(records(), max_size=6)):
        if media_type == "application/x-ndjson":
            body += record + b"\n"
        else:
            end = draw(st.sampled_from([b"\n\n", b"\r\n\r\n", b"\r\r", b"\n\r\n"]))
            body += b"data: " + record + end
    if media_type == "text/event-stream" and draw(st.booleans()):
        body += b"data: [DONE]\n\n"
    if draw(st.booleans()):
        body += draw(st.binary(max_size=20))  # an unfinished last record
    return media_type, body


@given(stream=streams(), cuts=st.lists(st.integers(0, 4000), max_size=12))
def test_splitting_a_stream_anywhere_gives_the_same_output(
    stream: tuple[str, bytes], cuts: list[int]
) -> None:
    media_type, body = stream
    name_restorer = restorer("/v1/chat/completions")

    def run(chunks: list[bytes]) -> bytes:
        stream_restorer = StreamRestorer(name_restorer, media_type)
        output = b"".join(stream_restorer.feed(chunk) for chunk in chunks)
        return output + stream_restorer.finish()

    positions = sorted({0, len(body), *(c for c in cuts if c < len(body))})
    chunks = [body[a:b] for a, b in itertools.pairwise(positions)]
    assert run(chunks) == run([body])
    assert run([body[i : i + 1] for i in range(len(body))]) == run([body])


@st.composite
def ollama_lines(draw: st.DrawFn) -> bytes:
    """Several NDJSON records read at once: mostly as Ollama streams them, some not."""
    lines = b""
    for _ in range(draw(st.integers(1, 5))):
        names = st.one_of(st.just(TARGET), NAMES)  # mostly the target, as Ollama streams
        name, other, text = go_json(draw(names)), go_json(draw(names)), go_json(draw(TEXT))
        shapes = [
            b'{"model":%b,"created_at":"2026-11-24T00:00:00Z","response":%b,"done":false}'
            % (name, text),
            b'{"model":%b,"message":{"model":%b,"content":%b}}' % (name, other, text),
            b'{"model":%b,"response":%b,"model":%b}' % (name, text, other),
            b'{"done":true,"model":%b}' % name,
            b'{"model":%b,"\\u006dodel":%b}' % (name, other),  # a key escaped
            b'{"model":%b,"error":%b}' % (name, go_json(f"model '{TARGET}' not found")),
            draw(records()),
        ]
        index = draw(st.sampled_from([0, 0, 0, 0, 1, 2, 3, 4, 5, 6]))
        lines += shapes[index] + b"\n"
    return lines


@settings(max_examples=300)
@given(lines=ollama_lines())
def test_records_read_together_are_restored_as_one_by_one(lines: bytes) -> None:
    one_by_one = restorer("/api/generate", fast=False)
    expected = b"".join(one_by_one.restore(line) for line in lines.splitlines(keepends=True))
    restored = restorer("/api/generate").restore_lines(lines)
    assert restored is None or restored == expected
    stream_restorer = StreamRestorer(restorer("/api/generate"), "application/x-ndjson")
    assert stream_restorer.feed(lines) + stream_restorer.finish() == expected


def test_records_as_ollama_streams_them_are_restored_in_one_replace() -> None:
    line = b'{"model":"%b","response":"hi","done":false}\n' % TARGET.encode()
    restored = restorer("/api/generate").restore_lines(line * 3)
    assert restored == line.replace(TARGET.encode(), b"llmodel") * 3
