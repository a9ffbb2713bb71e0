"""The status endpoint: what the running proxy uses, and what the upstream has of it.

``GET /-/status`` answers a JSON document (:func:`status_document`), or a small HTML page
rendered here (no JavaScript) for a client whose ``Accept`` prefers ``text/html``: the
alias table in use and where each setting came from, the config file's version and load
time, the last reload error, each target's state upstream (installed, loaded, VRAM, expiry),
the last switch with its steps, the requests refused by reason, and the worker's version,
pid and uptime. ``/-/`` is a reserved prefix, as Prometheus reserves it for ``/-/healthy``:
nothing under it is forwarded upstream, and paths there other than ours get 404.

The page names the real models behind the aliases, so it is served only to clients in
``networks`` (loopback by default); others get 403 in Ollama's error shape. The client is
``REMOTE_ADDR``, or, when that peer is a trusted proxy, the last address its
``X-Forwarded-For`` names that is not itself a trusted proxy.

What changes while the process runs (reloads, switches, refusals) is held by a
:class:`StatusRecorder`, which outlives any one app graph: a hot reload builds a new
:class:`StatusApp` with the new table and hands it the same recorder.

Around one's own app::

    from ollama_default import DefaultModel
    from ollama_default.ops.status import ConfigView, StatusApp, StatusMount, StatusRecorder

    app = DefaultModel(backend, mapping={"llmodel": "qwen3:4b"})
    status = StatusApp(ConfigView.from_table(app.aliases), StatusRecorder())
    app = StatusMount(app, status)  # /-/status, loopback clients only
"""

from __future__ import annotations

import html
import ipaddress
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from .. import __version__
from ..core.aliases import AliasTable
from ..core.dialects import Dialect
from ..core.errors import ConfigError, RequestError
from ..core.names import name_key
from ..wsgi import REFUSED_KEY, respond_error, status_line

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "LOOPBACK_NETWORKS",
    "REFUSAL_REASONS",
    "RESERVED_PREFIX",
    "STATUS_PATH",
    "AliasView",
    "ConfigView",
    "LoadedModel",
    "ReloadError",
    "ReloadRecord",
    "SettingView",
    "StatusApp",
    "StatusMount",
    "StatusRecorder",
    "StatusSource",
    "SwitchRecord",
    "SwitchStep",
    "UpstreamView",
    "client_address",
    "render_html",
    "status_document",
]

#: The prefix reserved for the proxy's own endpoints: never forwarded upstream.
RESERVED_PREFIX = "/-/"
STATUS_PATH = "/-/status"
#: Who may read the status by default: this machine only.
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1")
#: The reasons a refusing layer leaves under :data:`~ollama_default.wsgi.REFUSED_KEY`.
REFUSAL_REASONS = ("auth", "management", "limit")


# --------------------------------------------------------------------------------------
# What the status shows


@dataclass(frozen=True)
class AliasView:
    """One alias of the table in use."""

    alias: str
    target: str
    #: Its parameters in one line (:meth:`~ollama_default.core.params.Params.describe`).
    parameters: str = ""
    #: Where the alias was set: ``config file '/etc/x.toml'``, ``--alias``, ``code``.
    source: str = "code"


@dataclass(frozen=True)
class SettingView:
    """One setting in use, its value as JSON shows it, and where it came from."""

    key: str
    value: Any
    source: str


@dataclass(frozen=True)
class ConfigView:
    """The alias table and settings one app graph was built with."""

    aliases: tuple[AliasView, ...]
    default: str | None = None
    #: Where the default was set (the aliases' source, for a single alias).
    default_source: str = "code"
    default_names: tuple[str, ...] = ()
    hide_real_models: bool = False
    #: Every other setting (the proxy's; empty around one's own app).
    settings: tuple[SettingView, ...] = ()

    @classmethod
    def from_table(
        cls,
        table: AliasTable,
        *,
        default_names: Sequence[str] = (),
        hide_real_models: bool = False,
        source: str = "code",
        default_source: str | None = None,
        settings: Sequence[SettingView] = (),
    ) -> ConfigView:
        """The view of an :class:`~ollama_default.AliasTable` (``DefaultModel.aliases``).

        :param source: where the aliases were set, for every alias.
        """
        aliases = tuple(
            AliasView(alias, route.target, route.params.describe(), source)
            for alias, route in table.items()
        )
        default = table.default.alias if table.default is not None else None
        return cls(
            aliases,
            default,
            source if default_source is None else default_source,
            tuple(default_names),
            hide_real_models,
            tuple(settings),
        )


@dataclass(frozen=True)
class ReloadRecord:
    """A successful load of the configuration: the start-up load, then each hot reload."""

    #: When it was loaded (seconds since the epoch).
    loaded_at: float
    #: The config file, or None when the settings came from elsewhere.
    path: str | None = None
    #: A short hash of the file's bytes (the first 12 hex digits of its SHA-256).
    version: str | None = None
    #: The file's modification time (seconds since the epoch).
    modified_at: float | None = None


@dataclass(frozen=True)
class ReloadError:
    """A reload refused (bad TOML, unknown key, an alias loop): the previous table serves."""

    error: str
    at: float
    path: str | None = None


@dataclass(frozen=True)
class SwitchStep:
    """One step of a switch: ``warm``, ``flip``, ``drain``, ``unload``..."""

    name: str
    started_at: float
    #: None while it runs.
    ended_at: float | None = None
    #: ``ok``, ``running``, ``skipped: another alias uses it``, ``failed: ...``.
    outcome: str = "ok"


@dataclass(frozen=True)
class SwitchRecord:
    """The last switch of an alias from one target to another, step by step."""

    alias: str
    old: str | None
    new: str
    steps: tuple[SwitchStep, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SwitchRecord:
        """The record ``dataclasses.asdict`` made (kept as JSON by the process that switched,
        for the workers that did not).

        :raises KeyError, TypeError: for data of another shape.
        """
        steps = tuple(SwitchStep(**step) for step in data["steps"])
        return cls(data["alias"], data["old"], data["new"], steps)


@dataclass(frozen=True)
class LoadedModel:
    """A model the upstream has in memory (``/api/ps``)."""

    size_vram: int | None = None
    #: As Ollama writes it (RFC 3339, its local time zone).
    expires_at: str | None = None


@dataclass(frozen=True)
class UpstreamView:
    """What the upstream said of its models (``/api/tags``, ``/api/ps``), keyed by
    :func:`~ollama_default.core.names.name_key`; None where it did not say."""

    url: str | None = None
    reachable: bool | None = None
    error: str | None = None
    checked_at: float | None = None
    installed: frozenset[str] | None = None
    loaded: Mapping[str, LoadedModel] | None = None


class StatusSource(Protocol):
    """What :class:`StatusApp` reads of the process's history (a :class:`StatusRecorder`)."""

    started_at: float

    def snapshot(self) -> Snapshot: ...


@dataclass(frozen=True)
class Snapshot:
    """The recorder's state at one moment."""

    reload: ReloadRecord
    reload_error: ReloadError | None
    last_switch: SwitchRecord | None
    refused: Mapping[str, int] = field(default_factory=dict)


class StatusRecorder:
    """What happens while the process runs: loads, reload errors, switches, refusals.

    One per process, shared by every app graph it builds (a hot reload hands it on), safe
    between threads and greenlets (a lock held for no I/O). The counts are this worker's:
    each gunicorn worker has its own recorder.

    :param start: the start-up load (by default: now, no file).
    :param clock: seconds since the epoch (a test's clock).
    """

    def __init__(
        self, start: ReloadRecord | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.clock = clock
        self.started_at = clock()
        self._lock = threading.Lock()
        self._reload = start if start is not None else ReloadRecord(self.started_at)
        self._reload_error: ReloadError | None = None
        self._switch: SwitchRecord | None = None
        self._refused = dict.fromkeys(REFUSAL_REASONS, 0)

    def record_reload(self, record: ReloadRecord) -> None:
        """A load succeeded: its table now serves, and the last reload error is over."""
        with self._lock:
            self._reload, self._reload_error = record, None

    def record_reload_error(
        self, error: str, *, at: float | None = None, path: str | None = None
    ) -> None:
        """A reload was refused; the previous table keeps serving."""
        with self._lock:
            self._reload_error = ReloadError(error, self.clock() if at is None else at, path)

    def record_switch_step(
        self,
        alias: str,
        old: str | None,
        new: str,
        name: str,
        *,
        started_at: float,
        ended_at: float | None = None,
        outcome: str = "ok",
    ) -> None:
        """Record a step of the switch of ``alias`` from ``old`` to ``new``.

        A step of the same switch (same alias, old and new) with the same name and start
        replaces the earlier record of it (``running``, then its outcome); any other switch
        starts a new record.
        """
        step = SwitchStep(name, started_at, ended_at, outcome)
        with self._lock:
            current = self._switch
            if current is None or (current.alias, current.old, current.new) != (alias, old, new):
                current = SwitchRecord(alias, old, new)
            steps = [
                kept for kept in current.steps
                if (kept.name, kept.started_at) != (name, started_at)
            ]  # fmt: skip
            steps.append(step)
            steps.sort(key=lambda kept: kept.started_at)
            self._switch = SwitchRecord(alias, old, new, tuple(steps))

    def record_switch(self, switch: SwitchRecord) -> None:
        """Record a whole switch at once (read back from where another process left it)."""
        with self._lock:
            self._switch = switch

    def count_refusal(self, reason: str) -> None:
        """Count one request refused for ``reason`` (``auth``, ``management``, ``limit``)."""
        with self._lock:
            self._refused[reason] = self._refused.get(reason, 0) + 1

    def snapshot(self) -> Snapshot:
        """Everything recorded, at one moment."""
        with self._lock:
            return Snapshot(self._reload, self._reload_error, self._switch, dict(self._refused))


# --------------------------------------------------------------------------------------
# The document


def status_document(
    view: ConfigView,
    source: StatusSource,
    upstream: UpstreamView | None,
    *,
    now: float,
    version: str = __version__,
    pid: int | None = None,
) -> dict[str, Any]:
    """The status as a JSON-ready dict (the schema is in docs/operations.rst)."""
    state = source.snapshot()
    reload = state.reload
    aliases = []
    for row in view.aliases:
        aliases.append(
            {
                "alias": row.alias,
                "target": row.target,
                "default": row.alias == view.default,
                "parameters": row.parameters or None,
                "source": row.source,
                "upstream": _model_state(upstream, row.target),
            }
        )
    error = state.reload_error
    switch = state.last_switch
    return {
        "service": "ollama-default",
        "version": version,
        "worker": {
            "pid": os.getpid() if pid is None else pid,
            "started_at": _time(source.started_at),
            "uptime_s": round(max(0.0, now - source.started_at), 1),
        },
        "generated_at": _time(now),
        "config": {
            "path": reload.path,
            "version": reload.version,
            "modified_at": _time(reload.modified_at),
            "loaded_at": _time(reload.loaded_at),
        },
        "last_reload_error": None
        if error is None
        else {"error": error.error, "at": _time(error.at), "path": error.path},
        "default": view.default,
        "default_source": view.default_source if view.default is not None else None,
        "default_names": list(view.default_names),
        "hide_real_models": view.hide_real_models,
        "aliases": aliases,
        "settings": [
            {"key": item.key, "value": item.value, "source": item.source} for item in view.settings
        ],
        "upstream": None
        if upstream is None
        else {
            "url": upstream.url,
            "reachable": upstream.reachable,
            "error": upstream.error,
            "checked_at": _time(upstream.checked_at),
        },
        "last_switch": None
        if switch is None
        else {
            "alias": switch.alias,
            "old": switch.old,
            "new": switch.new,
            "steps": [
                {
                    "name": step.name,
                    "started_at": _time(step.started_at),
                    "ended_at": _time(step.ended_at),
                    "duration_s": None
                    if step.ended_at is None
                    else round(step.ended_at - step.started_at, 3),
                    "outcome": step.outcome,
                }
                for step in switch.steps
            ],
        },
        "refused": {"scope": "worker", "counts": dict(state.refused)},
    }


def _model_state(upstream: UpstreamView | None, target: str) -> dict[str, Any]:
    key = name_key(target)
    installed = loaded = None
    size_vram = expires_at = None
    if upstream is not None and upstream.installed is not None:
        installed = key in upstream.installed
    if upstream is not None and upstream.loaded is not None:
        entry = upstream.loaded.get(key)
        loaded = entry is not None
        if entry is not None:
            size_vram, expires_at = entry.size_vram, entry.expires_at
    return {
        "installed": installed,
        "loaded": loaded,
        "size_vram": size_vram,
        "expires_at": expires_at,
    }


def _time(seconds: float | None) -> str | None:
    """Seconds since the epoch as RFC 3339 in UTC, to the millisecond."""
    if seconds is None:
        return None
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------------------
# The WSGI app and its mount


class StatusApp:
    """WSGI app: the status document as JSON, or as an HTML page for a browser.

    Built with each app graph (its :class:`ConfigView` is that graph's table); the
    :class:`StatusRecorder` is the process's. ``upstream`` is asked on each request and is
    expected to cache (the proxy's asks Ollama at most once a second or two).

    >>> status = StatusApp(ConfigView.from_table(table), StatusRecorder())  # doctest: +SKIP

    :param view: the table shown; or a function returning it, asked on each request (for
        an app whose table a hot reload replaces).
    :param networks: the clients that may read it: IP addresses and networks.
    :param trusted_proxies: proxies whose ``X-Forwarded-For`` names the client.
    :raises ConfigError: for a network that is not one.
    """

    def __init__(
        self,
        view: ConfigView | Callable[[], ConfigView],
        recorder: StatusRecorder,
        *,
        upstream: Callable[[], UpstreamView] | None = None,
        networks: Iterable[str] = LOOPBACK_NETWORKS,
        trusted_proxies: Iterable[str] = (),
        version: str = __version__,
    ) -> None:
        self.view = view
        self.recorder = recorder
        self.upstream = upstream
        self.version = version
        self._networks = _networks("status_networks", networks)
        self._trusted = _networks("trusted_proxies", trusted_proxies)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        client = client_address(environ, self._trusted)
        if client is None or not any(client in network for network in self._networks):
            shown = environ.get("REMOTE_ADDR") or "a unix socket"
            refused = RequestError(403, f"the status is not served to {shown}: see status_networks")
            return respond_error(environ, start_response, refused, Dialect.OLLAMA)
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            refused = RequestError(405, "method not allowed", headers=[("Allow", "GET, HEAD")])
            return respond_error(environ, start_response, refused, Dialect.OLLAMA)
        upstream = self.upstream() if self.upstream is not None else None
        view = self.view if isinstance(self.view, ConfigView) else self.view()
        document = status_document(
            view, self.recorder, upstream, now=self.recorder.clock(), version=self.version
        )
        if _wants_html(environ):
            body = render_html(document).encode()
            content_type = "text/html; charset=utf-8"
        else:
            body = json.dumps(document, indent=2, ensure_ascii=False).encode() + b"\n"
            content_type = "application/json"
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Vary", "Accept"),
        ]
        start_response(status_line(200), headers)
        return [] if method == "HEAD" else [body]


class StatusMount:
    """WSGI middleware: serves ``/-/status`` with ``status``, answers 404 for any other path
    under ``/-/``, and passes the rest to ``app``; counts the requests ``app`` refused.

    A refusing layer inside leaves its reason under :data:`~ollama_default.wsgi.REFUSED_KEY`
    by the time it returns (a refusal is a whole answer, never a stream), so the count is
    read then, and costs a dict lookup per request.
    """

    def __init__(self, app: WSGIApplication, status: StatusApp) -> None:
        self.app = app
        self.status = status

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(RESERVED_PREFIX):
            if path.rstrip("/") == STATUS_PATH:
                return self.status(environ, start_response)
            missing = RequestError(404, f"{path} is not an endpoint of this proxy")
            return respond_error(environ, start_response, missing, Dialect.OLLAMA)
        app_iter = self.app(environ, start_response)
        reason = environ.get(REFUSED_KEY)
        if reason is not None:
            self.status.recorder.count_refusal(str(reason))
        return app_iter


def client_address(
    environ: WSGIEnvironment,
    trusted_proxies: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client's IP address: ``REMOTE_ADDR``, or when that is a trusted proxy, the last
    ``X-Forwarded-For`` address that is not one (as werkzeug's ``ProxyFix`` reads the chain
    from the right: only trusted hops may add to it). None for a unix socket's peer."""
    address = _ip(environ.get("REMOTE_ADDR", ""))
    if address is None or not _is_in(address, trusted_proxies):
        return address
    forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
    for hop in reversed([part.strip() for part in forwarded.split(",") if part.strip()]):
        hop_address = _ip(hop)
        if hop_address is None:
            return None  # a chain we cannot read names nobody we may trust
        if not _is_in(hop_address, trusted_proxies):
            return hop_address
        address = hop_address
    return address


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:127.0.0.1 from a dual-stack socket
    return address


def _is_in(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> bool:
    return any(address in network for network in networks)


def _networks(
    key: str, given: Iterable[str]
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    if isinstance(given, str):
        raise ConfigError(
            f"{key} must be a list of IP addresses or networks, not {given!r}", key=key
        )
    networks = []
    for entry in given:
        try:
            networks.append(ipaddress.ip_network(entry))
        except (TypeError, ValueError):
            raise ConfigError(
                f"{key}: {entry!r} is not an IP address or network, such as 10.0.0.0/8", key=key
            ) from None
    return tuple(networks)


def _wants_html(environ: WSGIEnvironment) -> bool:
    accept = parse_accept_header(environ.get("HTTP_ACCEPT"), MIMEAccept)
    best = accept.best_match(["application/json", "text/html"], default="application/json")
    return best == "text/html"


# --------------------------------------------------------------------------------------
# The page

_STYLE = """
:root{color-scheme:light dark;--fg:#1f2328;--muted:#59636e;--bg:#fff;--box:#f6f8fa;
--line:#d1d9e0;--accent:#0a4bb2;--ok:#1a7f37;--bad:#b42318;--warn:#9a6700}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9198a1;--bg:#131416;
--box:#1a1c1e;--line:#303438;--accent:#6ea8fe;--ok:#3fb950;--bad:#f85149;--warn:#d29922}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);line-height:1.5;
font:16px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif}
main{max-width:62rem;margin:0 auto;padding:1.25rem 1rem 3rem}
h1{font-size:1.6rem;margin:.2rem 0 .25rem;font-weight:600}
h2{font-size:1.15rem;margin:2rem 0 .6rem;padding-bottom:.3rem;border-bottom:1px solid var(--line);
font-weight:600}
p{margin:.4rem 0}
.meta{color:var(--muted);font-size:.9rem}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em;
background:var(--box);border-radius:4px;padding:.05em .3em}
td,dd,p{overflow-wrap:anywhere}td code{overflow-wrap:break-word}
table{border-collapse:collapse;width:100%;font-size:.92rem}
th,td{text-align:left;vertical-align:top;padding:.45rem .6rem;border-bottom:1px solid var(--line)}
th{font-weight:600;background:var(--box)}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;margin:.4rem 0}
dt{color:var(--muted)}dd{margin:0}
.ok{color:var(--ok)}.muted{color:var(--muted)}.bad{color:var(--bad)}.warn{color:var(--warn)}
.note{border-left:4px solid var(--bad);background:var(--box);padding:.6rem .8rem;margin:.6rem 0}
.badge{display:inline-block;font-size:.75rem;border:1px solid var(--line);border-radius:1em;
padding:0 .5em;margin-left:.3em;color:var(--muted)}
@media (max-width:40rem){
thead{display:none}table,tbody,tr,td{display:block;width:100%}
tr{border:1px solid var(--line);border-radius:6px;margin:0 0 .8rem;padding:.3rem 0}
td{border:0;padding:.2rem .7rem}td code{overflow-wrap:anywhere}
td::before{content:attr(data-label);display:block;font-size:.75rem;color:var(--muted)}
dl{grid-template-columns:1fr}dd{margin-bottom:.4rem}}
"""


def _e(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return html.escape(", ".join(map(str, value))) or "none"
    if isinstance(value, dict):
        return html.escape(json.dumps(value, ensure_ascii=False))
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table whose cells are already HTML; on a narrow screen each row is a card."""
    head = "".join(f"<th>{html.escape(name)}</th>" for name in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td data-label="{html.escape(name)}">{cell}</td>'
            for name, cell in zip(header, row, strict=True)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def format_bytes(size: object) -> str:
    if not isinstance(size, int):
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{size} B"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


def _state(flag: object, yes: str, no: str) -> str:
    if flag is None:
        return '<span class="warn">unknown</span>'
    return f'<span class="ok">{yes}</span>' if flag else f'<span class="muted">{no}</span>'


def render_html(document: Mapping[str, Any]) -> str:
    """The status page for ``document`` (:func:`status_document`): every value escaped."""
    parts: list[str] = []
    add = parts.append
    worker = document["worker"]
    add(
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>ollama-default status</title><style>{_STYLE}</style></head><body><main>"
    )
    add("<h1>ollama-default status</h1>")
    add(
        f'<p class="meta">version {_e(document["version"])} · worker {_e(worker["pid"])} · '
        f"up {_e(format_duration(worker['uptime_s']))} · "
        f"generated {_e(format_time(document['generated_at']))}</p>"
    )
    error = document["last_reload_error"]
    if error is not None:
        add(
            '<div class="note"><strong>The last reload was refused</strong> at '
            f"{_e(format_time(error['at']))}; the table below still serves.<br>"
            f"<code>{_e(error['error'])}</code></div>"
        )
    upstream = document["upstream"]
    if upstream is not None and upstream["reachable"] is False:
        add(
            f'<div class="note"><strong>The upstream {_e(upstream["url"])} is not '
            f"answering</strong>: {_e(upstream['error'])}</div>"
        )

    add("<h2>Aliases</h2>")
    rows = []
    for row in document["aliases"]:
        state = row["upstream"]
        name = _e(row["alias"]) + ('<span class="badge">default</span>' if row["default"] else "")
        rows.append(
            [
                name,
                f"<code>{_e(row['target'])}</code>",
                _state(state["installed"], "installed", "not installed"),
                _state(state["loaded"], "loaded", "not loaded"),
                format_bytes(state["size_vram"]),
                _e(format_expiry(state["expires_at"])),
                _e(row["parameters"] or "none"),
                _e(row["source"]),
            ]
        )
    if rows:
        add(
            _table(
                ["alias", "target", "installed", "loaded", "VRAM", "expires at", "parameters",
                 "set by"],
                rows,
            )
        )  # fmt: skip
    else:
        add("<p>No aliases: requests pass through unchanged.</p>")
    add("<dl>")
    default = document["default"]
    add(f"<dt>default</dt><dd>{_e(default or 'none')}")
    if default is not None:
        add(f' <span class="meta">(set by {_e(document["default_source"])})</span>')
    add("</dd>")
    add(f"<dt>default names</dt><dd>{_e(document['default_names'] or 'none')}</dd>")
    add(f"<dt>hide real models</dt><dd>{_e(document['hide_real_models'])}</dd>")
    add("</dl>")

    add("<h2>Configuration</h2><dl>")
    config = document["config"]
    add(f"<dt>file</dt><dd><code>{_e(config['path'] or 'none')}</code></dd>")
    add(f"<dt>version</dt><dd><code>{_e(config['version'])}</code></dd>")
    add(f"<dt>modified</dt><dd>{_e(format_time(config['modified_at']))}</dd>")
    add(f"<dt>loaded</dt><dd>{_e(format_time(config['loaded_at']))}</dd>")
    if upstream is not None:
        reach = _state(upstream["reachable"], "answering", "not answering")
        add(f"<dt>upstream</dt><dd><code>{_e(upstream['url'])}</code> {reach}</dd>")
    add("</dl>")

    switch = document["last_switch"]
    add("<h2>Last switch</h2>")
    if switch is None:
        add("<p>None since the proxy started.</p>")
    else:
        add(
            f"<p><strong>{_e(switch['alias'])}</strong>: <code>{_e(switch['old'])}</code> → "
            f"<code>{_e(switch['new'])}</code></p>"
        )
        steps = [
            [_e(step["name"]), _e(format_time(step["started_at"])),
             _e("running" if step["ended_at"] is None else step["duration_s"]),
             _e(step["outcome"])]
            for step in switch["steps"]
        ]  # fmt: skip
        if steps:
            add(_table(["step", "started", "seconds", "outcome"], steps))

    add("<h2>Refused requests</h2><dl>")
    for reason, count in document["refused"]["counts"].items():
        add(f"<dt>{_e(reason)}</dt><dd>{_e(count)}</dd>")
    add('</dl><p class="meta">Counted by this worker since it started.</p>')

    if document["settings"]:
        add("<h2>Settings</h2>")
        add(
            _table(
                ["setting", "value", "set by"],
                [
                    [f"<code>{_e(item['key'])}</code>", _e(item["value"]), _e(item["source"])]
                    for item in document["settings"]
                ],
            )
        )
    add("</main></body></html>")
    return "".join(parts)


def format_time(text: str | None) -> str | None:
    """An RFC 3339 time of the document for a person: to the second."""
    if text is None:
        return None
    return text[:19].replace("T", " ") + " UTC"


#: Ollama's expiry of a model kept loaded for good: a negative ``keep_alive`` is
#: ``math.MaxInt64`` nanoseconds (api/types.go:1254), added to now (server/sched.go:1779),
#: which lands in the 2300s.
_FOREVER_YEAR = 2200


def format_expiry(text: str | None) -> str | None:
    """Ollama's ``expires_at`` for a person: to the second with its offset, or ``never``."""
    if text is None:
        return None
    year = text[:4]
    if year.isdigit() and int(year) >= _FOREVER_YEAR:
        return "never"
    offset = text[-6:] if text[-6:-5] in ("+", "-") and text[-3:-2] == ":" else "UTC"
    return text[:19].replace("T", " ") + " " + offset


def format_duration(seconds: float) -> str:
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"
