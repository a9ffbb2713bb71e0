"""A real gunicorn in a subprocess, for tests that need the proxy as users run it.

The test process binds the listening socket on port 0 and hands it to gunicorn as
``--bind fd://N``, so no port is ever guessed and no bind can collide. Readiness is a
bounded poll for an answer to ``OPTIONS *`` (which the proxy refuses itself, without the
upstream); stderr goes to a file, read for assertions after any request.

Usage::

    with run_gunicorn({"OLLAMA_DEFAULT_UPSTREAM": url}, log_dir=tmp_path) as proxy:
        requests.get(f"{proxy.base_url}/api/tags", timeout=5)
    assert "Traceback" not in proxy.stderr()
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

APP = "ollama_default.proxy:app"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
#: The readiness probe: an asterisk-form request (RFC 9112 section 3.2.4) the proxy answers
#: itself, without the upstream (its path does not start with "/"), and gunicorn logs nothing.
PROBE = b"OPTIONS * HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"
# Settings the shell might hold that would change what gunicorn or the proxy does.
_INHERITED_PREFIXES = ("OLLAMA_DEFAULT_", "GUNICORN_")
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


class GunicornProcess:
    """A running gunicorn, listening on ``base_url``, its stderr kept in ``stderr_path``.

    ``settings`` are the variables it was started with, on top of a cleaned environment.
    """

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        port: int,
        stderr_path: Path,
        settings: Mapping[str, str],
    ) -> None:
        self.process = process
        self.port = port
        self.stderr_path = stderr_path
        self.settings = dict(settings)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        """Everything gunicorn has written to stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def log_line(self, needle: str, timeout_s: float = STOP_TIMEOUT_S) -> str:
        """The first line of stderr holding ``needle``, polled for up to ``timeout_s``: the
        access log writes a line once the response has gone out, so a client may have its
        answer before the line is there."""
        deadline = time.monotonic() + timeout_s
        while True:
            for line in self.stderr().splitlines():
                if needle in line:
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"no line with {needle!r} in:\n{self.stderr()}")
            time.sleep(0.02)

    def wait_until_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Return once a worker answers; fail with gunicorn's stderr if it exits or stalls."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"gunicorn exited with status {self.process.returncode}:\n{self.stderr()}"
                )
            if self._answers_probe(wait_s=0.25):
                return
        raise RuntimeError(f"gunicorn did not answer within {timeout_s:g} s:\n{self.stderr()}")

    def _answers_probe(self, wait_s: float) -> bool:
        # The listening socket exists before gunicorn starts, so a connection alone proves
        # nothing; an answer means a worker has loaded the app and is accepting.
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=wait_s) as probe:
                probe.sendall(PROBE)
                readable, _, _ = select.select([probe], [], [], wait_s)
                return bool(readable) and probe.recv(16).startswith(b"HTTP/1.")
        except OSError:
            return False

    def wait_for_exit(self, timeout_s: float) -> int:
        """Return the exit status, killing gunicorn if it is still running after ``timeout_s``."""
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            raise

    def stop(self) -> int:
        """Stop gunicorn (SIGTERM, then SIGKILL after ``STOP_TIMEOUT_S``) and reap it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                # Its own session (see start_gunicorn): the workers go with the master.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT_S)
        return self.process.returncode


def child_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without our settings or HTTP proxies, plus ``settings``."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_INHERITED_PREFIXES) and name.lower() not in _PROXY_VARIABLES
    }
    environment.update(settings)
    return environment


def start_gunicorn(
    settings: Mapping[str, str],
    *,
    log_dir: Path,
    options: Sequence[str] = (),
    app: str = APP,
) -> GunicornProcess:
    """Start ``gunicorn app`` with ``settings`` in its environment; do not wait for it."""
    gunicorn = [sys.executable, "-m", "gunicorn", "--no-control-socket", *options, app]
    return start_server(gunicorn, settings, log_dir=log_dir)


def start_server(
    command: Sequence[str], settings: Mapping[str, str], *, log_dir: Path
) -> GunicornProcess:
    """Start ``command --bind fd://N`` (gunicorn or ``ollama-default serve``); do not wait."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)
        port = listener.getsockname()[1]
        stderr_path = log_dir / f"gunicorn-{port}.stderr"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [*command, "--bind", f"fd://{listener.fileno()}"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=child_environment(settings),
                pass_fds=(listener.fileno(),),
                start_new_session=True,
            )
    # gunicorn holds the listening socket now; this process's copy is closed above.
    return GunicornProcess(process, port, stderr_path, settings)


@contextlib.contextmanager
def run_gunicorn(
    settings: Mapping[str, str],
    *,
    log_dir: Path,
    options: Sequence[str] = (),
    app: str = APP,
) -> Iterator[GunicornProcess]:
    """Run gunicorn until the block ends; yield it once a worker answers."""
    server = start_gunicorn(settings, log_dir=log_dir, options=options, app=app)
    try:
        server.wait_until_ready()
        yield server
    finally:
        server.stop()
