"""The checks a configured value passes, shared by everything that takes one.

``DefaultModel``'s keyword arguments, the forwarder's and the proxy's settings refuse the
same value with the same one-line message, because one function here says it. Each check
takes the key (for the message) and the value, and returns the value it accepts, or raises
:class:`~ollama_default.core.errors.ConfigError` naming both, with ``key`` set.

Pure: no I/O, no WSGI.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from .errors import ConfigError


def positive_bytes(key: str, value: object) -> int:
    """Return ``value``, a positive whole number of bytes.

    :raises ConfigError: for anything else, ``True`` included: Python counts a bool as an
        int, and ``max_body_bytes=True`` would be a limit of one byte.
    """
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{key} must be a positive number of bytes, not {value!r}", key=key)
    return value


def positive_seconds(key: str, value: object) -> float:
    """Return ``value``, a positive, finite number of seconds (an int stays an int).

    :raises ConfigError: for anything else, a bool, infinity and NaN included.
    """
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{key} must be a positive number of seconds, not {value!r}", key=key)
    if math.isinf(value) or math.isnan(value):
        raise ConfigError(f"{key} must be a finite number of seconds, not {value!r}", key=key)
    return value


def at_least(key: str, value: int, other_key: str, other: int) -> int:
    """Return ``value`` when it is at least ``other``, the value of ``other_key``.

    :raises ConfigError: keyed ``key``, naming both, when it is less.
    """
    if value < other:
        raise ConfigError(f"{key} ({value}) must be at least {other_key} ({other})", key=key)
    return value


def switch(key: str, value: object) -> bool:
    """Return ``value``, ``True`` or ``False``.

    :raises ConfigError: for anything else, such as the string ``'false'``.
    """
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, not {value!r}", key=key)
    return value


def one_of(choices: Sequence[str]) -> Callable[[str, object], str]:
    """Return a check that accepts exactly one of ``choices``."""

    def check(key: str, value: object) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ConfigError(f"{key} must be one of {', '.join(choices)}, not {value!r}", key=key)
        return value

    return check


def cap(key: str, value: object) -> int | None:
    """Return ``value``, a positive whole number, or None for no cap (``0`` or None).

    :raises ConfigError: for anything else, a bool included.
    """
    if value is None or (value == 0 and not isinstance(value, bool)):
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{key} must be a whole number (0 for none), not {value!r}", key=key)
    return value


def count(key: str, value: object) -> int:
    """Return ``value``, a whole number, 0 or more.

    :raises ConfigError: for anything else, a bool included.
    """
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{key} must be a whole number, 0 or more, not {value!r}", key=key)
    return value
