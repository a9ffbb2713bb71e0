"""How a setting is declared once, and how every source of settings is read from that.

A settings class is a frozen dataclass whose fields are declared with :func:`setting` (one
value: its default, its :class:`Kind`, what it means, its flag) or :func:`group` (a nested
table of settings, such as ``[limits]``). Everything else comes from those fields: the TOML
keys, the environment variables, the command-line flags, the checks, ``--help`` and the
docs' settings table, as gunicorn's ``config.py`` derives its command line, config file and
docs from one declaration per setting.

A setting's key is its field's name, after its group's name and a dot when it sits in one
(``limits.max_requests``: TOML's dotted key, the same as ``max_requests`` under
``[limits]``). Its environment variable is ``OLLAMA_DEFAULT_`` and the key in capitals,
dots as underscores; its flag is ``--`` and the key with dashes.

The outermost class calls :func:`check_fields` from its ``__post_init__``, so every setting
is checked whoever builds the settings (a file, the environment, a test, code), and a
setting in a group is checked, and named in messages, by its full key. A group's own class
checks nothing alone.

Pure, like the core: the caller reads the file and the environment and hands them over.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, NamedTuple, TypeVar, cast

from ..core.checks import one_of, positive_bytes, positive_seconds, switch
from ..core.errors import ConfigError

T = TypeVar("T")

#: Every environment variable of a setting starts with this.
ENV_PREFIX = "OLLAMA_DEFAULT_"
#: Where a setting that no source set came from.
DEFAULT_SOURCE = "default"
# The key of a field's metadata that holds its declaration.
_DECLARED = "ollama_default.declared"


@dataclass(frozen=True)
class Kind:
    """What a setting's values are: how its text is read, and the check every value passes.

    Text comes from an environment variable or a flag. A TOML file gives values of their own
    types, and they go to the check as they are: a string where a number belongs is refused
    with the same message as a number out of range.
    """

    #: What the text must be, for the message refusing other text: ``a number``.
    expected: str
    #: Text -> value; raises ValueError for text that is not :attr:`expected`.
    parse: Callable[[str], Any]
    #: (key, value) -> the value kept; raises a one-line ConfigError naming both.
    check: Callable[[str, Any], Any]
    #: The unit a number counts (``s``, ``bytes``), for the docs.
    unit: str = ""
    #: The few values it takes, when it takes a few (for argparse and ``--help``).
    choices: tuple[str, ...] = ()
    #: A TOML table of the user's own keys (``[aliases]``), not a group of declared ones.
    table: bool = False


_SWITCH_WORDS = {"1": True, "true": True, "yes": True, "on": True,
                 "0": False, "false": False, "no": False, "off": False}  # fmt: skip


def _switch_text(text: str) -> bool:
    try:
        return _SWITCH_WORDS[text.strip().lower()]
    except KeyError:
        raise ValueError(text) from None


SECONDS = Kind("a number", float, positive_seconds, unit="s")
BYTES = Kind("a number", int, positive_bytes, unit="bytes")
SWITCH = Kind("one of 1, 0, true, false", _switch_text, switch)


def choice(*choices: str) -> Kind:
    """The kind of a setting that is one of a few words."""
    return Kind(f"one of {', '.join(choices)}", str, one_of(choices), choices=choices)


def text(check: Callable[[str, Any], Any]) -> Kind:
    """The kind of a setting that is text, which ``check`` accepts or refuses."""
    return Kind("text", str, check)


@dataclass(frozen=True)
class Option:
    """The command-line flag of a setting: ``--`` and its key with dashes, unless named."""

    #: What it does, in one line of plain text, for ``--help`` and the docs' flag table;
    #: by default the setting's doc without its final full stop.
    help: str | None = None
    metavar: str | None = None
    name: str | None = None
    #: For a flag given once per item (``--alias NAME=MODEL``): turns the list argparse
    #: collected into the setting's value.
    collect: Callable[[list[str]], Any] | None = None


#: Key (in the setting's group) -> (value, where it came from).
Found = Mapping[str, tuple[Any, str]]


@dataclass(frozen=True)
class Variables:
    """Environment variables that set a setting otherwise than one variable with its text."""

    names: tuple[str, ...]
    #: How ``--help`` and the docs name them: ``OLLAMA_DEFAULT_ALIAS with ...``.
    shown: str
    #: What they can set, when it is less than the setting can hold: ``one alias``.
    scope: str
    #: What they set, from the environment; may set other settings of the group too,
    #: each only where no variable of that setting's own is set.
    read: Callable[[Mapping[str, str]], Found]


@dataclass(frozen=True)
class Setting:
    """One setting's declaration, less its key and default (its field's)."""

    kind: Kind
    #: What it means, for the docs (reST).
    doc: str
    flag: Option | None = None
    #: Its variables, when not the one ``OLLAMA_DEFAULT_<KEY>`` holding its text.
    variables: Variables | None = None
    #: Settings of its group that a source setting this one resets to their defaults,
    #: unless that source sets them too (the aliases replace the default set below them).
    replaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class Group:
    """A nested TOML table of declared settings, such as ``[limits]``."""

    cls: type[Any]
    doc: str


def setting(
    default: T,
    kind: Kind,
    doc: str,
    *,
    flag: Option | None = None,
    variables: Variables | None = None,
    replaces: Iterable[str] = (),
) -> T:
    """Declare a field of a settings class as one setting (see the module's docstring)."""
    metadata = {_DECLARED: Setting(kind, doc, flag, variables, tuple(replaces))}
    if isinstance(default, dict):
        # One dict would be shared by every instance: each gets its own copy.
        copy: Callable[[], Any] = functools.partial(dict, default)
        return cast("T", field(default_factory=copy, metadata=metadata))
    return field(default=default, metadata=metadata)


def group(cls: type[T], doc: str) -> T:
    """Declare a field of a settings class as a nested table of the settings ``cls`` declares."""
    return field(default_factory=cls, metadata={_DECLARED: Group(cls, doc)})


def flag_name(key: str) -> str:
    """Return the flag a key would have: ``--`` and the key with dashes."""
    return "--" + key.replace("_", "-").replace(".", "-")


@dataclass(frozen=True)
class Declared:
    """One setting where it sits: its full key, its default, and the names derived from them."""

    key: str
    default: Any
    setting: Setting

    @property
    def variables(self) -> tuple[str, ...]:
        """The environment variables that set it."""
        if self.setting.variables is not None:
            return self.setting.variables.names
        return (ENV_PREFIX + self.key.replace(".", "_").upper(),)

    @property
    def variables_shown(self) -> str:
        """Its environment variables as ``--help`` and the docs name them."""
        if self.setting.variables is not None:
            return self.setting.variables.shown
        return self.variables[0]

    @property
    def flag(self) -> str:
        """Its flag's name (whether or not it has one)."""
        option = self.setting.flag
        return option.name if option is not None and option.name else flag_name(self.key)

    @property
    def flag_help(self) -> str:
        """What its flag does, in one line."""
        option = self.setting.flag
        if option is not None and option.help:
            return option.help
        return " ".join(self.setting.doc.split()).removesuffix(".")

    def flag_source(self, value: object) -> str:
        """The flag that set it to ``value``: ``--no-access-log`` for a switch turned off."""
        if self.setting.kind is SWITCH and value is False:
            return "--no-" + self.flag.removeprefix("--")
        return self.flag

    @property
    def replaces(self) -> tuple[str, ...]:
        """The full keys of the settings it replaces."""
        return tuple(self.group + key for key in self.setting.replaces)

    @property
    def group(self) -> str:
        """The full key of its group and a dot, or nothing at the top level."""
        return self.key[: self.key.rfind(".") + 1]


def declared(cls: type[Any]) -> tuple[Declared, ...]:
    """Every setting ``cls`` declares, those of its groups too, in the order declared."""
    return tuple(_walk(cls, ""))


def _walk(cls: type[Any], prefix: str) -> Iterator[Declared]:
    for item, name in _fields(cls):
        if isinstance(item.declaration, Group):
            yield from _walk(item.declaration.cls, prefix + name + ".")
        else:
            yield Declared(prefix + name, _default(item.field), item.declaration)


class _Field(NamedTuple):
    field: Field[Any]
    declaration: Setting | Group


def _fields(cls_or_instance: Any) -> Iterator[tuple[_Field, str]]:
    for each in fields(cls_or_instance):
        declaration = each.metadata.get(_DECLARED)
        if declaration is not None:
            yield _Field(each, declaration), each.name


def _default(each: Field[Any]) -> Any:
    if each.default_factory is not MISSING:
        return each.default_factory()
    return each.default


def check_fields(instance: Any, prefix: str = "") -> None:
    """Check every setting ``instance`` declares, and those of its groups, keeping the values
    the checks return; for the outermost class's ``__post_init__``.

    :raises ConfigError: the first check's that fails, naming the setting by its full key.
    """
    for item, name in _fields(instance):
        key = prefix + name
        value = getattr(instance, name)
        if isinstance(item.declaration, Group):
            if not isinstance(value, item.declaration.cls):
                raise ConfigError(f"{key} must be a table of settings, not {value!r}", key=key)
            check_fields(value, key + ".")
        else:
            # Frozen: the instance is being built, and keeps the value as checked.
            object.__setattr__(instance, name, item.declaration.kind.check(key, value))


def value_at(instance: Any, key: str) -> Any:
    """The value of the setting ``key`` (full, dotted) in ``instance``."""
    for name in key.split("."):
        instance = getattr(instance, name)
    return instance


class Layer(NamedTuple):
    """What one source sets: values by full key, and where each came from."""

    values: dict[str, Any]
    sources: dict[str, str]


def from_document(cls: type[Any], document: Mapping[str, Any], where: str) -> Layer:
    """Return what a TOML document sets, ``where`` naming it for messages.

    :raises ConfigError: for a key ``cls`` does not declare, or a group that is not a table.
    """
    values: dict[str, Any] = {}
    _read_table(cls, document, where, "", values)
    return Layer(values, dict.fromkeys(values, where))


def _read_table(
    cls: type[Any], table: Mapping[str, Any], where: str, prefix: str, values: dict[str, Any]
) -> None:
    known = {name: item for item, name in _fields(cls)}
    for name, value in table.items():
        key = prefix + name
        item = known.get(name)
        if item is None:
            close = difflib.get_close_matches(key, sorted(prefix + k for k in known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}", key=key, source=where)
        if isinstance(item.declaration, Group):
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"{key} must be a table of settings, not {value!r} (set by {where})",
                    key=key,
                    source=where,
                )
            _read_table(item.declaration.cls, value, where, key + ".", values)
        else:
            values[key] = value


def from_environment(cls: type[Any], environ: Mapping[str, str]) -> Layer:
    """Return what the environment sets; an empty variable counts as unset.

    :raises ConfigError: for text a setting cannot read, naming the variable.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    items = declared(cls)
    for item in items:
        if item.setting.variables is not None:
            continue
        variable = item.variables[0]
        found = environ.get(variable)
        if not found:
            continue
        kind = item.setting.kind
        try:
            values[item.key] = kind.parse(found)
        except ValueError:
            raise ConfigError(
                f"{variable}={found!r} is not {kind.expected}", key=item.key, source=variable
            ) from None
        sources[item.key] = variable
    for item in items:
        if item.setting.variables is not None:
            for name, (value, source) in item.setting.variables.read(environ).items():
                key = item.group + name
                if key not in values:
                    values[key], sources[key] = value, source
    return Layer(values, sources)


def from_flags(cls: type[Any], flags: Mapping[str, Any]) -> Layer:
    """Return what command-line flags set: ``flags`` maps full keys to values."""
    items = {item.key: item for item in declared(cls)}
    sources = {key: items[key].flag_source(value) for key, value in flags.items()}
    return Layer(dict(flags), sources)


def load(cls: type[T], layers: Iterable[Layer]) -> tuple[T, dict[str, str]]:
    """Build ``cls`` from ``layers``, each over the one before, key by key; say where each
    setting came from (:data:`DEFAULT_SOURCE` for those none set).

    :raises ConfigError: naming the source of the value at fault, unless the default is.
    """
    items = {item.key: item for item in declared(cls)}
    values: dict[str, Any] = {}
    sources = dict.fromkeys(items, DEFAULT_SOURCE)
    for layer in layers:
        for key in layer.values:
            for replaced in items[key].replaces:
                values.pop(replaced, None)
                sources[replaced] = layer.sources[key]
        values.update(layer.values)
        sources.update(layer.sources)
    try:
        return _build(cls, values, ""), sources
    except ConfigError as error:
        source = sources.get(error.key or "", DEFAULT_SOURCE)
        if source == DEFAULT_SOURCE:
            raise
        raise ConfigError(f"{error} (set by {source})", key=error.key, source=source) from None


def _build(cls: type[T], values: Mapping[str, Any], prefix: str) -> T:
    given: dict[str, Any] = {}
    for item, name in _fields(cls):
        key = prefix + name
        if isinstance(item.declaration, Group):
            if any(each.startswith(key + ".") for each in values):
                given[name] = _build(item.declaration.cls, values, key + ".")
        elif key in values:
            given[name] = values[key]
    return cls(**given)
