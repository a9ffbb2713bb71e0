"""Proxy settings, from a TOML file, the environment and command-line flags.

Every setting has a TOML key and an environment variable ``OLLAMA_DEFAULT_<KEY>``;
``ollama-default`` adds flags for the common ones. Flags win over the environment, which
wins over the file, key by key. ``OLLAMA_DEFAULT_ALIAS`` with ``OLLAMA_DEFAULT_TARGET``
stands for one alias that is also the default, in place of the file's ``[aliases]`` and
``default``; ``--alias`` flags replace both in the same way. ``OLLAMA_DEFAULT_CONFIG`` (or
``--config``) names the file.

:func:`load_settings_with_sources` also says where each setting came from, so an error
and ``ollama-default check`` can name it. Every problem is a
:class:`~ollama_default.errors.ConfigError` of one line that names the key (or variable)
and the value, with ``key`` and ``source`` attributes.
"""

from __future__ import annotations

import difflib
import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from ..core.aliases import AliasTable
from ..core.errors import ConfigError
from ..core.framing import MAX_RECORD_BYTES
from ..middleware import MAX_BODY_BYTES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ENV_PREFIX = "OLLAMA_DEFAULT_"
CONFIG_VARIABLE = ENV_PREFIX + "CONFIG"
ALIAS_VARIABLE = ENV_PREFIX + "ALIAS"
TARGET_VARIABLE = ENV_PREFIX + "TARGET"
DEFAULT_UPSTREAM = "http://127.0.0.1:11434"
#: The values a setting with a fixed set of them accepts.
CHOICES = {"log_level": ("debug", "info", "warning", "error"), "log_format": ("text", "json")}
#: The source of a setting nothing set.
DEFAULT_SOURCE = "default"


@dataclass(frozen=True)
class Settings:
    """Everything the proxy needs to know, validated.

    :param upstream: Ollama's base URL.
    :param aliases: alias -> real model.
    :param default: the alias for requests that name no model (a single alias is it).
    :param prefix: a path prefix the proxy is served under, such as ``/llm``.
    :param connect_timeout_s: how long to wait for the upstream to accept a connection.
    :param read_timeout_s: how long to wait for the upstream's next bytes; long, because
        the first byte can wait for a large model to load.
    :param max_body_bytes: larger request bodies get 413.
    :param max_record_bytes: longer stream records are relayed without rewriting.
    :param access_log: log one line per request (method, path, status, alias and target,
        duration, bytes, time to first byte).
    :param log_level: the least severe messages logged: ``debug``, ``info``, ``warning``
        or ``error``; at ``warning`` the access log keeps only failures.
    :param log_file: where the log goes: ``-`` for standard error, else a file to append to.
    :param log_format: ``text``, one readable line per event, or ``json``, one JSON object
        per line for log shippers.
    """

    upstream: str = DEFAULT_UPSTREAM
    aliases: Mapping[str, str] = field(default_factory=dict)
    default: str | None = None
    prefix: str = ""
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 600.0
    max_body_bytes: int = MAX_BODY_BYTES
    max_record_bytes: int = MAX_RECORD_BYTES
    access_log: bool = True
    log_level: str = "info"
    log_file: str = "-"
    log_format: str = "text"

    def __post_init__(self) -> None:
        parts = urlsplit(self.upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _invalid(
                "upstream", f"upstream {self.upstream!r} is not an http:// or https:// URL"
            )
        if parts.query or parts.fragment:
            raise _invalid(
                "upstream", f"upstream {self.upstream!r} must not have a query or fragment"
            )
        if self.prefix and (not self.prefix.startswith("/") or "//" in self.prefix):
            raise _invalid("prefix", f"prefix {self.prefix!r} must be a path such as '/llm'")
        if self.prefix.endswith("/"):
            object.__setattr__(self, "prefix", self.prefix.rstrip("/"))
        for name in ("connect_timeout_s", "read_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise _invalid(name, f"{name} must be a positive number of seconds, not {value!r}")
            if math.isinf(value) or math.isnan(value):
                raise _invalid(name, f"{name} must be a finite number of seconds, not {value!r}")
        for name in ("max_body_bytes", "max_record_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise _invalid(name, f"{name} must be a positive number of bytes, not {value!r}")
        if not isinstance(self.access_log, bool):
            raise _invalid(
                "access_log", f"access_log must be true or false, not {self.access_log!r}"
            )
        for name, choices in CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise _invalid(name, f"{name} must be one of {', '.join(choices)}, not {value!r}")
        if not isinstance(self.log_file, str) or not self.log_file:
            raise _invalid(
                "log_file", f"log_file must be '-' or a file name, not {self.log_file!r}"
            )
        if not isinstance(self.aliases, Mapping):
            raise _invalid(
                "aliases", f"aliases must be a table of alias = target, not {self.aliases!r}"
            )
        try:
            AliasTable(self.aliases)  # raises ConfigError on a bad table
        except ConfigError as error:
            raise _invalid("aliases", str(error)) from None
        if self.default is not None:
            try:
                AliasTable(self.aliases, self.default)
            except ConfigError as error:
                raise _invalid("default", str(error)) from None

    @property
    def alias_table(self) -> AliasTable:
        """The aliases as a lookup table."""
        return AliasTable(self.aliases, self.default)


class LoadedSettings(NamedTuple):
    """Settings, and where each came from."""

    settings: Settings
    #: key -> ``default``, ``config file '/etc/x.toml'``, ``OLLAMA_DEFAULT_UPSTREAM``,
    #: ``--upstream``, ... for every field of :class:`Settings`.
    sources: Mapping[str, str]


_KEYS = tuple(f.name for f in fields(Settings))
_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True,
             "0": False, "false": False, "no": False, "off": False}  # fmt: skip
_NUMBERS = {"connect_timeout_s": float, "read_timeout_s": float,
            "max_body_bytes": int, "max_record_bytes": int}  # fmt: skip
#: Every variable the settings read; any other ``OLLAMA_DEFAULT_*`` is a mistake.
ENV_VARIABLES = frozenset(
    [ENV_PREFIX + key.upper() for key in _KEYS if key != "aliases"]
    + [CONFIG_VARIABLE, ALIAS_VARIABLE, TARGET_VARIABLE]
)


def setting_default(key: str) -> Any:
    """Return the value ``key`` has when nothing sets it."""
    for setting in fields(Settings):
        if setting.name == key:
            if setting.default_factory is not MISSING:
                return setting.default_factory()
            return setting.default
    raise KeyError(key)


def environment_variable(key: str) -> str:
    """Return the variable (for ``aliases``, the pair) that sets ``key``."""
    if key == "aliases":
        return f"{ALIAS_VARIABLE} with {TARGET_VARIABLE}"
    return ENV_PREFIX + key.upper()


def flag_name(key: str, value: object = None) -> str:
    """Return the command-line flag that sets ``key`` (to ``value``, for a switch)."""
    if key == "aliases":
        return "--alias"
    name = key.replace("_", "-")
    return f"--no-{name}" if value is False else f"--{name}"


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
) -> LoadedSettings:
    """Like :func:`load_settings`, and say where each setting came from.

    Each source sets some keys over the one below: defaults, the file, the environment,
    the flags. A source that sets aliases replaces the default alias too, unless it
    names one itself (a single alias is then the default).
    """
    _check_variable_names(environ)
    config_path = config_file or environ.get(CONFIG_VARIABLE)
    layers: list[tuple[dict[str, Any], dict[str, str]]] = []
    if config_path:
        from_file = read_config_file(Path(config_path))
        where = f"config file {config_path!r}"
        layers.append((from_file, dict.fromkeys(from_file, where)))
    layers.append(_from_environment(environ))
    from_flags = dict(flags or {})
    layers.append((from_flags, {key: flag_name(key, value) for key, value in from_flags.items()}))
    values: dict[str, Any] = {}
    sources = dict.fromkeys(_KEYS, DEFAULT_SOURCE)
    for layer, layer_sources in layers:
        if "aliases" in layer:
            values.pop("default", None)
            sources["default"] = layer_sources["aliases"]
        values.update(layer)
        sources.update(layer_sources)
    try:
        return LoadedSettings(Settings(**values), sources)
    except ConfigError as error:
        source = sources.get(error.key or "", DEFAULT_SOURCE)
        if source == DEFAULT_SOURCE:
            raise
        raise ConfigError(f"{error} (set by {source})", key=error.key, source=source) from None


def read_config_file(path: Path) -> dict[str, Any]:
    """Return the settings a TOML file sets.

    :raises ConfigError: when it cannot be read, is not TOML, or has an unknown key.
    """
    where = f"config file {str(path)!r}"
    try:
        with path.open("rb") as file:
            document: dict[str, Any] = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"{where} cannot be read: {error.strerror}", source=where) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{where} is not valid TOML: {error}", source=where) from None
    for key in document:
        if key not in _KEYS:
            raise ConfigError(
                f"{where}: unknown key {key!r}{_suggest(key, _KEYS)}", key=key, source=where
            )
    return document


def _check_variable_names(environ: Mapping[str, str]) -> None:
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in ENV_VARIABLES:
            # Compared without the prefix every name shares, or all would look close.
            known = [known[len(ENV_PREFIX) :] for known in sorted(ENV_VARIABLES)]
            close = difflib.get_close_matches(name[len(ENV_PREFIX) :], known, n=1)
            hint = f" (did you mean {ENV_PREFIX + close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown environment variable {name!r}{hint}", source=name)


def _from_environment(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {}
    for key in _KEYS:
        variable = ENV_PREFIX + key.upper()
        text = environ.get(variable)
        if key == "aliases" or text is None or text == "":
            continue
        if key == "access_log":
            flag = _BOOLEANS.get(text.strip().lower())
            if flag is None:
                raise ConfigError(
                    f"{variable}={text!r} is not one of 1, 0, true, false", key=key, source=variable
                )
            values[key] = flag
            continue
        convert = _NUMBERS.get(key)
        if convert is None:
            values[key] = text
            continue
        try:
            values[key] = convert(text)
        except ValueError:
            raise ConfigError(
                f"{variable}={text!r} is not a number", key=key, source=variable
            ) from None
    sources = {key: ENV_PREFIX + key.upper() for key in values}
    alias, target = environ.get(ALIAS_VARIABLE), environ.get(TARGET_VARIABLE)
    if bool(alias) != bool(target):
        given, missing = (
            (ALIAS_VARIABLE, TARGET_VARIABLE) if alias else (TARGET_VARIABLE, ALIAS_VARIABLE)
        )
        raise ConfigError(f"{given} is set but {missing} is not", key="aliases", source=given)
    if alias and target:
        values["aliases"] = {alias: target}
        sources["aliases"] = f"{ALIAS_VARIABLE} and {TARGET_VARIABLE}"
        if "default" not in values:
            values["default"] = alias
            sources["default"] = ALIAS_VARIABLE
    return values, sources


def _invalid(key: str, message: str) -> ConfigError:
    return ConfigError(message, key=key)


def _suggest(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
