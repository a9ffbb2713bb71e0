"""The package's log: one access line per request, the start-up summary, where they go.

In-process first (``AccessLog`` around ``DefaultModel`` around small WSGI apps, the
records caught by pytest's ``caplog``), then through a real gunicorn in front of the fake
Ollama, reading the lines the proxy wrote to its stderr.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import ollama
import pytest
import requests
from fake_ollama import FakeOllama, serve
from gunicorn_process import GunicornProcess, run_gunicorn
from test_forwarder import scripted
from webtest import TestApp

from ollama_default import ConfigError, DefaultModel
from ollama_default.ops.access_log import AccessLog
from ollama_default.proxy.cli import probe_upstream
from ollama_default.proxy.config import Settings
from ollama_default.proxy.forwarder import Forwarder
from ollama_default.proxy.logs import (
    JsonFormatter,
    configure_logging,
    missing_targets,
    startup_summary,
)

ALIAS, TARGET = "llmodel", "aya-expanse:8b-q8_0"
LINE = b'{"model":"aya-expanse:8b-q8_0","response":"hi","done":false}\n'
SHOWN = b'{"model":"llmodel","response":"hi","done":false}\n'  # 49 bytes
TIMEOUT_S = 10.0

Environ = dict[str, Any]
App = Callable[[Environ, Callable[..., Any]], Iterable[bytes]]


def replying(status: str, content_type: str, *chunks: bytes) -> App:
    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response(status, [("Content-Type", content_type)])
        return iter(chunks)  # an iterable, not a list: it is sent as a stream

    return app


def logged(app: App) -> TestApp:
    return TestApp(AccessLog(DefaultModel(app, alias=ALIAS, target=TARGET)), lint=True)


def access_fields(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if r.name == "ollama_default.access"]  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def capture_access(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ollama_default")


# --------------------------------------------------------------------------------------
# The access line, in-process


def test_a_request_for_an_alias_logs_the_alias_the_model_and_the_sizes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = replying("200 OK", "application/x-ndjson", LINE, LINE)
    response = logged(app).post("/api/generate", b'{"model":"llmodel"}')
    [fields] = access_fields(caplog)
    assert fields["method"] == "POST"
    assert fields["path"] == "/api/generate"
    assert fields["status"] == 200
    assert (fields["alias"], fields["model"]) == (ALIAS, TARGET)
    assert fields["bytes"] == len(response.body) > 0
    assert 0 <= fields["ttfb_ms"] <= fields["duration_ms"]
    assert "error" not in fields and "client_left" not in fields
    assert caplog.records[-1].levelno == logging.INFO


def test_a_request_with_no_model_logs_the_default_alias(caplog: pytest.LogCaptureFixture) -> None:
    logged(replying("200 OK", "application/json", b"{}")).post("/api/chat", b"{}")
    [fields] = access_fields(caplog)
    assert (fields["alias"], fields["model"]) == (ALIAS, TARGET)


def test_a_request_for_a_real_model_logs_that_model_and_no_alias(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logged(replying("200 OK", "application/json", b"{}")).post("/api/chat", b'{"model":"qwen3"}')
    [fields] = access_fields(caplog)
    assert (fields["alias"], fields["model"]) == (None, "qwen3")


def test_a_whole_json_reply_has_no_time_to_first_byte(caplog: pytest.LogCaptureFixture) -> None:
    logged(replying("200 OK", "application/json", b"{}")).post("/api/chat", b"{}")
    assert "ttfb_ms" not in access_fields(caplog)[0]


def test_refused_input_is_a_warning_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    logged(replying("200 OK", "application/json", b"{}")).post(
        "/api/chat", b"[1]", expect_errors=True
    )
    [fields] = access_fields(caplog)
    assert fields["status"] == 400
    assert fields["error"] == "request body must be a JSON object, not an array"
    assert caplog.records[-1].levelno == logging.WARNING


def test_a_client_that_leaves_mid_stream_is_noted(caplog: pytest.LogCaptureFixture) -> None:
    app = AccessLog(DefaultModel(replying("200 OK", "application/x-ndjson", LINE, LINE),
                                 alias=ALIAS, target=TARGET))  # fmt: skip
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/api/generate", "CONTENT_LENGTH": "19",
               "wsgi.input": io.BytesIO(b'{"model":"llmodel"}')}  # fmt: skip
    body = app(environ, lambda status, headers, exc_info=None: None)
    next(iter(body))  # one record, then the client is gone
    body.close()  # type: ignore[attr-defined]
    [fields] = access_fields(caplog)
    assert fields["client_left"] is True
    assert fields["bytes"] == len(SHOWN)
    assert caplog.records[-1].levelno == logging.INFO


def test_an_app_that_raises_is_logged_as_an_error_and_the_error_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        AccessLog(broken)({"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, lambda *a: None)
    [fields] = access_fields(caplog)
    assert fields["error"] == "the app raised RuntimeError: boom"
    assert caplog.records[-1].levelno == logging.ERROR


def test_an_upstream_that_cuts_a_stream_is_logged_with_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cut = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    with scripted(cut + b"%x\r\n%s\r\n" % (len(LINE), LINE), None) as (upstream, _):
        app = TestApp(AccessLog(DefaultModel(Forwarder(upstream.url, read_timeout_s=TIMEOUT_S),
                                             alias=ALIAS, target=TARGET)))  # fmt: skip
        app.post("/api/generate", b'{"model":"llmodel"}')
    [fields] = access_fields(caplog)
    assert fields["error"].startswith(f"upstream {upstream.url} closed the connection")
    assert fields["error"].endswith("(the stream was cut short)")
    assert caplog.records[-1].levelno == logging.WARNING


def test_an_unreachable_upstream_is_logged_with_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with serve(FakeOllama()) as url:
        pass  # the port is free again: nothing answers there now
    app = TestApp(AccessLog(DefaultModel(Forwarder(url), alias=ALIAS, target=TARGET)))
    response = app.post("/api/chat", b'{"model":"llmodel"}', expect_errors=True)
    [fields] = access_fields(caplog)
    assert fields["status"] == 502
    assert fields["error"] == f"upstream {url} is unreachable: connection refused"
    # The client gets the id, not the address; the line has both.
    assert response.json["error"] == f"upstream unreachable (request id {fields['request_id']})"
    assert (
        caplog.records[-1]
        .getMessage()
        .endswith(
            f'error="upstream {url} is unreachable: connection refused" '
            f"request_id={fields['request_id']}"
        )
    )


# --------------------------------------------------------------------------------------
# How a line reads


def format_last(caplog: pytest.LogCaptureFixture, formatter: logging.Formatter) -> str:
    return formatter.format(caplog.records[-1])


def test_the_text_line_reads_as_key_value_pairs(caplog: pytest.LogCaptureFixture) -> None:
    logged(replying("200 OK", "application/x-ndjson", LINE)).post(
        "/api/generate", b'{"model":"llmodel"}', extra_environ={"REMOTE_ADDR": "10.0.0.7"}
    )
    line = caplog.records[-1].getMessage()
    assert re.fullmatch(
        r'10\.0\.0\.7 "POST /api/generate" 200 alias=llmodel model=aya-expanse:8b-q8_0 '
        r"time=\d+\.\d{3}s bytes=49 ttfb=\d+\.\d{3}s",
        line,
    ), line


def test_a_name_a_client_sent_cannot_start_a_line_of_its_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logged(replying("200 OK", "application/json", b"{}")).post(
        "/api/chat", json.dumps({"model": "x\nFAKE 200 alias=admin"}).encode()
    )
    line = caplog.records[-1].getMessage()
    assert "\n" not in line
    assert 'model="x\\nFAKE 200 alias=admin"' in line


def test_the_json_line_carries_every_field(caplog: pytest.LogCaptureFixture) -> None:
    logged(replying("200 OK", "application/x-ndjson", LINE)).post(
        "/api/generate", b'{"model":"llmodel"}'
    )
    document = json.loads(format_last(caplog, JsonFormatter()))
    assert document["level"] == "info"
    assert document["logger"] == "ollama_default.access"
    assert document["alias"] == ALIAS and document["model"] == TARGET
    assert document["status"] == 200 and document["bytes"] == len(SHOWN)
    assert {"time", "pid", "message", "duration_ms", "ttfb_ms", "client", "path"} <= set(document)


# --------------------------------------------------------------------------------------
# configure_logging and the start-up summary


@pytest.fixture
def restore_logging() -> Iterator[None]:
    logger = logging.getLogger("ollama_default")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    for handler in list(logger.handlers):
        if handler not in handlers:
            logger.removeHandler(handler)
            handler.close()
    logger.setLevel(level)
    logger.propagate = propagate


@pytest.mark.usefixtures("restore_logging")
def test_the_log_goes_to_a_file_as_json_at_the_chosen_level(tmp_path: Path) -> None:
    log_file = tmp_path / "access.log"
    configure_logging(Settings(log_file=str(log_file), log_format="json", log_level="warning"))
    configure_logging(Settings(log_file=str(log_file), log_format="json", log_level="warning"))
    app = logged(replying("200 OK", "application/json", b"{}"))
    app.post("/api/chat", b'{"model":"llmodel"}')  # INFO: below the level
    app.post("/api/chat", b"[", expect_errors=True)  # WARNING: kept
    lines = log_file.read_text().splitlines()
    assert len(lines) == 1  # one handler, even when configured twice
    assert json.loads(lines[0])["error"].startswith("invalid JSON in request body")


@pytest.mark.usefixtures("restore_logging")
def test_a_log_file_that_cannot_be_opened_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"^log_file '.*/missing/x\.log' cannot be opened: "
    ) as raised:
        configure_logging(Settings(log_file=str(tmp_path / "missing" / "x.log")))
    assert raised.value.key == "log_file"


def test_the_startup_summary_names_version_upstream_aliases_prefix_and_workers() -> None:
    settings = Settings(
        aliases={ALIAS: TARGET, "embed": "nomic-embed-text"}, default=ALIAS, prefix="/llm"
    )
    lines = startup_summary(settings, upstream_answers=True, demo=None, workers="2 x gevent")
    assert re.fullmatch(
        r"ollama-default \S+: forwarding to http://127\.0\.0\.1:11434 \(answering\)", lines[0]
    )
    assert lines[1] == f"aliases: {ALIAS} -> {TARGET} (default), embed -> nomic-embed-text"
    assert lines[2] == "prefix: /llm; workers: 2 x gevent"
    assert lines[3] == "access log: on, text, to standard error; level info"
    demo = startup_summary(Settings(), upstream_answers=None, demo="as asked", workers=None)
    assert demo[0].endswith(": serving the built-in demo backend")
    assert demo[1] == "aliases: none"


def test_the_startup_summary_says_the_upstream_urls_credentials_are_sent_but_not_what() -> None:
    settings = Settings(upstream="https://me:s3cret@ollama.internal:8443/")
    lines = startup_summary(settings, upstream_answers=None, demo=None, workers=None)
    assert lines[0].endswith(
        ": forwarding to https://ollama.internal:8443/, with the user and password of its URL "
        "as Basic Authorization in place of the clients'"
    )
    assert "s3cret" not in "\n".join(lines)
    assert "me@" not in "\n".join(lines)


def test_the_startup_summary_says_which_targets_are_installed() -> None:
    settings = Settings(aliases={ALIAS: TARGET, "big": "qwen3:32b"}, default=ALIAS)
    installed = {"registry.ollama.ai/library/aya-expanse:8b-q8_0": TARGET}
    lines = startup_summary(
        settings, upstream_answers=True, demo=None, workers=None, installed=installed
    )
    assert lines[1] == (
        f"aliases: {ALIAS} -> {TARGET} (default, installed), big -> qwen3:32b (not installed)"
    )
    assert missing_targets(settings, installed) == [
        "alias 'big': its target 'qwen3:32b' is not installed upstream, so clients do not see "
        "the alias listed and requests for it fail: run ollama pull qwen3:32b"
    ]


def test_the_start_up_probe_reads_the_installed_models() -> None:
    fake = FakeOllama(["aya-expanse:8b-q8_0", "Library/Llama3.2"])
    with serve(fake) as url:
        host_and_port = url.split("://", 1)[1]
        probe = probe_upstream(f"http://me:pw@{host_and_port}/")
        assert fake.requests[-1].path == "/api/tags"
        assert fake.requests[-1].headers["authorization"] == "Basic bWU6cHc="
        assert probe_upstream(url + "/not-ollama") == (True, None)  # 404: no list
    assert probe == (
        True,
        {
            "registry.ollama.ai/library/aya-expanse:8b-q8_0": TARGET,
            "registry.ollama.ai/library/llama3.2:latest": "Llama3.2:latest",
        },
    )
    assert probe_upstream(url) == (False, None)  # nothing listens there any more


# --------------------------------------------------------------------------------------
# Through a real gunicorn


@pytest.fixture(scope="module")
def fake_url() -> Iterator[str]:
    with serve(FakeOllama()) as url:
        yield url


def run_proxy(
    settings: dict[str, str], tmp_path: Path
) -> contextlib.AbstractContextManager[GunicornProcess]:
    # serve's gunicorn configuration: its hook logs the summary, once, in the master.
    options = ("-c", "python:ollama_default.proxy.gunicorn", "--workers", "2")
    return run_gunicorn(settings, log_dir=tmp_path, options=options)


def test_gunicorn_logs_each_request_once_with_alias_model_and_reason(
    fake_url: str, tmp_path: Path
) -> None:
    settings = {"OLLAMA_DEFAULT_UPSTREAM": fake_url, "OLLAMA_DEFAULT_ALIAS": ALIAS,
                "OLLAMA_DEFAULT_TARGET": TARGET}  # fmt: skip
    with run_proxy(settings, tmp_path) as proxy:
        with ollama.Client(host=proxy.base_url, timeout=TIMEOUT_S) as client:
            client.chat(model=ALIAS, messages=[{"role": "user", "content": "hi"}])
            list(client.generate(model=ALIAS, prompt="hi", stream=True))
        bad = requests.post(f"{proxy.base_url}/api/chat", data=b"{", timeout=TIMEOUT_S)
        assert bad.status_code == 400
        assert bad.headers.get("X-Ollama-Default-Target") is None
    lines = proxy.stderr().splitlines()
    access = [line for line in lines if "ollama_default.access:" in line]
    [chat] = [line for line in access if '"POST /api/chat" 200' in line]
    assert f"alias={ALIAS} model={TARGET}" in chat and "[INFO]" in chat and "ttfb=" not in chat
    [stream] = [line for line in access if '"POST /api/generate" 200' in line]
    assert re.search(r"bytes=\d{3,} ttfb=\d+\.\d{3}s$", stream), stream
    [refused] = [line for line in access if '"POST /api/chat" 400' in line]
    assert "[WARNING]" in refused and 'error="invalid JSON in request body' in refused
    summary = [line for line in lines if "] ollama_default: ollama-default " in line]
    assert len(summary) == 1  # the master says it, not each worker
    assert f"forwarding to {fake_url} (answering)" in summary[0]
    assert any("workers: 2 x ollama_default.proxy.gunicorn.GeventWorker" in x for x in lines)
    assert not any("gunicorn.error" in line or "Traceback" in line for line in lines)


def test_gunicorn_says_at_start_up_which_alias_has_no_installed_target(
    fake_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "ollama-default.toml"
    config.write_text(f'default = "{ALIAS}"\n[aliases]\n{ALIAS} = "{TARGET}"\nbig = "qwen3:32b"\n')
    settings = {"OLLAMA_DEFAULT_UPSTREAM": fake_url, "OLLAMA_DEFAULT_CONFIG": str(config)}
    with run_proxy(settings, tmp_path) as proxy:
        listed = requests.get(f"{proxy.base_url}/api/tags", timeout=TIMEOUT_S).json()["models"]
    assert [model["name"] for model in listed][:1] == [f"{ALIAS}:latest"]  # "big" is not
    lines = proxy.stderr().splitlines()
    [aliases] = [line for line in lines if "ollama_default: aliases: " in line]
    assert aliases.endswith(
        f"aliases: {ALIAS} -> {TARGET} (default, installed), big -> qwen3:32b (not installed)"
    )
    [missing] = [line for line in lines if "is not installed upstream" in line]
    assert "[WARNING]" in missing
    assert missing.endswith(
        "ollama_default: ollama-default: alias 'big': its target 'qwen3:32b' is not installed "
        "upstream, so clients do not see the alias listed and requests for it fail: run "
        "ollama pull qwen3:32b"
    )


def test_gunicorn_writes_json_lines_to_the_log_file(tmp_path: Path) -> None:
    with serve(FakeOllama()) as url:
        pass  # nothing answers there any more
    log_file = tmp_path / "proxy.log"
    settings = {"OLLAMA_DEFAULT_UPSTREAM": url, "OLLAMA_DEFAULT_ALIAS": ALIAS,
                "OLLAMA_DEFAULT_TARGET": TARGET, "OLLAMA_DEFAULT_LOG_FORMAT": "json",
                "OLLAMA_DEFAULT_LOG_FILE": str(log_file)}  # fmt: skip
    with run_proxy(settings, tmp_path) as proxy:
        response = requests.post(
            f"{proxy.base_url}/v1/chat/completions", json={"model": ALIAS}, timeout=TIMEOUT_S
        )
        assert response.status_code == 502
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    [failure] = [r for r in records if r.get("path") == "/v1/chat/completions"]
    assert failure["level"] == "warning"
    assert (failure["status"], failure["alias"], failure["model"]) == (502, ALIAS, TARGET)
    assert failure["error"] == f"upstream {url} is unreachable: connection refused"
    assert "] ollama_default" not in proxy.stderr()  # all of it went to the file
