"""Transcriptions: the model is decided where Go's FormValue reads it, the query or the form."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from fake_ollama import FakeOllama
from webtest import TestApp
from werkzeug.test import encode_multipart

from ollama_default import DefaultModel
from ollama_default.core.aliases import AliasTable
from ollama_default.core.endpoints import Endpoint, find_endpoint
from ollama_default.core.errors import RequestError
from ollama_default.core.goform import (
    FormError,
    parse_media_type,
    query_unescape,
    quoted_printable,
    read_form,
)
from ollama_default.core.multipart import decide_multipart, decide_query

ALIASES = AliasTable(
    {"llmodel": "aya-expanse:8b-q8_0", "embed": "nomic-embed-text:latest"}, default="llmodel"
)
TARGET = "aya-expanse:8b-q8_0"
CONTENT_TYPE = "multipart/form-data; boundary=b"


def transcription() -> Endpoint:
    endpoint = find_endpoint("/v1/audio/transcriptions")
    assert endpoint is not None
    return endpoint


def form(*parts: bytes, newline: bytes = b"\r\n") -> bytes:
    """A body of ``parts`` (each its headers, a blank line and its value) with boundary b."""
    body = b"".join(b"--b" + newline + part + newline for part in parts)
    return body + b"--b--" + newline


def value(name: bytes, data: bytes, extra: bytes = b"") -> bytes:
    return b'Content-Disposition: form-data; name="' + name + b'"' + extra + b"\r\n\r\n" + data


def form_value(body: bytes, name: bytes = b"model") -> bytes | None:
    """The first value Go reads under ``name``, by the module's own reader."""
    parsed = read_form(body, b"b")
    for part in parsed.parts:
        if part.name == name and not part.is_file:
            return body[part.content : part.end]
    return None


def decide(body: bytes, content_type: str = CONTENT_TYPE) -> tuple[bytes | None, list[str]]:
    decision = decide_multipart(body, content_type, transcription(), ALIASES)
    return decision.body, [rename.client_name for rename in decision.renames]


def test_a_form_field_alias_becomes_its_target_and_nothing_else_changes() -> None:
    boundary, body = encode_multipart({"model": "llmodel", "language": "en"})
    content_type = f"multipart/form-data; boundary={boundary}"
    sent, names = decide(body, content_type)
    assert sent == body.replace(b"\r\n\r\nllmodel\r\n", f"\r\n\r\n{TARGET}\r\n".encode())
    assert names == ["llmodel"]


def test_a_form_without_a_model_gets_the_default_as_a_value_go_reads() -> None:
    body = form(value(b"language", b"en"), value(b"file", b"RIFF", b'; filename="a.wav"'))
    sent, names = decide(body)
    assert sent is not None
    assert form_value(sent) == TARGET.encode()
    assert form_value(sent, b"language") == b"en"
    assert sent.startswith(body[: body.index(b"--b--")])  # the parts before, byte for byte
    assert names == ["llmodel"]


def test_an_empty_form_gets_the_default() -> None:
    sent, _ = decide(b"--b--\r\n")
    assert sent is not None
    assert form_value(sent) == TARGET.encode()


def test_a_real_model_leaves_the_body_alone() -> None:
    decision = decide_multipart(form(value(b"model", b"whisper")), CONTENT_TYPE,
                                transcription(), ALIASES)  # fmt: skip
    assert (decision.body, decision.renames, decision.model) == (None, (), "whisper")


def test_an_empty_filename_is_a_value_to_go() -> None:
    # mime/multipart: a part is a file only when its filename is not empty. werkzeug
    # calls it a file, and the proxy used to skip it: the client's own model ran.
    body = form(value(b"model", b"llmodel", b'; filename=""'))
    sent, names = decide(body)
    assert sent is not None and form_value(sent) == TARGET.encode()
    assert names == ["llmodel"]


def test_a_file_named_model_is_not_the_model() -> None:
    body = form(value(b"model", b"llmodel", b'; filename="m.txt"'), value(b"model", b"whisper"))
    decision = decide_multipart(body, CONTENT_TYPE, transcription(), ALIASES)
    assert decision.model == "whisper"
    assert decision.body is None


def test_only_the_first_model_value_counts() -> None:
    body = form(value(b"model", b"whisper"), value(b"model", b"llmodel"))
    assert decide(body) == (None, [])


@pytest.mark.parametrize(
    "content_type",
    [
        "Multipart/Form-Data; boundary=b",
        "MULTIPART/FORM-DATA; BOUNDARY=b",
        'multipart/form-data ;  boundary="b"',
        "multipart/form-data; boundary*=utf-8''b",
        "multipart/form-data; boundary=b;",
    ],
    ids=["mixed-case", "upper-case", "quoted", "rfc2231", "trailing-semicolon"],
)
def test_media_types_and_parameter_names_are_read_as_go_reads_them(content_type: str) -> None:
    sent, names = decide(form(value(b"model", b"llmodel")), content_type)
    assert sent is not None and names == ["llmodel"]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "multipart/form-data",  # no boundary
        "multipart/form-data; boundary=b; boundary=c",  # duplicate: Go refuses it
        "multipart/mixed; boundary=b",
    ],
)
def test_what_go_does_not_read_as_a_form_goes_on_untouched(content_type: str) -> None:
    assert decide(form(value(b"model", b"llmodel")), content_type) == (None, [])


@pytest.mark.parametrize(
    ("disposition", "decided"),
    [
        (b'Content-Disposition: form-data; name="model"', True),
        (b"content-disposition: FORM-DATA; NAME=model", True),
        (b"Content-Disposition: form-data; name*=UTF-8''model", True),
        (b'Content-Disposition: form-data;\r\n name="model"', True),  # a continued line
        (b'Content-Disposition: attachment; name="model"', False),  # not form-data
        (b'Content-Disposition: form-data; name="Model"', False),  # names are exact
        (b'Content-Disposition : form-data; name="model"', False),  # a key Go never finds
        (b'Content-Disposition: form-data; name="model"; name="x"', False),  # duplicate
    ],
)
def test_part_headers_are_read_as_go_reads_them(disposition: bytes, decided: bool) -> None:
    body = form(disposition + b"\r\n\r\nllmodel", value(b"model", b"whisper"))
    decision = decide_multipart(body, CONTENT_TYPE, transcription(), ALIASES)
    assert decision.model == (TARGET if decided else "whisper")


def test_a_body_written_with_bare_line_feeds_is_read_and_kept_so() -> None:
    body = form(value(b"model", b"llmodel").replace(b"\r\n", b"\n"), newline=b"\n")
    sent, _ = decide(body)
    assert sent == body.replace(b"llmodel", TARGET.encode())
    sent, _ = decide(form(value(b"x", b"1").replace(b"\r\n", b"\n"), newline=b"\n"))
    assert sent is not None and b"\r" not in sent and form_value(sent) == TARGET.encode()


def test_a_quoted_printable_value_is_decoded_and_replaced_plainly() -> None:
    part = value(b"model", b"llmo=64el")
    part = part.replace(b"\r\n\r\n", b"\r\nContent-Transfer-Encoding: Quoted-Printable\r\n\r\n")
    sent, names = decide(form(part))
    assert names == ["llmodel"]
    assert sent is not None and form_value(sent) == TARGET.encode()
    assert b"Quoted-Printable" not in sent


def test_a_boundary_inside_a_value_does_not_end_it_unless_go_says_so() -> None:
    body = form(value(b"model", b"llmodel\r\n--bX"), value(b"model", b"x"))
    assert form_value(body) == b"llmodel\r\n--bX"
    assert decide(body) == (None, [])  # "llmodel\r\n--bX" is no alias


def test_a_part_without_a_name_is_skipped_as_go_skips_it() -> None:
    body = form(b'Content-Disposition: form-data; name=""\r\n\r\nx', value(b"model", b"llmodel"))
    sent, names = decide(body)
    assert names == ["llmodel"] and sent is not None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (form(value(b"model", b"llmodel"))[:-10], "unexpected EOF"),
        (b"--b\r\n" + value(b"model", b"llmodel"), "unexpected EOF"),
        (b"--b\r\nno colon here\r\n\r\nx\r\n--b--\r\n", "missing colon"),
        (b"--b\r\n Content-Disposition: x\r\n\r\nx\r\n--b--\r\n", "initial line"),
        (b"--b\r\nX-A: \x01\r\n\r\nx\r\n--b--\r\n", "malformed MIME header line"),
        (form(value(b"model", b"x")).replace(b"\r\n--b--", b"\r\n--b junk"), "expecting a new"),
        (b"x" * 5000 + b"\r\n--b--\r\n", "buffer full"),
        (form(*[b"\r\nx"] * 1001), "message too large"),
    ],
    ids=["cut", "no-closing", "no-colon", "leading-space", "control", "junk", "long", "parts"],
)
def test_a_body_go_cannot_read_is_a_400(body: bytes, message: str) -> None:
    with pytest.raises(RequestError) as raised:
        decide(body)
    assert raised.value.status == 400
    assert message in raised.value.message


def test_an_empty_boundary_is_refused_as_go_refuses_it() -> None:
    with pytest.raises(RequestError, match="boundary is empty"):
        decide(b"----\r\n", 'multipart/form-data; boundary=""')


# The query string: Go's FormValue reads it before the form.


def query(text: str) -> tuple[str | None, list[str], str | None] | None:
    decided = decide_query(text, transcription(), ALIASES)
    if decided is None:
        return None
    names = [rename.client_name for rename in decided.decision.renames]
    return decided.query, names, decided.decision.model


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model=llmodel", ("model=aya-expanse:8b-q8_0", ["llmodel"], TARGET)),
        ("a=1&model=LLModel&model=x", ("a=1&model=aya-expanse:8b-q8_0&model=x", ["LLModel"],
                                       TARGET)),
        ("mod%65l=llmodel", ("model=aya-expanse:8b-q8_0", ["llmodel"], TARGET)),
        ("model=ll%6Dodel", ("model=aya-expanse:8b-q8_0", ["llmodel"], TARGET)),
        ("model=", ("model=aya-expanse:8b-q8_0", ["llmodel"], TARGET)),  # blank: the default
        ("model", ("model=aya-expanse:8b-q8_0", ["llmodel"], TARGET)),
        ("model=whisper", (None, [], "whisper")),
        ("language=en", "no model"),
        ("", "no model"),
        ("model=llmodel;x=1", (None, [], None)),  # Go refuses the query: Ollama says 400
        ("x=%zz&model=llmodel", (None, [], None)),
    ],
    ids=["alias", "first-of-several", "escaped-key", "escaped-value", "empty", "bare", "real",
         "none", "nothing", "semicolon", "bad-escape"],
)  # fmt: skip
def test_a_model_in_the_query_decides(text: str, expected: object) -> None:
    if expected == "no model":
        assert query(text) is None
    else:
        assert query(text) == expected


def test_query_escapes_are_read_as_go_reads_them() -> None:
    assert query_unescape(b"a+b%2Fc") == b"a b/c"
    with pytest.raises(FormError):
        query_unescape(b"%4")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"form-data; name=model", ("form-data", {"name": b"model"})),
        (b'form-data; name="a\\"b"', ("form-data", {"name": b'a"b'})),
        (b'form-data; filename="C:\\dir\\f"', ("form-data", {"filename": b"C:\\dir\\f"})),
        (b"form-data; name*0=mo; name*1=del", ("form-data", {"name": b"model"})),
        (b"form-data; name*=x-unknown''model", ("form-data", {})),
        (b"form-data; name=a b", None),
        (b"a/b/c", None),
        (b"mult\xc4\xb0part/form-data; boundary=x", ("multipart/form-data", {"boundary": b"x"})),
    ],
    ids=["token", "escape", "msie-path", "continued", "bad-charset", "junk", "two-slashes",
         "dotted-capital-i"],
)  # fmt: skip
def test_media_types_are_parsed_as_go_parses_them(
    header: bytes, expected: tuple[str, dict[str, bytes]] | None
) -> None:
    assert parse_media_type(header) == expected


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        (b"llmo=64el", b"llmodel"),
        (b"ll=\r\nmodel", b"llmodel"),  # a soft line break
        (b"a=zz", b"a=zz"),  # Go takes a bad escape as a literal "="
        (b"a  \r\nb", b"a\r\nb"),  # trailing white space dropped
    ],
)
def test_quoted_printable_is_decoded_as_go_decodes_it(encoded: bytes, decoded: bytes) -> None:
    assert quoted_printable(encoded) == decoded


def test_bad_quoted_printable_is_an_error() -> None:
    with pytest.raises(FormError):
        quoted_printable(b"a\x01b")


# Through DefaultModel, over the fake Ollama (which reads the model as Go's FormValue does).


def test_a_model_in_the_query_beats_the_form_and_is_rewritten_there() -> None:
    fake = FakeOllama()
    app = TestApp(DefaultModel(fake, mapping=ALIASES), lint=True)
    response = app.post(
        "/v1/audio/transcriptions?model=llmodel&language=en",
        {"model": "whisper"},
        upload_files=[("file", "hello.wav", b"RIFF....WAVE")],
    )
    sent = fake.requests[-1]
    assert sent.query == f"model={TARGET}&language=en"
    assert b"\r\n\r\nwhisper\r\n" in sent.body  # the form as sent: Ollama never reads it
    assert response.headers["X-Ollama-Default-Target"] == TARGET
    assert response.json == {"text": f"I am {TARGET}"}


def test_the_raw_request_target_follows_the_new_query() -> None:
    seen: list[dict[str, Any]] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append(dict(environ))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"text":"hi"}']

    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/v1/audio/transcriptions",
        "QUERY_STRING": "model=llmodel",
        "RAW_URI": "/v1/audio%2Ftranscriptions?model=llmodel",
        "CONTENT_LENGTH": "10",
        "wsgi.input": Unreadable(),
    }
    body = DefaultModel(app, mapping=ALIASES)(environ, lambda *args: None)
    assert b"".join(body) == b'{"text":"hi"}'
    assert seen[0]["QUERY_STRING"] == f"model={TARGET}"
    assert seen[0]["RAW_URI"] == f"/v1/audio%2Ftranscriptions?model={TARGET}"


class Unreadable(io.BytesIO):
    """A body that must not be read: the query decided."""

    def read(self, *args: Any) -> bytes:
        raise AssertionError("the body was read")
