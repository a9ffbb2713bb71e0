"""Proxy settings, from a TOML file, the environment and command-line flags.

Each setting is declared once, as a field of :class:`Settings`
(:mod:`~ollama_default.proxy.declaration` says how): its TOML key, its environment variable
``OLLAMA_DEFAULT_<KEY>``, its flag, its default, its check and its doc all come from that
declaration, and so do ``--help`` and the docs' settings table. Flags win over the
environment, which wins over the file, key by key. ``OLLAMA_DEFAULT_ALIAS`` with
``OLLAMA_DEFAULT_TARGET`` stands for one alias that is also the default, in place of the
file's ``[aliases]`` and ``default``; ``--alias`` flags replace both in the same way.
``OLLAMA_DEFAULT_CONFIG`` (or ``--config``) names the file.

:func:`load_settings_with_sources` also says where each setting came from, so an error
and ``ollama-default check`` can name it. Every problem is a
:class:`~ollama_default.errors.ConfigError` of one line that names the key (or variable)
and the value, with ``key`` and ``source`` attributes.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from ..core.aliases import AliasTable, AliasValue
from ..core.checks import at_least, cap, count
from ..core.endpoints import STORE_VERBS
from ..core.errors import ConfigError
from ..core.framing import MAX_RECORD_BYTES
from ..core.naming import Naming
from ..demo import DEMO_MODELS
from ..middleware import MAX_BODY_BYTES, MAX_BUFFERED_BYTES
from ..ops.auth import KeyCheck, keys_from_text
from ..ops.limits import QUEUE_TIMEOUT_S
from ..ops.status import LOOPBACK_NETWORKS
from ..ops.store import store_verbs
from .declaration import (
    BYTES,
    DEFAULT_SOURCE,
    ENV_PREFIX,
    SECONDS,
    SWITCH,
    Declared,
    Found,
    Kind,
    Layer,
    Option,
    Variables,
    check_fields,
    choice,
    declared,
    from_document,
    from_environment,
    from_flags,
    load,
    setting,
    text,
)
from .forwarder import (
    CONNECT_TIMEOUT_S,
    READ_TIMEOUT_S,
    basic_authorization,
    ip_networks,
    without_userinfo,
)
from .keys import read_key_file
from .reading import BODY_TIMEOUT_S, HEAD_TIMEOUT_S

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "ALIAS_VARIABLE",
    "CONFIG_VARIABLE",
    "DEFAULT_SOURCE",
    "DEFAULT_UPSTREAM",
    "ENV_PREFIX",
    "ENV_VARIABLES",
    "SETTINGS",
    "TARGET_VARIABLE",
    "LoadedSettings",
    "Settings",
    "config_file_path",
    "load_settings",
    "load_settings_with_sources",
    "parse_alias_flags",
    "read_config_file",
]

CONFIG_VARIABLE = ENV_PREFIX + "CONFIG"
ALIAS_VARIABLE = ENV_PREFIX + "ALIAS"
TARGET_VARIABLE = ENV_PREFIX + "TARGET"
DEFAULT_UPSTREAM = "http://127.0.0.1:11434"
#: A large model can take minutes to load from a slow disk; traffic moves on after this.
WARM_TIMEOUT_S = 120.0


def http_url(key: str, value: object) -> str:
    """Return ``value``, an ``http://`` or ``https://`` URL with a host and no query.

    A user and password in it are never shown: messages quote the URL without them.
    """
    try:
        parts = urlsplit(value) if isinstance(value, str) else None
    except ValueError:  # such as an unclosed '[' around an IPv6 address
        parts = None
    shown = without_userinfo(value) if isinstance(value, str) else value
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key} {shown!r} is not an http:// or https:// URL", key=key)
    if parts.query or parts.fragment:
        raise ConfigError(f"{key} {shown!r} must not have a query or fragment", key=key)
    return str(value)


def url_path(key: str, value: object) -> str:
    """Return ``value``, a path such as ``/llm`` or nothing, without a final slash."""
    if not isinstance(value, str) or (value and (not value.startswith("/") or "//" in value)):
        raise ConfigError(f"{key} {value!r} must be a path such as '/llm'", key=key)
    return value.rstrip("/")


def log_destination(key: str, value: object) -> str:
    """Return ``value``, ``-`` (standard error) or a file name."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be '-' or a file name, not {value!r}", key=key)
    return value


def alias_mapping(key: str, value: object) -> dict[str, AliasValue]:
    """Return a copy of ``value``, a table of alias = target or alias = table of parameters;
    :class:`Settings` makes the alias table of it (which checks each alias)."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a table of alias = target, not {value!r}", key=key)
    return dict(value)


def alias_name(key: str, value: object) -> object:
    """Return ``value`` as it is: the alias table, once built, says whether it is an alias."""
    return value


def parse_alias_flags(texts: Sequence[str]) -> dict[str, str]:
    """Return the aliases ``--alias NAME=MODEL`` flags give.

    :raises ConfigError: for a flag without ``=``, or one alias given twice.
    """
    aliases: dict[str, str] = {}
    for given in texts:
        alias, equals, target = (part.strip() for part in given.partition("="))
        if not (alias and equals and target):
            raise ConfigError(
                f"--alias {given!r} is not NAME=MODEL, such as --alias llmodel={DEMO_MODELS[0]}",
                key="aliases",
                source="--alias",
            )
        if alias in aliases:
            raise ConfigError(f"--alias {alias!r} is given twice", key="aliases", source="--alias")
        aliases[alias] = target
    return aliases


def _alias_from_environment(environ: Mapping[str, str]) -> Found:
    alias, target = environ.get(ALIAS_VARIABLE), environ.get(TARGET_VARIABLE)
    if bool(alias) != bool(target):
        given, missing = (
            (ALIAS_VARIABLE, TARGET_VARIABLE) if alias else (TARGET_VARIABLE, ALIAS_VARIABLE)
        )
        raise ConfigError(f"{given} is set but {missing} is not", key="aliases", source=given)
    if not (alias and target):
        return {}
    return {
        "aliases": ({alias: target}, f"{ALIAS_VARIABLE} and {TARGET_VARIABLE}"),
        "default": (alias, ALIAS_VARIABLE),
    }


def _no_text(found: str) -> object:
    # Never asked: the aliases are read from variables of their own.
    raise ValueError(found)


#: alias -> target, a table with keys of the user's choosing.
ALIAS_TABLE = Kind("a table", _no_text, alias_mapping, table=True)


def _comma_separated(found: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in found.split(",") if part.strip())


def model_names(key: str, value: object) -> tuple[str, ...]:
    """Return ``value``, a list of names that are not blank, as a tuple."""
    if isinstance(value, (list, tuple)) and all(isinstance(n, str) and n.strip() for n in value):
        return tuple(value)
    raise ConfigError(f"{key} must be a list of model names, not {value!r}", key=key)


def queue_length(key: str, value: object) -> int | None:
    """Return ``value``, a whole number 0 or more, or None (twice ``max_concurrent``)."""
    return None if value is None else count(key, value)


#: A cap on requests at once: a whole number, 0 (or nothing) for none.
CAP = Kind("a whole number", int, cap)
#: How many requests may wait.
QUEUE_LENGTH = Kind("a whole number", int, queue_length)


class SecretText(str):
    """Text never shown: its ``repr`` (in messages, the settings' ``repr``) is stars."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'****'" if self else "''"


class SecretKeys(tuple[str, ...]):
    """API keys never shown: their ``repr`` says how many there are."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{len(self)} API keys>"


def api_key_texts(key: str, value: object) -> SecretKeys:
    """Return ``value``, API keys, each a random token
    (:func:`~ollama_default.ops.auth.keys_from_text` says which are refused)."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key} must be API keys with commas between them", key=key)
    keys_from_text(value, key=key)
    return SecretKeys(SecretText(v) for v in value)


def secret_text(key: str, value: object) -> SecretText:
    """Return ``value``, text, as :class:`SecretText`."""
    if not isinstance(value, str) or (value and (not value.isprintable() or " " in value)):
        raise ConfigError(f"{key} must be one word of printable text", key=key)
    return SecretText(value)


def file_name(key: str, value: object) -> str:
    """Return ``value``, a file name, or nothing."""
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a file name, not {value!r}", key=key)
    return value


SECRET_KEYS = Kind("API keys, separated by commas", _comma_separated, api_key_texts)
SECRET_TEXT = Kind("text", str, secret_text)
STORE_VERBS_KIND = Kind("all, or model-store verbs separated by commas", _comma_separated,
                        store_verbs)  # fmt: skip


#: Model names: a TOML list, or text with commas between them.
NAMES = Kind("model names, separated by commas", _comma_separated, model_names)
#: IP addresses and networks: a TOML list, or text with commas between them.
ADDRESSES = Kind("IP addresses or networks, separated by commas", _comma_separated, ip_networks)


@dataclass(frozen=True)
class Settings:
    """Everything the proxy needs to know, checked as it is built.

    Each field is one setting, declared once. :attr:`alias_table` is made of the aliases
    and the default, once, here: what ``DefaultModel`` takes.

    >>> Settings(aliases={"llmodel": "qwen3:4b"}).alias_table.default.alias
    'llmodel'
    """

    upstream: str = setting(
        DEFAULT_UPSTREAM,
        text(http_url),
        "Ollama's base URL. A user and password in it (``https://user:secret@host``) are "
        "sent as HTTP Basic ``Authorization`` in place of the client's, and shown nowhere.",
        flag=Option("Ollama's base URL", metavar="URL"),
    )
    aliases: Mapping[str, AliasValue] = setting(
        {},
        ALIAS_TABLE,
        "alias -> real model, or a table with the alias's parameters (:ref:`alias-parameters`).",
        flag=Option(
            "an alias and the model it stands for; repeat for more; replaces the aliases and "
            "the default set elsewhere",
            name="--alias",
            metavar="NAME=MODEL",
            collect=parse_alias_flags,
        ),
        variables=Variables(
            (ALIAS_VARIABLE, TARGET_VARIABLE),
            f"{ALIAS_VARIABLE} with {TARGET_VARIABLE}",
            "one alias",
            _alias_from_environment,
        ),
        replaces=["default"],
    )
    default: str | None = setting(
        None,
        text(alias_name),
        "the alias for requests that name no model (a single alias is it).",
        flag=Option(metavar="ALIAS"),
    )
    default_names: tuple[str, ...] = setting(
        (),
        NAMES,
        "names that mean the default alias, as no model does, where a request may name none: "
        'such as ``["default", "unknown"]`` for clients that send those (commas between them '
        "in the variable and the flag); compared as Ollama compares model names "
        "(:ref:`default-names`).",
        flag=Option("names that mean the default alias, with commas between them", metavar="NAMES"),
    )
    fallback_to_default: bool = setting(
        False,
        SWITCH,
        "send a request for a model the upstream does not have (its 404 ``model ... not "
        "found``) to the default instead, on the inference endpoints; off, a typo gets "
        "Ollama's 404 (:ref:`fallback`).",
        flag=Option("send requests for models the upstream does not have to the default"),
    )
    hide_real_models: bool = setting(
        False,
        SWITCH,
        "clients see and use the aliases only: a request naming any other model gets 404 and "
        "never reaches the upstream, listings show the aliases only, and the "
        "``X-Ollama-Default-Target`` header is not sent (:ref:`hidden-models`).",
        flag=Option("clients see and use the aliases only"),
    )
    prefix: str = setting(
        "",
        text(url_path),
        "a path prefix the proxy is served under, such as ``/llm``.",
        flag=Option("serve under this path prefix, such as /llm", metavar="PATH"),
    )
    trusted_proxies: tuple[str, ...] = setting(
        (),
        ADDRESSES,
        "the proxies in front of this one, whose ``X-Forwarded-*``, ``Forwarded`` and "
        "``X-Real-IP`` headers are believed and passed on: IP addresses or networks, such "
        'as ``["10.0.0.0/8"]`` (commas between them in the variable and the flag). From '
        "any other client those headers are dropped, and the proxy sets its own. ``serve`` "
        "gives gunicorn the same list as its ``forwarded_allow_ips``.",
        flag=Option(
            "the proxies in front of this one, whose X-Forwarded-* headers are believed: IP "
            "addresses or networks, with commas between them",
            metavar="ADDRESSES",
        ),
    )
    status_networks: tuple[str, ...] = setting(
        LOOPBACK_NETWORKS,
        ADDRESSES,
        "the clients that may read ``/-/status``, which names the real models behind the "
        "aliases: IP addresses or networks (commas between them in the variable and the "
        "flag); this machine only by default. Others get 403 (:ref:`status-access`).",
        flag=Option(
            "the clients that may read /-/status: IP addresses or networks, with commas "
            "between them",
            metavar="ADDRESSES",
        ),
    )
    # Access (#14): the model store, API keys, the upstream's own credential.
    open_model_store: tuple[str, ...] = setting(
        (),
        STORE_VERBS_KIND,
        'the model-store verbs open to every client: ``"all"`` or some of '
        f"{', '.join(f'``{verb}``' for verb in STORE_VERBS)} (commas between them in the "
        "variable and the flag). **None by default**: the others answer 403, and reach no "
        "upstream (:ref:`model-store`).",
        flag=Option(
            "the model-store verbs open to every client: all, or some of " + ", ".join(STORE_VERBS),
            metavar="VERBS",
        ),
    )
    api_keys: tuple[str, ...] = setting(
        (),
        SECRET_KEYS,
        "API keys with full client access, with commas between them; from the environment "
        "only, never the config file or the command line. With any key, or "
        "``api_keys_file``, every request needs one (:ref:`api-keys`).",
    )
    api_keys_file: str = setting(
        "",
        text(file_name),
        "a TOML file of hashed API keys with their scopes: the aliases each may use, the "
        "model-store verbs it opens, its ``max_concurrent`` (:ref:`key-file`). Read again "
        "with the configuration.",
        flag=Option("a TOML file of hashed API keys with their scopes", metavar="FILE"),
    )
    upstream_api_key: str = setting(
        "",
        SECRET_TEXT,
        "a key sent to the upstream as ``Authorization: Bearer``, in place of the client's; "
        "shown nowhere. Not with a user and password in ``upstream``.",
    )
    connect_timeout_s: float = setting(
        CONNECT_TIMEOUT_S, SECONDS, "how long to wait for the upstream to accept a connection."
    )
    read_timeout_s: float = setting(
        READ_TIMEOUT_S,
        SECONDS,
        "how long to wait for the upstream's next bytes; long, because the first byte can "
        "wait for a large model to load.",
    )
    warm_timeout_s: float = setting(
        WARM_TIMEOUT_S,
        SECONDS,
        "how long a reload waits for the upstream to load an alias's new target "
        "(``warm = true``) before it moves traffic there anyway (:ref:`reload`).",
    )
    head_timeout_s: float = setting(
        HEAD_TIMEOUT_S,
        SECONDS,
        "how long a request head may take from its first byte (``ollama-default serve``'s "
        "worker; the wait for that first byte is gunicorn's ``keepalive``); then 408.",
    )
    body_timeout_s: float = setting(
        BODY_TIMEOUT_S,
        SECONDS,
        "how long a request body may take, all of it: 408 after that. A body larger than "
        "``max_body_bytes`` (a blob upload, streamed through) gets as long again for each "
        "``max_body_bytes`` it holds (:ref:`limits`).",
    )
    max_body_bytes: int = setting(
        MAX_BODY_BYTES,
        BYTES,
        "larger request bodies get 413, before they are read when their length says so; "
        "64 MiB, above what the hosted APIs take (Anthropic 32 MB a request, OpenAI 50 MB "
        "of images), so a chat with a dozen photos fits (:ref:`limits`).",
    )
    max_buffered_bytes: int = setting(
        MAX_BUFFERED_BYTES,
        BYTES,
        "the request-body bytes a worker holds at once; a body that would pass it gets 503 "
        "with ``Retry-After`` before it is read. At least ``max_body_bytes``.",
    )
    max_record_bytes: int = setting(
        MAX_RECORD_BYTES, BYTES, "longer stream records are relayed without rewriting."
    )
    max_concurrent: int | None = setting(
        None,
        CAP,
        "requests under way at once through the proxy, streams included, in all workers; "
        "beyond it requests wait in the queue, then get 503 with ``Retry-After``. Reads "
        "(listings, ``/api/show``) do not count. 0 for no cap (:ref:`fair-limits`).",
        flag=Option("requests under way at once, in all; 0 for no cap", metavar="N"),
    )
    max_concurrent_per_key: int | None = setting(
        None,
        CAP,
        "requests under way at once with one API key (a key's own cap wins); beyond it its "
        "requests wait in the queue, then get 429 with ``Retry-After``. 0 for no cap "
        "(:ref:`fair-limits`).",
        flag=Option("requests under way at once with one API key; 0 for no cap", metavar="N"),
    )
    max_queue: int | None = setting(
        None,
        QUEUE_LENGTH,
        "requests that may wait at once for a slot, in all workers (each key may also have as "
        "many waiting as its cap); beyond it they are refused at once. 0 for no queue; by "
        "default twice ``max_concurrent`` (:ref:`fair-limits`).",
        flag=Option("requests that may wait for a slot; 0 for no queue", metavar="N"),
    )
    queue_timeout_s: float = setting(
        QUEUE_TIMEOUT_S,
        SECONDS,
        "how long a request waits in the queue for a slot before it is refused "
        "(:ref:`fair-limits`).",
    )
    access_log: bool = setting(
        True,
        SWITCH,
        "log one line per request (method, path, status, alias and target, duration, bytes, "
        "time to first byte).",
        flag=Option("log one line per request"),
    )
    log_level: str = setting(
        "info",
        choice("debug", "info", "warning", "error"),
        "the least severe messages logged: ``debug``, ``info``, ``warning`` or ``error``; at "
        "``warning`` the access log keeps only failures.",
        flag=Option("the least severe messages logged"),
    )
    log_file: str = setting(
        "-",
        text(log_destination),
        "where the log goes: ``-`` for standard error, else a file to append to.",
        flag=Option("where the log goes: - for standard error, else a file", metavar="FILE"),
    )
    log_format: str = setting(
        "text",
        choice("text", "json"),
        "``text``, one readable line per event, or ``json``, one JSON object per line for log "
        "shippers.",
        flag=Option("text lines, or one JSON object per line"),
    )
    #: The aliases and the default as the lookup table ``DefaultModel`` takes.
    alias_table: AliasTable = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_fields(self)
        at_least("max_buffered_bytes", self.max_buffered_bytes, "max_body_bytes",
                 self.max_body_bytes)  # fmt: skip
        # Its ConfigError's key says whether the aliases or the default are at fault.
        object.__setattr__(self, "alias_table", AliasTable(self.aliases, self.default))
        # Checked here, with the aliases: a default name that is an alias, a fallback or
        # default names without a default.
        Naming.build(
            self.alias_table,
            default_names=self.default_names,
            hide_real_models=self.hide_real_models,
            fallback_to_default=self.fallback_to_default,
        )
        if self.api_keys_file:
            # Read now, so that a broken file is a configuration error at start and in
            # `check`; the app reads it again each time it is built.
            KeyCheck(_no_app, read_key_file(self.api_keys_file), aliases=self.alias_table)
        if self.upstream_api_key and basic_authorization(self.upstream) is not None:
            raise ConfigError(
                "upstream_api_key is set and upstream has a user and password: give one "
                "credential for the upstream",
                key="upstream_api_key",
            )


def _no_app(environ: object, start_response: object) -> list[bytes]:  # pragma: no cover
    return []


#: Every setting, by key, in the order declared.
SETTINGS: Mapping[str, Declared] = {item.key: item for item in declared(Settings)}
#: Every variable the settings read; any other ``OLLAMA_DEFAULT_*`` is a mistake.
ENV_VARIABLES = frozenset(
    [name for item in SETTINGS.values() for name in item.variables] + [CONFIG_VARIABLE]
)


class LoadedSettings(NamedTuple):
    """Settings, and where each came from."""

    settings: Settings
    #: key -> ``default``, ``config file '/etc/x.toml'``, ``OLLAMA_DEFAULT_UPSTREAM``,
    #: ``--upstream``, ... for every setting of :class:`Settings`.
    sources: Mapping[str, str]


def load_settings(
    environ: Mapping[str, str],
    flags: Mapping[str, Any] | None = None,
    *,
    config_file: str | None = None,
) -> Settings:
    """Return the settings that ``flags``, ``environ`` and the TOML file they name describe.

    :param flags: setting key -> value from the command line; these win.
    :param config_file: the TOML file from the command line, in place of
        ``OLLAMA_DEFAULT_CONFIG``.
    :raises ConfigError: for any problem, in one line naming the key, the value, and
        where it was set.
    """
    return load_settings_with_sources(environ, flags, config_file=config_file).settings


def load_settings_with_sources(
    environ: Mapping[str, str],
    flags: Mapping[str, Any] | None = None,
    *,
    config_file: str | None = None,
    config_text: str | None = None,
) -> LoadedSettings:
    """Like :func:`load_settings`, and say where each setting came from.

    Each source sets some keys over the one below: defaults, the file, the environment,
    the flags. A source that sets aliases replaces the default alias too, unless it
    names one itself (a single alias is then the default).

    :param config_text: the config file's text as already read (a reload checks and
        publishes one reading of it), in place of reading the file; still named by its path.
    """
    _check_variable_names(environ)
    config_path = config_file_path(environ, config_file)
    layers = [_file_layer(config_path, config_text)] if config_path else []
    layers += [from_environment(Settings, environ), from_flags(Settings, flags or {})]
    settings, sources = load(Settings, layers)
    return LoadedSettings(settings, sources)


def config_file_path(environ: Mapping[str, str], config_file: str | None = None) -> str | None:
    """The TOML file the settings are read from: ``config_file`` (``--config``), else
    ``OLLAMA_DEFAULT_CONFIG``, else None."""
    return config_file or environ.get(CONFIG_VARIABLE) or None


def read_config_file(path: Path) -> dict[str, Any]:
    """Return the settings a TOML file sets, by key.

    :raises ConfigError: when it cannot be read, is not TOML, or has an unknown key.
    """
    return _file_layer(str(path)).values


def _file_layer(path: str, text: str | None = None) -> Layer:
    where = f"config file {path!r}"
    try:
        if text is None:
            with open(path, "rb") as file:
                text = file.read().decode("utf-8")
        document: dict[str, Any] = tomllib.loads(text)
    except UnicodeDecodeError as error:
        raise ConfigError(f"{where} is not valid TOML: {error}", source=where) from None
    except OSError as error:
        raise ConfigError(f"{where} cannot be read: {error.strerror}", source=where) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{where} is not valid TOML: {error}", source=where) from None
    if "api_keys" in document:
        raise ConfigError(
            f"{where}: api_keys: keys are never written in the config file: set "
            f"{ENV_PREFIX}API_KEYS, or name a file of hashed keys with api_keys_file",
            key="api_keys",
            source=where,
        )
    return from_document(Settings, document, where)


def _check_variable_names(environ: Mapping[str, str]) -> None:
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in ENV_VARIABLES:
            # Compared without the prefix every name shares, or all would look close.
            known = [known[len(ENV_PREFIX) :] for known in sorted(ENV_VARIABLES)]
            close = difflib.get_close_matches(name[len(ENV_PREFIX) :], known, n=1)
            hint = f" (did you mean {ENV_PREFIX + close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown environment variable {name!r}{hint}", source=name)
