"""Proxy settings, from the environment and a TOML file.

Every setting has a TOML key and an environment variable ``OLLAMA_DEFAULT_<KEY>``; the
environment wins over the file for the keys it sets. ``OLLAMA_DEFAULT_ALIAS`` with
``OLLAMA_DEFAULT_TARGET`` stands for one alias that is also the default, in place of the
file's ``[aliases]`` and ``default``. ``OLLAMA_DEFAULT_CONFIG`` names the file.

Every problem is a :class:`~ollama_default.errors.ConfigError` of one line that names the
key (or variable) and the value.
"""

from __future__ import annotations

import difflib
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .aliases import AliasTable
from .errors import ConfigError
from .framing import MAX_RECORD_BYTES
from .middleware import MAX_BODY_BYTES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ENV_PREFIX = "OLLAMA_DEFAULT_"
DEFAULT_UPSTREAM = "http://127.0.0.1:11434"
_CHOICES = {"log_level": ("debug", "info", "warning", "error"), "log_format": ("text", "json")}


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
            raise ConfigError(f"upstream {self.upstream!r} is not an http:// or https:// URL")
        if parts.query or parts.fragment:
            raise ConfigError(f"upstream {self.upstream!r} must not have a query or fragment")
        if self.prefix and (not self.prefix.startswith("/") or "//" in self.prefix):
            raise ConfigError(f"prefix {self.prefix!r} must be a path such as '/llm'")
        if self.prefix.endswith("/"):
            object.__setattr__(self, "prefix", self.prefix.rstrip("/"))
        for name in ("connect_timeout_s", "read_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive number of seconds, not {value!r}")
            if math.isinf(value) or math.isnan(value):
                raise ConfigError(f"{name} must be a finite number of seconds, not {value!r}")
        for name in ("max_body_bytes", "max_record_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive number of bytes, not {value!r}")
        if not isinstance(self.access_log, bool):
            raise ConfigError(f"access_log must be true or false, not {self.access_log!r}")
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        if not isinstance(self.log_file, str) or not self.log_file:
            raise ConfigError(f"log_file must be '-' or a file name, not {self.log_file!r}")
        if not isinstance(self.aliases, Mapping):
            raise ConfigError(f"aliases must be a table of alias = target, not {self.aliases!r}")
        if self.aliases or self.default is not None:
            AliasTable(self.aliases, self.default)  # raises ConfigError on a bad table

    @property
    def alias_table(self) -> AliasTable:
        """The aliases as a lookup table."""
        return AliasTable(self.aliases, self.default)


_KEYS = {f.name for f in fields(Settings)}
_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True,
             "0": False, "false": False, "no": False, "off": False}  # fmt: skip
_NUMBERS = {"connect_timeout_s": float, "read_timeout_s": float,
            "max_body_bytes": int, "max_record_bytes": int}  # fmt: skip


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Return the settings that ``environ`` (and the file it names) describe.

    :raises ConfigError: for any problem, in one line naming the key and the value.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    config_path = environ.get(ENV_PREFIX + "CONFIG")
    if config_path:
        values.update(read_config_file(Path(config_path)))
        sources.update(dict.fromkeys(values, f"config file {config_path!r}"))
    from_environment = _from_environment(environ)
    if "aliases" in from_environment:
        values.pop("default", None)  # the environment's alias replaces the file's table
        sources["aliases"] = f"{ENV_PREFIX}ALIAS and {ENV_PREFIX}TARGET"
    values.update(from_environment)
    sources.update({key: ENV_PREFIX + key.upper() for key in from_environment if key != "aliases"})
    try:
        return Settings(**values)
    except ConfigError as error:
        key = str(error).split(" ", 1)[0]
        key = "aliases" if key in ("alias", "target") else key
        source = sources.get(key)
        raise ConfigError(f"{error} (set by {source})" if source else str(error)) from None


def read_config_file(path: Path) -> dict[str, Any]:
    """Return the settings a TOML file sets.

    :raises ConfigError: when it cannot be read, is not TOML, or has an unknown key.
    """
    try:
        with path.open("rb") as file:
            document: dict[str, Any] = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {error}") from None
    for key in document:
        if key not in _KEYS:
            raise ConfigError(f"config file {str(path)!r}: unknown key {key!r}{_suggest(key)}")
    return document


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in sorted(_KEYS - {"aliases"}):
        text = environ.get(ENV_PREFIX + key.upper())
        if text is None or text == "":
            continue
        if key == "access_log":
            flag = _BOOLEANS.get(text.strip().lower())
            if flag is None:
                raise ConfigError(
                    f"{ENV_PREFIX}{key.upper()}={text!r} is not one of 1, 0, true, false"
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
            raise ConfigError(f"{ENV_PREFIX}{key.upper()}={text!r} is not a number") from None
    alias, target = environ.get(ENV_PREFIX + "ALIAS"), environ.get(ENV_PREFIX + "TARGET")
    if bool(alias) != bool(target):
        given, missing = ("ALIAS", "TARGET") if alias else ("TARGET", "ALIAS")
        raise ConfigError(f"{ENV_PREFIX}{given} is set but {ENV_PREFIX}{missing} is not")
    if alias and target:
        values["aliases"] = {alias: target}
        values["default"] = environ.get(ENV_PREFIX + "DEFAULT") or alias
    return values


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, sorted(_KEYS), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
