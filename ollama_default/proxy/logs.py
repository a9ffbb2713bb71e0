"""Where the package's log goes, in which format, and the proxy's start-up summary.

Everything logs under the logger ``ollama_default`` (the access log,
:class:`~ollama_default.ops.access_log.AccessLog`, under ``ollama_default.access``), never
under gunicorn's, so an operator can route, silence or ship it on its own.
:func:`configure_logging` gives that logger its level, destination and format (readable
text, or one JSON object per line for log shippers) from the settings.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..core.endpoints import STORE_VERBS
from ..core.errors import ConfigError
from ..core.names import name_key
from .declaration import ENV_PREFIX
from .forwarder import basic_authorization, without_userinfo

if TYPE_CHECKING:
    from .config import Settings

LOGGER_NAME = "ollama_default"
_log = logging.getLogger(LOGGER_NAME)

# gunicorn's own error-log layout, so that both read as one log.
_TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
_TEXT_DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, message, and the event's fields.

    An access line carries its fields (``method``, ``path``, ``status``, ``alias``,
    ``model``, ``key``, ``duration_ms``, ``bytes``, ``ttfb_ms``, ``client``, ``refused``,
    ``error``, ``request_id``, ``client_left``) as members, so a log shipper needs no
    parsing.
    """

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        document.update(getattr(record, "fields", {}))
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False)


# The handler configure_logging installed, replaced (not added to) when it is called again.
_installed: list[logging.Handler] = []


def configure_logging(settings: Settings) -> None:
    """Send the package's log where ``settings`` say, at their level, in their format.

    Calling it again replaces what the previous call set up.

    :raises ConfigError: when the log file cannot be opened for appending.
    """
    logger = logging.getLogger(LOGGER_NAME)
    handler: logging.Handler
    if settings.log_file == "-":
        handler = logging.StreamHandler(sys.stderr)
    else:
        try:
            # Watched: reopened when logrotate moves the file away.
            handler = logging.handlers.WatchedFileHandler(settings.log_file)
        except OSError as error:
            raise ConfigError(
                f"log_file {settings.log_file!r} cannot be opened: {error.strerror}",
                key="log_file",
            ) from None
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT, _TEXT_DATE_FORMAT))
    while _installed:
        old = _installed.pop()
        logger.removeHandler(old)
        old.close()
    _installed.append(handler)
    logger.addHandler(handler)
    logger.setLevel(settings.log_level.upper())
    logger.propagate = False


def startup_summary(
    settings: Settings,
    *,
    upstream_answers: bool | None,
    demo: str | None,
    workers: str | None,
    installed: Mapping[str, str] | None = None,
) -> list[str]:
    """Return the lines the proxy logs when it starts.

    :param upstream_answers: whether the upstream accepted a connection (None: not tried).
    :param installed: the models the upstream lists, name key -> name (None: not known);
        each alias then says whether its target is installed.
    :param demo: why the demo backend is served instead of the upstream, or None.
    :param workers: how many workers of which kind serve, or None when unknown.
    """
    if demo is not None:
        backend = "serving the built-in demo backend"  # why: in the warning that follows
    else:
        state = {True: " (answering)", False: " (not answering yet)", None: ""}[upstream_answers]
        backend = f"forwarding to {without_userinfo(settings.upstream)}{state}"
        if basic_authorization(settings.upstream) is not None:
            backend += (
                ", with the user and password of its URL as Basic Authorization in place of "
                "the clients'"
            )
    default = settings.alias_table.default.alias if settings.alias_table.default else None
    aliases = ", ".join(
        f"{alias} -> {route.target}"
        + (f" ({route.params.describe()})" if route.params else "")
        + _alias_notes(alias == default, route.target, installed)
        for alias, route in settings.alias_table.items()
    )
    access = "off"
    if settings.access_log:
        where = "standard error" if settings.log_file == "-" else settings.log_file
        access = f"on, {settings.log_format}, to {where}"
    return [
        f"ollama-default {__version__}: {backend}",
        f"aliases: {aliases or 'none'}",
        f"prefix: {settings.prefix or 'none'}; workers: {workers or 'unknown'}",
        f"access log: {access}; level {settings.log_level}",
        *access_summary(settings),
    ]


def access_summary(settings: Settings) -> list[str]:
    """The start-up lines about access (#14): the model store (loudly, when it is closed,
    the default) and the API keys."""
    opened = settings.open_model_store
    closed = [verb for verb in STORE_VERBS if verb not in opened]
    if not opened:
        store = (
            f"model store: CLOSED to clients ({', '.join(closed)} answer 403); open verbs "
            "with open_model_store, or per API key"
        )
    elif closed:
        store = f"model store: open to every client for {', '.join(opened)}; closed for " + (
            ", ".join(closed)
        )
    else:
        store = "model store: OPEN to every client (pull, push, create, copy, delete, blobs)"
    if settings.api_keys_file:
        keys = (
            f"API keys: required; {len(settings.api_keys)} from "
            f"{ENV_PREFIX}API_KEYS, and those of {settings.api_keys_file}"
        )
    elif settings.api_keys:
        keys = f"API keys: required; {len(settings.api_keys)} from {ENV_PREFIX}API_KEYS"
    else:
        keys = "API keys: none: any client that reaches the proxy may use it"
    if settings.upstream_api_key:
        keys += "; an API key is sent to the upstream in place of the clients'"
    return [store, keys]


def missing_targets(settings: Settings, installed: Mapping[str, str]) -> list[str]:
    """Return one line for each alias whose target the upstream does not list."""
    return [
        f"alias {alias!r}: its target {target!r} is not installed upstream, so clients do not "
        f"see the alias listed and requests for it fail: run ollama pull {target}"
        for alias, target in ((a, route.target) for a, route in settings.alias_table.items())
        if name_key(target) not in installed
    ]


def log_startup(
    settings: Settings,
    *,
    upstream_answers: bool | None,
    demo: str | None = None,
    workers: str | None = None,
    installed: Mapping[str, str] | None = None,
) -> None:
    """Log :func:`startup_summary` at INFO, and :func:`missing_targets` at WARNING."""
    for line in startup_summary(
        settings,
        upstream_answers=upstream_answers,
        demo=demo,
        workers=workers,
        installed=installed,
    ):
        _log.info(line)
    for line in missing_targets(settings, installed) if installed is not None else []:
        _log.warning("ollama-default: %s", line)


def _alias_notes(is_default: bool, target: str, installed: Mapping[str, str] | None) -> str:
    notes = ["default"] if is_default else []
    if installed is not None:
        notes.append("installed" if name_key(target) in installed else "not installed")
    return f" ({', '.join(notes)})" if notes else ""
