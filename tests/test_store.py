"""The model store closed by default (ops/store.py, core/paths.py): every verb, in every
spelling that could reach it, refused unless opened, with nothing sent upstream.

In-process first, on environs built as a WSGI server builds them (``PATH_INFO`` decoded,
the raw target in ``RAW_URI``), then through a real gunicorn with raw request targets, where
what gunicorn decodes and what the forwarder sends are the real ones.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fake_ollama import FakeOllama, serve
from gunicorn_process import GunicornProcess, run_gunicorn

from ollama_default import ConfigError
from ollama_default.core.endpoints import ENDPOINTS, STORE_VERBS
from ollama_default.core.paths import is_plain_path, routed_path, store_endpoint
from ollama_default.ops.store import ModelStore
from ollama_default.proxy.compose import build_app
from ollama_default.proxy.config import Settings, load_settings
from ollama_default.proxy.logs import startup_summary

DIGEST = "sha256:" + "0" * 64
#: verb -> (method, plain path, body)
VERBS: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "pull": ("POST", "/api/pull", {"model": "llama3.2"}),
    "push": ("POST", "/api/push", {"model": "me/llama3.2"}),
    "create": ("POST", "/api/create", {"model": "mine", "from": "llama3.2"}),
    "copy": ("POST", "/api/copy", {"source": "llama3.2", "destination": "backup"}),
    "delete": ("DELETE", "/api/delete", {"model": "llama3.2"}),
    "blobs": ("POST", f"/api/blobs/{DIGEST}", None),
    "blobs-head": ("HEAD", f"/api/blobs/{DIGEST}", None),
}


def spellings(path: str) -> dict[str, tuple[str, str]]:
    """Every spelling of ``path``: id -> (PATH_INFO as a server decodes it, raw target)."""
    rest = path.removeprefix("/api/")
    encoded = "/api%2F" + rest  # decoded by the server: the plain path
    return {
        "plain": (path, path),
        "encoded-slash": (path, encoded),
        "encoded-letter": (path, "/api/%" + format(ord(rest[0]), "02x") + rest[1:]),
        "trailing-slash": (path + "/", path + "/"),
        "double-slash": ("/api//" + rest, "/api//" + rest),
        "leading-double-slash": ("/" + path, "/" + path),
        "dot": ("/api/./" + rest, "/api/./" + rest),
        "dot-dot": ("/v1/../api/" + rest, "/v1/../api/" + rest),
        "encoded-dot-dot": ("/v1/../api/" + rest, "/v1/%2e%2e/api/" + rest),
        "upper-case": (path.upper(), path.upper()),
    }


CASES = [
    pytest.param(verb, method, spelling, path_info, raw, id=f"{verb}-{spelling}-{method}")
    for verb, (plain_method, path, _) in VERBS.items()
    for spelling, (path_info, raw) in spellings(path).items()
    for method in dict.fromkeys([plain_method, "GET", "HEAD", "PUT", plain_method.lower()])
]


def call(app: Any, method: str, path_info: str, raw: str, body: bytes = b"") -> tuple[int, bytes]:
    """Call ``app`` as a WSGI server would for ``method raw``; return the status and body."""
    environ = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path_info,
        "RAW_URI": raw,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    started: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.append(status)

    app_iter = app(environ, start_response)
    try:
        output = b"".join(app_iter)
    finally:
        close = getattr(app_iter, "close", None)
        if close is not None:
            close()
    return int(started[0][:3]), output


def proxy_for(fake: FakeOllama, **settings: Any) -> Any:
    return build_app(Settings(aliases={"llmodel": "aya-expanse:8b-q8_0"}, **settings), fake)


@pytest.mark.parametrize(("verb", "method", "spelling", "path_info", "raw"), CASES)
def test_every_spelling_of_a_verb_is_refused_by_default(
    verb: str, method: str, spelling: str, path_info: str, raw: str
) -> None:
    fake = FakeOllama()
    body = json.dumps(VERBS[verb][2] or {}).encode()
    status, output = call(proxy_for(fake), method, path_info, raw, body)
    assert status == 403
    if method != "HEAD":
        assert "is closed on this proxy" in json.loads(output)["error"]
    assert fake.requests == []


@pytest.mark.parametrize(("verb", "method", "spelling", "path_info", "raw"), CASES)
def test_an_opened_verb_is_forwarded_in_its_plain_spelling_only(
    verb: str, method: str, spelling: str, path_info: str, raw: str
) -> None:
    fake = FakeOllama()
    name = verb.removesuffix("-head")
    body = json.dumps(VERBS[verb][2] or {}).encode()
    status, _ = call(proxy_for(fake, open_model_store=[name]), method, path_info, raw, body)
    if path_info == VERBS[verb][1]:  # plain (or encoded, which the server decoded)
        assert status != 403
        assert [(r.method, r.path) for r in fake.requests] == [(method.upper(), path_info)]
    else:
        assert status == 400
        assert fake.requests == []


def test_other_verbs_stay_closed_when_one_is_opened() -> None:
    fake = FakeOllama()
    app = proxy_for(fake, open_model_store=["pull"])
    body = json.dumps({"model": "llama3.2"}).encode()
    assert call(app, "POST", "/api/pull", "/api/pull", body)[0] == 200
    assert call(app, "DELETE", "/api/delete", "/api/delete", body)[0] == 403
    assert [r.path for r in fake.requests] == ["/api/pull"]


def test_the_refusal_speaks_the_clients_dialect_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeOllama()
    app = proxy_for(fake)
    with caplog.at_level(logging.INFO, logger="ollama_default.access"):
        status, output = call(app, "POST", "/api/pull", "/api/pull", b'{"model":"x"}')
    assert status == 403
    assert json.loads(output) == {
        "error": "the model store's 'pull' is closed on this proxy: its operator has not "
        "opened it (open_model_store)"
    }
    fields = [getattr(r, "fields", {}) for r in caplog.records]
    assert fields[-1]["refused"] == "management"
    assert fields[-1]["status"] == 403


def test_inference_and_listings_pass() -> None:
    fake = FakeOllama()
    app = proxy_for(fake)
    body = json.dumps({"model": "llmodel", "prompt": "hi", "stream": False}).encode()
    assert call(app, "POST", "/api/generate", "/api/generate", body)[0] == 200
    assert call(app, "GET", "/api/tags", "/api/tags")[0] == 200
    assert [r.path for r in fake.requests] == ["/api/generate", "/api/tags"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("all", STORE_VERBS),
        (["copy", "pull"], ("pull", "copy")),
        ([], ()),
        ("none", ()),
        (["all"], STORE_VERBS),
    ],
)
def test_open_model_store_values(value: Any, expected: tuple[str, ...]) -> None:
    assert Settings(open_model_store=value).open_model_store == expected


@pytest.mark.parametrize("value", [["pul"], "pull", 1, [1]])
def test_open_model_store_refuses_what_is_not_verbs(value: Any) -> None:
    with pytest.raises(ConfigError, match="open_model_store"):
        Settings(open_model_store=value)


def test_open_model_store_from_the_environment() -> None:
    environ = {"OLLAMA_DEFAULT_OPEN_MODEL_STORE": "pull, copy"}
    assert load_settings(environ).open_model_store == ("pull", "copy")
    assert load_settings({"OLLAMA_DEFAULT_OPEN_MODEL_STORE": "all"}).open_model_store == (
        STORE_VERBS
    )


def test_the_start_up_log_says_the_store_is_closed() -> None:
    lines = startup_summary(Settings(), upstream_answers=None, demo=None, workers=None)
    assert any(line.startswith("model store: CLOSED to clients") for line in lines)
    lines = startup_summary(
        Settings(open_model_store="all"), upstream_answers=None, demo=None, workers=None
    )
    assert any(line.startswith("model store: OPEN to every client") for line in lines)


def test_model_store_alone_refuses_around_any_app() -> None:
    fake = FakeOllama()
    status, _ = call(ModelStore(fake), "POST", "/api/copy", "/api/copy", b"{}")
    assert status == 403
    assert fake.requests == []


def test_routed_path_and_plain_paths() -> None:
    assert routed_path("/api/../../api//PULL/") == "/api/pull"
    assert routed_path("") == "/"
    assert is_plain_path("/api/pull") and is_plain_path("/")
    assert not is_plain_path("/api/pull/") and not is_plain_path("/api/./pull")
    assert store_endpoint("/api/blobs") is not None
    assert store_endpoint("/api/chat") is None
    # Every endpoint's plain path is plain, and only the store's are store endpoints.
    for endpoint in ENDPOINTS:
        path = endpoint.path.replace("{digest}", DIGEST).replace("{model}", "m")
        assert is_plain_path(path)
        assert (store_endpoint(path) is endpoint) == bool(endpoint.store_verb)


# -- through gunicorn ------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[FakeOllama, str]]:
    fake = FakeOllama()
    with serve(fake) as url:
        yield fake, url


@pytest.fixture(scope="module")
def closed_proxy(
    upstream: tuple[FakeOllama, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GunicornProcess]:
    settings = {
        "OLLAMA_DEFAULT_UPSTREAM": upstream[1],
        "OLLAMA_DEFAULT_ALIAS": "llmodel",
        "OLLAMA_DEFAULT_TARGET": "aya-expanse:8b-q8_0",
        "OLLAMA_DEFAULT_PREFIX": "/llm",
    }
    log_dir = tmp_path_factory.mktemp("closed")
    options = ("--worker-class", "gthread", "--workers", "1", "--threads", "4")
    with run_gunicorn(settings, log_dir=log_dir, options=options) as server:
        yield server
    assert "Traceback" not in server.stderr()


def raw_request(proxy: GunicornProcess, method: str, target: str, body: bytes) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


GUNICORN_CASES = [
    pytest.param(verb, method, raw, id=f"{verb}-{spelling}-{method}")
    for verb, (plain_method, path, _) in VERBS.items()
    for spelling, (_, raw) in spellings(path).items()
    for method in dict.fromkeys([plain_method, "GET", plain_method.lower()])
]


@pytest.mark.parametrize(("verb", "method", "raw"), GUNICORN_CASES)
def test_every_spelling_is_refused_through_gunicorn_under_a_prefix(
    closed_proxy: GunicornProcess, upstream: tuple[FakeOllama, str], verb: str, method: str,
    raw: str,
) -> None:  # fmt: skip
    fake = upstream[0]
    before = len(fake.requests)
    body = json.dumps(VERBS[verb][2] or {}).encode()
    status = raw_request(closed_proxy, method, "/llm" + raw, body)
    # gunicorn itself refuses some (a lower-case method: 400); none reaches the upstream.
    assert status in (400, 403)
    assert len(fake.requests) == before
    # The control: the same proxy forwards a listing.
    assert raw_request(closed_proxy, "GET", "/llm/api/tags", b"") == 200
    assert [r.path for r in fake.requests[before:]] == ["/api/tags"]
