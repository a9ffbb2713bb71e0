"""How Go's ``encoding/json`` reads a request body, as Ollama (gin's ``ShouldBindJSON``)
does, and a writer that keeps every member of what it read.

- keys match struct fields case-insensitively, with Go's own folding (U+017F is ``s``,
  U+212A is ``k``), and of several keys for one field the last wins (golang/go#11673,
  #43664); ``null`` leaves a field as it was;
- only the first JSON value is read (``json.Decoder.Decode``): trailing bytes are ignored;
- invalid UTF-8 inside strings reads as U+FFFD; ``NaN`` and ``Infinity`` are not JSON.

Pure: text in, values out; no I/O, no WSGI.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from .errors import RequestError

# Runes that simple-fold to an ASCII letter besides the letter's own cases: Go's
# encoding/json fold.go special-cases exactly these two.
_GO_FOLD = str.maketrans({"\u017f": "s", "\u212a": "k"})


class Members(list[tuple[str, Any]]):
    """A JSON object as its members in order, duplicates kept, as Go reads them."""


def field_value(members: Sequence[tuple[str, Any]], field_name: str) -> Any:
    """The value Go decodes into the struct field ``field_name``: the last non-null member
    whose key folds to it, else ``""``."""
    value: Any = ""
    for key, member_value in members:
        if member_value is not None and folds_to(key, field_name):
            value = member_value
    return value


def folds_to(key: str, field_name: str) -> bool:
    """Whether Go's ``encoding/json`` matches ``key`` to the field ``field_name``."""
    return key == field_name or (
        len(key) == len(field_name) and key.translate(_GO_FOLD).lower() == field_name
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"number {text} is out of range")
    return number


STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_parse_float)


@functools.lru_cache(maxsize=1024)
def json_string(text: str) -> bytes:
    """``text`` as a JSON string literal, as :func:`serialise` writes it."""
    return UTF8_SCALAR(text).encode()


def parse_first_value(text: str) -> tuple[Any, bool]:
    """Return the first JSON value in ``text``, and whether any object repeats a key.

    Objects come back as dicts, or as :class:`Members` where a key repeats.
    """
    has_duplicates = False

    def object_from(pairs: list[tuple[str, Any]]) -> dict[str, Any] | Members:
        nonlocal has_duplicates
        document = dict(pairs)
        if len(document) == len(pairs):
            return document
        has_duplicates = True
        return Members(pairs)

    decoder = json.JSONDecoder(
        object_pairs_hook=object_from, parse_constant=_reject_constant, parse_float=_parse_float
    )
    start = len(text) - len(text.lstrip(" \t\r\n"))
    try:
        value, _end = decoder.raw_decode(text, start)
    except (ValueError, RecursionError) as error:
        raise RequestError(400, f"invalid JSON in request body: {error}") from None
    return value, has_duplicates


def json_type(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


UTF8_SCALAR: Callable[[Any], str] = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":")
).encode
ASCII_SCALAR: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":")).encode


def encode(value: Any, out: list[str], scalar: Callable[[Any], str]) -> None:
    if isinstance(value, (Members, dict)):
        out.append("{")
        for index, (key, member) in enumerate(value.items() if isinstance(value, dict) else value):
            if index:
                out.append(",")
            out.append(scalar(key))
            out.append(":")
            encode(member, out, scalar)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            encode(item, out, scalar)
        out.append("]")
    else:
        out.append(scalar(value))


def serialise(document: dict[str, Any] | Members) -> bytes:
    try:
        return serialised(document, UTF8_SCALAR).encode()
    except UnicodeEncodeError:
        # A lone surrogate escape ("\ud800") decodes to a lone surrogate, which UTF-8
        # cannot hold; ASCII escapes carry it on, and Go reads it as U+FFFD either way.
        return serialised(document, ASCII_SCALAR).encode()


def serialised(document: dict[str, Any] | Members, scalar: Callable[[Any], str]) -> str:
    if isinstance(document, dict):
        return scalar(document)  # no duplicates anywhere: the C encoder does it all
    out: list[str] = []
    encode(document, out, scalar)
    return "".join(out)
