"""What the upstream has installed and loaded, for the status page: asked rarely, briefly.

:class:`UpstreamModels` asks Ollama's ``/api/tags`` and ``/api/ps`` with a short timeout,
reads at most :data:`MAX_LISTING_BYTES` of each, and keeps the answer for
``cache_s`` seconds; one request asks at a time and the others wait for its answer, so no
number of status requests sends the upstream more than one pair of listings per
``cache_s``. An upstream that does not answer is an answer too (``reachable`` false).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ..core.names import name_key
from ..ops.status import LoadedModel, UpstreamView
from .forwarder import basic_authorization, without_userinfo

#: How long to wait for the upstream to connect, and then for each answer.
TIMEOUT_S = 1.0
#: How long an answer is kept.
CACHE_S = 2.0
#: The most read of one listing: a few thousand models' worth.
MAX_LISTING_BYTES = 4 * 1024 * 1024


class _Unusable(Exception):
    """The upstream answered, but not with a listing."""


class UpstreamModels:
    """Callable returning an :class:`~ollama_default.ops.status.UpstreamView` of ``upstream``.

    :param upstream: Ollama's base URL (a user and password in it go as Basic auth).
    :param timeout_s: for the connection, and for each answer.
    :param cache_s: how long an answer is kept.
    """

    def __init__(
        self,
        upstream: str,
        *,
        timeout_s: float = TIMEOUT_S,
        cache_s: float = CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.upstream = upstream
        self.shown = without_userinfo(upstream).rstrip("/")
        self.timeout_s = timeout_s
        self.cache_s = cache_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, UpstreamView] | None = None

    def __call__(self) -> UpstreamView:
        with self._lock:  # one asks; the others wait, then read what it found
            cached = self._cached
            if cached is not None and self._clock() - cached[0] < self.cache_s:
                return cached[1]
            view = self._ask()
            self._cached = (self._clock(), view)
            return view

    def _ask(self) -> UpstreamView:
        checked_at = time.time()
        parts = urlsplit(self.upstream)
        connection_type = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_type(parts.hostname or "", parts.port, timeout=self.timeout_s)
        headers = {"Accept": "application/json"}
        if (authorization := basic_authorization(self.upstream)) is not None:
            headers["Authorization"] = authorization
        base = parts.path.rstrip("/")
        try:
            try:
                connection.connect()
            except OSError as error:
                return self._down(checked_at, error)
            tags = self._listing(connection, base + "/api/tags", headers)
            ps = self._listing(connection, base + "/api/ps", headers)
        except (OSError, http.client.HTTPException) as error:
            return self._down(checked_at, error)
        except _Unusable as error:
            return UpstreamView(self.shown, True, str(error), checked_at)
        finally:
            connection.close()
        installed = frozenset(name_key(model["name"]) for model in tags)
        loaded = {
            name_key(model["name"]): LoadedModel(
                model.get("size_vram") if isinstance(model.get("size_vram"), int) else None,
                model.get("expires_at") if isinstance(model.get("expires_at"), str) else None,
            )
            for model in ps
        }
        return UpstreamView(self.shown, True, None, checked_at, installed, loaded)

    def _down(self, checked_at: float, error: BaseException) -> UpstreamView:
        if isinstance(error, TimeoutError):
            why = f"no answer within {self.timeout_s:g} s"
        else:
            why = getattr(error, "strerror", None) or str(error) or type(error).__name__
        return UpstreamView(self.shown, False, why, checked_at)

    def _listing(
        self, connection: http.client.HTTPConnection, path: str, headers: dict[str, str]
    ) -> list[dict[str, Any]]:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read(MAX_LISTING_BYTES + 1)
        if response.status != 200:
            raise _Unusable(f"answered {path} with {response.status} {response.reason}")
        if len(body) > MAX_LISTING_BYTES:
            raise _Unusable(f"answered {path} with more than {MAX_LISTING_BYTES} bytes")
        try:
            models = json.loads(body)["models"]
            if all(isinstance(model, dict) and isinstance(model["name"], str) for model in models):
                return list(models)
        except (ValueError, KeyError, TypeError):
            pass
        raise _Unusable(f"answered {path} with something that is not a list of models")
