"""Request bodies: the model is decided on the JSON as Ollama reads it, nothing else changes.

Go's reading of what is sent on comes from ``go_json``, a model of it on the stdlib's parser,
independent of the byte scanner under test.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from unittest import mock

import go_json
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ollama_default.core import gojson
from ollama_default.core.aliases import AliasTable
from ollama_default.core.endpoints import find_endpoint
from ollama_default.core.errors import RequestError
from ollama_default.core.naming import RefusedName
from ollama_default.core.request_body import Decision, decide_json, decide_json_steps

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
        ("/api/delete", b'{"model":"llama3.2"}', None, []),
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


# --- What Go accepts, we accept ---------------------------------------------------------


def test_nesting_as_deep_as_go_allows_is_read_and_one_level_more_is_refused() -> None:
    endpoint = find_endpoint("/api/chat")
    assert endpoint is not None
    # Go's scanner allows 10,000 levels, the top-level object included.
    for opener, closer in ((b"[", b"]"), (b'{"a":', b"}")):
        deepest = b'{"model":"llmodel","x":' + opener * 9_999 + closer * 9_999 + b"}"
        decision = decide_json(deepest, endpoint, ALIASES)
        assert decision.body == deepest.replace(b'"llmodel"', b'"aya-expanse:8b-q8_0"', 1)
        too_deep = b'{"model":"llmodel","x":' + opener * 10_000 + closer * 10_000 + b"}"
        with pytest.raises(RequestError) as raised:
            decide_json(too_deep, endpoint, ALIASES)
        assert "exceeded max depth" in raised.value.message


@pytest.mark.parametrize(
    "value",
    [b"1e999", b"-1E+999", b"9" * 5_000, b"-" + b"1" * 100_000 + b".5e-99999", b"0.0"],
    ids=["1e999", "-1E+999", "5000-digits", "100000-digits", "zero"],
)
def test_any_number_json_allows_is_read_where_we_do_not_look(value: bytes) -> None:
    endpoint = find_endpoint("/api/generate")
    assert endpoint is not None
    for body in (
        b'{"model":"llmodel","options":{"seed":' + value + b"}}",
        b'{"model":"llmodel","seed":' + value + b"}",
        b'{"model":"llmodel","context":[' + value + b"," + value + b"]}",
    ):
        decision = decide_json(body, endpoint, ALIASES)
        assert decision.body == body.replace(b'"llmodel"', b'"aya-expanse:8b-q8_0"')


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"a":01}', "invalid character '1' after object key:value pair"),
        (b'{"a":-}', "invalid character '}' in numeric literal"),
        (b'{"a":1e}', "invalid character '}' in exponent of numeric literal"),
        (b'{"a":tru}', "invalid character '}' in literal true (expecting 'e')"),
        (b'{"a" 1}', "invalid character '1' after object key"),
        (b'{"a":1 "b":2}', "invalid character '\"' after object key:value pair"),
        (b"{a:1}", "invalid character 'a' looking for beginning of object key string"),
        (b'{"a\x01":1}', "invalid character '\\x01' in string literal"),
        (b'{"a\\x":1}', "invalid character 'x' in string escape code"),
        (b'{"model":"\\u12g4"}', "invalid character 'g' in \\u hexadecimal character escape"),
        (b'{"model":"a\nb"}', "invalid character '\\n' in string literal"),
        (b"\xef\xbb\xbf{}", "invalid character '\u00ef' looking for beginning of value"),
        (b'{"a":[1}', "invalid character '}' after array element"),
        (b'{"a":{"b":1]}', "invalid character ']' after object key:value pair"),
        (b'{"a":{"b"]}', "invalid character ']' after object key"),
        (b'{"a":[[]', "unexpected EOF"),
        (b'{"a":"b', "unexpected EOF"),
        (b"[", "unexpected EOF"),
    ],
)
def test_refusals_are_worded_as_go_words_them(body: bytes, message: str) -> None:
    endpoint = find_endpoint("/api/chat")
    assert endpoint is not None
    with pytest.raises(RequestError) as raised:
        decide_json(body, endpoint, ALIASES)
    assert raised.value.status == 400
    assert raised.value.message == f"invalid JSON in request body: {message}"


def test_a_null_member_after_the_winner_is_left_and_a_null_alone_gets_the_target() -> None:
    endpoint = find_endpoint("/api/chat")
    assert endpoint is not None
    assert decide_json(b'{"model":"llmodel","model":null}', endpoint, ALIASES).body == (
        b'{"model":"aya-expanse:8b-q8_0","model":null}'
    )
    assert decide_json(b'{ "a":1, "Model":null, "b":2 }', endpoint, ALIASES).body == (
        b'{ "a":1, "Model":"aya-expanse:8b-q8_0", "b":2 }'
    )
    assert decide_json(b'{"a":1,"name":"x"}', endpoint, ALIASES).body == (
        b'{"model":"aya-expanse:8b-q8_0","a":1,"name":"x"}'
    )
    assert decide_json(b"{ }", endpoint, ALIASES).body == b'{"model":"aya-expanse:8b-q8_0" }'


# --- Properties: what the upstream receives is read by Go as the model decided --------

MODEL_NAMES = [
    "llmodel", "LLModel", "llmodel:latest", " llmodel ", "library/llmodel", "embed",
    "llama3.2", "", "  ", "llmod\\u0065l", "\\ud800", "caf\xe9", r'a\\\"b', r"\u006c\u006cmodel",
]  # fmt: skip
KEY_SPELLINGS = {
    "model": ["model", "Model", "MODEL", "mode\\u006c", "\\u004dODEL", "mOdEl"],
    "name": ["name", "NAME", "n\\u0061me"],
    "source": ["source", "\u017fource", "SOURCE", "\\u017fource"],
    "destination": ["destination", "de\u017ftination", "Destination"],
    "from": ["from", "FROM", "fro\\u006d"],
}
OTHER_KEYS = ["messages", "prompt", "stream", "modeL2", "mode", "models", "\u212aey", ""]
WHITESPACE = st.sampled_from(["", "", " ", "\n  ", "\t", "\r\n"])
PATHS = ["/api/chat", "/api/generate", "/api/show", "/api/pull", "/api/create", "/api/copy"]

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["[", "]", "{}", '"', "\\", "\\u", "model", '{"model":"llmodel"}'])
)
NESTED = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def json_text(draw: st.DrawFn) -> str:
    """A value as text: written by json.dumps in its ways, or a raw number or string."""
    kind = draw(st.integers(0, 9))
    if kind < 4:
        return '"' + draw(st.sampled_from(MODEL_NAMES)) + '"'
    if kind == 4:
        return draw(st.sampled_from(["null", "1e999", "-0.5E+10", "9" * 60, "0", "true"]))
    value = draw(NESTED)
    return json.dumps(
        value, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 1]))
    )


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """An object as a client might write it: keys of every spelling Go folds, duplicates,
    nulls, nesting, numbers Python cannot hold, odd spacing, trailing bytes."""
    members = []
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.booleans()):
            key = draw(st.sampled_from([k for ks in KEY_SPELLINGS.values() for k in ks]))
        else:
            key = draw(
                st.sampled_from(OTHER_KEYS) | st.text(max_size=4).map(lambda t: json.dumps(t)[1:-1])
            )
        ws = [draw(WHITESPACE) for _ in range(3)]
        members.append(f'{ws[0]}"{key}"{ws[1]}:{ws[2]}{draw(json_text())}')
    text = "{" + ",".join(members) + draw(WHITESPACE) + "}"
    if draw(st.integers(0, 9)) == 0:
        text = "null"
    trailing = draw(st.sampled_from(["", "", " ", " trailing", "}", ',"model":"llmodel"}', "\x00"]))
    return (
        (draw(WHITESPACE) + text + trailing)
        .encode("utf-8", "surrogatepass")
        .replace("\xe9".encode(), b"\xe9")
    )


def expected_references(members: go_json.Members | None, path: str) -> list[object]:
    endpoint = find_endpoint(path)
    assert endpoint is not None
    return [go_json.reference(members, keys) for keys in endpoint.model_fields]


def check_decision(body: bytes, path: str) -> None:
    """The property: decide_json agrees with Go's reading, and Go reads what was decided."""
    endpoint = find_endpoint(path)
    assert endpoint is not None
    try:
        members = go_json.read(body)
        go_refuses = False
    except go_json.Unreadable:
        members, go_refuses = None, True
    except go_json.GivesUp:
        return
    if not body.strip(b" \t\r\n"):
        assert decide_json(body, endpoint, ALIASES) == Decision(None, ())
        return
    try:
        decision = decide_json(body, endpoint, ALIASES)
    except RefusedName as error:
        # An alias where a model would be made, removed or published: Go reads it there
        # (or refuses the body for a fault nested deeper, which we do not look for).
        assert error.status == 403
        if not go_refuses:
            held = [
                name
                for keys, name in zip(
                    endpoint.model_fields, expected_references(members, path), strict=True
                )
                if keys[0] in endpoint.destination_fields
            ]
            assert any(isinstance(n, str) and ALIASES.resolve(n) for n in held), held
        return
    except RequestError as error:
        assert go_refuses, error.message
        assert error.status == 400
        assert "Error" not in error.message and "Traceback" not in error.message
        return
    sent = body if decision.body is None else decision.body
    if go_refuses:
        # Only errors inside nested values go on unseen, and Go still sees them.
        with pytest.raises(go_json.Unreadable):
            go_json.read(sent)
        return
    upstream = go_json.read(sent)
    renames: list[str | None] = []
    edited: list[str] = []
    for keys, name, got in zip(
        endpoint.model_fields,
        expected_references(members, path),
        expected_references(upstream, path),
        strict=True,
    ):
        if not isinstance(name, str):
            assert got == name  # not a string: Ollama refuses it, we leave it
            continue
        if not name.strip():
            rename = ALIASES.default if endpoint.takes_default else None
            client_name = rename.alias if rename else None
        else:
            rename, client_name = ALIASES.resolve(name), name
        if rename is None:
            assert got == name
        else:
            assert got == rename.target
            renames.append(client_name)
            edited.extend(keys)

    def kept(members: go_json.Members | None) -> list[tuple[str, object]]:
        folded = {go_json.go_fold(key) for key in edited}
        return [(k, v) for k, v in members or () if go_json.go_fold(k) not in folded]

    assert kept(upstream) == kept(members)  # every member for another field is as it was
    assert [rename.client_name for rename in decision.renames] == renames
    assert (decision.body is None) == (not renames)


@settings(max_examples=400, deadline=None)
@given(body=bodies(), path=st.sampled_from(PATHS))
def test_the_upstream_reads_the_model_decided(body: bytes, path: str) -> None:
    check_decision(body, path)


@settings(max_examples=300, deadline=None)
@given(body=bodies(), path=st.sampled_from(PATHS), data=st.data())
def test_a_damaged_body_is_refused_or_still_refused_by_go_after_the_edit(
    body: bytes, path: str, data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, len(body)))
    damage = data.draw(
        st.sampled_from([b"", b",", b"]", b"}", b"[", b"{", b'"', b"\\", b":", b"x", b" "])
    )
    cut = data.draw(st.integers(0, 2))
    check_decision(body[:at] + damage + body[at + cut :], path)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=64), path=st.sampled_from(PATHS))
def test_no_bytes_raise_anything_but_a_request_error(body: bytes, path: str) -> None:
    check_decision(body, path)


@settings(max_examples=300, deadline=None)
@given(body=bodies(), path=st.sampled_from(PATHS), data=st.data())
def test_the_bulk_bracket_count_reads_as_the_exact_walk(
    body: bytes, path: str, data: st.DataObject
) -> None:
    # Chunks of a few bytes, so that containers in these small bodies go through the
    # counting in chunks and its narrowing down, as those of megabytes do.
    sizes = {
        "_WALK_BYTES": data.draw(st.integers(1, 8)),
        "_FIRST_CHUNK_BYTES": data.draw(st.integers(1, 16)),
        "_LARGEST_CHUNK_BYTES": data.draw(st.integers(16, 64)),
    }
    if data.draw(st.booleans()):
        at = data.draw(st.integers(0, len(body)))
        body = body[:at] + data.draw(st.sampled_from([b"]", b"}", b"[", b"{", b'"'])) + body[at:]
    with contextlib.ExitStack() as patches:
        for name, size in sizes.items():
            patches.enter_context(mock.patch.object(gojson, name, size))
        check_decision(body, path)


def test_a_large_body_of_mixed_shapes_reads_as_go_reads_it() -> None:
    parts = [b"[]", b'{"a":[{}]}', b"[" * 300 + b'"]}"' + b"]" * 300, b'"x\\\\"', b"1e999"]
    value = b"[" + b",".join(parts * 400) + b"]"  # some 250 KB: several chunks
    body = b'{"model":"llmodel","x":' + value + b',"model":null,"y":' + value + b"}"
    check_decision(body, "/api/chat")
    for damage in (b"}", b"]", b"[{"):
        at = len(body) // 2 + 12_345
        damaged = body[:at] + damage + body[at:]
        check_decision(damaged, "/api/chat")


# --- Properties: the bulk paths read as the member-by-member one, and as Go ----------------

DEEP = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["a", "model", "Name", "n\\u0061me", ""]), inner, max_size=3
        )
    ),
    max_leaves=16,
)


@st.composite
def member_values(draw: st.DrawFn) -> str:
    """A member's value: any of json_text's, nested deep, or brackets alone many levels deep."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(json_text())
    if kind == 1:
        return json.dumps(draw(DEEP), ensure_ascii=draw(st.booleans()))
    depth = draw(st.integers(1, 12))
    opener = draw(st.sampled_from(["[", '{"model":']))
    closer = "]" if opener == "[" else "}"
    return opener * depth + draw(st.sampled_from(["", "1", '"x"', "[]", "{}"])) + closer * depth


@st.composite
def many_members(draw: st.DrawFn) -> bytes:
    """An object of up to some forty members, fields among them or not, so that with steps
    of a few bytes its members are read, skipped and checked in every way."""
    members = []
    for _ in range(draw(st.integers(0, 40))):
        if draw(st.integers(0, 3)) == 0:
            key = draw(st.sampled_from([k for ks in KEY_SPELLINGS.values() for k in ks]))
        else:
            key = draw(st.sampled_from(OTHER_KEYS))
        ws = [draw(WHITESPACE) for _ in range(3)]
        members.append(f'{ws[0]}"{key}"{ws[1]}:{ws[2]}{draw(member_values())}')
    text = "{" + ",".join(members) + draw(WHITESPACE) + "}"
    return text.encode("utf-8", "surrogatepass").replace("\xe9".encode(), b"\xe9") + draw(
        st.sampled_from([b"", b" ", b"]", b'"', b'"[{', b',"model":"llmodel"}'])
    )


@contextlib.contextmanager
def small_steps(data: st.DataObject) -> Iterator[None]:
    """Windows, slices, chunks and nesting of a few bytes or levels, so that the bulk paths
    run on small generated bodies as on bodies of megabytes."""
    sizes = {
        "_FIRST_WINDOW_BYTES": data.draw(st.integers(1, 64)),
        "SLICE_BYTES": data.draw(st.integers(1, 256)),
        "_DEEP_MEMBER_BYTES": data.draw(st.integers(1, 64)),
        "_CHECKED_LEVELS": data.draw(st.integers(1, 4)),
        "_WALK_BYTES": data.draw(st.integers(1, 8)),
        "_FIRST_CHUNK_BYTES": data.draw(st.integers(1, 16)),
        "_LARGEST_CHUNK_BYTES": data.draw(st.integers(16, 64)),
    }
    with contextlib.ExitStack() as patches:
        for name, size in sizes.items():
            patches.enter_context(mock.patch.object(gojson, name, size))
        yield


def outcome(body: bytes, path: str) -> Decision | tuple[str, int]:
    """The decision on a body, or the refusal's words and the offset of the byte they name."""
    endpoint = find_endpoint(path)
    assert endpoint is not None
    try:
        return decide_json(body, endpoint, ALIASES)
    except RequestError as error:
        return error.message, getattr(error, "at", -1)


def check_bulk_reading(body: bytes, path: str, data: st.DataObject) -> None:
    """The property: read in small steps, a body reads as Go reads it; one Go reads is decided
    as member by member; only one refused member by member is refused, and then with the same
    words when those name the byte Go stops at (Go's words for its first error)."""
    by_members = outcome(body, path)
    with small_steps(data):
        check_decision(body, path)
        in_steps = outcome(body, path)
    try:
        go_json.read(body)
    except go_json.Unreadable as refusal:
        # Members skipped in bulk go on unread, so a body may be refused member by member
        # and go on in steps (Go refuses it). Inside nested values only brackets and string
        # ends are read: an error there can make a reading stop at a later byte, where the
        # two may differ.
        if isinstance(in_steps, tuple):
            assert isinstance(by_members, tuple)
            if by_members[1] == refusal.at:
                assert in_steps == by_members
        return
    except go_json.GivesUp:
        return
    assert in_steps == by_members


@settings(max_examples=400, deadline=None)
@given(body=many_members(), path=st.sampled_from(PATHS), data=st.data())
def test_members_read_in_bulk_read_as_go_reads_them(
    body: bytes, path: str, data: st.DataObject
) -> None:
    check_bulk_reading(body, path, data)


@settings(max_examples=300, deadline=None)
@given(body=many_members(), path=st.sampled_from(PATHS), data=st.data())
def test_a_damaged_body_read_in_bulk_is_refused_in_go_words_or_still_refused_by_go(
    body: bytes, path: str, data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, len(body)))
    damage = data.draw(
        st.sampled_from([b"", b",", b"]", b"}", b"[", b"{", b'"', b"\\", b":", b"x", b" ", b"\x01"])
    )
    cut = data.draw(st.integers(0, 2))
    check_bulk_reading(body[:at] + damage + body[at + cut :], path, data)


# --- Steps: a large body is decided in slices of bounded work ----------------------------

MESSAGE = b'{"role":"user","content":"Hello there, how are you today?\\nI am fine."},'
LARGE_BODIES = {
    "messages": b'{"model":"llmodel","messages":[' + MESSAGE * 60_000 + b'{"role":"user"}]}',
    "members": b"{" + b'"a":[[[[]]]],"model":"llama3.2",' * 150_000 + b'"model":"llmodel"}',
    "deep": b'{"model":"llmodel","x":[' + (b"[" * 9_000 + b"]" * 9_000 + b",") * 250 + b"1]}",
}


@pytest.mark.parametrize("shape", LARGE_BODIES)
def test_a_large_body_is_decided_in_steps_of_a_slice_of_work(shape: str) -> None:
    body = LARGE_BODIES[shape]
    endpoint = find_endpoint("/api/chat")
    assert endpoint is not None
    steps = decide_json_steps(body, endpoint, ALIASES)
    reached = []
    while True:
        try:
            reached.append(next(steps))
        except StopIteration as done:
            decision = done.value
            break
    assert len(reached) >= len(body) // gojson.SLICE_BYTES - 1
    assert reached == sorted(reached)
    assert decision == decide_json(body, endpoint, ALIASES)
    assert decision.model == TARGET


def test_a_small_body_is_decided_in_one_step() -> None:
    endpoint = find_endpoint("/api/chat")
    assert endpoint is not None
    steps = decide_json_steps(
        b'{"model":"llmodel","messages":[' + MESSAGE * 100 + b"{}]}", endpoint, ALIASES
    )
    with pytest.raises(StopIteration) as done:
        next(steps)
    assert done.value.value.model == TARGET
