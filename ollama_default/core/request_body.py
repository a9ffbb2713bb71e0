"""Request bodies: find the model a request names, decide, and splice the decision in.

The decision is made on the body as Ollama (Go's ``encoding/json`` behind gin's
``ShouldBindJSON``) reads it, so what we rewrite is what Ollama would have used; the
reading is :func:`~ollama_default.core.gojson.read_object`'s, which says how Go reads and
what it checks. The document is never built nor written out again: the new body is the
old one with the bytes of one value replaced (or one member inserted), and anything after
the first JSON value, which Ollama ignores, dropped. A large body is decided in steps of
about a MiB of work (:func:`decide_json_steps`), between which a server serves its other
requests.

Which bytes change, for a reference whose keys are, say, ``("model", "name")`` (Ollama's
``cmp.Or(req.Model, req.Name)``): Go decodes into each field the last member whose key
folds to it and whose value is not ``null``. The name comes from the first field whose
value is not empty, so the target is written over that member's value: it stays the last
non-null one, and every field before it stays empty. Members that lose (an earlier
duplicate, another spelling, a ``null`` after it) are left as sent, as Go ignores them.
When no member holds a value, the target goes over the last ``null`` member of the first
key, else into a new member right after ``{``: either is the only non-null one, so Go
reads it whatever follows.

Why edits keep an invalid body invalid: Go validates the whole first value before it uses
any of it, and we only replace a value we read and checked, insert a member before every
other one, or drop what follows the first value. The bytes before any error Go would find
are unchanged, so it still finds it.

Pure: bytes in, bytes out; no I/O, no WSGI.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Sequence
from dataclasses import dataclass

from .aliases import AliasTable, Route
from .endpoints import Endpoint
from .gojson import Member, ObjectReading, drain, json_string, read_object_steps
from .naming import Naming
from .params import family_fields, param_edits

_NOT_JSON_WHITESPACE = re.compile(rb"[^ \t\r\n]")


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
    and the model it goes upstream with (None when it names none we could read).

    ``unaliased`` holds every name the request used that is not an alias (a real model,
    or none Ollama has), for a key limited to some aliases.
    """

    body: bytes | None
    renames: tuple[Rename, ...]
    model: str | None = None
    unaliased: tuple[str, ...] = ()


UNCHANGED = Decision(None, ())


def decide_json(body: bytes, endpoint: Endpoint, aliases: AliasTable | Naming) -> Decision:
    """Decide what to send on for a JSON request body.

    :param aliases: the aliases, or the :class:`~ollama_default.core.naming.Naming` that
        holds them with the operator's choices of how names are read.
    :raises RequestError: 400 for a body Ollama could not read as a JSON object; 403 or 404
        for a name the naming refuses (:meth:`~ollama_default.core.naming.Naming.decide`).
    """
    return drain(decide_json_steps(body, endpoint, aliases))


def decide_json_steps(
    body: bytes, endpoint: Endpoint, aliases: AliasTable | Naming
) -> Generator[int, None, Decision]:
    """:func:`decide_json` in steps: a generator that yields after each slice of the work
    (about :data:`~ollama_default.core.gojson.SLICE_BYTES` of the body scanned), and returns
    the decision, so that a server can serve other requests between slices of a large body.

    :raises RequestError: as :func:`decide_json`, from the step that finds the fault.
    """
    if _NOT_JSON_WHITESPACE.search(body) is None:
        # Ollama answers "missing request body"; that is its call, not ours.
        return UNCHANGED
    naming = as_naming(aliases)
    fields = tuple(dict.fromkeys(key for keys in endpoint.model_fields for key in keys))
    if naming.aliases.has_params and endpoint.params:
        # Only then: a table without parameters reads what it read before, at its cost.
        fields = tuple(dict.fromkeys(fields + family_fields(endpoint.params)))
    reading = yield from read_object_steps(body, fields)
    renames: list[Rename] = []
    unaliased: list[str] = []
    models: list[str | None] = []
    edits: list[tuple[int, int, bytes]] = []
    for keys in endpoint.model_fields:
        name, writes_to = _read_reference(reading, keys)
        rename = None
        if name is None:
            pass  # not a string: Ollama refuses it itself, let it say so
        elif not name.strip():  # modelref.ParseRef: blank is "model is required"
            rename = default_rename(naming) if endpoint.takes_default else None
            name = None
        else:
            rename = decide_name(name, naming, endpoint, keys[0])
        if rename is not None:
            renames.append(rename)
            name = rename.route.target
            edits.append(_edit(reading, keys[0], writes_to, name))
        elif name is not None:
            unaliased.append(name)
        models.append(name)
    model = models[0] if models else None
    if not renames:
        return Decision(None, (), model, tuple(unaliased))
    params = renames[0].route.params
    if params and endpoint.params:
        if reading is None:  # `null`: first the object holding the model, then read it
            body = _spliced(body, reading, edits)
            reading = yield from read_object_steps(body, fields)
            edits = []
        assert reading is not None
        edits += yield from param_edits(body, reading, params, endpoint.params)
    return Decision(_spliced(body, reading, edits), tuple(renames), model, tuple(unaliased))


def _read_reference(
    reading: ObjectReading | None, keys: Sequence[str]
) -> tuple[str | None, Member | None]:
    """Return the name a reference holds ("" for none, None when it is not a string), and
    the member holding it (None when no member holds a value)."""
    values = reading.values if reading is not None else {}
    holder: Member | None = None
    for key in keys:  # cmp.Or(req.Model, req.Name): the first non-empty one
        member = values.get(key)
        if member is None:
            continue
        if member.text is None:
            return None, None
        if holder is None or member.text:
            holder = member
        if member.text:
            break
    return (holder.text if holder is not None else ""), holder


def _edit(
    reading: ObjectReading | None, key: str, holder: Member | None, target: str
) -> tuple[int, int, bytes]:
    """The one edit that makes Go read ``target`` for a reference whose first key is ``key``."""
    value = json_string(target)
    if holder is None and reading is not None:
        holder = reading.nulls.get(key)
    if holder is not None:
        return holder.start, holder.end, value
    member = json_string(key) + b":" + value
    if reading is None:  # the body is `null`
        return 0, 0, b"{" + member + b"}"
    after_brace = reading.start + 1
    return after_brace, after_brace, member + (b"," if reading.has_members else b"")


def _spliced(
    body: bytes, reading: ObjectReading | None, edits: list[tuple[int, int, bytes]]
) -> bytes:
    """``body`` up to the end of its first value, with ``edits`` made (and nothing after)."""
    if reading is None:
        return edits[0][2]  # `null` becomes the object holding the member
    if not edits:
        return body[: reading.end]
    view = memoryview(body)  # slices of it are not copies: the new body is the only one
    pieces: list[bytes | memoryview] = []
    at = 0
    # Stable: of insertions at one place, the model's (made first) comes first.
    for start, end, replacement in sorted(edits, key=lambda edit: edit[:2]):
        pieces += (view[at:start], replacement)
        at = end
    pieces.append(view[at : reading.end])
    return b"".join(pieces)


def decide_name(
    name: str, aliases: AliasTable | Naming, endpoint: Endpoint, field: str = "model"
) -> Rename | None:
    """Decide for a name that is not blank, held in ``field`` (the first key of one of
    ``endpoint``'s model references; a path segment and a form value are ``model``).

    :raises RequestError: 403 or 404 for a name the naming refuses
        (:meth:`~ollama_default.core.naming.Naming.decide`).
    """
    decided = as_naming(aliases).decide(name, endpoint, field)
    return Rename(*decided) if decided is not None else None


def default_rename(aliases: AliasTable | Naming) -> Rename | None:
    """Return the rename for a request that names no model, when there is a default."""
    route = as_naming(aliases).aliases.default
    return Rename(route.alias, route) if route is not None else None


def as_naming(aliases: AliasTable | Naming) -> Naming:
    """The naming ``aliases`` stands for: itself, or a table's with no choices made."""
    return aliases if isinstance(aliases, Naming) else Naming(aliases)
