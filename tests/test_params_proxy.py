"""Aliases with parameters through the real proxy: a TOML table alias, gunicorn, the official
``ollama`` and ``openai`` clients, and what the upstream received, read as Go reads it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import go_json
import ollama
import openai
import pytest
import requests
from fake_ollama import FakeOllama, serve
from gunicorn_process import GunicornProcess, run_gunicorn

TARGET = "aya-expanse:8b-q8_0"
SYSTEM = "You answer in French."
CONFIG_TOML = f"""\
default = "llmodel"

[aliases]
embed = "nomic-embed-text:latest"

[aliases.llmodel]
target = "{TARGET}"
defaults = {{ temperature = 0.5 }}
overrides = {{ num_ctx = 8192, keep_alive = "30m" }}
strip = ["seed"]
system = "{SYSTEM}"

[aliases.llmodel-small]
target = "{TARGET}"
overrides = {{ num_ctx = 2048 }}
"""
TIMEOUT_S = 10.0
OPTIONS = ("--worker-class", "gthread", "--workers", "1", "--threads", "4")


@pytest.fixture(scope="module")
def fake() -> FakeOllama:
    return FakeOllama()


@pytest.fixture(scope="module")
def proxy(fake: FakeOllama, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornProcess]:
    directory: Path = tmp_path_factory.mktemp("params")
    config = directory / "ollama-default.toml"
    config.write_text(CONFIG_TOML)
    with serve(fake) as url:
        settings = {"OLLAMA_DEFAULT_UPSTREAM": url, "OLLAMA_DEFAULT_CONFIG": str(config)}
        with run_gunicorn(settings, log_dir=directory, options=OPTIONS) as server:
            yield server
    assert "Traceback" not in server.stderr()


def upstream_read(fake: FakeOllama) -> go_json.Members:
    members = go_json.read(fake.requests[-1].body)
    assert members is not None
    return members


def test_the_ollama_client_gets_the_aliass_parameters(
    proxy: GunicornProcess, fake: FakeOllama
) -> None:
    with ollama.Client(host=proxy.base_url, timeout=TIMEOUT_S) as client:
        reply = client.chat(
            model="llmodel",
            messages=[{"role": "user", "content": "hello"}],
            options={"num_ctx": 131072, "seed": 42, "top_k": 5},
            keep_alive=0,
        )
    assert reply.model == "llmodel"
    members = upstream_read(fake)
    assert go_json.field(members, "model") == TARGET
    assert go_json.plain(go_json.options(members)) == {
        "num_ctx": 8192, "top_k": 5, "temperature": 0.5
    }  # fmt: skip
    assert go_json.pointer(members, "keep_alive") == "30m"
    messages = go_json.plain(go_json.pointer(members, "messages"))
    assert [(m["role"], m["content"]) for m in messages] == [
        ("system", SYSTEM), ("user", "hello")
    ]  # fmt: skip


def test_the_default_gets_the_parameters_and_the_client_keeps_its_own(
    proxy: GunicornProcess, fake: FakeOllama
) -> None:
    # The official clients always send a model: a plain POST sends none.
    body = {"prompt": "hi", "system": "mine", "options": {"temperature": 0.9}, "stream": False}
    response = requests.post(f"{proxy.base_url}/api/generate", json=body, timeout=TIMEOUT_S)
    assert response.json()["model"] == "llmodel"
    members = upstream_read(fake)
    assert go_json.field(members, "model") == TARGET
    assert go_json.plain(go_json.options(members)) == {"num_ctx": 8192, "temperature": 0.9}
    assert go_json.field(members, "system") == "mine"


def test_the_openai_client_gets_what_v1_takes(proxy: GunicornProcess, fake: FakeOllama) -> None:
    with openai.OpenAI(
        base_url=f"{proxy.base_url}/v1", api_key="x", timeout=TIMEOUT_S, max_retries=0
    ) as client:
        client.chat.completions.create(
            model="llmodel", messages=[{"role": "user", "content": "hello"}], seed=7
        )
    members = upstream_read(fake)
    assert go_json.plain(go_json.pointer(members, "temperature")) == 0.5
    assert go_json.pointer(members, "seed") is None
    assert go_json.pointer(members, "options") is None  # num_ctx has no /v1 field
    assert go_json.plain(go_json.pointer(members, "messages"))[0]["content"] == SYSTEM


def test_a_plain_alias_and_a_real_model_are_untouched(
    proxy: GunicornProcess, fake: FakeOllama
) -> None:
    with ollama.Client(host=proxy.base_url, timeout=TIMEOUT_S) as client:
        client.embed(model="embed", input="x", options={"seed": 1})
        assert go_json.plain(go_json.options(upstream_read(fake))) == {"seed": 1}
        client.generate(model=TARGET, prompt="hi", options={"seed": 1})
        assert go_json.plain(go_json.options(upstream_read(fake))) == {"seed": 1}


def test_aliases_that_load_one_target_differently_are_warned_about(
    proxy: GunicornProcess,
) -> None:
    line = proxy.log_line("share the target")
    assert "'llmodel' and 'llmodel-small'" in line
    assert "num_ctx differently (8192 and 2048)" in line
