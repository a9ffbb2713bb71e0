"""The ``ollama-default`` command: ``serve`` the proxy, ``check`` a configuration, ``switch``
an alias to another model, show a running proxy's ``status``.

Testable as ``main([...])``, which returns the exit status: 0 when all is well (or
``serve`` was stopped), 1 when ``serve`` cannot listen or ``check`` finds a problem, 2 for
a mistake in the command line or the configuration. Every failure is one line on standard
error that says what is wrong and how to fix it.

Settings come from flags, the environment and a TOML file, in that order
(:mod:`ollama_default.proxy.config`); gunicorn's own settings from ``serve``'s flags,
``GUNICORN_CMD_ARGS`` and this module's :data:`SERVE_DEFAULTS`, in that order.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import errno
import getpass
import http.client
import importlib
import ipaddress
import json
import logging
import os
import re
import runpy
import secrets
import shlex
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn
from urllib.parse import urlsplit

from .. import __version__
from ..core.errors import ConfigError
from ..core.names import name_key
from ..demo import DEMO_MODELS, demo_backend
from ..ops.auth import hash_key, keys_from_text
from ..ops.status import format_bytes, format_duration, format_expiry, format_time
from .compose import build_app
from .config import (
    CONFIG_VARIABLE,
    DEFAULT_SOURCE,
    DEFAULT_UPSTREAM,
    SETTINGS,
    LoadedSettings,
    SecretKeys,
    SecretText,
    Settings,
    load_settings_with_sources,
)
from .declaration import SWITCH, Declared, flag_name, value_at
from .forwarder import DEFAULT_MAX_CONNECTIONS, basic_authorization, without_userinfo
from .logs import configure_logging, log_startup
from .pool import ConnectionPool
from .reload import (
    Reloading,
    SettingsSource,
    coordinated,
    on_exit,
    on_reload,
    process_recorder,
    start_coordinator,
)
from .slots import install_shared_counts

if TYPE_CHECKING:
    import requests
    from _typeshed.wsgi import WSGIApplication

_log = logging.getLogger(__name__)

EXIT_OK = 0
#: ``serve`` cannot listen; ``check`` found the upstream down or a target missing.
EXIT_FAILURE = 1
#: A mistake in the command line or the configuration.
EXIT_USAGE = 2
#: Stopped by Ctrl-C before gunicorn took over (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130

DEFAULT_PORT = 8080
#: gunicorn settings fit for long streams; see docs/proxy.rst for the measurements.
SERVE_DEFAULTS: dict[str, Any] = {
    "bind": f"127.0.0.1:{DEFAULT_PORT}",
    "workers": 2,
    # gunicorn's gevent worker, stopping at once when no request is in flight.
    "worker_class": "ollama_default.proxy.gunicorn.GeventWorker",
    # As many as the forwarder keeps idle connections for, so none is thrown away.
    "worker_connections": DEFAULT_MAX_CONNECTIONS,
    "keepalive": 75,
    "graceful_timeout": 60,
    "control_socket_disable": True,
}
GUNICORN_CMD_ARGS = "GUNICORN_CMD_ARGS"
#: The signals that stop a gunicorn worker: SIGTERM gracefully, SIGINT and SIGQUIT at once.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
DEMO_ALIASES = {"llmodel": DEMO_MODELS[0], "embed": DEMO_MODELS[1]}
CHECK_TIMEOUT_S = 5.0
#: How to add an alias, for the messages that find none.
ADD_ALIAS_HINT = (
    f"add one with --alias llmodel=MODEL (or {SETTINGS['aliases'].variables_shown}, or [aliases] "
    "in the config file); 'ollama list' shows the installed models"
)


class Flag(NamedTuple):
    """One command-line flag, declared once for the parser, ``--help`` and the docs."""

    names: tuple[str, ...]
    #: What it does, for ``--help`` and the docs.
    meaning: str
    #: Its default, as shown.
    default: str
    #: Where else it can be set: ``env OLLAMA_DEFAULT_UPSTREAM``, or a note.
    origin: str
    #: Keyword arguments for :meth:`argparse.ArgumentParser.add_argument`.
    options: Mapping[str, Any]

    @property
    def help(self) -> str:
        """The ``--help`` text: the meaning, then the default and the origin."""
        where = f"; {self.origin}" if self.origin else ""
        return f"{self.meaning} (default: {self.default}{where})".replace("%", "%%")


def _shown(value: object) -> str:
    if isinstance(value, SecretKeys):
        return f"{len(value)} keys (not shown)"
    if isinstance(value, SecretText):
        return "set (not shown)" if value else "none"
    if value in (None, "", {}, ()):
        return "none"
    if isinstance(value, tuple):
        return ", ".join(map(str, value))
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def setting_flag(item: Declared) -> Flag:
    """Return the flag of a declared setting, as its declaration describes it."""
    kind, option = item.setting.kind, item.setting.flag
    options: dict[str, Any] = {"dest": item.key, "default": None}
    if option is not None and option.metavar:
        options["metavar"] = option.metavar
    if kind.choices:
        options["choices"] = kind.choices
    if kind is SWITCH:
        options["action"] = argparse.BooleanOptionalAction
    elif option is not None and option.collect is not None:
        options["action"] = "append"
    elif kind.parse is not str:
        options["type"] = _flag_text(item)
    return Flag(
        (item.flag,),
        item.flag_help,
        _shown(item.default),
        f"env {item.variables_shown}",
        options,
    )


def _flag_text(item: Declared) -> Callable[[str], Any]:
    kind = item.setting.kind

    def parse(found: str) -> Any:
        try:
            return kind.parse(found)
        except ValueError:
            # argparse's one line: "argument --x: 'soon' is not a number".
            raise argparse.ArgumentTypeError(f"{found!r} is not {kind.expected}") from None

    return parse


def _gunicorn(key: str, meaning: str, **options: Any) -> Flag:
    name = flag_name(key)
    return Flag(
        (name,),
        meaning,
        _shown(SERVE_DEFAULTS[key]),
        f"gunicorn's own {name}, also read from {GUNICORN_CMD_ARGS}",
        {"dest": key, "default": None, **options},
    )


#: The settings ``check`` reads, whose flags it takes; ``serve`` takes every setting's flag.
CHECK_SETTINGS = ("upstream", "aliases", "default")
_FLAGGED = [item for item in SETTINGS.values() if item.setting.flag is not None]
#: The flags both commands take.
SETTINGS_FLAGS = (
    Flag(("--config",), "TOML settings file", "none", f"env {CONFIG_VARIABLE}",
         {"metavar": "FILE"}),
    *(setting_flag(item) for item in _FLAGGED if item.key in CHECK_SETTINGS),
)  # fmt: skip
#: The flags only ``serve`` takes.
SERVE_FLAGS = (
    *(setting_flag(item) for item in _FLAGGED if item.key not in CHECK_SETTINGS),
    _gunicorn("bind", f"where to listen: HOST:PORT, HOST (port {DEFAULT_PORT}), [IPV6]:PORT, "
              "unix:PATH or fd://N; repeat to listen on several", action="append",
              metavar="ADDRESS"),
    _gunicorn("workers", "worker processes; about one per CPU core", type=int, metavar="N"),
    _gunicorn("worker_connections", "requests (streams) one worker serves at once",
              type=int, metavar="N"),
    Flag(("--demo",), "serve the built-in demo backend instead of an upstream", "off", "",
         {"action": "store_true"}),
    Flag(("--fallback-demo",), "serve the demo backend when nothing is configured (no "
         f"aliases, no upstream) and no Ollama answers at {DEFAULT_UPSTREAM}; decided at "
         "start-up", "off", "", {"action": "store_true"}),
)  # fmt: skip
#: The flags ``status`` takes.
STATUS_FLAGS = (
    SETTINGS_FLAGS[0],  # --config: where the prefix is set
    Flag(("--url",), "the running proxy's base URL, with its prefix if it has one",
         "http:// and serve's first --bind, with the prefix setting", "", {"metavar": "URL"}),
    Flag(("--json",), "print the status document as the proxy sent it", "off", "",
         {"action": "store_true"}),
)  # fmt: skip
#: The flags of ``hash-key`` (#14).
HASH_KEY_FLAGS = (
    Flag(("--new",), "make a new random key, and print it with its hash", "off", "",
         {"action": "store_true"}),
)  # fmt: skip
COMMAND_FLAGS = {
    "serve": SETTINGS_FLAGS + SERVE_FLAGS,
    "check": SETTINGS_FLAGS,
    "status": STATUS_FLAGS,
    "hash-key": HASH_KEY_FLAGS,
}
#: The gunicorn settings that flags set.
_GUNICORN_KEYS = [
    key for flag in COMMAND_FLAGS["serve"] if (key := flag.options.get("dest")) in SERVE_DEFAULTS
]


_ABOUT = {
    "serve": "Run the proxy under gunicorn.",
    "check": "Show the settings and where each came from, then each alias and its target's "
    "state in Ollama.",
    "status": "Show what a running proxy uses: its aliases and their targets' state in "
    "Ollama, its config file's version, the last reload error and switch, refused requests.",
    "hash-key": "Print the hash of an API key read from standard input, for api_keys_file.",
}
_EPILOG = {
    "serve": "Settings come from these flags, then OLLAMA_DEFAULT_* variables, then the "
    f"config file. gunicorn's other settings come from {GUNICORN_CMD_ARGS} (such as "
    f"{GUNICORN_CMD_ARGS}='--timeout 120'); the flags above win over it. Exit status: 0 "
    "once stopped, 1 when it cannot listen, 2 for a mistake in the command line or settings.",
    "check": "Exit status: 0 when every target is installed, 1 when the upstream does not "
    "answer or a target is not installed, 2 for a mistake in the command line or settings.",
    "status": "It asks the proxy's /-/status, which answers clients in status_networks only "
    "(this machine, by default). Exit status: 0 when the proxy answered, 1 when nothing "
    "answers or not with a status, 2 for a mistake in the command line or settings.",
    "hash-key": "The key is read from standard input (asked for, unechoed, at a terminal); "
    'the hash goes in the key file as hash = "sha256:...". Exit status: 0, or 2 for '
    "text that is not a key.",
}


_SWITCH_ABOUT = (
    "Point an alias at another model: rewrite its target in the config file atomically, "
    "keeping the rest of the file; the running proxy follows within two seconds."
)
_SWITCH_EPILOG = (
    "Exit status: 0 once the file is rewritten, 1 when the upstream does not have TARGET "
    "(without --force), does not answer, or cannot load it (--warm), 2 for a mistake in the "
    "command line or the configuration."
)


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake in one line instead of the usage and the mistake."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the command line ``argv``; return the exit status."""
    args = parse_command_line(argv)
    environ = os.environ if environ is None else environ
    if args.command == "hash-key":
        return hash_key_command(new=args.new)
    # Commands that read the settings their own way (a file to edit, a proxy to ask).
    standalone = {"switch": switch, "status": status}.get(args.command)
    if standalone is not None:
        try:
            return standalone(args, environ)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
    try:
        try:
            loaded = load_settings_with_sources(
                environ, setting_flags(args), config_file=args.config
            )
        except ConfigError as error:
            return _fail(EXIT_USAGE, f"configuration error: {error}")
        if args.command == "check":
            return check(loaded)
        return serve(loaded, args, environ)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ollama-default", description="A default model and model aliases for Ollama."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, flags in COMMAND_FLAGS.items():
        subparser = commands.add_parser(
            command, help=_ABOUT[command], description=_ABOUT[command], epilog=_EPILOG[command]
        )
        for flag in flags:
            subparser.add_argument(*flag.names, help=flag.help, **flag.options)
    subparser = commands.add_parser(
        "switch", help=_SWITCH_ABOUT, description=_SWITCH_ABOUT, epilog=_SWITCH_EPILOG
    )
    subparser.add_argument("alias", metavar="ALIAS", help="the alias to point elsewhere")
    subparser.add_argument("target", metavar="TARGET", help="the model it is to stand for")
    subparser.add_argument(
        "--config",
        metavar="FILE",
        help=f"the TOML file to rewrite (default: env {CONFIG_VARIABLE})",
    )
    subparser.add_argument(
        "--warm", action="store_true",
        help="load TARGET on the upstream first and wait until it is loaded, then rewrite",
    )  # fmt: skip
    subparser.add_argument(
        "--force", action="store_true",
        help="rewrite even when the upstream does not have TARGET (or does not answer)",
    )  # fmt: skip
    return parser


def setting_flags(args: argparse.Namespace) -> dict[str, Any]:
    """Return setting key -> value for each setting a flag in ``args`` sets.

    :raises ConfigError: for a value a repeated flag's declaration cannot collect.
    """
    flags: dict[str, Any] = {}
    for item in _FLAGGED:
        value = getattr(args, item.key, None)  # None: not given, or not this command's
        if value is None:
            continue
        collect = item.setting.flag.collect if item.setting.flag is not None else None
        flags[item.key] = value if collect is None else collect(value)
    return flags


def parse_command_line(argv: Sequence[str] | None) -> argparse.Namespace:
    """Return what the command line ``argv`` says.

    :raises SystemExit: for a mistake in it (status 2, after one line on standard error),
        or after ``--help`` (status 0).
    """
    return _parser().parse_args(argv)


def hash_key_command(*, new: bool) -> int:
    """Print the hash of a key read from standard input, or of a new random key, and the
    new key itself."""
    if new:
        key = secrets.token_urlsafe(32)  # 256 bits
        print(f"key:  {key}")
        print(f"hash: {hash_key(key)}")
        return EXIT_OK
    key = getpass.getpass("API key: ") if sys.stdin.isatty() else sys.stdin.readline().strip()
    try:
        keys_from_text([key], key="hash-key")
    except ConfigError as error:
        return _fail(EXIT_USAGE, str(error))
    print(hash_key(key))
    return EXIT_OK


def _fail(status: int, message: str) -> int:
    print(f"ollama-default: {message}", file=sys.stderr)
    return status


# --------------------------------------------------------------------------------------
# serve


def serve(loaded: LoadedSettings, args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run the proxy under gunicorn until it is stopped."""
    try:
        from gunicorn.app.base import Application
    except ImportError:
        return _fail(
            EXIT_USAGE,
            "serve needs gunicorn: in a clone of ollama-default, pip install -e '.[proxy]'",
        )
    settings, sources = loaded
    explicit = {key: getattr(args, key) for key in _GUNICORN_KEYS if getattr(args, key) is not None}
    try:
        options = gunicorn_options(explicit, environ, trusted_proxies=settings.trusted_proxies)
    except ConfigError as error:
        return _fail(EXIT_USAGE, f"configuration error: {error}")
    if not options.get("reuse_port"):
        for address in options["bind"]:
            problem = listen_problem(address)
            if problem is not None:
                return _fail(EXIT_FAILURE, problem)
    demo = demo_reason(
        demo=args.demo,
        fallback_demo=args.fallback_demo,
        settings=settings,
        sources=sources,
        ollama_answers=lambda: is_answering(DEFAULT_UPSTREAM),
    )
    if demo is not None and not settings.aliases:
        settings = dataclasses.replace(settings, aliases=DEMO_ALIASES, default="llmodel")
    backend = None if demo is None else demo_backend
    source = SettingsSource(dict(environ), setting_flags(args), args.config)

    def build(loaded: LoadedSettings, pool: ConnectionPool | None) -> WSGIApplication:
        each, sources = loaded
        if demo is not None and not each.aliases:
            each = dataclasses.replace(each, aliases=DEMO_ALIASES, default="llmodel")
        return build_app(
            each,
            backend=backend,
            max_connections=options["worker_connections"],
            pool=pool,
            sources=sources,
            config_path=source.path,
            recorder=process_recorder(),
        )

    class Proxy(Application):  # type: ignore[misc]
        """gunicorn's way to serve an app object with settings in code.

        An ``Application``, so what ``GUNICORN_CMD_ARGS`` asks of gunicorn's runner
        (``--check-config``, ``--daemon``, ``--pythonpath``) works as under ``gunicorn``.
        """

        #: What serve's worker reads itself (the head deadline, the prefix).
        proxy_settings = settings

        def load_config(self) -> None:
            from .gunicorn import child_exit

            for key, value in options.items():
                self.cfg.set(key, value)
            # A dead worker's slots of the concurrency limits are given back.
            self.cfg.set("child_exit", child_exit)
            # The master watches the config file for every worker (proxy/reload.py); set
            # here, so that gunicorn's SIGHUP, which loads this config again, keeps them.
            self.cfg.set("when_ready", lambda server: start_coordinator(server, source))
            self.cfg.set("on_reload", on_reload)
            self.cfg.set("on_exit", on_exit)
            if "chdir" in options:
                self.chdir()

        def load(self) -> WSGIApplication:
            # In each worker (or the master, with --preload): the table the master
            # published last, so a worker started by SIGHUP serves the file as it is now.
            following = coordinated()
            return Reloading(
                build,
                source,
                follow=following[0] if following else None,
                max_connections=options["worker_connections"],
                uses_pool=backend is None,
            )

    application = Proxy(prog="ollama-default serve")

    try:
        configure_logging(settings)  # in the master; the workers inherit it
    except ConfigError as error:
        return _fail(EXIT_USAGE, f"configuration error: {error}")
    worker_class = str(options["worker_class"])
    kind = "gevent" if worker_class.endswith("GeventWorker") else worker_class
    probe = UpstreamProbe(None, None) if demo else probe_upstream(settings.upstream)
    log_startup(
        settings,
        upstream_answers=probe.answers,
        installed=probe.installed,
        demo=demo,
        workers=f"{options['workers']} x {kind} ({options['worker_connections']} connections)",
    )
    log_start_up_warnings(settings, demo=demo)
    os.register_at_fork(after_in_child=exit_on_stop_signals)
    install_shared_counts()  # before the fork: every worker counts in the same slots
    application.run()
    return EXIT_OK


def exit_on_stop_signals() -> None:
    """Make this process exit at once on a stop signal, until a gunicorn worker sets its own.

    ``serve`` registers it with :func:`os.register_at_fork`, so it runs in each worker
    before anything else does. Without it, a worker still booting (gevent's patching takes
    a few hundred milliseconds) has the master's handlers, which only queue the signal in
    the worker's copy of the master's queue: the stop is lost, and the master waits out
    ``graceful_timeout`` (60 s) before killing the worker.
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, _exit_before_boot)


def _exit_before_boot(signum: int, frame: FrameType | None) -> None:
    # At once, with no exception: one raised here, in the middle of gevent's patching or an
    # import, can be swallowed there, and the worker would boot and serve on. It has
    # accepted nothing yet, so there is nothing to finish or flush.
    os._exit(0)


def gunicorn_trust(trusted_proxies: Sequence[str]) -> dict[str, Any]:
    """Return the gunicorn settings that say whose headers it believes: ``trusted_proxies``.

    gunicorn lets the peers in ``forwarded_allow_ips`` (by default 127.0.0.1 and ::1) set
    ``wsgi.url_scheme`` with ``X-Forwarded-Proto`` and ``SCRIPT_NAME`` with a header of
    that name, and every peer on a unix socket too. The forwarder believes the same peers
    about the client (their ``X-Forwarded-*``), so gunicorn gets that one list; with nobody
    trusted, it believes no such header from any peer, unix sockets included.
    """
    options: dict[str, Any] = {"forwarded_allow_ips": ",".join(trusted_proxies)}
    if not trusted_proxies:
        options |= {"secure_scheme_headers": {}, "forwarder_headers": ""}
    return options


def gunicorn_options(
    flags: Mapping[str, Any], environ: Mapping[str, str], *, trusted_proxies: Sequence[str] = ()
) -> dict[str, Any]:
    """Return gunicorn's settings for ``serve``, checked, with every address normalised.

    :data:`SERVE_DEFAULTS` and :func:`gunicorn_trust`, then what ``GUNICORN_CMD_ARGS``
    sets (and the gunicorn config file it names with ``--config``), then ``flags``: as
    ``gunicorn`` orders its config file, that variable and its command line.

    :param flags: gunicorn setting -> value, from ``serve``'s own flags.
    :param trusted_proxies: the ``trusted_proxies`` setting.
    :raises ConfigError: for a setting gunicorn refuses, a worker count below 1, an
        address that is not one, or gunicorn's ``forwarded_allow_ips`` set (from
        ``GUNICORN_CMD_ARGS`` or ``FORWARDED_ALLOW_IPS``) in place of ``trusted_proxies``.
    """
    from gunicorn.config import Config

    trust_instead = (
        "set trusted_proxies (OLLAMA_DEFAULT_TRUSTED_PROXIES, --trusted-proxies) instead: "
        "serve gives it to gunicorn, and the proxy believes the same peers"
    )
    if "FORWARDED_ALLOW_IPS" in environ:  # the default of gunicorn's forwarded_allow_ips
        raise ConfigError(
            f"FORWARDED_ALLOW_IPS is gunicorn's; {trust_instead}",
            key="forwarded_allow_ips",
            source="FORWARDED_ALLOW_IPS",
        )
    config = Config(prog="ollama-default serve")
    options = dict(SERVE_DEFAULTS) | gunicorn_trust(trusted_proxies)
    sources = dict.fromkeys(options, DEFAULT_SOURCE)
    command_line = environ.get(GUNICORN_CMD_ARGS, "")
    if command_line.strip():
        given, given_sources = _gunicorn_cmd_args(config, command_line)
        if "forwarded_allow_ips" in given:
            source = given_sources["forwarded_allow_ips"]
            raise _option_error(
                "forwarded_allow_ips", source, f"gunicorn's forwarded_allow_ips: {trust_instead}"
            )
        options.update(given)
        sources.update(given_sources)
    options.update(flags)
    sources.update({key: flag_name(key) for key in flags})
    for key in ("workers", "worker_connections"):
        value = options[key]
        if not isinstance(value, int) or value < 1:
            raise _option_error(
                key, sources[key], f"{flag_name(key)} {value!r} is not a count: give 1 or more"
            )
    binds = options["bind"]
    binds = [binds] if isinstance(binds, str) else list(binds)
    try:
        options["bind"] = [normalise_address(address) for address in binds]
    except ValueError as error:
        raise _option_error("bind", sources["bind"], str(error)) from None
    for key, value in options.items():
        try:
            config.set(key, value)
        except Exception as error:  # gunicorn's validators raise all kinds
            raise _option_error(key, sources[key], f"gunicorn's {key} {value!r}: {error}") from None
    return options


def _gunicorn_cmd_args(config: Any, command_line: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Return the settings ``GUNICORN_CMD_ARGS`` gives, and where each came from."""

    def refuse(message: str) -> NoReturn:
        raise ConfigError(f"{GUNICORN_CMD_ARGS}: {message}", source=GUNICORN_CMD_ARGS)

    parser = config.parser()
    parser.error = refuse  # gunicorn's parser is plain argparse: it would print and exit
    try:
        words = shlex.split(command_line)
    except ValueError as error:  # an unclosed quote
        refuse(str(error))
    parsed = vars(parser.parse_args(words))
    if parsed.pop("args"):
        refuse("names an app; ollama-default serve serves its own (run gunicorn for another)")
    given: dict[str, Any] = {}
    sources: dict[str, str] = {}
    location = parsed.pop("config", None)
    if location:
        where = f"gunicorn config file {location!r} (from {GUNICORN_CMD_ARGS})"
        try:
            if location.startswith("python:"):
                namespace = vars(importlib.import_module(location[len("python:") :]))
            else:
                namespace = runpy.run_path(location.removeprefix("file:"))
        except Exception as error:  # the file is Python: anything can go wrong in it
            raise ConfigError(f"{where} cannot be loaded: {error}", source=where) from None
        given.update({key: value for key, value in namespace.items() if key in config.settings})
        sources.update(dict.fromkeys(given, where))
    for key, value in parsed.items():
        if value is not None:
            given[key] = value
            sources[key] = GUNICORN_CMD_ARGS
    return given, sources


def _option_error(key: str, source: str, message: str) -> ConfigError:
    where = "" if source in (DEFAULT_SOURCE, flag_name(key)) else f" (set by {source})"
    return ConfigError(f"{message}{where}", key=key, source=source)


def normalise_address(address: str) -> str:
    """Return a gunicorn ``--bind`` address in full, with port 8080 where none is given.

    Accepts ``HOST:PORT``, ``HOST``, ``[IPV6]:PORT``, ``[IPV6]``, ``tcp://`` before any of
    these, ``unix:PATH`` and ``fd://N`` (gunicorn's forms).

    :raises ValueError: saying what is wrong and what to give instead.
    """
    problem = f"--bind {address!r}"
    example = f"give HOST:PORT, such as 127.0.0.1:{DEFAULT_PORT}"
    if re.match(r"unix:(//)?", address):
        if not re.split(r"unix:(//)?", address)[-1]:
            raise ValueError(f"{problem} names no socket file: give unix:/PATH/TO/SOCKET")
        return address
    if address.startswith("fd://"):
        number = address[len("fd://") :]
        if not number.isdigit():
            raise ValueError(f"{problem}: {number!r} is not a file descriptor number")
        try:
            os.fstat(int(number))
        except OSError:
            raise ValueError(f"{problem}: file descriptor {number} is not open") from None
        return address
    rest = address.removeprefix("tcp://")
    if rest.startswith("["):
        host, bracket, tail = rest[1:].partition("]")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{problem}: {host!r} is not an IPv6 address") from None
        if not bracket or (tail and not tail.startswith(":")):
            raise ValueError(f"{problem} is not an address: give [IPV6]:PORT, such as [::1]:8080")
        port = _port(problem, tail[1:]) if tail else DEFAULT_PORT
        return f"[{host}]:{port}"
    if rest.count(":") > 1:
        raise ValueError(f"{problem}: put an IPv6 address in brackets, such as [::1]:8080")
    host, colon, port_text = rest.partition(":")
    if not host and not colon:
        raise ValueError(f"{problem} is empty: {example}")
    port = _port(problem, port_text) if colon else DEFAULT_PORT
    return f"{host}:{port}"


def _port(problem: str, text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(
            f"{problem}: {text!r} is not a port number from 1 to 65535 "
            f"(give HOST:PORT, such as 127.0.0.1:{DEFAULT_PORT})"
        )
    return int(text)


def listen_problem(address: str) -> str | None:
    """Return why ``serve`` cannot listen at ``address`` (normalised), or None if it can.

    Binds a socket there and closes it, as gunicorn binds (``SO_REUSEADDR``), so that a
    port in use is one line at once, not gunicorn's five retries a second apart.
    """
    if address.startswith(("unix:", "fd://")):
        return None  # a socket file gunicorn replaces; a socket already bound
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    cannot = f"cannot listen on {address}"
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, int(port)))
    except socket.gaierror as error:
        return (
            f"{cannot}: host {host!r} is not known ({error.strerror}); give an address "
            "such as 127.0.0.1, or 0.0.0.0 for every interface"
        )
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            return (
                f"{cannot}: the address is already in use; stop what listens there, "
                "or give another port with --bind"
            )
        if error.errno == errno.EACCES:
            return (
                f"{cannot}: permission denied (ports below 1024 need privileges); "
                "give a port from 1024 up with --bind"
            )
        if error.errno == errno.EADDRNOTAVAIL:
            return (
                f"{cannot}: no network interface has this address; give one of this "
                "machine's addresses, 127.0.0.1, or 0.0.0.0 for every interface"
            )
        return f"{cannot}: {error.strerror or error}"
    return None


def demo_reason(
    *,
    demo: bool,
    fallback_demo: bool,
    settings: Settings,
    sources: Mapping[str, str],
    ollama_answers: Callable[[], bool],
) -> str | None:
    """Say why ``serve`` serves the demo backend, or return None: it forwards to the upstream.

    ``--demo`` always does. ``--fallback-demo`` does only when nothing is configured (no
    aliases, no upstream from any source) and nothing answers at the default upstream, so
    a configured proxy forwards (and answers 502 while Ollama is down). Decided once, at
    start-up.

    :param ollama_answers: whether something answers at the default upstream; asked only
        when the answer decides.
    """
    if demo:
        return "as asked (--demo)"
    if not fallback_demo or settings.aliases or sources["upstream"] != DEFAULT_SOURCE:
        return None
    if ollama_answers():
        return None
    return (
        f"nothing is configured and no Ollama answers at {DEFAULT_UPSTREAM}; start Ollama "
        "and restart to forward to it"
    )


def log_start_up_warnings(settings: Settings, *, demo: str | None) -> None:
    """Warn, once in the master, about a proxy that may not do what its operator expects.

    :param demo: why the demo backend is served (:func:`demo_reason`), or None.
    """
    for conflict in settings.alias_table.load_time_conflicts():
        _log.warning("ollama-default: %s", conflict)
    if demo is not None:
        _log.warning("ollama-default: serving the built-in demo backend: %s", demo)
    elif not settings.aliases:
        _log.warning(
            "ollama-default: no aliases configured: requests pass through to %s unchanged, and "
            "one that names no model gets Ollama's own error 'model is required'",
            without_userinfo(settings.upstream),
        )
        _log.warning("ollama-default: %s", ADD_ALIAS_HINT)


class UpstreamProbe(NamedTuple):
    """What the upstream said at start-up."""

    #: Whether it accepted a connection (None: not tried).
    answers: bool | None
    #: The models it lists, name key -> name; None when it did not list them.
    installed: dict[str, str] | None


#: The longest wait for each step of the start-up probe: the connection, the reply.
PROBE_TIMEOUT_S = 2.0


def probe_upstream(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> UpstreamProbe:
    """Ask the upstream at ``url`` which models it has installed (``GET /api/tags``).

    For the start-up log: never raises; an upstream that does not answer, or not with a
    list of models, is said so.
    """
    parts = urlsplit(url)
    connection_type = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_type(parts.hostname or "", parts.port, timeout=timeout_s)
    headers = {"Accept": "application/json"}
    authorization = basic_authorization(url)
    if authorization is not None:
        headers["Authorization"] = authorization
    try:
        try:
            connection.connect()
        except OSError:
            return UpstreamProbe(False, None)
        connection.request("GET", parts.path.rstrip("/") + "/api/tags", headers=headers)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            return UpstreamProbe(True, None)
        models = json.loads(body)["models"]
        return UpstreamProbe(True, {name_key(model["name"]): model["name"] for model in models})
    except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
        return UpstreamProbe(True, None)
    finally:
        connection.close()


def is_answering(url: str) -> bool:
    """Whether something accepts connections at ``url``'s host and port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=1.0):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------
# switch

#: How often ``switch --warm`` says how the load is going.
PROGRESS_INTERVAL_S = 1.0


def switch(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Point ``args.alias`` at ``args.target`` in the config file (see :data:`_SWITCH_ABOUT`)."""
    from .client import OllamaClient, UpstreamCallError, wait_loaded
    from .config_edit import replace_file, retarget
    from .reload import SettingsSource

    given = args.config or environ.get(CONFIG_VARIABLE)
    if not given:
        return _fail(EXIT_USAGE, f"switch needs the config file: give --config FILE or set "
                     f"{CONFIG_VARIABLE}")  # fmt: skip
    path = Path(given).resolve()  # a symlink's target is rewritten, the link kept
    where = f"config file {given!r}"
    source = SettingsSource(environ, config_file=str(path))
    try:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"{where} cannot be read: {error.strerror}") from None
        source.load(text)  # the file as it is must be valid
        new_text, alias, old = retarget(text, args.alias, args.target, where=where)
        settings = source.load(new_text).settings  # and as it would be
    except ConfigError as error:
        return _fail(EXIT_USAGE, f"configuration error: {error}")
    route = settings.alias_table[alias]
    client = OllamaClient(settings.upstream)
    if not args.force:
        try:
            installed = client.installed()
        except UpstreamCallError as error:
            return _fail(EXIT_FAILURE, f"{error}; start Ollama, or give --force to switch anyway")
        if name_key(args.target) not in installed:
            close = difflib.get_close_matches(args.target, sorted(installed.values()), n=3)
            hint = f" (installed models with close names: {', '.join(close)})" if close else ""
            return _fail(
                EXIT_FAILURE,
                f"{client.shown} does not have {args.target!r}: run ollama pull {args.target}, "
                f"or give --force to switch anyway{hint}",
            )
    if args.warm:
        from ..core.params import load_request

        print(f"loading {args.target} on {client.shown} ...", flush=True)
        started = time.monotonic()
        try:
            wait_loaded(
                client,
                args.target,
                load=lambda: client.load(
                    load_request(args.target, route.params), settings.read_timeout_s
                ),
                report=_show_progress,
                interval_s=PROGRESS_INTERVAL_S,
            )
        except UpstreamCallError as error:
            return _fail(EXIT_FAILURE, f"{error}; the config file is unchanged")
        print(f"{args.target} is loaded ({time.monotonic() - started:.1f} s)", flush=True)
    try:
        replace_file(path, new_text)
    except OSError as error:
        return _fail(EXIT_FAILURE, f"{where} cannot be written: {error.strerror}")
    print(f"{alias}: {old} -> {args.target} ({where}); a running proxy follows within 2 s")
    return EXIT_OK


def _show_progress(elapsed_s: float, row: Any) -> None:
    if row is None:
        state = "not in /api/ps yet"
    else:
        state = f"in /api/ps, {row.size_vram / 2**30:.1f} GiB in GPU memory"
    print(f"  {elapsed_s:4.0f} s: {state}", flush=True)


# --------------------------------------------------------------------------------------
# check


def check(loaded: LoadedSettings) -> int:
    """Print the settings and where each came from, then each alias and its target's state.

    Exits 1 when the upstream cannot be reached or a target is not installed.
    """
    # Imported here, not with the module: ``serve`` runs gunicorn's gevent workers, which
    # patch ssl after the fork, and urllib3 imported in the master would hold unpatched ssl.
    import requests

    settings, sources = loaded
    print("settings:")
    _print_table(_settings_rows(settings, sources), indent="  ")
    print()
    upstream = without_userinfo(settings.upstream)  # as shown; requests gets it whole
    installed: dict[str, str] | None = None
    loaded_keys: dict[str, str] | None = None
    try:
        with requests.Session() as session:
            listed = _listed(session, settings.upstream, "/api/tags")
            installed, loaded_keys = listed, _listed(session, settings.upstream, "/api/ps")
    except requests.RequestException as error:
        installed = None
        _fail(EXIT_FAILURE, _unreachable(upstream, error))
    except _NotOllama as error:
        installed = None
        _fail(EXIT_FAILURE, f"upstream {upstream} {error}: is it Ollama? Set --upstream to it")
    else:
        print(f"upstream {upstream}: reachable, {len(installed)} models installed, "
              f"{len(loaded_keys)} loaded")  # fmt: skip
    if not settings.aliases:
        print(f"no aliases configured: {ADD_ALIAS_HINT}")
        return EXIT_OK if installed is not None else EXIT_FAILURE
    default = settings.alias_table.default
    with_params = settings.alias_table.has_params  # a column only when some alias has any
    rows: list[tuple[str, ...]] = [
        ("alias", "target", "installed", "loaded", *(("parameters",) if with_params else ()))
    ]
    for alias, route in settings.alias_table.items():
        key = name_key(route.target)
        shown = f"{alias} (default)" if default and alias == default.alias else alias
        params = (route.params.describe() or "none",) if with_params else ()
        rows.append((shown, route.target, _yes(key, installed), _yes(key, loaded_keys), *params))
    _print_table(rows)
    conflicts = [f"warning: {conflict}" for conflict in settings.alias_table.load_time_conflicts()]
    if conflicts:
        print()
        print(*conflicts, sep="\n")
    if installed is None:
        return EXIT_FAILURE
    findings = [*_missing_targets(settings, installed), *_hidden_models(settings, installed)]
    if findings:
        print()
        print(*findings, sep="\n")
    missing = any(
        name_key(route.target) not in installed for route in settings.alias_table.values()
    )
    return EXIT_FAILURE if missing else EXIT_OK


def _settings_rows(settings: Settings, sources: Mapping[str, str]) -> list[tuple[str, ...]]:
    sources = dict(sources)
    default = settings.alias_table.default
    shown = {
        "upstream": without_userinfo(settings.upstream),
        "aliases": ", ".join(settings.aliases) or "none",
        "default": default.alias if default else "none",
        "prefix": settings.prefix or "none",
    }
    if default is not None and settings.default is None:
        shown["default"] += " (the only alias)"
        sources["default"] = sources["aliases"]
    # Every other setting something set, too.
    for key, source in sources.items():
        if key not in shown and source != DEFAULT_SOURCE:
            shown[key] = _shown(value_at(settings, key))
    rows: list[tuple[str, ...]] = []
    for key, value in shown.items():
        source = sources[key]
        rows.append((key, value, "(default)" if source == DEFAULT_SOURCE else f"(from {source})"))
    return rows


class _NotOllama(Exception):
    """The upstream answered, but not as Ollama does."""


def _listed(session: requests.Session, upstream: str, path: str) -> dict[str, str]:
    """Return name key -> name for the models ``path`` lists."""
    response = session.get(upstream + path, timeout=CHECK_TIMEOUT_S)
    if not response.ok:
        raise _NotOllama(f"answered {path} with {response.status_code} {response.reason}")
    try:
        return {name_key(model["name"]): model["name"] for model in response.json()["models"]}
    except (ValueError, KeyError, TypeError):
        raise _NotOllama(f"answered {path} with something that is not a list of models") from None


def _unreachable(upstream: str, error: Exception) -> str:
    import requests

    if isinstance(error, requests.Timeout):
        why = f"no answer within {CHECK_TIMEOUT_S:g} s"
    else:
        why = _root_cause(error)
    return (
        f"upstream {upstream} is not answering ({why}): start Ollama, or set --upstream to "
        "where it runs"
    )


def _root_cause(error: BaseException) -> str:
    """The innermost reason requests (over urllib3) gives for a failed connection."""
    # requests.ConnectionError(MaxRetryError) -> .reason NewConnectionError -> __cause__
    # ConnectionRefusedError, or NameResolutionError -> __cause__ socket.gaierror.
    current: BaseException | None = error
    innermost = error
    for _ in range(10):  # a chain is a few links; never loop on a cycle
        if current is None:
            break
        innermost = current
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, socket.gaierror):
            return f"host not known: {current.strerror}"
        reason = getattr(current, "reason", None)
        first = current.args[0] if current.args else None
        current = next(
            (link for link in (reason, first, current.__cause__, current.__context__)
             if isinstance(link, BaseException)),
            None,
        )  # fmt: skip
    if isinstance(innermost, OSError) and innermost.strerror:
        return innermost.strerror
    return str(innermost) or type(innermost).__name__


def _targets(settings: Settings) -> list[tuple[str, str]]:
    """Each alias and its target (an alias may be given as a table with parameters)."""
    return [(alias, route.target) for alias, route in settings.alias_table.items()]


def _missing_targets(settings: Settings, installed: Mapping[str, str]) -> list[str]:
    lines = []
    for alias, target in _targets(settings):
        if name_key(target) in installed:
            continue
        line = f"{alias}: {target!r} is not installed: run ollama pull {target}"
        close = difflib.get_close_matches(target, sorted(installed.values()), n=3)
        if close:
            line += f" (installed models with close names: {', '.join(close)})"
        lines.append(line)
    return lines


def _hidden_models(settings: Settings, installed: Mapping[str, str]) -> list[str]:
    lines = []
    for alias, target in _targets(settings):
        model = installed.get(name_key(alias))
        if model is not None:
            lines.append(
                f"alias {alias!r} hides the installed model {model}: clients asking for it "
                f"get {target!r} instead"
            )
    return lines


def _yes(key: str, keys: Mapping[str, str] | None) -> str:
    if keys is None:
        return "?"
    return "yes" if key in keys else "no"


def _print_table(rows: Sequence[Sequence[str]], indent: str = "") -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print(indent + "  ".join(cells).rstrip())


# --------------------------------------------------------------------------------------
# status

STATUS_TIMEOUT_S = 5.0


def status(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Print the status of the running proxy at ``--url`` (by default, where ``serve``
    would listen, under the prefix setting)."""
    import requests

    base_url = args.url
    if base_url is None:
        try:
            settings = load_settings_with_sources(environ, config_file=args.config).settings
        except ConfigError as error:
            return _fail(EXIT_USAGE, f"configuration error: {error}")
        base_url = serve_url(environ)
        if base_url is None:
            return _fail(
                EXIT_USAGE,
                "serve listens on a unix socket or a file descriptor here: give the proxy's "
                "URL with --url",
            )
        base_url += settings.prefix
    try:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError
    except ValueError:
        return _fail(EXIT_USAGE, f"--url {base_url!r} is not an http:// or https:// URL")
    url = base_url.rstrip("/") + "/-/status"
    try:
        response = requests.get(
            url, headers={"Accept": "application/json"}, timeout=STATUS_TIMEOUT_S
        )
    except requests.Timeout:
        return _fail(EXIT_FAILURE, f"{url} gave no answer within {STATUS_TIMEOUT_S:g} s")
    except requests.RequestException as error:
        return _fail(
            EXIT_FAILURE,
            f"nothing answers at {url} ({_root_cause(error)}): is the proxy running? Give "
            "its address with --url",
        )
    try:
        document = response.json()
    except ValueError:
        document = None
    if response.status_code == 403 and isinstance(document, dict) and "error" in document:
        return _fail(
            EXIT_FAILURE,
            f"{url} refused: {document['error']} (the proxy's status_networks setting says "
            "which clients may read it)",
        )
    if (
        response.status_code != 200
        or not isinstance(document, dict)
        or document.get("service") != "ollama-default"
    ):
        return _fail(
            EXIT_FAILURE,
            f"{url} did not answer with a status ({response.status_code} "
            f"{response.reason}): is it ollama-default, and does --url include its prefix?",
        )
    if args.json:
        print(response.text, end="" if response.text.endswith("\n") else "\n")
    else:
        print_status(document, url)
    return EXIT_OK


def serve_url(environ: Mapping[str, str]) -> str | None:
    """``http://`` and the first address ``serve`` listens on (``GUNICORN_CMD_ARGS`` or the
    default), its wildcard host as loopback; None for a unix socket or a file descriptor."""
    bind = SERVE_DEFAULTS["bind"]
    # No gunicorn here, or its settings are broken: serve's default.
    with contextlib.suppress(ImportError, ConfigError, IndexError, KeyError):
        bind = gunicorn_options({}, environ)["bind"][0]
    if bind.startswith(("unix:", "fd://")):
        return None
    host, _, port = bind.removeprefix("tcp://").rpartition(":")
    host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "": "127.0.0.1"}.get(host, host)
    return f"http://{host}:{port}"


def print_status(document: Mapping[str, Any], url: str) -> None:
    """Print a status document for a person."""
    worker = document["worker"]
    print(
        f"ollama-default {document['version']} at {url}: worker {worker['pid']}, up "
        f"{format_duration(worker['uptime_s'])}"
    )
    config = document["config"]
    if config["path"]:
        print(f"config file {config['path']}, version {config['version'] or '?'}")
        print(f"  modified {format_time(config['modified_at']) or '?'}, "
              f"loaded {format_time(config['loaded_at'])}")  # fmt: skip
    else:
        print(f"no config file; settings loaded {format_time(config['loaded_at'])}")
    error = document["last_reload_error"]
    if error is not None:
        print(f"last reload refused at {format_time(error['at'])} (the table below still "
              f"serves): {error['error']}")  # fmt: skip
    upstream = document["upstream"]
    if upstream is not None:
        if upstream["reachable"] is False:
            print(f"upstream {upstream['url']}: not answering ({upstream['error']})")
        elif upstream["error"]:
            print(f"upstream {upstream['url']}: {upstream['error']}")
        else:
            print(f"upstream {upstream['url']}: answering")
    print()
    aliases = document["aliases"]
    if aliases:
        rows: list[tuple[str, ...]] = [
            ("alias", "target", "installed", "loaded", "VRAM", "expires", "parameters")
        ]
        for row in aliases:
            state = row["upstream"]
            rows.append(
                (
                    f"{row['alias']} (default)" if row["default"] else row["alias"],
                    row["target"],
                    _known(state["installed"]),
                    _known(state["loaded"]),
                    format_bytes(state["size_vram"]),
                    format_expiry(state["expires_at"]) or "-",
                    row["parameters"] or "none",
                )
            )
        _print_table(rows)
        sources = {row["source"] for row in aliases}
        print(f"aliases set by {', '.join(sorted(sources))}")
    else:
        print("no aliases: requests pass through unchanged")
    names = ", ".join(document["default_names"]) or "none"
    print(f"default names: {names}; hide real models: "
          f"{'yes' if document['hide_real_models'] else 'no'}")  # fmt: skip
    print()
    switch = document["last_switch"]
    if switch is None:
        print("last switch: none since the proxy started")
    else:
        print(f"last switch: {switch['alias']} from {switch['old'] or '-'} to {switch['new']}")
        if switch["steps"]:
            steps: list[tuple[str, ...]] = [("step", "started", "seconds", "outcome")]
            steps += [
                (step["name"], format_time(step["started_at"]) or "-",
                 "-" if step["duration_s"] is None else f"{step['duration_s']:g}",
                 step["outcome"])
                for step in switch["steps"]
            ]  # fmt: skip
            _print_table(steps, indent="  ")
    counts = document["refused"]["counts"]
    shown = ", ".join(f"{reason} {count}" for reason, count in counts.items())
    print(f"refused requests (this worker): {shown}")


def _known(flag: object) -> str:
    return "?" if flag is None else "yes" if flag else "no"


if __name__ == "__main__":
    sys.exit(main())
