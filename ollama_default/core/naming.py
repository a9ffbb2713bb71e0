"""How a request's model names are read: aliases, names that mean the default, hidden real
models, and the fallback to the default.

One :class:`Naming` holds the operator's choices, checked at construction; its
:meth:`~Naming.decide` says, for one name a request holds, which route it takes, or refuses
the request. The request body, the path and the form all decide through it
(:mod:`~ollama_default.core.request_body`, :mod:`~ollama_default.core.multipart`), so a name
is read the same wherever it sits.

- An **alias** leads to its target, and the client is shown the alias as it spelled it.
  Where the request would make, remove or publish a model under the name (create's
  ``model``, copy's ``destination``, delete, push: :attr:`Endpoint.destination_fields
  <ollama_default.core.endpoints.Endpoint.destination_fields>`), an alias is refused with
  403: it is configuration, not a model in Ollama's store, and the request would otherwise
  act on its target for every user of the alias.
- A **default name** (``default_names``: ``"default"``, ``"unknown"``) means "no model" on
  the endpoints that take a default: it leads to the default alias's target, and the client
  is shown the default alias, as for a request that named none. Default names compare as
  Ollama compares model names (:func:`~ollama_default.core.names.name_key`: ``Default`` and
  ``default:latest`` are ``default``), as aliases do.
- Any **other name** goes on as sent; with ``hide_real_models`` it is refused with 404,
  worded as Ollama words a missing model on that endpoint (:func:`not_found_message`), and
  nothing reaches the upstream; with ``fallback_to_default`` too, on an inference endpoint,
  it goes to the default instead (to the client no real model exists, so none is installed).

Pure: no I/O, no WSGI.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .aliases import AliasTable, Route
from .endpoints import Endpoint
from .errors import ConfigError, RequestError
from .names import name_key, parse_name

#: The keys a :class:`ConfigError` from :class:`Naming` carries.
DEFAULT_NAMES = "default_names"
FALLBACK_TO_DEFAULT = "fallback_to_default"


class RefusedName(RequestError):
    """A request refused for a model name it holds; ``name`` as sent, and the route of the
    alias it names (None for a real model), for the log."""

    def __init__(self, status: int, message: str, name: str, route: Route | None) -> None:
        super().__init__(status, message)
        self.name = name
        self.route = route


@dataclass(frozen=True)
class Naming:
    """The aliases and the choices that say how a request's model names are read.

    >>> naming = Naming.build(AliasTable({"llmodel": "qwen3:4b"}), default_names=["default"])
    >>> from ollama_default.core.endpoints import find_endpoint
    >>> shown, route = naming.decide("Default", find_endpoint("/api/chat"), "model")
    >>> shown, route.target
    ('llmodel', 'qwen3:4b')

    Build it with :meth:`build`, which checks the choices.
    """

    aliases: AliasTable
    #: The :func:`~ollama_default.core.names.name_key` of each default name.
    default_keys: frozenset[str] = frozenset()
    hide_real_models: bool = False
    fallback_to_default: bool = False

    @classmethod
    def build(
        cls,
        aliases: AliasTable,
        *,
        default_names: Iterable[str] = (),
        hide_real_models: bool = False,
        fallback_to_default: bool = False,
    ) -> Naming:
        """Check the choices against the aliases, and build the naming.

        :param default_names: names that mean "the default alias" where a default applies.
        :param hide_real_models: refuse every name that is not an alias (or a default name).
        :param fallback_to_default: send a request for a model that is not installed to the
            default (see :mod:`~ollama_default.middleware`).
        :raises ConfigError: for a default name that is blank or not a string, that is also an
            alias; for default names or a fallback without a default alias.
        """
        if isinstance(default_names, str):
            raise ConfigError(
                f"default_names must be a list of names, not {default_names!r}",
                key=DEFAULT_NAMES,
            )
        keys: set[str] = set()
        for name in default_names:
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(f"default_names: {name!r} is not a model name", key=DEFAULT_NAMES)
            route = aliases.resolve(name)
            if route is not None:
                raise ConfigError(
                    f"default_names: {name!r} is the alias {route.alias!r}; a name cannot be both",
                    key=DEFAULT_NAMES,
                )
            keys.add(name_key(name))
        if aliases.default is None:
            if keys:
                raise ConfigError(
                    "default_names need a default alias: set default", key=DEFAULT_NAMES
                )
            if fallback_to_default:
                raise ConfigError(
                    "fallback_to_default needs a default alias: set default",
                    key=FALLBACK_TO_DEFAULT,
                )
        return cls(aliases, frozenset(keys), bool(hide_real_models), bool(fallback_to_default))

    def decide(self, name: str, endpoint: Endpoint, field: str) -> tuple[str, Route] | None:
        """Decide for a name that is not blank, held in ``field`` (the first key of one of
        ``endpoint``'s model references): the name to show the client and the route taken,
        or None when the request goes on as sent.

        :raises RequestError: 403 for an alias where a model would be made, removed or
            published; 404 for a real model while real models are hidden.
        """
        route = self.aliases.resolve(name)
        if route is not None:
            if field in endpoint.destination_fields:
                message = self._alias_refusal(name, route, endpoint, field)
                raise RefusedName(403, message, name, route)
            return name, route
        default = self.aliases.default
        if default is not None and endpoint.takes_default:
            if self.default_keys and name_key(name) in self.default_keys:
                return default.alias, default
            if self.hide_real_models and self.fallback_to_default and endpoint.falls_back:
                return default.alias, default
        if self.hide_real_models:
            raise RefusedName(404, not_found_message(name, endpoint, field), name, None)
        return None

    def may_fall_back(self, endpoint: Endpoint) -> bool:
        """Whether a request for a real model on ``endpoint`` is tried again with the default
        when the upstream says the model is not found."""
        return self.fallback_to_default and endpoint.falls_back

    def _alias_refusal(self, name: str, route: Route, endpoint: Endpoint, field: str) -> str:
        what = endpoint.destination_fields[field]
        # With real models hidden, the target is not named to the client (the log has it).
        target = "" if self.hide_real_models else f" for {_quoted(route.target)}"
        return (
            f"{_quoted(name)} is an alias{target} in the proxy's configuration, not a model "
            f"in Ollama's store: it cannot be {what}"
        )


def not_found_message(name: str, endpoint: Endpoint, field: str = "model") -> str:
    """Ollama's words for a model it does not have, on ``endpoint``, for ``name`` as sent.

    ``server/routes.go`` at commit fb30760: generate and chat (and the OpenAI and Anthropic
    layers over them) say ``model 'x' not found`` (:263, :2500); embed and the legacy
    embeddings ``model "x" not found, try pulling it first`` (``handleScheduleError``,
    :3116); show (and ``/v1/models/{model}``, which asks show) names the model as it lists it,
    ``model 'x:latest' not found`` (:1355, :1367); copy ``model "x" not found`` (:1680);
    delete ``model 'x' not found`` (:1272). Pull, push and create from a model Ollama lacks
    fail otherwise (a registry error, a stream's last line); they get delete's words.
    """
    if endpoint.path in ("/api/embed", "/api/embeddings", "/v1/embeddings"):
        return f"model {_go_quoted(name)} not found, try pulling it first"
    if endpoint.path in ("/api/show", "/v1/models/{model}"):
        parsed = parse_name(name)
        shown = parsed.display_shortest() if parsed is not None else name
        return f"model '{shown}' not found"
    if endpoint.path == "/api/copy" and field == "source":
        return f"model {_go_quoted(name)} not found"
    return f"model '{name}' not found"


def _go_quoted(text: str) -> str:
    """``text`` as Go's ``%q`` writes it, for the printable names model names are."""
    return json.dumps(text, ensure_ascii=False)


def _quoted(text: str) -> str:
    return "'" + text + "'"


# Ollama's words for a missing model, in every form not_found_message lists (the name
# quoted either way; Go's %q may escape inside the quotes).
_NOT_FOUND = re.compile(r"""model (['"]).*\1 not found(?:, try pulling it first)?""", re.DOTALL)


def is_model_not_found(body: bytes) -> bool:
    """Whether an error body (native, OpenAI's or Anthropic's) says the model is not found.

    >>> is_model_not_found(b'{"error":"model \'qwen3:4b\' not found"}')
    True
    """
    try:
        document = json.loads(body)
    except ValueError:
        return False
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict):  # OpenAI's and Anthropic's error objects
        error = error.get("message")
    return isinstance(error, str) and _NOT_FOUND.fullmatch(error) is not None
