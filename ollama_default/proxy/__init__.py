"""The standalone proxy: sockets, files and processes; nothing outside this package imports it.

(The composition lives in :mod:`~ollama_default.proxy.compose`, not ``app``: a submodule
called ``app`` would be this package's attribute ``app`` as soon as it is imported.)

``gunicorn ollama_default.proxy:app`` serves :data:`app`, built from the environment (and the
TOML file it names) the first time it is asked for (PEP 562), so that importing
``ollama_default.proxy.cli`` or any other submodule builds nothing. A bad configuration is one
line naming the problem, under gunicorn too (no traceback).

``gunicorn -c python:ollama_default.proxy.gunicorn ollama_default.proxy:app`` adds what
``ollama-default serve`` runs with: its settings, and the configuration checked once, in the
master, before any worker starts.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    app: WSGIApplication


def __getattr__(name: str) -> Any:
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from ..core.errors import ConfigError
    from .compose import app_from_environment

    try:
        built = app_from_environment(os.environ)
    except ConfigError as error:
        message = f"ollama-default: configuration error: {error}"
        if "gunicorn" in sys.modules:  # a worker loading the app: one line, no traceback
            from .gunicorn import app_import_error

            raise app_import_error(message) from None
        raise
    globals()["app"] = built  # built once: later lookups find it without this hook
    return built
