"""An independent model of how Go's ``encoding/json`` reads a request body, for the tests.

It is built on the stdlib's ``json`` parser, a different reader from the byte scanner in
``ollama_default.core.gojson``, set up the way Go reads (golang/go encoding/json decode.go,
scanner.go, fold.go):

- every member of an object is kept, in order (``object_pairs_hook``), and a field gets the
  last non-null member whose key folds to it (Go's ``foldName``: ASCII letters upper-cased,
  U+017F (long s) to ``S`` and the Kelvin sign to ``K``, the two non-ASCII runes whose fold
  set has an ASCII letter);
- numbers are kept as text (Go checks their syntax and converts only what it stores, so
  ``1e999`` and a 5,000-digit integer are read); ``NaN`` and ``Infinity`` are refused;
- the bytes are decoded with ``surrogateescape``, so each invalid UTF-8 byte is one lone
  surrogate: outside a string ``json`` refuses it, as Go does; inside one it reads as U+FFFD,
  one per byte, as Go's ``unquote`` does; so does an escaped lone surrogate;
- only the first value counts: ``raw_decode`` from the first non-space byte.

Where it can differ from Go: nesting. Python's parser recurses, so a body nested deeper than
its recursion limit raises :class:`GivesUp` (the model cannot tell), and it knows nothing of
Go's limit of 10,000 levels (no test gives it a body that deep).
"""

from __future__ import annotations

import json
import re
from typing import Any

WHITESPACE = " \t\r\n"
_FOLD = {"\u017f": "S", "\u212a": "K"}
_SURROGATE = re.compile("[\ud800-\udfff]")


class Unreadable(Exception):
    """Go refuses this body (syntax error, or a first value that is not an object or null).

    ``at`` is the offset of the byte the parser stopped at, when it says (the byte Go names
    in its error, as both stop at the first byte that cannot come next).
    """

    def __init__(self, message: str, at: int | None = None) -> None:
        super().__init__(message)
        self.at = at


class GivesUp(Exception):
    """The model cannot read this body (deeper than Python's recursion)."""


class Members(list[tuple[str, Any]]):
    """An object's members, in order, duplicates kept."""


def go_fold(key: str) -> str:
    return "".join(c.upper() if "a" <= c <= "z" else _FOLD.get(c, c) for c in key)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _clean(value: Any) -> Any:
    return _SURROGATE.sub("\ufffd", value) if isinstance(value, str) else value


_DECODER = json.JSONDecoder(
    object_pairs_hook=lambda pairs: Members((_clean(k), _clean(v)) for k, v in pairs),
    parse_int=lambda text: ("number", text),
    parse_float=lambda text: ("number", text),
    parse_constant=_refuse_constant,
)


def read(body: bytes) -> Members | None:
    """The top-level members Go reads from ``body`` (None for ``null``)."""
    text = body.decode("utf-8", "surrogateescape")
    start = len(text) - len(text.lstrip(WHITESPACE))
    try:
        value, _ = _DECODER.raw_decode(text, start)
    except RecursionError:
        raise GivesUp from None
    except json.JSONDecodeError as error:
        at = len(text[: error.pos].encode("utf-8", "surrogateescape"))
        raise Unreadable(str(error), at) from None
    except ValueError as error:
        raise Unreadable(str(error)) from None
    if value is None:
        return None
    if not isinstance(value, Members):
        raise Unreadable("not an object")
    return value


def field(members: Members | None, name: str) -> Any:
    """What Go decodes into the field ``name``: the last non-null member folding to it."""
    value: Any = ""
    for key, member in members or ():
        if member is not None and go_fold(key) == go_fold(name):
            value = member
    return value


def reference(members: Members | None, keys: tuple[str, ...]) -> Any:
    """``cmp.Or`` over the fields: the first that is not an empty string (or not a string)."""
    value: Any = ""
    for key in keys:
        value = field(members, key)
        if value != "":
            return value
    return value


def pointer(members: Members | None, name: str) -> Any:
    """What Go decodes into a pointer, slice, map or interface field ``name``: the last
    member folding to it, ``null`` setting it to nil (None here; absent too)."""
    value: Any = None
    for key, member in members or ():
        if go_fold(key) == go_fold(name):
            value = member
    return value


def options(members: Members | None) -> dict[str, Any]:
    """The options Ollama uses from ``options`` (``map[string]any``): each object merges into
    the map Go already made, ``null`` resets it to nil; ``api.Options.FromMap`` then skips
    nil values."""
    found: dict[str, Any] | None = None
    for key, member in members or ():
        if go_fold(key) != go_fold("options"):
            continue
        if member is None:
            found = None
        elif isinstance(member, Members):
            found = {} if found is None else found
            found.update(member)
        else:
            raise Unreadable("options is not an object")
    return {key: value for key, value in (found or {}).items() if value is not None}


def plain(value: Any) -> Any:
    """A value read by :func:`read` as plain Python: objects as dicts (last key wins),
    numbers as int or float."""
    if isinstance(value, Members):
        return {key: plain(item) for key, item in value}
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "number":
        number = float(value[1])
        return int(number) if number.is_integer() and "." not in value[1] else number
    return value
