"""The response plan: from a response's head, how its body is rewritten. Pure: no WSGI."""

from __future__ import annotations

import pytest

from ollama_default.core.aliases import Route
from ollama_default.core.endpoints import find_endpoint
from ollama_default.core.request_body import Rename
from ollama_default.core.response_body import NameRestorer
from ollama_default.core.rewriting import (
    DocumentRewrite,
    Passthrough,
    ResponsePlan,
    StreamRewrite,
    plan_response,
)

TARGET = "aya-expanse:8b-q8_0"
SENT = b'{"model":"aya-expanse:8b-q8_0","done":false}\n'
SHOWN = b'{"model":"llmodel","done":false}\n'
FIELDS = find_endpoint("/api/generate").response_fields  # type: ignore[union-attr]


def restorer() -> NameRestorer:
    return NameRestorer([Rename("llmodel", Route.build("llmodel", TARGET))], FIELDS)


def plan(method: str, status: str, *headers: tuple[str, str], cap: int = 1000) -> ResponsePlan:
    return plan_response(method, status, list(headers), restorer(), cap)


@pytest.mark.parametrize(
    ("method", "status", "headers", "kind"),
    [
        ("POST", "200 OK", [("Content-Type", "application/x-ndjson")], StreamRewrite),
        ("POST", "200 OK", [("Content-Type", "Application/X-NDJSON")], StreamRewrite),
        ("POST", "200 OK", [("content-type", "text/event-stream; charset=utf-8")], StreamRewrite),
        ("POST", "404 Not Found", [("Content-Type", "application/json")], DocumentRewrite),
        ("POST", "200 OK", [("Content-Type", "text/plain")], Passthrough),
        ("POST", "200 OK", [], Passthrough),
        ("HEAD", "200 OK", [("Content-Type", "application/json")], Passthrough),
        ("POST", "204 No Content", [("Content-Type", "application/json")], Passthrough),
        ("POST", "304 Not Modified", [("Content-Type", "application/json")], Passthrough),
        ("POST", "200 OK", [("Content-Type", "application/x-ndjson"),
                            ("Content-Encoding", "gzip")], Passthrough),
        ("POST", "200 OK", [("Content-Type", "application/json"),
                            ("Content-Encoding", "Identity")], DocumentRewrite),
    ],
    ids=["ndjson", "ndjson-any-case", "sse", "json-error", "text", "no-type", "head", "204",
         "304", "gzip", "identity"],
)  # fmt: skip
def test_the_plan_follows_the_head(
    method: str, status: str, headers: list[tuple[str, str]], kind: type
) -> None:
    assert type(plan(method, status, *headers)) is kind


def test_a_stream_is_restored_as_it_arrives_and_loses_its_length() -> None:
    stream = plan("POST", "200 OK", ("Content-Type", "application/x-ndjson"),
                  ("Content-Length", "99"))  # fmt: skip
    assert isinstance(stream, StreamRewrite)
    assert stream.headers == [("Content-Type", "application/x-ndjson")]
    assert stream.feed(SENT[:10]) == b""  # half a record waits for its end
    assert stream.feed(SENT[10:] + SENT) == SHOWN + SHOWN
    assert stream.finish() == b""


def test_a_document_is_restored_whole_with_its_new_length() -> None:
    document = plan("POST", "200 OK", ("Content-Type", "application/json"),
                    ("Content-Length", str(len(SENT))))  # fmt: skip
    assert isinstance(document, DocumentRewrite)
    assert document.feed(SENT[:5]) == document.feed(SENT[5:]) == b""
    assert document.finish() == SHOWN
    assert document.headers == [("Content-Type", "application/json"),
                                ("Content-Length", str(len(SHOWN)))]  # fmt: skip


def test_a_document_past_the_cap_goes_out_as_it_came_with_its_own_length() -> None:
    headers = [("Content-Type", "application/json"), ("Content-Length", "60")]
    document = plan_response("POST", "200 OK", list(headers), restorer(), 40)
    assert document.feed(SENT[:30]) == b""
    assert document.feed(SENT[30:]) == SENT  # over 40 bytes: let go, held bytes first
    assert document.feed(b"more") == b"more"
    assert document.finish() == b""
    assert document.headers == headers


def test_a_passthrough_changes_nothing() -> None:
    passthrough = plan("POST", "200 OK", ("Content-Type", "text/plain"), ("Content-Length", "3"))
    assert passthrough.feed(SENT) == SENT
    assert passthrough.finish() == b""
    assert passthrough.headers == [("Content-Type", "text/plain"), ("Content-Length", "3")]


# A listing's edit: here one that marks what it was given.
def listing(document: bytes) -> bytes:
    return b"[" + document + b"]"


JSON = ("Content-Type", "application/json; charset=utf-8")


def test_a_listing_is_edited_whole_only_when_it_succeeded() -> None:
    document = plan_response("GET", "200 OK", [JSON], None, 1000, listing=listing)
    assert isinstance(document, DocumentRewrite)
    assert document.feed(b"{}") == b""
    assert document.finish() == b"[{}]"
    assert document.headers == [JSON, ("Content-Length", "4")]
    # Errors, other media types, HEAD, a stream: as they came.
    for method, status, headers in [
        ("GET", "500 Internal Server Error", [JSON]),
        ("GET", "200 OK", [("Content-Type", "text/plain")]),
        ("HEAD", "200 OK", [JSON]),
        ("GET", "200 OK", [("Content-Type", "application/x-ndjson")]),
    ]:
        assert isinstance(
            plan_response(method, status, headers, None, 1000, listing=listing), Passthrough
        )


def test_a_reply_about_an_alias_is_restored_then_edited() -> None:
    document = plan_response("POST", "200 OK", [JSON], restorer(), 1000, listing=listing)
    document.feed(SENT)
    assert document.finish() == b"[" + SHOWN + b"]"
    # An error is restored, not edited.
    error = plan_response("POST", "404 Not Found", [JSON], restorer(), 1000, listing=listing)
    error.feed(SENT)
    assert error.finish() == SHOWN


def test_a_listing_past_the_cap_goes_out_as_it_came() -> None:
    document = plan_response("GET", "200 OK", [JSON], None, 4, listing=listing)
    assert document.feed(b'{"models":[]}') == b'{"models":[]}'
    assert document.finish() == b""
    assert document.headers == [JSON]
