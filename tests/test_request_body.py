"""Request bodies: the model is decided on the JSON as Ollama reads it, nothing else changes.

Go's reading of what is sent on comes from ``go_json``, a model of it on the stdlib's parser,
independent of the byte scanner under test.
"""

from __future__ import annotations

import json

import go_json
import pytest
from werkzeug.test import encode_multipart

from ollama_default.core.aliases import AliasTable
from ollama_default.core.endpoints import find_endpoint
from ollama_default.core.errors import RequestError
from ollama_default.core.request_body import decide_json, decide_multipart

ALIASES = AliasTable(
    {"llmodel": "aya-expanse:8b-q8_0", "embed": "nomic-embed-text:latest"}, default="llmodel"
)
TARGET = "aya-expanse:8b-q8_0"


def go_reads(path: str, body: bytes) -> tuple[object, list[str]]:
    """Return (the model references Go reads from the body sent on, or None when it is
    unchanged; the client names)."""
    endpoint = find_endpoint(path)
    assert endpoint is not None
    decision = decide_json(body, endpoint, ALIASES)
    if decision.body is None:
        return None, [rename.client_name for rename in decision.renames]
    members = go_json.read(decision.body)
    read = [go_json.reference(members, keys) for keys in endpoint.model_fields]
    return read, [rename.client_name for rename in decision.renames]


def decide(path: str, body: bytes) -> tuple[object, list[str]]:
    """Return (the body sent on, parsed, or None when unchanged; the client names)."""
    endpoint = find_endpoint(path)
    assert endpoint is not None
    decision = decide_json(body, endpoint, ALIASES)
    sent = None if decision.body is None else json.loads(decision.body)
    return sent, [rename.client_name for rename in decision.renames]


@pytest.mark.parametrize(
    "path",
    [
        "/api/generate",
        "/api/chat",
        "/api/embed",
        "/api/embeddings",
        "/api/show",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/messages",
    ],
)
def test_an_alias_becomes_its_target_on_every_inference_endpoint(path: str) -> None:
    sent, names = decide(path, b'{"model":"llmodel","stream":false}')
    assert sent == {"model": TARGET, "stream": False}
    assert names == ["llmodel"]


@pytest.mark.parametrize(
    "body",
    [b"{}", b'{"model":null}', b'{"model":""}', b'{"model":"  "}', b"null"],
    ids=["missing", "null", "empty", "blank", "null-body"],
)
def test_a_request_without_a_model_gets_the_default(body: bytes) -> None:
    sent, names = decide("/api/chat", body)
    assert sent == {"model": TARGET}
    assert names == ["llmodel"]


@pytest.mark.parametrize(
    "path", ["/api/pull", "/api/push", "/api/delete", "/api/create", "/api/copy"]
)
def test_management_endpoints_never_get_the_default(path: str) -> None:
    assert decide(path, b"{}") == (None, [])


def test_a_real_model_passes_through_untouched() -> None:
    assert decide("/api/chat", b'{"model":"aya-expanse:8b-q8_0"}') == (None, [])
    assert decide("/api/chat", b'{"model":"llama3.2"}') == (None, [])


def test_the_alias_in_message_text_stays() -> None:
    body = b'{"model":"llmodel","messages":[{"role":"user","content":"Are you llmodel?"}]}'
    sent, _ = decide("/api/chat", body)
    assert sent == {
        "model": TARGET,
        "messages": [{"role": "user", "content": "Are you llmodel?"}],
    }


def test_everything_but_the_model_is_sent_as_it_came() -> None:
    body = (
        b'{"prompt":"\\u003cb\\u003e hi","model":"llmodel","options":{"temperature":0.7,'
        b'"seed":12345678901234567890},"images":["aGk="],"keep_alive":-1}'
    )
    endpoint = find_endpoint("/api/generate")
    assert endpoint is not None
    decision = decide_json(body, endpoint, ALIASES)
    assert decision.body == body.replace(b'"llmodel"', b'"aya-expanse:8b-q8_0"')


@pytest.mark.parametrize(
    ("body", "client_name"),
    [
        (b'{"model":"llmod\\u0065l"}', "llmodel"),
        (b'{ "model" :\n "llmodel:latest" }', "llmodel:latest"),
        (b'{"model":"LLModel"}', "LLModel"),
        (b'{"model":"library/llmodel"}', "library/llmodel"),
    ],
    ids=["escaped", "whitespace", "case", "namespace"],
)
def test_the_alias_is_recognised_on_the_parsed_json(body: bytes, client_name: str) -> None:
    assert decide("/api/chat", body) == ({"model": TARGET}, [client_name])


# Go's encoding/json: keys match fields case-insensitively, the last one wins, and
# null leaves a string field as it was (golang/go#11673, #43664).
@pytest.mark.parametrize(
    ("body", "decided"),
    [
        (b'{"model":"llama3.2","model":"llmodel"}', True),
        (b'{"model":"llmodel","model":"llama3.2"}', False),
        (b'{"model":"llama3.2","MODEL":"llmodel"}', True),
        (b'{"Model":"llmodel","model":"llama3.2"}', False),
        (b'{"model":"llmodel","model":null}', True),
        (b'{"mode\\u004c":"llmodel"}', True),
    ],
    ids=["last-wins", "last-wins-real", "case-folded", "case-folded-real", "null-no-effect", "esc"],
)
def test_duplicate_keys_resolve_as_go_resolves_them(body: bytes, decided: bool) -> None:
    read, _ = go_reads("/api/chat", body)
    assert read == ([TARGET] if decided else None)


def test_only_the_value_go_reads_is_replaced_the_losers_stay_as_sent() -> None:
    endpoint = find_endpoint("/api/chat")
    assert endpoint is not None
    body = b'{"model":"llama3.2", "MODEL" : "llmodel","Model":null}'
    decision = decide_json(body, endpoint, ALIASES)
    assert decision.body == b'{"model":"llama3.2", "MODEL" : "aya-expanse:8b-q8_0","Model":null}'


def test_go_folds_the_kelvin_sign_and_long_s_like_ascii() -> None:
    # encoding/json fold.go: U+212A folds to k, U+017F to s.
    assert decide("/api/copy", '{"\u017fource":"llmodel"}'.encode()) == (
        {"\u017fource": TARGET},
        ["llmodel"],
    )
    assert decide("/api/copy", '{"source":"llama3.2","\u017fource":"llmodel"}'.encode())[1] == [
        "llmodel"
    ]


def test_other_duplicate_members_are_kept_in_order_for_the_app_to_read() -> None:
    endpoint = find_endpoint("/api/generate")
    assert endpoint is not None
    body = b'{"prompt":"a","model":"llmodel","prompt":"b","Prompt":"c"}'
    decision = decide_json(body, endpoint, ALIASES)
    assert decision.body == (
        b'{"prompt":"a","model":"aya-expanse:8b-q8_0","prompt":"b","Prompt":"c"}'
    )


@pytest.mark.parametrize(
    ("path", "body", "sent", "names"),
    [
        ("/api/show", b'{"name":"llmodel"}', {"name": TARGET}, ["llmodel"]),
        ("/api/show", b'{"model":"","name":"llmodel"}', {"model": "", "name": TARGET}, ["llmodel"]),
        ("/api/show", b'{"model":"llama3.2","name":"llmodel"}', None, []),
        ("/api/pull", b'{"name":"llmodel"}', {"name": TARGET}, ["llmodel"]),
        ("/api/delete", b'{"model":"embed"}', {"model": "nomic-embed-text:latest"}, ["embed"]),
        (
            "/api/copy",
            b'{"source":"llmodel","destination":"backup"}',
            {"source": TARGET, "destination": "backup"},
            ["llmodel"],
        ),
        (
            "/api/create",
            b'{"model":"mario","from":"llmodel"}',
            {"model": "mario", "from": TARGET},
            ["llmodel"],
        ),
    ],
    ids=["show-name", "show-empty-model", "show-model-wins", "pull", "delete", "copy", "create"],
)
def test_every_field_that_names_a_model(
    path: str, body: bytes, sent: object, names: list[str]
) -> None:
    assert decide(path, body) == (sent, names)


def test_trailing_bytes_after_the_json_are_dropped_as_ollama_ignores_them() -> None:
    assert decide("/api/chat", b'{"model":"llmodel"} trailing') == ({"model": TARGET}, ["llmodel"])


def test_invalid_utf8_is_carried_on_as_sent_go_reads_it_as_the_replacement_character() -> None:
    endpoint = find_endpoint("/api/generate")
    assert endpoint is not None
    decision = decide_json(b'{"model":"llmodel","prompt":"caf\xe9"}', endpoint, ALIASES)
    assert decision.body == b'{"model":"aya-expanse:8b-q8_0","prompt":"caf\xe9"}'
    assert go_json.field(go_json.read(decision.body), "prompt") == "caf\ufffd"


def test_invalid_utf8_in_the_model_reads_as_one_replacement_character_per_byte() -> None:
    # Go's unquote: utf8.DecodeRune gives RuneError of width 1 for each byte of
    # an invalid sequence (Python's "replace" would give one for the whole sequence).
    endpoint = find_endpoint("/api/chat")
    assert endpoint is not None
    decision = decide_json(b'{"model":"x\xe2\x82y\xff"}', endpoint, ALIASES)
    assert decision.model == "x\ufffd\ufffdy\ufffd"
    assert decision.body is None


def test_a_lone_surrogate_escape_in_the_model_reads_as_the_replacement_character() -> None:
    endpoint = find_endpoint("/api/chat")
    assert endpoint is not None
    for body, model in [
        (b'{"model":"a\\ud800b"}', "a\ufffdb"),
        (b'{"model":"\\udc00\\ud800"}', "\ufffd\ufffd"),
        (b'{"model":"\\ud83d\\ude00"}', "\U0001f600"),
        (b'{"model":"llmod\\u0065l"}', TARGET),
    ]:
        assert decide_json(body, endpoint, ALIASES).model == model


def test_a_lone_surrogate_escape_is_carried_on_escaped() -> None:
    endpoint = find_endpoint("/api/generate")
    assert endpoint is not None
    decision = decide_json(b'{"model":"llmodel","prompt":"\\ud800"}', endpoint, ALIASES)
    assert decision.body == b'{"model":"aya-expanse:8b-q8_0","prompt":"\\ud800"}'


def test_an_empty_body_is_left_for_ollama_to_refuse() -> None:
    assert decide("/api/chat", b"") == (None, [])
    assert decide("/api/chat", b" \n") == (None, [])


def test_a_model_that_is_not_a_string_is_left_for_ollama_to_refuse() -> None:
    assert decide("/api/chat", b'{"model":42}') == (None, [])


# The bad-input table of the reference docs, request side (docs/reference.rst).
BAD_BODIES = [
    pytest.param(b"{", "invalid JSON in request body", id="malformed"),
    pytest.param(b'{"model":"llmodel",}', "invalid JSON in request body", id="trailing-comma"),
    pytest.param(b'{"a":NaN}', "invalid character 'N' looking for beginning of value", id="nan"),
    pytest.param(b'{"a":1.}', "invalid character '}' after decimal point", id="number"),
    pytest.param(b"[1,2]", "must be a JSON object, not an array", id="array"),
    pytest.param(b'"llmodel"', "must be a JSON object, not a string", id="string"),
    pytest.param(b"42", "must be a JSON object, not a number", id="number-body"),
    pytest.param(b"\xff\xfe{", "invalid JSON in request body", id="not-utf8"),
]


@pytest.mark.parametrize(("body", "message"), BAD_BODIES)
def test_a_body_ollama_cannot_read_is_a_400(body: bytes, message: str) -> None:
    endpoint = find_endpoint("/api/chat")
    assert endpoint is not None
    with pytest.raises(RequestError) as raised:
        decide_json(body, endpoint, ALIASES)
    assert raised.value.status == 400
    assert message in raised.value.message


def multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    boundary, body = encode_multipart(fields)
    return body, f"multipart/form-data; boundary={boundary}"


def test_a_transcription_form_field_alias_becomes_its_target() -> None:
    endpoint = find_endpoint("/v1/audio/transcriptions")
    assert endpoint is not None
    body, content_type = multipart({"model": "llmodel", "language": "en"})
    decision = decide_multipart(body, content_type, endpoint, ALIASES)
    assert decision.body == body.replace(b"\r\nllmodel\r\n", f"\r\n{TARGET}\r\n".encode())


def test_a_transcription_form_without_model_gets_the_default_field() -> None:
    endpoint = find_endpoint("/v1/audio/transcriptions")
    assert endpoint is not None
    body, content_type = multipart({"language": "en"})
    decision = decide_multipart(body, content_type, endpoint, ALIASES)
    assert decision.body is not None
    assert b'name="model"\r\n\r\n' + TARGET.encode() + b"\r\n" in decision.body
    assert b'name="language"\r\n\r\nen\r\n' in decision.body


def test_a_broken_multipart_form_is_a_400() -> None:
    endpoint = find_endpoint("/v1/audio/transcriptions")
    assert endpoint is not None
    body, content_type = multipart({"model": "llmodel"})
    with pytest.raises(RequestError) as raised:
        decide_multipart(body[:-10], content_type, endpoint, ALIASES)
    assert raised.value.status == 400


def test_a_multipart_part_without_a_name_is_a_400() -> None:
    endpoint = find_endpoint("/v1/audio/transcriptions")
    assert endpoint is not None
    body = (
        b'--b\r\nContent-Disposition: form-data; name="\r\n\r\nllmodel\r\n'
        b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nllmodel\r\n--b--\r\n'
    )
    with pytest.raises(RequestError) as raised:
        decide_multipart(body, "multipart/form-data; boundary=b", endpoint, ALIASES)
    assert raised.value.status == 400
    assert "a part has no name" in raised.value.message


