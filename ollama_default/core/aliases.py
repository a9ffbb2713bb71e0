"""The alias table: which alias names which real model, and which alias is the default.

Built once, validated at construction (a bad table is a :class:`ConfigError`, never a
surprise at request time) and immutable afterwards, because gunicorn threads share it.

Pure: no I/O, no WSGI.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .names import name_key, parse_name
from .params import NO_PARAMS, Alias, Conflict, Params, load_time_conflicts

#: What an alias may be given as: its target, an :class:`Alias`, or the table form of one.
AliasValue = str | Alias | Mapping[str, Any]

#: The keys a :class:`ConfigError` from the table carries: the aliases, or the default.
ALIASES = "aliases"
DEFAULT = "default"


@dataclass(frozen=True)
class Route:
    """Where one alias leads: the real model sent upstream in its place.

    ``target_keys`` holds every :func:`~ollama_default.model_names.name_key` under which a
    response may name the target: the target itself and, for a ``:cloud`` target, the
    base name Ollama forwards it as.
    """

    alias: str
    target: str
    target_keys: frozenset[str] = field(repr=False)
    #: The alias's parameters (:class:`~ollama_default.core.params.Params`; false when none).
    params: Params = field(default=NO_PARAMS, repr=False, compare=False)
    #: Load a new target before traffic moves to it (``warm = true``).
    warm: bool = field(default=False, compare=False)
    #: Unload the old target once unused (``unload_previous = true``).
    unload_previous: bool = field(default=False, compare=False)

    @classmethod
    def build(
        cls,
        alias: str,
        target: str,
        params: Params = NO_PARAMS,
        *,
        warm: bool = False,
        unload_previous: bool = False,
    ) -> Route:
        parsed = parse_name(target)
        keys = {name_key(target)}
        if parsed is not None and (base := parsed.cloud_base()) is not None:
            keys.add(name_key(base.fully_qualified()))
        return cls(alias, target, frozenset(keys), params, warm, unload_previous)


class AliasTable(Mapping[str, Route]):
    """Aliases and their routes, looked up the way Ollama looks up model names.

    A lookup matches every spelling Ollama treats as the same name: ``llmodel``,
    ``llmodel:latest``, ``library/LLModel``.

    >>> table = AliasTable({"llmodel": "aya-expanse:8b-q8_0"})
    >>> table.resolve("llmodel:latest").target
    'aya-expanse:8b-q8_0'
    >>> table.default.alias
    'llmodel'

    :param mapping: alias -> real model name, or an :class:`~ollama_default.Alias` (or a
        dict of the same keys: ``target``, ``defaults``, ``overrides``, ``strip``,
        ``system``, ``warm``, ``unload_previous``) for an alias with parameters.
    :param default: the alias used when a request names no model; with a single alias
        and no default given, that alias is the default.
    :raises ConfigError: with ``key`` ``"default"`` when the default is not an alias, else
        ``"aliases"``, so that a caller can tell which it was without reading the message.
    """

    def __init__(self, mapping: Mapping[str, AliasValue], default: str | None = None) -> None:
        routes: dict[str, Route] = {}
        by_key: dict[str, Route] = {}
        for alias, target in mapping.items():
            route = _checked_route(alias, target)
            key = name_key(alias)
            if key in by_key:
                raise ConfigError(
                    f"alias {alias!r} names the same model as {by_key[key].alias!r}", key=ALIASES
                )
            routes[alias] = by_key[key] = route
        for route in routes.values():
            if name_key(route.target) in by_key:
                raise ConfigError(
                    f"target {route.target!r} of alias {route.alias!r} is itself an alias",
                    key=ALIASES,
                )
        if default is None and len(routes) == 1:
            default = next(iter(routes))
        if default is not None and default not in routes:
            raise ConfigError(
                f"default {default!r} is not one of the aliases {sorted(routes)}", key=DEFAULT
            )
        self._routes = routes
        self._by_key = by_key
        self._default = routes[default] if default is not None else None
        self._has_params = any(route.params for route in routes.values())

    @property
    def has_params(self) -> bool:
        """Whether any alias carries parameters (requests are then read for them)."""
        return self._has_params

    def load_time_conflicts(self) -> list[Conflict]:
        """Aliases sharing a target with different load-time parameters (``num_ctx``,
        ``keep_alive``...): requests through them make Ollama reload the model in turn."""
        return load_time_conflicts(
            (route.alias, route.target, name_key(route.target), route.params)
            for route in self._routes.values()
        )

    @property
    def default(self) -> Route | None:
        """The route for requests that name no model, or None when there is no default."""
        return self._default

    def resolve(self, name: str) -> Route | None:
        """Return the route for an alias in any spelling Ollama accepts, else None."""
        return self._by_key.get(name_key(name))

    def __getitem__(self, alias: str) -> Route:
        return self._routes[alias]

    def __iter__(self) -> Iterator[str]:
        return iter(self._routes)

    def __len__(self) -> int:
        return len(self._routes)

    def __repr__(self) -> str:
        targets = {alias: route.target for alias, route in self._routes.items()}
        default = self.default.alias if self.default else None
        return f"AliasTable({targets!r}, default={default!r})"


def _checked_route(alias: object, value: object) -> Route:
    if not isinstance(alias, str) or parse_name(alias) is None:
        raise ConfigError(f"alias {alias!r} is not a valid Ollama model name", key=ALIASES)
    params = NO_PARAMS
    target = value
    warm = unload_previous = False
    if isinstance(value, Mapping):
        value = Alias.from_table(alias, value)
    if isinstance(value, Alias):
        target = value.target
        params = Params.build(alias, value)
        warm, unload_previous = value.warm, value.unload_previous
    if not isinstance(target, str) or parse_name(target) is None:
        raise ConfigError(
            f"target {target!r} of alias {alias!r} is not a valid Ollama model name", key=ALIASES
        )
    if name_key(alias) == name_key(target):
        raise ConfigError(f"alias {alias!r} points at itself", key=ALIASES)
    return Route.build(alias, target, params, warm=warm, unload_previous=unload_previous)
