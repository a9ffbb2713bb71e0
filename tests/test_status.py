"""The status endpoint (``/-/status``), its HTML page and ``ollama-default status``.

The document is checked field by field against a real gunicorn proxy in front of the fake
Ollama with a model loaded through it; the access rule, the ``/-/`` prefix and the refusal
counts in process (webtest, with ``REMOTE_ADDR`` as a server would set it); the page in
headless Chromium at a desktop's and a phone's width; the command against a live proxy and
against nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import re
import subprocess
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from fake_ollama import FakeOllama, serve
from gunicorn_process import GunicornProcess, run_gunicorn
from webtest import TestApp

from ollama_default import __version__
from ollama_default.core.names import name_key
from ollama_default.ops.status import (
    ConfigView,
    ReloadRecord,
    StatusApp,
    StatusMount,
    StatusRecorder,
    SwitchRecord,
    SwitchStep,
    UpstreamView,
    client_address,
    format_expiry,
    render_html,
    status_document,
)
from ollama_default.proxy.cli import main, serve_url
from ollama_default.proxy.compose import build_app
from ollama_default.proxy.config import Settings
from ollama_default.proxy.upstream_models import UpstreamModels
from ollama_default.wsgi import REFUSED_KEY

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
LONG_TARGET = "hf.co/bartowski/Qwen2.5-Coder-32B-Instruct-GGUF:Q4_K_M"
CONFIG = f"""\
# The aliases clients use.
default = "llmodel"
default_names = ["default"]

[aliases]
llmodel = {{ target = "aya-expanse:8b-q8_0", defaults = {{ temperature = 0.2 }} }}
embed = "nomic-embed-text"
coder = "{LONG_TARGET}"
"""


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --------------------------------------------------------------------------------------
# A real proxy


class Live:
    def __init__(
        self, proxy: GunicornProcess, fake: FakeOllama, upstream: str, config: Path, started: float
    ) -> None:
        self.proxy, self.fake, self.upstream, self.config = proxy, fake, upstream, config
        self.started = started


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """gunicorn with a known config in front of the fake Ollama, one model loaded through it."""
    tmp_path = tmp_path_factory.mktemp("status")
    config = tmp_path / "ollama-default.toml"
    config.write_text(CONFIG)
    fake = FakeOllama()
    with serve(fake) as upstream:
        started = time.time()
        settings = {"OLLAMA_DEFAULT_CONFIG": str(config), "OLLAMA_DEFAULT_UPSTREAM": upstream}
        with run_gunicorn(settings, log_dir=tmp_path) as proxy:
            # Loaded through the proxy before the status is first asked (it caches 2 s).
            body = {"model": "llmodel", "prompt": "", "keep_alive": "10m"}
            reply = requests.post(f"{proxy.base_url}/api/generate", json=body, timeout=10)
            assert reply.status_code == 200, reply.text
            yield Live(proxy, fake, upstream, config, started)


def test_the_status_document_field_by_field(live: Live) -> None:
    reply = requests.get(f"{live.proxy.base_url}/-/status", timeout=10)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.headers["Cache-Control"] == "no-store"
    document = reply.json()
    now = time.time()
    assert document["service"] == "ollama-default"
    assert document["version"] == __version__

    worker = document["worker"]
    assert worker["pid"] != live.proxy.process.pid  # a worker's, not the master's
    parent = re.search(r"PPid:\s+(\d+)", Path(f"/proc/{worker['pid']}/status").read_text())
    assert parent is not None and int(parent[1]) == live.proxy.process.pid
    assert live.started <= parse_time(worker["started_at"]).timestamp() <= now
    assert 0 <= worker["uptime_s"] <= now - live.started + 1
    assert abs(parse_time(document["generated_at"]).timestamp() - now) < 5

    config = document["config"]
    assert config["path"] == str(live.config)
    assert config["version"] == hashlib.sha256(live.config.read_bytes()).hexdigest()[:12]
    modified = parse_time(config["modified_at"]).timestamp()
    assert abs(modified - live.config.stat().st_mtime) < 0.002  # to the millisecond
    assert live.started <= parse_time(config["loaded_at"]).timestamp() <= now
    assert document["last_reload_error"] is None
    assert document["last_switch"] is None

    source = f"config file {str(live.config)!r}"
    assert document["default"] == "llmodel"
    assert document["default_source"] == source
    assert document["default_names"] == ["default"]
    assert document["hide_real_models"] is False
    loaded = {row["name"]: row for row in requests.get(f"{live.upstream}/api/ps").json()["models"]}
    aya = loaded["aya-expanse:8b-q8_0"]
    assert document["aliases"] == [
        {
            "alias": "llmodel",
            "target": "aya-expanse:8b-q8_0",
            "default": True,
            "parameters": "defaults: temperature=0.2",
            "source": source,
            "upstream": {
                "installed": True,
                "loaded": True,
                "size_vram": aya["size_vram"],
                "expires_at": aya["expires_at"],
            },
        },
        {
            "alias": "embed",
            "target": "nomic-embed-text",
            "default": False,
            "parameters": None,
            "source": source,
            "upstream": {"installed": True, "loaded": False, "size_vram": None,
                         "expires_at": None},
        },
        {
            "alias": "coder",
            "target": LONG_TARGET,
            "default": False,
            "parameters": None,
            "source": source,
            "upstream": {"installed": False, "loaded": False, "size_vram": None,
                         "expires_at": None},
        },
    ]  # fmt: skip
    assert aya["size_vram"] > 0
    # The load asked for ten minutes: Ollama's expiry says so.
    expires = datetime.fromisoformat(aya["expires_at"][:26] + aya["expires_at"][-6:])
    assert 590 < expires.timestamp() - live.started < 610

    settings = {row["key"]: row for row in document["settings"]}
    assert settings["upstream"] == {
        "key": "upstream", "value": live.upstream, "source": "OLLAMA_DEFAULT_UPSTREAM",
    }  # fmt: skip
    assert settings["status_networks"] == {
        "key": "status_networks", "value": ["127.0.0.0/8", "::1"], "source": "default",
    }  # fmt: skip
    assert "aliases" not in settings and "default" not in settings  # shown apart

    upstream = document["upstream"]
    assert (upstream["url"], upstream["reachable"], upstream["error"]) == (
        live.upstream, True, None,
    )  # fmt: skip
    assert document["refused"] == {
        "scope": "worker", "counts": {"auth": 0, "management": 0, "limit": 0},
    }  # fmt: skip


def test_the_reserved_prefix_is_never_forwarded(live: Live) -> None:
    asked = len(live.fake.requests)
    reply = requests.get(f"{live.proxy.base_url}/-/healthy", timeout=10)
    assert reply.status_code == 404
    assert reply.json() == {"error": "/-/healthy is not an endpoint of this proxy"}
    assert not any(r.path.startswith("/-/") for r in live.fake.requests[asked:])


def test_the_command_prints_the_status_of_a_live_proxy(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--url", live.proxy.base_url], environ={}) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(
        f"ollama-default {__version__} at {live.proxy.base_url}/-/status: worker "
    )
    version = hashlib.sha256(live.config.read_bytes()).hexdigest()[:12]
    assert lines[1] == f"config file {live.config}, version {version}"
    assert re.fullmatch(
        r"  modified \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, loaded \d{4}-.* UTC", lines[2]
    )
    assert lines[3] == f"upstream {live.upstream}: answering"
    assert lines[4] == ""
    table = [re.split(r"\s{2,}", line.strip()) for line in lines[5:9]]
    assert table[0] == [
        "alias", "target", "installed", "loaded", "VRAM", "expires", "parameters",
    ]  # fmt: skip
    assert table[1][:4] == ["llmodel (default)", "aya-expanse:8b-q8_0", "yes", "yes"]
    assert re.fullmatch(r"\d+\.\d (MiB|GiB)", table[1][4])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (UTC|[-+]\d\d:\d\d)", table[1][5])
    assert table[1][6] == "defaults: temperature=0.2"
    assert table[2] == ["embed", "nomic-embed-text", "yes", "no", "-", "-", "none"]
    assert table[3] == ["coder", LONG_TARGET, "no", "no", "-", "-", "none"]
    assert lines[9] == f"aliases set by config file {str(live.config)!r}"
    assert lines[10] == "default names: default; hide real models: no"
    assert lines[12] == "last switch: none since the proxy started"
    assert lines[-1] == "refused requests (this worker): auth 0, management 0, limit 0"


def test_the_command_prints_the_document_itself_with_json(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--json", "--url", live.proxy.base_url + "/"], environ={}) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["config"]["path"] == str(live.config)
    assert [row["alias"] for row in document["aliases"]] == ["llmodel", "embed", "coder"]


# --------------------------------------------------------------------------------------
# The page in a browser


def chromium(*arguments: str, profile: Path, width: int, timeout_s: float = 60) -> str:
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", f"--window-size={width},900", *arguments,
    ]  # fmt: skip
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout_s, check=True
    ).stdout


#: Added before </body> of a saved copy: what is wider than its box, into <body>'s data.
LAYOUT_PROBE = """<script>
window.addEventListener("load", () => {
  const spills = (box) => box.scrollWidth > box.clientWidth + 1;
  const boxes = [...document.querySelectorAll("main, table, tr, td, th, dd, dt, p, h1, h2, div")];
  document.body.dataset.layout = JSON.stringify({
    page: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    spilling: boxes.filter(spills).map((box) => box.tagName + ": " + box.textContent.slice(0, 60)),
    aliases: [...document.querySelectorAll("table")][0].innerText,
  });
});
</script>"""


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)"
)
def test_the_page_in_a_browser_shows_the_aliases_and_fits_a_phone_and_a_desktop(
    live: Live, tmp_path: Path
) -> None:
    # The browser asks itself, with its own Accept: the page, not the JSON.
    dom = chromium("--dump-dom", f"{live.proxy.base_url}/-/status", profile=tmp_path / "live",
                   width=1280)  # fmt: skip
    assert "<h1>ollama-default status</h1>" in dom
    for alias, target in [("llmodel", "aya-expanse:8b-q8_0"), ("coder", LONG_TARGET)]:
        assert f'<td data-label="alias">{alias}' in dom
        assert f'<td data-label="target"><code>{html.escape(target)}</code></td>' in dom
    page = requests.get(
        f"{live.proxy.base_url}/-/status", headers={"Accept": BROWSER_ACCEPT}, timeout=10
    ).text
    copy = tmp_path / "status.html"
    copy.write_text(page.replace("</body>", LAYOUT_PROBE + "</body>"))
    for width in (1280, 390):
        dom = chromium(
            "--virtual-time-budget=3000", "--dump-dom", copy.as_uri(),
            profile=tmp_path / f"copy-{width}", width=width,
        )  # fmt: skip
        found = re.search(r'data-layout="([^"]*)"', dom)
        assert found, dom[-300:]
        report = json.loads(html.unescape(found[1]))
        assert report["page"] <= 0, (width, report)
        assert report["spilling"] == [], (width, report)
        assert "llmodel" in report["aliases"] and LONG_TARGET in report["aliases"]


# --------------------------------------------------------------------------------------
# In process: who may read it, what it counts


def refusing_backend(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Refuses ``/refuse/<reason>`` as a refusing layer does; answers anything else."""
    path = environ.get("PATH_INFO", "")
    if path.startswith("/refuse/"):
        environ[REFUSED_KEY] = path.removeprefix("/refuse/")
        start_response("403 Forbidden", [("Content-Type", "application/json")])
        return [b'{"error":"refused"}']
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b"{}"]


def in_process(**settings: Any) -> TestApp:
    settings.setdefault("aliases", {"llmodel": "aya-expanse:8b-q8_0"})
    settings.setdefault("upstream", "http://127.0.0.1:9")  # never asked: port 9 is discard
    app = build_app(Settings(**settings), refusing_backend)
    return TestApp(app, lint=True)


@pytest.mark.parametrize(
    ("remote", "forwarded_for", "settings", "allowed"),
    [
        ("127.0.0.1", None, {}, True),
        ("127.8.9.10", None, {}, True),
        ("::1", None, {}, True),
        ("::ffff:127.0.0.1", None, {}, True),
        ("192.168.1.20", None, {}, False),
        ("", None, {}, False),
        ("192.168.1.20", None, {"status_networks": ("192.168.1.0/24",)}, True),
        ("127.0.0.1", None, {"status_networks": ("192.168.1.0/24",)}, False),
        # Not a trusted proxy: its X-Forwarded-For is not believed either way.
        ("192.168.1.20", "127.0.0.1", {}, False),
        ("127.0.0.1", "203.0.113.9", {}, True),
        # A trusted proxy: the client is the last address in the chain it did not add.
        ("10.0.0.2", "127.0.0.1", {"trusted_proxies": ("10.0.0.0/8",)}, True),
        ("10.0.0.2", "203.0.113.9", {"trusted_proxies": ("10.0.0.0/8",)}, False),
        ("10.0.0.2", "127.0.0.1, 203.0.113.9", {"trusted_proxies": ("10.0.0.0/8",)}, False),
        ("10.0.0.2", "203.0.113.9, 127.0.0.1", {"trusted_proxies": ("10.0.0.0/8",)}, True),
        ("10.0.0.2", "127.0.0.1, 10.0.0.3", {"trusted_proxies": ("10.0.0.0/8",)}, True),
        ("10.0.0.2", "garbage", {"trusted_proxies": ("10.0.0.0/8",)}, False),
    ],
    ids=[
        "loopback", "loopback-network", "ipv6-loopback", "ipv4-mapped-loopback", "lan",
        "unix-socket", "allowed-network", "loopback-not-listed", "untrusted-forwarded-for",
        "untrusted-forwarded-for-ignored", "trusted-local-client", "trusted-remote-client",
        "spoofed-left-of-chain", "chain-ends-local", "two-trusted-hops", "unreadable-chain",
    ],
)  # fmt: skip
def test_only_clients_in_status_networks_read_the_status(
    remote: str, forwarded_for: str | None, settings: dict[str, Any], allowed: bool
) -> None:
    app = in_process(**settings)
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    reply = app.get(
        "/-/status", headers=headers, extra_environ={"REMOTE_ADDR": remote}, expect_errors=True
    )
    if allowed:
        assert reply.status_int == 200
        assert reply.json["aliases"][0]["alias"] == "llmodel"
    else:
        assert reply.status_int == 403
        shown = remote or "a unix socket"
        assert reply.json == {"error": f"the status is not served to {shown}: see status_networks"}


def test_the_status_sits_under_the_prefix_and_answers_get_and_head_only() -> None:
    app = in_process(prefix="/llm")
    local = {"REMOTE_ADDR": "127.0.0.1"}
    assert app.get("/llm/-/status", extra_environ=local).json["settings"][2] == {
        "key": "prefix", "value": "/llm", "source": "default",
    }  # fmt: skip
    assert (
        app.get("/-/status", extra_environ=local, status=404)
        .json["error"]
        .endswith("is not under this proxy's prefix")
    )
    head = app.head("/llm/-/status", extra_environ=local)
    assert head.body == b"" and int(head.headers["Content-Length"]) > 100
    refused = app.post("/llm/-/status", extra_environ=local, status=405)
    assert refused.headers["Allow"] == "GET, HEAD"
    assert refused.json == {"error": "method not allowed"}


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        (BROWSER_ACCEPT, "text/html"),
        ("text/html;q=0.5, application/json;q=0.9", "application/json"),
        ("text/*", "text/html"),
    ],
    ids=["none", "anything", "json", "browser", "json-preferred", "any-text"],
)
def test_the_page_is_for_clients_that_prefer_html(accept: str | None, media_type: str) -> None:
    headers = {"Accept": accept} if accept else {}
    reply = in_process().get("/-/status", headers=headers, extra_environ={"REMOTE_ADDR": "::1"})
    assert reply.content_type == media_type
    assert reply.headers["Vary"] == "Accept"


def test_refused_requests_are_counted_by_reason() -> None:
    app = in_process()
    for reason in ["auth", "auth", "limit", "management", "auth"]:
        app.get(f"/refuse/{reason}", status=403)
    app.get("/api/tags")  # not refused: not counted
    counts = app.get("/-/status", extra_environ={"REMOTE_ADDR": "127.0.0.1"}).json["refused"]
    assert counts == {"scope": "worker", "counts": {"auth": 3, "management": 1, "limit": 1}}


def test_the_page_escapes_everything_it_shows() -> None:
    recorder = StatusRecorder(ReloadRecord(0.0, "/etc/<b>odd</b>.toml", "abc"))
    recorder.record_reload_error("<script>alert(1)</script> & more")
    recorder.record_switch_step("llmodel", "a<b", "c&d", "warm", started_at=1.0, ended_at=2.5)
    view = ConfigView.from_table(
        Settings(aliases={"llmodel": "aya-expanse:8b-q8_0"}).alias_table, source="x'<y>"
    )
    page = render_html(status_document(view, recorder, None, now=10.0))
    assert "<script>" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    assert "/etc/&lt;b&gt;odd&lt;/b&gt;.toml" in page
    assert "<code>a&lt;b</code> → <code>c&amp;d</code>" in page
    assert "x&#x27;&lt;y&gt;" in page


def test_a_switch_is_recorded_step_by_step() -> None:
    clock = iter([100.0, 200.0]).__next__
    recorder = StatusRecorder(clock=clock)
    recorder.record_switch_step("llmodel", "old:1b", "new:8b", "warm", started_at=101.0)
    recorder.record_switch_step(
        "llmodel", "old:1b", "new:8b", "warm", started_at=101.0, ended_at=104.25
    )
    recorder.record_switch_step(
        "llmodel", "old:1b", "new:8b", "unload", started_at=105.0, ended_at=105.5,
        outcome="skipped: another alias uses old:1b",
    )  # fmt: skip
    view = ConfigView(())
    switch = status_document(view, recorder, None, now=110.0)["last_switch"]
    assert switch == {
        "alias": "llmodel",
        "old": "old:1b",
        "new": "new:8b",
        "steps": [
            {"name": "warm", "started_at": "1970-01-01T00:01:41.000Z",
             "ended_at": "1970-01-01T00:01:44.250Z", "duration_s": 3.25, "outcome": "ok"},
            {"name": "unload", "started_at": "1970-01-01T00:01:45.000Z",
             "ended_at": "1970-01-01T00:01:45.500Z", "duration_s": 0.5,
             "outcome": "skipped: another alias uses old:1b"},
        ],
    }  # fmt: skip
    # Another switch starts a new record; a good reload clears the last error.
    recorder.record_reload_error("bad TOML")
    assert status_document(view, recorder, None, now=110.0)["last_reload_error"] == {
        "error": "bad TOML", "at": "1970-01-01T00:03:20.000Z", "path": None,
    }  # fmt: skip
    recorder.record_switch_step("embed", None, "nomic", "flip", started_at=120.0, ended_at=120.0)
    recorder.record_reload(ReloadRecord(121.0, "/x.toml", "0123456789ab", 119.0))
    document = status_document(view, recorder, None, now=130.0)
    assert document["last_switch"]["alias"] == "embed"
    assert [step["name"] for step in document["last_switch"]["steps"]] == ["flip"]
    assert document["last_reload_error"] is None
    assert document["config"] == {
        "path": "/x.toml", "version": "0123456789ab",
        "modified_at": "1970-01-01T00:01:59.000Z", "loaded_at": "1970-01-01T00:02:01.000Z",
    }  # fmt: skip


def test_with_the_upstream_down_the_status_says_so_and_still_answers() -> None:
    with serve(FakeOllama()) as url:
        pass  # its port is closed now
    reply = in_process(upstream=url).get("/-/status", extra_environ={"REMOTE_ADDR": "127.0.0.1"})
    document = reply.json
    assert document["upstream"]["reachable"] is False
    assert document["upstream"]["error"] == "Connection refused"
    assert document["aliases"][0]["upstream"] == {
        "installed": None, "loaded": None, "size_vram": None, "expires_at": None,
    }  # fmt: skip
    assert "is not answering</strong>: Connection refused" in render_html(document)


def test_the_upstream_is_asked_at_most_once_per_cache_period() -> None:
    fake = FakeOllama()
    now = [0.0]
    with serve(fake) as url:
        models = UpstreamModels(url, cache_s=2.0, clock=lambda: now[0])
        first = models()
        for _ in range(5):
            assert models() is first
        now[0] = 2.5
        second = models()
    assert second is not first
    asked = [request.path for request in fake.requests]
    assert asked == ["/api/tags", "/api/ps", "/api/tags", "/api/ps"]
    assert first.installed is not None and name_key("aya-expanse:8b-q8_0") in first.installed
    assert first.loaded == {}


def test_an_upstream_that_is_not_ollama_is_reachable_but_says_what_is_wrong() -> None:
    def not_ollama(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<html>hello</html>"]

    with serve(not_ollama) as url:
        view = UpstreamModels(url)()
    assert (view.reachable, view.installed) == (True, None)
    assert view.error == "answered /api/tags with something that is not a list of models"


def test_default_model_users_mount_the_status_around_their_app() -> None:
    from ollama_default import DefaultModel

    app = DefaultModel(refusing_backend, alias="llmodel", target="qwen3:4b")
    upstream = UpstreamView("http://ollama:11434", True, None, 0.0, frozenset(), {})
    status = StatusApp(
        lambda: ConfigView.from_table(app.aliases), StatusRecorder(), upstream=lambda: upstream
    )
    client = TestApp(StatusMount(app, status), lint=True)
    document = client.get("/-/status", extra_environ={"REMOTE_ADDR": "127.0.0.1"}).json
    assert [(row["alias"], row["target"], row["source"]) for row in document["aliases"]] == [
        ("llmodel", "qwen3:4b", "code")
    ]
    assert document["aliases"][0]["upstream"]["installed"] is False
    assert document["settings"] == []


def test_client_address_without_trusted_proxies_is_the_peer() -> None:
    address = client_address({"REMOTE_ADDR": "10.1.1.1", "HTTP_X_FORWARDED_FOR": "127.0.0.1"})
    assert str(address) == "10.1.1.1"


# --------------------------------------------------------------------------------------
# The command, against what is not a proxy


def closed_port_url() -> str:
    with serve(FakeOllama()) as url:
        pass
    return url


def test_the_command_against_nothing_is_one_line_and_status_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = closed_port_url()
    assert main(["status", "--url", url], environ={}) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"ollama-default: nothing answers at {url}/-/status (connection refused): is the "
        "proxy running? Give its address with --url\n"
    )


def test_the_command_against_something_else_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    with serve(FakeOllama()) as url:
        assert main(["status", "--url", url], environ={}) == 1
    assert capsys.readouterr().err == (
        f"ollama-default: {url}/-/status did not answer with a status (404 Not Found): is it "
        "ollama-default, and does --url include its prefix?\n"
    )


def test_the_command_refused_names_the_setting(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(upstream="http://127.0.0.1:9", status_networks=("10.0.0.0/8",))
    with serve(build_app(settings, refusing_backend)) as url:
        assert main(["status", "--url", url], environ={}) == 1
    assert capsys.readouterr().err == (
        f"ollama-default: {url}/-/status refused: the status is not served to 127.0.0.1: see "
        "status_networks (the proxy's status_networks setting says which clients may read "
        "it)\n"
    )


@pytest.mark.parametrize(
    ("cmd_args", "url"),
    [
        ("", "http://127.0.0.1:8080"),
        ("--bind 0.0.0.0:9090", "http://127.0.0.1:9090"),
        ("--bind [::]:9090", "http://[::1]:9090"),
        ("--bind 192.0.2.7:81", "http://192.0.2.7:81"),
        ("--bind unix:/run/ollama-default.sock", None),
    ],
    ids=["default", "all-interfaces", "all-ipv6", "one-address", "unix-socket"],
)
def test_the_command_finds_the_proxy_where_serve_listens(cmd_args: str, url: str | None) -> None:
    assert serve_url({"GUNICORN_CMD_ARGS": cmd_args} if cmd_args else {}) == url


def test_the_command_uses_the_prefix_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('prefix = "/llm"\n')
    url = closed_port_url()
    port = url.rpartition(":")[2]
    environ = {"GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port}"}
    assert main(["status", "--config", str(config)], environ=environ) == 1
    assert f"nothing answers at {url}/llm/-/status " in capsys.readouterr().err
    assert main(["status", "--url", "localhost:8080"], environ={}) == 2
    assert capsys.readouterr().err == (
        "ollama-default: --url 'localhost:8080' is not an http:// or https:// URL\n"
    )


@pytest.mark.parametrize(
    ("expires_at", "shown"),
    [
        ("2025-05-04T17:42:44.706015396-07:00", "2025-05-04 17:42:44 -07:00"),
        ("2025-05-04T17:42:44.706015396Z", "2025-05-04 17:42:44 UTC"),
        ("2318-08-15T05:50:00.123456789+02:00", "never"),  # keep_alive -1: now + MaxInt64 ns
        (None, None),
    ],
    ids=["offset", "utc", "forever", "unknown"],
)
def test_ollamas_expiry_reads_to_the_second(expires_at: str | None, shown: str | None) -> None:
    assert format_expiry(expires_at) == shown


def test_a_switch_record_survives_json_for_another_process() -> None:
    record = SwitchRecord("llmodel", None, "qwen3:8b", (SwitchStep("warm", 1.0, 2.0, "ok"),))
    assert SwitchRecord.from_dict(json.loads(json.dumps(dataclasses.asdict(record)))) == record
