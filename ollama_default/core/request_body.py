"""Request bodies: find the model a request names, decide, and re-serialise.

The decision is made on the parsed JSON, read the way Ollama (Go's ``encoding/json``
behind gin's ``ShouldBindJSON``) reads it, so what we rewrite is what Ollama would have
used:

- keys match struct fields case-insensitively, and of several keys for one field the
  last wins (golang/go#11673, #43664); ``null`` leaves a string field as it was;
- only the first JSON value is read (``json.Decoder.Decode``): trailing bytes are ignored;
- invalid UTF-8 inside strings reads as U+FFFD; ``NaN`` and ``Infinity`` are not JSON.

When the decision changes the body, it is re-serialised with every other member, in
order and with duplicates, exactly as sent: the app sees precisely what was decided. The
common request (strict JSON naming ``"model"`` once, a plain string) is decided without
that: its one string is replaced in place, which Go reads the same way, for a fraction of
the cost.

Pure: bytes and dicts in, bytes out; no I/O, no WSGI.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .aliases import AliasTable, Route
from .endpoints import Endpoint
from .errors import RequestError
from .gojson import (
    STRICT_JSON,
    Members,
    field_value,
    folds_to,
    json_string,
    json_type,
    parse_first_value,
    serialise,
)

_MODEL_ONLY = (("model",),)
_MODEL_KEY = b'"model"'
_COLON = re.compile(rb"[ \t\r\n]*:[ \t\r\n]*")  # JSON's white space around a member's ':'


@dataclass(frozen=True)
class Rename:
    """One model reference the request used an alias for.

    ``client_name`` is the name to show the client in responses: the string it sent, or
    the default alias when it sent none.
    """

    client_name: str
    route: Route


@dataclass(frozen=True)
class Decision:
    """What to do with one request: the body to send on (None: unchanged), the renames,
    and the model it goes upstream with (None when it names none we could read)."""

    body: bytes | None
    renames: tuple[Rename, ...]
    model: str | None = None


UNCHANGED = Decision(None, ())


def decide_json(body: bytes, endpoint: Endpoint, aliases: AliasTable) -> Decision:
    """Decide what to send on for a JSON request body.

    :raises RequestError: 400 for a body Ollama could not read as a JSON object.
    """
    decision = _decide_spliced(body, endpoint, aliases)
    return decision if decision is not None else _decide_parsed(body, endpoint, aliases)


def _decide_spliced(body: bytes, endpoint: Endpoint, aliases: AliasTable) -> Decision | None:
    """Decide the common request by replacing its one model string; None if it is not one.

    It is one when the body is strict JSON (UTF-8, no ``\\u`` escapes, nothing after the
    value), an object whose one key spelled like ``model`` in any case is ``"model"``
    with a plain string. Go reads that body with the string replaced exactly as
    :func:`_decide_parsed`'s re-serialised one (the tests compare the two).
    """
    if endpoint.model_fields != _MODEL_ONLY or body.find(b"\\u") >= 0:
        return None
    lowered = body.lower()  # ASCII only: no other letter folds to one of "model"
    key_at = lowered.find(_MODEL_KEY)
    if key_at < 0 or lowered.find(_MODEL_KEY, key_at + 1) >= 0:
        return None
    try:
        document = STRICT_JSON.decode(body.decode())
    except (ValueError, RecursionError):
        return None  # left to the full reading, which says what is wrong
    name = document.get("model") if isinstance(document, dict) else None
    if not isinstance(name, str) or not name.strip():
        return None
    rename = decide_name(name, aliases)
    if rename is None:
        return Decision(None, (), name)
    value_at = _COLON.match(body, key_at + len(_MODEL_KEY)).end()  # type: ignore[union-attr]
    sent = json_string(name)
    if not body.startswith(sent, value_at):
        return None  # written some other way than the encoder writes it
    target = json_string(rename.route.target)
    spliced = body[:value_at] + target + body[value_at + len(sent) :]
    return Decision(spliced, (rename,), rename.route.target)


def _decide_parsed(body: bytes, endpoint: Endpoint, aliases: AliasTable) -> Decision:
    text = body.decode("utf-8", "replace")
    if not text.strip():
        # Ollama answers "missing request body"; that is its call, not ours.
        return UNCHANGED
    document, has_duplicates = parse_first_value(text)
    if document is None:
        document = {}  # Go decodes `null` into an empty request.
    if not isinstance(document, (dict, Members)):
        raise RequestError(400, f"request body must be a JSON object, not {json_type(document)}")
    renames: list[Rename] = []
    models: list[str | None] = []
    members = list(document.items() if isinstance(document, dict) else document)
    for keys in endpoint.model_fields:
        name, rename = _decide_reference(members, keys, endpoint.takes_default, aliases)
        if rename is not None:
            renames.append(rename)
            members = _with_reference(members, keys, rename.route.target)
            name = rename.route.target
        models.append(name)
    model = models[0] if models else None
    if not renames:
        return Decision(None, (), model)
    # Without duplicate keys anywhere, a dict keeps the members in order and the C encoder
    # writes them; only duplicates need the encoder that keeps every member.
    top = Members(members) if has_duplicates else dict(members)
    return Decision(serialise(top), tuple(renames), model)


def decide_name(name: str, aliases: AliasTable) -> Rename | None:
    """Decide for a model named outside a JSON body (a path segment, a form field)."""
    route = aliases.resolve(name)
    return Rename(name, route) if route is not None else None


def default_rename(aliases: AliasTable) -> Rename | None:
    """Return the rename for a request that names no model, when there is a default."""
    route = aliases.default
    return Rename(route.alias, route) if route is not None else None


def _decide_reference(
    members: Sequence[tuple[str, Any]],
    keys: tuple[str, ...],
    takes_default: bool,
    aliases: AliasTable,
) -> tuple[str | None, Rename | None]:
    """Return the name a reference holds (None if none a model could be), and its rename."""
    name: Any = ""
    for key in keys:  # cmp.Or(req.Model, req.Name): the first non-empty one.
        name = field_value(members, key)
        if not isinstance(name, str):
            return None, None  # Ollama rejects a non-string model itself; let it say so.
        if name:
            break
    if not name.strip():  # modelref.ParseRef: blank is "model is required".
        return None, default_rename(aliases) if takes_default else None
    return name, decide_name(name, aliases)


def _with_reference(
    members: Sequence[tuple[str, Any]], keys: tuple[str, ...], target: str
) -> list[tuple[str, Any]]:
    """Replace every member that feeds this reference by one ``keys[0]: target``."""
    kept: list[tuple[str, Any]] = []
    placed = False
    for key, value in members:
        if any(folds_to(key, k) for k in keys):
            if not placed:
                kept.append((keys[0], target))
                placed = True
        else:
            kept.append((key, value))
    if not placed:
        kept.insert(0, (keys[0], target))
    return kept
