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

import json
import re
from collections.abc import Callable, Mapping, Sequence
from json.decoder import scanstring  # type: ignore[attr-defined]

from .endpoints import Field, ResponseFields
from .framing import MAX_RECORD_BYTES, NdjsonSplitter, SseSplitter
from .model_names import DEFAULT_TAG, name_key, parse_name
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
        self._error_patterns = tuple(_error_pattern(rename) for rename in self._renames)
        # The fast path covers the one-rename case with a top-level "model" field and no
        # other model-name fields than "model" keys.
        self._fast = (
            fast and len(self._renames) == 1 and _only_model_keys(fields) and "model" in fields
        )
        first = self._renames[0]
        sent = json.dumps(first.route.target).encode()
        shown = json.dumps(first.client_name, ensure_ascii=False).encode()
        self._sent_member = b'"model":' + sent
        self._shown_member = b'"model":' + shown
        self._sent_start = b"{" + self._sent_member
        self._shown_start = b"{" + self._shown_member
        self._sent_next = b"," + self._sent_member
        self._shown_next = b"," + self._shown_member

    def restore(self, record: bytes) -> bytes:
        """Return one JSON document with the client's names restored.

        A record that is not a JSON object, or not UTF-8, is returned unchanged: what we
        do not understand passes through byte for byte.
        """
        if self._fast and _ERROR_KEY not in record and _MODEL_LETTER_ESCAPE not in record:
            count = record.count(_MODEL_KEY)
            if count == 0:
                return record
            if count == 1 and record.startswith(self._sent_start):
                return self._shown_start + record[len(self._sent_start) :]
        return self._restore_parsed(record)

    def restore_event(self, event: bytes) -> bytes:
        """Return one server-sent event with the client's names restored in its data.

        ``data: [DONE]`` and events without JSON data pass through unchanged.
        """
        if self._fast and _ERROR_KEY not in event and _MODEL_LETTER_ESCAPE not in event:
            count = event.count(_MODEL_KEY)
            if count == 0:
                return event
            if count == 1:
                restored = self._restore_openai_chunk(event)
                if restored is not None:
                    return restored
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

    def _restore_openai_chunk(self, event: bytes) -> bytes | None:
        """The fast path for ``data: {...,"model":"x",...}\\n\\n`` (OpenAI chunks)."""
        if not (event.startswith(b"data: {") and event.endswith(b"\n\n")):
            return None
        if event.find(b"\n") != len(event) - 2 or b"\r" in event:
            return None  # more than one line: take the full parse
        at = event.find(self._sent_next)
        if at < 0:
            return None
        end = at + len(self._sent_next)
        # A key preceded by ',' is a key of some object; it is a top-level one if no
        # bracket opens before it or none but the document's own closes after it.
        before, after = event[7:at], event[end:-3]
        top_level = (b"{" not in before and b"[" not in before) or not (
            b"{" in after or b"[" in after or b"}" in after or b"]" in after
        )
        if not top_level:
            return None
        return event[:at] + self._shown_next + event[end:]

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
        for rename, pattern in zip(self._renames, self._error_patterns, strict=True):
            shown = json.dumps(rename.client_name, ensure_ascii=False)[1:-1]
            changed = pattern.sub(_Replacement(shown), changed)
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
        if media_type == "text/event-stream":
            self._splitter = SseSplitter(max_record_bytes)
            self._restore = restorer.restore_event
        else:
            self._splitter = NdjsonSplitter(max_record_bytes)
            self._restore = restorer.restore

    def feed(self, data: bytes) -> bytes:
        """Return the restored records that ``data`` completes (maybe ``b""``)."""
        pieces = self._splitter.feed(data)
        restore = self._restore
        if len(pieces) == 1:
            piece = pieces[0]
            return restore(piece) if type(piece) is bytes else bytes(piece)
        # memoryview pieces belong to an oversized record: relayed unparsed.
        return b"".join([restore(p) if type(p) is bytes else p for p in pieces])

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


def _only_model_keys(fields: ResponseFields) -> bool:
    for key, value in fields.items():
        if isinstance(value, Mapping):
            if not _only_model_keys(value):
                return False
        elif value is Field.MODEL_NAME and key != "model":
            return False
    return True


def _error_pattern(rename: Rename) -> re.Pattern[str]:
    """Match the target in an error message's JSON literal, in every spelling Ollama uses.

    Ollama's messages quote names (``model 'x' not found``, ``model "x" not found``) or
    start with one (``registry.ollama.ai/library/x:latest does not support tools``), so a
    name only counts there, never as a word inside other text.
    """
    spellings = {rename.route.target.strip()}
    for key in rename.route.target_keys:
        parsed = parse_name(key)
        if parsed is not None:
            shortest = parsed.display_shortest()
            spellings.update({parsed.fully_qualified(), shortest})
            if parsed.tag == DEFAULT_TAG:
                spellings.add(shortest.rsplit(":", 1)[0])
    alternatives = "|".join(re.escape(s) for s in sorted(spellings, key=len, reverse=True))
    return re.compile(rf"""(\A"|'|\\")(?:{alternatives})(?='|\\"| )""", re.IGNORECASE)
