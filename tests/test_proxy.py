"""The proxy as users run it: a real gunicorn process in front of the fake Ollama.

Each gunicorn is configured as the docs say, by ``OLLAMA_DEFAULT_*`` variables and a TOML
file, and driven by the official ``ollama`` and ``openai`` clients (raw ``requests`` or raw
sockets where a client cannot say what the test needs). Every test checks both sides: what
the upstream received and what the client saw. The common proxies are module-scoped, so
gunicorn starts once per configuration; see ``gunicorn_process`` for how it is started,
polled for readiness and stopped.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import anthropic
import langchain_ollama
import ollama
import openai
import pytest
import requests
from fake_ollama import DEFAULT_MODELS, FakeOllama, RecordedRequest, serve
from gunicorn_process import GunicornProcess, run_gunicorn, start_gunicorn
from openai.types.chat import ChatCompletionUserMessageParam

from ollama_default.proxy.cli import SERVE_DEFAULTS

CHAT_ALIAS = "llmodel"
CHAT_TARGET = "aya-expanse:8b-q8_0"
EMBED_ALIAS = "embed"
EMBED_TARGET = "nomic-embed-text:latest"
ANSWER = f"I am {CHAT_TARGET}"  # the fake's generated text names the model it ran
MESSAGES: list[ChatCompletionUserMessageParam] = [{"role": "user", "content": "hello"}]
TIMEOUT_S = 10.0
CONFIG_ERROR = "ollama-default: configuration error:"

#: The gunicorn settings ``ollama-default serve`` uses (gevent, 2 workers).
SERVE_OPTIONS = (
    "--worker-class", SERVE_DEFAULTS["worker_class"],
    "--workers", str(SERVE_DEFAULTS["workers"]),
    "--worker-connections", str(SERVE_DEFAULTS["worker_connections"]),
    "--keep-alive", str(SERVE_DEFAULTS["keepalive"]),
    "--graceful-timeout", str(SERVE_DEFAULTS["graceful_timeout"]),
)  # fmt: skip
#: A small gthread proxy for the configurations one or two tests use.
SMALL_OPTIONS = ("--worker-class", "gthread", "--workers", "1", "--threads", "8")

CONFIG_TOML = f"""\
default = "{CHAT_ALIAS}"

[aliases]
{CHAT_ALIAS} = "{CHAT_TARGET}"
{EMBED_ALIAS} = "{EMBED_TARGET}"
"""


# --------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def fake() -> FakeOllama:
    """The upstream Ollama every working proxy forwards to."""
    return FakeOllama()


@pytest.fixture(scope="module")
def fake_url(fake: FakeOllama) -> Iterator[str]:
    """The fake on a loopback socket."""
    with serve(fake) as url:
        yield url


@pytest.fixture(scope="module")
def proxy(fake_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornProcess]:
    """``gunicorn ollama_default.proxy:app`` as ``ollama-default serve`` runs it, set by TOML."""
    directory = tmp_path_factory.mktemp("proxy")
    config = directory / "ollama-default.toml"
    config.write_text(CONFIG_TOML)
    settings = {"OLLAMA_DEFAULT_UPSTREAM": fake_url, "OLLAMA_DEFAULT_CONFIG": str(config)}
    with run_gunicorn(settings, log_dir=directory, options=SERVE_OPTIONS) as server:
        yield server
    assert "Traceback" not in server.stderr()


@pytest.fixture(scope="module")
def prefixed_proxy(
    fake_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GunicornProcess]:
    """The proxy under ``/llm``, with one alias (also the default) from the environment."""
    settings = {
        "OLLAMA_DEFAULT_UPSTREAM": fake_url,
        "OLLAMA_DEFAULT_ALIAS": CHAT_ALIAS,
        "OLLAMA_DEFAULT_TARGET": CHAT_TARGET,
        "OLLAMA_DEFAULT_PREFIX": "/llm",
    }
    log_dir = tmp_path_factory.mktemp("prefixed")
    with run_gunicorn(settings, log_dir=log_dir, options=SMALL_OPTIONS) as server:
        yield server
    assert "Traceback" not in server.stderr()


@pytest.fixture
def ollama_client(proxy: GunicornProcess) -> Iterator[ollama.Client]:
    with ollama.Client(host=proxy.base_url, timeout=TIMEOUT_S) as client:
        yield client


@pytest.fixture
def openai_client(proxy: GunicornProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{proxy.base_url}/v1", api_key="x", timeout=TIMEOUT_S, max_retries=0
    ) as client:
        yield client


@pytest.fixture
def slow_fake(fake: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> FakeOllama:
    """The common fake, streaming 200 records 50 ms apart, with a fresh ``disconnected``."""
    monkeypatch.setattr(fake, "token_delay_s", 0.05)
    monkeypatch.setattr(fake, "tokens", 200)
    monkeypatch.setattr(fake, "disconnected", threading.Event())
    return fake


# --------------------------------------------------------------------------------------
# Helpers


def raw_exchange(server: GunicornProcess, request: bytes) -> tuple[int, bytes]:
    """Send ``request`` as written on a new connection; return the status and the body."""
    method = request.split(b" ", 1)[0].decode("ascii")
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock, method=method)
        try:
            response.begin()
            return response.status, response.read()
        finally:
            response.close()


def new_requests(fake: FakeOllama, before: int) -> list[RecordedRequest]:
    """The requests the fake received since it had received ``before``."""
    return fake.requests[before:]


def ndjson(response: requests.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.iter_lines() if line]


def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --------------------------------------------------------------------------------------
# A raw upstream, for what no HTTP server library would do


@dataclass
class RawRequest:
    """One request exactly as the raw upstream read it."""

    request_line: bytes
    headers: dict[bytes, bytes]  # names lower-case
    body: bytes

    @property
    def path(self) -> bytes:
        return self.request_line.split(b" ")[1]


#: What the raw upstream does after reading a request: given the socket and the request.
Behaviour = Callable[[socket.socket, RawRequest], None]


class RawUpstream:
    """A loopback server that reads each request whole, then does ``behaviour`` to the socket.

    For upstreams no HTTP server library would play (silent after the request, cut off
    mid-stream) and for seeing a request byte for byte: ``received`` holds each one, its
    chunked body decoded. One request per connection; every connection is closed with the
    server.
    """

    def __init__(self) -> None:
        self.behaviour: Behaviour = stays_silent
        self.received: list[RawRequest] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="raw-upstream", daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._handle, args=(connection,), daemon=True)
            with self._lock:
                self._connections.append(connection)
                self._threads.append(thread)
            thread.start()

    def _handle(self, connection: socket.socket) -> None:
        connection.settimeout(TIMEOUT_S)
        with contextlib.suppress(OSError, ValueError), connection.makefile("rb") as reader:
            request = _read_request(reader)
            if request is not None:
                self.received.append(request)
                self.behaviour(connection, request)

    def close(self) -> None:
        self._stopping.set()
        self._acceptor.join(timeout=5)
        with self._lock:
            connections, threads = list(self._connections), list(self._threads)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
        for thread in threads:
            thread.join(timeout=5)
        self._listener.close()


def _read_request(reader: BinaryIO) -> RawRequest | None:
    request_line = reader.readline(65537).rstrip(b"\r\n")
    if not request_line:
        return None
    headers: dict[bytes, bytes] = {}
    for _ in range(100):
        line = reader.readline(65537).rstrip(b"\r\n")
        if not line:
            break
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        chunks = []
        for _ in range(10_000):
            size = int(reader.readline(65537).split(b";")[0], 16)
            if size == 0:
                reader.readline(65537)  # no trailers: the empty line ending the body
                break
            chunks.append(reader.read(size))
            reader.readline(65537)
        body = b"".join(chunks)
    else:
        body = reader.read(int(headers.get(b"content-length", b"0")))
    return RawRequest(request_line, headers, body)


def stays_silent(connection: socket.socket, request: RawRequest) -> None:
    """Answer nothing, keeping the connection open."""


def answers_empty_object(connection: socket.socket, request: RawRequest) -> None:
    """Answer ``{}`` and close the connection."""
    connection.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
        b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    connection.close()


def sends_one_record_then(*, reset: bool) -> Behaviour:
    """Send the headers and one stream record, then close (FIN) or reset (RST)."""

    def behaviour(connection: socket.socket, request: RawRequest) -> None:
        message = {"role": "assistant", "content": "I"}
        if request.path.startswith(b"/v1/messages"):
            start = {"type": "message_start", "message": {
                "id": "msg_1", "type": "message", "role": "assistant", "model": CHAT_TARGET,
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 0}}}  # fmt: skip
            content_type, record = (
                b"text/event-stream",
                b"event: message_start\ndata: %s\n\n" % json.dumps(start).encode(),
            )
        elif request.path.startswith(b"/v1/"):
            chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                     "model": CHAT_TARGET, "choices": [{"index": 0, "delta": message}]}  # fmt: skip
            content_type, record = (
                b"text/event-stream",
                b"data: %s\n\n" % json.dumps(chunk).encode(),
            )
        else:
            native = {"model": CHAT_TARGET, "created_at": "2025-05-04T17:37:44Z",
                      "message": message, "done": False}  # fmt: skip
            content_type, record = b"application/x-ndjson", json.dumps(native).encode() + b"\n"
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"%x\r\n%s\r\n" % (content_type, len(record), record)
        )
        if reset:
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
        connection.close()

    return behaviour


@pytest.fixture(scope="module")
def raw_upstream() -> Iterator[RawUpstream]:
    """One raw upstream for the tests that need it; each sets its ``behaviour``."""
    upstream = RawUpstream()
    try:
        yield upstream
    finally:
        upstream.close()


@pytest.fixture(scope="module")
def proxy_to_raw(
    raw_upstream: RawUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GunicornProcess]:
    """The proxy before ``raw_upstream``, waiting 1 s at most for each next byte."""
    settings = {
        "OLLAMA_DEFAULT_UPSTREAM": raw_upstream.url,
        "OLLAMA_DEFAULT_ALIAS": CHAT_ALIAS,
        "OLLAMA_DEFAULT_TARGET": CHAT_TARGET,
        "OLLAMA_DEFAULT_READ_TIMEOUT_S": "1",
    }
    log_dir = tmp_path_factory.mktemp("raw")
    with run_gunicorn(settings, log_dir=log_dir, options=SMALL_OPTIONS) as server:
        yield server
    assert "Traceback" not in server.stderr()


@pytest.fixture
def upstream_that(
    raw_upstream: RawUpstream, proxy_to_raw: GunicornProcess, monkeypatch: pytest.MonkeyPatch
) -> Callable[[Behaviour], GunicornProcess]:
    """Set what the raw upstream does with each request; return the proxy in front of it."""

    def set_behaviour(behaviour: Behaviour) -> GunicornProcess:
        monkeypatch.setattr(raw_upstream, "behaviour", behaviour)
        return proxy_to_raw

    return set_behaviour


@pytest.fixture(scope="module")
def unreachable_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornProcess]:
    """The proxy before a loopback port nothing listens on."""
    settings = {
        "OLLAMA_DEFAULT_UPSTREAM": f"http://127.0.0.1:{closed_port()}",
        "OLLAMA_DEFAULT_ALIAS": CHAT_ALIAS,
        "OLLAMA_DEFAULT_TARGET": CHAT_TARGET,
    }
    log_dir = tmp_path_factory.mktemp("unreachable")
    with run_gunicorn(settings, log_dir=log_dir, options=SMALL_OPTIONS) as server:
        yield server
    assert "Traceback" not in server.stderr()


# --------------------------------------------------------------------------------------
# The ollama client


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_ollama_chat_with_an_alias_runs_the_target_and_answers_as_the_alias(
    ollama_client: ollama.Client, fake: FakeOllama, stream: bool
) -> None:
    if stream:
        parts = list(ollama_client.chat(model=CHAT_ALIAS, messages=MESSAGES, stream=True))
    else:
        parts = [ollama_client.chat(model=CHAT_ALIAS, messages=MESSAGES)]

    assert fake.requests[-1].path == "/api/chat"
    assert fake.requests[-1].json["model"] == CHAT_TARGET
    assert {part.model for part in parts} == {CHAT_ALIAS}
    assert "".join(part.message.content or "" for part in parts) == ANSWER
    assert parts[-1].done


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_ollama_generate_with_an_alias_runs_the_target_and_answers_as_the_alias(
    ollama_client: ollama.Client, fake: FakeOllama, stream: bool
) -> None:
    if stream:
        parts = list(ollama_client.generate(model=CHAT_ALIAS, prompt="hello", stream=True))
    else:
        parts = [ollama_client.generate(model=CHAT_ALIAS, prompt="hello")]

    assert fake.requests[-1].path == "/api/generate"
    assert fake.requests[-1].json["model"] == CHAT_TARGET
    assert {part.model for part in parts} == {CHAT_ALIAS}
    assert "".join(part.response or "" for part in parts) == ANSWER


def test_ollama_embed_with_an_alias_runs_the_target_and_answers_as_the_alias(
    ollama_client: ollama.Client, fake: FakeOllama
) -> None:
    response = ollama_client.embed(model=EMBED_ALIAS, input=["hello", "world"])

    assert fake.requests[-1].path == "/api/embed"
    assert fake.requests[-1].json["model"] == EMBED_TARGET
    assert response.model == EMBED_ALIAS
    assert len(response.embeddings) == 2


def test_ollama_list_shows_the_aliases_and_each_listed_name_chats(
    ollama_client: ollama.Client, fake: FakeOllama
) -> None:
    listed = ollama_client.list()

    assert fake.requests[-1].path == "/api/tags"
    names = [model.model for model in listed.models]
    assert names == [f"{CHAT_ALIAS}:latest", f"{EMBED_ALIAS}:latest", *DEFAULT_MODELS]
    alias, target = listed.models[0], listed.models[names.index(CHAT_TARGET)]
    assert (alias.digest, alias.size, alias.modified_at, alias.details) == (
        target.digest, target.size, target.modified_at, target.details
    )  # fmt: skip
    # A client picks the listed name and sends it back, with or without the tag.
    for name in (alias.model, CHAT_ALIAS):
        assert name is not None
        reply = ollama_client.chat(model=name, messages=MESSAGES)
        assert fake.requests[-1].json["model"] == CHAT_TARGET
        assert reply.model == name
        assert reply.message.content == ANSWER


def test_ollama_ps_shows_an_alias_whose_target_is_loaded(
    ollama_client: ollama.Client, fake: FakeOllama
) -> None:
    ollama_client.generate(model=CHAT_ALIAS, prompt="")  # loads it
    loaded = ollama_client.ps().models

    assert fake.requests[-1].path == "/api/ps"
    by_name = {model.model: model for model in loaded}
    alias, target = by_name[f"{CHAT_ALIAS}:latest"], by_name[CHAT_TARGET]
    assert (alias.size_vram, alias.expires_at, alias.digest) == (
        target.size_vram, target.expires_at, target.digest
    )  # fmt: skip


def test_ollama_show_of_an_alias_names_the_alias(ollama_client: ollama.Client) -> None:
    shown = ollama_client.show(CHAT_ALIAS)

    assert shown.modelfile is not None
    assert f"# FROM {CHAT_ALIAS}:latest\n" in shown.modelfile
    assert CHAT_TARGET not in shown.modelfile


def test_langchain_validates_and_chats_with_an_alias(proxy: GunicornProcess) -> None:
    # validate_model_on_init looks the model up in /api/tags (langchain_ollama
    # _utils.validate_model), as Open WebUI and Home Assistant do.
    chat = langchain_ollama.ChatOllama(
        model=CHAT_ALIAS, base_url=proxy.base_url, validate_model_on_init=True
    )
    try:
        assert chat.invoke("hello").content == ANSWER
    finally:
        chat._client.close()  # its keep-alive socket; ChatOllama never closes it


# --------------------------------------------------------------------------------------
# The openai client


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_openai_chat_with_an_alias_runs_the_target_and_answers_as_the_alias(
    openai_client: openai.OpenAI, fake: FakeOllama, stream: bool
) -> None:
    if stream:
        with openai_client.chat.completions.create(
            model=CHAT_ALIAS, messages=MESSAGES, stream=True
        ) as chunks:
            received = list(chunks)
        models = {chunk.model for chunk in received}
        text = "".join(chunk.choices[0].delta.content or "" for chunk in received if chunk.choices)
    else:
        completion = openai_client.chat.completions.create(model=CHAT_ALIAS, messages=MESSAGES)
        models, text = {completion.model}, completion.choices[0].message.content or ""

    assert fake.requests[-1].path == "/v1/chat/completions"
    assert fake.requests[-1].json["model"] == CHAT_TARGET
    assert models == {CHAT_ALIAS}
    assert text == ANSWER


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_openai_completion_with_an_alias_runs_the_target_and_answers_as_the_alias(
    openai_client: openai.OpenAI, fake: FakeOllama, stream: bool
) -> None:
    if stream:
        with openai_client.completions.create(
            model=CHAT_ALIAS, prompt="hello", stream=True
        ) as chunks:
            received = list(chunks)
        models = {chunk.model for chunk in received}
        text = "".join(chunk.choices[0].text for chunk in received if chunk.choices)
    else:
        completion = openai_client.completions.create(model=CHAT_ALIAS, prompt="hello")
        models, text = {completion.model}, completion.choices[0].text

    assert fake.requests[-1].path == "/v1/completions"
    assert fake.requests[-1].json["model"] == CHAT_TARGET
    assert models == {CHAT_ALIAS}
    assert text == ANSWER


def test_openai_embeddings_with_an_alias_run_the_target_and_answer_as_the_alias(
    openai_client: openai.OpenAI, fake: FakeOllama
) -> None:
    response = openai_client.embeddings.create(model=EMBED_ALIAS, input="hello")

    assert fake.requests[-1].path == "/v1/embeddings"
    assert fake.requests[-1].json["model"] == EMBED_TARGET
    assert response.model == EMBED_ALIAS
    assert len(response.data) == 1


def test_openai_models_list_shows_the_aliases_and_each_listed_id_chats(
    openai_client: openai.OpenAI, fake: FakeOllama
) -> None:
    listed = openai_client.models.list()

    assert fake.requests[-1].path == "/v1/models"
    ids = [model.id for model in listed.data]
    assert ids == [f"{CHAT_ALIAS}:latest", f"{EMBED_ALIAS}:latest", *DEFAULT_MODELS]
    assert listed.data[0].created == listed.data[ids.index(CHAT_TARGET)].created
    assert listed.data[0].owned_by == "library"
    completion = openai_client.chat.completions.create(model=ids[0], messages=MESSAGES)
    assert fake.requests[-1].json["model"] == CHAT_TARGET
    assert completion.model == ids[0]


@pytest.mark.parametrize("name", [CHAT_ALIAS, f"{CHAT_ALIAS}:latest"], ids=["bare", "tagged"])
def test_openai_models_retrieve_shows_the_alias(
    openai_client: openai.OpenAI, fake: FakeOllama, name: str
) -> None:
    model = openai_client.models.retrieve(name)

    assert fake.requests[-1].path == f"/v1/models/{CHAT_TARGET}"
    assert (model.id, model.object, model.owned_by) == (name, "model", "library")


def test_a_proxy_hiding_the_real_models_lists_only_the_aliases(
    fake_url: str, tmp_path: Path
) -> None:
    settings = {
        "OLLAMA_DEFAULT_UPSTREAM": fake_url,
        "OLLAMA_DEFAULT_ALIAS": CHAT_ALIAS,
        "OLLAMA_DEFAULT_TARGET": CHAT_TARGET,
        "OLLAMA_DEFAULT_HIDE_REAL_MODELS": "1",
    }
    with run_gunicorn(settings, log_dir=tmp_path, options=SMALL_OPTIONS) as server:
        with ollama.Client(host=server.base_url, timeout=TIMEOUT_S) as client:
            assert [m.model for m in client.list().models] == [f"{CHAT_ALIAS}:latest"]
        with openai.OpenAI(
            base_url=server.base_url + "/v1", api_key="x", timeout=TIMEOUT_S, max_retries=0
        ) as openai_client:
            assert [m.id for m in openai_client.models.list().data] == [f"{CHAT_ALIAS}:latest"]
    assert "Traceback" not in server.stderr()


# --------------------------------------------------------------------------------------
# No model: the default


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", {"messages": MESSAGES, "stream": False}),
        ("/api/generate", {"prompt": "hello", "stream": False}),
        ("/v1/chat/completions", {"messages": MESSAGES}),
    ],
    ids=["chat", "generate", "openai-chat"],
)
def test_a_request_without_a_model_runs_the_default_target(
    proxy: GunicornProcess, fake: FakeOllama, path: str, body: dict[str, Any]
) -> None:
    response = requests.post(proxy.base_url + path, json=body, timeout=TIMEOUT_S)

    assert response.status_code == 200, response.text
    assert fake.requests[-1].path == path
    assert fake.requests[-1].json["model"] == CHAT_TARGET
    assert response.json()["model"] == CHAT_ALIAS
    assert ANSWER in response.text


@pytest.mark.parametrize(
    ("path", "body", "text_of"),
    [
        ("/api/chat", {"messages": MESSAGES}, lambda record: record["message"]["content"]),
        ("/api/generate", {"prompt": "hello"}, lambda record: record["response"]),
    ],
    ids=["chat", "generate"],
)
def test_a_streamed_request_without_a_model_runs_the_default_target(
    proxy: GunicornProcess,
    fake: FakeOllama,
    path: str,
    body: dict[str, Any],
    text_of: Callable[[dict[str, Any]], str],
) -> None:
    with requests.post(proxy.base_url + path, json=body, stream=True, timeout=TIMEOUT_S) as reply:
        records = ndjson(reply)

    assert fake.requests[-1].json["model"] == CHAT_TARGET
    assert {record["model"] for record in records} == {CHAT_ALIAS}
    assert "".join(text_of(record) for record in records) == ANSWER


# --------------------------------------------------------------------------------------
# The prefix


def test_a_path_under_the_prefix_reaches_the_same_path_upstream(
    prefixed_proxy: GunicornProcess, fake: FakeOllama
) -> None:
    response = requests.get(f"{prefixed_proxy.base_url}/llm/api/tags?x=1", timeout=TIMEOUT_S)

    assert response.status_code == 200
    assert (fake.requests[-1].path, fake.requests[-1].query) == ("/api/tags", "x=1")


def test_the_ollama_client_works_under_the_prefix(
    prefixed_proxy: GunicornProcess, fake: FakeOllama
) -> None:
    with ollama.Client(host=f"{prefixed_proxy.base_url}/llm", timeout=TIMEOUT_S) as client:
        reply = client.chat(model=CHAT_ALIAS, messages=MESSAGES)

    assert fake.requests[-1].path == "/api/chat"
    assert fake.requests[-1].json["model"] == CHAT_TARGET
    assert (reply.model, reply.message.content) == (CHAT_ALIAS, ANSWER)


def test_the_openai_client_works_under_the_prefix(
    prefixed_proxy: GunicornProcess, fake: FakeOllama
) -> None:
    with openai.OpenAI(
        base_url=f"{prefixed_proxy.base_url}/llm/v1", api_key="x", timeout=TIMEOUT_S, max_retries=0
    ) as client:
        completion = client.chat.completions.create(model=CHAT_ALIAS, messages=MESSAGES)

    assert fake.requests[-1].path == "/v1/chat/completions"
    assert fake.requests[-1].json["model"] == CHAT_TARGET
    assert (completion.model, completion.choices[0].message.content) == (CHAT_ALIAS, ANSWER)


def test_a_native_path_outside_the_prefix_is_a_404_in_ollamas_error_shape(
    prefixed_proxy: GunicornProcess, fake: FakeOllama
) -> None:
    before = len(fake.requests)
    with (
        ollama.Client(host=prefixed_proxy.base_url, timeout=TIMEOUT_S) as client,
        pytest.raises(ollama.ResponseError) as raised,
    ):
        client.chat(model=CHAT_ALIAS, messages=MESSAGES)

    assert raised.value.status_code == 404
    assert "/api/chat" in raised.value.error  # parsed from {"error": "..."}
    assert new_requests(fake, before) == []


def test_an_openai_path_outside_the_prefix_is_a_404_in_openais_error_shape(
    prefixed_proxy: GunicornProcess, fake: FakeOllama
) -> None:
    before = len(fake.requests)
    with (
        openai.OpenAI(
            base_url=f"{prefixed_proxy.base_url}/v1", api_key="x", timeout=TIMEOUT_S, max_retries=0
        ) as client,
        pytest.raises(openai.NotFoundError) as raised,
    ):
        client.chat.completions.create(model=CHAT_ALIAS, messages=MESSAGES)

    assert raised.value.status_code == 404
    assert isinstance(raised.value.body, dict)
    assert "/v1/chat/completions" in raised.value.body["message"]
    assert raised.value.body["type"] == "not_found_error"
    assert new_requests(fake, before) == []


# --------------------------------------------------------------------------------------
# Forwarding hygiene


def test_the_upstream_sees_its_own_host_and_the_forwarded_headers(
    proxy: GunicornProcess, fake: FakeOllama, fake_url: str
) -> None:
    status, _ = raw_exchange(
        proxy,
        b"GET /api/version HTTP/1.1\r\nHost: client.example:8443\r\n"
        b"X-Forwarded-For: 203.0.113.7\r\nConnection: close\r\n\r\n",
    )

    headers = fake.requests[-1].headers
    assert status == 200
    assert headers["host"] == urlsplit(fake_url).netloc
    assert headers["x-forwarded-for"] == "127.0.0.1"  # the client's claim: no trusted proxy
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "client.example:8443"


def test_hop_by_hop_headers_are_not_passed_on(proxy: GunicornProcess, fake: FakeOllama) -> None:
    status, _ = raw_exchange(
        proxy,
        b"GET /api/version HTTP/1.1\r\nHost: proxy\r\n"
        b"Connection: close, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n"
        b"TE: trailers\r\nUpgrade: websocket\r\nProxy-Authorization: Basic eDp4\r\n"
        b"X-Kept: yes\r\n\r\n",
    )

    headers = fake.requests[-1].headers
    assert status == 200
    assert headers["x-kept"] == "yes"
    for name in ("x-secret", "keep-alive", "te", "upgrade", "proxy-authorization"):
        assert name not in headers
    assert "secret" not in headers.get("connection", "").lower()


@pytest.mark.parametrize(
    "target",
    [
        "/api/tags?b=2&a=%20x&a=1&flag",
        "/api/experimental/sha256:00ff?x=%2F&y=a+b",  # the store is closed: not a blob
        "/api/%C3%A9t%C3%A9%20x?q=%C3%A9",
        "/v1/models/library%2Fqwen3",
        "/api/tags%3Bx",
    ],
    ids=["query", "colon-and-encoded-query", "utf-8", "encoded-slash", "encoded-semicolon"],
)
def test_the_path_and_query_string_are_forwarded_exactly(
    upstream_that: Callable[[Behaviour], GunicornProcess], raw_upstream: RawUpstream, target: str
) -> None:
    server = upstream_that(answers_empty_object)

    status, _ = raw_exchange(server, f"GET {target} HTTP/1.1\r\nHost: p\r\n\r\n".encode())

    assert status == 200
    assert raw_upstream.received[-1].request_line == f"GET {target} HTTP/1.1".encode()


@pytest.mark.parametrize(
    ("method", "headers"),
    [("GET", ""), ("POST", "Content-Length: 0\r\n")],
    ids=["get", "post-empty"],
)
def test_a_request_without_a_body_is_forwarded_without_one(
    upstream_that: Callable[[Behaviour], GunicornProcess],
    raw_upstream: RawUpstream,
    method: str,
    headers: str,
) -> None:
    server = upstream_that(answers_empty_object)

    raw_exchange(server, f"{method} /api/unknown HTTP/1.1\r\nHost: p\r\n{headers}\r\n".encode())

    received = raw_upstream.received[-1]
    assert received.request_line == f"{method} /api/unknown HTTP/1.1".encode()
    assert b"transfer-encoding" not in received.headers
    assert received.headers.get(b"content-length", b"0") == b"0"
    assert received.body == b""


@pytest.mark.parametrize(
    "framing",
    [
        "Content-Length: 11\r\n\r\nhello world",
        "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    ],
    ids=["content-length", "chunked"],
)
def test_a_request_body_is_forwarded_whole_and_framed_once(
    upstream_that: Callable[[Behaviour], GunicornProcess], raw_upstream: RawUpstream, framing: str
) -> None:
    server = upstream_that(answers_empty_object)

    status, _ = raw_exchange(server, f"POST /api/unknown HTTP/1.1\r\nHost: p\r\n{framing}".encode())

    received = raw_upstream.received[-1]
    assert status == 200
    assert received.body == b"hello world"
    # RFC 9112 section 6.1: never both, or the two ends may disagree where the body ends.
    assert not {b"content-length", b"transfer-encoding"} <= received.headers.keys()


@pytest.mark.parametrize(
    "target",
    [
        "http://evil.example/api/tags",
        "//evil.example/api/tags",
        "/api/%2e%2e/x",
        "/api/%2E%2E/%2e%2e/api/tags",
        "/api/../x",
        "/api/./tags",
    ],
    ids=["absolute-form", "double-slash", "encoded-dots", "encoded-dots-upper", "dots", "dot"],
)
def test_a_request_target_never_reaches_another_host_or_climbs_out(
    proxy: GunicornProcess, fake: FakeOllama, fake_url: str, target: str
) -> None:
    before = len(fake.requests)
    request = f"GET {target} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"

    status, body = raw_exchange(proxy, request.encode())

    forwarded = new_requests(fake, before)
    if status == 400:
        assert forwarded == []
        assert "error" in json.loads(body)
    else:
        assert [(seen.path, seen.headers["host"]) for seen in forwarded] == [
            ("/api/tags", urlsplit(fake_url).netloc)
        ]


# --------------------------------------------------------------------------------------
# Failure modes


def test_an_unreachable_upstream_is_a_502_in_ollamas_shape_naming_it_only_in_the_log(
    unreachable_proxy: GunicornProcess,
) -> None:
    upstream = unreachable_proxy.settings["OLLAMA_DEFAULT_UPSTREAM"]
    with (
        ollama.Client(host=unreachable_proxy.base_url, timeout=TIMEOUT_S) as client,
        pytest.raises(ollama.ResponseError) as raised,
    ):
        client.chat(model=CHAT_ALIAS, messages=MESSAGES)

    assert raised.value.status_code == 502
    assert raised.value.error.startswith("upstream unreachable (request id ")
    assert upstream not in raised.value.error
    request_id = raised.value.error.rsplit(" ", 1)[1].rstrip(")")
    line = unreachable_proxy.log_line(request_id)
    assert f'error="upstream {upstream} is unreachable: connection refused"' in line


def test_an_unreachable_upstream_is_a_502_in_openais_shape(
    unreachable_proxy: GunicornProcess,
) -> None:
    upstream = unreachable_proxy.settings["OLLAMA_DEFAULT_UPSTREAM"]
    with (
        openai.OpenAI(
            base_url=f"{unreachable_proxy.base_url}/v1", api_key="x", timeout=TIMEOUT_S,
            max_retries=0,
        ) as client,
        pytest.raises(openai.APIStatusError) as raised,
    ):  # fmt: skip
        client.chat.completions.create(model=CHAT_ALIAS, messages=MESSAGES)

    assert raised.value.status_code == 502
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["message"].startswith("upstream unreachable (request id ")
    assert upstream not in raised.value.body["message"]
    assert raised.value.body["type"] == "api_error"


def test_an_upstream_that_never_answers_is_a_504_after_the_read_timeout(
    upstream_that: Callable[[Behaviour], GunicornProcess],
) -> None:
    server = upstream_that(stays_silent)
    started = time.monotonic()
    with (
        ollama.Client(host=server.base_url, timeout=TIMEOUT_S) as client,
        pytest.raises(ollama.ResponseError) as raised,
    ):
        client.chat(model=CHAT_ALIAS, messages=MESSAGES)

    assert raised.value.status_code == 504
    assert raised.value.error.startswith("upstream did not answer within 1 s (request id ")
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_a_stream_the_upstream_cuts_short_ends_with_an_error_record(
    upstream_that: Callable[[Behaviour], GunicornProcess],
    reset: bool,
) -> None:
    server = upstream_that(sends_one_record_then(reset=reset))
    body = {"model": CHAT_ALIAS, "messages": MESSAGES}
    with requests.post(
        f"{server.base_url}/api/chat", json=body, stream=True, timeout=TIMEOUT_S
    ) as response:
        records = ndjson(response)

    assert response.status_code == 200
    assert [record.get("model") for record in records] == [CHAT_ALIAS, None]
    assert records[0]["message"]["content"] == "I"
    assert "cut short" in records[-1]["error"]
    assert server.settings["OLLAMA_DEFAULT_UPSTREAM"] not in records[-1]["error"]


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_the_ollama_client_sees_a_cut_stream_as_an_error_after_the_first_part(
    upstream_that: Callable[[Behaviour], GunicornProcess],
    reset: bool,
) -> None:
    server = upstream_that(sends_one_record_then(reset=reset))
    parts = []
    with (
        ollama.Client(host=server.base_url, timeout=TIMEOUT_S) as client,
        pytest.raises(ollama.ResponseError, match="cut short"),
    ):
        for part in client.chat(model=CHAT_ALIAS, messages=MESSAGES, stream=True):
            parts.append(part)

    assert [(part.model, part.message.content) for part in parts] == [(CHAT_ALIAS, "I")]


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_the_openai_client_sees_a_cut_stream_as_an_error_after_the_first_chunk(
    upstream_that: Callable[[Behaviour], GunicornProcess],
    reset: bool,
) -> None:
    server = upstream_that(sends_one_record_then(reset=reset))
    chunks = []
    with (
        openai.OpenAI(
            base_url=f"{server.base_url}/v1", api_key="x", timeout=TIMEOUT_S, max_retries=0
        ) as client,
        pytest.raises(openai.APIError, match="cut short"),
        client.chat.completions.create(model=CHAT_ALIAS, messages=MESSAGES, stream=True) as stream,
    ):
        for chunk in stream:
            chunks.append(chunk)

    assert [(chunk.model, chunk.choices[0].delta.content) for chunk in chunks] == [
        (CHAT_ALIAS, "I")
    ]


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_the_anthropic_client_sees_a_cut_stream_as_an_error_after_message_start(
    upstream_that: Callable[[Behaviour], GunicornProcess],
    reset: bool,
) -> None:
    server = upstream_that(sends_one_record_then(reset=reset))
    events = []
    with (
        anthropic.Anthropic(
            base_url=server.base_url, api_key="x", timeout=TIMEOUT_S, max_retries=0
        ) as client,
        pytest.raises(anthropic.APIStatusError, match="cut short") as raised,
        client.messages.create(
            model=CHAT_ALIAS, max_tokens=10, messages=[{"role": "user", "content": "hello"}],
            stream=True,
        ) as stream,
    ):  # fmt: skip
        for event in stream:
            events.append(event)

    assert [event.type for event in events] == ["message_start"]
    assert events[0].message.model == CHAT_ALIAS  # type: ignore[union-attr]
    assert raised.value.body["error"]["type"] == "api_error"  # type: ignore[index]


# --------------------------------------------------------------------------------------
# The client leaving


def test_a_client_that_closes_its_socket_mid_stream_stops_the_upstream(
    proxy: GunicornProcess, slow_fake: FakeOllama
) -> None:
    body = json.dumps({"model": CHAT_ALIAS, "messages": MESSAGES}).encode()
    request = (
        b"POST /api/chat HTTP/1.1\r\nHost: p\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    received = b""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT_S) as sock:
        sock.sendall(request)
        while b"}\n" not in received and len(received) < 65536:
            data = sock.recv(4096)
            if not data:
                break
            received += data

    assert b'"model":"%s"' % CHAT_ALIAS.encode() in received
    assert slow_fake.disconnected.wait(2), "the upstream still streams 2 s after the client left"


def test_a_client_that_closes_its_response_mid_stream_stops_the_upstream(
    proxy: GunicornProcess, slow_fake: FakeOllama
) -> None:
    body = {"model": CHAT_ALIAS, "messages": MESSAGES, "stream": True}
    with requests.post(
        f"{proxy.base_url}/v1/chat/completions", json=body, stream=True, timeout=TIMEOUT_S
    ) as response:
        first = next(line for line in response.iter_lines() if line)

    assert json.loads(first.removeprefix(b"data: "))["model"] == CHAT_ALIAS
    assert slow_fake.disconnected.wait(2), "the upstream still streams 2 s after the client left"


# --------------------------------------------------------------------------------------
# Starting up: bad configuration, the sync worker


BAD_CONFIGURATIONS = [
    pytest.param({}, 'upstream = "http://127.0.0.1\n', "is not valid TOML", id="unparseable-toml"),
    pytest.param({}, "upstreams = 1\n", "unknown key 'upstreams'", id="unknown-key"),
    pytest.param({}, '[aliases]\nllmodel = "llmodel"\n', "points at itself", id="alias-to-itself"),
    pytest.param(
        {"OLLAMA_DEFAULT_UPSTREAM": "127.0.0.1:11434"}, "", "'127.0.0.1:11434'",
        id="url-without-scheme",
    ),
]  # fmt: skip
#: With serve's gunicorn configuration module, the master checks the settings once.
HOOKED = ("-c", "python:ollama_default.proxy.gunicorn")


@pytest.mark.parametrize(("settings", "config", "problem"), BAD_CONFIGURATIONS)
def test_a_bad_configuration_stops_gunicorn_in_the_master_with_one_line(
    tmp_path: Path, settings: dict[str, str], config: str, problem: str
) -> None:
    config_path = tmp_path / "ollama-default.toml"
    config_path.write_text(config)
    settings = {"OLLAMA_DEFAULT_CONFIG": str(config_path), **settings}
    server = start_gunicorn(settings, log_dir=tmp_path, options=[*HOOKED, "--workers", "2"])

    status = server.wait_for_exit(timeout_s=10)

    stderr = server.stderr()
    errors = [line for line in stderr.splitlines() if line.startswith(CONFIG_ERROR)]
    assert status == 2
    assert len(errors) == 1, stderr
    assert problem in errors[0]
    assert "Booting worker" not in stderr  # refused before any worker started
    assert "Traceback" not in stderr


@pytest.mark.parametrize("workers", [1, 2], ids=["one-worker", "two-workers"])
@pytest.mark.parametrize(("settings", "config", "problem"), BAD_CONFIGURATIONS)
def test_under_plain_gunicorn_a_bad_configuration_is_one_line_per_worker_that_loads(
    tmp_path: Path, settings: dict[str, str], config: str, problem: str, workers: int
) -> None:
    config_path = tmp_path / "ollama-default.toml"
    config_path.write_text(config)
    settings = {"OLLAMA_DEFAULT_CONFIG": str(config_path), **settings}
    options = ["--worker-class", "gthread", "--workers", str(workers)]
    server = start_gunicorn(settings, log_dir=tmp_path, options=options)

    status = server.wait_for_exit(timeout_s=10)

    stderr = server.stderr()
    errors = [line for line in stderr.splitlines() if line.startswith(CONFIG_ERROR)]
    assert status != 0
    # Each worker loads the app on its own; gunicorn stops at the first that cannot.
    assert 1 <= len(errors) <= workers, stderr
    assert all(problem in error for error in errors)
    if workers == 1:  # with more, gunicorn's halt may print its own (benoitc/gunicorn#2186)
        assert "Traceback" not in stderr


def test_the_sync_worker_logs_a_warning_naming_ollama_default_serve(
    fake_url: str, tmp_path: Path
) -> None:
    settings = {"OLLAMA_DEFAULT_UPSTREAM": fake_url}
    with run_gunicorn(settings, log_dir=tmp_path) as server:  # gunicorn's default: sync
        stderr = server.stderr()

    warnings = [line for line in stderr.splitlines() if "[WARNING]" in line]
    assert "Using worker: sync" in stderr
    # Under the package's own logger, not gunicorn's.
    assert any("] ollama_default: " in w and "ollama-default serve" in w for w in warnings)


def test_the_gthread_worker_logs_no_such_warning(fake_url: str, tmp_path: Path) -> None:
    settings = {"OLLAMA_DEFAULT_UPSTREAM": fake_url}
    options = ["--worker-class", "gthread"]
    with run_gunicorn(settings, log_dir=tmp_path, options=options) as server:  # one worker
        stderr = server.stderr()

    assert "Using worker: gthread" in stderr
    assert "ollama-default serve" not in stderr


# --------------------------------------------------------------------------------------
# Load

STREAMS = 256


@dataclass
class StreamResult:
    """What one streaming chat received."""

    status: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)


def test_256_concurrent_streaming_chats_all_complete(
    proxy: GunicornProcess, fake: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fake, "tokens", 100)
    monkeypatch.setattr(fake, "token_delay_s", 0.005)
    body = json.dumps({"model": CHAT_ALIAS, "messages": MESSAGES})
    start = threading.Barrier(STREAMS, timeout=TIMEOUT_S)

    def chat(_: int) -> StreamResult:
        result = StreamResult()
        connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
        try:
            start.wait()
            connection.request("POST", "/api/chat", body, {"Content-Type": "application/json"})
            with connection.getresponse() as response:
                result.status = response.status
                result.records = [json.loads(line) for line in response if line.strip()]
        finally:
            connection.close()
        return result

    with ThreadPoolExecutor(max_workers=STREAMS) as pool:
        results = list(pool.map(chat, range(STREAMS), timeout=60))

    expected_text = ANSWER + " more" * 97
    for result in results:
        assert result.status == 200
        assert len(result.records) == 101
        assert {record["model"] for record in result.records} == {CHAT_ALIAS}
        assert "".join(record["message"]["content"] for record in result.records) == expected_text
        assert result.records[-1]["done"]


# --------------------------------------------------------------------------------------
# Hidden real models, set by the environment, as the official clients see them


@pytest.fixture(scope="module")
def hiding_proxy(
    fake_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GunicornProcess]:
    """One alias, real models hidden (``OLLAMA_DEFAULT_HIDE_REAL_MODELS=1``)."""
    settings = {
        "OLLAMA_DEFAULT_UPSTREAM": fake_url,
        "OLLAMA_DEFAULT_ALIAS": CHAT_ALIAS,
        "OLLAMA_DEFAULT_TARGET": CHAT_TARGET,
        "OLLAMA_DEFAULT_HIDE_REAL_MODELS": "1",
    }
    log_dir = tmp_path_factory.mktemp("hiding")
    with run_gunicorn(settings, log_dir=log_dir, options=SMALL_OPTIONS) as server:
        yield server
    assert "Traceback" not in server.stderr()


def test_hidden_real_models_the_official_clients_get_their_not_found_errors(
    hiding_proxy: GunicornProcess, fake: FakeOllama
) -> None:
    before = len(fake.requests)
    with ollama.Client(host=hiding_proxy.base_url, timeout=TIMEOUT_S) as client:
        with pytest.raises(ollama.ResponseError) as native:
            client.chat(model="llama3.2", messages=MESSAGES)
        answer = client.chat(model=CHAT_ALIAS, messages=MESSAGES)
    with openai.OpenAI(
        base_url=f"{hiding_proxy.base_url}/v1", api_key="x", timeout=TIMEOUT_S, max_retries=0
    ) as openai_client:
        with pytest.raises(openai.NotFoundError) as compatible:
            openai_client.chat.completions.create(model="llama3.2:latest", messages=MESSAGES)
        with pytest.raises(openai.NotFoundError):
            openai_client.models.retrieve("llama3.2")
    assert (native.value.status_code, native.value.error) == (404, "model 'llama3.2' not found")
    assert compatible.value.body == {
        "message": "model 'llama3.2:latest' not found",
        "type": "not_found_error",
        "param": None,
        "code": None,
    }
    assert answer.model == CHAT_ALIAS
    # Only the alias's request reached the upstream.
    assert [r.json["model"] for r in fake.requests[before:]] == [CHAT_TARGET]
    line = hiding_proxy.log_line('"POST /v1/chat/completions" 404')
    assert "model=llama3.2:latest" in line


def test_hidden_real_models_no_header_names_the_target(hiding_proxy: GunicornProcess) -> None:
    response = requests.post(
        f"{hiding_proxy.base_url}/api/generate",
        json={"model": CHAT_ALIAS, "prompt": "hi", "stream": False},
        timeout=TIMEOUT_S,
    )
    assert response.status_code == 200
    assert "X-Ollama-Default-Target" not in response.headers
    assert response.json()["model"] == CHAT_ALIAS
