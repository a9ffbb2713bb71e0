"""Response records: show the client the model names it asked for.

Ollama echoes the request's model string verbatim in inference responses and uses
normalised or fully qualified names in some errors (``ollama-api.md`` §0, §4). A
:class:`NameRestorer` finds the fields an endpoint's table entry points at, and where one
names a target it replaces that value, and nothing else: every other byte of the record,
generated text included, is passed on as it came.

Two paths give the same bytes. The full parse walks the JSON to the listed fields and
splices new values in; the fast path recognises the common record (one ``"model"`` key,
at the top level, naming the target exactly as sent) with a few ``bytes`` searches.

Pure: bytes in, bytes out; no I/O, no WSGI.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from json.decoder import scanstring  # type: ignore[attr-defined]

from .aliases import Route
from .endpoints import Field, ResponseFields
from .framing import MAX_RECORD_BYTES, NdjsonSplitter, SseSplitter, is_single_line_event
from .names import DEFAULT_TAG, name_key, parse_name
from .request_body import Rename

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_ERROR_MESSAGE: ResponseFields = {"message": Field.ERROR}

# A JSON key that decodes to "model" is either this literal or holds an escape of one of
# its letters, and every such escape starts with this (\u006d m, \u006f o, \u0064 d,
# \u0065 e, \u006c l). Go never writes these escapes, so records rarely hold it.
_MODEL_KEY = b'"model"'
_MODEL_LETTER_ESCAPE = b"\\u006"
_ERROR_KEY = b'"error"'
# A JSON string literal, escapes and all (RFC 8259 section 7).
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


class NameRestorer:
    """Restores the names a client used in the response records of one request.

    >>> from ollama_default.aliases import Route
    >>> restorer = NameRestorer([Rename("llmodel", Route.build("llmodel", "aya:8b"))],
    ...                         {"model": Field.MODEL_NAME})
    >>> restorer.restore(b'{"model":"aya:8b","response":"aya:8b says hi"}')
    b'{"model":"llmodel","response":"aya:8b says hi"}'

    :param renames: the names the request used and the routes they took.
    :param fields: where model names sit in this endpoint's responses.
    :param fast: take the byte-level shortcut where it applies; off, every record is
        parsed (the same output, slower: the benchmark and the tests compare the two).
    """

    def __init__(
        self, renames: Sequence[Rename], fields: ResponseFields, *, fast: bool = True
    ) -> None:
        self._renames = tuple(renames)
        self._fields = fields
        # The fast path covers the one-rename case with a top-level "model" field and no
        # other model-name fields than "model" keys.
        self._fast = (
            fast and len(self._renames) == 1 and _only_model_keys(fields) and "model" in fields
        )
        first = self._renames[0]
        self._sent_member, self._shown_member = _model_members(
            first.route.target, first.client_name
        )
        self._sent_start = b"{" + self._sent_member
        self._shown_start = b"{" + self._shown_member
        self._sent_line_start = b"\n" + self._sent_start
        self._sent_next = b"," + self._sent_member
        self._shown_next = b"," + self._shown_member

    def restore(self, record: bytes) -> bytes:
        """Return one JSON document with the client's names restored.

        A record that is not a JSON object, or not UTF-8, is returned unchanged: what we
        do not understand passes through byte for byte.
        """
        # bytes.find, not "in": on CPython "in" first tries the needle as an int.
        if self._fast and record.find(_ERROR_KEY) < 0 and record.find(_MODEL_LETTER_ESCAPE) < 0:
            first = record.find(_MODEL_KEY)
            if first < 0:
                return record
            sent_start = self._sent_start
            if first == 1 and record.startswith(sent_start) and record.find(_MODEL_KEY, 2) < 0:
                return self._shown_start + record[len(sent_start) :]
        return self._restore_parsed(record)

    def restore_lines(self, lines: bytes) -> bytes | None:
        """:meth:`restore` for all the NDJSON records of ``lines`` at once, where one
        replace does it; None where it does not.

        It does where every record starts with the target's ``"model"`` member and holds no
        other ``"model"`` key, no error and no escaped letter: what Ollama streams, and what
        :meth:`restore`'s fast path changes in each record alike.
        """
        if (
            self._fast
            and lines.startswith(self._sent_start)
            and lines.count(self._sent_line_start) == lines.count(b"\n") - 1
            and lines.count(_MODEL_KEY) == lines.count(b"\n")
            and lines.find(_ERROR_KEY) < 0
            and lines.find(_MODEL_LETTER_ESCAPE) < 0
        ):
            return lines.replace(self._sent_start, self._shown_start)
        return None

    def restore_event(self, event: bytes) -> bytes:
        """Return one server-sent event with the client's names restored in its data.

        ``data: [DONE]`` and events without JSON data pass through unchanged.
        """
        if is_single_line_event(event):
            return self.restore_single_line_event(event)
        return self._restore_event_parsed(event)

    def restore_single_line_event(self, event: bytes) -> bytes:
        """:meth:`restore_event` for an event known to be one line, ``...\n\n``, no CR."""
        if self._fast and event.find(_ERROR_KEY) < 0 and event.find(_MODEL_LETTER_ESCAPE) < 0:
            first = event.find(_MODEL_KEY)
            if first < 0:
                return event
            at = first - 1  # where ',"model":"<target>"' would start
            if (
                event.startswith(self._sent_next, at)
                and event.find(_MODEL_KEY, first + 1) < 0
                and event.startswith(b"data: {")
                and self._is_top_level(event, at)
            ):
                # The member at ``at`` holds the first "model" key, so it is also the first
                # occurrence of the member: replace() splices it in one call.
                return event.replace(self._sent_next, self._shown_next, 1)
        return self._restore_event_parsed(event)

    def _is_top_level(self, event: bytes, at: int) -> bool:
        """Whether the member at ``event[at]`` (after ``data: {``) is in the outer object.

        A member preceded by ',' is a member of some object: of the outer one when no
        bracket opens before it, or none but the outer one closes after it, or, failing
        both quick tests, when the brackets before it, strings taken out, balance.
        """
        if event.find(b"{", 7, at) < 0 and event.find(b"[", 7, at) < 0:
            return True
        end, stop = at + len(self._sent_next), len(event) - 3
        if all(event.find(bracket, end, stop) < 0 for bracket in (b"{", b"[", b"}", b"]")):
            return True
        structure = _JSON_STRING.sub(b"", event[7:at])
        opened = structure.count(b"{") + structure.count(b"[")
        return opened == structure.count(b"}") + structure.count(b"]")

    def _restore_event_parsed(self, event: bytes) -> bytes:
        lines = event.splitlines(keepends=True)
        changed = False
        for index, line in enumerate(lines):
            if line.startswith(b"data:"):
                body = line.rstrip(b"\r\n")
                start = 6 if body.startswith(b"data: ") else 5
                payload = body[start:]
                restored = self._restore_parsed(payload)
                if restored is not payload:
                    lines[index] = body[:start] + restored + line[len(body) :]
                    changed = True
        return b"".join(lines) if changed else event

    def _restore_parsed(self, document: bytes) -> bytes:
        try:
            text = document.decode()
            start = _WHITESPACE.match(text).end()  # type: ignore[union-attr]
            if text[start : start + 1] != "{":
                return document
            edits: list[tuple[int, int, str]] = []
            end = self._walk_object(text, start, self._fields, edits)
            if text[_WHITESPACE.match(text, end).end() :]:  # type: ignore[union-attr]
                return document  # trailing bytes: not one JSON document
        except (ValueError, IndexError, RecursionError):
            return document
        if not edits:
            return document
        pieces = []
        position = 0
        for edit_start, edit_end, replacement in edits:
            pieces.append(text[position:edit_start])
            pieces.append(replacement)
            position = edit_end
        pieces.append(text[position:])
        return "".join(pieces).encode()

    def _walk_object(
        self, text: str, index: int, fields: ResponseFields, edits: list[tuple[int, int, str]]
    ) -> int:
        """Walk the object at ``text[index] == "{"``; return the index after it."""
        index = _skip_space(text, index + 1)
        if text[index] == "}":
            return index + 1
        while True:
            if text[index] != '"':
                raise ValueError("expected a key")
            key, index = scanstring(text, index + 1)
            index = _skip_space(text, index)
            if text[index] != ":":
                raise ValueError("expected ':'")
            index = _skip_space(text, index + 1)
            index = self._visit(text, index, fields.get(key), edits)
            index = _skip_space(text, index)
            if text[index] == ",":
                index = _skip_space(text, index + 1)
            elif text[index] == "}":
                return index + 1
            else:
                raise ValueError("expected ',' or '}'")

    def _visit(
        self,
        text: str,
        index: int,
        field: ResponseFields | Field | None,
        edits: list[tuple[int, int, str]],
    ) -> int:
        """Visit the value at ``index``; return the index after it."""
        opener = text[index]
        if isinstance(field, Mapping) and opener == "{":
            return self._walk_object(text, index, field, edits)
        if field is Field.ERROR and opener == "{":
            return self._walk_object(text, index, _ERROR_MESSAGE, edits)
        if isinstance(field, Field) and opener == '"':
            value, string_end = scanstring(text, index + 1)
            if field is Field.MODEL_NAME:
                replacement = self._shown_name(value)
            else:
                replacement = self._shown_message(text[index:string_end])
            if replacement is not None:
                edits.append((index, string_end, replacement))
            return int(string_end)
        return int(_DECODER.raw_decode(text, index)[1])

    def _shown_name(self, value: str) -> str | None:
        key = name_key(value)
        for rename in self._renames:
            if key in rename.route.target_keys:
                return json.dumps(rename.client_name, ensure_ascii=False)
        return None

    def _shown_message(self, literal: str) -> str | None:
        """Rewrite names inside a JSON string literal, leaving its escapes as they are."""
        # Model names hold no character JSON escapes, so they appear in the literal as is.
        changed = literal
        for rename in self._renames:
            shown = json.dumps(rename.client_name, ensure_ascii=False)[1:-1]
            changed = _error_pattern(rename.route).sub(_Replacement(shown), changed)
        return changed if changed != literal else None


class StreamRestorer:
    """Restores names in a streamed body: framing, then :class:`NameRestorer` per record.

    ``feed`` returns at once everything the bytes fed complete, so a stream keeps its
    pace; an unfinished record waits for its end (at most ``max_record_bytes``).

    :param restorer: the request's name restorer.
    :param media_type: ``application/x-ndjson`` or ``text/event-stream``.
    """

    def __init__(
        self, restorer: NameRestorer, media_type: str, max_record_bytes: int = MAX_RECORD_BYTES
    ) -> None:
        self._splitter: NdjsonSplitter | SseSplitter
        self._restore: Callable[[bytes], bytes]
        self._restore_whole: Callable[[bytes], bytes]
        self._restorer = restorer
        self._lines: NdjsonSplitter | None = None  # the splitter, for NDJSON
        if media_type == "text/event-stream":
            self._splitter = SseSplitter(max_record_bytes)
            self._restore = restorer.restore_event
            self._restore_whole = restorer.restore_single_line_event
        else:
            self._splitter = self._lines = NdjsonSplitter(max_record_bytes)
            self._restore = self._restore_whole = restorer.restore

    def feed(self, data: bytes) -> bytes:
        """Return the restored records that ``data`` completes (maybe ``b""``)."""
        if self._splitter.is_one_record(data):  # as Ollama flushes: one record a chunk
            return self._restore_whole(data)
        if self._lines is not None and self._lines.is_whole_records(data):
            # Several records read at once, when the proxy has fallen behind a stream.
            restored = self._restorer.restore_lines(data)
            if restored is not None:
                return restored
        restore = self._restore
        # memoryview pieces belong to an oversized record: relayed unparsed.
        return b"".join([restore(p) if type(p) is bytes else p for p in self._splitter.feed(data)])

    def finish(self) -> bytes:
        """Return the restored last record, for a stream that ends without a delimiter."""
        rest = self._splitter.flush()
        return self._restore(rest) if rest else b""


STREAM_MEDIA_TYPES = frozenset({"application/x-ndjson", "text/event-stream"})


class _Replacement:
    """``re.sub`` replacement: keep the quote before the name, put ``shown`` for it."""

    def __init__(self, shown: str) -> None:
        self.shown = shown

    def __call__(self, match: re.Match[str]) -> str:
        return match[1] + self.shown


def _skip_space(text: str, index: int) -> int:
    return _WHITESPACE.match(text, index).end()  # type: ignore[union-attr]


@functools.lru_cache(maxsize=1024)
def _model_members(target: str, client_name: str) -> tuple[bytes, bytes]:
    """``"model":"<target>"`` as Go writes it, and the same member naming the client's name.

    Cached: each request needs the pair, and a server sees the same few names.
    """
    sent = json.dumps(target).encode()
    shown = json.dumps(client_name, ensure_ascii=False).encode()
    return b'"model":' + sent, b'"model":' + shown


def _only_model_keys(fields: ResponseFields) -> bool:
    for key, value in fields.items():
        if isinstance(value, Field):
            if value is Field.MODEL_NAME and key != "model":
                return False
        elif not _only_model_keys(value):
            return False
    return True


@functools.lru_cache(maxsize=1024)
def _error_pattern(route: Route) -> re.Pattern[str]:
    """Match the target in an error message's JSON literal, in every spelling Ollama uses.

    Ollama's messages quote names (``model 'x' not found``, ``model "x" not found``) or
    start with one (``registry.ollama.ai/library/x:latest does not support tools``), so a
    name only counts there, never as a word inside other text.
    """
    spellings = {route.target.strip()}
    for key in route.target_keys:
        parsed = parse_name(key)
        if parsed is not None:
            shortest = parsed.display_shortest()
            spellings.update({parsed.fully_qualified(), shortest})
            if parsed.tag == DEFAULT_TAG:
                spellings.add(shortest.rsplit(":", 1)[0])
    alternatives = "|".join(re.escape(s) for s in sorted(spellings, key=len, reverse=True))
    return re.compile(rf"""(\A"|'|\\")(?:{alternatives})(?='|\\"| )""", re.IGNORECASE)
