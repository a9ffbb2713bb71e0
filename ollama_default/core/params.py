"""Per-alias parameters: the catalogue of what Ollama accepts, where each goes on every
family of endpoints, and the edits that apply an alias's defaults, overrides and strips.

Every parameter is declared once (:data:`PARAMETERS`: Ollama's ``api.Options`` and
``api.Runner`` in ``api/types.go``, and the top-level ``keep_alive``, ``think``, ``format``
and ``system``), and where it goes on each family of endpoints once (:data:`PLACES`); the
docs' table is generated from both.

How they are applied: by inserting members, never by building the document, so the cost
stays linear and a body Go refuses is still refused (the module docs of
:mod:`~ollama_default.core.request_body`). What makes insertion enough is how Go's
``encoding/json`` decodes (decode.go):

- of duplicate keys the last wins, so an *override* is a member inserted before the
  object's closing brace;
- ``null`` sets a pointer, map, slice or interface field to nil (``literalStore``), so a
  *strip* of such a field is ``"field":null`` at the end; a plain string or number is left
  as it was by ``null``, so there a strip is its zero value (``""``, ``0``), which Ollama
  reads as "not sent" as it would an absent member;
- ``options`` is a ``map[string]any``: a second ``options`` object merges into the map Go
  already made (it "reuses the existing map, keeping existing entries"), ``null`` resets it
  to nil, and ``api.Options.FromMap`` skips nil values (``if val == nil { continue }``). So
  option overrides and strips are one ``"options":{...}`` member at the end (a stripped
  option is ``null`` in it), and option *defaults* one ``"options":{...}`` member placed
  where every options object the client sent comes after it and merges over it: right
  after the client's last ``null`` options member, else right after ``{``;
- a top-level *default* is inserted at the end only when the client sent none: no
  non-null member (or, for a plain string or number, one holding the zero value).

The system prompt goes where each endpoint takes it: ``system`` on ``/api/generate`` and
Anthropic's ``/v1/messages``, ``instructions`` on ``/v1/responses``, and a first message
``{"role":"system",...}`` in the ``messages`` Go reads on ``/api/chat`` and OpenAI's chat
(only when there is a message: an empty chat is Ollama's "load the model" request).

Pure: no I/O, no WSGI.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .errors import ConfigError, RequestError
from .gojson import ObjectReading, array_elements, read_object

#: The key a :class:`ConfigError` about an alias's parameters carries.
ALIASES = "aliases"


class ValueType(Enum):
    """What a parameter's value may be, after the Go type Ollama decodes it into."""

    INTEGER = "an integer"
    NUMBER = "a number"
    BOOLEAN = "a boolean"
    STRING = "a string"
    STRINGS = "a list of strings"
    #: api.Duration: a Go duration string ("30m", "1h5m") or a number of seconds.
    DURATION = 'a duration ("30m") or a number of seconds'
    #: api.ThinkValue: a boolean or one of its levels.
    THINK = 'true, false, "high", "medium", "low" or "max"'
    #: json.RawMessage Ollama reads as "json" or a JSON schema (llm/llama_server.go).
    FORMAT = '"json" or a table (a JSON schema)'


class Mode(Enum):
    """How an alias applies a parameter."""

    #: Filled in only where the client sent none.
    DEFAULTS = "defaults"
    #: Always wins over the client.
    OVERRIDES = "overrides"
    #: The client's value is removed, so the model's own default applies.
    STRIP = "strip"


@dataclass(frozen=True)
class Parameter:
    """One parameter an alias may set: Ollama's name for it, its type, and whether it is
    fixed when the model loads (a different value makes Ollama reload the model)."""

    name: str
    type: ValueType
    load_time: bool = False
    #: Why ``strip`` of it cannot be honoured, when it cannot.
    no_strip: str = ""


_PRESENCE = (
    "Ollama counts a {name} sent as null as set (server/routes.go {where}), so a strip would "
    "not be the model's default; pin it with overrides instead"
)

#: Every parameter, once. Options and Runner fields are Ollama's api/types.go, in order.
PARAMETERS: tuple[Parameter, ...] = (
    Parameter("num_keep", ValueType.INTEGER),
    Parameter("seed", ValueType.INTEGER),
    Parameter("num_predict", ValueType.INTEGER),
    Parameter("top_k", ValueType.INTEGER),
    Parameter("top_p", ValueType.NUMBER),
    Parameter("min_p", ValueType.NUMBER),
    Parameter("typical_p", ValueType.NUMBER),
    Parameter("repeat_last_n", ValueType.INTEGER),
    Parameter("temperature", ValueType.NUMBER),
    Parameter("repeat_penalty", ValueType.NUMBER),
    Parameter("presence_penalty", ValueType.NUMBER),
    Parameter("frequency_penalty", ValueType.NUMBER),
    Parameter("stop", ValueType.STRINGS),
    # api.Runner: "options which must be set when the model is loaded into memory"; the
    # scheduler reloads a model whose Runner options differ (server/sched.go needsReload).
    Parameter(
        "num_ctx",
        ValueType.INTEGER,
        load_time=True,
        no_strip=_PRESENCE.format(name="num_ctx", where="usesAutomaticNumCtx"),
    ),
    Parameter(
        "num_batch",
        ValueType.INTEGER,
        load_time=True,
        no_strip=_PRESENCE.format(name="num_batch", where="usesAutomaticNumBatch"),
    ),
    Parameter("num_gpu", ValueType.INTEGER, load_time=True),
    Parameter("main_gpu", ValueType.INTEGER, load_time=True),
    Parameter("use_mmap", ValueType.BOOLEAN, load_time=True),
    Parameter("num_thread", ValueType.INTEGER, load_time=True),
    Parameter(
        "draft_num_predict",
        ValueType.INTEGER,
        load_time=True,
        no_strip=_PRESENCE.format(name="draft_num_predict", where="hasOption"),
    ),
    # Top-level fields. keep_alive does not reload the model, but each request sets when it
    # is unloaded: clients that vary it decide for each other.
    Parameter("keep_alive", ValueType.DURATION, load_time=True),
    Parameter("think", ValueType.THINK),
    Parameter("format", ValueType.FORMAT),
    Parameter("system", ValueType.STRING),
)

BY_NAME: Mapping[str, Parameter] = {parameter.name: parameter for parameter in PARAMETERS}
_OPTION_NAMES = tuple(p.name for p in PARAMETERS[: PARAMETERS.index(BY_NAME["keep_alive"])])


@dataclass(frozen=True)
class Placement:
    """Where a parameter goes in one family's request body."""

    #: The member's key: top-level, or in ``options``.
    key: str
    in_options: bool = False
    #: The value Go reads as "not sent" there: ``null`` for a pointer, map, slice or
    #: interface; the zero value for a plain string or number. None: nothing does (a strip
    #: is not applied there).
    unset: bytes | None = b"null"
    #: A plain string or number: the zero value reads as not sent (a default fills it in).
    zero_is_unset: bool = False
    #: The system prompt, as a first message of the ``messages`` array.
    as_message: bool = False
    #: What the docs' table says besides the key.
    note: str = ""


def _option(name: str) -> Placement:
    return Placement(name, in_options=True)


def _plain(key: str, zero: bytes, note: str = "") -> Placement:
    return Placement(key, unset=zero, zero_is_unset=True, note=note)


_MESSAGE = Placement("messages", as_message=True, note="a first system message")
_NATIVE_OPTIONS = {name: _option(name) for name in _OPTION_NAMES}
_TOP = {name: Placement(name) for name in ("keep_alive", "think", "format")}

#: Families of endpoints, by the fields their requests take (an Endpoint names its family).
#: Sources: api/types.go GenerateRequest, ChatRequest, EmbedRequest, EmbeddingRequest;
#: openai/openai.go ChatCompletionRequest, CompletionRequest; openai/responses.go
#: ResponsesRequest; anthropic/anthropic.go MessagesRequest; and the From*Request functions
#: that turn them into options.
PLACES: Mapping[str, Mapping[str, Placement]] = {
    "generate": {**_NATIVE_OPTIONS, **_TOP, "system": _plain("system", b'""')},
    "chat": {**_NATIVE_OPTIONS, **_TOP, "system": _MESSAGE},
    "embed": {**_NATIVE_OPTIONS, "keep_alive": Placement("keep_alive")},
    "openai-chat": {
        # All pointers or `any` (ChatCompletionRequest): null is "not sent".
        "temperature": Placement("temperature"),
        "top_p": Placement("top_p"),
        "seed": Placement("seed"),
        "stop": Placement("stop"),
        "frequency_penalty": Placement("frequency_penalty"),
        "presence_penalty": Placement("presence_penalty"),
        "num_predict": Placement("max_tokens"),
        "system": _MESSAGE,
    },
    "openai-completions": {
        # CompletionRequest: top_p and the penalties are plain float32 there.
        "temperature": Placement("temperature"),
        "top_p": _plain("top_p", b"0"),
        "seed": Placement("seed"),
        "stop": Placement("stop"),
        "frequency_penalty": _plain("frequency_penalty", b"0"),
        "presence_penalty": _plain("presence_penalty", b"0"),
        "num_predict": Placement("max_tokens"),
    },
    "openai-responses": {
        "temperature": Placement("temperature"),
        "top_p": Placement("top_p"),
        "num_predict": Placement("max_output_tokens"),
        "system": _plain("instructions", b'""'),
    },
    "anthropic-messages": {
        # max_tokens is a plain int Ollama requires positive (middleware/anthropic.go): it
        # cannot be stripped.
        "num_predict": Placement(
            "max_tokens", unset=None, zero_is_unset=True, note="not stripped: required"
        ),
        "temperature": Placement("temperature"),
        "top_p": Placement("top_p"),
        "top_k": Placement("top_k"),
        "stop": Placement("stop_sequences"),
        "system": Placement("system"),
    },
}


def family_fields(family: str) -> tuple[str, ...]:
    """The top-level keys a family's parameters sit under, for the reading of a body."""
    keys = ("options" if p.in_options else p.key for p in PLACES.get(family, {}).values())
    return tuple(dict.fromkeys(keys))


# --- Values ---------------------------------------------------------------------------------

# Go's time.ParseDuration: a sequence of decimal numbers with units, signed; or "0".
_GO_DURATION = re.compile(
    r"[-+]?(?:0|(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+)"
)
_INT64 = 2**63


def _shown(value: object) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _cut(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def value_problem(kind: ValueType, value: object) -> str | None:
    """What is wrong with ``value`` for a parameter of ``kind``, or None."""
    if kind is ValueType.INTEGER:
        ok = isinstance(value, int) and not isinstance(value, bool) and -_INT64 <= value < _INT64
    elif kind is ValueType.NUMBER:
        ok = _is_number(value) and math.isfinite(value)  # type: ignore[arg-type]
    elif kind is ValueType.BOOLEAN:
        ok = isinstance(value, bool)
    elif kind is ValueType.STRING:
        ok = isinstance(value, str)
    elif kind is ValueType.STRINGS:
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    elif kind is ValueType.DURATION:
        ok = (isinstance(value, str) and _GO_DURATION.fullmatch(value) is not None) or (
            _is_number(value) and math.isfinite(value)  # type: ignore[arg-type]
        )
    elif kind is ValueType.THINK:
        ok = isinstance(value, bool) or value in ("high", "medium", "low", "max")
    else:
        ok = value == "json" or (isinstance(value, Mapping) and _is_json(value))
    return None if ok else f"must be {kind.value}, not {_shown(value)}"


def _is_json(value: object) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def json_value(value: object) -> bytes:
    """``value`` as compact JSON, UTF-8 as Go writes it."""
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


# --- An alias's parameters ------------------------------------------------------------------


@dataclass(frozen=True)
class Alias:
    """An alias given with parameters: its target, and what it does to requests.

    >>> Alias("aya-expanse:8b-q8_0", defaults={"temperature": 0.5},
    ...       overrides={"num_ctx": 8192, "keep_alive": "30m"}, strip=["seed"],
    ...       system="You are a helpful assistant.")  # doctest: +ELLIPSIS
    Alias(target='aya-expanse:8b-q8_0', ...)

    :param target: the real model the alias stands for.
    :param defaults: parameter -> value, filled in only where the client sent none.
    :param overrides: parameter -> value, always winning over the client's.
    :param strip: parameters whose client value is removed (the model's default applies).
    :param system: a system prompt, added when the client sent none (shorthand for
        ``defaults={"system": ...}``; to replace the client's, put it in ``overrides``).
    :param warm: when a reload points the alias at a new target, load that target on the
        upstream first (with the alias's ``keep_alive`` and load-time options), and move
        traffic to it only then.
    :param unload_previous: when a reload points the alias at a new target, unload the
        old one once nothing of ours uses it (no alias points at it, its streams ended).

    The values are checked when an :class:`~ollama_default.AliasTable` is made of it, with
    errors naming the alias.
    """

    target: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    overrides: Mapping[str, Any] = field(default_factory=dict)
    strip: Sequence[str] = ()
    system: str | None = None
    warm: bool = False
    unload_previous: bool = False

    def __init__(
        self,
        target: str,
        *,
        defaults: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
        strip: Iterable[str] = (),
        system: str | None = None,
        warm: bool = False,
        unload_previous: bool = False,
    ) -> None:
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "defaults", dict(defaults or {}))
        object.__setattr__(self, "overrides", dict(overrides or {}))
        object.__setattr__(self, "strip", tuple(strip) if not isinstance(strip, str) else strip)
        object.__setattr__(self, "system", system)
        object.__setattr__(self, "warm", warm)
        object.__setattr__(self, "unload_previous", unload_previous)

    #: The keys of the table form.
    KEYS = ("target", "defaults", "overrides", "strip", "system", "warm", "unload_previous")

    @classmethod
    def from_table(cls, alias: str, table: Mapping[str, Any]) -> Alias:
        """The alias a TOML table (or a dict) describes.

        :raises ConfigError: for an unknown key or a value of the wrong shape.
        """
        for key in table:
            if key not in cls.KEYS:
                raise _error(alias, f"unknown key {_shown(key)} (known: {', '.join(cls.KEYS)})")
        if "target" not in table:
            raise _error(alias, "has no target")
        for key in ("defaults", "overrides"):
            if not isinstance(table.get(key, {}), Mapping):
                raise _error(alias, f"{key} must be a table, not {_shown(table[key])}")
        strip = table.get("strip", ())
        if not isinstance(strip, (list, tuple)):
            raise _error(alias, f"strip must be a list of parameter names, not {_shown(strip)}")
        for key in ("warm", "unload_previous"):
            if not isinstance(table.get(key, False), bool):
                raise _error(alias, f"{key} must be true or false, not {_shown(table[key])}")
        return cls(
            table["target"],
            defaults=table.get("defaults"),
            overrides=table.get("overrides"),
            strip=strip,
            system=table.get("system"),
            warm=table.get("warm", False),
            unload_previous=table.get("unload_previous", False),
        )


def _error(alias: str, problem: str) -> ConfigError:
    return ConfigError(f"alias {alias!r}: {problem}", key=ALIASES)


@dataclass(frozen=True)
class _System:
    mode: Mode
    text: str


@dataclass(frozen=True)
class _Plan:
    """One alias's parameters on one family of endpoints, as bytes ready to insert."""

    #: Option defaults: the members inside an ``"options":{...}``.
    options_defaults: bytes = b""
    #: Option overrides and strips (a stripped option is null), likewise.
    options_rest: bytes = b""
    #: Top-level defaults: (key, whether the zero value reads as unset, the member).
    top_defaults: tuple[tuple[str, bool, bytes], ...] = ()
    #: Top-level overrides and strips: members inserted at the end whatever was sent.
    top_end: bytes = b""
    #: The system prompt, and where the family takes it.
    system: _System | None = None
    system_place: Placement | None = None


@dataclass(frozen=True)
class Params:
    """An alias's parameters, checked, with what they do on each family precomputed.

    Made by :meth:`build`; :data:`NO_PARAMS` for an alias given as a plain target.
    """

    defaults: Mapping[str, Any] = field(default_factory=dict)
    overrides: Mapping[str, Any] = field(default_factory=dict)
    strip: tuple[str, ...] = ()
    _plans: Mapping[str, _Plan] = field(default_factory=dict, repr=False, compare=False)

    def __bool__(self) -> bool:
        return bool(self.defaults or self.overrides or self.strip)

    @classmethod
    def build(cls, alias: str, given: Alias) -> Params:
        """Check ``given``'s parameters for the alias named ``alias``.

        :raises ConfigError: one line naming the alias and the key.
        """
        modes: dict[str, Mode] = {}
        defaults = dict(given.defaults)
        if given.system is not None:
            if "system" in defaults:
                raise _error(alias, "system is given twice: as system and as defaults.system")
            defaults["system"] = given.system
        if isinstance(given.strip, str):
            raise _error(
                alias, f"strip must be a list of parameter names, not {_shown(given.strip)}"
            )
        for mode, names in (
            (Mode.DEFAULTS, defaults),
            (Mode.OVERRIDES, given.overrides),
            (Mode.STRIP, given.strip),
        ):
            for name in names:
                parameter = BY_NAME.get(name) if isinstance(name, str) else None
                if parameter is None:
                    raise _error(
                        alias, f"{mode.value} names {_shown(name)}, which is no Ollama parameter"
                    )
                if name in modes:
                    raise _error(alias, f"{name} is in both {modes[name].value} and {mode.value}")
                modes[name] = mode
                if mode is Mode.STRIP:
                    if parameter.no_strip:
                        raise _error(
                            alias, f"strip.{name} cannot be honoured: {parameter.no_strip}"
                        )
                    continue
                problem = value_problem(parameter.type, names[name])  # type: ignore[call-overload]
                if problem:
                    raise _error(alias, f"{mode.value}.{name} {problem}")
        overrides = dict(given.overrides)
        strip = tuple(given.strip)
        plans = {
            family: _plan(places, defaults, overrides, strip) for family, places in PLACES.items()
        }
        return cls(defaults, overrides, strip, plans)

    def value(self, name: str) -> tuple[Mode, Any] | None:
        """The mode and value this alias gives ``name``, or None."""
        if name in self.overrides:
            return Mode.OVERRIDES, self.overrides[name]
        if name in self.defaults:
            return Mode.DEFAULTS, self.defaults[name]
        if name in self.strip:
            return Mode.STRIP, None
        return None

    def describe(self) -> str:
        """The parameters in a line, for ``check`` and the start-up log (long values cut)."""
        parts = []
        for mode, items in (
            (Mode.DEFAULTS, self.defaults.items()),
            (Mode.OVERRIDES, self.overrides.items()),
        ):
            if items:
                shown = ", ".join(f"{name}={_cut(_shown(value))}" for name, value in items)
                parts.append(f"{mode.value}: {shown}")
        if self.strip:
            parts.append(f"strip: {', '.join(self.strip)}")
        return "; ".join(parts)

    def plan(self, family: str) -> _Plan | None:
        return self._plans.get(family)


NO_PARAMS = Params()


def load_request(target: str, params: Params, *, unload: bool = False) -> dict[str, Any]:
    """The body of the request that loads ``target`` as an alias with ``params`` would
    (an empty prompt: Ollama loads and answers ``done_reason: "load"``), or unloads it.

    It carries the alias's ``keep_alive`` and load-time options (``num_ctx``...), from its
    overrides or defaults: a load with other values would be reloaded by the alias's first
    request (server/sched.go ``needsReload``). An unload is ``keep_alive: 0`` alone
    (server/routes.go: an empty prompt and a zero keep_alive).
    """
    if unload:
        return {"model": target, "keep_alive": 0}
    body: dict[str, Any] = {"model": target}
    options: dict[str, Any] = {}
    for parameter in PARAMETERS:
        if not parameter.load_time:
            continue
        given = params.value(parameter.name)
        if given is None or given[0] is Mode.STRIP:
            continue
        if parameter.name in _OPTION_NAMES:
            options[parameter.name] = given[1]
        else:
            body[parameter.name] = given[1]
    if options:
        body["options"] = options
    return body


def _members(items: Iterable[tuple[str, bytes]]) -> bytes:
    return b",".join(json_value(key) + b":" + value for key, value in items)


def _plan(
    places: Mapping[str, Placement],
    defaults: Mapping[str, Any],
    overrides: Mapping[str, Any],
    strip: Sequence[str],
) -> _Plan:
    option_defaults: list[tuple[str, bytes]] = []
    option_rest: list[tuple[str, bytes]] = []
    top_defaults: list[tuple[str, bool, bytes]] = []
    top_end: list[tuple[str, bytes]] = []
    system: _System | None = None
    for mode, items in (
        (Mode.DEFAULTS, defaults.items()),
        (Mode.OVERRIDES, overrides.items()),
        (Mode.STRIP, ((name, None) for name in strip)),
    ):
        for name, value in items:
            place = places.get(name)
            if place is None:
                continue  # no equivalent on this family: not applied (documented)
            if name == "system":
                system = _System(mode, value if value is not None else "")
                continue
            if mode is Mode.STRIP:
                if place.unset is None:
                    continue
                literal = place.unset
            else:
                literal = json_value(value)
            if place.in_options:
                (option_defaults if mode is Mode.DEFAULTS else option_rest).append(
                    (place.key, literal)
                )
            elif mode is Mode.DEFAULTS:
                top_defaults.append(
                    (place.key, place.zero_is_unset, json_value(place.key) + b":" + literal)
                )
            else:
                top_end.append((place.key, literal))
    system_place = places.get("system") if system is not None else None
    return _Plan(
        top_defaults=tuple(top_defaults),
        options_defaults=_members(option_defaults),
        options_rest=_members(option_rest),
        top_end=_members(top_end),
        system=system,
        system_place=system_place,
    )


# --- Applying them --------------------------------------------------------------------------

#: An edit of a body: replace ``body[start:end]`` with the bytes.
Edit = tuple[int, int, bytes]


def param_edits(
    body: bytes, reading: ObjectReading, params: Params, family: str
) -> Generator[int, None, list[Edit]]:
    """The insertions (and, for a system prompt that replaces the client's, removals of its
    system messages) that apply ``params`` to a body read as ``reading``; a generator of
    steps, as reading the messages' roles may take a while.

    ``reading`` must have read :func:`family_fields` of ``family``, and the object must hold
    a member already (the model's): every insertion at the end starts with a comma.
    """
    plan = params.plan(family)
    if plan is None:
        return []
    close = reading.end - 1
    edits: list[Edit] = []
    end: list[bytes] = []
    values = reading.values
    # Options: defaults where the client's objects merge over them, then the rest.
    if plan.options_defaults:
        client_options = "options" in values or "options" in reading.nulls
        if not client_options:
            end.append(_options(plan.options_defaults))
        elif "options" in reading.nulls:
            at = reading.nulls["options"].end
            edits.append((at, at, b"," + _options(plan.options_defaults)))
        else:
            at = reading.start + 1
            edits.append((at, at, _options(plan.options_defaults) + b","))
    if plan.options_rest:
        end.append(_options(plan.options_rest))
    for key, zero_is_unset, member in plan.top_defaults:
        if _is_unset(body, reading, key, zero_is_unset):
            end.append(member)
    if plan.top_end:
        end.append(plan.top_end)
    if plan.system is not None and plan.system_place is not None:
        more = yield from _system_edits(body, reading, plan.system, plan.system_place)
        edits += more[0]
        end += more[1]
    if end:
        edits.append((close, close, b"," + b",".join(end)))
    return edits


def _options(members: bytes) -> bytes:
    return b'"options":{' + members + b"}"


def _is_unset(body: bytes, reading: ObjectReading, key: str, zero_is_unset: bool) -> bool:
    """Whether Go reads no value from the client's members spelling ``key``.

    A plain string or number (``zero_is_unset``) holds the last non-null value, unset when
    it is the zero value; a pointer, slice or interface is set to nil by a ``null``, so it
    holds nothing when a ``null`` comes after the last value (decode.go literalStore).
    """
    member = reading.values.get(key)
    if member is None:
        return True
    if not zero_is_unset:
        null = reading.nulls.get(key)
        return null is not None and null.start > member.start
    if member.text is not None:
        return member.text == ""
    raw = body[member.start : member.end]
    try:
        return float(raw) == 0
    except ValueError:
        return False  # not a number: Ollama refuses it itself


def _system_edits(
    body: bytes, reading: ObjectReading, system: _System, place: Placement
) -> Generator[int, None, tuple[list[Edit], list[bytes]]]:
    """The edits for a system prompt: (edits elsewhere, members to insert at the end)."""
    if not place.as_message:
        member = json_value(place.key) + b":"
        if system.mode is Mode.OVERRIDES:
            return [], [member + json_value(system.text)]
        if system.mode is Mode.STRIP:
            assert place.unset is not None  # every top-level system place has one
            return [], [member + place.unset]
        # A system prompt sent as blocks (Anthropic) is sent; an empty string is none.
        sent = reading.values.get(place.key)
        if _is_unset(body, reading, place.key, place.zero_is_unset) or (
            sent is not None and sent.text == ""
        ):
            return [], [member + json_value(system.text)]
        return [], []
    messages = reading.values.get(place.key)
    if _is_unset(body, reading, place.key, False) or messages is None:
        return [], []  # no messages: a "load the model" request
    if body[messages.start] != ord("["):
        return [], []  # no messages: a "load the model" request, or one Ollama refuses
    spans = array_elements(body, messages.start, messages.end)
    if not spans:
        return [], []  # empty (load the model), or not an array Go reads
    roles: list[bool] = []
    for start, end in spans:
        yield end - start
        roles.append(_is_system_message(body, start, end))
    element = b'{"role":"system","content":' + json_value(system.text) + b"}"
    after_bracket = messages.start + 1
    if system.mode is Mode.DEFAULTS:
        if any(roles):
            return [], []
        return [(after_bracket, after_bracket, element + b",")], []
    # Override or strip: the client's system messages are spliced out (each checked to be
    # JSON Go accepts first, so that no error leaves with it), ours put first on override.
    removed = [span for span, is_system in zip(spans, roles, strict=True) if is_system]
    if not all(_is_valid_json(body[start:end]) for start, end in removed):
        return [], []  # the body is one Ollama refuses: leave it as it is
    kept = [index for index, is_system in enumerate(roles) if not is_system]
    edits: list[Edit] = []
    last_kept = kept[-1] if kept else -1
    for index, is_system in enumerate(roles):
        if not is_system:
            continue
        if index < last_kept:
            edits.append((spans[index][0], spans[index + 1][0], b""))
        elif last_kept >= 0:
            edits.append((spans[last_kept][1], spans[-1][1], b""))
            break
        else:
            edits.append((spans[0][0], spans[-1][1], b""))
            break
    if system.mode is Mode.OVERRIDES:
        edits.append((after_bracket, after_bracket, element + (b"," if kept else b"")))
    elif not kept:
        return [], []  # stripping every message would turn a chat into a load request
    return edits, []


def _is_system_message(body: bytes, start: int, end: int) -> bool:
    """Whether the element is an object whose ``role`` Go reads as ``"system"``."""
    if body[start] != ord("{"):
        return False
    # Most messages start with their only role, plain: {"role":"user",... A key Go folds to
    # "role" is spelled "role" in any case when the element is ASCII without escapes, so one
    # such spelling there is the one Go reads.
    element = body[start:end]
    if element.isascii() and b"\\" not in element:
        first = _PLAIN_ROLE.match(element)
        if first is not None and element.lower().count(b'"role"') == 1:
            return first.group(1) == b"system"
    try:
        reading = read_object(body[start:end], ("role",))
    except RequestError:  # a bad element: Ollama refuses the body itself
        return False
    role = reading.values.get("role") if reading is not None else None
    return role is not None and role.text == "system"


_PLAIN_ROLE = re.compile(rb'\{[ \t\r\n]*"[rR][oO][lL][eE]"[ \t\r\n]*:[ \t\r\n]*"([^"\\]*)"')


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)


_STRICT_JSON = json.JSONDecoder(parse_constant=_refuse_constant)


def _is_valid_json(raw: bytes) -> bool:
    """Whether ``raw`` is one JSON value Go accepts (the stdlib's strict parser, with Go's
    reading of invalid UTF-8 in strings as U+FFFD; deeper than Python recurses: no)."""
    try:
        text = raw.decode("utf-8", "surrogateescape")
        _STRICT_JSON.decode(text)
    except (ValueError, RecursionError):
        return False
    return True


# --- Load-time conflicts --------------------------------------------------------------------


class LoadTimeConflictWarning(UserWarning):
    """Aliases share a target but load it differently (see :class:`Conflict`)."""


@dataclass(frozen=True)
class Conflict:
    """Two aliases of one target that load it differently: they evict each other."""

    target: str
    parameter: str
    first: tuple[str, object]
    second: tuple[str, object]

    def __str__(self) -> str:
        (a, value_a), (b, value_b) = self.first, self.second
        effect = (
            "each request sets when Ollama unloads the model, so each alias cuts the other's "
            "time short"
            if self.parameter == "keep_alive"
            else "Ollama reloads the model each time requests switch between them"
        )
        return (
            f"aliases {a!r} and {b!r} share the target {self.target!r} but set {self.parameter} "
            f"differently ({_conflict_value(value_a)} and {_conflict_value(value_b)}): {effect}; "
            "set it alike in overrides of both"
        )


_UNSET = object()


def _conflict_value(value: object) -> str:
    return "not set" if value is _UNSET else _shown(value)


def load_time_conflicts(routes: Iterable[tuple[str, str, str, Params]]) -> list[Conflict]:
    """Aliases (name, target, the target's name key, params) sharing a target with different
    load-time values (set or not, in defaults or overrides): per parameter, each alias that
    differs from the first alias of its target, with that one."""
    by_target: dict[str, tuple[str, list[tuple[str, Params]]]] = {}
    for alias, target, key, params in routes:
        by_target.setdefault(key, (target, []))[1].append((alias, params))
    conflicts = []
    for target, aliases in by_target.values():
        if len(aliases) < 2:
            continue
        for parameter in PARAMETERS:
            if not parameter.load_time:
                continue
            first: tuple[str, object] | None = None
            for alias, params in aliases:
                given = params.value(parameter.name)
                value = given[1] if given is not None and given[0] is not Mode.STRIP else _UNSET
                if first is None:
                    first = (alias, value)
                elif first[1] != value or type(first[1]) is not type(value):
                    conflicts.append(Conflict(target, parameter.name, first, (alias, value)))
    return conflicts
