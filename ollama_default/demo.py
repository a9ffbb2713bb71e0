"""A built-in Ollama-compatible demo backend, and a walk-through of the middleware.

The backend answers a few endpoints the way Ollama does (it echoes the model it was
asked for, streams NDJSON and SSE) so the middleware can be seen at work without an
Ollama server or model weights. Run ``python -m ollama_default.demo`` for the
walk-through: each exchange shows what the client sent, what the backend saw, and what
the client got back.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from werkzeug.test import Client

from .middleware import DefaultModel

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

DEMO_MODELS = ("aya-expanse:8b-q8_0", "nomic-embed-text:latest")
_NATIVE_JSON = "application/json; charset=utf-8"


def demo_backend(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """A tiny stand-in for Ollama: it knows :data:`DEMO_MODELS` and answers in kind."""
    path = environ.get("PATH_INFO", "")
    if path in ("/api/tags", "/v1/models"):
        if path == "/api/tags":
            models: Any = {"models": [{"name": m, "model": m} for m in DEMO_MODELS]}
        else:
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "library"}
                    for m in DEMO_MODELS]  # fmt: skip
            models = {"object": "list", "data": data}
        return _reply(start_response, "200 OK", _NATIVE_JSON, _encode(models))
    if path == "/":
        return _reply(start_response, "200 OK", "text/plain; charset=utf-8", b"Ollama is running")
    if path not in ("/api/chat", "/api/generate", "/v1/chat/completions"):
        return _reply(start_response, "404 Not Found", "text/plain", b"404 page not found")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    request = json.loads(environ["wsgi.input"].read(length) or b"{}")
    model = request.get("model", "")
    if model not in DEMO_MODELS:
        error = {"error": f"model '{model}' not found"}
        return _reply(start_response, "404 Not Found", _NATIVE_JSON, _encode(error))
    words = ["Hello", " from", f" {model}", "!"]
    if path == "/v1/chat/completions":
        return _openai_chat(start_response, model, words, stream=request.get("stream", False))
    native_stream = request.get("stream", True)
    key = "message" if path == "/api/chat" else "response"
    records = [_native_record(model, key, word, done=False) for word in words]
    records.append({**_native_record(model, key, "", done=True), "done_reason": "stop"})
    if not native_stream:
        whole = {**_native_record(model, key, "".join(words), done=True), "done_reason": "stop"}
        return _reply(start_response, "200 OK", _NATIVE_JSON, _encode(whole))
    start_response("200 OK", [("Content-Type", "application/x-ndjson")])
    return (_encode(record) + b"\n" for record in records)


def _native_record(model: str, key: str, text: str, *, done: bool) -> dict[str, Any]:
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    value: Any = {"role": "assistant", "content": text} if key == "message" else text
    return {"model": model, "created_at": created, key: value, "done": done}


def _openai_chat(
    start_response: StartResponse, model: str, words: list[str], *, stream: bool
) -> Iterable[bytes]:
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": int(time.time())}
    if not stream:
        message = {"role": "assistant", "content": "".join(words)}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        body = {**head, "object": "chat.completion", "model": model, "choices": [choice]}
        return _reply(start_response, "200 OK", "application/json", _encode(body))

    def events() -> Iterator[bytes]:
        for word in words:
            choice = {"index": 0, "delta": {"content": word}, "finish_reason": None}
            yield b"data: " + _encode({**head, "model": model, "choices": [choice]}) + b"\n\n"
        yield b"data: [DONE]\n\n"

    start_response("200 OK", [("Content-Type", "text/event-stream")])
    return events()


def _encode(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _reply(
    start_response: StartResponse, status: str, content_type: str, body: bytes
) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def walk_through() -> None:
    """Print a few exchanges through ``DefaultModel`` in front of the demo backend."""
    seen: list[bytes] = []

    def recording_backend(environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        seen.append(body)
        environ["wsgi.input"] = io.BytesIO(body)
        return demo_backend(environ, start_response)

    app = DefaultModel(recording_backend, alias="llmodel", target="aya-expanse:8b-q8_0")
    client = Client(app)
    print('DefaultModel(app, alias="llmodel", target="aya-expanse:8b-q8_0")\n')
    for path, body in (
        ("/api/chat", {"model": "llmodel", "messages": [{"role": "user", "content": "Hi"}]}),
        ("/api/generate", {"prompt": "Hi", "stream": False}),
        ("/v1/chat/completions", {"model": "llmodel", "stream": True, "messages": []}),
    ):
        sent = json.dumps(body).encode()
        response = client.post(path, data=sent)
        print(f"POST {path}")
        print(f"  client sent:    {sent.decode()}")
        print(f"  backend saw:    {seen[-1].decode()}")
        lines = response.get_data().decode().strip().splitlines()
        print("  client got:     " + "\n                  ".join(line for line in lines if line))
        print()


if __name__ == "__main__":
    walk_through()
