"""Push parsers that cut a byte stream into records, however the network split it.

``feed(bytes) -> records``: each call returns the records completed by the bytes fed,
holding back only an unfinished one, so nothing waits for more than the current line or
event. A record that grows past ``max_record_bytes`` without ending is given up on: what
was held is returned at once as a ``memoryview`` (relay it, do not parse it), and so is
the rest of that record as it arrives.

Pure: bytes in, bytes out; no I/O, no WSGI.
"""

from __future__ import annotations

import re

MAX_RECORD_BYTES = 16 * 1024 * 1024

#: A record, or (as ``memoryview``) a piece of an oversized one to relay as it is.
Piece = bytes | memoryview


class _Splitter:
    """Shared buffering; subclasses say where records end."""

    def __init__(self, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self.max_record_bytes = max_record_bytes
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._oversized = False

    def is_one_record(self, data: bytes) -> bool:
        """Whether ``data`` is exactly one whole record, with nothing held before it."""
        raise NotImplementedError

    def feed(self, data: bytes) -> list[Piece]:
        """Return the records that ``data`` completes, in order."""
        if self.is_one_record(data):
            return [data]
        pieces: list[Piece] = []
        if self._oversized:
            end = self._end_of_first(data)
            if end < 0:
                return [memoryview(data)]
            self._oversized = False
            pieces.append(memoryview(data)[:end])
            data = data[end:]
        if self._held:
            if not self._may_end(data):
                return self._hold(data, pieces)
            self._held.append(data)
            data = b"".join(self._held)
            self._held.clear()
            self._held_bytes = 0
        records, consumed = self._complete_records(data)
        pieces.extend(records)
        if consumed < len(data):
            self._hold(data[consumed:], pieces)
        return pieces

    def flush(self) -> bytes:
        """Return what is held at the end of the stream: an unfinished last record."""
        rest = b"".join(self._held)
        self._held.clear()
        self._held_bytes = 0
        return rest

    def _hold(self, data: bytes, pieces: list[Piece]) -> list[Piece]:
        self._held.append(data)
        self._held_bytes += len(data)
        if self._held_bytes > self.max_record_bytes:
            pieces.append(memoryview(self.flush()))
            self._oversized = True
        return pieces

    def _may_end(self, data: bytes) -> bool:
        raise NotImplementedError

    def _end_of_first(self, data: bytes) -> int:
        raise NotImplementedError

    def _complete_records(self, data: bytes) -> tuple[list[bytes], int]:
        """Return the whole records at the start of ``data``, and how many bytes they take."""
        raise NotImplementedError


_LINE = re.compile(rb"[^\n]*\n")


class NdjsonSplitter(_Splitter):
    """Cuts ``application/x-ndjson`` into lines, each with its ``\\n``."""

    def is_one_record(self, data: bytes) -> bool:
        return not self._held and not self._oversized and data.find(b"\n") == len(data) - 1

    def is_whole_records(self, data: bytes) -> bool:
        """Whether ``data`` is whole lines, with nothing held before it: the records
        :meth:`feed` would return are its lines, and nothing would be held after."""
        return not self._held and not self._oversized and data.endswith(b"\n")

    def _may_end(self, data: bytes) -> bool:
        return b"\n" in data

    def _end_of_first(self, data: bytes) -> int:
        end = data.find(b"\n")
        return end + 1 if end >= 0 else -1

    def _complete_records(self, data: bytes) -> tuple[list[bytes], int]:
        consumed = data.rfind(b"\n") + 1
        return _LINE.findall(data, 0, consumed), consumed


# An event ends at a blank line: two line ends in a row, a line end being CRLF, LF or CR
# (the SSE spec, "Interpreting an event stream"). A CR at the very end of the data is
# taken as a line end at once: should an LF follow, it starts the next piece as an empty
# line, which dispatches nothing, and the bytes relayed are the same.
_EVENT_END = re.compile(rb"(?:\r\n|\n|\r(?!\n))(?:\r\n|\n|\r(?!\n))")


def is_single_line_event(data: bytes) -> bool:
    """Whether ``data`` is one line and the blank line ending it (``data: ...\\n\\n``)."""
    return data.find(b"\n") == len(data) - 2 and data.endswith(b"\n") and data.find(b"\r") < 0


class SseSplitter(_Splitter):
    """Cuts ``text/event-stream`` into events, each with its closing blank line."""

    def is_one_record(self, data: bytes) -> bool:
        # Only single-line events qualify: that is what Ollama sends, and it is cheap to
        # tell; any other event takes the general path.
        return not self._held and not self._oversized and is_single_line_event(data)

    def _may_end(self, data: bytes) -> bool:
        return b"\n" in data or b"\r" in data

    def _end_of_first(self, data: bytes) -> int:
        match = _EVENT_END.search(data)
        return match.end() if match else -1

    def _complete_records(self, data: bytes) -> tuple[list[bytes], int]:
        records = []
        start = 0
        for match in _EVENT_END.finditer(data):
            end = match.end()
            records.append(data[start:end])
            start = end
        return records, start
