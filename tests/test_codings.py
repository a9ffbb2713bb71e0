"""Content-Encoding: the proxy decides on the body Ollama reads, or refuses the request."""

from __future__ import annotations

import pytest

from ollama_default.core.codings import ZSTD_REFUSED, check_content_encoding
from ollama_default.core.endpoints import ENDPOINTS, find_endpoint
from ollama_default.core.errors import RequestError

#: server/routes.go:1916-1926: the routes cloudPassthroughMiddleware runs on.
ZSTD_ROUTES = {
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses",
    "/v1/messages",
}  # fmt: skip


def refuses(path: str, content_encoding: str | None) -> bool:
    endpoint = find_endpoint(path)
    assert endpoint is not None
    try:
        check_content_encoding(endpoint, content_encoding)
    except RequestError as error:
        assert (error.status, error.message) == (415, ZSTD_REFUSED)
        return True
    return False


def test_exactly_the_routes_ollama_zstd_decodes_on_say_so() -> None:
    assert {e.path for e in ENDPOINTS if e.decodes_zstd} == ZSTD_ROUTES


@pytest.mark.parametrize(
    ("content_encoding", "refused"),
    [
        ("zstd", True),
        ("zstd,gzip", True),  # two header lines, joined: Go's GetHeader is "zstd"
        ("zstd, gzip", True),  # or one: the proxy cannot tell, and refuses both
        ("ZSTD", False),  # Go compares exactly: Ollama reads the raw bytes
        ("gzip", False),
        ("gzip,zstd", False),
        ("identity", False),
        ("identity,identity", False),
        ("", False),
        (None, False),
    ],
)
@pytest.mark.parametrize("path", sorted(ZSTD_ROUTES))
def test_a_first_value_zstd_is_refused_where_ollama_decodes_it(
    path: str, content_encoding: str | None, refused: bool
) -> None:
    assert refuses(path, content_encoding) is refused


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate", "/v1/audio/transcriptions"])
def test_zstd_is_decided_raw_where_ollama_ignores_the_header(path: str) -> None:
    assert not refuses(path, "zstd")
