"""The relay: each request goes on to Ollama, and Ollama's answer streams back."""

from __future__ import annotations

from collections.abc import Iterator

import requests
from django.conf import settings
from django.http import HttpRequest, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 600  # a cold model load can take minutes before the first byte

# One pool of connections to Ollama, shared by every request.
session = requests.Session()


@csrf_exempt  # API clients send no CSRF token
def relay(request: HttpRequest) -> StreamingHttpResponse:
    """Relay the request to ``settings.OLLAMA_URL``, streaming the answer back."""
    upstream = session.request(
        request.method,
        settings.OLLAMA_URL + request.get_full_path_info(),
        data=request.body,
        # The client's Content-Type alone; add any other header to pass it on.
        headers={"Content-Type": request.headers.get("Content-Type")},
        stream=True,
        timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
    )
    return StreamingHttpResponse(
        _chunks(upstream),
        status=upstream.status_code,
        content_type=upstream.headers.get("Content-Type"),  # DefaultModel reads it
    )


def _chunks(upstream: requests.Response) -> Iterator[bytes]:
    # Django closes this generator when it closes the response, also when the client
    # leaves mid-stream; leaving the with block then closes the connection to Ollama.
    with upstream:
        yield from upstream.iter_content(chunk_size=None)  # each chunk as it arrives
