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

How, and at what cost. The top-level object is walked member by member, most of them in
bulk by one compiled pattern per run of members that names the fields the endpoint
cares about, so the last non-null value of each is captured as the run goes by. Values
are never built: a value too large for the pattern is skipped by finding where it ends.
Strings end at the next quote once escaped quotes and backslashes are blanked out (one
``bytes.replace`` each); containers end where their brackets balance, counted in chunks
whose strings are dropped and whose matched pairs are removed by ``bytes`` operations,
so the Python steps go with the runs of brackets left over (deep nesting), not with the
bytes or the tokens. No recursion: a stack of open brackets is a ``bytearray``.

What is validated, and why not everything: the top-level object's syntax (braces, keys,
colons, commas), its keys, the values of the fields read, the top-level numbers and
literals, and the nesting of every bracket (balance, kinds, depth) are checked as Go
checks them, with Go's words (``invalid character 'x' looking for beginning of value``,
``unexpected EOF``). Inside nested values only the brackets and where strings end are
read: a bad escape, number or literal nested in, say, ``messages`` is not looked for,
since looking costs a step per token and Python's steps are far too slow for 100 MiB of
tokens. Such a body goes on, and Ollama refuses it with its own 400. That is safe: Go
validates the whole first value before using any of it, and every edit the caller makes
keeps the bytes before the edit, so the error stays where it was (module docs of
:mod:`~ollama_default.core.request_body`).

Pure: bytes in, offsets and strings out; no I/O, no WSGI.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from json.decoder import scanstring  # type: ignore[attr-defined]

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
    ``null``. ``has_members`` tells ``{}`` from the rest.
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
    reader = _Reader(body, tuple(fields))
    return reader.read()


# --- Patterns -------------------------------------------------------------------------------

_WS = rb"[ \t\r\n]*"
_WS_RX = re.compile(_WS)
# A string checked as Go's scanner checks it (no control characters, known escapes), and
# one only delimited. Bounded, so that a long string falls out to the find()-based path
# and no repeat grows sre's backtracking stack without limit.
_STRICT_STRING = (
    rb'"[^"\\\x00-\x1f]{0,4096}(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]{0,4096}){0,256}"'
)
_LOOSE_STRING = rb'"[^"\\]{0,4096}(?:\\[\s\S][^"\\]{0,4096}){0,256}"'
_NUMBER = rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?(?![-+.0-9eE])"
_BAREWORD = rb"true|false"
# A run of bytes inside a container that are neither quotes nor brackets, taken whole
# (the lookahead), so that sre can never split it two ways when it backtracks.
_PLAIN = rb'[^"\[\]{}]{1,4096}(?=["\[\]{}])'


def _container(opener: bytes, closer: bytes, inner: bytes) -> bytes:
    return opener + rb"(?:" + _PLAIN + rb"|" + _LOOSE_STRING + inner + rb"){0,256}" + closer


_FLAT = _container(rb"\[", rb"\]", b"") + rb"|" + _container(rb"\{", rb"\}", b"")
# Containers two levels deep (their own brackets checked; scalars inside only delimited).
_SMALL_CONTAINER = (
    _container(rb"\[", rb"\]", rb"|" + _FLAT) + rb"|" + _container(rb"\{", rb"\}", rb"|" + _FLAT)
)
_NOT_NULL = rb"(?:" + _NUMBER + rb"|" + _BAREWORD + rb"|" + _SMALL_CONTAINER + rb")"
_VALUE = rb"(?:" + _LOOSE_STRING + rb"|null|" + _NOT_NULL + rb")"


def _hex_digits(code: int) -> bytes:
    return b"".join(
        b"[" + c.lower().encode() + c.upper().encode() + b"]" if c.isalpha() else c.encode()
        for c in f"{code:04x}"
    )


@functools.lru_cache(maxsize=64)
def _key_pattern(field_name: str) -> bytes:
    """The JSON string literals Go's folding matches to ``field_name``, every spelling."""
    chars = []
    for char in field_name:
        forms = {char.lower(), char.upper()}
        forms |= {folded for folded, ascii in (("\u017f", "s"), ("\u212a", "k")) if ascii == char}
        ascii_forms = sorted(form for form in forms if form.isascii())
        spellings = [b"[" + re.escape("".join(ascii_forms).encode()) + b"]"]
        spellings += sorted(re.escape(form.encode()) for form in forms if not form.isascii())
        spellings += sorted(rb"\\u" + _hex_digits(ord(form)) for form in forms)
        chars.append(rb"(?:" + rb"|".join(spellings) + rb")")
    return rb'"' + b"".join(chars) + rb'"'


@dataclass(frozen=True)
class _Patterns:
    """The compiled patterns for one set of fields."""

    keys: tuple[re.Pattern[bytes], ...]
    first: re.Pattern[bytes]
    run: re.Pattern[bytes]


@functools.lru_cache(maxsize=32)
def _patterns(fields: tuple[str, ...]) -> _Patterns:
    keys = [_key_pattern(name) for name in fields]
    # Per field, a member whose key folds to it: its value captured as n<i> when null,
    # else as v<i> (a capture in a repeat keeps the last one: Go's last one wins).
    value = rb"(?:" + _STRICT_STRING + rb"|" + _NOT_NULL + rb")"
    members = [
        key + _WS + rb":" + _WS + rb"(?:(?P<n%d>null)|(?P<v%d>%s))" % (i, i, value)
        for i, key in enumerate(keys)
    ]
    others = rb"(?!" + rb"|".join(keys) + rb")" if keys else b""
    members.append(others + _STRICT_STRING + _WS + rb":" + _WS + _VALUE)
    member = rb"(?:" + rb"|".join(members) + rb")"
    return _Patterns(
        keys=tuple(re.compile(key) for key in keys),
        first=re.compile(member),
        # Bounded, so that sre's stack stays small; the caller loops.
        run=re.compile(rb"(?:" + _WS + rb"," + _WS + member + rb"){0,1024}" + _WS),
    )


_NUMBER_RX = re.compile(_NUMBER)
_DIGITS = re.compile(rb"[0-9]*")
_STRICT_STRING_RX = re.compile(_STRICT_STRING)
_STRICT_CHARS = re.compile(
    rb'[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*){0,4096}'
)
_NOT_SPECIAL = re.compile(rb'[^"\[\]{}]*')
_OPENERS_RX = re.compile(rb"[\[{]+")
_CLOSERS_RX = re.compile(rb"[\]}]+")
_RUNS_RX = re.compile(rb"[\[{]+|[\]}]+")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_CLOSER_TO_OPENER = bytes.maketrans(b"]}", b"[{")
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'"[]{}')
_QUOTE, _BACKSLASH = 0x22, 0x5C
_KINDS = {ord("["): "an array", _QUOTE: "a string", ord("t"): "a boolean", ord("f"): "a boolean"}
_OPENERS, _CLOSERS = b"[{", b"]}"
_ESCAPES = b'"\\/bfnrtu'
_HEX = b"0123456789abcdefABCDEF"
# Containers are first walked exactly for this many bytes, then counted in chunks growing
# from the first size to the largest (which bounds the memory a chunk's copy takes).
_WALK_BYTES = 4096
_FIRST_CHUNK_BYTES = 64 * 1024
_LARGEST_CHUNK_BYTES = 1024 * 1024


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


def _syntax_error(c: int, context: str) -> RequestError:
    return RequestError(
        400, f"invalid JSON in request body: invalid character {_quote_char(c)} {context}"
    )


def _unexpected_eof() -> RequestError:
    return RequestError(400, "invalid JSON in request body: unexpected EOF")


class _Reader:
    """One reading of one body (not shared: it keeps the blanked copy and the results)."""

    def __init__(self, body: bytes, fields: tuple[str, ...]) -> None:
        self.body = body
        self.fields = fields
        self.patterns = _patterns(fields)
        self._blanked: bytes | None = None

    @property
    def blanked(self) -> bytes:
        """The body with escaped backslashes and quotes blanked out, offsets unchanged.

        Escapes pair from the left in a run of backslashes, as ``bytes.replace`` finds them,
        so after this every quote opens or closes a string (in JSON Go accepts).
        """
        if self._blanked is None:
            self._blanked = self.body.replace(b"\\\\", b"..").replace(b'\\"', b"..")
        return self._blanked

    # --- The first value ------------------------------------------------------------------

    def read(self) -> ObjectReading | None:
        body = self.body
        pos = _WS_RX.match(body).end()  # type: ignore[union-attr]
        if pos == len(body):
            raise _unexpected_eof()
        if body[pos] == ord("{"):
            return self._object(pos)
        self._value(pos, depth=0)  # Go reads the whole value before it looks at its type
        if body[pos] == ord("n"):
            return None  # `null`: Go leaves the request empty
        kind = _KINDS.get(body[pos], "a number")
        raise RequestError(400, f"request body must be a JSON object, not {kind}")

    def _object(self, start: int) -> ObjectReading:
        body, patterns = self.body, self.patterns
        reading = ObjectReading(start)
        pos = _WS_RX.match(body, start + 1).end()  # type: ignore[union-attr]
        if pos < len(body) and body[pos] == ord("}"):
            reading.end = pos + 1
            return reading
        reading.has_members = True
        match = patterns.first.match(body, pos)
        if match:
            self._take(match, reading)
            pos = match.end()
        else:
            pos = self._member(pos, reading)
        while True:
            match = patterns.run.match(body, pos)
            self._take(match, reading)  # type: ignore[arg-type]
            pos = match.end()  # type: ignore[union-attr]
            if pos == len(body):
                raise _unexpected_eof()
            if body[pos] == ord("}"):
                reading.end = pos + 1
                return reading
            if body[pos] != ord(","):
                raise _syntax_error(body[pos], "after object key:value pair")
            pos = self._member(_WS_RX.match(body, pos + 1).end(), reading)  # type: ignore[union-attr]

    def _take(self, match: re.Match[bytes], reading: ObjectReading) -> None:
        """Record what a run of members captured: per field, its last value and last null."""
        for index, name in enumerate(self.fields):
            start, end = match.span(f"v{index}")
            if start >= 0:
                reading.values[name] = self._member_value(start, end)
            start, end = match.span(f"n{index}")
            if start >= 0:
                reading.nulls[name] = Member(start, end, None)

    def _member(self, pos: int, reading: ObjectReading) -> int:
        """Read one member the patterns could not (a large value, or an error) by hand."""
        body = self.body
        if pos == len(body):
            raise _unexpected_eof()
        if body[pos] != _QUOTE:
            raise _syntax_error(body[pos], "looking for beginning of object key string")
        key_end = self._strict_string(pos)
        index = next(
            (i for i, key in enumerate(self.patterns.keys) if key.fullmatch(body, pos, key_end)),
            None,
        )
        pos = _WS_RX.match(body, key_end).end()  # type: ignore[union-attr]
        if pos == len(body):
            raise _unexpected_eof()
        if body[pos] != ord(":"):
            raise _syntax_error(body[pos], "after object key")
        start = _WS_RX.match(body, pos + 1).end()  # type: ignore[union-attr]
        if index is None:
            return self._value(start, depth=1)
        name = self.fields[index]
        if start < len(body) and body[start] == _QUOTE:
            end = self._strict_string(start)
        else:
            end = self._value(start, depth=1)
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

    def _value(self, pos: int, depth: int) -> int:
        """Return where the value at ``pos`` ends; ``depth`` containers enclose it."""
        body = self.body
        if pos == len(body):
            raise _unexpected_eof()
        c = body[pos]
        if c == _QUOTE:
            close = self.blanked.find(b'"', pos + 1)
            if close < 0:
                raise _unexpected_eof()
            return close + 1
        if c in _OPENERS:
            return self._container_end(pos, depth)
        if c == ord("-") or 0x30 <= c <= 0x39:
            return self._number(pos)
        for literal in (b"true", b"false", b"null"):
            if c == literal[0]:
                return self._literal(pos, literal)
        raise _syntax_error(c, "looking for beginning of value")

    def _number(self, pos: int) -> int:
        match = _NUMBER_RX.match(self.body, pos)
        if match:
            return match.end()
        body, end = self.body, len(self.body)

        def digits(at: int, context: str) -> int:
            if at == end:
                raise _unexpected_eof()
            if not 0x30 <= body[at] <= 0x39:
                raise _syntax_error(body[at], context)
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
                raise _unexpected_eof()
            if body[at] != literal[offset]:
                expecting = chr(literal[offset])
                raise _syntax_error(
                    body[at], f"in literal {literal.decode()} (expecting '{expecting}')"
                )
        return pos + len(literal)

    def _strict_string(self, pos: int) -> int:
        """Return where the string at ``pos`` ends, checked as Go's scanner checks it."""
        body = self.body
        match = _STRICT_STRING_RX.match(body, pos)
        if match:
            return match.end()
        at = pos + 1
        while True:
            after = _STRICT_CHARS.match(body, at).end()  # type: ignore[union-attr]
            if after == len(body):
                raise _unexpected_eof()
            if body[after] == _QUOTE:
                return after + 1
            if after == at or body[after] != _BACKSLASH:
                break
            at = after  # 4096 escapes taken: go on from there
        c = body[after]
        if c != _BACKSLASH:
            raise _syntax_error(c, "in string literal")
        if after + 1 == len(body):
            raise _unexpected_eof()
        if body[after + 1] not in _ESCAPES:
            raise _syntax_error(body[after + 1], "in string escape code")
        for at in range(after + 2, after + 6):
            if at == len(body):
                raise _unexpected_eof()
            if body[at] not in _HEX:
                raise _syntax_error(body[at], "in \\u hexadecimal character escape")
        raise AssertionError("unreachable: the pattern takes every valid escape")

    # --- Containers -----------------------------------------------------------------------

    def _container_end(self, start: int, depth: int) -> int:
        """Return where the container opening at ``start`` ends, its brackets checked."""
        blanked = self.blanked
        stack = bytearray(blanked[start : start + 1])
        limit = MAX_DEPTH - depth
        if limit < 1:
            raise _syntax_error(blanked[start], "exceeded max depth")
        walked_to = min(len(blanked), start + 1 + _WALK_BYTES)
        pos, ended = self._walk(start + 1, walked_to, stack, limit)
        size = _FIRST_CHUNK_BYTES
        while not ended:
            if pos >= len(blanked):
                raise _unexpected_eof()
            end = min(len(blanked), pos + size)
            after = end
            if blanked.count(b'"', pos, end) % 2:
                # The chunk would end inside a string: end it where that string starts, and
                # go on after it (a long string costs one find(), not a copy).
                end = blanked.rfind(b'"', pos, end)
                close = blanked.find(b'"', end + 1)
                after = close + 1 if close >= 0 else len(blanked)
            saved = bytes(stack)
            if self._balance(pos, end, stack, limit):
                stack[:] = saved
                pos, ended = self._locate(pos, end, stack, limit)
                if not ended:
                    pos, ended = self._walk(pos, end, stack, limit)
                    if not ended:
                        pos = after
            else:
                pos = after
            size = min(size * 2, _LARGEST_CHUNK_BYTES)
        return pos

    def _balance(self, start: int, end: int, stack: bytearray, limit: int) -> bool:
        """Apply the brackets of ``[start, end)`` to ``stack`` in bulk.

        ``start`` and ``end`` are outside strings. Return True when something happens in
        there that needs its exact place: the stack empties (the container ends), a closer
        does not match its opener, or the depth may pass ``limit``; then ``stack`` is left
        in an unknown state.
        """
        skeleton = self.blanked[start:end].translate(None, _NOT_STRUCTURE)
        quotes = skeleton.count(b'"')
        if quotes * 8 > len(skeleton):
            # Many strings: those without brackets in them (all, mostly) go in one pass.
            skeleton = skeleton.replace(b'""', b"")
            quotes = skeleton.count(b'"')
        if quotes:
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
        deepest = len(stack)
        for run in runs:
            if run[0] in _OPENERS:
                stack += run
                deepest = max(deepest, len(stack))
                continue
            if len(run) >= len(stack):
                return True
            if run.translate(_CLOSER_TO_OPENER) != stack[: -len(run) - 1 : -1]:
                return True
            del stack[-len(run) :]
        # Each pass removed pairs one level deep, and so hid at most one level of depth.
        return deepest + passes > limit

    def _locate(self, start: int, end: int, stack: bytearray, limit: int) -> tuple[int, bool]:
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
            if self._balance(start, middle, stack, limit):
                stack[:] = saved
                end = middle
            else:
                start = middle
        return self._walk(start, end, stack, limit)

    def _walk(self, pos: int, end: int, stack: bytearray, limit: int) -> tuple[int, bool]:
        """Apply the brackets from ``pos`` on, exactly, until the stack empties or ``end``.

        Return where it stopped, and whether that is because the container ended. A string
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
                    raise _unexpected_eof()
                pos = close + 1
            elif c in _OPENERS:
                run_end = _OPENERS_RX.match(blanked, pos, end).end()  # type: ignore[union-attr]
                room = limit - len(stack)
                if run_end - pos > room:
                    raise _syntax_error(blanked[pos + room], "exceeded max depth")
                stack += blanked[pos:run_end]
                pos = run_end
            else:
                run_end = _CLOSERS_RX.match(blanked, pos, end).end()  # type: ignore[union-attr]
                count = min(run_end - pos, len(stack))
                closers = blanked[pos : pos + count]
                if closers.translate(_CLOSER_TO_OPENER) != stack[: -count - 1 : -1]:
                    self._mismatch(pos, closers, stack)
                del stack[-count:]
                pos += count
                if not stack:
                    return pos, True
        return pos, False

    def _mismatch(self, pos: int, closers: bytes, stack: bytearray) -> None:
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
                raise _syntax_error(closer, context or "after array element")
            if previous in b"{,":
                raise _syntax_error(closer, "looking for beginning of object key string")
            if previous == ord(":"):
                raise _syntax_error(closer, "looking for beginning of value")
            if previous == _QUOTE:
                # A key or a value? What comes before the string's opening quote says.
                open_quote = blanked.rfind(b'"', 0, before)
                ahead = open_quote - 1
                while blanked[ahead] in b" \t\r\n":
                    ahead -= 1
                if blanked[ahead] != ord(":"):
                    raise _syntax_error(closer, "after object key")
            raise _syntax_error(closer, "after object key:value pair")
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
