"""The ``ollama-default`` command, called as ``main([...])``."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from fake_ollama import FakeOllama, serve
from gunicorn_process import start_server

from ollama_default.cli import is_answering, main
from ollama_default.settings import DEFAULT_UPSTREAM


@pytest.fixture
def upstream() -> Iterator[tuple[FakeOllama, str]]:
    fake = FakeOllama()
    with serve(fake) as url:
        yield fake, url


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_check_lists_each_alias_with_its_targets_state(
    upstream: tuple[FakeOllama, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fake, url = upstream
    fake.loaded.add("aya-expanse:8b-q8_0")
    config = tmp_path / "c.toml"
    config.write_text(
        f'upstream = "{url}"\ndefault = "llmodel"\n'
        '[aliases]\nllmodel = "aya-expanse:8b-q8_0"\nembed = "nomic-embed-text"\n'
    )
    assert main(["check", "--config", str(config)], environ={}) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"upstream {url}: reachable"
    assert lines[1].split() == ["alias", "target", "installed", "loaded"]
    assert lines[2].split() == ["llmodel", "(default)", "aya-expanse:8b-q8_0", "yes", "yes"]
    assert lines[3].split() == ["embed", "nomic-embed-text", "yes", "no"]


def test_check_fails_when_a_target_is_not_installed(
    upstream: tuple[FakeOllama, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = upstream
    environ = {
        "OLLAMA_DEFAULT_UPSTREAM": url,
        "OLLAMA_DEFAULT_ALIAS": "llmodel",
        "OLLAMA_DEFAULT_TARGET": "qwen3:4b",
    }
    assert main(["check"], environ=environ) == 1
    assert capsys.readouterr().out.splitlines()[2].split() == [
        "llmodel", "(default)", "qwen3:4b", "no", "no"
    ]  # fmt: skip


def test_check_fails_when_the_upstream_cannot_be_reached(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = closed_port_url()
    assert main(["check"], environ={"OLLAMA_DEFAULT_UPSTREAM": url}) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"ollama-default: upstream {url} cannot be checked:")


def test_a_bad_configuration_is_one_line_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"], environ={"OLLAMA_DEFAULT_UPSTREAM": "localhost"}) == 2
    assert capsys.readouterr().err.splitlines() == [
        "ollama-default: configuration error: upstream 'localhost' is not an http:// or "
        "https:// URL (set by OLLAMA_DEFAULT_UPSTREAM)"
    ]


SERVE = [sys.executable, "-m", "ollama_default.cli", "serve"]


def test_serve_runs_the_proxy_in_front_of_the_upstream(
    upstream: tuple[FakeOllama, str], tmp_path: Path
) -> None:
    fake, url = upstream
    settings = {
        "OLLAMA_DEFAULT_UPSTREAM": url,
        "OLLAMA_DEFAULT_ALIAS": "llmodel",
        "OLLAMA_DEFAULT_TARGET": "aya-expanse:8b-q8_0",
    }
    server = start_server([*SERVE, "--workers", "1"], settings, log_dir=tmp_path)
    try:
        server.wait_until_ready()
        # Connection: close, or gunicorn's graceful stop would wait out the idle connection.
        with requests.post(
            f"{server.base_url}/api/generate",
            json={"prompt": "hi"},
            headers={"Connection": "close"},
            timeout=10,
        ) as r:
            lines = [json.loads(line) for line in r.iter_lines()]
    finally:
        server.stop()
    assert fake.requests[-1].json["model"] == "aya-expanse:8b-q8_0"
    assert {line["model"] for line in lines} == {"llmodel"}
    assert f"ollama-default: forwarding to {url}" in server.stderr()
    assert "Using worker: gevent" in server.stderr()
    # The gevent worker patches ssl after the fork; nothing in the master may hold it first.
    assert "MonkeyPatchWarning" not in server.stderr()


@pytest.mark.parametrize(
    ("options", "settings", "logged"),
    [
        (["--demo"], {}, "serving the built-in demo backend (as asked)"),
        (
            ["--fallback-demo"],
            {"OLLAMA_DEFAULT_UPSTREAM": "http://127.0.0.1:11434"},
            "serving the built-in demo backend (no Ollama answers at http://127.0.0.1:11434)",
        ),
    ],
    ids=["demo", "fallback-demo"],
)
def test_serve_can_front_the_demo_backend_and_says_so(
    tmp_path: Path, options: list[str], settings: dict[str, str], logged: str
) -> None:
    if options == ["--fallback-demo"] and is_answering(DEFAULT_UPSTREAM):
        pytest.skip("an Ollama answers at the default address on this machine")
    server = start_server([*SERVE, "--workers", "1", *options], settings, log_dir=tmp_path)
    try:
        server.wait_until_ready()
        reply = requests.post(
            f"{server.base_url}/api/chat", json={"messages": [], "stream": False}, timeout=10
        ).json()
    finally:
        server.stop()
    assert reply["model"] == "llmodel"
    assert logged in server.stderr()


def test_serve_refuses_a_bad_configuration_before_starting(tmp_path: Path) -> None:
    server = start_server(SERVE, {"OLLAMA_DEFAULT_PREFIX": "llm"}, log_dir=tmp_path)
    assert server.wait_for_exit(timeout_s=20) == 2
    assert server.stderr().splitlines() == [
        "ollama-default: configuration error: prefix 'llm' must be a path such as '/llm' "
        "(set by OLLAMA_DEFAULT_PREFIX)"
    ]
