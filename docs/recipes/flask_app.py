"""A Flask service in front of Ollama, with an alias and a default model.

Every request is relayed to the Ollama server named by ``OLLAMA_URL``, and its answer
streams back record by record. Run it with ``flask --app flask_app run``, or in
production with ``gunicorn --worker-class gevent 'flask_app:create_app()'``.
"""

from __future__ import annotations

import os

import requests
from flask import Flask, Response, request

from ollama_default import DefaultModel

METHODS = ["GET", "HEAD", "POST", "DELETE"]  # every method Ollama's API uses
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 600  # a cold model load can take minutes before the first byte

# One pool of connections to Ollama, shared by every request.
session = requests.Session()


def create_app() -> Flask:
    """Build the app for the Ollama server named by ``OLLAMA_URL`` now."""
    app = Flask(__name__)
    ollama_url = os.environ.get("OLLAMA_URL", "http://127.0.0.1:11434").rstrip("/")

    @app.route("/", methods=METHODS)
    @app.route("/<path:path>", methods=METHODS)
    def relay(path: str = "") -> Response:
        upstream = session.request(
            request.method,
            ollama_url + request.path,
            params=request.query_string.decode(),
            data=request.get_data(),
            # The client's Content-Type alone; add any other header to pass it on.
            headers={"Content-Type": request.headers.get("Content-Type")},
            stream=True,
            timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
        )
        response = Response(
            upstream.iter_content(chunk_size=None),  # each chunk as it arrives
            status=upstream.status_code,
            content_type=upstream.headers.get("Content-Type"),  # DefaultModel reads it
        )
        # Also called when the client leaves mid-stream.
        response.call_on_close(upstream.close)
        return response

    target = "aya-expanse:8b-q8_0"  # the real model; change it at any time
    app.wsgi_app = DefaultModel(app.wsgi_app, alias="llmodel", target=target)
    return app
