"""Request ``Content-Encoding``: decide on the body Ollama reads, or refuse the request.

Ollama decodes one request coding, zstd, and only in two places (commit fb30760):

- ``cloudPassthroughMiddleware`` (``server/cloud_proxy.go:74-92``), which
  ``server/routes.go:1916-1926`` puts before ``/v1/chat/completions``,
  ``/v1/completions``, ``/v1/embeddings``, ``/v1/responses`` and ``/v1/messages`` (not
  ``/v1/audio/transcriptions``, ``/v1/models`` or any ``/api/`` route), for every POST,
  whatever the model;
- ``ResponsesMiddleware`` (``middleware/openai.go:1154-1166``), on ``/v1/responses`` again.

Both test ``c.GetHeader("Content-Encoding") == "zstd"``: the header's *first* value,
exactly, case and all. Then they zstd-decode the body (at most 20 MiB,
``maxDecompressedBodySize``), delete the header and read the JSON decoded. Any other value
(``gzip``, ``ZSTD``, ``identity``, an empty one, ``zstd`` as a second value) is ignored,
and so is the header on every other route: the raw bytes are read as JSON
(``ShouldBindJSON``), so a gzip body is Ollama's 400 ``invalid character ...``.

So the proxy decides on the raw bytes in every case but one. On those five routes a first
value ``zstd`` means Ollama reads a body the proxy cannot (zstd is not in the standard
library before Python 3.14, and no dependency of ours): refused with 415, in the client's
dialect, before the body is read. A WSGI server joins repeated headers with commas, so
``zstd`` followed by more values may have been two header lines (Ollama decodes it) or one
(Ollama does not): refused too, as the proxy cannot tell which body Ollama would read.

Pure: no I/O, no WSGI.
"""

from __future__ import annotations

from .endpoints import Endpoint
from .errors import RequestError

#: What a client is told when it sends a body Ollama would zstd-decode.
ZSTD_REFUSED = "zstd request bodies are not supported by this proxy: send the body uncompressed"


def check_content_encoding(endpoint: Endpoint, content_encoding: str | None) -> None:
    """Refuse a request whose body Ollama would decode before reading it.

    :param content_encoding: the request's ``Content-Encoding`` as the WSGI server gives
        it (repeated headers joined with commas), or None.
    :raises RequestError: 415 for a body Ollama would zstd-decode on ``endpoint``.
    """
    if not content_encoding or not endpoint.decodes_zstd:
        return
    first = content_encoding.split(",", 1)[0].strip(" \t")
    if first == "zstd":
        raise RequestError(415, ZSTD_REFUSED)
