"""Hot reload in one process: the graph swap, refused edits, pools handed over, the switch
plan (what to warm, what to unload), and the records the status page reads."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ollama_default.core.aliases import AliasTable
from ollama_default.core.errors import ConfigError
from ollama_default.core.params import Alias, Params, load_request
from ollama_default.proxy.compose import build_app
from ollama_default.proxy.config import LoadedSettings
from ollama_default.proxy.pool import ConnectionPool
from ollama_default.proxy.reload import (
    Coordinator,
    Reloading,
    SettingsSource,
    changes_between,
    read_published,
    targets_to_unload,
    targets_to_warm,
    watch_default_model,
)
from ollama_default.wsgi import MODEL_KEY

# Never ticks during a test: each test calls check() itself, so nothing waits on a clock.
NEVER_S = 3600.0


def write(path: Path, text: str) -> None:
    """Replace the file as an editor that saves by rename does (a new inode each time)."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def echo_builder(loaded: LoadedSettings, pool: ConnectionPool | None) -> Any:
    """An app that answers with the target its table gives ``llmodel``, in pieces."""
    target = loaded.settings.alias_table["llmodel"].target

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        environ[MODEL_KEY] = target
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([target.encode(), b"|", target.encode()])

    app.pool = pool  # type: ignore[attr-defined]
    return app


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "ollama-default.toml"
    write(path, '[aliases]\nllmodel = "qwen3:4b"\n')
    return path


@pytest.fixture
def reloading(config: Path) -> Iterator[Reloading]:
    app = Reloading(
        echo_builder, SettingsSource({}, config_file=str(config)), poll_interval_s=NEVER_S
    )
    yield app
    app.stop()


def call(app: Any) -> tuple[Iterator[bytes], dict[str, Any]]:
    environ: dict[str, Any] = {"REQUEST_METHOD": "POST", "PATH_INFO": "/api/generate"}
    return iter(app(environ, lambda status, headers: None)), environ


def test_an_edit_swaps_the_graph_and_a_request_keeps_its_own(
    config: Path, reloading: Reloading
) -> None:
    running, _ = call(reloading)
    assert next(running) == b"qwen3:4b"
    write(config, '[aliases]\nllmodel = "qwen3:8b"\n')
    assert reloading.check()
    assert b"".join(call(reloading)[0]) == b"qwen3:8b|qwen3:8b"
    # The request under way finishes with the table it started with.
    assert b"".join(running) == b"|qwen3:4b"
    assert not reloading.check()  # nothing changed since


BROKEN = {
    "bad-toml": ('[aliases\nllmodel = "qwen3:8b"\n', "is not valid TOML"),
    "unknown-key": ('upstreams = "http://x"\n', "unknown key 'upstreams'"),
    "alias-loop": ('[aliases]\nllmodel = "chat"\nchat = "llmodel"\n', "is itself an alias"),
    "bad-params": (
        '[aliases.llmodel]\ntarget = "qwen3:8b"\noverrides = { num_ctx = "big" }\n',
        "overrides.num_ctx",
    ),
    "bad-warm": ('[aliases.llmodel]\ntarget = "qwen3:8b"\nwarm = "yes"\n', "warm must be true"),
}


@pytest.mark.parametrize(("text", "message"), BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_edit_is_refused_in_one_line_and_the_old_table_serves(
    config: Path, reloading: Reloading, caplog: pytest.LogCaptureFixture, text: str, message: str
) -> None:
    write(config, text)
    with caplog.at_level(logging.ERROR, logger="ollama_default"):
        assert not reloading.check()
        assert not reloading.check()  # refused once: not logged again until it changes
    [record] = caplog.records
    assert "reload refused, still serving config version" in record.getMessage()
    assert message in record.getMessage()
    assert "\n" not in record.getMessage()
    assert b"".join(call(reloading)[0]) == b"qwen3:4b|qwen3:4b"
    assert message in reloading.status()["last_error"]["message"]
    write(config, '[aliases]\nllmodel = "qwen3:8b"\n')  # fixed: served, the error cleared
    assert reloading.check()
    assert reloading.status()["last_error"] is None


def test_the_records_say_what_serves_and_where_it_came_from(
    config: Path, reloading: Reloading
) -> None:
    write(config, '[aliases]\nllmodel = { target = "qwen3:8b", warm = true }\n')
    assert reloading.check()
    status = reloading.status()
    assert status["generation"] == 2
    assert status["config_file"] == str(config)
    assert len(status["version"]) == 12 and status["loaded_at"]
    assert status["aliases"] == [
        {"alias": "llmodel", "target": "qwen3:8b", "default": True, "parameters": "",
         "warm": True, "unload_previous": False}
    ]  # fmt: skip
    assert status["sources"]["aliases"] == f"config file {str(config)!r}"
    assert status["sources"]["upstream"] == "default"
    json.dumps(status)  # JSON-ready


def test_the_keep_alive_pool_is_handed_over_while_the_upstream_stays(config: Path) -> None:
    app = Reloading(
        lambda loaded, pool: build_app(loaded.settings, pool=pool),
        SettingsSource({}, config_file=str(config)),
        poll_interval_s=NEVER_S,
    )
    try:
        pool = app._pools._pools[next(iter(app._pools._pools))]  # type: ignore[union-attr]
        write(config, '[aliases]\nllmodel = "qwen3:8b"\n')
        assert app.check()
        assert list(app._pools._pools.values()) == [pool]  # type: ignore[union-attr]
        write(config, 'upstream = "http://127.0.0.1:9"\n[aliases]\nllmodel = "qwen3:8b"\n')
        assert app.check()
        [new] = app._pools._pools.values()  # type: ignore[union-attr]
        assert new is not pool and pool._closed  # the old upstream's sockets close
    finally:
        app.stop()


def test_a_default_model_from_a_config_file_follows_it(config: Path) -> None:
    def ollama(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    app = watch_default_model(ollama, str(config), poll_interval_s=NEVER_S)
    try:
        from werkzeug.test import Client

        client = Client(app)
        assert client.post("/api/show", json={}).get_json()["model"] == "qwen3:4b"
        write(config, '[aliases]\nllmodel = "qwen3:8b"\n')
        assert app.check()
        assert client.post("/api/show", json={}).get_json()["model"] == "qwen3:8b"
    finally:
        app.stop()


# --- The plan of a switch -------------------------------------------------------------------


def table(**aliases: Any) -> AliasTable:
    return AliasTable(aliases, default=next(iter(aliases)))


UNLOAD = {"unload_previous": True}


def test_a_switch_unloads_the_old_target_only_when_no_alias_uses_it() -> None:
    old = table(llmodel={"target": "aya:8b", **UNLOAD}, chat="aya:8b", embed="nomic")
    shared = table(llmodel={"target": "qwen3:8b", **UNLOAD}, chat="aya:8b", embed="nomic")
    changes = changes_between(old, shared)
    assert [(c.alias, c.new.target) for c in changes] == [("llmodel", "qwen3:8b")]
    assert targets_to_unload(changes, shared) == []  # chat still points at aya:8b
    alone = table(llmodel={"target": "qwen3:8b", **UNLOAD}, chat="qwen3:8b", embed="nomic")
    changes = changes_between(old, alone)
    assert [route.target for route in targets_to_unload(changes, alone)] == ["aya:8b"]
    plain = table(llmodel="qwen3:8b", chat="qwen3:8b", embed="nomic")
    assert targets_to_unload(changes_between(old, plain), plain) == []  # nobody asked


def test_a_switch_warms_each_new_target_once_with_the_aliases_load_options() -> None:
    old = table(a="aya:8b", b="aya:8b")
    warm = {"warm": True, "overrides": {"num_ctx": 8192, "keep_alive": -1, "seed": 1}}
    new = table(a={"target": "qwen3:8b", **warm}, b={"target": "qwen3:8b", **warm})
    [route] = targets_to_warm(changes_between(old, new))
    assert load_request(route.target, route.params) == {
        "model": "qwen3:8b", "keep_alive": -1, "options": {"num_ctx": 8192},
    }  # fmt: skip
    assert load_request("aya:8b", route.params, unload=True) == {
        "model": "aya:8b", "keep_alive": 0
    }  # fmt: skip
    assert targets_to_warm(changes_between(new, new)) == []  # nothing moved


@pytest.mark.parametrize(
    ("table_text", "message"),
    [
        ({"target": "x", "warm": 1}, "alias 'a': warm must be true or false, not 1"),
        ({"target": "x", "unload_previous": "no"},
         "alias 'a': unload_previous must be true or false, not \"no\""),
    ],
    ids=["warm", "unload_previous"],
)  # fmt: skip
def test_warm_and_unload_previous_are_booleans(table_text: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Alias.from_table("a", table_text)
    assert str(raised.value) == message
    assert Params.build("a", Alias("x", warm=True)) == Params()  # no request parameter


# --- The coordinator, with a recording client -----------------------------------------------


class RecordingClient:
    def __init__(self, upstream: str) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def load(self, body: dict[str, Any], timeout_s: float) -> str:
        self.calls.append(("load", body))
        return "/api/generate"

    def unload(self, body: dict[str, Any], timeout_s: float = 5) -> str:
        self.calls.append(("unload", body))
        return "/api/generate"


def test_the_coordinator_warms_then_publishes_and_refuses_a_broken_edit(
    config: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = RecordingClient("")
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    published: list[int] = []

    def load(body: dict[str, Any], timeout_s: float) -> str:
        # Warming comes before publishing: the workers still see generation 1.
        published.append(read_published(runtime)["generation"])  # type: ignore[index]
        return RecordingClient.load(client, body, timeout_s)

    client.load = load  # type: ignore[method-assign]
    coordinator = Coordinator(
        SettingsSource({}, config_file=str(config)),
        runtime,
        live_workers=list,
        poll_interval_s=NEVER_S,
        client=lambda upstream: client,  # type: ignore[arg-type,return-value]
    )
    coordinator.start()
    try:
        write(config, '[aliases]\nllmodel = { target = "qwen3:8b", warm = true }\n')
        assert coordinator.check()
        assert client.calls == [("load", {"model": "qwen3:8b"})] and published == [1]
        assert read_published(runtime)["generation"] == 2  # type: ignore[index]
        [switch] = coordinator.records.snapshot()["switches"]
        assert switch["changes"] == [{"alias": "llmodel", "from": "qwen3:4b", "to": "qwen3:8b"}]
        steps = [(step["step"], step["outcome"]) for step in switch["steps"]]
        assert steps == [("warm", "ok"), ("flip", "ok")]
        write(config, "[aliases\n")
        with caplog.at_level(logging.ERROR, logger="ollama_default"):
            assert not coordinator.check()
        assert "reload refused" in caplog.text
        assert read_published(runtime)["generation"] == 2  # type: ignore[index]
        state = json.loads((runtime / "state.json").read_text())
        assert "not valid TOML" in state["last_error"]["message"]
    finally:
        coordinator.stop()


def test_a_poke_publishes_an_edit_before_it_returns(config: Path, tmp_path: Path) -> None:
    """gunicorn's SIGHUP pokes the coordinator and waits, so the workers it starts next
    boot with the file as it is now, not a poll later."""
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    coordinator = Coordinator(
        SettingsSource({}, config_file=str(config)),
        runtime,
        live_workers=list,
        poll_interval_s=NEVER_S,  # only a poke makes it look
    )
    coordinator.start()
    try:
        write(config, '[aliases]\nllmodel = "qwen3:8b"\n')
        assert read_published(runtime)["generation"] == 1  # type: ignore[index]
        coordinator.poke(wait_s=10)
        published = read_published(runtime)
        assert published is not None and published["generation"] == 2
        assert 'llmodel = "qwen3:8b"' in published["config_text"]
    finally:
        coordinator.stop()
