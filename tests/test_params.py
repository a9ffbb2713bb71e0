"""Per-alias parameters: what Ollama reads from the body sent on, per mode and endpoint family.

Each row gives an alias's parameters and what the client sent; the body sent on is read the
way Go reads it (``go_json``: duplicate keys, ``null`` on pointers, ``options`` objects merging
into one map), independently of the code under test.
"""

from __future__ import annotations

import json
from typing import Any

import go_json
import pytest

from ollama_default import Alias, AliasTable, ConfigError, DefaultModel
from ollama_default.core.endpoints import ENDPOINTS, find_endpoint
from ollama_default.core.gojson import array_elements
from ollama_default.core.params import (
    PARAMETERS,
    PLACES,
    LoadTimeConflictWarning,
    family_fields,
)
from ollama_default.core.request_body import decide_json

TARGET = "aya-expanse:8b-q8_0"
SYSTEM = "You are terse."


def cases(rows: list[tuple[Any, ...]]) -> list[Any]:
    """Table rows as test cases, the first cell the id."""
    return [pytest.param(*row[1:], id=row[0]) for row in rows]


def table(**params: Any) -> AliasTable:
    return AliasTable({"llmodel": Alias(TARGET, **params), "plain": "llama3.2"}, default="llmodel")


def sent(path: str, body: str, **params: Any) -> go_json.Members:
    """The members Go reads from the body sent on for ``body`` through alias ``llmodel``."""
    endpoint = find_endpoint(path)
    assert endpoint is not None
    decision = decide_json(body.encode(), endpoint, table(**params))
    members = go_json.read(decision.body if decision.body is not None else body.encode())
    assert members is not None
    assert go_json.field(members, "model") == TARGET
    return members


def options(path: str, body: str, **params: Any) -> dict[str, Any]:
    return go_json.plain(go_json.options(sent(path, body, **params)))  # type: ignore[no-any-return]


def pointer(path: str, body: str, key: str, **params: Any) -> Any:
    return go_json.plain(go_json.pointer(sent(path, body, **params), key))


def plain_field(path: str, body: str, key: str, **params: Any) -> Any:
    """A plain (non-pointer) string or number field: ``null`` leaves it as it was."""
    return go_json.plain(go_json.field(sent(path, body, **params), key))


def generate(members: str) -> str:
    return '{"model":"llmodel","prompt":"hi"' + (f",{members}" if members else "") + "}"


# --- Options: one map, merged --------------------------------------------------------------

OPTION_CASES = [
    # (id, alias params, client members, options Ollama uses)
    ("default/absent", {"defaults": {"temperature": 0.5}}, "", {"temperature": 0.5}),
    ("default/present", {"defaults": {"temperature": 0.5}}, '"options":{"temperature":0.9}',
     {"temperature": 0.9}),
    ("default/null", {"defaults": {"temperature": 0.5}}, '"options":null', {"temperature": 0.5}),
    ("default/value-then-null", {"defaults": {"temperature": 0.5}},
     '"options":{"temperature":0.9},"options":null', {"temperature": 0.5}),
    ("default/null-then-value", {"defaults": {"temperature": 0.5}},
     '"options":null,"options":{"top_k":3}', {"temperature": 0.5, "top_k": 3}),
    ("default/duplicated", {"defaults": {"temperature": 0.5, "top_k": 7}},
     '"options":{"temperature":0.9},"options":{"top_k":3}', {"temperature": 0.9, "top_k": 3}),
    ("default/option-null", {"defaults": {"temperature": 0.5}}, '"options":{"temperature":null}',
     {}),
    ("override/absent", {"overrides": {"num_ctx": 8192}}, "", {"num_ctx": 8192}),
    ("override/present", {"overrides": {"num_ctx": 8192}}, '"options":{"num_ctx":4096,"top_k":3}',
     {"num_ctx": 8192, "top_k": 3}),
    ("override/duplicated", {"overrides": {"num_ctx": 8192}},
     '"options":{"num_ctx":4096},"options":{"num_ctx":2048}', {"num_ctx": 8192}),
    ("override/null", {"overrides": {"num_ctx": 8192}}, '"options":null', {"num_ctx": 8192}),
    ("override/stop", {"overrides": {"stop": ["\n\n"]}}, '"options":{"stop":["x"]}',
     {"stop": ["\n\n"]}),
    ("strip/present", {"strip": ["seed"]}, '"options":{"seed":3,"top_k":1}', {"top_k": 1}),
    ("strip/absent", {"strip": ["seed"]}, "", {}),
    ("strip/duplicated", {"strip": ["seed"]}, '"options":{"seed":3},"options":{"seed":4}', {}),
    ("all-three", {"defaults": {"temperature": 0.5}, "overrides": {"num_ctx": 8192},
                   "strip": ["seed"]},
     '"options":{"seed":1,"temperature":0.7}', {"temperature": 0.7, "num_ctx": 8192}),
]  # fmt: skip


@pytest.mark.parametrize("path", ["/api/generate", "/api/chat", "/api/embed", "/api/embeddings"])
@pytest.mark.parametrize(("params", "members", "expected"), cases(OPTION_CASES))
def test_options_as_ollama_reads_them(
    path: str, params: dict[str, Any], members: str, expected: dict[str, Any]
) -> None:
    assert options(path, generate(members), **params) == expected


# --- Top-level fields ----------------------------------------------------------------------

TOP_CASES = [
    # (id, alias params, client members, key, value Ollama reads; None: not set)
    ("default/absent", {"defaults": {"keep_alive": "5m"}}, "", "keep_alive", "5m"),
    ("default/present", {"defaults": {"keep_alive": "5m"}}, '"keep_alive":"1h"', "keep_alive",
     "1h"),
    ("default/null", {"defaults": {"keep_alive": "5m"}}, '"keep_alive":null', "keep_alive", "5m"),
    ("default/value-then-null", {"defaults": {"keep_alive": 300}},
     '"keep_alive":"1h","keep_alive":null', "keep_alive", 300),
    ("default/folded-key", {"defaults": {"keep_alive": "5m"}}, '"Keep_Alive":"1h"', "keep_alive",
     "1h"),
    ("override/present", {"overrides": {"keep_alive": "30m"}}, '"keep_alive":0', "keep_alive",
     "30m"),
    ("override/absent", {"overrides": {"keep_alive": -1}}, "", "keep_alive", -1),
    ("override/think", {"overrides": {"think": "low"}}, '"think":true', "think", "low"),
    ("override/format", {"overrides": {"format": {"type": "object"}}}, '"format":"json"', "format",
     {"type": "object"}),
    ("strip/think", {"strip": ["think"]}, '"think":true', "think", None),
    ("strip/keep_alive", {"strip": ["keep_alive"]}, '"keep_alive":"1h","keep_alive":"2h"',
     "keep_alive", None),
    ("strip/format", {"strip": ["format"]}, '"format":"json"', "format", None),
]  # fmt: skip


@pytest.mark.parametrize("path", ["/api/generate", "/api/chat"])
@pytest.mark.parametrize(("params", "members", "key", "expected"), cases(TOP_CASES))
def test_top_level_fields_as_ollama_reads_them(
    path: str, params: dict[str, Any], members: str, key: str, expected: Any
) -> None:
    assert pointer(path, generate(members), key, **params) == expected


@pytest.mark.parametrize(
    ("params", "members", "expected"),
    [
        ({"system": SYSTEM}, "", SYSTEM),
        ({"system": SYSTEM}, '"system":""', SYSTEM),
        ({"system": SYSTEM}, '"system":"mine"', "mine"),
        ({"system": SYSTEM}, '"system":"mine","system":null', "mine"),  # null: Go leaves it
        ({"overrides": {"system": SYSTEM}}, '"system":"mine"', SYSTEM),
        ({"strip": ["system"]}, '"system":"mine"', ""),
    ],
    ids=["default/absent", "default/empty", "default/present", "default/null-after",
         "override", "strip"],
)  # fmt: skip
def test_the_system_prompt_of_generate(params: dict[str, Any], members: str, expected: str) -> None:
    assert plain_field("/api/generate", generate(members), "system", **params) == expected


# --- The system prompt as a message --------------------------------------------------------


def chat(messages: str | None) -> str:
    body = '{"model":"llmodel"' + (f',"messages":{messages}' if messages is not None else "")
    return body + "}"


U, S, C = '{"role":"user","content":"hi"}', '{"role":"system","content":"mine"}', "mine"
CHAT_CASES = [
    # (id, alias params, client messages, (role, content) of each message Ollama reads)
    ("default/none", {"system": SYSTEM}, f"[{U}]", [("system", SYSTEM), ("user", "hi")]),
    ("default/sent", {"system": SYSTEM}, f"[{U},{S}]", [("user", "hi"), ("system", C)]),
    ("default/empty", {"system": SYSTEM}, "[]", []),  # "load the model": left so
    ("default/absent", {"system": SYSTEM}, None, None),
    ("default/null-after", {"system": SYSTEM}, f"[{U}],\"messages\":null", None),
    ("default/later-array-wins", {"system": SYSTEM}, f'[{S}],"messages":[{U}]',
     [("system", SYSTEM), ("user", "hi")]),
    ("override/first", {"overrides": {"system": SYSTEM}}, f"[{S},{U}]",
     [("system", SYSTEM), ("user", "hi")]),
    ("override/last", {"overrides": {"system": SYSTEM}}, f"[{U}, {S}]",
     [("system", SYSTEM), ("user", "hi")]),
    ("override/only", {"overrides": {"system": SYSTEM}}, f"[ {S} ]", [("system", SYSTEM)]),
    ("override/several", {"overrides": {"system": SYSTEM}}, f"[{S},{U},{S},{U},{S}]",
     [("system", SYSTEM), ("user", "hi"), ("user", "hi")]),
    ("override/none-sent", {"overrides": {"system": SYSTEM}}, f"[{U}]",
     [("system", SYSTEM), ("user", "hi")]),
    ("strip", {"strip": ["system"]}, f"[{S},{U}]", [("user", "hi")]),
    ("strip/only", {"strip": ["system"]}, f"[{S}]", [("system", C)]),  # never emptied
]  # fmt: skip


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
@pytest.mark.parametrize(("params", "messages", "expected"), cases(CHAT_CASES))
def test_the_system_prompt_is_a_first_message(
    path: str, params: dict[str, Any], messages: str | None, expected: Any
) -> None:
    read = pointer(path, chat(messages), "messages", **params)
    shown = None if read is None else [(m["role"], m["content"]) for m in read]
    assert shown == expected


def test_a_system_message_that_go_would_refuse_is_not_spliced_out() -> None:
    # The bad escape is nested where the reading does not look: the body must stay one
    # Go refuses, so the client's system message stays (and Ollama answers 400).
    body = chat(r'[{"role":"system","content":"bad \x"},' + U + "]")
    endpoint = find_endpoint("/api/chat")
    assert endpoint is not None
    decision = decide_json(body.encode(), endpoint, table(overrides={"system": SYSTEM}))
    assert decision.body is not None
    with pytest.raises(go_json.Unreadable):
        go_json.read(decision.body)


def test_array_elements_are_delimited_without_reading_them() -> None:
    body = b'[ {"a":[1,{"b":"]"}]} ,"x\\"]",[[]],2 ]'
    spans = array_elements(body, 0, len(body))
    assert spans is not None
    assert [body[s:e] for s, e in spans] == [b'{"a":[1,{"b":"]"}]}', b'"x\\"]"', b"[[]]", b"2"]
    for bad in (b"[1 2]", b"[1,]", b"[", b"[1,2", b"{}"):
        assert array_elements(bad, 0, len(bad)) is None


# --- OpenAI and Anthropic endpoints --------------------------------------------------------

OTHER_CASES = [
    # (id, path, alias params, client members, key, reader, value Ollama reads)
    ("openai-chat/default", "/v1/chat/completions", {"defaults": {"temperature": 0.5}},
     "", "temperature", "pointer", 0.5),
    ("openai-chat/default-sent", "/v1/chat/completions", {"defaults": {"temperature": 0.5}},
     '"temperature":0', "temperature", "pointer", 0),
    ("openai-chat/default-null", "/v1/chat/completions", {"defaults": {"temperature": 0.5}},
     '"temperature":null', "temperature", "pointer", 0.5),
    ("openai-chat/max_tokens", "/v1/chat/completions", {"overrides": {"num_predict": 100}},
     '"max_tokens":4000', "max_tokens", "pointer", 100),
    ("openai-chat/strip-seed", "/v1/chat/completions", {"strip": ["seed"]}, '"seed":5', "seed",
     "pointer", None),
    ("openai-chat/stop", "/v1/chat/completions", {"defaults": {"stop": ["END"]}}, "", "stop",
     "pointer", ["END"]),
    ("openai-chat/no-num_ctx", "/v1/chat/completions", {"overrides": {"num_ctx": 8192}}, "",
     "options", "pointer", None),
    ("openai-chat/no-keep_alive", "/v1/chat/completions", {"overrides": {"keep_alive": "1h"}},
     "", "keep_alive", "pointer", None),
    ("completions/top_p-default-zero", "/v1/completions", {"defaults": {"top_p": 0.5}},
     '"top_p":0', "top_p", "plain", 0.5),
    ("completions/top_p-default-sent", "/v1/completions", {"defaults": {"top_p": 0.5}},
     '"top_p":0.9', "top_p", "plain", 0.9),
    ("completions/strip-plain", "/v1/completions", {"strip": ["frequency_penalty"]},
     '"frequency_penalty":1.5', "frequency_penalty", "plain", 0),
    ("completions/strip-pointer", "/v1/completions", {"strip": ["temperature"]},
     '"temperature":1.5', "temperature", "pointer", None),
    ("completions/no-system", "/v1/completions", {"overrides": {"system": SYSTEM}}, "",
     "system", "pointer", None),
    ("responses/instructions", "/v1/responses", {"system": SYSTEM}, "", "instructions", "plain",
     SYSTEM),
    ("responses/instructions-sent", "/v1/responses", {"system": SYSTEM},
     '"instructions":"mine"', "instructions", "plain", "mine"),
    ("responses/max_output_tokens", "/v1/responses", {"overrides": {"num_predict": 64}}, "",
     "max_output_tokens", "pointer", 64),
    ("anthropic/max_tokens-default", "/v1/messages", {"defaults": {"num_predict": 256}}, "",
     "max_tokens", "plain", 256),
    ("anthropic/max_tokens-sent", "/v1/messages", {"defaults": {"num_predict": 256}},
     '"max_tokens":100', "max_tokens", "plain", 100),
    ("anthropic/max_tokens-no-strip", "/v1/messages", {"strip": ["num_predict"]},
     '"max_tokens":100', "max_tokens", "plain", 100),
    ("anthropic/system-override", "/v1/messages", {"overrides": {"system": SYSTEM}},
     '"system":[{"type":"text","text":"mine"}]', "system", "pointer", SYSTEM),
    ("anthropic/system-default-blocks", "/v1/messages", {"system": SYSTEM},
     '"system":[{"type":"text","text":"mine"}]', "system", "pointer",
     [{"type": "text", "text": "mine"}]),
    ("anthropic/stop_sequences", "/v1/messages", {"overrides": {"stop": ["Human:"]}},
     '"stop_sequences":["x"]', "stop_sequences", "pointer", ["Human:"]),
    ("anthropic/top_k", "/v1/messages", {"strip": ["top_k"]}, '"top_k":5', "top_k", "pointer",
     None),
    ("embed/no-think", "/api/embed", {"overrides": {"think": True}}, "", "think", "pointer",
     None),
    ("v1-embeddings/nothing", "/v1/embeddings", {"overrides": {"num_ctx": 8192}}, "",
     "options", "pointer", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "params", "members", "key", "reader", "expected"), cases(OTHER_CASES)
)
def test_other_endpoints_as_ollama_reads_them(
    path: str, params: dict[str, Any], members: str, key: str, reader: str, expected: Any
) -> None:
    read = pointer if reader == "pointer" else plain_field
    assert read(path, generate(members), key, **params) == expected


# --- Only for aliases; the rest untouched --------------------------------------------------


def test_a_request_naming_a_real_model_or_a_plain_alias_is_not_touched() -> None:
    endpoint = find_endpoint("/api/generate")
    assert endpoint is not None
    aliases = table(overrides={"num_ctx": 8192})
    real = b'{"model":"qwen3:4b","options":{"seed":1}}'
    assert decide_json(real, endpoint, aliases).body is None
    decided = decide_json(b'{"model":"plain","options":{"seed":1}}', endpoint, aliases).body
    assert decided == b'{"model":"llama3.2","options":{"seed":1}}'


@pytest.mark.parametrize("body", [b"null", b"{}", b" { } ", b'{"prompt":"x"}'])
def test_the_default_gets_its_parameters_too(body: bytes) -> None:
    endpoint = find_endpoint("/api/generate")
    assert endpoint is not None
    decision = decide_json(body, endpoint, table(overrides={"num_ctx": 8192}))
    assert decision.body is not None
    assert go_json.plain(go_json.options(go_json.read(decision.body))) == {"num_ctx": 8192}


@pytest.mark.parametrize(
    "body",
    [
        b'{"model":"llmodel","options":{"seed":1,}}',  # nested: only its brackets are read
        b'{"model":"llmodel","options":{"seed":1}} ,',
        b'{"model":"llmodel","x":[1 2],"options":{}}',
    ],
)
def test_a_body_go_refuses_stays_refused(body: bytes) -> None:
    endpoint = find_endpoint("/api/chat")
    assert endpoint is not None
    aliases = table(defaults={"top_k": 1}, overrides={"num_ctx": 8192}, strip=["seed"],
                    system=SYSTEM)  # fmt: skip
    try:
        go_json.read(body)
        refused_before = False
    except go_json.Unreadable:
        refused_before = True
    decision = decide_json(body, endpoint, aliases)
    after = decision.body if decision.body is not None else body
    try:
        go_json.read(after)
        refused_after = False
    except go_json.Unreadable:
        refused_after = True
    assert refused_after == refused_before


# --- Configuration -------------------------------------------------------------------------

CONFIG_CASES = [
    ({"target": TARGET, "colour": 1}, "alias 'llmodel': unknown key \"colour\""),
    ({"defaults": {}}, "alias 'llmodel': has no target"),
    ({"target": TARGET, "overrides": {"num_ctx": "big"}},
     "alias 'llmodel': overrides.num_ctx must be an integer, not \"big\""),
    ({"target": TARGET, "overrides": {"num_ctx": True}},
     "alias 'llmodel': overrides.num_ctx must be an integer, not true"),
    ({"target": TARGET, "defaults": {"temperature": "hot"}},
     "alias 'llmodel': defaults.temperature must be a number, not \"hot\""),
    ({"target": TARGET, "defaults": {"keep_alive": "5 minutes"}},
     "alias 'llmodel': defaults.keep_alive must be a duration"),
    ({"target": TARGET, "defaults": {"think": "very"}},
     "alias 'llmodel': defaults.think must be true, false"),
    ({"target": TARGET, "defaults": {"format": "xml"}},
     "alias 'llmodel': defaults.format must be \"json\" or a table"),
    ({"target": TARGET, "defaults": {"stop": "x"}},
     "alias 'llmodel': defaults.stop must be a list of strings"),
    ({"target": TARGET, "defaults": {"tempreature": 1}},
     "alias 'llmodel': defaults names \"tempreature\", which is no Ollama parameter"),
    ({"target": TARGET, "defaults": {"seed": 1}, "strip": ["seed"]},
     "alias 'llmodel': seed is in both defaults and strip"),
    ({"target": TARGET, "system": "a", "defaults": {"system": "b"}},
     "alias 'llmodel': system is given twice"),
    ({"target": TARGET, "system": "a", "overrides": {"system": "b"}},
     "alias 'llmodel': system is in both defaults and overrides"),
    ({"target": TARGET, "strip": "seed"}, "alias 'llmodel': strip must be a list"),
    ({"target": TARGET, "strip": ["num_ctx"]},
     "alias 'llmodel': strip.num_ctx cannot be honoured"),
    ({"target": TARGET, "defaults": [1]}, "alias 'llmodel': defaults must be a table"),
]  # fmt: skip


@pytest.mark.parametrize(("given", "message"), CONFIG_CASES, ids=[m for _, m in CONFIG_CASES])
def test_bad_parameters_are_refused_in_one_line(given: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        AliasTable({"llmodel": given})
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)
    assert raised.value.key == "aliases"


def test_an_alias_and_its_table_form_are_the_same() -> None:
    given = {"defaults": {"temperature": 0.5}, "overrides": {"num_ctx": 8192}, "strip": ["seed"],
             "system": SYSTEM}  # fmt: skip
    from_table = AliasTable({"a": {"target": TARGET, **given}})["a"].params
    from_alias = AliasTable({"a": Alias(TARGET, **given)})["a"].params  # type: ignore[arg-type]
    assert from_table == from_alias
    assert from_table.defaults == {"temperature": 0.5, "system": SYSTEM}


# --- Load-time conflicts -------------------------------------------------------------------


def test_aliases_sharing_a_target_with_different_load_time_options_are_reported() -> None:
    aliases = AliasTable(
        {
            "llmodel": {"target": TARGET, "overrides": {"num_ctx": 8192, "temperature": 0.2}},
            "creative": {"target": TARGET, "overrides": {"num_ctx": 4096, "temperature": 1.2}},
            "same": {"target": TARGET + "", "defaults": {"num_ctx": 8192}},
            "other": {"target": "llama3.2", "overrides": {"num_ctx": 1024}},
        }
    )
    lines = [str(conflict) for conflict in aliases.load_time_conflicts()]
    assert lines == [
        f"aliases 'llmodel' and 'creative' share the target {TARGET!r} but set num_ctx "
        "differently (8192 and 4096): Ollama reloads the model each time requests switch "
        "between them; set it alike in overrides of both"
    ]


def test_default_model_warns_of_load_time_conflicts() -> None:
    mapping = {"a": Alias(TARGET, overrides={"keep_alive": "1h"}), "b": TARGET}
    with pytest.warns(LoadTimeConflictWarning, match="'a' and 'b' .* keep_alive .*not set"):
        DefaultModel(lambda environ, start_response: [], mapping=mapping)


# --- The catalogue -------------------------------------------------------------------------


def test_the_catalogue_names_every_field_of_ollamas_options() -> None:
    # api/types.go Options and Runner at the Ollama version the project follows.
    options = [
        "num_keep", "seed", "num_predict", "top_k", "top_p", "min_p", "typical_p",
        "repeat_last_n", "temperature", "repeat_penalty", "presence_penalty",
        "frequency_penalty", "stop", "num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap",
        "num_thread", "draft_num_predict",
    ]  # fmt: skip
    names = [parameter.name for parameter in PARAMETERS]
    assert names == [*options, "keep_alive", "think", "format", "system"]
    assert all(PLACES["generate"][name].in_options for name in options)


def test_every_endpoint_family_is_in_the_catalogue() -> None:
    families = {endpoint.params for endpoint in ENDPOINTS if endpoint.params}
    assert families == set(PLACES)
    assert family_fields("chat") == ("options", "keep_alive", "think", "format", "messages")


def test_the_docs_table_is_the_catalogue() -> None:
    from pathlib import Path

    docs = (Path(__file__).parents[1] / "docs" / "proxy.rst").read_text()
    assert ".. parameter-table::" in docs
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "tables", Path(__file__).parents[1] / "docs" / "_ext" / "tables.py"
    )
    assert spec is not None and spec.loader is not None
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    rows = tables.parameter_rows()
    assert [row[0] for row in rows[1:]] == [f"``{p.name}``" for p in PARAMETERS]
    assert json.dumps(rows)  # plain text cells


@pytest.mark.parametrize(
    ("message", "role"),
    [
        ('{"role":"system","content":"x"}', "system"),
        ('{ "ROLE" : "system" }', "system"),
        ('{"role":"user","content":"{\\"role\\":\\"system\\"}"}', "user"),
        ('{"role":"user","role":"system"}', "system"),  # the last wins
        ('{"role":"system","role":null}', "system"),  # null leaves a string as it was
        ('{"r\\u006fle":"system"}', "system"),
        ('{"content":"x","role":"system"}', "system"),
        ('{"role":"System"}', "System"),
        ('{"role":"user","x":{"role":"system"}}', "user"),
    ],
)
def test_the_role_is_read_as_go_reads_it(message: str, role: str) -> None:
    assert go_json.field(go_json.read(message.encode()), "role") == role  # the model agrees
    read = pointer("/api/chat", chat(f"[{message},{U}]"), "messages", overrides={"system": SYSTEM})
    kept = [] if role == "system" else [role]
    assert [m["role"] for m in read] == ["system", *kept, "user"]
