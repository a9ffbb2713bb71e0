"""Request bodies: the model is decided on the JSON as Ollama reads it, nothing else changes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ollama_default.core.aliases import AliasTable
from ollama_default.core.endpoints import find_endpoint
from ollama_default.core.errors import RequestError
from ollama_default.core.gojson import UTF8_SCALAR, encode, serialised
from ollama_default.core.request_body import _decide_parsed, _decide_spliced, decide_json

ALIASES = AliasTable(
    {"llmodel": "aya-expanse:8b-q8_0", "embed": "nomic-embed-text:latest"}, default="llmodel"
)
TARGET = "aya-expanse:8b-q8_0"


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
    assert decision.body == (
        b'{"prompt":"<b> hi","model":"aya-expanse:8b-q8_0","options":{"temperature":0.7,'
        b'"seed":12345678901234567890},"images":["aGk="],"keep_alive":-1}'
    )


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
    sent, _ = decide("/api/chat", body)
    if decided:
        assert sent == {"model": TARGET}  # and no other spelling of the key is left
    else:
        assert sent is None


def test_go_folds_the_kelvin_sign_and_long_s_like_ascii() -> None:
    # encoding/json fold.go: U+212A folds to k, U+017F to s.
    sent, _ = decide("/api/copy", '{"\u017fource":"llmodel"}'.encode())
    assert sent == {"source": TARGET}


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
        ("/api/show", b'{"name":"llmodel"}', {"model": TARGET}, ["llmodel"]),
        ("/api/show", b'{"model":"","name":"llmodel"}', {"model": TARGET}, ["llmodel"]),
        ("/api/show", b'{"model":"llama3.2","name":"llmodel"}', None, []),
        ("/api/pull", b'{"name":"llmodel"}', {"model": TARGET}, ["llmodel"]),
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


def test_invalid_utf8_reads_as_the_replacement_character_as_in_go() -> None:
    sent, _ = decide("/api/generate", b'{"model":"llmodel","prompt":"caf\xe9"}')
    assert sent == {"model": TARGET, "prompt": "caf\ufffd"}


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
    pytest.param(b'{"a":NaN}', "NaN is not valid JSON", id="nan"),
    pytest.param(b'{"a":1e999}', "number 1e999 is out of range", id="overflow"),
    pytest.param(b"[1,2]", "must be a JSON object, not an array", id="array"),
    pytest.param(b'"llmodel"', "must be a JSON object, not a string", id="string"),
    pytest.param(b"42", "must be a JSON object, not a number", id="number"),
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


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(document=st.dictionaries(st.text(), JSON_VALUES, max_size=5))
def test_both_encoders_write_the_same_bytes(document: dict[str, object]) -> None:
    # Bodies without duplicate keys take the C encoder, others the one keeping every member.
    out: list[str] = []
    encode(document, out, UTF8_SCALAR)
    assert serialised(document, UTF8_SCALAR) == "".join(out)


# The common request is decided by replacing its one model string in place: Go must read
# that body exactly as it reads the re-serialised one.

MODEL_NAMES = st.sampled_from(
    ["llmodel", "LLModel", "llmodel:latest", " llmodel ", "library/llmodel", "embed",
     "llama3.2", "", "  "]
)  # fmt: skip
KEYS = st.sampled_from(["model", "Model", "MODEL", "messages", "prompt"]) | st.text(max_size=6)


@st.composite
def chat_bodies(draw: st.DrawFn) -> bytes:
    """A JSON object as a client might write it: any member order, spacing and escaping."""
    members = draw(st.dictionaries(KEYS, JSON_VALUES, max_size=4))
    if draw(st.integers(0, 3)):  # mostly a model, mostly a name
        members["model"] = draw(st.one_of(MODEL_NAMES, MODEL_NAMES, JSON_VALUES))
    separators = draw(st.sampled_from([(",", ":"), (", ", ": "), (",", " : ")]))
    text = json.dumps(
        members,
        ensure_ascii=draw(st.booleans()),
        separators=separators,
        indent=draw(st.sampled_from([None, 2])),
    )
    return text.encode()


@settings(max_examples=400)  # about one body in ten takes the replacing path
@given(body=chat_bodies())
def test_replacing_the_model_string_decides_as_the_full_reading(body: bytes) -> None:
    endpoint = find_endpoint("/api/chat")
    assert endpoint is not None
    spliced = _decide_spliced(body, endpoint, ALIASES)
    if spliced is None:
        return  # not the common case: the full reading decides
    parsed = _decide_parsed(body, endpoint, ALIASES)
    assert spliced.renames == parsed.renames
    assert (spliced.body is None) == (parsed.body is None)
    if spliced.body is not None and parsed.body is not None:
        assert json.loads(spliced.body) == json.loads(parsed.body)


def test_a_client_written_request_keeps_its_bytes_but_the_model_string() -> None:
    endpoint = find_endpoint("/api/chat")
    assert endpoint is not None
    body = b'{"model": "llmodel", "messages": [{"role": "user", "content": "Hi\\nllmodel"}]}'
    decision = _decide_spliced(body, endpoint, ALIASES)
    assert decision is not None
    assert decision.body == body.replace(b'"llmodel"', b'"aya-expanse:8b-q8_0"', 1)


@pytest.mark.parametrize(
    "body",
    [
        b'{"model":"llmod\\u0065l"}',  # an escape
        b'{"model":"llama3.2","MODEL":"llmodel"}',  # two spellings of the key
        b'{"model":"llmodel"} trailing',  # bytes after the value
        b'{"model":"llmodel","prompt":"caf\xe9"}',  # not UTF-8
        b'{"model":"llmodel","n":1e999}',  # a number Go cannot hold
        b'{"options":{"model":"llmodel"}}',  # not the top-level key
    ],
)
def test_anything_unusual_is_left_to_the_full_reading(body: bytes) -> None:
    endpoint = find_endpoint("/api/chat")
    assert endpoint is not None
    assert _decide_spliced(body, endpoint, ALIASES) is None
