"""The gunicorn entry point: ``gunicorn ollama_default.proxy:app``.

Builds the proxy from the environment (and the TOML file it names) at import, and nothing
else. A bad configuration stops gunicorn with one line naming the problem; the sync worker,
which holds one stream per worker, gets a warning saying what to run instead.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .logs import configure_logging, log_startup
from .server import build_app
from .settings import Settings, load_settings

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

#: What to run instead of gunicorn's one-stream-per-worker default (see docs/proxy.rst).
RECOMMENDED_COMMAND = "ollama-default serve"
#: How long a worker after the first waits for gunicorn to stop it on a bad configuration.
WAIT_FOR_HALT_S = 10.0

_log = logging.getLogger("ollama_default")


def _gunicorn_worker() -> Any | None:
    """Return the gunicorn worker importing this module, if one is.

    gunicorn offers an app no handle on its configuration, but the worker that loads the
    app is on the call stack of this import.
    """
    workers = sys.modules.get("gunicorn.workers.base")
    frame = sys._getframe(1) if workers is not None else None
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, workers.Worker):  # type: ignore[union-attr]
            return candidate
        frame = frame.f_back
    return None


def _load() -> tuple[Settings, WSGIApplication]:
    try:
        settings = load_settings(os.environ)
        configure_logging(settings)
        return settings, build_app(settings)
    except ConfigError as error:
        message = f"ollama-default: configuration error: {error}"
        if "gunicorn" in sys.modules:
            from gunicorn.errors import AppImportError

            worker = _gunicorn_worker()
            if worker is not None and worker.age > 1:
                # Every worker reads the same settings, but gunicorn prints each one's
                # AppImportError, and a traceback when a second one exits while it halts
                # (benoitc/gunicorn#2186): the first worker reports, the others wait for
                # the SIGTERM gunicorn's halt sends them.
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                if not worker.alive:  # the SIGTERM came while this worker was loading
                    sys.exit(0)
                time.sleep(WAIT_FOR_HALT_S)
            # gunicorn prints this one line and stops, instead of a traceback per worker.
            raise AppImportError(message) from None
        raise


_settings, app = _load()

_worker = _gunicorn_worker()
if _worker is not None and _worker.age == 1:
    # Every worker loads the app; the first one says what the proxy serves.
    _cfg = _worker.cfg
    log_startup(
        _settings,
        upstream_answers=None,
        workers=f"{_cfg.workers} x {_cfg.worker_class_str} ({_cfg.worker_connections} connections)",
    )
if _worker is not None and type(_worker).__name__ == "SyncWorker":
    _log.warning(
        "gunicorn's sync worker serves one request at a time per worker, "
        "so each streaming reply holds a whole worker; run %r instead, or gunicorn with "
        "--worker-class gevent --worker-connections 1000",
        RECOMMENDED_COMMAND,
    )
