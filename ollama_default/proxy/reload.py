"""Hot reload: watch the config file, build a new app graph, swap it atomically, keep the
old one on error; and, under gunicorn, warm the new target, flip, drain and unload the old
one once for all workers.

Two roles:

:class:`Reloading` is the WSGI app a worker serves: one reference to a finished
:class:`Graph`. Each request reads the reference once, so it keeps the table it started
with to its end (a stream keeps its alias whatever the file says meanwhile). A background
thread (a greenlet under gevent's patching) polls what it watches every
``poll_interval_s``: the config file itself (*direct*: a plain ``gunicorn
ollama_default.proxy:app``, :func:`watch_default_model`), or the table the
:class:`Coordinator` published (*following*). Polling ``stat`` (inode, size, mtime) is
cheap, works on every file system and under every worker class, and bounds the delay; an
edit that does not parse, names an unknown key or makes a bad table is refused with one log
line and the previous graph serves on. The keep-alive pool of an unchanged upstream is
handed to the new graph.

:class:`Coordinator` runs in the gunicorn master (``ollama-default serve``, or gunicorn
with ``-c python:ollama_default.proxy.gunicorn``), in a thread of its own: it alone reads
and checks the file, so the upstream sees one warm and one unload per switch, not one per
worker. For a switch it loads the aliases' new targets (``warm = true``) on connections of
its own, waiting at most ``warm_timeout_s``; then publishes the checked text atomically
(temp file and rename in a private runtime directory) for the workers to follow; then, for
``unload_previous = true``, waits until every worker says no request of an older table
runs on the old target and unloads it, unless an alias points at it again. Workers say so
in a small file each, written when they swap and when a retired table's last request on a
target ends (never on the common path).

The records the status page shows (:class:`ReloadRecords`) are the master's under a
coordinator (read from its runtime directory) and the worker's own otherwise:
:func:`current_status`.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from werkzeug.wsgi import ClosingIterator

from ..core.aliases import AliasTable, Route
from ..core.errors import ConfigError
from ..core.names import name_key
from ..core.params import load_request
from ..ops.status import (
    ReloadError,
    ReloadRecord,
    Snapshot,
    StatusRecorder,
    SwitchRecord,
    SwitchStep,
)
from ..wsgi import MODEL_KEY
from .client import OllamaClient, UpstreamCallError
from .config import CONFIG_VARIABLE, LoadedSettings, Settings, load_settings_with_sources
from .forwarder import DEFAULT_MAX_CONNECTIONS
from .pool import ConnectionPool

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

_log = logging.getLogger("ollama_default")

#: How often the watched files are looked at: a change is served within about twice this.
POLL_INTERVAL_S = 0.5
#: The longest an unload waits for streams on the old target to end; Ollama itself also
#: waits for a model's running requests before it unloads it (server/sched.go expireRunner).
DRAIN_TIMEOUT_S = 600.0
#: How long gunicorn's SIGHUP waits for the master to look at the config file before it
#: starts new workers (gunicorn calls on_reload first).
SIGHUP_WAIT_S = 1.0
#: Switches kept in the records, newest last.
SWITCHES_KEPT = 10
PUBLISHED_FILE = "published.json"
STATE_FILE = "state.json"


# --- Where the settings come from, and what a version of them is ----------------------------


@dataclass(frozen=True)
class SettingsSource:
    """How the settings are read, and read again on a reload: the environment and flags
    the proxy started with, and the config file they name."""

    environ: Mapping[str, str]
    flags: Mapping[str, Any] = field(default_factory=dict)
    config_file: str | None = None

    @property
    def path(self) -> str | None:
        """The config file, if any."""
        return self.config_file or self.environ.get(CONFIG_VARIABLE) or None

    def read(self) -> tuple[str | None, LoadedSettings]:
        """Read the file once and check it; return its text and the settings.

        :raises ConfigError: for any problem, in one line.
        """
        text = None
        if self.path is not None:
            try:
                text = Path(self.path).read_bytes().decode("utf-8", errors="replace")
            except OSError as error:
                where = f"config file {self.path!r}"
                raise ConfigError(f"{where} cannot be read: {error.strerror}") from None
        return text, self.load(text)

    def load(self, text: str | None) -> LoadedSettings:
        """The settings with ``text`` as the config file's (None: read it, if any)."""
        return load_settings_with_sources(
            self.environ, dict(self.flags), config_file=self.config_file, config_text=text
        )


def watched_files(source: SettingsSource, settings: Settings | None) -> list[str]:
    """The files a reload follows: the config file, and the API keys file if the settings
    name one."""
    paths = [source.path] if source.path else []
    if settings is not None and settings.api_keys_file:
        paths.append(settings.api_keys_file)
    return paths


def fingerprint(paths: Iterable[str]) -> tuple[tuple[int, int, int, int] | None, ...]:
    """Device, inode, size and mtime of each file (None for one missing): a replaced file
    (a new inode) or an edit in place (size or mtime) changes it."""
    prints: list[tuple[int, int, int, int] | None] = []
    for path in paths:
        try:
            found = os.stat(path)
        except OSError:
            prints.append(None)
        else:
            prints.append((found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns))
    return tuple(prints)


def version_of(text: str | None) -> str:
    """A short hash of the config file's text: the version the status shows."""
    return hashlib.sha256((text or "").encode()).hexdigest()[:12]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# --- Records for the status page -------------------------------------------------------------


class ReloadRecords:
    """What the status page shows of reloads and switches; thread-safe, JSON-ready.

    The engine calls :meth:`record_reload`, :meth:`record_reload_error` and
    :meth:`record_switch_step`; :meth:`snapshot` gives a copy::

        {"config_file": "/etc/ollama-default.toml", "generation": 2,
         "version": "3f1c0e9a2b7d", "loaded_at": "2025-...Z",
         "aliases": [{"alias": "llmodel", "target": "qwen3:8b", "default": true,
                      "parameters": "", "warm": true, "unload_previous": true}],
         "sources": {"aliases": "config file '/etc/ollama-default.toml'", ...},
         "last_error": {"message": "...", "at": "..."} | None,
         "switches": [{"id": 1, "generation": 2, "started_at": "...", "changes":
                       [{"alias": "llmodel", "from": "qwen3:4b", "to": "qwen3:8b"}],
                       "steps": [{"step": "warm", "target": "qwen3:8b", "outcome": "ok",
                                  "at": "...", "seconds": 1.52, "detail": ""}, ...]}]}

    ``step`` is ``warm``, ``flip``, ``drain`` or ``unload``; ``outcome`` ``ok``,
    ``timeout``, ``failed`` or ``skipped``.
    """

    def __init__(self, config_file: str | None = None) -> None:
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {
            "config_file": config_file,
            "generation": 0,
            "version": None,
            "loaded_at": None,
            "modified_at": None,
            "aliases": [],
            "sources": {},
            "last_error": None,
            "switches": [],
        }

    def record_reload(self, generation: int, version: str, loaded: LoadedSettings) -> None:
        """A table now serves: its generation, the file's version, the aliases."""
        settings, sources = loaded
        modified_at = None
        if self._state["config_file"] is not None:
            with contextlib.suppress(OSError):
                mtime = os.stat(self._state["config_file"]).st_mtime
                modified_at = datetime.fromtimestamp(mtime, timezone.utc).isoformat(
                    timespec="milliseconds"
                )
        with self._lock:
            self._state.update(
                generation=generation,
                version=version,
                loaded_at=_now(),
                modified_at=modified_at,
                aliases=alias_rows(settings.alias_table),
                sources=dict(sources),
                last_error=None,
            )

    def record_reload_error(self, message: str) -> None:
        """An edit was refused; the previous table serves on."""
        with self._lock:
            self._state["last_error"] = {"message": message, "at": _now()}

    def start_switch(self, generation: int, changes: list[tuple[str, str | None, str]]) -> int:
        """A reload moves aliases: ``(alias, old target or None, new target)``; its id."""
        with self._lock:
            switches: list[dict[str, Any]] = self._state["switches"]
            number = switches[-1]["id"] + 1 if switches else 1
            switches.append({
                "id": number,
                "generation": generation,
                "started_at": _now(),
                "changes": [{"alias": a, "from": old, "to": new} for a, old, new in changes],
                "steps": [],
            })  # fmt: skip
            del switches[:-SWITCHES_KEPT]
            return number

    def record_switch_step(
        self, switch: int, step: str, target: str, outcome: str, seconds: float, detail: str = ""
    ) -> None:
        """One step of switch ``switch``: ``warm``, ``flip``, ``drain`` or ``unload``."""
        with self._lock:
            for each in self._state["switches"]:
                if each["id"] == switch:
                    each["steps"].append({
                        "step": step, "target": target, "outcome": outcome, "at": _now(),
                        "seconds": round(seconds, 3), "detail": detail,
                    })  # fmt: skip

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of the records, JSON-ready."""
        with self._lock:
            copy: dict[str, Any] = json.loads(json.dumps(self._state))
            return copy


def alias_rows(table: AliasTable) -> list[dict[str, Any]]:
    """The alias table as the status shows it."""
    default = table.default
    return [
        {
            "alias": alias,
            "target": route.target,
            "default": default is not None and default.alias == alias,
            "parameters": route.params.describe(),
            "warm": route.warm,
            "unload_previous": route.unload_previous,
        }
        for alias, route in table.items()
    ]


# --- The worker's side: one reference to a finished graph ------------------------------------


class Graph:
    """One finished app graph and the settings it was built from, counting the requests in
    flight on it by the model they went upstream with (for the drain before an unload)."""

    def __init__(
        self, app: WSGIApplication, loaded: LoadedSettings, generation: int, version: str
    ) -> None:
        self.app = app
        self.settings, self.sources = loaded
        self.loaded = loaded
        self.generation = generation
        self.version = version
        self.busy: dict[str, int] = {}
        self._lock = threading.Lock()
        #: Called when a request ends once this graph is retired.
        self.on_retired_idle: Callable[[], None] | None = None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        app_iter = self.app(environ, start_response)
        model = environ.get(MODEL_KEY)
        if not isinstance(model, str):
            return app_iter
        key = name_key(model)
        with self._lock:
            self.busy[key] = self.busy.get(key, 0) + 1
        return ClosingIterator(app_iter, lambda: self._done(key))

    def _done(self, key: str) -> None:
        with self._lock:
            left = self.busy[key] - 1
            if left:
                self.busy[key] = left
            else:
                del self.busy[key]
        callback = self.on_retired_idle
        if callback is not None:
            callback()


#: Builds the app for some settings, given the upstream's keep-alive pool (None when the
#: app has no forwarder, as with the demo backend).
Builder = Callable[[LoadedSettings, ConnectionPool | None], "WSGIApplication"]


class Pools:
    """Keep-alive pools by upstream and timeouts: a reload that keeps them keeps the pool."""

    def __init__(self, max_connections: int) -> None:
        self._max_connections = max_connections
        self._pools: dict[tuple[str, float, float], ConnectionPool] = {}

    def pool_for(self, settings: Settings) -> ConnectionPool:
        key = (settings.upstream, settings.connect_timeout_s, settings.read_timeout_s)
        pool = self._pools.get(key)
        if pool is None:
            parts = urlsplit(settings.upstream)
            pool = ConnectionPool(
                parts.scheme,
                parts.hostname or "",
                parts.port,
                settings.connect_timeout_s,
                settings.read_timeout_s,
                max_idle=self._max_connections,
            )
            self._pools[key] = pool
        return pool

    def keep_only(self, settings: Settings) -> None:
        """Close the pools the graph for ``settings`` does not use (their sockets in use
        are closed as they come back)."""
        kept = (settings.upstream, settings.connect_timeout_s, settings.read_timeout_s)
        for key in [key for key in self._pools if key != kept]:
            self._pools.pop(key).close()


class Reloading:
    """WSGI app: serves the current :class:`Graph`, and swaps in a new one when what it
    watches changes (see the module's docs).

    >>> app = Reloading(builder, SettingsSource(os.environ))  # doctest: +SKIP

    :param build: makes the app for some settings (``compose.build_app``).
    :param source: where the settings come from.
    :param follow: the runtime directory of a :class:`Coordinator` to follow; None to watch
        the config file directly.
    :param uses_pool: whether ``build`` forwards to the upstream (takes a pool).
    :raises ConfigError: when the first settings cannot be read.
    """

    def __init__(
        self,
        build: Builder,
        source: SettingsSource,
        *,
        follow: Path | None = None,
        poll_interval_s: float = POLL_INTERVAL_S,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        uses_pool: bool = True,
    ) -> None:
        self._build = build
        self.source = source
        self.follow = follow
        self.poll_interval_s = poll_interval_s
        self.records = ReloadRecords(source.path)
        self._pools = Pools(max_connections) if uses_pool else None
        self._retired: list[Graph] = []
        self._lock = threading.Lock()
        self._watching_pid = 0
        self._stop = threading.Event()
        self._refused: object = None
        if follow is not None:
            published = read_published(follow)
            if published is None:
                raise ConfigError(f"no table published in {follow}")
            self._seen: object = fingerprint([str(follow / PUBLISHED_FILE)])
            self.graph = self._make(source.load(published["config_text"]),
                                    published["generation"], published["version"])  # fmt: skip
        else:
            self._seen = fingerprint(watched_files(source, None))
            text, loaded = source.read()
            self._seen = fingerprint(watched_files(source, loaded.settings))
            self.graph = self._make(loaded, 1, version_of(text))
        _register(self)
        self._start_watching()

    def _make(self, loaded: LoadedSettings, generation: int, version: str) -> Graph:
        pool = self._pools.pool_for(loaded.settings) if self._pools is not None else None
        graph = Graph(self._build(loaded, pool), loaded, generation, version)
        if self._pools is not None:
            self._pools.keep_only(loaded.settings)
        self.records.record_reload(generation, version, loaded)
        return graph

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        if self._watching_pid != os.getpid():
            self._start_watching()
        graph = self.graph  # read once: this request keeps this graph to its end
        return graph(environ, start_response)

    def _start_watching(self) -> None:
        # In the process that serves (after gunicorn's fork, after gevent's patching: the
        # thread is then a greenlet); the first request's, so a preloaded app works too.
        with self._lock:
            if self._watching_pid == os.getpid():
                return
            self._watching_pid = os.getpid()
            self._stop = threading.Event()
        if self.follow is not None:
            self._report()
        thread = threading.Thread(target=self._watch, name="ollama-default-reload", daemon=True)
        thread.start()

    def _watch(self) -> None:
        stop = self._stop
        while not stop.wait(self.poll_interval_s):
            try:
                self.check()
            except Exception:  # the watch must go on; the log says what broke
                _log.exception("reload failed")

    def stop(self) -> None:
        """Stop watching (tests, and apps that embed it)."""
        self._stop.set()

    def check(self) -> bool:
        """Look at what is watched now; swap in a new graph if it changed. Whether it did."""
        if self.follow is not None:
            return self._check_published(self.follow)
        paths = watched_files(self.source, self.graph.settings)
        seen = fingerprint(paths)
        if seen == self._seen or seen == self._refused:
            return False
        try:
            text, loaded = self.source.read()
        except ConfigError as error:
            self._refused = seen
            self.records.record_reload_error(str(error))
            _log.error(
                "reload refused, still serving config version %s: %s",
                self.graph.version,
                error,
            )
            return False
        self._seen = seen
        self._refused = None
        self._swap(loaded, self.graph.generation + 1, version_of(text))
        return True

    def _check_published(self, runtime: Path) -> bool:
        seen = fingerprint([str(runtime / PUBLISHED_FILE)])
        if seen == self._seen:
            return False
        published = read_published(runtime)
        if published is None or published["generation"] <= self.graph.generation:
            self._seen = seen
            return False
        # The master checked this text; only a change in the environment's files (an
        # unreadable keys file) could fail here, and then this worker keeps its graph.
        try:
            loaded = self.source.load(published["config_text"])
        except ConfigError as error:
            self.records.record_reload_error(str(error))
            _log.error("worker %d keeps its table: %s", os.getpid(), error)
            self._seen = seen
            return False
        self._seen = seen
        self._swap(loaded, published["generation"], published["version"])
        return True

    def _swap(self, loaded: LoadedSettings, generation: int, version: str) -> None:
        old = self.graph
        new = self._make(loaded, generation, version)
        with self._lock:
            self.graph = new  # one reference: requests already in flight keep ``old``
            old.on_retired_idle = self._report
            self._retired.append(old)
        _log.info(
            "worker %d serves config version %s (generation %d): %s",
            os.getpid(),
            version,
            generation,
            ", ".join(f"{a} -> {r.target}" for a, r in new.settings.alias_table.items())
            or "no aliases",
        )
        self._report()

    def _report(self) -> None:
        """Tell the coordinator which generation this worker serves, and what requests of
        older ones still run, by target."""
        with self._lock:
            busy: dict[str, int] = {}
            live = []
            for graph in self._retired:
                with graph._lock:
                    counts = dict(graph.busy)
                if counts:
                    live.append(graph)
                for key, count in counts.items():
                    busy[key] = busy.get(key, 0) + count
            self._retired = live
            generation = self.graph.generation
        if self.follow is not None:
            report = {"pid": os.getpid(), "generation": generation, "busy": busy}
            with contextlib.suppress(OSError):
                write_atomically(self.follow / f"worker-{os.getpid()}.json", json.dumps(report))

    def status(self) -> dict[str, Any]:
        """The reload records: the coordinator's when following one, else this worker's."""
        if self.follow is not None:
            try:
                state: dict[str, Any] = json.loads((self.follow / STATE_FILE).read_text())
                return state
            except (OSError, ValueError):
                pass
        return self.records.snapshot()


_current: list[Reloading] = []


def _register(reloading: Reloading) -> None:
    _current[:] = [reloading]


def current_status() -> dict[str, Any] | None:
    """The reload records of this process's proxy (see :class:`ReloadRecords`), or None
    when it does not reload."""
    return _current[0].status() if _current else None


class FollowingRecorder(StatusRecorder):
    """The status page's recorder in a process that reloads: the loads, reload errors and
    switches are the engine's (:func:`current_status`: the coordinator's when one runs),
    the refusals this worker's own."""

    def __init__(self) -> None:
        super().__init__()
        #: The process it records for (a fork gets its own).
        self.pid = os.getpid()

    def snapshot(self) -> Snapshot:
        own = super().snapshot()
        state = current_status()
        if state is None or state.get("loaded_at") is None:
            return own
        modified_at = state.get("modified_at")
        reload = ReloadRecord(
            _epoch(state["loaded_at"]),
            state.get("config_file"),
            state.get("version"),
            _epoch(modified_at) if modified_at else None,
        )
        error = state.get("last_error")
        reload_error = None
        if error is not None:
            reload_error = ReloadError(error["message"], _epoch(error["at"]), reload.path)
        switch = own.last_switch
        if state.get("switches"):
            last = state["switches"][-1]
            change: dict[str, Any] = last["changes"][0] if last["changes"] else {}
            steps = tuple(
                SwitchStep(
                    f"{step['step']} {step['target']}",
                    _epoch(step["at"]) - step["seconds"],
                    _epoch(step["at"]),
                    step["outcome"] + (f": {step['detail']}" if step["detail"] else ""),
                )
                for step in last["steps"]
            )
            switch = SwitchRecord(
                str(change.get("alias", "")), change.get("from"), str(change.get("to", "")), steps
            )
        return Snapshot(reload, reload_error, switch, own.refused)


def _epoch(text: str) -> float:
    """Seconds since the epoch of one of :func:`_now`'s times."""
    return datetime.fromisoformat(text).timestamp()


_recorder: list[FollowingRecorder] = []


def process_recorder() -> FollowingRecorder:
    """This process's status recorder, the same for every graph a reload builds (made in the
    process that serves: each gunicorn worker has its own)."""
    if not _recorder or _recorder[0].pid != os.getpid():
        _recorder[:] = [FollowingRecorder()]
    return _recorder[0]


def watch_default_model(
    app: WSGIApplication, config_file: str, *, poll_interval_s: float = POLL_INTERVAL_S
) -> Reloading:
    """A :class:`~ollama_default.DefaultModel` in front of ``app`` made from a config file,
    rebuilt when the file changes (its aliases, default and other ``DefaultModel``
    settings; not the proxy's upstream, which ``app`` is).

    >>> app = watch_default_model(flask_app.wsgi_app, "/etc/aliases.toml")  # doctest: +SKIP

    :raises ConfigError: when the file cannot be read or is not a valid configuration.
    """
    from ..middleware import DefaultModel

    def build(loaded: LoadedSettings, pool: ConnectionPool | None) -> WSGIApplication:
        settings = loaded.settings
        return DefaultModel(
            app,
            mapping=settings.alias_table,
            max_body_bytes=settings.max_body_bytes,
            max_buffered_bytes=settings.max_buffered_bytes,
            max_record_bytes=settings.max_record_bytes,
            hide_real_models=settings.hide_real_models,
            default_names=settings.default_names,
            fallback_to_default=settings.fallback_to_default,
        )

    source = SettingsSource({}, config_file=config_file)
    return Reloading(build, source, poll_interval_s=poll_interval_s, uses_pool=False)


# --- Files in the runtime directory ---------------------------------------------------------


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new, never a part
    (a temporary file in the same directory, then a rename)."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read_published(runtime: Path) -> dict[str, Any] | None:
    """The table the coordinator published last, or None."""
    try:
        published: dict[str, Any] = json.loads((runtime / PUBLISHED_FILE).read_text())
    except (OSError, ValueError):
        return None
    return published


def read_reports(runtime: Path) -> dict[int, dict[str, Any]]:
    """pid -> the last report of each worker (its generation, what older tables still run)."""
    reports = {}
    for path in runtime.glob("worker-*.json"):
        try:
            report = json.loads(path.read_text())
            reports[int(report["pid"])] = report
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return reports


# --- The master's side: one watcher, one warm, one unload -----------------------------------


@dataclass(frozen=True)
class Change:
    """An alias that a reload points at a new target (``old`` None: a new alias)."""

    alias: str
    old: Route | None
    new: Route


def changes_between(old: AliasTable, new: AliasTable) -> list[Change]:
    """The aliases whose target a reload changes (or adds)."""
    changes = []
    for alias, route in new.items():
        before = old.resolve(alias)
        if before is None or name_key(before.target) != name_key(route.target):
            changes.append(Change(alias, before, route))
    return changes


def targets_to_unload(changes: Iterable[Change], new: AliasTable) -> list[Route]:
    """The old targets to unload after a switch: those of changed aliases that ask for it
    (``unload_previous``) and that no alias of the new table points at; one per model."""
    in_use = {name_key(route.target) for route in new.values()}
    chosen: dict[str, Route] = {}
    for change in changes:
        old = change.old
        if old is None or not change.new.unload_previous:
            continue
        key = name_key(old.target)
        if key not in in_use:
            chosen.setdefault(key, old)
    return list(chosen.values())


def targets_to_warm(changes: Iterable[Change]) -> list[Route]:
    """The new targets to load before the flip: one per model, the first alias's
    parameters."""
    chosen: dict[str, Route] = {}
    for change in changes:
        if change.new.warm:
            chosen.setdefault(name_key(change.new.target), change.new)
    return list(chosen.values())


class Coordinator:
    """In the gunicorn master: watches the config, warms, publishes the table for the
    workers, drains and unloads (see the module's docs).

    :param live_workers: the pids of the workers alive now (gunicorn's ``WORKERS``).
    :param client: makes the upstream client for an upstream URL.
    """

    def __init__(
        self,
        source: SettingsSource,
        runtime: Path,
        *,
        live_workers: Callable[[], Collection[int]],
        poll_interval_s: float = POLL_INTERVAL_S,
        drain_timeout_s: float = DRAIN_TIMEOUT_S,
        client: Callable[[str], OllamaClient] = OllamaClient,
    ) -> None:
        self.source = source
        self.runtime = runtime
        self.live_workers = live_workers
        self.poll_interval_s = poll_interval_s
        self.drain_timeout_s = drain_timeout_s
        self.client = client
        self.records = ReloadRecords(source.path)
        self._poked = threading.Event()
        self._stopped = threading.Event()
        #: How many times the watch has looked at the files, for :meth:`poke` to wait on.
        self._rounds = 0
        self._looked = threading.Condition()
        self._thread: threading.Thread | None = None
        self._generation = 0
        self._loaded: LoadedSettings | None = None
        self._seen: object = None
        self._refused: object = None
        self._text: str | None = None

    def start(self) -> None:
        """Publish the current table (before any worker starts), then watch.

        :raises ConfigError: when the settings cannot be read.
        """
        text, loaded = self.source.read()
        self._seen = fingerprint(watched_files(self.source, loaded.settings))
        self._publish(text, loaded)
        self._thread = threading.Thread(
            target=self._run, name="ollama-default-coordinator", daemon=True
        )
        self._thread.start()

    def poke(self, wait_s: float = 0.0) -> None:
        """Look at the file now (gunicorn's SIGHUP), waiting up to ``wait_s`` for the look
        to end: then workers started next boot with what it published (unless it warms a
        model, which takes longer; they follow when it is done)."""
        with self._looked:
            asked = self._rounds
            self._poked.set()
            self._looked.wait_for(lambda: self._rounds > asked, timeout=wait_s)

    def stop(self) -> None:
        self._stopped.set()
        self._poked.set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._poked.wait(self.poll_interval_s)
            self._poked.clear()
            if self._stopped.is_set():
                return
            try:
                self.check()
            except Exception:  # the watch must go on; the log says what broke
                _log.exception("reload failed")
            with self._looked:
                self._rounds += 1
                self._looked.notify_all()

    def check(self) -> bool:
        """Reload if the watched files changed; whether a new table was published."""
        if self._loaded is None:  # not started
            return False
        seen = fingerprint(watched_files(self.source, self._loaded.settings))
        if seen == self._seen or seen == self._refused:
            return False
        try:
            text, loaded = self.source.read()
        except ConfigError as error:
            self._refused = seen
            self.records.record_reload_error(str(error))
            self._write_state()
            _log.error(
                "reload refused, still serving config version %s: %s",
                version_of(self._text),
                error,
            )
            return False
        self._seen, self._refused = seen, None
        self._switch(text, loaded)
        return True

    def _switch(self, text: str | None, loaded: LoadedSettings) -> None:
        if self._loaded is None:
            return
        old_table = self._loaded.settings.alias_table
        new_table = loaded.settings.alias_table
        changes = changes_between(old_table, new_table)
        generation = self._generation + 1
        switch = 0
        if changes:
            switch = self.records.start_switch(
                generation,
                [(c.alias, c.old.target if c.old else None, c.new.target) for c in changes],
            )
        client = self.client(loaded.settings.upstream)
        self._warm(switch, client, targets_to_warm(changes), loaded.settings)
        started = time.monotonic()
        self._publish(text, loaded)
        if switch:
            targets = ", ".join(c.new.target for c in changes)
            self.records.record_switch_step(
                switch, "flip", targets, "ok", time.monotonic() - started
            )
            self._write_state()
        for route in targets_to_unload(changes, new_table):
            thread = threading.Thread(
                target=self._unload_when_drained,
                args=(switch, client, route, generation),
                name="ollama-default-unload",
                daemon=True,
            )
            thread.start()

    def _warm(
        self, switch: int, client: OllamaClient, routes: list[Route], settings: Settings
    ) -> None:
        """Load each route's target at once; wait for all, up to ``warm_timeout_s``."""
        if not routes:
            return
        deadline = time.monotonic() + settings.warm_timeout_s
        started = time.monotonic()
        threads = []
        for route in routes:

            def warm(route: Route = route) -> None:
                _log.info("warming %s", route.target)
                try:
                    # A connection of our own, waiting as long as any request would: if the
                    # flip goes ahead without it, the load goes on for the first requests.
                    client.load(load_request(route.target, route.params), settings.read_timeout_s)
                except UpstreamCallError as error:
                    self._step(switch, "warm", route.target, "failed", started, str(error))
                    _log.warning("warming %s failed: %s", route.target, error)
                    return
                self._step(switch, "warm", route.target, "ok", started)
                _log.info(
                    "%s is loaded (%.2f s)", route.target,
                    time.monotonic() - started,
                )  # fmt: skip

            thread = threading.Thread(target=warm, name="ollama-default-warm", daemon=True)
            thread.start()
            threads.append((route, thread))
        for route, thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                self._step(switch, "warm", route.target, "timeout", started,
                           f"not loaded within warm_timeout_s {settings.warm_timeout_s:g} s; "
                           "traffic moves to it anyway")  # fmt: skip
                _log.warning(
                    "%s is not loaded after %g s (warm_timeout_s): moving "
                    "traffic to it anyway; its load goes on",
                    route.target,
                    settings.warm_timeout_s,
                )

    def _unload_when_drained(
        self, switch: int, client: OllamaClient, route: Route, generation: int
    ) -> None:
        key = name_key(route.target)
        started = time.monotonic()
        drained = self._wait_drained(key, generation)
        self._step(switch, "drain", route.target, "ok" if drained else "timeout", started)
        current = self._loaded.settings.alias_table if self._loaded else None
        if current is not None and any(name_key(r.target) == key for r in current.values()):
            self._step(switch, "unload", route.target, "skipped", started,
                       "an alias points at it again")  # fmt: skip
            return
        try:
            client.unload(load_request(route.target, route.params, unload=True))
        except UpstreamCallError as error:
            self._step(switch, "unload", route.target, "failed", started, str(error))
            _log.warning("unloading %s failed: %s", route.target, error)
            return
        self._step(switch, "unload", route.target, "ok", started)
        _log.info("unloaded %s", route.target)

    def _wait_drained(self, key: str, generation: int) -> bool:
        """Wait until every live worker serves ``generation`` or later and no request of an
        older table runs on ``key``; False after ``drain_timeout_s``."""
        deadline = time.monotonic() + self.drain_timeout_s
        while time.monotonic() < deadline:
            if self._stopped.is_set():
                return False
            reports = read_reports(self.runtime)
            try:
                live = list(self.live_workers())
            except RuntimeError:  # the arbiter changed its table meanwhile: look again
                live = None
            if live is not None and all(
                pid in reports
                and reports[pid]["generation"] >= generation
                and not reports[pid]["busy"].get(key)
                for pid in live
            ):
                return True
            time.sleep(0.05)
        return False

    def _step(
        self, switch: int, step: str, target: str, outcome: str, since: float, detail: str = ""
    ) -> None:
        if switch:
            seconds = time.monotonic() - since
            self.records.record_switch_step(switch, step, target, outcome, seconds, detail)
            self._write_state()

    def _publish(self, text: str | None, loaded: LoadedSettings) -> None:
        self._generation += 1
        version = version_of(text)
        document = {
            "generation": self._generation,
            "version": version,
            "config_text": text,
            "published_at": _now(),
        }
        write_atomically(self.runtime / PUBLISHED_FILE, json.dumps(document))
        self._loaded, self._text = loaded, text
        self.records.record_reload(self._generation, version, loaded)
        self._write_state()
        if self._generation > 1:
            _log.info(
                "config version %s published (generation %d)",
                version,
                self._generation,
            )

    def _write_state(self) -> None:
        with contextlib.suppress(OSError):
            write_atomically(self.runtime / STATE_FILE, json.dumps(self.records.snapshot()))


# --- gunicorn hooks (no gunicorn import: they take the arbiter as it comes) ------------------

#: Set in the gunicorn master by :func:`start_coordinator`; workers inherit it by fork.
_coordinated: list[tuple[Coordinator, SettingsSource]] = []


def start_coordinator(server: Any, source: SettingsSource) -> Coordinator:
    """Start the coordinator in the gunicorn master ``server`` (before it forks a worker);
    its workers then follow it. A private runtime directory holds what they share."""
    runtime = Path(tempfile.mkdtemp(prefix="ollama-default-"))

    def live() -> Collection[int]:
        return list(server.WORKERS)

    coordinator = Coordinator(source, runtime, live_workers=live)
    master = os.getpid()
    # gunicorn's exit calls on_exit; a master that leaves otherwise cleans up too (not its
    # workers, which inherit this registration by fork).
    atexit.register(_remove, coordinator, master)
    coordinator.start()
    _coordinated[:] = [(coordinator, source)]
    return coordinator


def coordinated() -> tuple[Path, SettingsSource] | None:
    """The runtime directory to follow and the settings' source, in a worker of a master
    that runs a coordinator; None otherwise."""
    if not _coordinated:
        return None
    coordinator, source = _coordinated[0]
    return coordinator.runtime, source


def on_reload(server: Any) -> None:
    """gunicorn's SIGHUP: look at the file now, so that the new workers boot with it."""
    if _coordinated:
        _coordinated[0][0].poke(wait_s=SIGHUP_WAIT_S)


def on_exit(server: Any) -> None:
    """gunicorn stops: stop the coordinator, remove its runtime directory."""
    if _coordinated:
        _remove(_coordinated[0][0], os.getpid())


def _remove(coordinator: Coordinator, master: int) -> None:
    if os.getpid() != master:  # a worker, leaving: the directory is the master's
        return
    coordinator.stop()
    for path in coordinator.runtime.glob("*"):
        with contextlib.suppress(OSError):
            path.unlink()
    with contextlib.suppress(OSError):
        coordinator.runtime.rmdir()
