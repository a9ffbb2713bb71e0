"""Switching an alias for real: ``ollama-default serve`` with several workers, streams under
way, the config edited by hand and by ``ollama-default switch``, against the fake upstream
that takes a second to load a cold model and records its loads and unloads."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from fake_ollama import FakeOllama, serve
from gunicorn_process import GunicornProcess, start_server

from ollama_default.proxy.cli import main
from ollama_default.proxy.config_edit import retarget

WORKERS = 3
RELOAD_DEADLINE_S = 2.0
OLD, NEW = "aya-expanse:8b-q8_0", "llama3.2:latest"


def proxy(config: Path, upstream: str, tmp_path: Path) -> GunicornProcess:
    command = [sys.executable, "-m", "ollama_default", "serve", "--workers", str(WORKERS),
               "--config", str(config)]  # fmt: skip
    server = start_server(command, {"OLLAMA_DEFAULT_UPSTREAM": upstream}, log_dir=tmp_path)
    try:
        server.wait_until_ready()
    except BaseException:
        server.stop()
        raise
    return server


def worker_pids(server: GunicornProcess) -> set[int]:
    deadline = time.monotonic() + 10
    while True:
        pids = {int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", server.stderr())}
        if len(pids) == WORKERS or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


def serving(server: GunicornProcess, version_of: str) -> set[int]:
    """The workers that logged serving the config version whose aliases are ``version_of``."""
    found = re.findall(rf"worker (\d+) serves config version \w+ \(generation \d+\): "
                       rf"{re.escape(version_of)}$", server.stderr(), re.MULTILINE)  # fmt: skip
    return {int(pid) for pid in found}


def replace(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def generate(base_url: str, alias: str, *, stream: bool = True) -> requests.Response:
    # A new connection each time: gunicorn hands each to whichever worker accepts it.
    return requests.post(
        f"{base_url}/api/generate",
        json={"model": alias, "prompt": "hi", "stream": stream},
        headers={"Connection": "close"},
        stream=stream,
        timeout=30,
    )


class Stream(threading.Thread):
    """A streaming request read to its end in a thread: its records, when it ended."""

    def __init__(self, base_url: str, alias: str) -> None:
        super().__init__(daemon=True)
        self.base_url, self.alias = base_url, alias
        self.started = threading.Event()
        self.records: list[dict[str, Any]] = []
        self.target = ""
        self.error: BaseException | None = None
        self.ended = 0.0

    def run(self) -> None:
        try:
            with generate(self.base_url, self.alias) as response:
                response.raise_for_status()
                self.target = response.headers["X-Ollama-Default-Target"]
                for line in response.iter_lines():
                    self.records.append(json.loads(line))
                    self.started.set()
        except BaseException as error:
            self.error = error
        finally:
            self.ended = time.monotonic()
            self.started.set()


@pytest.fixture
def fake() -> Iterator[tuple[FakeOllama, str]]:
    upstream = FakeOllama(tokens=20, token_delay_s=0.1, load_delay_s=1.0)
    with serve(upstream) as url:
        yield upstream, url


def test_every_worker_follows_an_edit_while_streams_keep_their_alias(
    fake: tuple[FakeOllama, str], tmp_path: Path
) -> None:
    upstream, url = fake
    config = tmp_path / "ollama-default.toml"
    replace(config, f'[aliases]\nllmodel = "{OLD}"\n')
    server = proxy(config, url, tmp_path)
    try:
        pids = worker_pids(server)
        assert len(pids) == WORKERS
        streams = [Stream(server.base_url, "llmodel") for _ in range(6)]
        for each in streams:
            each.start()
        for each in streams:
            assert each.started.wait(10)
        edited = time.monotonic()
        replace(config, f'[aliases]\nllmodel = "{NEW}"\n')
        # Every worker logs that it serves the new table, within the deadline.
        while serving(server, f"llmodel -> {NEW}") != pids:
            assert time.monotonic() - edited < RELOAD_DEADLINE_S, server.stderr()
            time.sleep(0.02)
        assert not any(each.ended for each in streams)  # they ran across the swap
        upstream.token_delay_s = 0  # the rest quickly
        # And new requests, on new connections spread over the workers, get the new target.
        targets = {generate(server.base_url, "llmodel", stream=False).headers[
            "X-Ollama-Default-Target"] for _ in range(12)}  # fmt: skip
        assert targets == {NEW}
        for each in streams:
            each.join(15)
            assert each.error is None
            # Each stream kept its table: the old target generated it, named as asked.
            assert each.target == OLD
            assert {record["model"] for record in each.records} == {"llmodel"}
            assert len(each.records) == 21 and each.records[-1]["done"]
            assert f"I am {OLD}" in "".join(r["response"] for r in each.records)
        # A broken edit: refused in the log, the table serves on.
        replace(config, f'[aliases]\nllmodel = "{OLD}"\nllmodel2 = "llmodel"\n')
        line = server.log_line("reload refused", timeout_s=RELOAD_DEADLINE_S + 1)
        assert "is itself an alias" in line
        assert generate(server.base_url, "llmodel", stream=False).headers[
            "X-Ollama-Default-Target"] == NEW  # fmt: skip
        # The status (of whichever worker answers) says so too, and what still serves.
        status = requests.get(f"{server.base_url}/-/status", timeout=10).json()
        assert "is itself an alias" in status["last_reload_error"]["error"]
        assert [(row["alias"], row["target"]) for row in status["aliases"]] == [("llmodel", NEW)]
    finally:
        server.stop()
    assert "Traceback" not in server.stderr()


def test_switch_warm_under_traffic_loads_once_and_unloads_after_the_last_stream(
    fake: tuple[FakeOllama, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upstream, url = fake
    upstream.token_delay_s = 0.02
    config = tmp_path / "ollama-default.toml"
    replace(config, (
        "# two aliases on one model\n[aliases]\n"
        f'llmodel = {{ target = "{OLD}", warm = true, unload_previous = true }}  # chat\n'
        f'chat = {{ target = "{OLD}", unload_previous = true }}\n'
    ))  # fmt: skip
    server = proxy(config, url, tmp_path)
    failures: list[str] = []
    done = threading.Event()

    def traffic() -> None:
        while not done.is_set():
            try:
                response = generate(server.base_url, "llmodel", stream=False)
                if response.status_code != 200:
                    failures.append(response.text)
            except requests.RequestException as error:
                failures.append(str(error))

    try:
        assert generate(server.base_url, "llmodel", stream=False).status_code == 200  # cold
        threads = [threading.Thread(target=traffic, daemon=True) for _ in range(4)]
        for thread in threads:
            thread.start()
        environ = {"OLLAMA_DEFAULT_UPSTREAM": url}
        assert main(["switch", "llmodel", NEW, "--config", str(config), "--warm"], environ) == 0
        out = capsys.readouterr().out
        assert f"{NEW} is loaded" in out and "s: " in out  # progress while it loaded
        pids = worker_pids(server)
        deadline = time.monotonic() + RELOAD_DEADLINE_S
        while serving(server, f"llmodel -> {NEW}, chat -> {OLD}") != pids:
            assert time.monotonic() < deadline, server.stderr()
            time.sleep(0.02)
        # chat still uses the old model: no unload. Now a long stream on chat, and chat moves.
        upstream.token_delay_s = 0.05
        last = Stream(server.base_url, "chat")
        last.start()
        assert last.started.wait(10)
        switched = time.monotonic()
        assert main(["switch", "chat", NEW, "--config", str(config)], environ) == 0
        deadline = time.monotonic() + 10
        while not [e for e in upstream.events if e[0] == "unload"]:
            assert time.monotonic() < deadline, server.stderr()
            time.sleep(0.02)
        done.set()
        for thread in threads:
            thread.join(30)
        last.join(10)
        # The status shows the last switch step by step, from the master's records.
        deadline = time.monotonic() + 10
        while True:
            switch = requests.get(f"{server.base_url}/-/status", timeout=10).json()["last_switch"]
            steps = {step["name"]: step["outcome"] for step in switch["steps"]}
            if f"unload {OLD}" in steps:
                break
            assert time.monotonic() < deadline, switch
            time.sleep(0.05)
        assert (switch["alias"], switch["old"], switch["new"]) == ("chat", OLD, NEW)
        assert steps[f"unload {OLD}"] == "ok"
    finally:
        done.set()
        server.stop()
    assert failures == []
    loads = [e for e in upstream.events if e[0] == "load"]
    unloads = [e for e in upstream.events if e[0] == "unload"]
    assert [name for _, name, _ in loads] == [OLD, NEW]  # one load each, not one per worker
    assert [name for _, name, _ in unloads] == [OLD]  # once, only when chat moved too
    assert last.error is None and last.target == OLD and len(last.records) == 21
    assert switched < last.ended < unloads[0][2]  # after the last stream on it ended
    assert "# two aliases on one model" in config.read_text()
    assert "Traceback" not in server.stderr()


def test_switch_warm_when_the_two_models_do_not_fit_fails_no_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Room for one model: loading the new one evicts the old (as Ollama does when memory
    is short). Streams on the old one run to their end, no request fails, and the new one
    is what stays loaded (docs/operations.rst, "When the two models do not fit")."""
    upstream = FakeOllama(tokens=20, token_delay_s=0.02, load_delay_s=1.0, max_loaded=1)
    with serve(upstream) as url:
        config = tmp_path / "ollama-default.toml"
        alias = f'llmodel = {{ target = "{OLD}", warm = true, unload_previous = true }}\n'
        replace(config, "[aliases]\n" + alias)
        server = proxy(config, url, tmp_path)
        failures: list[str] = []
        targets: list[str] = []
        done = threading.Event()

        def traffic() -> None:
            while not done.is_set():
                try:
                    response = generate(server.base_url, "llmodel", stream=False)
                    if response.status_code != 200:
                        failures.append(response.text)
                    else:
                        targets.append(response.headers["X-Ollama-Default-Target"])
                except requests.RequestException as error:
                    failures.append(str(error))

        try:
            assert generate(server.base_url, "llmodel", stream=False).status_code == 200
            long = Stream(server.base_url, "llmodel")
            long.start()
            assert long.started.wait(10)
            threads = [threading.Thread(target=traffic, daemon=True) for _ in range(3)]
            for thread in threads:
                thread.start()
            environ = {"OLLAMA_DEFAULT_UPSTREAM": url}
            command = ["switch", "llmodel", NEW, "--config", str(config), "--warm"]
            assert main(command, environ) == 0
            assert f"{NEW} is loaded" in capsys.readouterr().out
            pids = worker_pids(server)
            deadline = time.monotonic() + RELOAD_DEADLINE_S
            while serving(server, f"llmodel -> {NEW}") != pids:
                assert time.monotonic() < deadline, server.stderr()
                time.sleep(0.02)
            # Traffic goes on after the flip, until the new model has answered a few.
            deadline = time.monotonic() + 30
            while targets.count(NEW) < 10:
                assert time.monotonic() < deadline, (failures, server.stderr())
                time.sleep(0.02)
            done.set()
            for thread in threads:
                thread.join(30)
            long.join(15)
        finally:
            done.set()
            server.stop()
    assert failures == []
    assert long.error is None and long.target == OLD and len(long.records) == 21
    assert ("evict", OLD) in [(kind, name) for kind, name, _ in upstream.events]
    assert upstream.loaded == {NEW}  # what stays is the new model
    assert "Traceback" not in server.stderr()


# --- switch's edit ------------------------------------------------------------------------------

CONFIG = """\
# the proxy's settings
upstream = "http://127.0.0.1:11434"  # local

[aliases]
# the chat model
llmodel = "aya-expanse:8b-q8_0"  # for now
embed = { target = "nomic-embed-text", warm = true }  # inline

[aliases.big]
target = "llama3.2"  # the big one
warm = true
"""


@pytest.mark.parametrize(
    ("alias", "old", "line"),
    [
        ("llmodel", "aya-expanse:8b-q8_0", 'llmodel = "qwen3:8b"  # for now'),
        ("LLModel:latest", "aya-expanse:8b-q8_0", 'llmodel = "qwen3:8b"  # for now'),
        ("embed", "nomic-embed-text", 'embed = { target = "qwen3:8b", warm = true }  # inline'),
        ("big", "llama3.2", 'target = "qwen3:8b"  # the big one'),
    ],
    ids=["plain", "other-spelling", "inline-table", "table"],
)
def test_switch_changes_the_target_only(alias: str, old: str, line: str) -> None:
    text, _key, was = retarget(CONFIG, alias, "qwen3:8b", where="config file 'x'")
    assert was == old
    assert text == CONFIG.replace(next(row for row in CONFIG.splitlines()
                                       if row.startswith(line.split("=")[0])
                                       and old in row), line)  # fmt: skip


def upstream_with(models: tuple[str, ...]) -> Iterator[str]:
    with serve(FakeOllama(models)) as url:
        yield url


@pytest.fixture
def small_upstream() -> Iterator[str]:
    yield from upstream_with(("aya-expanse:8b-q8_0", "qwen3:8b"))


def test_switch_rewrites_atomically_keeping_the_mode(
    tmp_path: Path, small_upstream: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(CONFIG)
    config.chmod(0o640)
    environ = {"OLLAMA_DEFAULT_UPSTREAM": small_upstream}
    seen: set[str] = set()
    stop = threading.Event()

    def reader() -> None:  # never sees a part of a file
        for _ in range(100_000):
            if stop.is_set():
                return
            seen.add(config.read_text())

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    targets = ["qwen3:8b", "aya-expanse:8b-q8_0"] * 5
    try:
        for target in targets:
            assert main(["switch", "llmodel", target, "--config", str(config)], environ) == 0
    finally:
        stop.set()
        thread.join(10)
    assert seen <= {CONFIG, CONFIG.replace('"aya-expanse:8b-q8_0"  # for now',
                                           '"qwen3:8b"  # for now')}  # fmt: skip
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert "llmodel: qwen3:8b -> aya-expanse:8b-q8_0" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["c.toml"]  # no temporary left


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["switch", "llmodel", "qwen3:32b"], 1,
         "does not have 'qwen3:32b': run ollama pull qwen3:32b, or give --force"),
        (["switch", "nope", "qwen3:8b"], 2, "has no alias 'nope' in [aliases]"),
        (["switch", "llmodel", "embed"], 2, "is itself an alias"),
        (["switch", "llmodel", "bad name!"], 2, "is not a valid Ollama model name"),
    ],
    ids=["not-installed", "no-such-alias", "loop", "bad-name"],
)  # fmt: skip
def test_switch_refuses_in_one_line_and_leaves_the_file(
    tmp_path: Path,
    small_upstream: str,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    status: int,
    message: str,
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(CONFIG)
    environ = {"OLLAMA_DEFAULT_UPSTREAM": small_upstream}
    assert main([*argv, "--config", str(config)], environ) == status
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert config.read_text() == CONFIG


def test_switch_force_skips_the_upstream(tmp_path: Path, capsys: Any) -> None:
    config = tmp_path / "c.toml"
    config.write_text(CONFIG)
    environ = {"OLLAMA_DEFAULT_UPSTREAM": "http://127.0.0.1:9"}  # nothing listens
    assert main(["switch", "llmodel", "qwen3:32b", "--config", str(config)], environ) == 1
    assert "cannot be reached" in capsys.readouterr().err
    assert main(["switch", "llmodel", "qwen3:32b", "--config", str(config), "--force"],
                environ) == 0  # fmt: skip
    assert 'llmodel = "qwen3:32b"  # for now' in config.read_text()


def test_gunicorn_with_the_config_module_reloads_and_sighup_reads_the_file_now(
    tmp_path: Path,
) -> None:
    from gunicorn_process import run_gunicorn

    config = tmp_path / "ollama-default.toml"
    replace(config, f'[aliases]\nllmodel = "{OLD}"\n')
    with serve(FakeOllama()) as url:
        settings = {"OLLAMA_DEFAULT_UPSTREAM": url, "OLLAMA_DEFAULT_CONFIG": str(config)}
        options = ["-c", "python:ollama_default.proxy.gunicorn", "--workers", "2"]
        with run_gunicorn(settings, log_dir=tmp_path, options=options) as server:

            def target() -> str:
                response = generate(server.base_url, "llmodel", stream=False)
                return str(response.headers["X-Ollama-Default-Target"])

            assert target() == OLD
            # Both workers answer before the SIGHUP: a worker told to stop in its first
            # instants, before gunicorn has set its signal handlers, may not hear it.
            booted = {int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)",
                                                     server.stderr())}  # fmt: skip
            seen: set[int] = set()
            for _ in range(200):
                seen.add(
                    requests.get(
                        f"{server.base_url}/-/status", timeout=10, headers={"Connection": "close"}
                    ).json()["worker"]["pid"]
                )
                if seen == booted:
                    break
            assert seen == booted
            replace(config, f'[aliases]\nllmodel = "{NEW}"\n')
            server.process.send_signal(signal.SIGHUP)  # new workers, at once
            deadline = time.monotonic() + 10
            while (server.stderr().count("Booting worker with pid") < 4
                   or server.stderr().count("Worker exiting") < 2):  # fmt: skip
                assert time.monotonic() < deadline, server.stderr()
                time.sleep(0.05)
            # The workers SIGHUP started serve the file as it is now, on every connection.
            deadline = time.monotonic() + RELOAD_DEADLINE_S
            while {target() for _ in range(6)} != {NEW}:
                assert time.monotonic() < deadline, server.stderr()
    assert "Traceback" not in server.stderr()
