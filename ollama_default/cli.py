"""The ``ollama-default`` command: ``serve`` the proxy, ``check`` a configuration.

Testable as ``main([...])``, which returns the exit status.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from . import __version__
from .demo import DEMO_MODELS, demo_backend
from .errors import ConfigError
from .model_names import name_key
from .server import build_app
from .settings import DEFAULT_UPSTREAM, ENV_PREFIX, Settings, load_settings

if TYPE_CHECKING:
    import requests
    from _typeshed.wsgi import WSGIApplication

_log = logging.getLogger("gunicorn.error")

#: gunicorn settings fit for long streams; see docs/proxy.rst for the measurements.
SERVE_DEFAULTS: dict[str, Any] = {
    "bind": "127.0.0.1:8080",
    "workers": 2,
    "worker_class": "gevent",
    "worker_connections": 1000,
    "keepalive": 75,
    "graceful_timeout": 60,
    "control_socket_disable": True,
}
DEMO_ALIASES = {"llmodel": DEMO_MODELS[0], "embed": DEMO_MODELS[1]}
CHECK_TIMEOUT_S = 5.0


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the command line ``argv``; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    environ = dict(os.environ if environ is None else environ)
    if args.config:
        environ[ENV_PREFIX + "CONFIG"] = args.config
    try:
        settings = load_settings(environ)
    except ConfigError as error:
        print(f"ollama-default: configuration error: {error}", file=sys.stderr)
        return 2
    if args.command == "check":
        return check(settings)
    return serve(settings, args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ollama-default", description="A default model and model aliases for Ollama."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the proxy under gunicorn")
    check_parser = commands.add_parser("check", help="show each alias and its target's state")
    for command in (serve_parser, check_parser):
        command.add_argument("--config", metavar="FILE", help="TOML settings file")
    serve_parser.add_argument("--bind", default=SERVE_DEFAULTS["bind"], help="HOST:PORT")
    serve_parser.add_argument("--workers", type=int, default=SERVE_DEFAULTS["workers"])
    serve_parser.add_argument(
        "--worker-connections",
        type=int,
        default=SERVE_DEFAULTS["worker_connections"],
        help="streams one worker serves at once",
    )
    serve_parser.add_argument("--demo", action="store_true", help="serve the demo backend")
    serve_parser.add_argument(
        "--fallback-demo",
        action="store_true",
        help="serve the demo backend when no Ollama answers at the default address",
    )
    return parser


def serve(settings: Settings, args: argparse.Namespace) -> int:
    """Run the proxy under gunicorn until it is stopped."""
    try:
        from gunicorn.app.base import BaseApplication
    except ImportError:
        print("ollama-default: serve needs gunicorn: pip install 'ollama-default[proxy]'",
              file=sys.stderr)  # fmt: skip
        return 2
    demo = args.demo or (
        args.fallback_demo
        and settings.upstream == DEFAULT_UPSTREAM
        and not is_answering(DEFAULT_UPSTREAM)
    )
    if demo and not settings.aliases:
        settings = dataclasses.replace(settings, aliases=DEMO_ALIASES, default="llmodel")
    options = {**SERVE_DEFAULTS, "bind": args.bind, "workers": args.workers,
               "worker_connections": args.worker_connections}  # fmt: skip

    class Proxy(BaseApplication):  # type: ignore[misc]
        """gunicorn's documented way to serve an app object with settings in code."""

        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> WSGIApplication:
            if demo:
                why = "as asked" if args.demo else f"no Ollama answers at {DEFAULT_UPSTREAM}"
                _log.warning("ollama-default: serving the built-in demo backend (%s)", why)
                return build_app(settings, backend=demo_backend)
            _log.info("ollama-default: forwarding to %s", settings.upstream)
            return build_app(settings, max_connections=args.worker_connections)

    Proxy().run()
    return 0


def is_answering(url: str) -> bool:
    """Whether something accepts connections at ``url``'s host and port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=1.0):
            return True
    except OSError:
        return False


def check(settings: Settings) -> int:
    """Print each alias, its target, and whether the upstream has it installed and loaded.

    Exits 1 when the upstream cannot be reached or a target is not installed.
    """
    # Imported here, not with the module: ``serve`` runs gunicorn's gevent workers, which
    # patch ssl after the fork, and urllib3 imported in the master would hold unpatched ssl.
    import requests

    try:
        with requests.Session() as session:
            installed = _listed(session, settings.upstream + "/api/tags")
            loaded = _listed(session, settings.upstream + "/api/ps")
    except (requests.RequestException, ValueError, KeyError, TypeError) as error:
        print(f"ollama-default: upstream {settings.upstream} cannot be checked: {error}",
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"upstream {settings.upstream}: reachable")
    if not settings.aliases:
        print("no aliases configured")
    default = settings.alias_table.default
    rows = [("alias", "target", "installed", "loaded")]
    for alias, target in settings.aliases.items():
        key = name_key(target)
        shown = f"{alias} (default)" if default and alias == default.alias else alias
        rows.append((shown, target, _yes(key in installed), _yes(key in loaded)))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for row in rows if settings.aliases else []:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    missing = [t for t in settings.aliases.values() if name_key(t) not in installed]
    return 1 if missing else 0


def _listed(session: requests.Session, url: str) -> set[str]:
    response = session.get(url, timeout=CHECK_TIMEOUT_S)
    response.raise_for_status()
    return {name_key(model["name"]) for model in response.json()["models"]}


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


if __name__ == "__main__":
    sys.exit(main())
