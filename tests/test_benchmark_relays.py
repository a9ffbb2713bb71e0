"""The benchmark's yardsticks (``benchmarks/relay.py``) answer as the proxy does.

``benchmarks/proxy.py --relay`` sets their figures beside the proxy's, so they must do the
same job: ``rewriting_app`` runs the target and shows the alias, ``app`` relays untouched.
They are run here as the benchmark runs them: gevent gunicorn in front of the fake Ollama.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from fake_ollama import FakeOllama, serve
from gunicorn_process import GunicornProcess, run_gunicorn

ALIAS = "llmodel"
TARGET = "aya-expanse:8b-q8_0"
CHAT = {"model": ALIAS, "messages": [{"role": "user", "content": "hello"}]}
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def fake() -> FakeOllama:
    """An Ollama with the alias installed too, for the relay that does not rewrite."""
    return FakeOllama(models=(TARGET, ALIAS))


@dataclass
class Yardstick:
    server: GunicornProcess
    runs: str  # the model the upstream is asked to run


@pytest.fixture(
    scope="module", params=[("app", ALIAS), ("rewriting_app", TARGET)], ids=["relay", "relay+rw"]
)
def relay(
    request: pytest.FixtureRequest, fake: FakeOllama, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Yardstick]:
    """One yardstick under gunicorn, as the benchmark starts it."""
    name, runs = request.param
    settings = {"OLLAMA_DEFAULT_ALIAS": ALIAS, "OLLAMA_DEFAULT_TARGET": TARGET}
    options = ("--worker-class", "gevent", "--workers", "1", "--pythonpath", str(BENCHMARKS))
    with serve(fake) as url:
        settings["OLLAMA_DEFAULT_UPSTREAM"] = url
        log_dir = tmp_path_factory.mktemp(name)
        with run_gunicorn(
            settings, log_dir=log_dir, options=options, app=f"relay:{name}"
        ) as server:
            yield Yardstick(server, runs)
        assert "Traceback" not in server.stderr()


def test_a_chat_answers_as_the_alias(relay: Yardstick, fake: FakeOllama) -> None:
    url = relay.server.base_url + "/api/chat"
    reply = requests.post(url, json={**CHAT, "stream": False}, timeout=TIMEOUT_S)

    assert reply.status_code == 200
    assert fake.requests[-1].json["model"] == relay.runs
    assert reply.json()["model"] == ALIAS
    assert int(reply.headers["Content-Length"]) == len(reply.content)


def test_every_streamed_record_shows_the_alias(relay: Yardstick, fake: FakeOllama) -> None:
    url = relay.server.base_url + "/api/chat"
    with requests.post(url, json=CHAT, stream=True, timeout=TIMEOUT_S) as reply:
        records = [json.loads(line) for line in reply.iter_lines() if line]

    assert fake.requests[-1].json["model"] == relay.runs
    assert {record["model"] for record in records} == {ALIAS}
    assert records[-1]["done"]
