"""CPU per request of the proxy's composed app, in process: no sockets, no server.

A small chat to an alias through :func:`~ollama_default.proxy.compose.build_app` in front of
a backend that answers at once, so what is measured is the package's own work per request
(the mounts, the access rules, the decision, the response plan). The access log is off
unless ``--access-log``: its cost is logging's. Run from the repository root::

    .venv/bin/python benchmarks/request.py
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Iterable
from typing import Any

from ollama_default.proxy.compose import build_app
from ollama_default.proxy.config import Settings

BODY = b'{"model":"llmodel","messages":[{"role":"user","content":"hi"}],"stream":false}'
REPLY = (
    b'{"model":"aya-expanse:8b-q8_0","message":{"role":"assistant","content":"hello"},"done":true}'
)


def backend(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    environ["wsgi.input"].read()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(REPLY)))]
    start_response("200 OK", headers)
    return [REPLY]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000, help="per round")
    parser.add_argument("--rounds", type=int, default=5, help="the best is printed")
    parser.add_argument("--access-log", action="store_true", help="to /dev/null")
    args = parser.parse_args()
    settings = Settings(
        aliases={"llmodel": "aya-expanse:8b-q8_0"},
        access_log=args.access_log,
        log_file="/dev/null",
    )
    if args.access_log:
        from ollama_default.proxy.logs import configure_logging

        configure_logging(settings)
    app = build_app(settings, backend)

    def call() -> None:
        environ = {
            "REQUEST_METHOD": "POST", "PATH_INFO": "/api/chat", "SCRIPT_NAME": "",
            "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(BODY)),
            "wsgi.input": io.BytesIO(BODY), "wsgi.input_terminated": True,
            "REMOTE_ADDR": "127.0.0.1", "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http", "SERVER_NAME": "localhost", "SERVER_PORT": "8080",
        }  # fmt: skip
        app_iter = app(environ, lambda status, headers, exc_info=None: None)
        b"".join(app_iter)
        getattr(app_iter, "close", lambda: None)()

    best = min(_timed(call, args.requests) for _ in range(args.rounds))
    log = "on" if args.access_log else "off"
    print(f"small chat to an alias, access log {log}: {best * 1e6:.1f} us per request")


def _timed(call: Any, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        call()
    return (time.perf_counter() - started) / count


if __name__ == "__main__":
    main()
