"""API keys (ops/auth.py, proxy/keys.py): both header forms, wrong and missing keys, keys
limited to aliases, a revoked key after a rebuild, keys never forwarded; the official
``ollama``, ``openai`` and ``anthropic`` clients through a real gunicorn.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import ollama
import openai
import pytest
import requests
from fake_ollama import FakeOllama, serve
from gunicorn_process import GunicornProcess, run_gunicorn
from webtest import TestApp

from ollama_default import ConfigError
from ollama_default.ops.auth import hash_key
from ollama_default.proxy.cli import main
from ollama_default.proxy.compose import build_app
from ollama_default.proxy.config import Settings, load_settings
from ollama_default.proxy.forwarder import Forwarder
from ollama_default.proxy.logs import startup_summary
from ollama_default.proxy.reload import Reloading, SettingsSource

ALIAS, TARGET = "llmodel", "aya-expanse:8b-q8_0"
EMBED, EMBED_TARGET = "embed", "nomic-embed-text:latest"
FULL_KEY = "full-access-key-0123456789"
ALICE_KEY = "alice-key-abcdefghijklmnop"
ADMIN_KEY = "admin-key-qrstuvwxyz012345"
TIMEOUT_S = 10.0


def key_file(path: Path, *, alice: bool = True) -> Path:
    text = f"""\
[keys.admin]
hash = "{hash_key(ADMIN_KEY)}"
open_model_store = ["pull"]
max_concurrent = 2
"""
    if alice:
        text += f"""
[keys.alice]
hash = "{hash_key(ALICE_KEY)}"
aliases = ["{ALIAS}"]
"""
    path.write_text(text)
    return path


def settings(tmp_path: Path, **more: Any) -> Settings:
    return Settings(
        aliases={ALIAS: TARGET, EMBED: EMBED_TARGET},
        default=ALIAS,
        api_keys=(FULL_KEY,),
        api_keys_file=str(key_file(tmp_path / "keys.toml")),
        **more,
    )


def client(fake: FakeOllama, tmp_path: Path, **more: Any) -> TestApp:
    return TestApp(build_app(settings(tmp_path, **more), fake), lint=True)


def chat(model: str | None = ALIAS) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "stream": False}
    if model is not None:
        body["model"] = model
    return body


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {FULL_KEY}"},
        {"Authorization": f"bearer   {FULL_KEY}"},
        {"x-api-key": FULL_KEY},
        {"Authorization": f"Bearer {ALICE_KEY}"},
        {"x-api-key": ADMIN_KEY},
    ],
    ids=["bearer", "bearer-lower-case", "x-api-key", "file-key", "file-key-x-api-key"],
)
def test_a_key_in_either_header_is_let_in_and_never_forwarded(
    tmp_path: Path, headers: dict[str, str]
) -> None:
    fake = FakeOllama()
    response = client(fake, tmp_path).post_json("/api/chat", chat(), headers=headers)
    assert response.status_int == 200
    (sent,) = fake.requests
    assert not {"authorization", "x-api-key"} & {name.lower() for name in sent.headers}


@pytest.mark.parametrize(
    ("path", "headers", "dialect"),
    [
        ("/api/chat", {}, "ollama"),
        ("/api/chat", {"Authorization": "Bearer wrong-key-0123456789abc"}, "ollama"),
        ("/api/chat", {"Authorization": f"Basic {FULL_KEY}"}, "ollama"),
        ("/v1/chat/completions", {"Authorization": "Bearer nope"}, "openai"),
        ("/v1/messages", {"x-api-key": FULL_KEY[:-1]}, "anthropic"),
        ("/api/tags", {}, "ollama"),
    ],
    ids=["missing", "wrong", "not-bearer", "openai-wrong", "anthropic-wrong", "listing"],
)
def test_a_missing_or_wrong_key_gets_401_in_the_clients_dialect(
    tmp_path: Path, path: str, headers: dict[str, str], dialect: str
) -> None:
    fake = FakeOllama()
    app = client(fake, tmp_path)
    response = app.post_json(path, chat(), headers=headers, status=401)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="ollama-default"'
    document = response.json
    if dialect == "openai":
        assert "API key" in document["error"]["message"]
    elif dialect == "anthropic":
        assert document["error"]["type"] == "authentication_error"
    else:
        assert "API key" in document["error"]
    assert fake.requests == []


def test_the_key_is_logged_by_its_id_never_itself(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeOllama()
    app = client(fake, tmp_path, access_log=True)
    with caplog.at_level(logging.INFO, logger="ollama_default.access"):
        app.post_json("/api/chat", chat(), headers={"x-api-key": ALICE_KEY})
        app.post_json("/api/chat", chat(), headers={"x-api-key": FULL_KEY})
        app.post_json("/api/chat", chat(), headers={"x-api-key": "nope"}, status=401)
    fields = [getattr(record, "fields", {}) for record in caplog.records]
    assert fields[0]["key"] == "alice"
    assert fields[1]["key"] == "key-" + hash_key(FULL_KEY)[7:15]
    assert fields[2]["refused"] == "auth" and "key" not in fields[2]
    text = caplog.text
    assert ALICE_KEY not in text and FULL_KEY not in text
    assert "key=alice" in caplog.records[0].getMessage()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", chat(EMBED)),
        ("/api/chat", chat(TARGET)),
        ("/api/chat", chat("llama3.2")),
        ("/api/embed", {"model": EMBED, "input": "hi"}),
        ("/api/show", {"model": TARGET}),
        ("/v1/chat/completions", chat(EMBED)),
        ("/v1/messages", {**chat(EMBED), "max_tokens": 5}),
    ],
    ids=[
        "other-alias",
        "its-own-target",
        "real-model",
        "embed",
        "show-real",
        "openai",
        "anthropic",
    ],
)
def test_a_key_limited_to_one_alias_cannot_use_another_model(
    tmp_path: Path, path: str, body: dict[str, Any]
) -> None:
    fake = FakeOllama()
    app = client(fake, tmp_path)
    response = app.post_json(path, body, headers={"x-api-key": ALICE_KEY}, status=403)
    assert "may not use the model" in json.dumps(response.json)
    assert fake.requests == []


def test_a_key_limited_to_one_alias_uses_it_and_the_default(tmp_path: Path) -> None:
    fake = FakeOllama()
    app = client(fake, tmp_path)
    headers = {"x-api-key": ALICE_KEY}
    app.post_json("/api/chat", chat(ALIAS), headers=headers)
    app.post_json("/api/chat", chat(None), headers=headers)  # the default is llmodel
    assert [r.json["model"] for r in fake.requests] == [TARGET, TARGET]


def test_a_limited_key_sees_its_aliases_only_in_listings(tmp_path: Path) -> None:
    fake = FakeOllama()
    app = client(fake, tmp_path)
    limited = app.get("/api/tags", headers={"x-api-key": ALICE_KEY}).json
    assert [m["name"] for m in limited["models"]] == [f"{ALIAS}:latest"]
    models = app.get("/v1/models", headers={"x-api-key": ALICE_KEY}).json
    assert [m["id"] for m in models["data"]] == [f"{ALIAS}:latest"]
    full = app.get("/api/tags", headers={"x-api-key": FULL_KEY}).json
    assert len(full["models"]) > 1


def test_a_limited_key_may_not_use_paths_outside_the_api(tmp_path: Path) -> None:
    fake = FakeOllama()
    app = client(fake, tmp_path)
    app.post_json("/api/me", {}, headers={"x-api-key": ALICE_KEY}, status=403)
    app.post_json("/api/me", {}, headers={"x-api-key": FULL_KEY}, status="*")
    assert [r.path for r in fake.requests] == ["/api/me"]


def test_a_key_may_open_store_verbs_for_itself(tmp_path: Path) -> None:
    fake = FakeOllama()
    app = client(fake, tmp_path)
    pull = {"model": "llama3.2", "stream": False}
    app.post_json("/api/pull", pull, headers={"x-api-key": ADMIN_KEY})
    app.post_json("/api/pull", pull, headers={"x-api-key": FULL_KEY}, status=403)
    delete = {"model": "llama3.2"}
    app.delete_json("/api/delete", delete, headers={"x-api-key": ADMIN_KEY}, status=403)
    assert [r.path for r in fake.requests] == ["/api/pull"]


def test_a_new_graph_refuses_a_revoked_key(tmp_path: Path) -> None:
    fake = FakeOllama()
    loaded = settings(tmp_path)
    app = TestApp(build_app(loaded, fake))
    app.post_json("/api/chat", chat(), headers={"x-api-key": ALICE_KEY})
    key_file(tmp_path / "keys.toml", alice=False)  # alice revoked
    rebuilt = TestApp(build_app(loaded, fake))  # what a reload does
    rebuilt.post_json("/api/chat", chat(), headers={"x-api-key": ALICE_KEY}, status=401)
    rebuilt.post_json("/api/chat", chat(), headers={"x-api-key": ADMIN_KEY})
    assert len(fake.requests) == 2


def test_a_key_revoked_in_its_file_is_refused_after_a_hot_reload(tmp_path: Path) -> None:
    """The reload engine follows the key file named by the config: no restart needed."""
    fake = FakeOllama()
    keys = key_file(tmp_path / "keys.toml")
    config = tmp_path / "ollama-default.toml"
    config.write_text(f'api_keys_file = "{keys}"\n[aliases]\n{ALIAS} = "llama3.2"\n')
    source = SettingsSource({}, config_file=str(config))
    reloading = Reloading(
        lambda loaded, pool: build_app(loaded.settings, fake),
        source,
        poll_interval_s=3600,  # checked by hand below
        uses_pool=False,
    )
    try:
        app = TestApp(reloading)
        app.post_json("/api/chat", chat(), headers={"x-api-key": ALICE_KEY})
        key_file(keys, alice=False)  # alice revoked; the config file is untouched
        assert reloading.check()
        app.post_json("/api/chat", chat(), headers={"x-api-key": ALICE_KEY}, status=401)
        app.post_json("/api/chat", chat(), headers={"x-api-key": ADMIN_KEY})
    finally:
        reloading.stop()
    assert len(fake.requests) == 2


def test_the_upstream_gets_its_own_key(tmp_path: Path) -> None:
    fake = FakeOllama()
    with serve(fake) as url:
        loaded = settings(tmp_path, upstream=url, upstream_api_key="upstream-secret-1")
        graph = build_app(loaded)
        try:
            app = TestApp(graph)
            app.post_json("/api/chat", chat(), headers={"Authorization": f"Bearer {FULL_KEY}"})
        finally:
            while not isinstance(graph, Forwarder):  # the pool's keep-alive socket
                graph = graph.app  # type: ignore[attr-defined]
            graph.close()
    (sent,) = fake.requests
    assert {k.lower(): v for k, v in sent.headers.items()}["authorization"] == (
        "Bearer upstream-secret-1"
    )
    assert "upstream-secret-1" not in repr(loaded)
    summary = "\n".join(startup_summary(loaded, upstream_answers=None, demo=None, workers=None))
    assert "upstream-secret-1" not in summary and FULL_KEY not in summary
    assert "API keys: required" in summary


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[keys.a]\nhash = "plain-key"\n', "hash must be 'sha256:'"),
        (f'[keys.a]\nhash = "{hash_key(ALICE_KEY)}"\naliases = ["nope"]\n',
         "'nope' is not an alias"),
        (f'[keys.a]\nhash = "{hash_key(ALICE_KEY)}"\nscope = 1\n', "unknown field 'scope'"),
        (f'[keys.a]\nhash = "{hash_key(ALICE_KEY)}"\nopen_model_store = ["rm"]\n', "'rm' is not"),
        (f'[keys.a]\nhash = "{hash_key(ALICE_KEY)}"\n[keys.b]\nhash = "{hash_key(ALICE_KEY)}"\n',
         "same key"),
        ("keys = 1", "tables"),
        ("not toml [", "not valid TOML"),
    ],
    ids=["plain-key", "unknown-alias", "unknown-field", "unknown-verb", "twice", "shape", "toml"],
)  # fmt: skip
def test_key_file_mistakes_are_configuration_errors(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        Settings(aliases={ALIAS: TARGET}, api_keys_file=str(path))


def test_keys_are_never_in_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "ollama-default.toml"
    config.write_text(f'api_keys = ["{FULL_KEY}"]\n')
    with pytest.raises(ConfigError, match="never written in the config file"):
        load_settings({"OLLAMA_DEFAULT_CONFIG": str(config)})
    with pytest.raises(ConfigError, match="is not a key"):
        load_settings({"OLLAMA_DEFAULT_API_KEYS": "short"})
    loaded = load_settings({"OLLAMA_DEFAULT_API_KEYS": f"{FULL_KEY}, {ALICE_KEY}"})
    assert len(loaded.api_keys) == 2
    assert FULL_KEY not in repr(loaded)


def test_hash_key_prints_the_hash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(ALICE_KEY + "\n"))
    assert main(["hash-key"]) == 0
    assert capsys.readouterr().out.strip() == hash_key(ALICE_KEY)
    assert main(["hash-key", "--new"]) == 0
    key_line, hash_line = capsys.readouterr().out.splitlines()
    assert hash_line.split()[1] == hash_key(key_line.split()[1])


# -- the official clients, through gunicorn -------------------------------------------


@pytest.fixture(scope="module")
def keyed_proxy(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[GunicornProcess, FakeOllama]]:
    fake = FakeOllama()
    directory = tmp_path_factory.mktemp("keyed")
    with serve(fake) as url:
        environ = {
            "OLLAMA_DEFAULT_UPSTREAM": url,
            "OLLAMA_DEFAULT_ALIAS": ALIAS,
            "OLLAMA_DEFAULT_TARGET": TARGET,
            "OLLAMA_DEFAULT_API_KEYS": FULL_KEY,
            "OLLAMA_DEFAULT_API_KEYS_FILE": str(key_file(directory / "keys.toml")),
        }
        options = ("--worker-class", "gthread", "--workers", "1", "--threads", "4")
        with run_gunicorn(environ, log_dir=directory, options=options) as server:
            yield server, fake
        stderr = server.stderr()
    assert "Traceback" not in stderr
    assert FULL_KEY not in stderr and ALICE_KEY not in stderr


def test_the_ollama_client_with_and_without_a_key(
    keyed_proxy: tuple[GunicornProcess, FakeOllama],
) -> None:
    proxy, fake = keyed_proxy
    headers = {"Authorization": f"Bearer {FULL_KEY}"}
    with ollama.Client(proxy.base_url, headers=headers, timeout=TIMEOUT_S) as keyed:
        reply = keyed.chat(model=ALIAS, messages=[{"role": "user", "content": "hi"}])
        assert reply.message.content
        with pytest.raises(ollama.ResponseError) as closed:
            keyed.pull("llama3.2")
    assert closed.value.status_code == 403
    assert not any(r.path == "/api/pull" for r in fake.requests)
    with (
        ollama.Client(proxy.base_url, timeout=TIMEOUT_S) as keyless,
        pytest.raises(ollama.ResponseError) as refused,
    ):
        keyless.chat(model=ALIAS, messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 401
    assert "missing API key" in refused.value.error


def test_the_openai_client_with_and_without_a_key(
    keyed_proxy: tuple[GunicornProcess, FakeOllama],
) -> None:
    proxy, _ = keyed_proxy
    base_url = proxy.base_url + "/v1"
    messages: Any = [{"role": "user", "content": "hi"}]
    with openai.OpenAI(
        base_url=base_url, api_key=ALICE_KEY, timeout=TIMEOUT_S, max_retries=0
    ) as keyed:
        completion = keyed.chat.completions.create(model=ALIAS, messages=messages)
        assert completion.model == ALIAS
        assert [m.id for m in keyed.models.list()] == [f"{ALIAS}:latest"]
        with pytest.raises(openai.PermissionDeniedError):
            keyed.chat.completions.create(model=TARGET, messages=messages)
    with (
        openai.OpenAI(
            base_url=base_url, api_key="wrong", timeout=TIMEOUT_S, max_retries=0
        ) as wrong,
        pytest.raises(openai.AuthenticationError),
    ):
        wrong.chat.completions.create(model=ALIAS, messages=messages)


def test_the_anthropic_client_with_and_without_a_key(
    keyed_proxy: tuple[GunicornProcess, FakeOllama],
) -> None:
    proxy, fake = keyed_proxy
    messages: Any = [{"role": "user", "content": "hi"}]
    with anthropic.Anthropic(
        base_url=proxy.base_url, api_key=FULL_KEY, timeout=TIMEOUT_S, max_retries=0
    ) as keyed:
        message = keyed.messages.create(model=ALIAS, max_tokens=16, messages=messages)
    assert message.model == ALIAS
    sent = fake.requests[-1]
    assert not {"authorization", "x-api-key"} & {name.lower() for name in sent.headers}
    with (
        anthropic.Anthropic(
            base_url=proxy.base_url, api_key="wrong", timeout=TIMEOUT_S, max_retries=0
        ) as wrong,
        pytest.raises(anthropic.AuthenticationError),
    ):
        wrong.messages.create(model=ALIAS, max_tokens=16, messages=messages)


def test_the_access_line_names_the_key_through_gunicorn(
    keyed_proxy: tuple[GunicornProcess, FakeOllama],
) -> None:
    proxy, _ = keyed_proxy
    response = requests.get(
        f"{proxy.base_url}/api/version", headers={"x-api-key": ALICE_KEY}, timeout=TIMEOUT_S
    )
    assert response.status_code == 200
    assert "key=alice" in proxy.log_line('"GET /api/version" 200')
    refused = requests.get(
        f"{proxy.base_url}/api/ps", headers={"x-api-key": "nope"}, timeout=TIMEOUT_S
    )
    assert refused.status_code == 401
    assert "refused=auth" in proxy.log_line('"GET /api/ps" 401')
