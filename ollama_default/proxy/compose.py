"""The proxy's WSGI app, composed from settings: access log, prefix mount, the ``/-/``
mounts (status), API keys, the model store's policy, concurrency limits, body deadlines,
transfer coding check, DefaultModel, backend. Composition only: each piece does its own job.

The backend is a :class:`~ollama_default.proxy.forwarder.Forwarder` to the upstream, or, for
``ollama-default serve --demo``, the built-in demo backend.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from werkzeug.middleware.dispatcher import DispatcherMiddleware

from ..core.errors import RequestError
from ..core.params import LoadTimeConflictWarning
from ..middleware import DefaultModel
from ..ops.access_log import AccessLog
from ..ops.auth import KeyCheck
from ..ops.limits import Limits
from ..ops.status import (
    ConfigView,
    ReloadRecord,
    SettingView,
    StatusApp,
    StatusMount,
    StatusRecorder,
)
from ..ops.store import ModelStore
from ..wsgi import respond_error, unsupported_transfer_coding
from .config import (
    DEFAULT_SOURCE,
    SETTINGS,
    Settings,
)
from .declaration import value_at
from .forwarder import DEFAULT_MAX_CONNECTIONS, Forwarder, without_userinfo
from .keys import load_keys
from .logs import configure_logging
from .pool import ConnectionPool
from .reading import ReadGuard
from .slots import process_gate
from .upstream_models import UpstreamModels

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def build_app(
    settings: Settings,
    backend: WSGIApplication | None = None,
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    pool: ConnectionPool | None = None,
    sources: Mapping[str, str] | None = None,
    config_path: str | None = None,
    recorder: StatusRecorder | None = None,
) -> WSGIApplication:
    """Return the proxy for ``settings``, in front of ``backend`` or the upstream.

    :param max_connections: keep-alive connections kept to the upstream; as many as the
        worker serves requests at once, so none is thrown away after use.
    :param pool: keep-alive connections to the upstream that outlive this app (a reload
        hands them over: :mod:`~ollama_default.proxy.reload`).
    :param sources: where each setting came from, for ``/-/status``.
    :param config_path: the file the settings were read from, for ``/-/status``.
    :param recorder: the process's history of loads, switches and refusals, which a hot
        reload hands from one graph to the next; by default a new one, whose start-up
        load is ``config_path`` as it is now.
    """
    if backend is None:
        backend = Forwarder(
            settings.upstream,
            connect_timeout_s=settings.connect_timeout_s,
            read_timeout_s=settings.read_timeout_s,
            max_connections=max_connections,
            trusted_proxies=settings.trusted_proxies,
            pool=pool,
            upstream_api_key=settings.upstream_api_key or None,
        )
    with warnings.catch_warnings():
        # The proxy logs them itself, once (cli.log_start_up_warnings, app_from_environment).
        warnings.simplefilter("ignore", LoadTimeConflictWarning)
        app: WSGIApplication = DefaultModel(
            backend,
            mapping=settings.alias_table,  # built once, with the settings
            max_body_bytes=settings.max_body_bytes,
            max_buffered_bytes=settings.max_buffered_bytes,
            max_record_bytes=settings.max_record_bytes,
            hide_real_models=settings.hide_real_models,
            default_names=settings.default_names,
            fallback_to_default=settings.fallback_to_default,
        )
    # Before anything reads a body: DefaultModel reads those of the routes it rewrites.
    app = TransferCodingCheck(app)
    # Every body read behind it, by DefaultModel or the forwarder, has a deadline.
    app = ReadGuard(
        app, body_timeout_s=settings.body_timeout_s, max_body_bytes=settings.max_body_bytes
    )
    # The key file is read here, so each new graph (a reload) reads it again.
    keys = load_keys(settings)
    has_key_caps = keys is not None and any(key.max_concurrent for key in keys)
    if settings.max_concurrent or settings.max_concurrent_per_key or has_key_caps:
        # Inside the keys' check (it names the key) and outside the body's deadline, which
        # starts once the request has its slot: a queued request's body waits unread.
        app = Limits(
            app,
            max_concurrent=settings.max_concurrent,
            max_concurrent_per_key=settings.max_concurrent_per_key,
            max_queue=settings.max_queue,
            queue_timeout_s=settings.queue_timeout_s,
            gate=process_gate(),  # the workers' shared counts, when serve made them
        )
    # Access (#14): the model store closed unless opened, then the keys, before any body
    # is read.
    app = ModelStore(app, open_verbs=settings.open_model_store)
    if keys is not None:
        app = KeyCheck(app, keys, aliases=settings.alias_table)
    # Outside whatever refuses (auth, limits), to count their refusals; inside the prefix.
    app = StatusMount(app, status_app(settings, sources, config_path, recorder))
    if settings.prefix:
        # The prefix moves into SCRIPT_NAME; everything outside it is not ours to serve.
        app = DispatcherMiddleware(outside_prefix, {settings.prefix: app})
    if settings.access_log:
        app = AccessLog(app)  # outermost: it sees every request, refused ones too
    return app


def status_app(
    settings: Settings,
    sources: Mapping[str, str] | None = None,
    config_path: str | None = None,
    recorder: StatusRecorder | None = None,
) -> StatusApp:
    """The ``/-/status`` app for ``settings``: its table, its upstream's models, and
    ``recorder`` (by default a new one, whose start-up load is ``config_path`` now)."""
    if recorder is None:
        recorder = StatusRecorder(reload_record(config_path))
    return StatusApp(
        config_view(settings, sources or {}),
        recorder,
        upstream=UpstreamModels(settings.upstream),
        networks=settings.status_networks,
        trusted_proxies=settings.trusted_proxies,
    )


def reload_record(config_path: str | None, loaded_at: float | None = None) -> ReloadRecord:
    """A :class:`~ollama_default.ops.status.ReloadRecord` of ``config_path`` as it is now:
    the first 12 hex digits of its bytes' SHA-256, and its modification time."""
    loaded_at = time.time() if loaded_at is None else loaded_at
    if config_path is None:
        return ReloadRecord(loaded_at)
    try:
        with open(config_path, "rb") as file:
            version = hashlib.sha256(file.read()).hexdigest()[:12]
            modified_at = os.fstat(file.fileno()).st_mtime
    except OSError:
        return ReloadRecord(loaded_at, config_path)
    return ReloadRecord(loaded_at, config_path, version, modified_at)


# Shown in their own places of the status, not among the other settings.
_SHOWN_APART = frozenset({"aliases", "default", "default_names", "hide_real_models"})


def config_view(settings: Settings, sources: Mapping[str, str]) -> ConfigView:
    """What ``/-/status`` shows of ``settings``, and where each came from."""
    rows = []
    for key in SETTINGS:
        if key in _SHOWN_APART:
            continue
        value = value_at(settings, key)
        if key == "upstream":
            value = without_userinfo(value)
        if isinstance(value, tuple):
            value = list(value)
        rows.append(SettingView(key, value, sources.get(key, DEFAULT_SOURCE)))
    aliases_source = sources.get("aliases", DEFAULT_SOURCE)
    default_source = sources.get("default", DEFAULT_SOURCE)
    if settings.default is None:  # a single alias is the default: set where it was
        default_source = aliases_source
    return ConfigView.from_table(
        settings.alias_table,
        default_names=settings.default_names,
        hide_real_models=settings.hide_real_models,
        source=aliases_source,
        default_source=default_source,
        settings=rows,
    )


def outside_prefix(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Answer 404 for a path outside the prefix, in the client's error shape."""
    message = f"{environ.get('PATH_INFO', '')} is not under this proxy's prefix"
    return respond_error(environ, start_response, RequestError(404, message))


class TransferCodingCheck:
    """WSGI middleware: refuses a request body in a transfer coding other than chunked alone.

    501 in the client's dialect, before ``app`` reads a byte: as Go's ``net/http`` answers
    before Ollama's handlers run (see :func:`~ollama_default.wsgi.unsupported_transfer_coding`).
    """

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if "HTTP_TRANSFER_ENCODING" in environ:
            refused = unsupported_transfer_coding(environ)
            if refused is not None:
                return respond_error(environ, start_response, refused)
        return self.app(environ, start_response)


#: What to run instead of a server that serves one request at a time (see docs/proxy.rst).
RECOMMENDED_COMMAND = "ollama-default serve"
_log = logging.getLogger("ollama_default")


def app_from_environment(environ: Mapping[str, str]) -> WSGIApplication:
    """Return the proxy the ``OLLAMA_DEFAULT_*`` variables (and the file they name) describe,
    with the package's log set up as they say.

    :raises ConfigError: for any problem, in one line naming the key and the value.
    """
    from .reload import Reloading, SettingsSource, coordinated, process_recorder

    # Under a master that runs the reload coordinator (ollama-default serve, or gunicorn
    # -c python:ollama_default.proxy.gunicorn), the table it publishes; else the file.
    following = coordinated()
    source = following[1] if following else SettingsSource(dict(environ))
    reloading = Reloading(
        lambda loaded, pool: build_app(
            loaded.settings,
            pool=pool,
            sources=loaded.sources,
            config_path=source.path,
            recorder=process_recorder(),
        ),
        source,
        follow=following[0] if following else None,
    )
    settings = reloading.graph.settings
    configure_logging(settings)
    for conflict in settings.alias_table.load_time_conflicts():
        _log.warning("ollama-default: %s", conflict)
    if following is None and any(
        r.warm or r.unload_previous for r in settings.alias_table.values()
    ):
        _log.warning(
            "ollama-default: warm and unload_previous need one process that watches for all "
            "workers: run %r (or gunicorn -c python:ollama_default.proxy.gunicorn); here "
            "each worker reloads the file, and nothing is warmed or unloaded",
            RECOMMENDED_COMMAND,
        )
    return _SerialServerCheck(reloading)


class _SerialServerCheck:
    """Warns, on a worker's first request, when its server serves one request at a time.

    gunicorn's default sync worker does (PEP 3333: ``wsgi.multithread`` false, and no event
    loop behind it): each streaming reply then holds a whole worker for minutes. The
    environ says so whatever the server, with no look at its internals.
    """

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self._checked = False

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not self._checked:
            self._checked = True
            if not environ.get("wsgi.multithread"):
                _log.warning(
                    "this server serves one request at a time per worker (gunicorn's sync "
                    "worker?), so each streaming reply holds a whole worker; run %r instead, "
                    "or gunicorn with --worker-class gevent --worker-connections 1000",
                    RECOMMENDED_COMMAND,
                )
        return self.app(environ, start_response)
