"""How Go's ``net/http`` reads a form: the query string, then a ``multipart/form-data`` body.

Ollama takes the transcription model with ``Request.FormValue("model")``
(``middleware/openai.go`` ``TranscriptionMiddleware``, at commit fb30760), after
``ParseMultipartForm``. ``FormValue`` returns the first value in ``Request.Form``, where
``ParseForm`` puts the query's values first and ``ParseMultipartForm`` appends the body's
after them (``net/http/request.go``; its doc: "query parameters (always)" before
"multipart/form-data form body (always)"). So a ``?model=`` in the URL beats any form
field, and the proxy must read both as Go does, or it decides a model Ollama never runs.

This module reads them as these Go packages do, where it matters for finding the model
and for refusing what Ollama refuses:

- ``net/url.ParseQuery``: pairs split on ``&`` only; a ``;`` in a pair, or a bad ``%``
  escape, is an error (which ``ParseMultipartForm`` returns, so Ollama answers 400);
- ``mime.ParseMediaType``: case-insensitive type and parameter names, quoted strings
  with Go's escapes, RFC 2231 extended and continued parameters, duplicates an error;
- ``mime/multipart.Reader``: delimiter lines with trailing white space, bodies with bare
  ``\\n`` lines, the 4096-byte line buffer, a part body ending at the first
  ``\\r\\n--boundary`` followed by white space, ``--`` or the end;
- ``net/textproto``: part headers, continuation lines, the characters a header allows;
- ``mime/multipart.Reader.ReadForm``: a part without a ``form-data`` name is skipped, one
  whose ``filename`` is empty (or absent) is a value, not a file; at most 1000 parts;
- ``mime/quotedprintable``: a value part with ``Content-Transfer-Encoding:
  quoted-printable`` is decoded.

Pure: bytes and text in, offsets and values out; no I/O, no WSGI.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

#: mime/multipart: the bufio reader's size; a line longer than this is an error.
PEEK_BUFFER_BYTES = 4096
#: mime/multipart ReadForm: more parts than this is ErrMessageTooLarge.
MAX_PARTS = 1000

_TSPECIALS = frozenset('()<>@,;:\\"/[]?=')
_HEX = frozenset(b"0123456789abcdefABCDEF")
# net/textproto validHeaderFieldByte: RFC 7230 token characters.
_HEADER_KEY_BYTES = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_LWSP = b" \t"
# Bytes a query value may hold as they are; ":" and "/" keep model names readable.
_QUERY_SAFE = frozenset(b"-._~:/@0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class FormError(ValueError):
    """A form Go's ``net/http`` cannot read: ``ParseMultipartForm`` fails, Ollama says 400."""


# --------------------------------------------------------------------------------------
# The query string (net/url)


def query_values(query: bytes) -> list[tuple[bytes, bytes, int, int]]:
    """Return the query's pairs as ``url.ParseQuery`` reads them: (key, value, start, end),
    the last two the pair's offsets in ``query``, in order.

    :raises FormError: for a pair with ``;`` or a bad ``%`` escape: Go returns an error
        for the whole query (and still reads the other pairs, but Ollama refuses it).
    """
    pairs: list[tuple[bytes, bytes, int, int]] = []
    start = 0
    for piece in query.split(b"&"):
        end = start + len(piece)
        if b";" in piece:
            raise FormError("invalid semicolon separator in query")
        if piece:
            key, _, value = piece.partition(b"=")
            pairs.append((query_unescape(key), query_unescape(value), start, end))
        start = end + 1
    return pairs


def query_unescape(text: bytes) -> bytes:
    """Return ``text`` decoded as ``url.QueryUnescape`` does: ``%XX`` bytes, ``+`` spaces.

    :raises FormError: for a ``%`` not followed by two hex digits.
    """
    if b"%" not in text:
        return text.replace(b"+", b" ")
    out = bytearray()
    i = 0
    while i < len(text):
        byte = text[i]
        if byte == 0x25:  # %
            if i + 2 >= len(text) or text[i + 1] not in _HEX or text[i + 2] not in _HEX:
                raise FormError(f"invalid URL escape {text[i : i + 3].decode('latin-1')!r}")
            out.append(int(text[i + 1 : i + 3], 16))
            i += 3
            continue
        out.append(0x20 if byte == 0x2B else byte)
        i += 1
    return bytes(out)


def query_escape(value: str) -> str:
    """Return ``value`` escaped for a query, as Go's ``url.QueryUnescape`` reads it back."""
    return "".join(chr(byte) if byte in _QUERY_SAFE else f"%{byte:02X}" for byte in value.encode())


# --------------------------------------------------------------------------------------
# Media types and their parameters (mime)


def parse_media_type(value: bytes) -> tuple[str, dict[str, bytes]] | None:
    """Return (type, parameters) as ``mime.ParseMediaType`` reads them, or None where Go
    returns an error.

    The type and the parameter names are lower case; values are raw bytes (Go strings).
    """
    text = value.decode("utf-8", "surrogateescape")
    base = text.split(";", 1)[0]
    media_type = _trim_space(_go_lower(base))
    if not _is_media_type(media_type):
        return None
    params: dict[str, str] = {}
    continued: dict[str, dict[str, str]] = {}
    rest = text[len(base) :]
    while rest:
        rest = _trim_left_space(rest)
        if not rest:
            break
        key, found, after = _consume_media_param(rest)
        if not key:
            if _trim_space(after) == ";":
                break  # a trailing semicolon is no error
            return None
        base_name, star, _ = key.partition("*")
        into = continued.setdefault(base_name, {}) if star else params
        if key in into and into[key] != found:
            return None  # "mime: duplicate parameter name"
        into[key] = found
        rest = after
    for name, pieces in continued.items():
        if name + "*" in pieces:
            decoded = _decode_2231(pieces[name + "*"])
            if decoded is not None:
                params[name] = decoded
            continue
        joined: list[str] = []
        valid = False
        for n in range(len(pieces) + 1):
            if f"{name}*{n}" in pieces:
                joined.append(pieces[f"{name}*{n}"])
            elif f"{name}*{n}*" in pieces:
                piece = pieces[f"{name}*{n}*"]
                joined.append((_decode_2231(piece) or "") if n == 0 else _unescape_2231(piece))
            else:
                break
            valid = True
        if valid:
            params[name] = "".join(joined)
    return media_type, {key: _go_bytes(found) for key, found in params.items()}


def _go_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _go_lower(text: str) -> str:
    # Go's strings.ToLower maps each rune alone: U+0130 to "i", where Python's full case
    # mapping gives two characters.
    return text.replace("\u0130", "i").lower()


def _is_space(char: str) -> bool:
    # Go's unicode.IsSpace: not Python's isspace(), which also counts U+001C..U+001F.
    return char in "\t\n\v\f\r \x85\xa0" or unicodedata.category(char) in ("Zs", "Zl", "Zp")


def _trim_left_space(text: str) -> str:
    i = 0
    while i < len(text) and _is_space(text[i]):
        i += 1
    return text[i:]


def _trim_space(text: str) -> str:
    text = _trim_left_space(text)
    end = len(text)
    while end and _is_space(text[end - 1]):
        end -= 1
    return text[:end]


def _is_token_char(char: str) -> bool:
    return "\x20" < char < "\x7f" and char not in _TSPECIALS


def _consume_token(text: str) -> tuple[str, str]:
    i = 0
    while i < len(text) and _is_token_char(text[i]):
        i += 1
    return text[:i], text[i:]


def _is_media_type(media_type: str) -> bool:
    # mime checkMediaTypeDisposition: a token, or token/token.
    kind, rest = _consume_token(media_type)
    if not kind:
        return False
    if not rest:
        return True
    if not rest.startswith("/"):
        return False
    subtype, rest = _consume_token(rest[1:])
    return bool(subtype) and not rest


def _consume_value(text: str) -> tuple[str, str]:
    if not text:
        return "", ""
    if text[0] != '"':
        return _consume_token(text)
    value: list[str] = []
    i = 1
    while i < len(text):
        char = text[i]
        if char == '"':
            return "".join(value), text[i + 1 :]
        # Go takes a backslash before anything but a tspecial as a literal backslash
        # (MSIE's unescaped paths).
        if char == "\\" and i + 1 < len(text) and text[i + 1] in _TSPECIALS:
            value.append(text[i + 1])
            i += 2
            continue
        if char in "\r\n":
            return "", text
        value.append(char)
        i += 1
    return "", text  # no closing quote


def _consume_media_param(text: str) -> tuple[str, str, str]:
    rest = _trim_left_space(text)
    if not rest.startswith(";"):
        return "", "", text
    rest = _trim_left_space(rest[1:])
    name, rest = _consume_token(rest)
    name = name.lower()
    if not name:
        return "", "", text
    rest = _trim_left_space(rest)
    if not rest.startswith("="):
        return "", "", text
    rest = _trim_left_space(rest[1:])
    value, after = _consume_value(rest)
    if not value and after == rest:
        return "", "", text
    return name, value, after


def _decode_2231(value: str) -> str | None:
    charset, quote, rest = value.partition("'")
    if not quote:
        return None
    _language, quote, encoded = rest.partition("'")
    if not quote or charset.lower() not in ("us-ascii", "utf-8"):
        return None
    try:
        return _unescape_2231(encoded, strict=True)
    except ValueError:
        return None


def _unescape_2231(value: str, *, strict: bool = False) -> str:
    """Percent-decode an RFC 2231 value; Go ignores a bad escape after the first piece."""
    raw = _go_bytes(value)
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x25:
            if i + 2 >= len(raw) or raw[i + 1] not in _HEX or raw[i + 2] not in _HEX:
                if strict:
                    raise ValueError("bogus characters after %")
                return ""
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return bytes(out).decode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------------------
# The multipart body (mime/multipart, net/textproto, mime/quotedprintable)


@dataclass(frozen=True)
class Part:
    """One part of a multipart body, where it sits, and what Go makes of its headers."""

    #: Where its headers start (after its delimiter line) and its content ends.
    start: int
    end: int
    #: Where its content starts.
    content: int
    #: The ``name`` of a ``form-data`` Content-Disposition ("" otherwise: Go skips it).
    name: bytes
    #: Whether Go reads it as a file: a non-empty ``filename``.
    is_file: bool
    #: Whether Go decodes its content as quoted-printable.
    quoted_printable: bool


@dataclass(frozen=True)
class Form:
    """A multipart body as Go reads it: its parts, and how to write more of them."""

    parts: tuple[Part, ...]
    #: Where the closing delimiter line (``--boundary--``) starts: a new part goes here.
    closing: int
    #: The line ending Go settled on: ``\\r\\n``, or ``\\n`` for a body written so.
    newline: bytes


def read_form(body: bytes, boundary: bytes) -> Form:
    """Read ``body`` as ``multipart.Reader.ReadForm`` reads it with ``boundary``.

    :raises FormError: where Go's reader returns an error (Ollama answers 400).
    """
    return _FormReader(body, boundary).read()


class _FormReader:
    def __init__(self, body: bytes, boundary: bytes) -> None:
        self.body = body
        self.newline = b"\r\n"
        self.dash_boundary = b"--" + boundary
        self.dash_boundary_dash = self.dash_boundary + b"--"
        self.parts_read = 0
        self.pos = 0
        self.closing = 0

    @property
    def nl_dash_boundary(self) -> bytes:
        return self.newline + self.dash_boundary

    def read(self) -> Form:
        if self.dash_boundary == b"--":
            raise FormError("multipart: boundary is empty")
        parts: list[Part] = []
        while True:
            part = self._next_part()
            if part is None:
                return Form(tuple(parts), self.closing, self.newline)
            if len(parts) >= MAX_PARTS:
                raise FormError("multipart: message too large")
            parts.append(part)

    def _line(self) -> tuple[bytes, bool]:
        """bufio.Reader.ReadSlice('\\n'): the next line, and whether the body ended first."""
        end = self.body.find(b"\n", self.pos, self.pos + PEEK_BUFFER_BYTES)
        if end < 0:
            if len(self.body) - self.pos >= PEEK_BUFFER_BYTES:
                raise FormError("multipart: NextPart: bufio: buffer full")
            line, self.pos = self.body[self.pos :], len(self.body)
            return line, True
        line, self.pos = self.body[self.pos : end + 1], end + 1
        return line, False

    def _is_final_boundary(self, line: bytes) -> bool:
        if not line.startswith(self.dash_boundary_dash):
            return False
        rest = line[len(self.dash_boundary_dash) :].lstrip(_LWSP)
        return not rest or rest == self.newline

    def _is_delimiter(self, line: bytes) -> bool:
        if not line.startswith(self.dash_boundary):
            return False
        rest = line[len(self.dash_boundary) :].lstrip(_LWSP)
        if self.parts_read == 0 and rest == b"\n":
            self.newline = b"\n"  # a body written with bare LF: Go follows it
        return rest == self.newline

    def _next_part(self) -> Part | None:
        expect_new_part = False
        while True:
            self.closing = self.pos
            line, at_end = self._line()
            if at_end:
                if self._is_final_boundary(line):
                    return None
                raise FormError("multipart: NextPart: EOF")
            if self._is_delimiter(line):
                self.parts_read += 1
                return self._part()
            if self._is_final_boundary(line):
                return None
            if expect_new_part:
                raise FormError(f"multipart: expecting a new Part; got line {line!r}")
            if self.parts_read == 0:
                continue  # the preamble
            if line == self.newline:
                expect_new_part = True
                continue
            raise FormError(f"multipart: unexpected line in Next(): {line!r}")

    def _part(self) -> Part:
        start = self.pos
        headers = self._headers()
        content = self.pos
        end = self._content_end(content)
        self.pos = end
        disposition = _first(headers, "content-disposition")
        parsed = parse_media_type(disposition) if disposition is not None else None
        name, filename = b"", b""
        if parsed is not None and parsed[0] == "form-data":
            name = parsed[1].get("name", b"")
        if parsed is not None:
            filename = parsed[1].get("filename", b"")
        encoding = _first(headers, "content-transfer-encoding") or b""
        return Part(
            start, end, content, name, bool(filename), encoding.lower() == b"quoted-printable"
        )

    def _headers(self) -> list[tuple[bytes, bytes]]:
        """net/textproto readMIMEHeader: (lower-case key, or b"" for one Go never matches,
        value) in order."""
        body = self.body
        if body[self.pos : self.pos + 1] in (b" ", b"\t"):
            raise FormError("malformed MIME header initial line")
        headers: list[tuple[bytes, bytes]] = []
        while True:
            line = self._header_line()
            if not line:
                return headers
            if b":" not in line:
                raise FormError(f"malformed MIME header: missing colon: {line!r}")
            while body[self.pos : self.pos + 1] in (b" ", b"\t"):  # continuation lines
                while body[self.pos : self.pos + 1] in (b" ", b"\t"):
                    self.pos += 1
                line += b" " + self._header_line()
            key, _, value = line.partition(b":")
            if not key or any(byte not in _HEADER_KEY_BYTES and byte != 0x20 for byte in key):
                raise FormError(f"malformed MIME header line: {line!r}")
            if any((byte < 0x20 and byte != 0x09) or byte == 0x7F for byte in value):
                raise FormError(f"malformed MIME header line: {line!r}")
            # A key with a space is kept as it is, not canonicalised: no lookup finds it.
            headers.append((b"" if b" " in key else key.lower(), value.lstrip(_LWSP)))

    def _header_line(self) -> bytes:
        """textproto readLineSlice, trimmed: the line without its end; an error at the end."""
        if self.pos >= len(self.body):
            raise FormError("multipart: unexpected EOF in part headers")
        end = self.body.find(b"\n", self.pos)
        if end < 0:
            line, self.pos = self.body[self.pos :], len(self.body)
        else:
            line, self.pos = self.body[self.pos : end], end + 1
            line = line.removesuffix(b"\r")
        return line.strip(b" \t\r\n")

    def _content_end(self, content: int) -> int:
        """Where the part's content ends: partReader's scanUntilBoundary on a whole body."""
        scan = content
        if self.body.startswith(self.dash_boundary, content):
            # An empty part written without the line break before the next boundary.
            if self._boundary_follows(content + len(self.dash_boundary)):
                return content
            scan = content + len(self.dash_boundary)
        while True:
            found = self.body.find(self.nl_dash_boundary, scan)
            if found < 0:
                raise FormError("unexpected EOF")  # io.ErrUnexpectedEOF: no closing boundary
            if self._boundary_follows(found + len(self.nl_dash_boundary)):
                return found
            scan = found + len(self.nl_dash_boundary)

    def _boundary_follows(self, at: int) -> bool:
        """matchAfterPrefix: the boundary ends here (white space, ``--`` or the end)."""
        body = self.body
        if at >= len(body):
            return True
        if body[at] in b" \t\r\n":
            return True
        return body[at : at + 2] == b"--"


def _first(headers: list[tuple[bytes, bytes]], key: str) -> bytes | None:
    wanted = key.encode()
    return next((value for name, value in headers if name == wanted), None)


def quoted_printable(data: bytes) -> bytes:
    """Decode ``data`` as Go's ``quotedprintable.Reader`` does (lenient as it is).

    :raises FormError: where Go's reader returns an error.
    """
    out = bytearray()
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos, pos + PEEK_BUFFER_BYTES)
        if end < 0 and len(data) - pos >= PEEK_BUFFER_BYTES:
            raise FormError("bufio: buffer full")
        whole = data[pos:] if end < 0 else data[pos : end + 1]
        at_end = end < 0
        pos += len(whole)
        line = whole.rstrip(b" \t\r\n")
        if line.endswith(b"="):  # a soft line break
            after = whole[len(line) :]
            line = line[:-1]
            if not after.startswith((b"\n", b"\r\n")) and not (not after and line and at_end):
                raise FormError(f"quotedprintable: invalid bytes after =: {after!r}")
        elif whole.endswith(b"\n"):
            line += b"\r\n" if whole.endswith(b"\r\n") else b"\n"
        i = 0
        while i < len(line):
            byte = line[i]
            if byte == 0x3D:  # =
                pair = line[i + 1 : i + 3]
                if len(pair) == 2 and all(b in _HEX for b in pair):
                    out.append(int(pair, 16))
                    i += 3
                    continue
                if len(line) - i < 2 or line[i + 1] in b"\r\n":
                    raise FormError("quotedprintable: invalid hex byte")
            elif (byte < 0x20 and byte not in b"\t\r\n") or byte == 0x7F:
                raise FormError(f"quotedprintable: invalid unescaped byte {byte:#04x} in body")
            out.append(byte)
            i += 1
    return bytes(out)
