"""The operator's calls to the upstream: which models it has (``/api/tags``), which are
loaded (``/api/ps``), load one (warm), unload one.

Over ``requests``: these are a few calls per switch, never on a client's request path, so
its cost does not matter and its handling of URLs, TLS and proxies does. Each call runs on
a connection of its own: Ollama aborts a load when the client that asked for it goes away
(server/sched.go: a pending request whose context is done is skipped), so a load must
never ride on a client's connection.

``requests`` is imported when a call is made, not with the module: ``serve``'s gevent
workers patch ``ssl`` after the fork, and urllib3 imported before it would hold the
unpatched one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.names import name_key
from .forwarder import without_userinfo

if TYPE_CHECKING:
    import requests

#: How long a listing may take.
LIST_TIMEOUT_S = 5.0
#: How long a connection to the upstream may take.
CONNECT_TIMEOUT_S = 5.0
# What Ollama answers /api/generate for a model that only embeds (server/routes.go).
_NO_GENERATE = "does not support generate"


class UpstreamCallError(Exception):
    """The upstream could not be reached, or did not answer as Ollama does; one line."""


@dataclass(frozen=True)
class LoadedModel:
    """One row of ``/api/ps``."""

    name: str
    size: int
    size_vram: int
    expires_at: str


class OllamaClient:
    """Small JSON calls to the upstream at ``upstream`` (a user and password in it go as
    Basic auth, as requests does, and are never shown).

    >>> client = OllamaClient("http://127.0.0.1:11434")  # doctest: +SKIP
    >>> client.installed()  # doctest: +SKIP
    {'llama3.2:latest': 'llama3.2:latest'}
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.shown = without_userinfo(self.upstream)

    def _session(self) -> requests.Session:
        import requests

        session = requests.Session()
        session.trust_env = False  # the upstream is ours: no HTTP_PROXY detour
        return session

    def _call(
        self, method: str, path: str, body: Mapping[str, Any] | None, timeout_s: float
    ) -> requests.Response:
        import requests

        with self._session() as session:
            try:
                return session.request(
                    method,
                    self.upstream + path,
                    json=body,
                    timeout=(CONNECT_TIMEOUT_S, timeout_s),
                )
            except requests.Timeout:
                raise UpstreamCallError(
                    f"{self.shown}{path} did not answer within {timeout_s:g} s"
                ) from None
            except requests.RequestException as error:
                raise UpstreamCallError(f"{self.shown}{path} cannot be reached: {error}") from None

    def _models(self, path: str) -> list[dict[str, Any]]:
        response = self._call("GET", path, None, LIST_TIMEOUT_S)
        if response.status_code != 200:
            raise UpstreamCallError(
                f"{self.shown}{path} answered {response.status_code} {response.reason}"
            )
        try:
            models = response.json()["models"]
            return [model for model in models if isinstance(model.get("name"), str)]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UpstreamCallError(f"{self.shown}{path} did not answer a list of models") from None

    def installed(self) -> dict[str, str]:
        """Name key -> name of each model the upstream has (``/api/tags``)."""
        return {name_key(model["name"]): model["name"] for model in self._models("/api/tags")}

    def loaded(self) -> dict[str, LoadedModel]:
        """Name key -> row of each model loaded now (``/api/ps``)."""
        rows = {}
        for model in self._models("/api/ps"):
            rows[name_key(model["name"])] = LoadedModel(
                model["name"],
                int(model.get("size") or 0),
                int(model.get("size_vram") or 0),
                str(model.get("expires_at") or ""),
            )
        return rows

    def load(self, body: Mapping[str, Any], timeout_s: float) -> str:
        """Load ``body["model"]`` (an empty-prompt request: ollama-api.md section 6) and
        wait until it is loaded; return the endpoint that loaded it.

        An embedding-only model refuses ``/api/generate`` (400 ``does not support
        generate``): it is loaded through ``/api/embed``.
        """
        return self._empty_request(body, timeout_s, "load")

    def unload(self, body: Mapping[str, Any], timeout_s: float = LIST_TIMEOUT_S) -> str:
        """Unload ``body["model"]`` (``keep_alive: 0``, no prompt). Ollama unloads once the
        model's running requests end (server/sched.go ``expireRunner``)."""
        return self._empty_request(body, timeout_s, "unload")

    def _empty_request(self, body: Mapping[str, Any], timeout_s: float, verb: str) -> str:
        path = "/api/generate"
        response = self._call("POST", path, body, timeout_s)
        if response.status_code == 400 and _NO_GENERATE in response.text:
            path = "/api/embed"
            response = self._call("POST", path, body, timeout_s)
        if response.status_code != 200:
            raise UpstreamCallError(
                f"{verb} of {body.get('model')!r} failed: {self.shown}{path} answered "
                f"{response.status_code} {_error_text(response)}"
            )
        return path


def _error_text(response: requests.Response) -> str:
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return response.reason or ""


def wait_loaded(
    client: OllamaClient,
    target: str,
    *,
    load: Callable[[], object],
    report: Callable[[float, LoadedModel | None], None],
    interval_s: float = 1.0,
) -> None:
    """Run ``load`` (which returns once the model is loaded) and, while it runs, call
    ``report(elapsed_s, row)`` every ``interval_s`` with ``/api/ps``'s row for ``target``.

    For ``switch --warm``'s progress. ``load``'s exception, if any, is raised here.
    """
    import threading

    outcome: list[BaseException] = []

    def run() -> None:
        try:
            load()
        except BaseException as error:  # handed to the caller's thread
            outcome.append(error)

    worker = threading.Thread(target=run, name="ollama-default-load", daemon=True)
    started = time.monotonic()
    worker.start()
    key = name_key(target)
    while True:
        worker.join(interval_s)
        if not worker.is_alive():
            break
        try:
            row = client.loaded().get(key)
        except UpstreamCallError:
            row = None
        report(time.monotonic() - started, row)
    if outcome:
        raise outcome[0]
