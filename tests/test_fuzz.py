"""Hostile input through the whole WSGI stack, in-process: the decision is what Go reads, and
nothing gets a 500, a hang or a traceback.

The proxy's composition (access log, prefix mount, ``DefaultModel``) runs in front of a
recording app standing in for Ollama. Each generated request (JSON bodies with folded,
escaped and repeated keys, arbitrary bytes, headers, paths, methods) must get either the
app's answer, with the body the app received read by an independent model of Go's
``encoding/json`` (``tests/go_json.py``) as exactly the model the proxy decided, or an error
of ours in the endpoint's dialect, never a 5xx. Bounded: ``max_examples`` keeps the suite
fast.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import json
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

import go_json
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ollama_default.core.endpoints import ENDPOINTS, find_endpoint
from ollama_default.core.errors import RequestError
from ollama_default.proxy.compose import build_app
from ollama_default.proxy.config import Settings
from ollama_default.wsgi import content_length, respond_error

ALIAS, TARGET, EMBED, EMBED_TARGET = "llmodel", "aya-expanse:8b-q8_0", "embed", "nomic-embed-text"
SETTINGS = Settings(aliases={ALIAS: TARGET, EMBED: EMBED_TARGET}, default=ALIAS, access_log=False)
JSON_PATHS = sorted(
    endpoint.path for endpoint in ENDPOINTS if endpoint.body.value == "json" and endpoint.methods
)
Environ = dict[str, Any]
FUZZ = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)


class Recorder:
    """Stands in for Ollama: keeps what it received, answers with a small JSON document."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.environs: list[Environ] = []

    def __call__(self, environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:  # as the forwarder reads a body (a length that is no length is its 400)
            length = content_length(environ) or 0
        except RequestError as error:
            return respond_error(environ, start_response, error)
        self.bodies.append(environ["wsgi.input"].read(length) if length else b"")
        self.environs.append(environ)
        start_response("200 OK", [("Content-Type", "application/json; charset=utf-8")])
        return [b'{"model":"x","done":true}']


def call(
    app: Callable[..., Iterable[bytes]], method: str, path: str, body: bytes, **extra: str
) -> tuple[str, list[tuple[str, str]], bytes]:
    started: list[tuple[str, list[tuple[str, str]]]] = []
    environ: Environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "proxy",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        **extra,
    }

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.append((status, headers))
        return lambda data: None

    app_iter = app(environ, start_response)
    try:
        output = b"".join(app_iter)
    finally:
        getattr(app_iter, "close", lambda: None)()
    assert len(started) == 1
    return started[0][0], started[0][1], output


def is_our_error(path: str, status: str, output: bytes) -> bool:
    """A 4xx of ours, in the dialect of ``path``'s endpoint."""
    if status[:1] != "4":
        return False
    document = json.loads(output)
    if path == "/v1/messages":
        return document["type"] == "error" and isinstance(document["error"]["message"], str)
    if path.startswith("/v1/"):
        return isinstance(document["error"]["message"], str)
    return isinstance(document["error"], str)


# -- bodies ------------------------------------------------------------------------------

MODEL_KEYS = st.sampled_from(["model", "MODEL", "Model", "mode\\u006c", "\\u006dodel", "name"])
NAMES = st.sampled_from(
    [ALIAS, f"{ALIAS}:latest", "LLModel", EMBED, TARGET, "qwen3:4b", "", " ", "bad name!"]
)
MEMBER_VALUES = st.one_of(
    NAMES.map(json.dumps),
    st.sampled_from(["null", "7", "true", "1e999", "[]", '{"model":"x"}', '"\\ud800"']),
)


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    members = draw(
        st.lists(
            st.tuples(
                st.one_of(MODEL_KEYS, st.sampled_from(["messages", "prompt", "options"])),
                MEMBER_VALUES,
            ),
            max_size=5,
        )
    )
    inside = ",".join(f'"{key}":{value}' for key, value in members)
    spaces = draw(st.sampled_from(["", " ", "\n\t"]))
    trailing = draw(st.sampled_from(["", " ", "garbage", "{}"]))
    return f"{spaces}{{{inside}}}{trailing}".encode()


@FUZZ
@given(path=st.sampled_from(JSON_PATHS), body=st.one_of(json_bodies(), st.binary(max_size=200)))
def test_what_the_upstream_receives_is_read_by_go_as_the_decided_model(
    path: str, body: bytes
) -> None:
    recorder = Recorder()
    endpoint = find_endpoint(path)
    assert endpoint is not None
    method = next(iter(sorted(endpoint.methods)))
    status, headers, output = call(build_app(SETTINGS, backend=recorder), method, path, body)

    if not recorder.bodies:  # refused by us, before the upstream saw anything
        assert is_our_error(path, status, output), (status, output)
        return
    assert status == "200 OK"
    sent = recorder.bodies[-1]
    decided = recorder.environs[-1].get("ollama_default.model")
    if decided is None:
        return  # no model name the proxy could read: passed on for Ollama to refuse
    try:
        members = go_json.read(sent)
    except go_json.GivesUp:
        return
    except go_json.Unreadable:
        raise AssertionError(f"the proxy forwarded a body Go cannot read: {sent!r}") from None
    keys = next(keys for keys in endpoint.model_fields)
    assert go_json.reference(members, keys) == decided, (body, sent)
    if "X-Ollama-Default-Target" in dict(headers):
        assert decided in (TARGET, EMBED_TARGET)


# -- headers, paths and methods ------------------------------------------------------------

PATHS = st.one_of(
    st.sampled_from(
        [*JSON_PATHS, "/", "/api/tags", "/v1/models/llmodel", "/v1/models/a/b", "/api/blobs/x",
         "//evil", "/api/../etc", "/api/%2e%2e/x", "/v1/models/", "*", ""]
    ),
    st.text(alphabet="/abcv1%.:@ \x00é", max_size=20),
)  # fmt: skip
HEADER_VALUES = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=30)


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "HEAD", "DELETE", "PUT", "OPTIONS", "BREW"]),
    path=PATHS,
    body=st.one_of(json_bodies(), st.binary(max_size=64)),
    content_type=HEADER_VALUES,
    content_encoding=st.sampled_from(["", "identity", "gzip", "zstd", "ZSTD", "identity, zstd"]),
    content_length=st.sampled_from([None, "0", "-1", "ten", "99999", "1e3"]),
)
def test_no_request_gets_a_5xx_or_a_traceback(
    method: str,
    path: str,
    body: bytes,
    content_type: str,
    content_encoding: str,
    content_length: str | None,
) -> None:
    extra = {"CONTENT_TYPE": content_type}
    if content_encoding:
        extra["HTTP_CONTENT_ENCODING"] = content_encoding
    if content_length is not None:
        extra["CONTENT_LENGTH"] = content_length
    app = build_app(SETTINGS, backend=Recorder())
    status, _, output = call(app, method, path, body, **extra)
    assert not status.startswith("5"), (status, output)
    if status.startswith("4") and output:
        json.loads(output)  # our errors are JSON


# -- multipart forms (transcriptions) --------------------------------------------------------


def go_form_model(query: str, content_type: str, body: bytes) -> str | None:
    """An independent model of Go's ``FormValue("model")`` on what the upstream received:
    the query's first ``model`` first (``url.ParseQuery``), then the first form part named
    ``model`` that is not a file (``filename`` absent or empty), read by the stdlib's
    ``email`` parser rather than the proxy's own."""
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if urllib.parse.unquote_plus(name) == "model":
            return urllib.parse.unquote_plus(value)
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    for part in message.iter_parts():  # type: ignore[attr-defined]
        disposition = part.get("Content-Disposition")
        if disposition is None or disposition.params.get("name") != "model":
            continue
        if disposition.params.get("filename"):
            continue  # a file: FormValue never returns it
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if payload is not None else ""
    return None


FORM_NAMES = st.sampled_from([ALIAS, "LLModel:latest", EMBED, "qwen3:4b", ""])


@st.composite
def forms(draw: st.DrawFn) -> tuple[str, str, bytes]:
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["model", "file", "language", "Model"]))
        filename = draw(st.sampled_from([None, "", "audio.wav"]))
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        value = draw(FORM_NAMES) if name.lower() == "model" else "x"
        parts.append(f"--bnd\r\nContent-Disposition: {disposition}\r\n\r\n{value}\r\n".encode())
    body = b"".join(parts) + b"--bnd--\r\n"
    media_type = draw(st.sampled_from(["multipart/form-data", "Multipart/Form-Data"]))
    query = draw(st.sampled_from(["", "model=llmodel", "model=qwen3:4b", "x=1&model=embed"]))
    return query, f"{media_type}; boundary=bnd", body


@FUZZ
@given(form=forms())
def test_a_transcriptions_model_is_the_one_go_reads_from_what_goes_upstream(
    form: tuple[str, str, bytes],
) -> None:
    query, content_type, body = form
    recorder = Recorder()
    path = "/v1/audio/transcriptions"
    status, _, output = call(
        build_app(SETTINGS, backend=recorder), "POST", path, body,
        CONTENT_TYPE=content_type, QUERY_STRING=query,
    )  # fmt: skip
    if not recorder.bodies:
        assert is_our_error(path, status, output), (status, output)
        return
    environ = recorder.environs[-1]
    decided = environ.get("ollama_default.model")
    read = go_form_model(environ["QUERY_STRING"], content_type, recorder.bodies[-1])
    if decided is not None:
        assert read == decided, (form, recorder.bodies[-1])
    if read in (ALIAS, "LLModel:latest", EMBED):
        raise AssertionError(f"an alias went upstream: {form}")
