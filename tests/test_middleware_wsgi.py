"""DefaultModel as a WSGI citizen (PEP 3333): bodies in, iterables out, close() always."""

from __future__ import annotations

import gzip
import io
import itertools
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from unittest import mock

import pytest
from webtest import TestApp

from ollama_default import AliasTable, ConfigError, DefaultModel
from ollama_default.core.gojson import SLICE_BYTES

TARGET = "aya-expanse:8b-q8_0"
LINE = b'{"model":"aya-expanse:8b-q8_0","response":"hi","done":false}\n'
SHOWN = b'{"model":"llmodel","response":"hi","done":false}\n'

Environ = dict[str, Any]
App = Callable[[Environ, Callable[..., Any]], Iterable[bytes]]


def wrap(app: App, **options: Any) -> TestApp:
    return TestApp(DefaultModel(app, alias="llmodel", target=TARGET, **options), lint=True)


class Response:
    """What a server would send, from calling a WSGI app directly (no webtest)."""

    def __init__(self, app: App, environ: Environ) -> None:
        self.starts: list[tuple[str, list[tuple[str, str]]]] = []
        self.app_iter = app(environ, self.start_response)

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        if exc_info is not None and self.starts:
            raise exc_info[1].with_traceback(exc_info[2])
        self.starts.append((status, headers))
        return lambda data: None

    def body(self) -> bytes:
        try:
            return b"".join(self.app_iter)
        finally:
            getattr(self.app_iter, "close", lambda: None)()


def call(middleware: App, path: str, body: bytes, **environ: Any) -> Response:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        **environ,
    }
    return Response(middleware, environ)


def replying(status: str, headers: list[tuple[str, str]], *chunks: bytes) -> App:
    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response(status, headers)
        return list(chunks)

    return app


def test_the_app_receives_the_rewritten_body_with_its_length() -> None:
    seen: list[bytes] = []

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    wrap(app).post("/api/generate", b'{"model":"llmodel"}')
    assert seen == [b'{"model":"aya-expanse:8b-q8_0"}']


def test_a_chunked_request_body_is_read_to_its_end() -> None:
    seen: list[bytes] = []

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append(environ["wsgi.input"].read())
        assert environ["CONTENT_LENGTH"] == str(len(seen[0]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    middleware = DefaultModel(app, alias="llmodel", target=TARGET)
    chunked = {
        "CONTENT_LENGTH": "",
        "wsgi.input_terminated": True,
        "HTTP_TRANSFER_ENCODING": "chunked",
    }
    response = call(middleware, "/api/chat", b'{"model":"llmodel"}', **chunked)
    assert response.body() == b"ok"
    assert seen == [b'{"model":"aya-expanse:8b-q8_0"}']


def test_a_json_reply_gets_its_content_length_fixed() -> None:
    body = b'{"model":"aya-expanse:8b-q8_0","response":"hi"}'
    app = replying("200 OK", [("Content-Type", "application/json"), ("Content-Length", "47")], body)
    response = wrap(app).post("/api/generate", b'{"model":"llmodel","stream":false}')
    assert response.body == b'{"model":"llmodel","response":"hi"}'
    assert response.headers["Content-Length"] == str(len(response.body))


def test_a_stream_drops_its_content_length() -> None:
    app = replying(
        "200 OK", [("Content-Type", "application/x-ndjson"), ("Content-Length", "61")], LINE
    )
    response = wrap(app).post("/api/generate", b'{"model":"llmodel"}')
    assert response.body == SHOWN
    assert "Content-Length" not in response.headers


def test_the_write_callable_is_rewritten_too() -> None:
    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        write = start_response("200 OK", [("Content-Type", "application/x-ndjson")])
        write(LINE[:20])
        write(LINE[20:])
        return [LINE]

    assert wrap(app).post("/api/generate", b'{"model":"llmodel"}').body == SHOWN + SHOWN


def test_exc_info_before_the_body_replaces_the_response() -> None:
    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "application/x-ndjson")])
        try:
            raise RuntimeError("upstream broke")
        except RuntimeError:
            start_response(
                "500 Internal Server Error", [("Content-Type", "application/json")], sys.exc_info()
            )
        yield b'{"error":"model \'aya-expanse:8b-q8_0\' broke"}'

    response = wrap(app).post("/api/generate", b'{"model":"llmodel"}', expect_errors=True)
    assert response.status_int == 500
    assert response.json == {"error": "model 'llmodel' broke"}


def test_exc_info_after_the_headers_went_out_is_raised_again() -> None:
    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "application/x-ndjson")])
        yield LINE
        try:
            raise RuntimeError("mid-stream")
        except RuntimeError:
            start_response("500 Internal Server Error", [], sys.exc_info())

    middleware = DefaultModel(app, alias="llmodel", target=TARGET)
    response = call(middleware, "/api/generate", b'{"model":"llmodel"}')
    chunks = iter(response.app_iter)
    assert next(chunks) == SHOWN
    with pytest.raises(RuntimeError, match="mid-stream"):
        next(chunks)
    assert [status for status, _ in response.starts] == ["200 OK"]


def test_close_always_reaches_the_app() -> None:
    closed: list[bool] = []

    class Stream:
        def __iter__(self) -> Iterator[bytes]:
            yield LINE
            yield LINE

        def close(self) -> None:
            closed.append(True)

    def app(environ: Environ, start_response: Callable[..., Any]) -> Stream:
        start_response("200 OK", [("Content-Type", "application/x-ndjson")])
        return Stream()

    middleware = DefaultModel(app, alias="llmodel", target=TARGET)
    response = call(middleware, "/api/generate", b'{"model":"llmodel"}')
    next(iter(response.app_iter))  # the client reads one record, then goes away
    response.app_iter.close()  # type: ignore[attr-defined]
    assert closed == [True]


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_statuses_without_a_body_pass_through(status: str) -> None:
    headers = [("Content-Type", "application/json")]  # wrong, but apps do it
    middleware = DefaultModel(replying(status, headers), alias="llmodel", target=TARGET)
    response = call(middleware, "/api/generate", b'{"model":"llmodel"}')
    assert response.body() == b""
    # No Content-Length for a body it cannot have; only the header naming the target.
    assert response.starts == [(status, [*headers, ("X-Ollama-Default-Target", TARGET)])]


def test_a_compressed_reply_is_relayed_untouched() -> None:
    body = gzip.compress(LINE)
    headers = [("Content-Type", "application/x-ndjson"), ("Content-Encoding", "gzip")]
    middleware = DefaultModel(replying("200 OK", headers, body), alias="llmodel", target=TARGET)
    response = call(middleware, "/api/generate", b'{"model":"llmodel"}')
    assert response.body() == body  # not corrupted; the names stay as the upstream sent them
    assert response.starts == [("200 OK", [*headers, ("X-Ollama-Default-Target", TARGET)])]


def test_a_content_encoding_ollama_ignores_is_decided_on_the_raw_bytes() -> None:
    seen: list[bytes] = []

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    # Ollama reads the raw bytes as JSON whatever the header says (but zstd on /v1).
    wrap(app).post("/v1/responses", b'{"model":"llmodel"}', headers={"Content-Encoding": "gzip"})
    assert seen == [b'{"model":"aya-expanse:8b-q8_0"}']
    body = gzip.compress(b'{"model":"llmodel"}')
    response = wrap(app).post(
        "/v1/responses", body, headers={"Content-Encoding": "gzip"}, expect_errors=True
    )
    assert response.status_int == 400  # not JSON, as Ollama says too
    assert len(seen) == 1


def test_a_zstd_body_ollama_would_decode_is_refused_unread() -> None:
    class Unreadable(io.BytesIO):
        def read(self, *args: Any) -> bytes:
            raise AssertionError("the body was read")

    middleware = DefaultModel(replying("200 OK", []), alias="llmodel", target=TARGET)
    environ = {"HTTP_CONTENT_ENCODING": "zstd", "wsgi.input": Unreadable()}
    response = call(middleware, "/v1/messages", b"", CONTENT_LENGTH="40", **environ)
    document = json.loads(response.body())
    assert [status for status, _ in response.starts] == ["415 Unsupported Media Type"]
    assert document["type"] == "error"  # Anthropic's shape on /v1/messages
    assert document["error"]["message"].startswith("zstd request bodies are not supported")


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", ""])
def test_other_content_types_pass_through(content_type: str) -> None:
    app = replying("404 Not Found", [("Content-Type", content_type)], b"aya-expanse:8b-q8_0")
    response = wrap(app).post("/api/generate", b'{"model":"llmodel"}', expect_errors=True)
    assert response.body == b"aya-expanse:8b-q8_0"


def test_a_head_request_is_not_read() -> None:
    app = replying("200 OK", [("Content-Type", "application/json"), ("Content-Length", "99")])
    response = wrap(app).head("/v1/models/llmodel", expect_errors=True)
    assert response.headers["Content-Length"] == "99"


def test_requests_naming_a_real_model_are_not_touched() -> None:
    line = b'{"model":"aya-expanse:8b-q8_0" ,"response":"llmodel"}\n'
    app = replying("200 OK", [("Content-Type", "application/x-ndjson")], line)
    response = wrap(app).post("/api/generate", b'{"model":"aya-expanse:8b-q8_0"}')
    assert response.body == line


def test_a_body_over_the_limit_is_refused_before_it_is_read() -> None:
    class Unreadable(io.BytesIO):
        def read(self, *args: Any) -> bytes:
            raise AssertionError("the body was read")

    called: list[bool] = []

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        called.append(True)
        return []

    middleware = DefaultModel(app, alias="llmodel", target=TARGET, max_body_bytes=10)
    response = call(
        middleware, "/v1/chat/completions", b"", CONTENT_LENGTH="11", **{"wsgi.input": Unreadable()}
    )
    body = response.body()
    assert [status for status, _ in response.starts] == ["413 Request Entity Too Large"]
    assert json.loads(body)["error"]["message"] == (
        "request body is larger than the limit of 10 bytes"
    )
    assert called == []


def test_a_chunked_body_over_the_limit_is_refused_after_the_limit() -> None:
    middleware = DefaultModel(
        replying("200 OK", []), alias="llmodel", target=TARGET, max_body_bytes=10
    )
    stream = io.BytesIO(b"x" * 100)
    response = call(
        middleware,
        "/api/chat",
        b"",
        CONTENT_LENGTH="",
        **{"wsgi.input": stream, "wsgi.input_terminated": True},
    )
    assert b"larger than the limit" in response.body()
    assert [status for status, _ in response.starts] == ["413 Request Entity Too Large"]
    assert stream.tell() == 11  # read one byte past the limit, not to the end


def test_the_default_body_limit_admits_multimodal_requests() -> None:
    image = b"A" * (40 * 1024 * 1024)  # base64 images run to tens of MiB
    seen: list[int] = []

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append(int(environ["CONTENT_LENGTH"]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    body = b'{"model":"llmodel","images":["' + image + b'"]}'
    wrap(app).post("/api/generate", body)
    assert seen == [len(body) + len(TARGET) - len("llmodel")]


def test_a_path_alias_is_rewritten_in_path_info() -> None:
    seen: list[str] = []

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append(environ["PATH_INFO"])
        body = b'{"id":"aya-expanse:8b-q8_0","object":"model","created":1,"owned_by":"library"}'
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    response = wrap(app).get("/v1/models/llmodel")
    assert seen == ["/v1/models/aya-expanse:8b-q8_0"]
    assert response.json["id"] == "llmodel"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "give alias and target, or a mapping of aliases"),
        ({"alias": "a", "target": "b", "mapping": {"c": "d"}}, "either alias and target"),
        (
            {"alias": "a", "target": "b", "max_body_bytes": 0},
            "max_body_bytes must be a positive number of bytes, not 0",
        ),
        # A bool is an int to Python; True would be a limit of one byte.
        (
            {"alias": "a", "target": "b", "max_record_bytes": True},
            "max_record_bytes must be a positive number of bytes, not True",
        ),
    ],
)
def test_bad_options_fail_at_construction(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DefaultModel(replying("200 OK", []), **options)


def test_a_reply_to_an_alias_names_the_real_model_in_a_header_and_the_alias_in_its_body() -> None:
    app = replying("200 OK", [("Content-Type", "application/x-ndjson")], LINE)
    response = wrap(app).post("/api/generate", b'{"model":"llmodel"}')
    assert response.headers["X-Ollama-Default-Target"] == TARGET
    assert response.body == SHOWN


def test_a_reply_to_a_real_model_has_no_target_header() -> None:
    app = replying("200 OK", [("Content-Type", "application/x-ndjson")], LINE)
    response = wrap(app).post("/api/generate", b'{"model":"aya-expanse:8b-q8_0"}')
    assert "X-Ollama-Default-Target" not in response.headers
    assert response.body == LINE


@pytest.mark.parametrize(
    ("body", "alias", "model"),
    [
        (b'{"model":"llmodel"}', "llmodel", TARGET),  # the common request, spliced
        (b'{"model":"LLMODEL:latest","model":"llmodel"}', "llmodel", TARGET),  # parsed
        (b"{}", "llmodel", TARGET),  # the default
        (b'{"model":"qwen3:4b"}', None, "qwen3:4b"),  # a real model, spliced path
        (b'{"MODEL":"qwen3:4b"}', None, "qwen3:4b"),  # a real model, parsed path
        (b'{"model":7}', None, None),  # no model name at all: Ollama says what is wrong
    ],
    ids=["alias", "alias-duplicate-keys", "default", "real", "real-folded", "not-a-name"],
)
def test_the_decision_is_left_in_the_environ_for_the_access_log(
    body: bytes, alias: str | None, model: str | None
) -> None:
    seen: list[Environ] = []

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    call(DefaultModel(app, alias="llmodel", target=TARGET), "/api/chat", body).body()
    assert seen[0].get("ollama_default.alias") == alias
    assert seen[0].get("ollama_default.model") == model


def test_refused_input_leaves_its_reason_in_the_environ() -> None:
    environ: Environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/chat",
        "CONTENT_LENGTH": "5",
        "wsgi.input": io.BytesIO(b"[1,2]"),
    }
    response = Response(DefaultModel(replying("200 OK", []), alias="a", target="b"), environ)
    assert response.starts[0][0] == "400 Bad Request"
    assert environ["ollama_default.error"] == "request body must be a JSON object, not an array"


def test_a_built_alias_table_is_used_as_it_is() -> None:
    table = AliasTable({"llmodel": TARGET, "embed": "nomic-embed-text"}, default="llmodel")
    middleware = DefaultModel(replying("200 OK", []), mapping=table)
    assert middleware.aliases is table
    with pytest.raises(ConfigError, match="an AliasTable holds its aliases and default"):
        DefaultModel(replying("200 OK", []), mapping=table, default="embed")


def test_streams_keep_flowing_while_a_large_body_is_decided_under_gevent() -> None:
    # Under gevent's monkey-patching time.sleep(0) yields to the other greenlets; here the
    # patch is this one function, and the greenlets yield to each other and to nothing else.
    gevent = pytest.importorskip("gevent")
    big = b"{" + b'"model":"llama3.2",' * 450_000 + b'"model":"llmodel"}'  # 8 MiB
    events: list[tuple[str, float]] = []
    decided = []

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["wsgi.input"].read()
        if environ["PATH_INFO"] == "/api/chat":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b'{"model":"aya-expanse:8b-q8_0","done":true}']
        start_response("200 OK", [("Content-Type", "application/x-ndjson")])

        def records() -> Iterator[bytes]:
            for _ in range(1_000_000):  # a bound, should the decision never end
                if decided:
                    return
                gevent.sleep(0)
                yield LINE

        return records()

    middleware = DefaultModel(app, alias="llmodel", target=TARGET)

    def stream() -> None:
        for record in call(middleware, "/api/generate", b'{"model":"llmodel"}').app_iter:
            assert record == SHOWN
            events.append(("record", time.perf_counter()))

    def decide() -> None:
        response = call(middleware, "/api/chat", big)
        assert response.body() == b'{"model":"llmodel","done":true}'
        decided.append(True)

    def pause(seconds: float) -> None:
        events.append(("slice", time.perf_counter()))
        gevent.sleep(seconds)

    with mock.patch.object(time, "sleep", pause):
        streamer = gevent.spawn(stream)
        gevent.sleep(0)  # the stream has started
        started = time.perf_counter()
        gevent.spawn(decide).get()
        took = time.perf_counter() - started
        streamer.get()
    kinds = [kind for kind, _ in events]
    assert kinds.count("slice") >= len(big) // SLICE_BYTES - 1
    # Between two slices of the decision, the stream sent a record.
    assert ("slice", "slice") not in set(itertools.pairwise(kinds))
    during = [at for kind, at in events if kind == "record" and at >= started]
    gaps = [later - earlier for earlier, later in itertools.pairwise(during)]
    assert max(gaps) < took / 2
