"""Errors in each client family's own words: whole bodies, and the record that ends a
stream cut short."""

from __future__ import annotations

import json

import pytest

from ollama_default.core.dialects import Dialect, cut_stream_record, error_body


@pytest.mark.parametrize(
    ("dialect", "status", "expected"),
    [
        (Dialect.OLLAMA, 404, {"error": "no"}),
        (Dialect.OPENAI, 404, {"error": {"message": "no", "type": "not_found_error",
                                         "param": None, "code": None}}),
        (Dialect.OPENAI, 502, {"error": {"message": "no", "type": "api_error",
                                         "param": None, "code": None}}),
        (Dialect.ANTHROPIC, 429, {"type": "error",
                                  "error": {"type": "rate_limit_error", "message": "no"}}),
        (Dialect.ANTHROPIC, 502, {"type": "error",
                                  "error": {"type": "api_error", "message": "no"}}),
    ],
    ids=["ollama", "openai-404", "openai-502", "anthropic-429", "anthropic-502"],
)  # fmt: skip
def test_an_error_body_is_in_the_clients_dialect(
    dialect: Dialect, status: int, expected: object
) -> None:
    assert json.loads(error_body(dialect, status, "no")) == expected


def test_a_cut_ndjson_stream_ends_with_an_error_line_after_a_line_end() -> None:
    assert (
        cut_stream_record(Dialect.OLLAMA, "application/x-ndjson", 502, "gone", at_line_start=False)
        == b'\n{"error":"gone"}\n'
    )


def test_a_cut_anthropic_stream_ends_with_a_named_error_event() -> None:
    record = cut_stream_record(
        Dialect.ANTHROPIC, "text/event-stream", 502, "gone", at_line_start=True
    )
    assert record.startswith(b"\nevent: error\ndata: ")
    data = json.loads(record.split(b"data: ", 1)[1])
    assert data == {"type": "error", "error": {"type": "api_error", "message": "gone"}}


def test_a_cut_openai_stream_ends_with_a_data_event_holding_the_error() -> None:
    record = cut_stream_record(Dialect.OPENAI, "text/event-stream", 504, "gone", at_line_start=True)
    assert record.startswith(b"\ndata: {") and b"event:" not in record
    assert json.loads(record[7:])["error"]["message"] == "gone"


def test_a_stream_of_unknown_framing_gets_no_record() -> None:
    assert cut_stream_record(Dialect.OLLAMA, "text/plain", 502, "x", at_line_start=True) == b""
