"""The ``ollama-default`` command, called as ``main([...])``, and run as users run it."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from fake_ollama import FakeOllama, serve
from gunicorn_process import child_environment, start_server

from ollama_default.proxy.cli import (
    COMMAND_FLAGS,
    SERVE_DEFAULTS,
    demo_reason,
    gunicorn_options,
    is_answering,
    log_start_up_warnings,
    main,
    normalise_address,
)
from ollama_default.proxy.config import DEFAULT_UPSTREAM, Settings, load_settings_with_sources

SERVE = [sys.executable, "-m", "ollama_default.proxy.cli", "serve"]
#: How long a server-level mistake may take to be reported, from the process's start.
MISTAKE_S = 2.0
#: How long ``serve`` may take to stop once signalled.
STOP_S = 3.0


@pytest.fixture
def upstream() -> Iterator[tuple[FakeOllama, str]]:
    fake = FakeOllama()
    with serve(fake) as url:
        yield fake, url


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    return lines[0]


# --------------------------------------------------------------------------------------
# The command line


def test_help_shows_every_default_and_where_else_each_flag_is_set(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for command, flags in COMMAND_FLAGS.items():
        with pytest.raises(SystemExit) as exited:
            main([command, "--help"], environ={})
        assert exited.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        assert text.count("(default: ") == len(flags)  # every flag, and no other, has one
        for flag in flags:
            assert " ".join(flag.help.split()) in text
    # The defaults are the settings' own; gunicorn's flags say whose they are.
    shown = {flag.names[0]: " ".join(flag.help.split()) for flag in COMMAND_FLAGS["serve"]}
    assert shown["--upstream"] == (
        "Ollama's base URL (default: http://127.0.0.1:11434; env OLLAMA_DEFAULT_UPSTREAM)"
    )
    assert shown["--log-level"].endswith(
        f"(default: {Settings().log_level}; env OLLAMA_DEFAULT_LOG_LEVEL)"
    )
    assert shown["--access-log"].endswith("(default: on; env OLLAMA_DEFAULT_ACCESS_LOG)")
    assert shown["--alias"].endswith(
        "(default: none; env OLLAMA_DEFAULT_ALIAS with OLLAMA_DEFAULT_TARGET)"
    )
    assert shown["--bind"].endswith(
        "(default: 127.0.0.1:8080; gunicorn's own --bind, also read from GUNICORN_CMD_ARGS)"
    )
    assert shown["--workers"].endswith(
        "(default: 2; gunicorn's own --workers, also read from GUNICORN_CMD_ARGS)"
    )


def test_a_usage_mistake_is_one_line_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--workers", "two"], environ={})
    assert exited.value.code == 2
    assert one_line(capsys.readouterr().err) == (
        "ollama-default serve: error: argument --workers: invalid int value: 'two' "
        "(see ollama-default serve --help)"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--alias", "llmodel"], "--alias 'llmodel' is not NAME=MODEL, such as "
         "--alias llmodel=aya-expanse:8b-q8_0"),
        (["--alias", "=qwen3:4b"], "--alias '=qwen3:4b' is not NAME=MODEL"),
        (["--alias", "a=m", "--alias", "a=n"], "--alias 'a' is given twice"),
        (["--alias", "a=m", "--alias", "b=n", "--default", "c"],
         "default 'c' is not one of the aliases ['a', 'b'] (set by --default)"),
        (["--upstream", "localhost:11434"], "upstream 'localhost:11434' is not an http:// or "
         "https:// URL (set by --upstream)"),
    ],
    ids=["no-equals", "no-name", "twice", "default-not-an-alias", "upstream"],
)  # fmt: skip
def test_a_bad_settings_flag_is_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["check", *argv], environ={}) == 2
    assert one_line(capsys.readouterr().err).startswith(
        f"ollama-default: configuration error: {message}"
    )


def test_a_bad_configuration_is_one_line_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"], environ={"OLLAMA_DEFAULT_UPSTREAM": "localhost"}) == 2
    assert one_line(capsys.readouterr().err) == (
        "ollama-default: configuration error: upstream 'localhost' is not an http:// or "
        "https:// URL (set by OLLAMA_DEFAULT_UPSTREAM)"
    )


def test_a_misspelt_variable_is_one_line_with_did_you_mean(
    capsys: pytest.CaptureFixture[str],
) -> None:
    environ = {"OLLAMA_DEFAULT_UPSTRAEM": "http://127.0.0.1:11434"}
    assert main(["serve"], environ=environ) == 2
    assert one_line(capsys.readouterr().err) == (
        "ollama-default: configuration error: unknown environment variable "
        "'OLLAMA_DEFAULT_UPSTRAEM' (did you mean 'OLLAMA_DEFAULT_UPSTREAM'?)"
    )


# --------------------------------------------------------------------------------------
# check


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
    out = capsys.readouterr().out
    report = out[out.index("upstream http") :].splitlines()
    assert report[0] == f"upstream {url}: reachable, 3 models installed, 1 loaded"
    assert report[1].split() == ["alias", "target", "installed", "loaded"]
    assert report[2].split() == ["llmodel", "(default)", "aya-expanse:8b-q8_0", "yes", "yes"]
    assert report[3].split() == ["embed", "nomic-embed-text", "yes", "no"]
    assert len(report) == 4  # nothing to point out


def test_check_says_where_each_setting_came_from(
    upstream: tuple[FakeOllama, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, url = upstream
    config = tmp_path / "c.toml"
    config.write_text('upstream = "http://file:1"\nread_timeout_s = 900\n[aliases]\nx = "m"\n')
    environ = {"OLLAMA_DEFAULT_CONFIG": str(config), "OLLAMA_DEFAULT_UPSTREAM": "http://env:2"}
    argv = ["check", "--upstream", url, "--alias", "llmodel=aya-expanse:8b-q8_0"]
    assert main(argv, environ=environ) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "settings:"
    assert [line.split(maxsplit=2) for line in lines[1:6]] == [
        ["upstream", url, "(from --upstream)"],
        ["aliases", "llmodel", "(from --alias)"],
        ["default", "llmodel", "(the only alias)  (from --alias)"],
        ["prefix", "none", "(default)"],
        ["read_timeout_s", "900", f"(from config file {str(config)!r})"],
    ]
    assert lines[6] == ""


def test_check_asks_with_the_upstream_urls_credentials_and_shows_none(
    upstream: tuple[FakeOllama, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = upstream
    with_credentials = url.replace("http://", "http://me:s3cret@")
    argv = ["check", "--upstream", with_credentials, "--alias", "llmodel=aya-expanse:8b-q8_0"]
    assert main(argv, environ={}) == 0
    captured = capsys.readouterr()
    assert f"upstream {url}: reachable" in captured.out
    assert "s3cret" not in captured.out + captured.err
    assert "me@" not in captured.out + captured.err
    assert fake.requests[-1].headers["authorization"] == "Basic bWU6czNjcmV0"  # me:s3cret


def test_check_with_the_upstream_down_says_so_and_still_shows_the_aliases(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = closed_port_url()
    environ = {"OLLAMA_DEFAULT_ALIAS": "llmodel", "OLLAMA_DEFAULT_TARGET": "qwen3:4b"}
    started = time.monotonic()
    assert main(["check", "--upstream", url], environ=environ) == 1
    assert time.monotonic() - started < MISTAKE_S
    captured = capsys.readouterr()
    assert one_line(captured.err) == (
        f"ollama-default: upstream {url} is not answering (connection refused): start Ollama, "
        "or set --upstream to where it runs"
    )
    table = captured.out[captured.out.index("alias ") :].splitlines()
    assert [line.split() for line in table] == [
        ["alias", "target", "installed", "loaded"],
        ["llmodel", "(default)", "qwen3:4b", "?", "?"],
    ]


def test_check_with_an_upstream_that_is_not_ollama(capsys: pytest.CaptureFixture[str]) -> None:
    def not_ollama(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"nothing here"]

    with serve(not_ollama) as url:
        assert main(["check", "--upstream", url, "--alias", "a=m"], environ={}) == 1
    assert one_line(capsys.readouterr().err) == (
        f"ollama-default: upstream {url} answered /api/tags with 404 Not Found: is it Ollama? "
        "Set --upstream to it"
    )


def test_check_names_a_missing_target_with_the_pull_command_and_close_names(
    upstream: tuple[FakeOllama, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = upstream
    argv = ["check", "--upstream", url, "--alias", "llmodel=llama3.2:1b", "--alias", "x=zzz"]
    assert main(argv, environ={}) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines[-4:-2]] == [["x", "zzz", "no", "no"], []]
    assert lines[-2:] == [
        "llmodel: 'llama3.2:1b' is not installed: run ollama pull llama3.2:1b "
        "(installed models with close names: llama3.2:latest)",
        "x: 'zzz' is not installed: run ollama pull zzz",
    ]


def test_check_points_out_an_alias_that_hides_an_installed_model(
    upstream: tuple[FakeOllama, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = upstream
    argv = ["check", "--upstream", url, "--alias", "Llama3.2=aya-expanse:8b-q8_0"]
    assert main(argv, environ={}) == 0  # a choice, maybe deliberate: not a failure
    assert capsys.readouterr().out.splitlines()[-1] == (
        "alias 'Llama3.2' hides the installed model llama3.2:latest: clients asking for it get "
        "'aya-expanse:8b-q8_0' instead"
    )


def test_check_without_aliases_says_how_to_add_one(
    upstream: tuple[FakeOllama, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = upstream
    assert main(["check", "--upstream", url], environ={}) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "no aliases configured: add one with --alias llmodel=MODEL (or OLLAMA_DEFAULT_ALIAS "
        "with OLLAMA_DEFAULT_TARGET, or [aliases] in the config file); 'ollama list' shows the "
        "installed models"
    )


# --------------------------------------------------------------------------------------
# serve: what it decides before gunicorn starts


def loaded(environ: dict[str, str], flags: dict[str, Any] | None = None) -> dict[str, Any]:
    settings, sources = load_settings_with_sources(environ, flags)
    return {"settings": settings, "sources": sources}


FALLBACK_CASES = [
    pytest.param({}, {}, False, "nothing is configured and no Ollama answers at "
                 "http://127.0.0.1:11434; start Ollama and restart to forward to it",
                 id="nothing-configured-no-ollama"),
    pytest.param({}, {}, True, None, id="ollama-answers"),
    pytest.param({"OLLAMA_DEFAULT_ALIAS": "llmodel", "OLLAMA_DEFAULT_TARGET": "qwen3:4b"}, {},
                 False, None, id="aliases-from-the-environment"),
    pytest.param({}, {"aliases": {"llmodel": "qwen3:4b"}}, False, None, id="alias-flag"),
    pytest.param({"OLLAMA_DEFAULT_UPSTREAM": DEFAULT_UPSTREAM}, {}, False, None,
                 id="upstream-set-even-to-the-default"),
    pytest.param({}, {"upstream": "http://gpu:11434"}, False, None, id="upstream-flag"),
]  # fmt: skip


@pytest.mark.parametrize(("environ", "flags", "answers", "reason"), FALLBACK_CASES)
def test_fallback_demo_serves_the_demo_only_when_nothing_is_configured_and_no_ollama_answers(
    environ: dict[str, str], flags: dict[str, Any], answers: bool, reason: str | None
) -> None:
    asked: list[bool] = []

    def ollama_answers() -> bool:
        asked.append(True)
        return answers

    given = loaded(environ, flags)
    assert demo_reason(demo=False, fallback_demo=True, ollama_answers=ollama_answers, **given) == (
        reason
    )
    # Configured: the address is not even tried.
    assert asked == ([True] if environ == flags == {} else [])
    assert demo_reason(demo=False, fallback_demo=False, ollama_answers=ollama_answers, **given) is (
        None
    )
    assert demo_reason(demo=True, fallback_demo=False, ollama_answers=ollama_answers, **given) == (
        "as asked (--demo)"
    )


def test_serve_without_aliases_warns_how_to_add_one(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ollama_default"):
        log_start_up_warnings(Settings(upstream="http://gpu:11434"), demo=None)
        log_start_up_warnings(Settings(aliases={"llmodel": "qwen3:4b"}), demo=None)
    assert [(record.name, record.getMessage()) for record in caplog.records] == [
        ("ollama_default.proxy.cli",
         "ollama-default: no aliases configured: requests pass through to http://gpu:11434 "
         "unchanged, and one that names no model gets Ollama's own error 'model is required'"),
        ("ollama_default.proxy.cli", "ollama-default: add one with --alias llmodel=MODEL (or "
         "OLLAMA_DEFAULT_ALIAS with OLLAMA_DEFAULT_TARGET, or [aliases] in the config file); "
         "'ollama list' shows the installed models"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("address", "normalised"),
    [
        ("127.0.0.1:9000", "127.0.0.1:9000"),
        ("0.0.0.0", "0.0.0.0:8080"),
        ("localhost", "localhost:8080"),
        ("[::1]:9000", "[::1]:9000"),
        ("[::]", "[::]:8080"),
        ("tcp://127.0.0.1:9000", "127.0.0.1:9000"),
        ("unix:/run/ollama-default.sock", "unix:/run/ollama-default.sock"),
        ("unix:///run/ollama-default.sock", "unix:///run/ollama-default.sock"),
    ],
)
def test_an_address_without_a_port_gets_ours(address: str, normalised: str) -> None:
    assert normalise_address(address) == normalised


def test_an_open_file_descriptor_is_an_address() -> None:
    with socket.socket() as listener:
        assert normalise_address(f"fd://{listener.fileno()}") == f"fd://{listener.fileno()}"


def test_gunicorn_cmd_args_sit_between_our_defaults_and_our_flags(tmp_path: Path) -> None:
    config = tmp_path / "gunicorn.conf.py"
    config.write_text("timeout = 33\nkeepalive = 9\nworkers = 5\n")
    command_line = f"--config {config} --keep-alive 10 --workers 3 --bind 0.0.0.0"
    options = gunicorn_options({"workers": 1}, {"GUNICORN_CMD_ARGS": command_line})
    assert options["timeout"] == 33  # the config file GUNICORN_CMD_ARGS names
    assert options["keepalive"] == 10  # GUNICORN_CMD_ARGS over its config file
    assert options["workers"] == 1  # our flag over GUNICORN_CMD_ARGS
    assert options["bind"] == ["0.0.0.0:8080"]  # our port, not gunicorn's 8000
    assert options["graceful_timeout"] == SERVE_DEFAULTS["graceful_timeout"]
    assert gunicorn_options({}, {})["bind"] == [SERVE_DEFAULTS["bind"]]


def test_serve_has_gunicorn_believe_the_trusted_proxies_and_nobody_else() -> None:
    options = gunicorn_options({}, {})
    # Not even a peer on a unix socket, which gunicorn believes whatever the list.
    assert options["forwarded_allow_ips"] == ""
    assert (options["secure_scheme_headers"], options["forwarder_headers"]) == ({}, "")
    trusting = gunicorn_options({}, {}, trusted_proxies=("10.0.0.0/8", "::1"))
    assert trusting["forwarded_allow_ips"] == "10.0.0.0/8,::1"
    # gunicorn's own, for the peers it believes: X-Forwarded-Proto and SCRIPT_NAME.
    assert "secure_scheme_headers" not in trusting
    assert "forwarder_headers" not in trusting


def test_a_broken_gunicorn_config_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gunicorn.conf.py"
    config.write_text("workers = undefined_name\n")
    assert main(["serve"], environ={"GUNICORN_CMD_ARGS": f"-c {config}"}) == 2
    assert one_line(capsys.readouterr().err) == (
        f"ollama-default: configuration error: gunicorn config file {str(config)!r} (from "
        "GUNICORN_CMD_ARGS) cannot be loaded: name 'undefined_name' is not defined"
    )


SERVER_MISTAKES = [
    pytest.param(["--bind", "127.0.0.1:99999"], {}, "configuration error: --bind "
                 "'127.0.0.1:99999': '99999' is not a port number from 1 to 65535 (give "
                 "HOST:PORT, such as 127.0.0.1:8080)", id="port-out-of-range"),
    pytest.param(["--bind", "localhost:http"], {}, "configuration error: --bind "
                 "'localhost:http': 'http' is not a port number from 1 to 65535 (give "
                 "HOST:PORT, such as 127.0.0.1:8080)", id="port-not-a-number"),
    pytest.param(["--bind", "::1"], {}, "configuration error: --bind '::1': put an IPv6 "
                 "address in brackets, such as [::1]:8080", id="ipv6-without-brackets"),
    pytest.param(["--bind", "fd://987"], {}, "configuration error: --bind 'fd://987': file "
                 "descriptor 987 is not open", id="closed-fd"),
    pytest.param(["--workers", "0"], {}, "configuration error: --workers 0 is not a count: "
                 "give 1 or more", id="no-workers"),
    pytest.param(["--worker-connections", "-5"], {}, "configuration error: "
                 "--worker-connections -5 is not a count: give 1 or more", id="no-connections"),
    pytest.param([], {"GUNICORN_CMD_ARGS": "--workers 0"}, "configuration error: --workers 0 "
                 "is not a count: give 1 or more (set by GUNICORN_CMD_ARGS)",
                 id="no-workers-from-gunicorn-cmd-args"),
    pytest.param([], {"GUNICORN_CMD_ARGS": "--wrokers 2"}, "configuration error: "
                 "GUNICORN_CMD_ARGS: unrecognized arguments: --wrokers",
                 id="gunicorn-cmd-args-typo"),
    pytest.param([], {"GUNICORN_CMD_ARGS": "--bind 127.0.0.1:0"}, "configuration error: "
                 "--bind '127.0.0.1:0': '0' is not a port number from 1 to 65535 (give "
                 "HOST:PORT, such as 127.0.0.1:8080) (set by GUNICORN_CMD_ARGS)",
                 id="port-from-gunicorn-cmd-args"),
    pytest.param([], {"FORWARDED_ALLOW_IPS": "*"}, "configuration error: FORWARDED_ALLOW_IPS "
                 "is gunicorn's; set trusted_proxies (OLLAMA_DEFAULT_TRUSTED_PROXIES, "
                 "--trusted-proxies) instead: serve gives it to gunicorn, and the proxy "
                 "believes the same peers", id="forwarded-allow-ips-variable"),
    pytest.param([], {"GUNICORN_CMD_ARGS": "--forwarded-allow-ips=*"}, "configuration error: "
                 "gunicorn's forwarded_allow_ips: set trusted_proxies "
                 "(OLLAMA_DEFAULT_TRUSTED_PROXIES, --trusted-proxies) instead: serve gives it "
                 "to gunicorn, and the proxy believes the same peers (set by GUNICORN_CMD_ARGS)",
                 id="forwarded-allow-ips-in-gunicorn-cmd-args"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "environ", "message"), SERVER_MISTAKES)
def test_a_server_level_mistake_is_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], environ: dict[str, str], message: str
) -> None:
    assert main(["serve", *argv], environ=environ) == 2
    assert one_line(capsys.readouterr().err) == f"ollama-default: {message}"


def test_a_port_in_use_is_one_line_and_status_1_at_once(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        started = time.monotonic()
        result = subprocess.run(
            [*SERVE, "--bind", address],
            env=child_environment({}),
            capture_output=True,
            text=True,
            timeout=20,
        )
        elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert one_line(result.stderr) == (
        f"ollama-default: cannot listen on {address}: the address is already in use; stop what "
        "listens there, or give another port with --bind"
    )
    assert elapsed < MISTAKE_S


# --------------------------------------------------------------------------------------
# serve, run as users run it


def test_serve_runs_the_proxy_in_front_of_the_upstream(
    upstream: tuple[FakeOllama, str], tmp_path: Path
) -> None:
    fake, url = upstream
    command = [
        *SERVE,
        "--workers",
        "1",
        "--upstream",
        url,
        "--alias",
        "llmodel=aya-expanse:8b-q8_0",
    ]
    server = start_server(command, {}, log_dir=tmp_path)
    try:
        server.wait_until_ready()
        with requests.post(
            f"{server.base_url}/api/generate", json={"prompt": "hi"}, timeout=10
        ) as reply:
            lines = [json.loads(line) for line in reply.iter_lines()]
    finally:
        server.stop()
    assert fake.requests[-1].json["model"] == "aya-expanse:8b-q8_0"
    assert {line["model"] for line in lines} == {"llmodel"}
    stderr = server.stderr()
    assert "Using worker: ollama_default.proxy.gunicorn.GeventWorker" in stderr
    assert "no aliases configured" not in stderr
    # The gevent worker patches ssl after the fork; nothing in the master may hold it first.
    assert "MonkeyPatchWarning" not in stderr
    # The start-up summary, once, from the master; then the request's access line.
    assert stderr.count(f"forwarding to {url} (answering)") == 1
    assert stderr.count("aliases: llmodel -> aya-expanse:8b-q8_0 (default, installed)") == 1
    assert "workers: 1 x gevent (1000 connections)" in stderr
    access = [line for line in stderr.splitlines() if "ollama_default.access:" in line]
    assert any('"POST /api/generate" 200 alias=llmodel model=aya-expanse:8b-q8_0' in line
               for line in access), access  # fmt: skip


@pytest.mark.parametrize(
    ("options", "logged"),
    [
        (["--demo"], "serving the built-in demo backend: as asked (--demo)"),
        (
            ["--fallback-demo"],
            "serving the built-in demo backend: nothing is configured and no Ollama answers at "
            "http://127.0.0.1:11434; start Ollama and restart to forward to it",
        ),
    ],
    ids=["demo", "fallback-demo"],
)
def test_serve_can_front_the_demo_backend_and_says_so(
    tmp_path: Path, options: list[str], logged: str
) -> None:
    if options == ["--fallback-demo"] and is_answering(DEFAULT_UPSTREAM):
        pytest.skip("an Ollama answers at the default address on this machine")
    server = start_server([*SERVE, "--workers", "1", *options], {}, log_dir=tmp_path)
    try:
        server.wait_until_ready()
        reply = requests.post(
            f"{server.base_url}/api/chat", json={"messages": [], "stream": False}, timeout=10
        ).json()
    finally:
        server.stop()
    assert reply["model"] == "llmodel"
    assert server.stderr().count(logged) == 1  # once, from the master


def test_serve_refuses_a_bad_configuration_before_starting(tmp_path: Path) -> None:
    server = start_server(SERVE, {"OLLAMA_DEFAULT_PREFIX": "llm"}, log_dir=tmp_path)
    assert server.wait_for_exit(timeout_s=20) == 2
    assert server.stderr().splitlines() == [
        "ollama-default: configuration error: prefix 'llm' must be a path such as '/llm' "
        "(set by OLLAMA_DEFAULT_PREFIX)"
    ]


def test_serve_honours_gunicorn_cmd_args_below_its_own_flags(tmp_path: Path) -> None:
    settings = {"GUNICORN_CMD_ARGS": "--log-level debug --timeout 7 --workers 3"}
    server = start_server([*SERVE, "--workers", "1"], settings, log_dir=tmp_path)
    try:
        server.wait_until_ready()
    finally:
        server.stop()
    stderr = server.stderr()
    # gunicorn's own account of its configuration, logged at its debug level.
    assert re.search(r"^  timeout: 7$", stderr, re.MULTILINE)
    assert re.search(r"^  workers: 1$", stderr, re.MULTILINE)
    assert stderr.count("Booting worker with pid") == 1


def read_response(client: socket.socket) -> bytes:
    """Read one response with a Content-Length from ``client``, leaving the connection open."""
    data = b""
    for _ in range(100):  # a small response comes in a few reads
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length: *(\d+)", head)
        if length and len(body) >= int(length.group(1)):
            return data
        chunk = client.recv(65536)
        if not chunk:
            break
        data += chunk
    raise AssertionError(f"no whole response: {data!r}")


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_serve_stops_within_seconds_of_starting(tmp_path: Path, stop: str) -> None:
    # A stream under way when SIGTERM comes: 5 records 0.1 s apart.
    fake = FakeOllama(tokens=5, token_delay_s=0.1)
    with serve(fake) as url:
        # Two workers, as by default: the second may still be booting when the stop comes.
        server = start_server([*SERVE, "--workers", "2", "--upstream", url], {}, log_dir=tmp_path)
        try:
            server.wait_until_ready()
            # A client that keeps its connection alive, idle: it must not hold the stop.
            with socket.create_connection(("127.0.0.1", server.port), timeout=STOP_S + 5) as idle:
                idle.sendall(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_response(idle).startswith(b"HTTP/1.1 400 ")
                if stop == "ctrl-c":
                    started = time.monotonic()
                    os.killpg(server.process.pid, signal.SIGINT)  # the terminal's whole group
                    records = []
                else:
                    records, started = stream_across_sigterm(server.base_url, server.process)
                status = server.wait_for_exit(timeout_s=STOP_S + 5)
                elapsed = time.monotonic() - started
                assert idle.recv(65536) == b""  # the server closed the idle connection
        finally:
            server.stop()
    assert status == 0
    assert elapsed < STOP_S
    if stop == "sigterm":  # a graceful stop lets the stream finish
        assert [record["done"] for record in records] == [False] * 5 + [True]
    stderr = server.stderr()
    assert "Traceback" not in stderr
    assert "ollama-default: no aliases configured: requests pass through to" in stderr


def stream_across_sigterm(
    base_url: str, process: subprocess.Popen[bytes]
) -> tuple[list[dict[str, Any]], float]:
    """Start a stream, send SIGTERM after its first record, read the rest; return the
    records and when the signal went."""
    body = {"model": "aya-expanse:8b-q8_0", "prompt": "hi"}
    with requests.post(f"{base_url}/api/generate", json=body, stream=True, timeout=10) as reply:
        lines = reply.iter_lines()
        records = [json.loads(next(lines))]
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        records += [json.loads(line) for line in lines]
    return records, started
