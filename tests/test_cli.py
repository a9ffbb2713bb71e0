"""The ``ollama-default`` command, called as ``main([...])``."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_ollama import FakeOllama, serve

from ollama_default.cli import main


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
