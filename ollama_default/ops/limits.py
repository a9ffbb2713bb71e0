"""Fair limits: a cap on the requests under way at once, in total and per API key, with a
queue of bounded length and wait in front of it.

:class:`Limits` is a WSGI middleware usable around any app. A request that counts (see
:func:`is_counted`) takes a slot before the app sees it and holds it until its response has
been sent whole or its client has gone: the slot is given back in the response iterable's
``close()``, which every WSGI server calls (PEP 3333), gunicorn also when the client
disconnects mid-stream. A stream therefore holds its slot for as long as it runs, which is
what it costs the upstream too.

When no slot is free a request waits in the queue, up to ``queue_timeout_s``; when the queue
is full, or the wait runs out, it is refused in its client's dialect: 429 when its key has as
many requests under way as it may (the client can fix that by waiting for its own), 503 when
the proxy as a whole has (``Retry-After`` on both).

The counts live behind :class:`SlotCounts`: :class:`LocalCounts` counts in one process
(threads or greenlets), what ``DefaultModel`` users get; the proxy passes counts kept in
memory shared by its gunicorn workers (:mod:`ollama_default.proxy.slots`), so that the caps
hold across processes. :class:`Gate` holds the queue: one per process and counts.

Waiting never blocks an event loop: a waiter sleeps on a ``threading.Event`` (gevent's,
once gunicorn's gevent worker has patched ``threading``), woken at once when a slot of its
own process frees (handed to the oldest local waiter that fits, so a newcomer cannot take
it first) and every :data:`POLL_S` to look for slots freed by other processes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from ..core.checks import cap, count, positive_seconds
from ..core.endpoints import find_endpoint
from ..core.errors import RequestError
from ..wsgi import API_KEY_KEY, KEY_ID_KEY, REFUSED_KEY, respond_error

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: How long a queued request waits before it is refused, by default, in seconds: about as
#: long as a chat answer of a small model takes; a queue waited on for longer means the
#: load is above what the upstream serves, and the client is better told (and retries).
QUEUE_TIMEOUT_S = 30.0
#: How often a waiter looks for a slot freed by another process, in seconds (slots freed in
#: its own process are handed over at once).
POLL_S = 0.05
#: What a refused client is told to wait before it retries (``Retry-After``), in seconds.
RETRY_AFTER_S = 5
#: The value of ``environ[REFUSED_KEY]`` when a limit refused the request.
REFUSED_LIMIT = "limit"
#: The methods that never count: reads, which cost the upstream no model time, and CORS
#: preflights.
_FREE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_log = logging.getLogger("ollama_default")


def is_counted(method: str, path: str) -> bool:
    """Whether a request to ``path`` takes a slot.

    Every request that makes the upstream work does: generation, embeddings, the model
    store's verbs (a pull streams for minutes) and paths we do not know (a future endpoint
    could be any of those). Reads do not (``GET`` and ``HEAD``: ``/api/tags``, ``/api/ps``,
    ``/api/version``, ``/v1/models``), nor ``/api/show``: they are cheap, Ollama answers them
    without its scheduler (``server/routes.go``: no ``sched`` on those paths), and UIs such
    as Open WebUI poll them every few seconds; counted, a busy proxy would make a UI say the
    server is down. Nor do our own paths under ``/-/``, which are never forwarded.
    """
    if method in _FREE_METHODS or path.startswith("/-/"):
        return False
    endpoint = find_endpoint(path)
    return endpoint is None or endpoint.listing is None


class Tally(Protocol):
    """The counts, read and changed inside one :meth:`SlotCounts.locked` block."""

    def held(self, key: str | None) -> int:
        """Slots held by ``key``'s requests (all requests', for None)."""

    def queued(self, key: str | None) -> int:
        """Requests of ``key`` waiting for a slot (all waiting requests', for None)."""

    def add(self, key: str | None, *, held: int = 0, queued: int = 0) -> None:
        """Change the total counts, and ``key``'s unless it is None, by these amounts."""


class SlotCounts(Protocol):
    """Counts of held slots and queued requests, changed under one lock."""

    #: Whether the counts are shared by several processes.
    spans_processes: bool

    def locked(self) -> contextlib.AbstractContextManager[Tally]:
        """Hold the lock for a few reads and changes; no I/O, no wait inside."""


class LocalCounts:
    """Counts kept in this process, under a lock: for threads and greenlets of one process.

    >>> gate = Gate(LocalCounts())
    """

    spans_processes = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tally = _DictTally()

    @contextlib.contextmanager
    def locked(self) -> Iterator[Tally]:
        """Hold the lock."""
        with self._lock:
            yield self._tally


class _DictTally:
    __slots__ = ("_held", "_queued")

    def __init__(self) -> None:
        self._held: dict[str | None, int] = {None: 0}
        self._queued: dict[str | None, int] = {None: 0}

    def held(self, key: str | None) -> int:
        return self._held.get(key, 0)

    def queued(self, key: str | None) -> int:
        return self._queued.get(key, 0)

    def add(self, key: str | None, *, held: int = 0, queued: int = 0) -> None:
        for counts, amount in ((self._held, held), (self._queued, queued)):
            if amount:
                counts[None] += amount
                if key is not None:
                    left = counts.get(key, 0) + amount
                    if left:
                        counts[key] = left
                    else:
                        del counts[key]  # keys come and go: keep only those under way


class Refusal(Exception):
    """No slot: ``for_key`` when the request's key is at its own cap, else the total is."""

    def __init__(self, *, for_key: bool, queue_full: bool) -> None:
        super().__init__()
        self.for_key = for_key
        self.queue_full = queue_full


class _Waiter:
    __slots__ = ("admitted", "event", "key", "key_cap", "total_cap")

    def __init__(self, key: str | None, total_cap: int | None, key_cap: int | None) -> None:
        self.key = key
        self.total_cap = total_cap
        self.key_cap = key_cap
        self.admitted = False
        # Made here, in the request, after gevent has patched threading (never before
        # the fork, where it would be a real lock blocking the whole event loop).
        self.event = threading.Event()


def _blocked(tally: Tally, key: str | None, total_cap: int | None, key_cap: int | None) -> bool:
    return (key_cap is not None and tally.held(key) >= key_cap) or (
        total_cap is not None and tally.held(None) >= total_cap
    )


class Gate:
    """The slots of one process over ``counts``, and the queue of its waiting requests.

    :param counts: the counts; :class:`LocalCounts` when not given.
    :param poll_s: how often a waiter looks for slots freed by other processes.
    :param clock: seconds, as :func:`time.monotonic` counts them (for tests).
    """

    def __init__(
        self,
        counts: SlotCounts | None = None,
        *,
        poll_s: float = POLL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.counts: SlotCounts = LocalCounts() if counts is None else counts
        self.poll_s = poll_s
        self._clock = clock
        # This process's waiters, oldest first.
        self._waiters: deque[_Waiter] = deque()

    def enter(
        self,
        key: str | None,
        *,
        total_cap: int | None,
        key_cap: int | None,
        max_queue: int | None,
        timeout_s: float,
    ) -> None:
        """Take a slot for a request of ``key``, waiting in the queue if need be.

        :param key: what the request is counted under for ``key_cap``; None for no key.
        :param max_queue: how many requests may wait at once in all (None: no bound but
            each key's, which is its cap).
        :raises Refusal: when the queue is full or the wait runs out.
        """
        with self.counts.locked() as tally:
            if self._waiters:
                # Those waiting first, if a slot came free in another process since the
                # last look: a newcomer does not pass them.
                self._admit(tally)
            if not _blocked(tally, key, total_cap, key_cap):
                tally.add(key, held=1)
                return
            queue_full = (max_queue is not None and tally.queued(None) >= max_queue) or (
                key_cap is not None and tally.queued(key) >= key_cap
            )
            if queue_full:
                raise self._refusal(tally, key, key_cap, queue_full=True)
            tally.add(key, queued=1)
            waiter = _Waiter(key, total_cap, key_cap)
            self._waiters.append(waiter)
        try:
            deadline = self._clock() + timeout_s
            while (remaining := deadline - self._clock()) > 0:
                waiter.event.wait(min(self.poll_s, remaining))
                if waiter.admitted:
                    return
                with self.counts.locked() as tally:
                    self._admit(tally)
                if waiter.admitted:
                    return
        except BaseException:
            self._withdraw(waiter)
            raise
        with self.counts.locked() as tally:
            if waiter.admitted:  # in the last moment
                return
            self._waiters.remove(waiter)
            tally.add(key, queued=-1)
            raise self._refusal(tally, key, key_cap, queue_full=False)

    def totals(self) -> tuple[int, int]:
        """(slots held, requests queued) in all, in every process the counts span."""
        with self.counts.locked() as tally:
            return tally.held(None), tally.queued(None)

    def leave(self, key: str | None) -> None:
        """Give back a slot of ``key``; the oldest waiter of this process that fits takes it."""
        with self.counts.locked() as tally:
            tally.add(key, held=-1)
            if self._waiters:
                self._admit(tally)

    def _admit(self, tally: Tally) -> None:
        """Admit this process's waiters that fit, oldest first."""
        for waiter in list(self._waiters):
            if waiter.total_cap is not None and tally.held(None) >= waiter.total_cap:
                break  # nobody after it fits either, and they must not pass it
            if not _blocked(tally, waiter.key, waiter.total_cap, waiter.key_cap):
                tally.add(waiter.key, held=1, queued=-1)
                self._waiters.remove(waiter)
                waiter.admitted = True
                waiter.event.set()

    def _withdraw(self, waiter: _Waiter) -> None:
        """Take a waiter out of the queue, or give back the slot it was just handed."""
        with self.counts.locked() as tally:
            if waiter.admitted:
                tally.add(waiter.key, held=-1)
                self._admit(tally)
            else:
                self._waiters.remove(waiter)
                tally.add(waiter.key, queued=-1)

    @staticmethod
    def _refusal(
        tally: Tally, key: str | None, key_cap: int | None, *, queue_full: bool
    ) -> Refusal:
        for_key = key_cap is not None and tally.held(key) >= key_cap
        return Refusal(for_key=for_key, queue_full=queue_full)


class Limits:
    """WSGI middleware: caps the requests under way at once, in total and per API key.

    Requests that make the upstream work (:func:`is_counted`) wait in a queue for a slot
    when the caps are reached, and get 503 (the total) or 429 (their key's) in their
    client's dialect, with ``Retry-After``, when it is full or their wait runs out. A slot
    is held until the response has been sent whole or the client has gone, streams included.

    >>> app = Limits(DefaultModel(app, alias="llmodel", target="qwen3:4b"),
    ...              max_concurrent=4)  # doctest: +SKIP

    :param app: the app whose requests are limited.
    :param max_concurrent: requests under way at once, in all; None for no cap.
    :param max_concurrent_per_key: requests under way at once with the same API key (the
        key's id in ``environ["ollama_default.key"]``, left by the layer that checked it);
        a key's own ``max_concurrent`` (its entry in the key file, the ``ApiKey`` in
        ``environ["ollama_default.api_key"]``) wins. None for no cap.
        Requests without a key are capped only by the total.
    :param max_queue: requests that may wait at once; 0 for none; None (the default) for
        twice ``max_concurrent`` (each key may also have as many waiting as its cap).
    :param queue_timeout_s: how long a request waits for a slot before it is refused.
    :param gate: the slots and the queue, shared by every ``Limits`` of the process that
        is given the same one (the proxy's span its workers); a new one by default.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        max_concurrent: int | None = None,
        max_concurrent_per_key: int | None = None,
        max_queue: int | None = None,
        queue_timeout_s: float = QUEUE_TIMEOUT_S,
        gate: Gate | None = None,
    ) -> None:
        self.app = app
        self.max_concurrent = cap("max_concurrent", max_concurrent)
        self.max_concurrent_per_key = cap("max_concurrent_per_key", max_concurrent_per_key)
        if max_queue is None:
            max_queue = None if self.max_concurrent is None else 2 * self.max_concurrent
        self.max_queue = None if max_queue is None else count("max_queue", max_queue)
        self.queue_timeout_s = positive_seconds("queue_timeout_s", queue_timeout_s)
        self.gate = Gate() if gate is None else gate
        self._warned = False

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not is_counted(environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")):
            return self.app(environ, start_response)
        key: str | None = environ.get(KEY_ID_KEY)
        key_cap = None
        if key is not None:
            # The key's own cap, from its entry in the key file (ops.auth.ApiKey).
            own = getattr(environ.get(API_KEY_KEY), "max_concurrent", None)
            key_cap = self.max_concurrent_per_key if own is None else own
        if key_cap is None:
            key = None  # counted in the total only
        if self.max_concurrent is None and key_cap is None:
            return self.app(environ, start_response)
        if not self._warned:
            self._warn_if_per_process(environ)
        gate = self.gate
        try:
            gate.enter(
                key,
                total_cap=self.max_concurrent,
                key_cap=key_cap,
                max_queue=self.max_queue,
                timeout_s=self.queue_timeout_s,
            )
        except Refusal as refusal:
            return self._refuse(environ, start_response, refusal, key_cap)
        try:
            app_iter = self.app(environ, start_response)
        except BaseException:
            gate.leave(key)
            raise
        return _HeldSlot(app_iter, gate, key)

    def _refuse(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        refusal: Refusal,
        key_cap: int | None,
    ) -> list[bytes]:
        why = (
            "the queue is full"
            if refusal.queue_full
            else f"no slot came free within {self.queue_timeout_s:g} s"
        )
        if refusal.for_key:
            status = 429
            message = (
                f"this API key has as many requests under way as it may ({key_cap}) and "
                f"{why}: retry when one of them has ended"
            )
        else:
            status = 503
            message = (
                f"the server has as many requests under way as it may "
                f"({self.max_concurrent}) and {why}: retry shortly"
            )
        environ[REFUSED_KEY] = REFUSED_LIMIT
        error = RequestError(status, message, headers=[("Retry-After", str(RETRY_AFTER_S))])
        return respond_error(environ, start_response, error)

    def _warn_if_per_process(self, environ: WSGIEnvironment) -> None:
        self._warned = True
        if environ.get("wsgi.multiprocess") and not self.gate.counts.spans_processes:
            _log.warning(
                "the concurrency limits count per worker process here: run "
                "'ollama-default serve' (or gunicorn -c python:ollama_default.proxy.gunicorn) "
                "for limits across all workers"
            )


class _HeldSlot:
    """The app's iterable, holding its slot until it is closed (sent whole, or the client
    left), and giving it back even when the app's own ``close()`` fails."""

    __slots__ = ("_app_iter", "_gate", "_key")

    def __init__(self, app_iter: Iterable[bytes], gate: Gate, key: str | None) -> None:
        self._app_iter = app_iter
        self._gate: Gate | None = gate
        self._key = key

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._app_iter)

    def close(self) -> None:
        gate, self._gate = self._gate, None
        try:
            close: Any = getattr(self._app_iter, "close", None)
            if close is not None:
                close()
        finally:
            if gate is not None:
                gate.leave(self._key)
