"""DefaultModel over a wire-faithful fake Ollama: every endpoint, streaming and not.

Each case checks both sides: what the upstream received (the target) and what the client
saw (its own name in every model field, generated text as the model wrote it).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fake_ollama import FAIL_MIDSTREAM, FakeOllama
from webtest import TestApp, TestResponse

from ollama_default import DefaultModel

TARGET = "aya-expanse:8b-q8_0"
EMBED_TARGET = "nomic-embed-text:latest"
ALIASES = {"llmodel": TARGET, "embed": EMBED_TARGET, "ghost": "missing-model"}


@pytest.fixture
def fake() -> FakeOllama:
    return FakeOllama()


@pytest.fixture
def client(fake: FakeOllama) -> TestApp:
    return TestApp(DefaultModel(fake, mapping=ALIASES, default="llmodel"), lint=True)


def records(response: TestResponse) -> list[Any]:
    """The JSON documents of a response, whatever its framing."""
    content_type = response.headers.get("Content-Type", "")
    if content_type.startswith("application/x-ndjson"):
        return [json.loads(line) for line in response.body.splitlines() if line]
    if content_type.startswith("text/event-stream"):
        found = []
        for line in response.body.splitlines():
            if line.startswith(b"data: ") and line != b"data: [DONE]":
                found.append(json.loads(line[6:]))
        return found
    return [json.loads(response.body)]


def model_fields(document: Any) -> list[str]:
    """Every model-name field an Ollama, OpenAI or Anthropic reply can carry."""
    found = [document["model"]] if "model" in document else []
    for key in ("response", "message"):
        nested = document.get(key)
        if isinstance(nested, dict) and "model" in nested:
            found.append(nested["model"])
    return found


def sent_model(fake: FakeOllama) -> Any:
    return fake.requests[-1].json.get("model")


STREAMS = [
    ("/api/generate", {"model": "llmodel", "prompt": "hi"}, "application/x-ndjson"),
    ("/api/chat", {"model": "llmodel", "messages": [{"role": "user", "content": "hi"}]},
     "application/x-ndjson"),
    ("/v1/chat/completions", {"model": "llmodel", "stream": True,
                              "stream_options": {"include_usage": True},
                              "messages": [{"role": "user", "content": "hi"}]},
     "text/event-stream"),
    ("/v1/completions", {"model": "llmodel", "prompt": "hi", "stream": True}, "text/event-stream"),
    ("/v1/responses", {"model": "llmodel", "input": "hi", "stream": True}, "text/event-stream"),
    ("/v1/messages", {"model": "llmodel", "max_tokens": 9, "stream": True,
                      "messages": [{"role": "user", "content": "hi"}]}, "text/event-stream"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "media_type"), STREAMS, ids=[s[0] for s in STREAMS])
def test_streams_show_the_alias_and_keep_the_generated_text(
    client: TestApp, fake: FakeOllama, path: str, body: dict[str, Any], media_type: str
) -> None:
    response = client.post_json(path, body)
    assert response.content_type == media_type
    assert sent_model(fake) == TARGET
    shown = [name for record in records(response) for name in model_fields(record)]
    assert shown and set(shown) == {"llmodel"}
    assert f'" {TARGET}"'.encode() in response.body  # the generated token, untouched
    if path in ("/v1/chat/completions", "/v1/completions"):
        assert response.body.endswith(b"data: [DONE]\n\n")


SINGLE = [
    ("/api/generate", {"model": "llmodel", "prompt": "hi", "stream": False}),
    ("/api/chat", {"model": "llmodel", "stream": False,
                   "messages": [{"role": "user", "content": "hi"}]}),
    ("/api/embed", {"model": "llmodel", "input": "hi"}),
    ("/v1/chat/completions", {"model": "llmodel", "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/completions", {"model": "llmodel", "prompt": "hi"}),
    ("/v1/embeddings", {"model": "llmodel", "input": "hi"}),
    ("/v1/responses", {"model": "llmodel", "input": "hi"}),
    ("/v1/messages", {"model": "llmodel", "max_tokens": 9,
                      "messages": [{"role": "user", "content": "hi"}]}),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body"), SINGLE, ids=[s[0] for s in SINGLE])
def test_single_replies_show_the_alias_with_a_right_length(
    client: TestApp, fake: FakeOllama, path: str, body: dict[str, Any]
) -> None:
    response = client.post_json(path, body)
    assert sent_model(fake) == TARGET
    assert model_fields(records(response)[0]) == ["llmodel"]
    assert int(response.headers.get("Content-Length", len(response.body))) == len(response.body)


@pytest.mark.parametrize(("path", "body"), SINGLE, ids=[s[0] for s in SINGLE])
def test_a_request_without_a_model_gets_the_default(
    client: TestApp, fake: FakeOllama, path: str, body: dict[str, Any]
) -> None:
    response = client.post_json(path, {k: v for k, v in body.items() if k != "model"})
    assert sent_model(fake) == TARGET
    assert model_fields(records(response)[0]) == ["llmodel"]


def test_the_client_sees_the_alias_as_it_spelled_it(client: TestApp, fake: FakeOllama) -> None:
    response = client.post_json("/api/generate", {"model": "LLModel:latest", "prompt": "hi"})
    assert sent_model(fake) == TARGET
    assert {record["model"] for record in records(response)} == {"LLModel:latest"}


def test_a_real_model_is_answered_byte_for_byte_as_upstream(fake: FakeOllama) -> None:
    direct = TestApp(fake).post_json("/api/show", {"model": TARGET})
    proxied = TestApp(DefaultModel(fake, mapping=ALIASES), lint=True)
    response = proxied.post_json("/api/show", {"model": TARGET})
    assert response.body == direct.body
    assert response.headers == direct.headers


def test_load_and_unload_through_the_alias(client: TestApp, fake: FakeOllama) -> None:
    loaded = client.post_json("/api/generate", {"model": "llmodel"})
    assert loaded.json["done_reason"] == "load"
    assert loaded.json["model"] == "llmodel"
    assert TARGET in fake.loaded
    unloaded = client.post_json("/api/chat", {"model": "llmodel", "messages": [], "keep_alive": 0})
    assert unloaded.json["done_reason"] == "unload"
    assert TARGET not in fake.loaded


def test_a_mid_stream_error_line_passes(client: TestApp) -> None:
    response = client.post_json("/api/generate", {"model": "llmodel", "prompt": FAIL_MIDSTREAM})
    lines = records(response)
    assert lines[0]["model"] == "llmodel"
    assert "error" in lines[-1]


def test_legacy_embeddings_send_the_target(client: TestApp, fake: FakeOllama) -> None:
    response = client.post_json("/api/embeddings", {"model": "embed", "prompt": "hi"})
    assert sent_model(fake) == EMBED_TARGET
    assert response.json["embedding"]


@pytest.mark.parametrize(
    ("method", "path", "body", "field", "sent"),
    [
        # The legacy "name" gets the target where it was sent: Ollama reads
        # cmp.Or(model, name), and the body is spliced, not written anew.
        ("POST", "/api/show", {"name": "llmodel"}, "name", TARGET),
        ("POST", "/api/pull", {"name": "llmodel", "stream": False}, "name", TARGET),
        ("POST", "/api/create", {"model": "mario", "from": "llmodel", "stream": False}, "from",
         TARGET),
        ("POST", "/api/copy", {"source": "llmodel", "destination": "backup"}, "source", TARGET),
        # Pushing or deleting an alias is refused: tests/test_names.py.
    ],
    ids=["show", "pull", "create", "copy"],
)  # fmt: skip
def test_management_endpoints_send_the_target(
    client: TestApp,
    fake: FakeOllama,
    method: str,
    path: str,
    body: dict[str, Any],
    field: str,
    sent: str,
) -> None:
    client.request(path, method=method, body=json.dumps(body).encode(), expect_errors=True)
    assert fake.requests[-1].json[field] == sent


def test_model_details_by_path(client: TestApp, fake: FakeOllama) -> None:
    response = client.get("/v1/models/llmodel")
    assert fake.requests[-1].path == f"/v1/models/{TARGET}"
    assert response.json["id"] == "llmodel"


def test_transcription_form_field(client: TestApp, fake: FakeOllama) -> None:
    response = client.post(
        "/v1/audio/transcriptions",
        {"model": "llmodel", "response_format": "json"},
        upload_files=[("file", "hello.wav", b"RIFF....WAVE")],
    )
    assert f'name="model"\r\n\r\n{TARGET}\r\n'.encode() in fake.requests[-1].body
    assert b"RIFF....WAVE" in fake.requests[-1].body
    assert "text" in response.json


@pytest.mark.parametrize("path", ["/api/version", "/"])
def test_other_routes_pass_through(fake: FakeOllama, path: str) -> None:
    client = TestApp(DefaultModel(fake, mapping=ALIASES), lint=True)
    assert client.get(path).body == TestApp(fake).get(path).body


# --------------------------------------------------------------------------------------
# Listings: the aliases where clients look for models


def test_tags_list_the_installed_aliases_first(client: TestApp, fake: FakeOllama) -> None:
    response = client.get("/api/tags")
    upstream = TestApp(fake).get("/api/tags").json["models"]
    listed = response.json["models"]
    # "ghost" points at a model that is not installed: not listed.
    assert [m["name"] for m in listed] == ["llmodel:latest", "embed:latest"] + [
        m["name"] for m in upstream
    ]
    assert listed[0]["digest"] == next(m["digest"] for m in upstream if m["name"] == TARGET)
    assert response.headers["Content-Length"] == str(len(response.body))
    assert "X-Ollama-Default-Target" not in response.headers


def test_a_head_of_tags_passes_as_it_came(client: TestApp, fake: FakeOllama) -> None:
    response = client.head("/api/tags")
    upstream = TestApp(fake).head("/api/tags")
    assert response.status_int == 200
    assert response.headers == upstream.headers


def test_loaded_aliases_are_listed_as_loaded(client: TestApp) -> None:
    assert client.get("/api/ps").json["models"] == []
    client.post_json("/api/generate", {"model": "llmodel"})
    listed = client.get("/api/ps").json["models"]
    assert [model["name"] for model in listed] == ["llmodel:latest", TARGET]
    assert listed[0]["expires_at"] == listed[1]["expires_at"]
    assert listed[0]["size_vram"] == listed[1]["size_vram"]


def test_openai_models_list_the_aliases(client: TestApp) -> None:
    data = client.get("/v1/models").json["data"]
    assert data[:2] == [
        {"id": "llmodel:latest", "object": "model", "created": data[2]["created"],
         "owned_by": "library"},
        {"id": "embed:latest", "object": "model", "created": data[3]["created"],
         "owned_by": "library"},
    ]  # fmt: skip
    assert [entry["id"] for entry in data[2:]] == [TARGET, EMBED_TARGET, "llama3.2:latest"]


@pytest.mark.parametrize("name", ["llmodel", "llmodel:latest", "LLModel"])
def test_an_openai_model_is_the_alias_as_asked_for(client: TestApp, name: str) -> None:
    shown = client.get(f"/v1/models/{name}").json
    real = client.get(f"/v1/models/{TARGET}").json
    assert shown == {**real, "id": name}


def test_show_of_an_alias_looks_as_for_an_installed_model(client: TestApp) -> None:
    shown = client.post_json("/api/show", {"model": "llmodel"}).json
    real = client.post_json("/api/show", {"model": TARGET}).json
    assert shown["modelfile"] == real["modelfile"].replace(
        f"# FROM {TARGET}\n", "# FROM llmodel:latest\n"
    )
    assert {**shown, "modelfile": real["modelfile"]} == real


def test_hidden_real_models_leave_only_the_aliases_listed(fake: FakeOllama) -> None:
    client = TestApp(DefaultModel(fake, mapping=ALIASES, hide_real_models=True), lint=True)
    assert [m["name"] for m in client.get("/api/tags").json["models"]] == [
        "llmodel:latest",
        "embed:latest",
    ]
    assert [m["id"] for m in client.get("/v1/models").json["data"]] == [
        "llmodel:latest",
        "embed:latest",
    ]
    TestApp(fake).post_json("/api/generate", {"model": "llama3.2"})  # loaded, not by a client
    assert client.get("/api/ps").json["models"] == []
    client.post_json("/api/generate", {"model": "llmodel"})
    assert [m["name"] for m in client.get("/api/ps").json["models"]] == ["llmodel:latest"]


@pytest.mark.parametrize(
    ("path", "body", "message_of", "shown"),
    [
        ("/api/chat", {"model": "ghost", "messages": [{"role": "user", "content": "x"}]},
         lambda e: e["error"], "model 'ghost' not found"),
        ("/api/embed", {"model": "ghost", "input": "x"},
         lambda e: e["error"], 'model "ghost" not found, try pulling it first'),
        ("/api/show", {"model": "ghost"}, lambda e: e["error"], "model 'ghost' not found"),
        ("/v1/chat/completions", {"model": "ghost", "messages": [{"role": "user", "content": "x"}]},
         lambda e: e["error"]["message"], "model 'ghost' not found"),
        ("/v1/messages", {"model": "ghost", "max_tokens": 9,
                          "messages": [{"role": "user", "content": "x"}]},
         lambda e: e["error"]["message"], "model 'ghost' not found"),
        ("/api/chat", {"model": "embed", "messages": [{"role": "user", "content": "x"}]},
         lambda e: e["error"], '"embed" does not support chat'),
    ],
    ids=["native", "embed", "show-normalised", "openai", "anthropic", "capability"],
)  # fmt: skip
def test_errors_name_the_alias_not_the_target(
    client: TestApp, path: str, body: dict[str, Any], message_of: Any, shown: str
) -> None:
    response = client.post_json(path, body, expect_errors=True)
    assert response.status_int in (400, 404)
    assert message_of(response.json) == shown
