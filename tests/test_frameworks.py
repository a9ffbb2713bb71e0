"""The Flask and Django recipes of ``docs/recipes``, run as users run them, before a fake Ollama.

``docs/middleware.rst`` includes those files verbatim, so the code the docs show is the code
tested here: each test runs once per framework, in-process through webtest's WSGI lint, over
real sockets where streaming has to be real end to end, with the official ``ollama`` and
``openai`` clients, and under the gunicorn command the page gives for production.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import shlex
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ollama
import openai
import pydantic
import pytest
import requests
from django.test import override_settings
from fake_ollama import FakeOllama, serve
from gunicorn_process import start_server
from webtest import TestApp, TestResponse

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

DOCS = Path(__file__).resolve().parents[1] / "docs"
RECIPES = DOCS / "recipes"
ALIAS = "llmodel"
TARGET = "aya-expanse:8b-q8_0"  # the alias's target in both recipes
MESSAGES = [{"role": "user", "content": "hello"}]
JSON_CHARSET = "application/json; charset=utf-8"
TIMEOUT_S = 5

#: Builds a recipe's app in front of an upstream WSGI app served on a loopback socket.
Relay = Callable[["WSGIApplication"], "WSGIApplication"]


@pytest.fixture(scope="module", autouse=True)
def recipes_importable() -> Iterator[None]:
    """Import the recipes as users lay them out: ``flask_app`` and ``django_site`` on the path."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(RECIPES))
        yield


@pytest.fixture(scope="module")
def django_application() -> Iterator[WSGIApplication]:
    """The Django recipe's ``wsgi.application``; Django can be set up once per process only."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_SETTINGS_MODULE", "django_site.settings")
        wsgi = importlib.import_module("django_site.wsgi")  # runs django.setup()
        yield wsgi.application


@pytest.fixture(params=["flask", "django"])
def relay(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Relay]:
    """A recipe's app before an upstream; the recipe's pooled connections closed after."""
    with contextlib.ExitStack() as stack:
        if request.param == "flask":
            flask_app = importlib.import_module("flask_app")
            stack.callback(flask_app.session.close)

            def build(upstream: WSGIApplication) -> WSGIApplication:
                monkeypatch.setenv("OLLAMA_URL", stack.enter_context(serve(upstream)))
                app: WSGIApplication = flask_app.create_app()  # reads OLLAMA_URL now
                return app

        else:
            application = request.getfixturevalue("django_application")
            views = importlib.import_module("django_site.views")
            stack.callback(views.session.close)

            def build(upstream: WSGIApplication) -> WSGIApplication:
                # The view reads settings.OLLAMA_URL on each request.
                ollama_url = stack.enter_context(serve(upstream))
                stack.enter_context(override_settings(OLLAMA_URL=ollama_url))
                return application  # type: ignore[no-any-return]

        yield build


class Recorder:
    """An upstream that keeps every response body it sent, whole, in order."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self.bodies: list[bytes] = []

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
        app_iter = self.app(environ, start_response)
        sent: list[bytes] = []
        try:
            for chunk in app_iter:
                sent.append(chunk)
                yield chunk
        finally:
            self.bodies.append(b"".join(sent))
            getattr(app_iter, "close", lambda: None)()


def ndjson(body: bytes) -> list[dict[str, Any]]:
    assert body.endswith(b"\n")
    return [json.loads(line) for line in body.splitlines()]


def sse_data(response: TestResponse) -> list[str]:
    """The ``data`` of each event of an SSE body."""
    assert response.body.endswith(b"\n\n")
    events = response.text.split("\n\n")[:-1]
    assert all(event.startswith("data: ") and "\n" not in event for event in events)
    return [event.removeprefix("data: ") for event in events]


def models(records: Iterable[dict[str, Any]]) -> set[str]:
    return {record["model"] for record in records}


# -- in-process, through webtest's WSGI lint ----------------------------------------------


def test_a_chat_stream_shows_the_alias_in_every_record(relay: Relay) -> None:
    fake = FakeOllama()
    app = TestApp(relay(fake), lint=True)

    response = app.post_json("/api/chat", {"model": ALIAS, "messages": MESSAGES})

    assert fake.requests[-1].json["model"] == TARGET
    assert response.content_type == "application/x-ndjson"
    records = ndjson(response.body)
    assert models(records) == {ALIAS}
    assert [record["done"] for record in records] == [False] * (len(records) - 1) + [True]
    text = "".join(record["message"]["content"] for record in records)
    assert text == f"I am {TARGET}"  # generated text is never rewritten


def test_a_request_naming_no_model_gets_the_default(relay: Relay) -> None:
    fake = FakeOllama()
    app = TestApp(relay(fake), lint=True)

    response = app.post_json("/api/generate", {"prompt": "hi", "stream": False})

    assert fake.requests[-1].json == {"model": TARGET, "prompt": "hi", "stream": False}
    assert response.content_type == "application/json"
    assert response.json["model"] == ALIAS
    assert response.json["response"] == f"I am {TARGET}"
    assert response.headers["Content-Length"] == str(len(response.body))


def test_an_openai_stream_shows_the_alias_and_ends_with_done(relay: Relay) -> None:
    fake = FakeOllama()
    app = TestApp(relay(fake), lint=True)
    body = {"model": ALIAS, "messages": MESSAGES, "stream": True}

    response = app.post_json("/v1/chat/completions", body)

    assert fake.requests[-1].json["model"] == TARGET
    assert response.content_type == "text/event-stream"
    *chunks, done = sse_data(response)
    assert done == "[DONE]"
    assert models(json.loads(chunk) for chunk in chunks) == {ALIAS}
    text = "".join(json.loads(chunk)["choices"][0]["delta"].get("content", "") for chunk in chunks)
    assert text == f"I am {TARGET}"


def test_a_request_naming_a_real_model_comes_back_as_ollama_sent_it(relay: Relay) -> None:
    upstream = Recorder(FakeOllama())
    app = TestApp(relay(upstream), lint=True)

    aliased = app.post_json("/api/generate", {"model": ALIAS, "prompt": "hi"})
    real = app.post_json("/api/generate", {"model": "llama3.2", "prompt": "hi"})

    assert models(ndjson(upstream.bodies[0])) == {TARGET}
    assert models(ndjson(aliased.body)) == {ALIAS}  # only what used an alias is touched
    assert real.body == upstream.bodies[1]
    assert models(ndjson(real.body)) == {"llama3.2"}
    assert real.content_type == "application/x-ndjson"


def test_errors_pass_through_in_ollamas_shape(relay: Relay) -> None:
    fake = FakeOllama(["llama3.2"])  # the alias's target is not installed
    app = TestApp(relay(fake), lint=True)

    unknown = app.post_json("/api/generate", {"model": "nope", "prompt": "hi"}, status=404)
    missing = app.post_json("/api/generate", {"model": ALIAS, "prompt": "hi"}, status=404)

    assert unknown.body == b'{"error":"model \'nope\' not found"}'
    assert unknown.headers["Content-Type"] == JSON_CHARSET
    assert fake.requests[-1].json["model"] == TARGET
    assert missing.json == {"error": f"model '{ALIAS}' not found"}
    assert missing.headers["Content-Type"] == JSON_CHARSET


def test_method_path_query_and_body_reach_ollama(relay: Relay) -> None:
    fake = FakeOllama()
    app = TestApp(relay(fake), lint=True)

    model = app.get(f"/v1/models/{ALIAS}", {"verbose": "1"})
    # An alias cannot be deleted (403): a real model's DELETE carries its body through.
    deleted = app.delete_json("/api/delete", {"model": "llama3.2"})

    first, second = fake.requests
    assert (first.method, first.path, first.query) == ("GET", f"/v1/models/{TARGET}", "verbose=1")
    assert model.json["id"] == ALIAS
    assert (second.method, second.path) == ("DELETE", "/api/delete")
    assert second.json == {"model": "llama3.2"}
    assert deleted.status_int == 200


# -- over real sockets ---------------------------------------------------------------------


def test_the_first_record_arrives_while_ollama_still_generates(relay: Relay) -> None:
    fake = FakeOllama(tokens=4, token_delay_s=0.1)
    # keep_alive 0 unloads the model after the last record: seeing it still loaded proves
    # the first record reached the client before the upstream stream ended.
    body = {"model": ALIAS, "messages": MESSAGES, "keep_alive": 0}
    with (
        serve(relay(fake)) as url,
        requests.Session() as client,
        client.post(f"{url}/api/chat", json=body, stream=True, timeout=TIMEOUT_S) as response,
    ):
        assert response.headers["Content-Type"] == "application/x-ndjson"
        lines = response.iter_lines()
        first = json.loads(next(lines))
        assert fake.loaded == {TARGET}
        rest = [json.loads(line) for line in lines]
    assert fake.loaded == set()
    assert (first["model"], first["message"]["content"], first["done"]) == (ALIAS, "I", False)
    assert models(rest) == {ALIAS}
    assert rest[-1]["done"] is True


def test_a_client_leaving_mid_stream_ends_the_upstream_stream(relay: Relay) -> None:
    fake = FakeOllama(tokens=200, token_delay_s=0.01)
    body = {"model": ALIAS, "prompt": "hi"}
    with serve(relay(fake)) as url, requests.Session() as client:
        with client.post(f"{url}/api/generate", json=body, stream=True, timeout=TIMEOUT_S) as reply:
            first = json.loads(next(reply.iter_lines()))
        # Leaving the block closed the socket; the relay finds out on its next write and
        # closes its response, which closes the connection to Ollama.
        assert fake.disconnected.wait(timeout=TIMEOUT_S)
    assert (first["model"], first["done"]) == (ALIAS, False)
    assert fake.disconnects == 1


# -- with the official clients -------------------------------------------------------------


def test_the_official_clients_name_the_alias_and_see_it(relay: Relay) -> None:
    fake = FakeOllama()
    with (
        serve(relay(fake)) as url,
        ollama.Client(host=url, timeout=TIMEOUT_S) as ollama_client,
        openai.OpenAI(
            base_url=f"{url}/v1", api_key="unused", timeout=TIMEOUT_S, max_retries=0
        ) as openai_client,
    ):
        native = ollama_client.chat(model=ALIAS, messages=MESSAGES)
        compatible = openai_client.chat.completions.create(model=ALIAS, messages=MESSAGES)  # type: ignore[arg-type]

    assert [request.json["model"] for request in fake.requests] == [TARGET, TARGET]
    assert (native.model, native.message.content) == (ALIAS, f"I am {TARGET}")
    assert (compatible.model, compatible.choices[0].message.content) == (ALIAS, f"I am {TARGET}")


def test_the_official_clients_send_no_request_without_a_model(relay: Relay) -> None:
    """Why the docs say their users name the alias: only raw HTTP can leave the model out."""
    fake = FakeOllama()
    with (
        serve(relay(fake)) as url,
        ollama.Client(host=url, timeout=TIMEOUT_S) as ollama_client,
        openai.OpenAI(
            base_url=f"{url}/v1", api_key="unused", timeout=TIMEOUT_S, max_retries=0
        ) as openai_client,
    ):
        with pytest.raises(pydantic.ValidationError, match="model"):
            ollama_client.chat(messages=MESSAGES)
        with pytest.raises(TypeError, match="model"):
            openai_client.chat.completions.create(messages=MESSAGES)  # type: ignore[call-overload]

    assert fake.requests == []


# -- under the production command of docs/middleware.rst ------------------------------------


def production_commands() -> dict[str, list[str]]:
    """The gunicorn command line the middleware page gives for each recipe."""
    commands = {}
    for line in (DOCS / "middleware.rst").read_text().splitlines():
        if line.strip().startswith("gunicorn "):
            words = shlex.split(line, comments=True)
            commands["flask" if "flask_app" in words[-1] else "django"] = words
    return commands


@pytest.mark.parametrize("recipe", ["flask", "django"])
def test_the_production_command_streams_and_forwards_the_content_type_alone(
    recipe: str, tmp_path: Path
) -> None:
    command = production_commands()[recipe]
    assert command[:3] == ["gunicorn", "--worker-class", "gevent"]
    fake = FakeOllama(tokens=4, token_delay_s=0.1)
    body = {"model": ALIAS, "messages": MESSAGES, "keep_alive": 0}
    client_headers = {"Authorization": "Bearer secret", "X-Request-Id": "42", "User-Agent": "me"}
    gunicorn = [sys.executable, "-m", "gunicorn", "--no-control-socket", "--chdir", str(RECIPES)]
    with serve(fake) as ollama_url:
        server = start_server(
            [*gunicorn, *command[1:]], {"OLLAMA_URL": ollama_url}, log_dir=tmp_path
        )
        try:
            server.wait_until_ready()
            with (
                requests.Session() as client,
                client.post(
                    f"{server.base_url}/api/chat",
                    json=body,
                    headers=client_headers,
                    stream=True,
                    timeout=TIMEOUT_S,
                ) as response,
            ):
                lines = response.iter_lines()
                first = json.loads(next(lines))
                assert fake.loaded == {TARGET}  # still generating: the first record is early
                rest = [json.loads(line) for line in lines]
        finally:
            server.stop()

    log = server.stderr()
    assert "Using worker: gevent" in log
    assert "Traceback" not in log
    assert "MonkeyPatchWarning" not in log
    assert models([first, *rest]) == {ALIAS}
    assert rest[-1]["done"] is True
    (chat,) = [request for request in fake.requests if request.path == "/api/chat"]
    assert chat.json["model"] == TARGET
    assert chat.headers["content-type"] == "application/json"
    assert chat.headers["user-agent"].startswith("python-requests/")
    assert not {"authorization", "x-request-id"} & set(chat.headers)
