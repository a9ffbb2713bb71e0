"""How model names are read: hidden real models, names meaning the default, the fallback to
the default, and management verbs on an alias (:mod:`ollama_default.core.naming`).

Each table row is one way a client names a model; each case checks what the client got and
what the upstream (a wire-faithful fake Ollama) received, or that it received nothing.
"""

from __future__ import annotations

import json
import logging
from typing import Any, NamedTuple

import go_json
import pytest
from fake_ollama import FakeOllama
from webtest import TestApp, TestResponse

from ollama_default import ConfigError, DefaultModel
from ollama_default.core.aliases import AliasTable
from ollama_default.core.endpoints import ENDPOINTS, find_endpoint
from ollama_default.core.naming import Naming, is_model_not_found, not_found_message
from ollama_default.ops.access_log import AccessLog
from ollama_default.wsgi import TARGET_HEADER

TARGET = "aya-expanse:8b-q8_0"
EMBED_TARGET = "nomic-embed-text:latest"
ALIASES = {"llmodel": TARGET, "embed": EMBED_TARGET, "ghost": "missing-model"}
REAL = "llama3.2"  # installed upstream, and no alias
BOUNDARY = "XyZ"


class Call(NamedTuple):
    """One request: method, path (with any query), body, content type."""

    method: str
    path: str
    body: bytes
    content_type: str = "application/json"


def post(path: str, document: dict[str, Any] | bytes, method: str = "POST") -> Call:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return Call(method, path, body)


def transcription(model: str | None, query: str = "") -> Call:
    parts = []
    if model is not None:
        parts.append(f'Content-Disposition: form-data; name="model"\r\n\r\n{model}\r\n')
    parts.append(
        'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\nRIFF....\r\n"
    )
    body = "".join(f"--{BOUNDARY}\r\n{part}" for part in parts) + f"--{BOUNDARY}--\r\n"
    path = "/v1/audio/transcriptions" + (f"?{query}" if query else "")
    return Call("POST", path, body.encode(), f"multipart/form-data; boundary={BOUNDARY}")


def chat(model: str, **extra: Any) -> Call:
    return post("/api/chat", {"model": model, "messages": [{"role": "user", "content": "hi"}]
                              , **extra})  # fmt: skip


#: One request per inference endpoint, naming ``{model}``; the families of Ollama's API.
def inference_calls(model: str) -> dict[str, Call]:
    messages = [{"role": "user", "content": "hi"}]
    return {
        "generate": post("/api/generate", {"model": model, "prompt": "hi", "stream": False}),
        "chat": post("/api/chat", {"model": model, "messages": messages, "stream": False}),
        "embed": post("/api/embed", {"model": model, "input": "hi"}),
        "embeddings": post("/api/embeddings", {"model": model, "prompt": "hi"}),
        "openai-chat": post("/v1/chat/completions", {"model": model, "messages": messages}),
        "openai-completions": post("/v1/completions", {"model": model, "prompt": "hi"}),
        "openai-embeddings": post("/v1/embeddings", {"model": model, "input": "hi"}),
        "responses": post("/v1/responses", {"model": model, "input": "hi"}),
        "anthropic": post("/v1/messages", {"model": model, "max_tokens": 5, "messages": messages}),
        "transcription": transcription(model),
    }


def app_for(fake: FakeOllama, **options: Any) -> TestApp:
    return TestApp(DefaultModel(fake, mapping=ALIASES, default="llmodel", **options), lint=True)


def send(app: TestApp, call: Call) -> TestResponse:
    return app.request(
        call.path,
        method=call.method,
        body=call.body,
        headers={"Content-Type": call.content_type},
        expect_errors=True,
    )


def without_request_id(document: dict[str, Any]) -> dict[str, Any]:
    """An error body less the random ``request_id`` Ollama's Anthropic errors carry
    (``anthropic.go`` ``NewError``); ours carry none."""
    return {key: value for key, value in document.items() if key != "request_id"}


def error_message(response: TestResponse) -> str:
    """The message of an error in any of the three dialects."""
    error = response.json["error"]
    return error if isinstance(error, str) else error["message"]


def upstream_models(fake: FakeOllama) -> list[str]:
    """The model each request the fake received named (from the body, form, query or path)."""
    found = []
    for request in fake.requests:
        if request.path.startswith("/v1/models/"):
            found.append(request.path.removeprefix("/v1/models/"))
        elif request.path == "/v1/audio/transcriptions":
            query = dict(p.partition("=")[::2] for p in request.query.split("&") if p)
            if "model" in query:
                found.append(query["model"])
            else:
                form = request.body.split(b'name="model"\r\n\r\n', 1)[1]
                found.append(form.split(b"\r\n", 1)[0].decode())
        else:  # as Go reads it: the last duplicate, cmp.Or(model, name)
            found.append(go_json.reference(go_json.read(request.body), ("model", "name")))
    return found


def shown_models(response: TestResponse) -> set[str]:
    """Every model name the client was shown, in any framing (generated text aside)."""
    documents = []
    for line in response.body.splitlines():
        line = line.removeprefix(b"data: ")
        if line.startswith(b"{"):
            documents.append(json.loads(line))
    names = set()
    for document in documents:
        for holder in (document, document.get("message"), document.get("response")):
            if isinstance(holder, dict) and isinstance(holder.get("model"), str):
                names.add(holder["model"])
    return names


# --------------------------------------------------------------------------------------
# Hidden real models: every way of naming one is refused, and nothing reaches the upstream

#: (request, the message Ollama gives for a model it does not have on that endpoint).
HIDDEN_CASES: dict[str, tuple[Call, str]] = {
    "exact": (chat(TARGET), f"model '{TARGET}' not found"),
    "latest": (chat(f"{REAL}:latest"), f"model '{REAL}:latest' not found"),
    "bare": (chat(REAL), f"model '{REAL}' not found"),
    "other-case": (chat("LLaMA3.2"), "model 'LLaMA3.2' not found"),
    "namespace": (chat(f"library/{REAL}"), f"model 'library/{REAL}' not found"),
    "fully-qualified": (
        chat(f"registry.ollama.ai/library/{REAL}:latest"),
        f"model 'registry.ollama.ai/library/{REAL}:latest' not found",
    ),
    "escaped-value": (
        post("/api/chat", b'{"model":"\\u006clama3.2","messages":[]}'),
        f"model '{REAL}' not found",
    ),
    "escaped-key": (
        post("/api/chat", b'{"m\\u006fdel":"llama3.2","messages":[]}'),
        f"model '{REAL}' not found",
    ),
    "folded-key": (post("/api/chat", b'{"MODEL":"llama3.2"}'), f"model '{REAL}' not found"),
    # Go reads the last of duplicate keys: the alias first does not cover the real model.
    "duplicate-last-wins": (
        post("/api/chat", b'{"model":"llmodel","Model":"llama3.2"}'),
        f"model '{REAL}' not found",
    ),
    "legacy-name": (post("/api/show", {"name": REAL}), f"model '{REAL}:latest' not found"),
    "empty-model-then-name": (
        post("/api/show", {"model": "", "name": REAL}),
        f"model '{REAL}:latest' not found",
    ),
    "path": (Call("GET", f"/v1/models/{REAL}", b""), f"model '{REAL}:latest' not found"),
    "path-other-case": (
        Call("GET", "/v1/models/LLAMA3.2:Latest", b""),
        "model 'LLAMA3.2:Latest' not found",
    ),
    "form-field": (transcription(REAL), f"model '{REAL}' not found"),
    "query": (transcription("llmodel", f"model={REAL}"), f"model '{REAL}' not found"),
    "generate": (post("/api/generate", {"model": REAL}), f"model '{REAL}' not found"),
    "embed": (
        post("/api/embed", {"model": REAL, "input": "x"}),
        f'model "{REAL}" not found, try pulling it first',
    ),
    "embeddings": (
        post("/api/embeddings", {"model": REAL, "prompt": "x"}),
        f'model "{REAL}" not found, try pulling it first',
    ),
    "openai-chat": (
        post("/v1/chat/completions", {"model": REAL, "messages": []}),
        f"model '{REAL}' not found",
    ),
    "openai-embeddings": (
        post("/v1/embeddings", {"model": REAL, "input": "x"}),
        f'model "{REAL}" not found, try pulling it first',
    ),
    "responses": (
        post("/v1/responses", {"model": REAL, "input": "x"}),
        f"model '{REAL}' not found",
    ),
    "anthropic": (
        post("/v1/messages", {"model": REAL, "max_tokens": 5, "messages": []}),
        f"model '{REAL}' not found",
    ),
    "pull": (post("/api/pull", {"model": REAL}), f"model '{REAL}' not found"),
    "pull-name": (post("/api/pull", {"name": REAL}), f"model '{REAL}' not found"),
    "push": (post("/api/push", {"model": REAL}), f"model '{REAL}' not found"),
    "create-from": (post("/api/create", {"from": REAL}), f"model '{REAL}' not found"),
    "create-model": (
        post("/api/create", {"model": "mine", "from": "llmodel"}),
        "model 'mine' not found",
    ),
    "copy-source": (
        post("/api/copy", {"source": REAL, "destination": "backup"}),
        f'model "{REAL}" not found',
    ),
    "delete": (post("/api/delete", {"model": REAL}, "DELETE"), f"model '{REAL}' not found"),
}


@pytest.mark.parametrize(("call", "message"), HIDDEN_CASES.values(), ids=HIDDEN_CASES.keys())
def test_hidden_a_real_model_is_refused_as_missing_and_never_sent(call: Call, message: str) -> None:
    fake = FakeOllama()
    response = send(app_for(fake, hide_real_models=True), call)
    assert response.status_int == 404
    assert error_message(response) == message
    assert TARGET_HEADER not in response.headers
    assert fake.requests == []


@pytest.mark.parametrize(
    ("family", "call"), inference_calls("nope").items(), ids=inference_calls("nope").keys()
)
def test_hidden_refusal_is_the_body_ollama_gives_for_a_model_it_lacks(
    family: str, call: Call
) -> None:
    # The fake words each refusal as Ollama does (server/routes.go); so must we, in the
    # dialect's error shape, byte for byte.
    ollama = send(TestApp(FakeOllama(), lint=True), call)
    hidden = send(app_for(FakeOllama(), hide_real_models=True), call)
    assert ollama.status_int == hidden.status_int == 404
    assert hidden.json == without_request_id(ollama.json)


@pytest.mark.parametrize(
    "call",
    [
        chat("llmodel"),
        chat("LLModel:latest"),
        post("/api/chat", b'{"model":"llama3.2","MODEL":"llmodel"}'),  # the last one wins
        chat(""),  # no model: the default
        post("/api/show", {"name": "llmodel"}),
        Call("GET", "/v1/models/llmodel", b""),
        transcription("llmodel"),
        transcription(REAL, "model=llmodel"),  # the query wins over the form, as in Go
    ],
    ids=["alias", "alias-spelled", "duplicate", "none", "legacy-name", "path", "form", "query"],
)
def test_hidden_aliases_still_work_without_the_target_header(call: Call) -> None:
    fake = FakeOllama()
    response = send(app_for(fake, hide_real_models=True), call)
    assert response.status_int == 200, response.body
    assert TARGET_HEADER not in response.headers
    assert upstream_models(fake) == [TARGET]
    assert TARGET not in shown_models(response)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (chat("ghost"), "model 'ghost' not found"),
        (post("/api/embed", {"model": "ghost", "input": "x"}),
         'model "ghost" not found, try pulling it first'),
        (post("/api/show", {"model": "ghost"}), "model 'ghost' not found"),
        (Call("GET", "/v1/models/ghost", b""), "model 'ghost' not found"),
        (inference_calls("ghost")["anthropic"], "model 'ghost' not found"),
    ],
    ids=["chat", "embed", "show", "openai-model", "anthropic"],
)  # fmt: skip
def test_hidden_upstream_errors_name_the_alias_not_the_target(call: Call, message: str) -> None:
    # "ghost" stands for "missing-model", which the upstream does not have: its 404 names the
    # target, in the form each endpoint uses (raw, quoted, or as show lists it).
    fake = FakeOllama()
    response = send(app_for(fake, hide_real_models=True), call)
    assert response.status_int == 404
    assert error_message(response) == message
    assert b"missing-model" not in response.body
    assert len(fake.requests) == 1


def test_hidden_the_log_carries_both_names(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeOllama()
    app = TestApp(AccessLog(DefaultModel(fake, mapping=ALIASES, default="llmodel",
                                         hide_real_models=True)), lint=True)  # fmt: skip
    with caplog.at_level(logging.INFO, logger="ollama_default.access"):
        send(app, chat("llmodel", stream=False))
        send(app, chat(REAL))
    served, refused = (record.fields for record in caplog.records)  # type: ignore[attr-defined]
    assert (served["alias"], served["model"], served["status"]) == ("llmodel", TARGET, 200)
    assert (refused["alias"], refused["model"], refused["status"]) == (None, REAL, 404)
    assert refused["error"] == f"model '{REAL}' not found"


# --------------------------------------------------------------------------------------
# Names that mean the default


@pytest.mark.parametrize(
    ("family", "call"), inference_calls("default").items(), ids=inference_calls("default").keys()
)
def test_a_default_name_gets_the_default_on_every_inference_family(family: str, call: Call) -> None:
    fake = FakeOllama()
    response = send(app_for(fake, default_names=["default", "unknown"]), call)
    assert response.status_int == 200, response.body
    assert upstream_models(fake) == [TARGET]
    assert response.headers[TARGET_HEADER] == TARGET
    # Shown as a request that named no model is: the default alias.
    assert shown_models(response) <= {"llmodel"}


@pytest.mark.parametrize("name", ["default", "Default", "default:latest", "library/DEFAULT"])
def test_default_names_compare_as_ollama_compares_model_names(name: str) -> None:
    fake = FakeOllama()
    response = send(app_for(fake, default_names=["default"]), chat(name, stream=False))
    assert upstream_models(fake) == [TARGET]
    assert response.json["model"] == "llmodel"


def test_a_default_name_on_show_shows_the_default() -> None:
    fake = FakeOllama()
    response = send(
        app_for(fake, default_names=["unknown"]), post("/api/show", {"model": "unknown"})
    )
    assert response.status_int == 200
    assert upstream_models(fake) == [TARGET]


@pytest.mark.parametrize(
    "call",
    [
        post("/api/pull", {"model": "default"}),
        post("/api/delete", {"model": "default"}, "DELETE"),
        Call("GET", "/v1/models/default", b""),
    ],
    ids=["pull", "delete", "openai-model"],
)
def test_a_default_name_is_only_a_name_where_no_default_applies(call: Call) -> None:
    fake = FakeOllama()
    send(app_for(fake, default_names=["default"]), call)
    assert upstream_models(fake) == ["default"]


def test_without_default_names_default_is_a_model_name_like_any() -> None:
    fake = FakeOllama()
    response = send(app_for(fake), chat("default"))
    assert response.status_int == 404
    assert upstream_models(fake) == ["default"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"default_names": ["llmodel"]}, "default_names: 'llmodel' is the alias 'llmodel'"),
        ({"default_names": ["LLMODEL:latest"]}, "is the alias 'llmodel'"),
        ({"default_names": [" "]}, "default_names: ' ' is not a model name"),
        ({"default_names": "default"}, "default_names must be a list of names"),
    ],
    ids=["alias", "alias-spelled", "blank", "string"],
)
def test_bad_default_names_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DefaultModel(FakeOllama(), mapping=ALIASES, default="llmodel", **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"default_names": ["default"]}, "default_names need a default alias"),
        ({"fallback_to_default": True}, "fallback_to_default needs a default alias"),
    ],
    ids=["default-names", "fallback"],
)
def test_default_names_and_fallback_need_a_default(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DefaultModel(FakeOllama(), mapping=ALIASES, **options)


# --------------------------------------------------------------------------------------
# Falling back to the default for a model the upstream does not have


@pytest.mark.parametrize(
    ("family", "call"), inference_calls("typo").items(), ids=inference_calls("typo").keys()
)
def test_fallback_off_a_typo_gets_ollamas_404_unchanged(family: str, call: Call) -> None:
    fake = FakeOllama()
    ollama = send(TestApp(FakeOllama(), lint=True), call)
    response = send(app_for(fake), call)
    assert response.status_int == 404
    assert without_request_id(response.json) == without_request_id(ollama.json)
    assert upstream_models(fake) == ["typo"]


@pytest.mark.parametrize(
    ("family", "call"), inference_calls("typo").items(), ids=inference_calls("typo").keys()
)
def test_fallback_on_the_default_answers_once_the_upstream_lacks_the_model(
    family: str, call: Call
) -> None:
    fake = FakeOllama()
    response = send(app_for(fake, fallback_to_default=True), call)
    assert response.status_int == 200, response.body
    assert upstream_models(fake) == ["typo", TARGET]
    assert response.headers[TARGET_HEADER] == TARGET
    assert shown_models(response) <= {"llmodel"}  # shown as the default alias


@pytest.mark.parametrize("stream", [True, False])
def test_fallback_a_streamed_request_is_sent_again_before_any_byte(stream: bool) -> None:
    fake = FakeOllama()
    app = app_for(fake, fallback_to_default=True)
    native = send(app, chat("typo", stream=stream))
    messages = [{"role": "user", "content": "hi"}]
    document = {"model": "typo", "stream": stream, "messages": messages}
    openai = send(app, post("/v1/chat/completions", document))
    expected = (
        ("application/x-ndjson", "text/event-stream") if stream else ("application/json",) * 2
    )
    assert (native.content_type, openai.content_type) == expected
    assert upstream_models(fake) == ["typo", TARGET, "typo", TARGET]
    assert b'"model":"llmodel"' in native.body and b'"model":"llmodel"' in openai.body


def test_fallback_an_installed_model_answers_itself() -> None:
    fake = FakeOllama()
    response = send(app_for(fake, fallback_to_default=True), chat(REAL, stream=False))
    assert response.json["model"] == REAL
    assert upstream_models(fake) == [REAL]
    assert TARGET_HEADER not in response.headers


def test_fallback_a_404_that_is_not_a_missing_model_is_passed_on() -> None:
    def upstream(environ: Any, start_response: Any) -> list[bytes]:
        environ["wsgi.input"].read()
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"error":"no such thing"}']

    app = TestApp(DefaultModel(upstream, mapping=ALIASES, default="llmodel",
                               fallback_to_default=True), lint=True)  # fmt: skip
    response = send(app, chat("typo"))
    assert (response.status_int, response.body) == (404, b'{"error":"no such thing"}')


@pytest.mark.parametrize("query", [True, False], ids=["query", "form"])
def test_fallback_a_transcription_is_sent_again_where_it_named_the_model(query: bool) -> None:
    fake = FakeOllama()
    call = transcription(None, "model=typo") if query else transcription("typo")
    response = send(app_for(fake, fallback_to_default=True), call)
    assert response.status_int == 200, response.body
    assert upstream_models(fake) == ["typo", TARGET]
    assert (fake.requests[-1].query == f"model={TARGET}") is query


def test_fallback_the_log_says_what_answered_and_what_was_asked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeOllama()
    app = TestApp(AccessLog(DefaultModel(fake, mapping=ALIASES, default="llmodel",
                                         fallback_to_default=True)), lint=True)  # fmt: skip
    with caplog.at_level(logging.INFO, logger="ollama_default.access"):
        send(app, chat("typo", stream=False))
    (record,) = caplog.records
    fields = record.fields  # type: ignore[attr-defined]
    assert (fields["alias"], fields["model"], fields["fallback_from"]) == (
        "llmodel",
        TARGET,
        "typo",
    )
    assert "alias=llmodel model=aya-expanse:8b-q8_0 fallback_from=typo" in record.getMessage()


def test_fallback_with_hidden_models_goes_to_the_default_at_once() -> None:
    fake = FakeOllama()
    app = app_for(fake, fallback_to_default=True, hide_real_models=True)
    answered = send(app, chat(REAL, stream=False))
    refused = send(app, post("/api/show", {"model": REAL}))  # no fallback off inference
    assert answered.json["model"] == "llmodel"
    assert TARGET_HEADER not in answered.headers
    assert refused.status_int == 404
    assert upstream_models(fake) == [TARGET]


def test_fallback_keeps_the_body_reserved_until_the_response_ends() -> None:
    fake = FakeOllama()
    middleware = DefaultModel(fake, mapping=ALIASES, default="llmodel", fallback_to_default=True)
    send(TestApp(middleware, lint=True), chat("typo"))
    assert middleware.buffered.held == 0


# --------------------------------------------------------------------------------------
# Management verbs on an alias

#: (request, what the refusal says the request would have done).
REFUSED_VERBS: dict[str, tuple[Call, str]] = {
    "delete": (post("/api/delete", {"model": "llmodel"}, "DELETE"), "deleted"),
    "delete-name": (post("/api/delete", {"name": "LLModel:latest"}, "DELETE"), "deleted"),
    "push": (post("/api/push", {"model": "llmodel"}), "pushed"),
    "create-over": (post("/api/create", {"model": "llmodel", "from": REAL}), "created over"),
    "create-over-name": (post("/api/create", {"name": "llmodel", "from": REAL}), "created over"),
    "copy-over": (post("/api/copy", {"source": REAL, "destination": "llmodel"}), "copied over"),
    "copy-alias-over-alias": (
        post("/api/copy", {"source": "embed", "destination": "llmodel"}),
        "copied over",
    ),
}


@pytest.mark.parametrize(("call", "verb"), REFUSED_VERBS.values(), ids=REFUSED_VERBS.keys())
def test_an_alias_cannot_be_deleted_pushed_or_made_over(call: Call, verb: str) -> None:
    fake = FakeOllama()
    response = send(app_for(fake), call)
    assert response.status_int == 403
    name = json.loads(call.body).get("model") or json.loads(call.body).get("name") or "llmodel"
    if "destination" in json.loads(call.body):
        name = "llmodel"
    assert response.json == {
        "error": f"'{name}' is an alias for '{TARGET}' in the proxy's configuration, not a "
        f"model in Ollama's store: it cannot be {verb}"
    }
    assert fake.requests == []


def test_hidden_a_refused_alias_does_not_name_its_target() -> None:
    response = send(app_for(FakeOllama(), hide_real_models=True),
                    post("/api/delete", {"model": "llmodel"}, "DELETE"))  # fmt: skip
    assert response.status_int == 403
    assert TARGET not in error_message(response)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (post("/api/pull", {"model": "llmodel", "stream": False}), "model"),
        (post("/api/copy", {"source": "llmodel", "destination": "backup"}), "source"),
        (post("/api/create", {"model": "mario", "from": "llmodel", "stream": False}), "from"),
    ],
    ids=["pull", "copy-from", "create-from"],
)
def test_pulling_or_copying_from_an_alias_acts_on_its_target(call: Call, field: str) -> None:
    fake = FakeOllama()
    response = send(app_for(fake), call)
    assert response.status_int == 200, response.body
    assert fake.requests[-1].json[field] == TARGET


def test_the_endpoint_table_says_which_fields_are_destinations() -> None:
    destinations = {e.path: dict(e.destination_fields) for e in ENDPOINTS if e.destination_fields}
    assert destinations == {
        "/api/push": {"model": "pushed"},
        "/api/create": {"model": "created over"},
        "/api/copy": {"destination": "copied over"},
        "/api/delete": {"model": "deleted"},
    }
    for endpoint in ENDPOINTS:  # each a model reference's first key
        firsts = {keys[0] for keys in endpoint.model_fields}
        assert set(endpoint.destination_fields) <= firsts
        assert not (endpoint.falls_back and endpoint.destination_fields)


# --------------------------------------------------------------------------------------
# The pure pieces


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error":"model \'x\' not found"}', True),
        (b'{"error":"model \\"x\\" not found, try pulling it first"}', True),
        (b'{"error":{"message":"model \'x\' not found","type":"not_found_error"}}', True),
        (b'{"type":"error","error":{"type":"not_found_error","message":"model \'x\' not found"}}',
         True),
        (b'{"error":"blob \\"sha256:1\\" not found"}', False),
        (b'{"error":"model \'x\' not found; and more"}', False),
        (b"404 page not found", False),
        (b"[]", False),
    ],
    ids=["native", "embed", "openai", "anthropic", "blob", "other-text", "text", "array"],
)  # fmt: skip
def test_is_model_not_found(body: bytes, expected: bool) -> None:
    assert is_model_not_found(body) is expected


def test_not_found_message_uses_each_endpoints_words() -> None:
    def message(path: str, name: str, field: str = "model") -> str:
        endpoint = find_endpoint(path)
        assert endpoint is not None
        return not_found_message(name, endpoint, field)

    assert message("/api/chat", "X") == "model 'X' not found"
    assert message("/api/show", "X") == "model 'X:latest' not found"
    assert message("/api/show", "a/b/c/d") == "model 'a/b/c/d' not found"
    assert message("/api/copy", "X", "source") == 'model "X" not found'
    assert message("/v1/embeddings", 'a"b') == 'model "a\\"b" not found, try pulling it first'


def test_naming_without_choices_reads_aliases_only() -> None:
    naming = Naming(AliasTable(ALIASES, "llmodel"))
    chat_endpoint = find_endpoint("/api/chat")
    assert chat_endpoint is not None
    assert naming.decide(REAL, chat_endpoint, "model") is None
    decided = naming.decide("LLMODEL", chat_endpoint, "model")
    assert decided is not None and decided[0] == "LLMODEL" and decided[1].target == TARGET
