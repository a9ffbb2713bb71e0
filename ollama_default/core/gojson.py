"""How Go's ``encoding/json`` reads a request body, as Ollama (gin's ``ShouldBindJSON``) does,
found on the raw bytes without building the document.

What Go does, and so what :func:`read_object` reports:

- keys match struct fields case-insensitively, with Go's own folding (``foldName``: the
  smallest rune of each ``unicode.SimpleFold`` orbit, so U+017F is ``s`` and U+212A is
  ``k``), and of several keys for one field the last wins (golang/go#11673, #43664);
  ``null`` leaves a field as it was;
- only the first JSON value is read (``json.Decoder.Decode``): trailing bytes are ignored;
- invalid UTF-8 inside strings reads as U+FFFD, one per byte, and so does a ``\\u``
  escape of a lone surrogate;
- ``NaN`` and ``Infinity`` are not JSON; any number JSON's grammar allows is (``1e999``,
  a 100,000-digit integer): Go checks the syntax, and converts only what it stores;
- nesting goes 10,000 levels deep (the scanner's ``maxNestingDepth``), no further.

How, and at what cost. Values are never built. Strings end at the next quote once escaped
quotes and backslashes are blanked out (one ``bytes.replace`` each); containers end where
their brackets balance, counted in chunks whose strings are dropped and whose matched pairs
are removed by ``bytes`` operations, so the Python steps go with the runs of brackets left
over (deep nesting), not with the bytes or the tokens. No recursion: a stack of open
brackets is a ``bytearray``.

The top-level object's members are read in windows, from 64 KiB to a MiB of them:

- in the first window, and in any window where a key may spell a field (a byte search in a
  lower-case copy, and a pattern for the rare spellings with escapes or folded runes),
  members are read one by one, by a compiled pattern that takes a window's worth of them
  in one call and checks them, then by one that finds backwards the last member spelling
  each field (the one Go reads, if the members from its comma on read as members to the
  end: else the window is read again capturing each field's value as it goes by). A member
  the patterns cannot read (a large value) is read by hand, its value skipped by finding
  where it ends. When members nest deeper than the patterns follow (two levels), the
  window's brackets are counted first, and a pattern that follows values 128 levels deep,
  with either closer closing either opener (their kinds are known to pair), reads them,
  capturing each field's value as it goes by;
- any other window is skipped in bulk: its brackets are counted as for a container, up to
  the end of the top-level value going on at the window's end.

So the Python steps go with the windows, and what is left costs per member what ``re``
costs (some 100 ns) and per bracket what ``bytes`` operations cost (some 10 ns): about a
second for 100 MiB of the smallest members or of brackets alone, and up to three or so for
deep values among fields, which the deep pattern reads at some 20 ns a bracket
(``benchmarks/decide.py``).
The reading is a generator of steps of about a MiB of work each
(:func:`read_object_steps`), so that a server can serve its other requests between them.

What is validated, and why not everything: the top-level object's syntax (braces, keys,
colons, commas), its keys, the values of the fields read, the top-level numbers and
literals, and the nesting of every bracket (balance, kinds, depth) are checked as Go
checks them, with Go's words (``invalid character 'x' looking for beginning of value``,
``unexpected EOF``). Inside nested values only the brackets and where strings end are
read: a bad escape, number or literal nested in, say, ``messages`` is not looked for,
since looking costs a step per token and Python's steps are far too slow for 100 MiB of
tokens. So it is in a window of top-level members skipped in bulk (no key in it spells a
field): only its brackets and where its strings end are read. Such a body goes on, and
Ollama refuses it with its own 400. That is safe: Go validates the whole first value
before using any of it, and every edit the caller makes keeps the bytes before the edit,
so the error stays where it was (module docs of :mod:`~ollama_default.core.request_body`).
When a body is refused after a window was skipped, that window is read first, for an
error in it, which Go would name first.

Pure: bytes in, offsets and strings out; no I/O, no WSGI.
"""

from __future__ import annotations

import functools
import itertools
import json
import operator
import re
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import TypeVar

from .errors import RequestError

#: How deep Go's scanner lets values nest (encoding/json scanner.go, maxNestingDepth).
MAX_DEPTH = 10_000

# Runes whose fold set holds an ASCII letter besides the letter's own cases: the only two
# (Go encoding/json fold.go: foldRune, the smallest rune of the unicode.SimpleFold orbit).
_GO_FOLD = str.maketrans({"\u017f": "s", "\u212a": "k"})


def folds_to(key: str, field_name: str) -> bool:
    """Whether Go's ``encoding/json`` matches ``key`` to the (lower-case) ``field_name``."""
    return key == field_name or (
        len(key) == len(field_name) and key.translate(_GO_FOLD).lower() == field_name
    )


@functools.lru_cache(maxsize=1024)
def json_string(text: str) -> bytes:
    """``text`` as a compact JSON string literal, UTF-8 as Go writes it."""
    return json.dumps(text, ensure_ascii=False).encode()


@dataclass(frozen=True)
class Member:
    """Where a top-level member's value sits in the body, and the string it holds."""

    start: int
    end: int
    #: The string Go decodes (None when the value is not a string).
    text: str | None


@dataclass
class ObjectReading:
    """The first value of a body, a JSON object, as far as Go's reading of some fields goes.

    ``start`` and ``end`` delimit the object (``body[start] == b"{"``); ``values`` holds, for
    each field asked about, the last member whose key folds to it and whose value is not
    ``null`` (what Go decodes into that field); ``nulls`` the last one whose value is
    ``null``, before or after that one. ``has_members`` tells ``{}`` from the rest.
    """

    start: int
    end: int = -1
    has_members: bool = False
    values: dict[str, Member] = field(default_factory=dict)
    nulls: dict[str, Member] = field(default_factory=dict)


def read_object(body: bytes, fields: Sequence[str]) -> ObjectReading | None:
    """Read the first JSON value of ``body`` as Go does, for the (lower-case ASCII) ``fields``.

    :returns: the reading, or None when the value is ``null`` (Go reads it as an empty
        request). The caller handles a body of white space alone (Go: ``io.EOF``).
    :raises RequestError: 400 for a body Go would refuse, or whose first value is not an
        object (``request body must be a JSON object, not an array``).
    """
    return drain(read_object_steps(body, fields))


def read_object_steps(
    body: bytes, fields: Sequence[str]
) -> Generator[int, None, ObjectReading | None]:
    """:func:`read_object` in steps: a generator that yields after each slice of work (about
    :data:`SLICE_BYTES` of the body scanned; it yields the bytes scanned so far), and returns
    the reading.

    A caller that serves other work on the same thread lets it run between steps; one that
    has none runs them all with :func:`drain`.

    >>> steps = read_object_steps(b'{"model":"llama3.2"}', ("model",))
    >>> drain(steps).values["model"].text
    'llama3.2'
    """
    reader = _Reader(body, tuple(fields))
    return (yield from reader.read())


def array_elements(body: bytes, start: int, end: int) -> list[tuple[int, int]] | None:
    """The spans of the elements of the array ``body[start:end]`` (a value :func:`read_object`
    delimited), or None when it is not an array whose top level Go reads.

    Each element is skipped as :func:`read_object` skips a value (a container by counting its
    brackets), so the cost is linear in the array's bytes and nothing is built; what is inside
    an element is not checked.

    >>> body = b'{"messages":[{"role":"user"}, 1 ,"x"]}'
    >>> [body[s:e] for s, e in array_elements(body, 12, len(body) - 1)]
    [b'{"role":"user"}', b'1', b'"x"']
    """
    if start >= end or body[start] != ord("["):
        return None
    reader = _Reader(body, ())
    spans: list[tuple[int, int]] = []
    pos = _WS_RX.match(body, start + 1, end).end()  # type: ignore[union-attr]
    if pos < end and body[pos] == ord("]"):
        return spans if pos + 1 == end else None
    try:
        while pos < end:
            value_end = drain(reader._value(pos, depth=1))
            spans.append((pos, value_end))
            pos = _WS_RX.match(body, value_end, end).end()  # type: ignore[union-attr]
            if pos >= end:
                return None
            if body[pos] == ord("]"):
                return spans if pos + 1 == end else None
            if body[pos] != _COMMA:
                return None
            pos = _WS_RX.match(body, pos + 1, end).end()  # type: ignore[union-attr]
    except _Refusal:
        return None
    return None


_T = TypeVar("_T")


def drain(steps: Generator[object, None, _T]) -> _T:
    """Run ``steps`` to their end and return what they return."""
    try:
        while True:
            next(steps)
    except StopIteration as done:
        result: _T = done.value
        return result


# --- Patterns -------------------------------------------------------------------------------
# The member patterns run on the blanked body (escaped quotes and backslashes are dots there,
# at the same offsets: _Reader.blanked), so a string ends at its next quote. Repeats that hold
# no capture are possessive: sre keeps no state to backtrack into them, so they need no
# bound. A repeat around a capture stays greedy and bounded (CPython 3.11's sre mis-spans a
# capture inside a possessive repeat: "The span of capturing group is wrong").


def _possessive_repeats() -> bool:
    """Whether this Python's ``re`` has possessive repeats (3.11 on)."""
    try:
        re.compile(b"a*+")
    except re.error:
        return False
    return True


_POSSESSIVE = _possessive_repeats()


def _compile(pattern: bytes) -> re.Pattern[bytes]:
    """Compile ``pattern``; on Python 3.10, whose ``re`` knows no possessive repeats nor
    atomic groups, without them: there, the patterns match the same bytes (a repeat given
    back leaves a byte that fails what follows), only slower."""
    if not _POSSESSIVE:
        for possessive, greedy in ((b"*+", b"*"), (b"++", b"+"), (b"?+", b"?"), (b"(?>", b"(?:")):
            pattern = pattern.replace(possessive, greedy)
    return re.compile(pattern)


_WS = rb"[ \t\r\n]*+"
_WS_RX = _compile(_WS)
# A string checked as Go's scanner checks it (no control characters, known escapes).
_STRICT_STRING = rb'"[^"\\\x00-\x1f]*+(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*+)*+"'
# A string only delimited, on the blanked body.
_LOOSE_STRING = rb'"[^"]*+"'
# Go's number grammar. What follows a member is checked by the caller; a digit, '.', 'e' or
# 'E' would make it a longer or a bad number, which is read by hand for Go's words.
_MEMBER_NUMBER = rb"-?+(?:[1-9][0-9]*+|0)(?:\.[0-9]++|)(?:[eE][+-]?+[0-9]++|)(?![.0-9eE])"
# A run of bytes inside a container that are neither quotes nor brackets.
_PLAIN = rb'[^"\[\]{}]*+'


def _container(opener: bytes, closer: bytes, inner: bytes) -> bytes:
    items = _LOOSE_STRING + inner
    return opener + _PLAIN + rb"(?:(?:" + items + rb")" + _PLAIN + rb")*+" + closer


_FLAT = _container(rb"\[", rb"\]", b"") + rb"|" + _container(rb"\{", rb"\}", b"")
# Containers two levels deep, their brackets' kinds checked, what is inside only delimited.
_SMALL_CONTAINER = (
    _container(rb"\[", rb"\]", rb"|" + _FLAT) + rb"|" + _container(rb"\{", rb"\}", rb"|" + _FLAT)
)

#: How deep the pattern for members whose brackets were checked beforehand follows values.
#: sre steps cost some 20 ns a bracket, and reading a deeper value by hand some 5 us: at
#: this depth the two cost about the same per byte.
_CHECKED_LEVELS = 128


@functools.lru_cache(maxsize=4)
def _nested(levels: int) -> bytes:
    """Containers ``levels`` deep, where any closer closes any opener (kinds checked before)."""
    pattern = _container(rb"[\[{]", rb"[\]}]", b"")
    for _ in range(levels - 1):
        pattern = _container(rb"[\[{]", rb"[\]}]", rb"|" + pattern)
    return pattern


def _hex_digits(code: int) -> bytes:
    return b"".join(
        b"[" + c.lower().encode() + c.upper().encode() + b"]" if c.isalpha() else c.encode()
        for c in f"{code:04x}"
    )


def _char_forms(char: str) -> tuple[list[str], list[bytes]]:
    """The runes Go folds to ``char``, and every way a JSON key can spell each of them."""
    forms = {char.lower(), char.upper()}
    forms |= {folded for folded, ascii in (("\u017f", "s"), ("\u212a", "k")) if ascii == char}
    ascii_forms = sorted(form for form in forms if form.isascii())
    spellings = [b"[" + re.escape("".join(ascii_forms).encode()) + b"]"]
    spellings += sorted(re.escape(form.encode()) for form in forms if not form.isascii())
    spellings += sorted(rb"\\u" + _hex_digits(ord(form)) for form in forms)
    return sorted(forms), spellings


@functools.lru_cache(maxsize=64)
def _key_pattern(field_name: str) -> bytes:
    """The JSON string literals Go's folding matches to ``field_name``, every spelling; the
    plain ASCII ones first, as they are the ones sent."""
    plain = b"".join(rb"[" + c.encode() + c.upper().encode() + rb"]" for c in field_name)
    chars = [rb"(?:" + rb"|".join(_char_forms(char)[1]) + rb")" for char in field_name]
    # Atomic: once a spelling matched, what follows failing need not try the others.
    return rb'(?>"' + plain + rb'"|"' + b"".join(chars) + rb'")'


def _first_bytes(fields: Sequence[str]) -> bytes:
    """A byte class of every byte a key spelling one of ``fields`` can start with."""
    firsts = {b"\\"}
    for name in fields:
        firsts |= {form.encode()[:1] for form in _char_forms(name[0])[0]}
    return b"".join(re.escape(first) for first in sorted(firsts))


_NAME_SEPARATOR = _WS + rb":" + _WS
_VALUE_SEPARATOR = _WS + rb"," + _WS


def _value(container: bytes, string: bytes = _LOOSE_STRING, null: bytes = b"null|") -> bytes:
    """A member's value: ``string``, ``container``, a literal or a number."""
    return (
        rb"(?:" + string + rb"|" + container + rb"|true|false|" + null
        + _MEMBER_NUMBER + rb")"
    )  # fmt: skip


def _captured_member(fields: tuple[str, ...], container: bytes) -> bytes:
    """A member, its value captured as v<i> if its key spells field i and it is not null,
    as n<i> if null."""
    keys = [_key_pattern(name) for name in fields]
    # A key no field's spelling starts with (most keys) needs no look at the fields. Their
    # values are checked as Go checks them; other members' strings only delimited.
    no_field = rb'[^"\\\x00-\x1f' + _first_bytes(fields) + rb"]"
    quick = rb'"(?:' + no_field + rb'[^"\\\x00-\x1f]*+|)"' + _NAME_SEPARATOR + _value(container)
    field_value = _value(container, _STRICT_STRING, b"")
    named = [
        key + _NAME_SEPARATOR + rb"(?:(?P<n%d>null)|(?P<v%d>%s))" % (i, i, field_value)
        for i, key in enumerate(keys)
    ]
    others = rb"(?!" + rb"|".join(keys) + rb")" if keys else b""
    other = others + _STRICT_STRING + _NAME_SEPARATOR + _value(container)
    return rb"(?:" + rb"|".join([quick, *named, other]) + rb")"


def _captured_run(fields: tuple[str, ...], container: bytes) -> bytes:
    """Members after a value, each after its comma, per field the last value and the last
    null captured (a capture in a repeat keeps its last). Bounded and greedy, as the repeat
    holds captures: the caller loops."""
    member = _captured_member(fields, container)
    return rb"(?:" + _VALUE_SEPARATOR + member + rb"){0,%d}" % _RUN_MEMBERS + _WS


@dataclass(frozen=True)
class _Patterns:
    """The compiled patterns for one set of fields. Their values nest two levels deep at
    most, their brackets' kinds checked; what is inside only delimited."""

    keys: tuple[re.Pattern[bytes], ...]
    #: One member, its value captured per field as for ``captured``.
    first: re.Pattern[bytes]
    #: Members after a value, each after its comma, checked but not captured.
    run: re.Pattern[bytes]
    #: Per field, the last member spelling it after a comma, with a value other than null
    #: (group 2; strings only delimited); group 1 is what comes between the comma and it.
    last_value: tuple[re.Pattern[bytes], ...]
    #: The same for a null.
    last_null: tuple[re.Pattern[bytes], ...]
    #: Members after a value, the fields' last values captured (:func:`_captured_run`).
    captured: re.Pattern[bytes]
    #: A key spelling a field (followed by its colon), anywhere.
    names_a_field: re.Pattern[bytes]
    #: The fields as JSON strings, lower case: the spellings clients send.
    quoted: tuple[bytes, ...]
    #: What a key spelling a field starts with: a quick look at a few hundred bytes.
    may_name_a_field: re.Pattern[bytes]


def _starts(fields: tuple[str, ...]) -> bytes:
    """A quote and what follows it in any key spelling one of ``fields``, roughly: the first
    two letters in ASCII, or an escape, or a byte of a rune beyond ASCII."""
    other = rb"\\|[^\x00-\x7f]"
    starts = [
        b"[" + name[:1].encode() + name[:1].upper().encode() + b"]"
        + (b"(?:[" + name[1:2].encode() + name[1:2].upper().encode() + b"]|" + other + b")"
           if name[1:] else b"")
        for name in fields
    ]  # fmt: skip
    return rb'"(?:' + rb"|".join([*starts, other]) + rb")"


@functools.lru_cache(maxsize=32)
def _patterns(fields: tuple[str, ...]) -> _Patterns:
    keys = [_key_pattern(name) for name in fields]
    container = _SMALL_CONTAINER
    member = _STRICT_STRING + _NAME_SEPARATOR + _value(container)
    non_null = _NOT_NULL + _value(container, null=b"")
    return _Patterns(
        keys=tuple(_compile(key) for key in keys),
        first=_compile(_captured_member(fields, container)),
        run=_compile(rb"(?:" + _VALUE_SEPARATOR + member + rb")*+" + _WS),
        # Greedy: the match backs from the end to the last comma the rest matches at. (The
        # comma outside the group: a literal after the repeat lets sre skip to it.)
        last_value=tuple(
            _compile(rb"(?s:.*),(" + _WS + key + _NAME_SEPARATOR + rb")(" + non_null + rb")")
            for key in keys
        ),
        last_null=tuple(
            _compile(rb"(?s:.*),(" + _WS + key + _NAME_SEPARATOR + rb")(null)") for key in keys
        ),
        captured=_compile(_captured_run(fields, container)),
        names_a_field=_compile(
            rb"(?:" + rb"|".join(keys) + rb")" + _NAME_SEPARATOR if keys else rb"(?!)"
        ),
        quoted=tuple(json_string(name) for name in fields),
        may_name_a_field=_compile(_starts(fields)),
    )


@functools.lru_cache(maxsize=32)
def _checked_run(fields: tuple[str, ...], levels: int) -> re.Pattern[bytes]:
    """:func:`_captured_run` with values ``levels`` deep, for bytes whose brackets were
    checked beforehand (either closer closes either opener here). Compiled when first needed,
    as it takes a while (some 30 ms)."""
    return _compile(_captured_run(fields, _nested(levels)))


_RUN_MEMBERS = 1024
# What a value other than null starts with (a quick look before trying each kind).
_NOT_NULL = rb'(?=[-"\[{tf0-9])'
# What a key spelling a field has when it is not plain ASCII, lower-cased: an escaped ASCII
# letter, or (escaped or not) one of the two runes Go folds to an ASCII letter.
_ESCAPED_LETTERS = (b"\\u00", b"\\u017f", b"\\u212a")
_FOLDED_RUNES = ("\u017f".encode(), "\u212a".encode())
# The longest a key spelling a field can be, in bytes (each letter a \u escape, say).
_LONGEST_KEY_BYTES = 128
# Patterns for reading by hand, on the body as sent.
_NUMBER = rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?(?![-+.0-9eE])"
_NUMBER_RX = re.compile(_NUMBER)
_DIGITS = re.compile(rb"[0-9]*")
_STRICT_STRING_RX = _compile(_STRICT_STRING)
_STRICT_CHARS = re.compile(
    rb'[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*){0,4096}'
)
_NOT_SPECIAL = re.compile(rb'[^"\[\]{}]*')
_NOT_STRUCTURE_RX = _compile(rb'[^"\[\]{},]*+')
_TOKEN_STARTS = (b'"', b",", b":", b"[", b"]", b"{", b"}")
_NUMBER_BYTES = b"-+.0123456789eE"
_NOT_NUMBER_BYTE = re.compile(rb"[^-+.0-9eE]|\Z")
_NOT_BACKSLASH = re.compile(rb"[^\\\\]")
_OPENERS_RX = re.compile(rb"[\[{]+")
_CLOSERS_RX = re.compile(rb"[\]}]+")
_RUNS_RX = re.compile(rb"[\[{]+|[\]}]+")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_CLOSER_TO_OPENER = bytes.maketrans(b"]}", b"[{")
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'"[]{}')
_QUOTE, _BACKSLASH, _COMMA = 0x22, 0x5C, 0x2C
_KINDS = {ord("["): "an array", _QUOTE: "a string", ord("t"): "a boolean", ord("f"): "a boolean"}
_OPENERS, _CLOSERS = b"[{", b"]}"
_ESCAPES = b'"\\/bfnrtu'
_HEX = b"0123456789abcdefABCDEF"
# Containers are first walked exactly for this many bytes, then counted in chunks growing
# from the first size to the largest (which bounds the memory a chunk's copy takes).
_WALK_BYTES = 4096
_FIRST_CHUNK_BYTES = 64 * 1024
_LARGEST_CHUNK_BYTES = 1024 * 1024
# Top-level members are read one by one in windows growing from the first size to a slice;
# past the first window, one that names no field is skipped in bulk.
_FIRST_WINDOW_BYTES = 64 * 1024
# A member the patterns could not read, and smaller than this, nests too deep for them:
# more may follow, so their window is read with its brackets checked first.
_DEEP_MEMBER_BYTES = 4096

#: About how much work (bytes scanned) a step of :func:`read_object_steps` does.
SLICE_BYTES = 1024 * 1024


_GO_ESCAPES = {0x07: "\\a", 0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0B: "\\v", 0x0C: "\\f",
               0x0D: "\\r", _BACKSLASH: "\\\\"}  # fmt: skip


def _quote_char(c: int) -> str:
    """A byte as Go's scanner shows it in an error (encoding/json scanner.go, quoteChar:
    the byte as a rune, quoted by strconv.Quote between single quotes)."""
    if c == 0x27:
        return "'\\''"
    if c == _QUOTE:
        return "'\"'"
    if c in _GO_ESCAPES:
        text = _GO_ESCAPES[c]
    elif c < 0x20 or c == 0x7F:
        text = f"\\x{c:02x}"
    elif c >= 0x80 and not chr(c).isprintable():
        text = f"\\u{c:04x}"
    else:
        text = chr(c)
    return f"'{text}'"


class _Refusal(RequestError):
    """Go's refusal of a body, and the offset of the byte it is about."""

    def __init__(self, message: str, at: int) -> None:
        super().__init__(400, f"invalid JSON in request body: {message}")
        self.at = at


def _syntax_error(c: int, context: str, at: int) -> _Refusal:
    return _Refusal(f"invalid character {_quote_char(c)} {context}", at)


def _unexpected_eof(at: int) -> _Refusal:
    return _Refusal("unexpected EOF", at)


_Steps = Generator[int, None, _T]
# The blanked body: a copy made a slice at a time is a bytearray.
_Bytes = bytes | bytearray


class _Reader:
    """One reading of one body (not shared: it keeps the blanked copy and the results).

    Its methods that may take long are generators: they yield the bytes scanned so far after
    each slice of work (:data:`SLICE_BYTES`), and return their result.
    """

    def __init__(self, body: bytes, fields: tuple[str, ...]) -> None:
        self.body = body
        self.fields = fields
        self.patterns = _patterns(fields)
        self._blanked: _Bytes | None = None
        #: Bytes scanned so far (what the steps yield), and since the last step.
        self.done = 0
        self._work = 0
        # Stretches of top-level members skipped without reading their syntax (their
        # brackets were checked): read when an error comes later, as Go names the first.
        self._unchecked: list[tuple[int, int]] = []

    @property
    def blanked(self) -> _Bytes:
        """The body with escaped backslashes and quotes blanked out, offsets unchanged.

        Escapes pair from the left in a run of backslashes, as ``bytes.replace`` finds them,
        so after this every quote opens or closes a string (in JSON Go accepts).
        """
        if self._blanked is None:
            body = self.body
            if b"\\" in body:
                body = body.replace(b"\\\\", b"..").replace(b'\\"', b"..")
            self._blanked = body
        return self._blanked

    def _blank(self) -> _Steps[None]:
        """Make :attr:`blanked` a slice at a time: first look for escaped backslashes and
        quotes, then, if there are any, blank them in a copy grown a slice at a time (a copy
        of it all at once takes a while)."""
        body = self.body
        if b"\\" not in body:
            self._blanked = body
            return
        slices = []
        start = 0
        while start < len(body):
            end = min(len(body), start + SLICE_BYTES)
            if body[end - 1] == _BACKSLASH:
                # A run of backslashes pairs from its start: keep it, and what the last one
                # escapes, in this slice.
                after = _NOT_BACKSLASH.search(body, end)
                end = len(body) if after is None else after.end()
            slices.append((start, end))
            start = end
        for start, end in slices:
            found = body.find(b"\\\\", start, end) >= 0 or body.find(b'\\"', start, end) >= 0
            if self._spent(end - start):
                yield self.done
            if found:
                break
        else:
            self._blanked = body
            return
        blanked = bytearray()
        for start, end in slices:
            blanked += body[start:end].replace(b"\\\\", b"..").replace(b'\\"', b"..")
            if self._spent(end - start):
                yield self.done
        self._blanked = blanked

    def _spent(self, size: int) -> bool:
        """Count ``size`` bytes of work; return True when a slice is done (time to yield):
        half a slice or more, as the units of work come in sizes up to a slice."""
        self.done += size
        self._work += size
        if self._work * 2 < SLICE_BYTES:
            return False
        self._work = 0
        return True

    # --- The first value ------------------------------------------------------------------

    def read(self) -> _Steps[ObjectReading | None]:
        if len(self.body) > SLICE_BYTES:
            yield from self._blank()
        try:
            return (yield from self._read())
        except _Refusal as refusal:
            # Go names the first error: one in a stretch skipped unread comes before.
            for start, end in self._unchecked:
                if start >= refusal.at:
                    break
                yield from self._read_checked(start, min(end, refusal.at), ObjectReading(start))
            raise

    def _read(self) -> _Steps[ObjectReading | None]:
        body = self.body
        pos = _WS_RX.match(body).end()  # type: ignore[union-attr]
        if pos == len(body):
            raise _unexpected_eof(pos)
        if body[pos] == ord("{"):
            return (yield from self._object(pos))
        yield from self._value(pos, depth=0)  # Go reads the whole value before its type
        if body[pos] == ord("n"):
            return None  # `null`: Go leaves the request empty
        kind = _KINDS.get(body[pos], "a number")
        raise RequestError(400, f"request body must be a JSON object, not {kind}")

    def _object(self, start: int) -> _Steps[ObjectReading]:
        body, blanked = self.body, self.blanked
        reading = ObjectReading(start)
        pos = _WS_RX.match(body, start + 1).end()  # type: ignore[union-attr]
        if pos < len(body) and body[pos] == ord("}"):
            reading.end = pos + 1
            return reading
        reading.has_members = True
        match = self.patterns.first.match(blanked, pos, self._cut(pos + _FIRST_WINDOW_BYTES))
        if match:
            self._take(match, reading)
            pos = match.end()
        else:
            pos = yield from self._member(pos, reading)
        window, exact = _FIRST_WINDOW_BYTES, True
        while True:
            pos = _WS_RX.match(body, pos).end()  # type: ignore[union-attr]
            if pos == len(body):
                raise _unexpected_eof(pos)
            if body[pos] == ord("}"):
                reading.end = pos + 1
                return reading
            if body[pos] != _COMMA:
                raise _syntax_error(body[pos], "after object key:value pair", pos)
            target = min(len(body), pos + window)
            if exact or self._names_a_field(pos, target):
                pos = yield from self._read_members(pos, target, reading)
            else:
                pos = yield from self._skip_members(pos, target, reading)
            window, exact = min(2 * window, SLICE_BYTES), False

    # --- Top-level members ----------------------------------------------------------------

    def _read_members(self, pos: int, target: int, reading: ObjectReading) -> _Steps[int]:
        """Read the members after ``pos`` (at a comma) one by one, up to about ``target``.

        The patterns read them; one they cannot read is read by hand. When that one is small
        (it nests deeper than the patterns follow), the rest of the window is read with its
        brackets checked first.
        """
        blanked = self.blanked
        endpos = self._cut(target)
        while True:
            end = self._matched(pos, endpos, reading)
            if end > pos:
                start, pos = pos, end
                if self._spent(pos - start):
                    yield self.done
                continue
            if pos >= endpos or blanked[pos] != _COMMA:
                return pos
            member = _WS_RX.match(blanked, pos + 1).end()  # type: ignore[union-attr]
            pos = yield from self._member(member, reading)
            if pos >= endpos:
                return pos
            if pos - member < _DEEP_MEMBER_BYTES:
                return (yield from self._read_checked_window(pos, target, reading))

    def _cut(self, target: int) -> int:
        """Where to stop the member patterns at or after ``target``: before a quote, bracket,
        comma or colon. No token but a string spans such a byte, and a string or container
        cut short does not match, so every member a pattern takes there is whole."""
        blanked = self.blanked
        if target >= len(blanked):
            return len(blanked)
        end = min(len(blanked), target + SLICE_BYTES)
        found = [at for at in (blanked.find(c, target, end) for c in _TOKEN_STARTS) if at >= 0]
        if found:
            return min(found)
        if end < len(blanked) and blanked[end - 1] in _NUMBER_BYTES:
            # None in a slice: a long string, number or white space. A number cut short
            # would read as a shorter one: cut after it.
            end = _NOT_NUMBER_BYTE.search(blanked, end).start()  # type: ignore[union-attr]
        return end

    def _skip_members(self, pos: int, target: int, reading: ObjectReading) -> _Steps[int]:
        """Skip the members after ``pos`` (at a comma) to a member's end at or after
        ``target``, their brackets checked; read them if one may name a field after all."""
        self._unchecked.append((pos, len(self.body)))
        end = yield from self._boundary(pos, target)
        # [pos, target) was looked at already; a key across target starts after this.
        named = yield from self._names_a_field_in(max(pos, target - _LONGEST_KEY_BYTES), end)
        if named:
            self._unchecked.pop()
            return (yield from self._read_checked(pos, end, reading))
        self._unchecked[-1] = (pos, end)
        return end

    def _read_checked_window(self, pos: int, target: int, reading: ObjectReading) -> _Steps[int]:
        """Read the members after ``pos`` (at a comma) to a member's end at or after
        ``target``, their brackets checked in bulk first."""
        self._unchecked.append((pos, len(self.body)))  # until its brackets are checked
        end = yield from self._boundary(pos, target)
        self._unchecked.pop()
        return (yield from self._read_checked(pos, end, reading))

    def _read_checked(self, pos: int, end: int, reading: ObjectReading) -> _Steps[int]:
        """Read the members between ``pos`` (at a comma) and ``end``, whose brackets pair up.

        :returns: where reading stopped: ``end``, or before a byte that cannot follow a member.
        """
        blanked, captured = self.blanked, _checked_run(self.fields, _CHECKED_LEVELS)
        while True:
            # Values there are deep, and reading them costs more than capturing as they go.
            # A slice at a time (a value across the cut is read by hand).
            match = captured.match(blanked, pos, min(end, self._cut(pos + SLICE_BYTES)))
            self._take(match, reading)  # type: ignore[arg-type]
            stop = match.end()  # type: ignore[union-attr]
            if stop > pos:
                start, pos = pos, stop
                if self._spent(pos - start):
                    yield self.done
                continue
            if pos >= end or blanked[pos] != _COMMA:
                if pos < end:
                    raise _syntax_error(blanked[pos], "after object key:value pair", pos)
                return pos
            member = _WS_RX.match(blanked, pos + 1).end()  # type: ignore[union-attr]
            pos = yield from self._member(member, reading)
            if pos >= end:
                return pos

    def _matched(self, pos: int, end: int, reading: ObjectReading) -> int:
        """Take the members the patterns read after ``pos``, up to ``end``; record the
        fields' last values in them; return where they stop."""
        blanked, patterns = self.blanked, self.patterns
        stop = patterns.run.match(blanked, pos, end).end()  # type: ignore[union-attr]
        if stop == pos or not self._names_a_field(pos, stop):
            return stop
        # The last member spelling each field, found backwards, is the one Go reads if it is
        # a top-level one, as the members from its comma on then read to the end. If not (it
        # is nested in a value), capture the members one by one.
        found: list[tuple[str, re.Match[bytes], bool]] = []
        for index, name in enumerate(self.fields):
            # Most often the last member is near the end: look there first.
            last = patterns.last_value[index].match(blanked, max(pos, stop - _WALK_BYTES), stop)
            if last is None and not self._only_nulls(pos, stop, index):
                last = patterns.last_value[index].match(blanked, pos, stop)
            is_null = last is None
            # The last null too, where one may be (the common body has none at all).
            null = None
            if is_null or blanked.find(b"null", pos, stop) >= 0:
                null = patterns.last_null[index].match(blanked, pos, stop)
            if last is None:
                last, null = null, None
            if last is None:
                continue
            if any(
                patterns.run.match(blanked, match.start(1) - 1, stop).end() != stop  # type: ignore[union-attr]
                for match in (last, null)
                if match is not None
            ):
                at = pos
                while at < stop:
                    match = patterns.captured.match(blanked, at, stop)
                    self._take(match, reading)  # type: ignore[arg-type]
                    if match.end() == at:  # type: ignore[union-attr]
                        raise AssertionError("unreachable: both patterns read the same members")
                    at = match.end()  # type: ignore[union-attr]
                return stop
            found.append((name, last, is_null))
            if null is not None:
                found.append((name, null, True))
        for name, last, is_null in found:
            start, end = last.span(2)
            if is_null:
                reading.nulls[name] = Member(start, end, None)
                continue
            if blanked[start] == _QUOTE and not _STRICT_STRING_RX.fullmatch(self.body, start, end):
                drain(self._strict_string(start))  # raises Go's error for it
            reading.values[name] = self._member_value(start, end)
        return stop

    def _boundary(self, pos: int, target: int) -> _Steps[int]:
        """Return where the top-level value going on at ``target`` ends (white space and a
        comma or the closing brace follow), or where the object closes if before; check the
        brackets from ``pos`` (outside strings, in the object) to there."""
        blanked = self.blanked
        size = len(blanked)
        at = after = max(pos, min(target, size))
        if blanked.count(b'"', pos, at) % 2:
            # target is inside a string: count up to where it starts, then skip it (unless
            # the object ends before: what follows it is not read).
            at = blanked.rfind(b'"', pos, at)
            close = blanked.find(b'"', at + 1)
            after = close + 1 if close >= 0 else size
        stack = bytearray(b"{")
        stop, closed = self._apply(pos, at, stack, MAX_DEPTH, floor=0)
        if self._spent(at - pos):
            yield self.done
        if closed:
            return stop - 1
        at = after
        while True:
            if len(stack) > 1:
                at = yield from self._close(at, stack, MAX_DEPTH, floor=1)
            at = _NOT_STRUCTURE_RX.match(blanked, at).end()  # type: ignore[union-attr]
            if at == size:
                raise _unexpected_eof(size)
            c = blanked[at]
            if c == _COMMA or c == ord("}"):
                return at
            if c == _QUOTE:
                close = blanked.find(b'"', at + 1)
                if close < 0:
                    raise _unexpected_eof(size)
                at = close + 1
            elif c in _OPENERS:
                self._walk(at, at + 1, stack, MAX_DEPTH)
                at += 1
            else:
                self._mismatch(at, blanked[at : at + 1], stack)

    def _names_a_field_in(self, start: int, end: int) -> _Steps[bool]:
        """:meth:`_names_a_field` a slice at a time (the stretch may hold a large value)."""
        while start < end:
            stop = min(end, start + SLICE_BYTES)
            if self._names_a_field(start, min(end, stop + _LONGEST_KEY_BYTES)):
                return True
            if self._spent(stop - start):
                yield self.done
            start = stop
        return False

    def _names_a_field(self, start: int, end: int) -> bool:
        """Whether a key in ``[start, end)`` may spell a field (a string value spelling one
        may say yes too)."""
        blanked, patterns = self.blanked, self.patterns
        small = end - start <= _WALK_BYTES  # (then a quick look first)
        if small and patterns.may_name_a_field.search(blanked, start, end) is None:
            return False
        # A byte search on a lower-case copy is some ten times faster than the pattern,
        # which is only needed for the rare spellings with escapes or non-ASCII runes.
        lowered = blanked[start:end].lower()
        if any(quoted in lowered for quoted in patterns.quoted):
            return True
        escaped = b"\\u" in lowered and any(part in lowered for part in _ESCAPED_LETTERS)
        if not escaped and (lowered.isascii() or not any(r in lowered for r in _FOLDED_RUNES)):
            return False
        return patterns.names_a_field.search(blanked, start, end) is not None

    def _only_nulls(self, start: int, end: int, index: int) -> bool:
        """Whether every member spelling field ``index`` in ``[start, end)`` is sure to be
        null, by counting plain spellings (the search backwards for a value otherwise tries
        the field's spellings at every comma)."""
        lowered = self.blanked[start:end].lower()
        if (b"\\u" in lowered and any(p in lowered for p in _ESCAPED_LETTERS)) or not (
            lowered.isascii() or not any(rune in lowered for rune in _FOLDED_RUNES)
        ):
            return False
        packed = lowered.translate(None, b" \t\r\n")
        key = self.patterns.quoted[index] + b":"
        return packed.count(key) == packed.count(key + b"null")

    def _take(self, match: re.Match[bytes], reading: ObjectReading) -> None:
        """Record what a run of members captured: per field, its last value and last null."""
        for index, name in enumerate(self.fields):
            start, end = match.span(f"v{index}")
            if start >= 0:
                reading.values[name] = self._member_value(start, end)
            start, end = match.span(f"n{index}")
            if start >= 0:
                reading.nulls[name] = Member(start, end, None)

    def _member(self, pos: int, reading: ObjectReading) -> _Steps[int]:
        """Read one member the patterns could not (a large value, or an error) by hand."""
        body = self.body
        if pos == len(body):
            raise _unexpected_eof(pos)
        if body[pos] != _QUOTE:
            raise _syntax_error(body[pos], "looking for beginning of object key string", pos)
        key_end = yield from self._strict_string(pos)
        index = next(
            (i for i, key in enumerate(self.patterns.keys) if key.fullmatch(body, pos, key_end)),
            None,
        )
        pos = _WS_RX.match(body, key_end).end()  # type: ignore[union-attr]
        if pos == len(body):
            raise _unexpected_eof(pos)
        if body[pos] != ord(":"):
            raise _syntax_error(body[pos], "after object key", pos)
        start = _WS_RX.match(body, pos + 1).end()  # type: ignore[union-attr]
        if index is None:
            return (yield from self._value(start, depth=1))
        name = self.fields[index]
        if start < len(body) and body[start] == _QUOTE:
            end = yield from self._strict_string(start)
        else:
            end = yield from self._value(start, depth=1)
        if body.startswith(b"null", start):
            reading.nulls[name] = Member(start, end, None)
        else:
            reading.values[name] = self._member_value(start, end)
        return end

    def _member_value(self, start: int, end: int) -> Member:
        if self.body[start] != _QUOTE:
            return Member(start, end, None)
        return Member(start, end, _decode_string(self.body[start + 1 : end - 1]))

    # --- Values ---------------------------------------------------------------------------

    def _value(self, pos: int, depth: int) -> _Steps[int]:
        """Return where the value at ``pos`` ends; ``depth`` containers enclose it."""
        body = self.body
        if pos == len(body):
            raise _unexpected_eof(pos)
        c = body[pos]
        if c == _QUOTE:
            close = self.blanked.find(b'"', pos + 1)
            if close < 0:
                raise _unexpected_eof(len(body))
            return close + 1
        if c in _OPENERS:
            return (yield from self._container_end(pos, depth))
        if c == ord("-") or 0x30 <= c <= 0x39:
            return self._number(pos)
        for literal in (b"true", b"false", b"null"):
            if c == literal[0]:
                return self._literal(pos, literal)
        raise _syntax_error(c, "looking for beginning of value", pos)

    def _number(self, pos: int) -> int:
        match = _NUMBER_RX.match(self.body, pos)
        if match:
            return match.end()
        body, end = self.body, len(self.body)

        def digits(at: int, context: str) -> int:
            if at == end:
                raise _unexpected_eof(at)
            if not 0x30 <= body[at] <= 0x39:
                raise _syntax_error(body[at], context, at)
            return _DIGITS.match(body, at).end()  # type: ignore[union-attr]

        at = pos + 1 if body[pos] == ord("-") else pos
        at = at + 1 if at < end and body[at] == ord("0") else digits(at, "in numeric literal")
        if at < end and body[at] == ord("."):
            at = digits(at + 1, "after decimal point in numeric literal")
        if at < end and body[at] in b"eE":
            at += 1
            at = at + 1 if at < end and body[at] in b"+-" else at
            at = digits(at, "in exponent of numeric literal")
        return at  # what follows is not the number's: the caller's context says what is wrong

    def _literal(self, pos: int, literal: bytes) -> int:
        body = self.body
        for offset in range(1, len(literal)):
            at = pos + offset
            if at == len(body):
                raise _unexpected_eof(at)
            if body[at] != literal[offset]:
                expecting = chr(literal[offset])
                raise _syntax_error(
                    body[at], f"in literal {literal.decode()} (expecting '{expecting}')", at
                )
        return pos + len(literal)

    def _strict_string(self, pos: int) -> _Steps[int]:
        """Return where the string at ``pos`` ends, checked as Go's scanner checks it."""
        body = self.body
        match = _STRICT_STRING_RX.match(body, pos, pos + _WALK_BYTES)
        if match:
            return match.end()
        at = pos + 1
        while True:
            # A slice, or 4096 escapes, at a time (one cut short by the slice's end is
            # taken by the next; an escape takes six bytes at most).
            limit = min(len(body), at + max(SLICE_BYTES, 6))
            after = _STRICT_CHARS.match(body, at, limit).end()  # type: ignore[union-attr]
            if self._spent(after - at):
                yield self.done
            if after == len(body):
                raise _unexpected_eof(after)
            if after < limit and body[after] == _QUOTE:
                return after + 1
            if after == at:
                break
            at = after
        c = body[after]
        if c != _BACKSLASH:
            raise _syntax_error(c, "in string literal", after)
        if after + 1 == len(body):
            raise _unexpected_eof(after + 1)
        if body[after + 1] not in _ESCAPES:
            raise _syntax_error(body[after + 1], "in string escape code", after + 1)
        for at in range(after + 2, after + 6):
            if at == len(body):
                raise _unexpected_eof(at)
            if body[at] not in _HEX:
                raise _syntax_error(body[at], "in \\u hexadecimal character escape", at)
        raise AssertionError("unreachable: the pattern takes every valid escape")

    # --- Containers -----------------------------------------------------------------------

    def _container_end(self, start: int, depth: int) -> _Steps[int]:
        """Return where the container opening at ``start`` ends, its brackets checked."""
        blanked = self.blanked
        if depth >= MAX_DEPTH:
            raise _syntax_error(blanked[start], "exceeded max depth", start)
        stack = bytearray(blanked[start : start + 1])
        return (yield from self._close(start + 1, stack, MAX_DEPTH - depth, floor=0))

    def _close(self, pos: int, stack: bytearray, limit: int, floor: int) -> _Steps[int]:
        """Apply the brackets from ``pos`` on until ``stack`` is down to ``floor`` brackets;
        return where that happens (after the closer)."""
        blanked = self.blanked
        walked_to = min(len(blanked), pos + _WALK_BYTES)
        start = pos
        pos, ended = self._walk(pos, walked_to, stack, limit, floor)
        size = _FIRST_CHUNK_BYTES
        while not ended:
            if pos >= len(blanked):
                raise _unexpected_eof(len(blanked))
            end = min(len(blanked), pos + size)
            after = end
            if blanked.count(b'"', pos, end) % 2:
                # The chunk would end inside a string: end it where that string starts, and
                # go on after it (a long string costs one find(), not a copy).
                end = blanked.rfind(b'"', pos, end)
                close = blanked.find(b'"', end + 1)
                after = close + 1 if close >= 0 else len(blanked)
            pos, ended = self._apply(pos, end, stack, limit, floor)
            if not ended:
                pos = after
            size = min(size * 2, _LARGEST_CHUNK_BYTES)
            if self._spent(pos - start):
                start = pos
                yield self.done
        return pos

    def _apply(
        self, start: int, end: int, stack: bytearray, limit: int, floor: int
    ) -> tuple[int, bool]:
        """Apply the brackets of ``[start, end)`` (outside strings) to ``stack``, in bulk
        where it can; return where it stopped and whether the stack came down to ``floor``."""
        saved = bytes(stack)
        if not self._balance(start, end, stack, limit, floor):
            return end, False
        stack[:] = saved
        pos, ended = self._locate(start, end, stack, limit, floor)
        if not ended:
            pos, ended = self._walk(pos, end, stack, limit, floor)
        return pos, ended

    def _balance(self, start: int, end: int, stack: bytearray, limit: int, floor: int) -> bool:
        """Apply the brackets of ``[start, end)`` to ``stack`` in bulk.

        ``start`` and ``end`` are outside strings. Return True when something happens in
        there that needs its exact place: the stack comes down to ``floor`` brackets (the
        container ends), a closer does not match its opener, or the depth may pass ``limit``;
        then ``stack`` is left in an unknown state.
        """
        skeleton = self.blanked[start:end].translate(None, _NOT_STRUCTURE)
        if b'"' in skeleton:
            # Strings without brackets in them (all, mostly) go in one pass, the others split.
            skeleton = skeleton.replace(b'""', b"")
            if b'"' in skeleton:
                skeleton = b"".join(skeleton.split(b'"')[::2])
        # Deep structure has few runs of brackets: walk them as they are. Wide structure
        # (empty arrays, message objects) has a run per byte or two: first remove matched
        # pairs while that pays, each pass one level (a two-byte search costs some 4 ns a
        # byte, so deep structure is spared it when a look at its start shows few runs).
        runs = None
        if len(_RUNS_RX.findall(skeleton, 0, 4096)) * 32 < min(len(skeleton), 4096):
            runs = _RUNS_RX.findall(skeleton)
        passes = 0
        if runs is None or len(runs) * 32 > len(skeleton):
            while skeleton:
                size = len(skeleton)
                for pair in (b"[]", b"{}"):
                    if pair[:1] not in skeleton:
                        continue  # a quick check first
                    reduced = skeleton.replace(pair, b"")
                    if len(reduced) < len(skeleton):
                        passes += 1
                        skeleton = reduced
                if (size - len(skeleton)) * 8 < size:
                    break  # what is left is deep rather than wide: its runs are few
            runs = _RUNS_RX.findall(skeleton)
        for opener, others in ((b"[", b"{}"), (b"{", b"[]")):
            if len(runs) > 1 and others[:1] not in skeleton and others[1:] not in skeleton:
                return self._balance_one_kind(runs, opener, stack, limit - passes, floor)
        deepest = len(stack)
        for run in runs:
            if run[0] in _OPENERS:
                stack += run
                deepest = max(deepest, len(stack))
                continue
            if len(run) >= len(stack) - floor:
                return True
            if run.translate(_CLOSER_TO_OPENER) != stack[: -len(run) - 1 : -1]:
                return True
            del stack[-len(run) :]
        # Each pass removed pairs one level deep, and so hid at most one level of depth.
        return deepest + passes > limit

    @staticmethod
    def _balance_one_kind(
        runs: list[bytes], opener: bytes, stack: bytearray, limit: int, floor: int
    ) -> bool:
        """:meth:`_balance`'s walk of ``runs``, all of one kind of bracket: only how deep
        they go matters, summed by C loops rather than a Python step a run."""
        # Runs alternate: openers, closers, openers...
        depths = [len(run) for run in runs]
        closers = slice(0 if runs[0][0] in _CLOSERS else 1, None, 2)
        depths[closers] = map(operator.neg, depths[closers])
        depths = list(itertools.accumulate(depths, initial=len(stack)))
        lowest = min(depths)
        if lowest <= floor or stack[lowest:] != opener * (len(stack) - lowest):
            return True  # the stack comes down to the floor, or a closer meets another kind
        stack[lowest:] = opener * (depths[-1] - lowest)
        return max(depths) > limit

    def _locate(
        self, start: int, end: int, stack: bytearray, limit: int, floor: int
    ) -> tuple[int, bool]:
        """Narrow ``[start, end)``, where :meth:`_balance` saw something, and walk it exactly."""
        blanked = self.blanked
        while end - start > _WALK_BYTES:
            middle = (start + end) // 2
            if blanked.count(b'"', start, middle) % 2:
                middle = blanked.rfind(b'"', start, middle)
                if middle == start:
                    middle = blanked.find(b'"', middle + 1) + 1
                if middle >= end:
                    break
            saved = bytes(stack)
            if self._balance(start, middle, stack, limit, floor):
                stack[:] = saved
                end = middle
            else:
                start = middle
        return self._walk(start, end, stack, limit, floor)

    def _walk(
        self, pos: int, end: int, stack: bytearray, limit: int, floor: int = 0
    ) -> tuple[int, bool]:
        """Apply the brackets from ``pos`` on, exactly, until the stack is down to ``floor``
        brackets or ``end``.

        Return where it stopped, and whether that is because the stack came down. A string
        that starts before ``end`` is skipped whole.
        """
        blanked = self.blanked
        while pos < end:
            pos = _NOT_SPECIAL.match(blanked, pos, end).end()  # type: ignore[union-attr]
            if pos == end:
                break
            c = blanked[pos]
            if c == _QUOTE:
                close = blanked.find(b'"', pos + 1)
                if close < 0:
                    raise _unexpected_eof(len(blanked))
                pos = close + 1
            elif c in _OPENERS:
                run_end = _OPENERS_RX.match(blanked, pos, end).end()  # type: ignore[union-attr]
                room = limit - len(stack)
                if run_end - pos > room:
                    raise _syntax_error(blanked[pos + room], "exceeded max depth", pos + room)
                stack += blanked[pos:run_end]
                pos = run_end
            else:
                run_end = _CLOSERS_RX.match(blanked, pos, end).end()  # type: ignore[union-attr]
                count = min(run_end - pos, len(stack) - floor)
                closers = blanked[pos : pos + count]
                if closers.translate(_CLOSER_TO_OPENER) != stack[: -count - 1 : -1]:
                    self._mismatch(pos, closers, stack)
                del stack[len(stack) - count :]
                pos += count
                if len(stack) == floor:
                    return pos, True
        return pos, False

    def _mismatch(self, pos: int, closers: _Bytes, stack: bytearray) -> None:
        """Raise Go's error for the first closer of ``closers`` (at ``pos``) that is wrong."""
        blanked = self.blanked
        for offset, closer in enumerate(closers):
            opener = stack[-1 - offset]
            if closer == _CLOSERS[_OPENERS.index(opener)]:
                continue
            at = pos + offset
            before = at - 1
            while blanked[before] in b" \t\r\n":
                before -= 1
            previous = blanked[before]
            if opener == ord("["):
                context = "looking for beginning of value" if previous in b"[," else None
                raise _syntax_error(closer, context or "after array element", at)
            if previous in b"{,":
                raise _syntax_error(closer, "looking for beginning of object key string", at)
            if previous == ord(":"):
                raise _syntax_error(closer, "looking for beginning of value", at)
            if previous == _QUOTE:
                # A key or a value? What comes before the string's opening quote says.
                open_quote = blanked.rfind(b'"', 0, before)
                ahead = open_quote - 1
                while blanked[ahead] in b" \t\r\n":
                    ahead -= 1
                if blanked[ahead] != ord(":"):
                    raise _syntax_error(closer, "after object key", at)
            raise _syntax_error(closer, "after object key:value pair", at)
        raise AssertionError("unreachable: some closer does not match")


def _decode_string(raw: bytes) -> str:
    """The string Go decodes from a JSON string literal's bytes (between the quotes).

    Each invalid UTF-8 byte reads as U+FFFD (``surrogateescape`` keeps them one by one),
    escapes are decoded by the stdlib's C scanner, and a lone surrogate, escaped or an
    invalid byte, reads as U+FFFD (Go encoding/json decode.go, unquote).
    """
    if raw.isascii() and b"\\" not in raw:
        return raw.decode("ascii")
    text = raw.decode("utf-8", "surrogateescape")
    if "\\" in text:
        text = scanstring(text + '"', 0, False)[0]
    return _LONE_SURROGATE.sub("\ufffd", text)
