"""Install ollama-default as a user would, into empty virtualenvs, and check that it works.

Issue #9: ``ollama-default serve`` failed on a fresh machine because gunicorn's gevent worker
imported ``packaging``, which only our test and docs extras happened to install, so the suite
stayed green. Here each virtualenv holds the wheel and what its metadata asks for, nothing else:

* ``pip install WHEEL``: ``DefaultModel`` wraps a WSGI app and renames the model both ways.
* ``pip install 'WHEEL[proxy]'``: ``ollama-default serve --demo`` answers a chat naming the alias
  and one naming no model, and stops cleanly on SIGTERM.

The wheel is built as a release is (``python -m build``: the sdist, then the wheel from it), so
neither a file missing from the sdist nor a stale module in ``build/`` (which ``pip wheel .``
ships, as it builds in the tree) can hide a problem.

Run by ``scripts/test``; alone: ``.venv/bin/python scripts/check_install.py``. Needs ``pip`` and
``build`` in the running Python (the test extra), uses pip's cache, exits 1 on the first failure.
Standard library only, as it also runs itself inside the bare virtualenv (``--round-trip``).
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import wsgiref.util
import wsgiref.validate
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

ROOT = Path(__file__).resolve().parent.parent
ALIAS, TARGET = "llmodel", "aya-expanse:8b-q8_0"
#: Generous for a loaded 2-core CI machine; the demo usually answers within 2 s.
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.25
# What would make a subprocess load or do something other than a fresh install would.
_DROPPED_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "GUNICORN_CMD_ARGS")
_DROPPED_PREFIXES = ("OLLAMA_DEFAULT_",)


class CheckFailed(Exception):
    """A check failed; the message says which and shows the evidence."""


def main(argv: Sequence[str]) -> int:
    """Build, install and check; return the exit status."""
    started = time.monotonic()
    try:
        if list(argv) == ["--round-trip"]:
            print(round_trip())
            return 0
        with tempfile.TemporaryDirectory(prefix="check-install-") as tmp:
            check_all(Path(tmp))
    except CheckFailed as failure:
        print(f"check_install: FAILED: {failure}", file=sys.stderr)
        return 1
    print(f"check_install: all passed in {time.monotonic() - started:.1f} s")
    return 0


def check_all(tmp: Path) -> None:
    """Every check, in order, each timed; the virtualenvs live in ``tmp``."""
    with step("build the sdist, then the wheel from it (python -m build)"):
        run([sys.executable, "-m", "build", "--outdir", str(tmp / "dist"), str(ROOT)])
        wheels = list((tmp / "dist").glob("*.whl"))
        expect(len(wheels) == 1, f"expected one wheel, found {wheels}")
        wheel = wheels[0]
        print(f"  {wheel.name}")
    with step(f"bare: pip install {wheel.name}"):
        python = make_venv(tmp / "bare", str(wheel))
    with step("bare: DefaultModel wraps a WSGI app and renames the model both ways"):
        this_file = str(Path(__file__).resolve())
        print("  " + run([str(python), "-I", this_file, "--round-trip"], cwd=tmp).strip())
    with step(f"proxy: pip install '{wheel.name}[proxy]'"):
        python = make_venv(tmp / "proxy", f"{wheel}[proxy]")
    with step("proxy: ollama-default serve --demo answers, then stops on SIGTERM"):
        check_serve(python.parent / "ollama-default", tmp / "serve.stderr")


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    """Print ``title``, run the block, and say how long it took (or that it failed)."""
    print(f"check_install: {title}", flush=True)
    started = time.monotonic()
    try:
        yield
    except CheckFailed:
        print(f"  failed after {time.monotonic() - started:.1f} s", flush=True)
        raise
    print(f"  ok, {time.monotonic() - started:.1f} s", flush=True)


def expect(condition: bool, message: str) -> None:
    """Fail the check with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CheckFailed(message)


def run(command: Sequence[str], *, cwd: Path | None = None) -> str:
    """Run ``command`` in a clean environment; return its stdout, or fail showing its output."""
    result = subprocess.run(
        command, cwd=cwd, env=clean_environment(), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise CheckFailed(
            f"{shlex.join(command)} exited with status {result.returncode}:\n"
            f"{result.stdout}{result.stderr}"
        )
    return result.stdout


def clean_environment() -> dict[str, str]:
    """This process's environment without what could make a subprocess load the checkout."""
    return {
        name: value
        for name, value in os.environ.items()
        if name not in _DROPPED_VARIABLES and not name.startswith(_DROPPED_PREFIXES)
    }


def make_venv(path: Path, requirement: str) -> Path:
    """Make a virtualenv at ``path`` holding ``requirement`` and its dependencies; its python.

    The virtualenv is made without pip, and this Python's pip installs into it
    (``pip --python``): pip, and the setuptools that ensurepip adds before Python 3.12, would
    otherwise be there to stand in for a dependency the metadata forgot.
    """
    run([sys.executable, "-m", "venv", "--without-pip", str(path)])
    python = path / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    run([*pip, "install", "--quiet", requirement])
    print("  installed: " + " ".join(run([*pip, "list", "--format=freeze"]).split()))
    return python


def round_trip() -> str:
    """A chat naming the alias through ``DefaultModel`` to an app that echoes the body.

    Runs inside the bare virtualenv (``python -I``, so the checkout is not on ``sys.path``),
    with the standard library and what the bare install brought. Returns a line for the log.
    """
    import ollama_default
    from ollama_default import DefaultModel

    installed_at = Path(ollama_default.__file__)
    if not installed_at.is_relative_to(sys.prefix):
        raise CheckFailed(f"imported {installed_at}, not the copy installed in {sys.prefix}")
    seen: list[Any] = []

    def echo(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        seen.append(json.loads(body))
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]

    # validator: PEP 3333's checks on the middleware's side of both calls, along the way.
    app = wsgiref.validate.validator(DefaultModel(echo, alias=ALIAS, target=TARGET))
    request = json.dumps(
        {"model": ALIAS, "messages": [{"role": "user", "content": "hi"}], "stream": False}
    ).encode()
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/api/chat",
        "QUERY_STRING": "",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(request)),
        "wsgi.input": io.BytesIO(request),
    }
    wsgiref.util.setup_testing_defaults(environ)
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        statuses.append(status)
        return lambda data: None

    app_iter = app(environ, start_response)
    try:
        reply = json.loads(b"".join(app_iter))
    finally:
        if hasattr(app_iter, "close"):
            app_iter.close()
    saw = seen[0]["model"] if seen else None
    if statuses != ["200 OK"] or saw != TARGET or reply.get("model") != ALIAS:
        raise CheckFailed(
            f"expected the app to see {TARGET!r} and the client to get {ALIAS!r}; "
            f"status {statuses}, the app saw {saw!r}, the client got {reply!r}"
        )
    return f"the app saw {saw!r}, the client got {reply['model']!r}, from {installed_at}"


def check_serve(command: Path, stderr_path: Path) -> None:
    """Serve the demo on a loopback port, chat with and without a model, and stop it."""
    # A listening socket on port 0, handed to gunicorn as fd://N: no port is guessed, and
    # none can be taken by someone else between choosing it and binding it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = listener.getsockname()[1]
        # One worker: the one that answers is then the only one, and booted. gunicorn loses a
        # SIGTERM that reaches a worker between its fork and its signal setup (gevent's
        # patching widens that window), and then waits graceful_timeout for it.
        serve = [str(command), "serve", "--demo", "--workers", "1"]
        serve += ["--bind", f"fd://{listener.fileno()}"]
        print(f"  {shlex.join(serve)}  (listening on 127.0.0.1:{port})")
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                serve,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=clean_environment(),
                pass_fds=(listener.fileno(),),
                start_new_session=True,  # its own process group: killed with its workers
            )
    started = time.monotonic()
    try:
        messages = [{"role": "user", "content": "hi"}]
        named = chat(port, process, stderr_path, {"model": ALIAS, "messages": messages})
        print(f"  first answer after {time.monotonic() - started:.1f} s")
        unnamed = chat(port, process, stderr_path, {"messages": messages})
        for body, models in (("naming the alias", named), ("naming no model", unnamed)):
            expect(models == {ALIAS}, f"the chat {body} got models {models}, not {{{ALIAS!r}}}")
            print(f"  POST /api/chat {body}: every record names {ALIAS!r}")
    except BaseException:
        kill(process)
        raise
    stopping = time.monotonic()
    process.terminate()
    try:
        status = process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        kill(process)
        raise CheckFailed(
            f"still running {STOP_TIMEOUT_S:g} s after SIGTERM:\n{read(stderr_path)}"
        ) from None
    print(f"  SIGTERM: exited with status {status} after {time.monotonic() - stopping:.1f} s")
    log = read(stderr_path)
    expect(status == 0, f"exit status {status} after SIGTERM, not 0:\n{log}")
    # gunicorn's gevent worker, or serve's subclass of it.
    expect(
        re.search(r"Using worker: \S*gevent", log, re.IGNORECASE) is not None,
        f"no gevent worker in its log:\n{log}",
    )
    for word in ("Traceback", "MonkeyPatchWarning"):
        expect(word not in log, f"{word} in its stderr:\n{log}")


def chat(
    port: int, process: subprocess.Popen[bytes], stderr_path: Path, request: dict[str, Any]
) -> set[str]:
    """POST ``request`` to ``/api/chat`` (streamed NDJSON); the set of models the records name.

    The socket listens before gunicorn starts, so the request waits in its backlog until a
    worker is ready: waiting for the answer is the readiness poll, bounded, and watching that
    the server is still running (a worker that cannot boot makes gunicorn exit).
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=READ_TIMEOUT_S)
    try:
        # Connection: close, or the graceful stop would wait for the idle connection.
        headers = {"Content-Type": "application/json", "Connection": "close"}
        connection.request("POST", "/api/chat", json.dumps(request), headers)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not select.select([connection.sock], [], [], POLL_INTERVAL_S)[0]:
            if process.poll() is not None:
                raise CheckFailed(
                    f"exited with status {process.returncode} before answering:\n"
                    f"{read(stderr_path)}"
                )
            if time.monotonic() > deadline:
                raise CheckFailed(f"no answer within {START_TIMEOUT_S:g} s:\n{read(stderr_path)}")
        response = connection.getresponse()
        body = response.read()
    except OSError as error:
        # A server that cannot start closes the listening socket as it exits: say if it did.
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT_S)
        state = "is running" if process.returncode is None else f"exited ({process.returncode})"
        raise CheckFailed(
            f"POST /api/chat failed ({error}); the server {state}:\n{read(stderr_path)}"
        ) from error
    finally:
        connection.close()
    expect(response.status == 200, f"POST /api/chat: {response.status} {body!r}")
    try:
        return {json.loads(line)["model"] for line in body.splitlines() if line.strip()}
    except (ValueError, KeyError, TypeError) as error:
        raise CheckFailed(f"POST /api/chat: not NDJSON records with a model: {body!r}") from error


def kill(process: subprocess.Popen[bytes]) -> None:
    """Kill the server and its workers, and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def read(path: Path) -> str:
    """The text in ``path``, whatever its encoding."""
    return path.read_text(errors="replace")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
