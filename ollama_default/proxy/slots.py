"""The concurrency limits' counts, shared by every gunicorn worker of one server.

``ollama-default serve`` runs several worker processes, and a cap on the requests under way
must hold over all of them. :class:`SharedCounts` keeps the counts in a small shared memory
mapping that the master creates before it forks the workers (:func:`install_shared_counts`,
from ``serve`` and from the ``on_starting`` hook of ``-c python:ollama_default.proxy.gunicorn``),
so the workers inherit it. Why this way:

* **Exact.** Every change is made under one lock, a POSIX record lock (``fcntl.lockf``) on
  the mapping's file: a request takes a slot only if the counts, read under the lock, leave
  one. No count is ever read stale, whatever the CPU reorders.
* **Cheap.** One uncontended ``fcntl`` call to lock and one to unlock, and a few ``struct``
  reads and writes: some microseconds a request (docs/security.rst has the measurement).
* **Safe under gevent.** The lock is only ever tried (``LOCK_NB``); while another process
  holds it, for the microseconds its few reads take, the waiter yields (``time.sleep(0)``,
  gevent's once gunicorn has patched it) rather than block the worker's event loop. Nothing
  inside the lock waits or does I/O.
* **Robust.** The kernel drops a record lock when its process dies, so a worker killed
  inside the lock leaves it free. Every count is also kept per worker process: when gunicorn
  reports a worker's exit (its ``child_exit`` hook, in the master), :func:`reclaim` takes that
  worker's held slots and queued requests off the totals, so a killed worker's slots do not
  leak. (A semaphore per cap would be as exact, but cannot say whose slots a dead worker
  held, nor be made for a key that appears after the fork.)

A process without the shared counts (``gunicorn ollama_default.proxy:app`` without serve's
configuration module, or any other server) counts in itself: one process is exact, several
each apply the caps alone, and the limits say so in the log.

Layout: a header (slots held, requests queued), a table of per-key counts (by a 64-bit hash
of the key's id) and one of per-process-and-key counts, both open-addressed with linear
probing, an entry removed by moving its followers back (no tombstones to pile up).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import mmap
import os
import struct
import tempfile
import threading
import time

from ..ops.limits import Gate, LocalCounts, Refusal, SlotCounts, Tally

_log = logging.getLogger("ollama_default")

#: Keys with requests under way at once that the counts can track.
MAX_KEYS = 768
#: (worker process, key) pairs with requests under way at once that the counts can track.
MAX_PROCESS_KEYS = 3072
#: How long a process tries for the lock before it gives up (it is held for microseconds,
#: unless its holder is stopped), in seconds.
LOCK_TIMEOUT_S = 5.0

_HEADER = struct.Struct("<qq")  # slots held, requests queued; then each table's entries in use
_COUNT = struct.Struct("<q")
_HEADER_BYTES = 64
_ENTRY = struct.Struct("<QQqq")  # first key, second key, held, queued
# The tables hold a quarter more entries than they may fill, so that probes stay short.
_KEY_ENTRIES = MAX_KEYS * 4 // 3
_PROCESS_ENTRIES = MAX_PROCESS_KEYS * 4 // 3
# The hash standing for "no key" in the per-process table (a key's is never 0 or 1).
_NO_KEY = 1
_MASK = (1 << 64) - 1


@functools.lru_cache(maxsize=1024)
def key_hash(key: str) -> int:
    """A 64-bit hash of a key's id, the same in every process (unlike ``hash``)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return max(int.from_bytes(digest, "little"), 2)


class _Table:
    """An open-addressed table of entries keyed by two 64-bit numbers in ``buffer``."""

    __slots__ = ("buffer", "entries", "limit", "live_at", "offset")

    def __init__(
        self, buffer: mmap.mmap, offset: int, entries: int, limit: int, live_at: int
    ) -> None:
        self.buffer = buffer
        self.offset = offset
        self.entries = entries
        self.limit = limit
        # Where the header keeps how many entries are in use.
        self.live_at = live_at

    @property
    def is_full(self) -> bool:
        """Whether no entry may be added."""
        return int(_COUNT.unpack_from(self.buffer, self.live_at)[0]) >= self.limit

    def _count_live(self, change: int) -> None:
        live = _COUNT.unpack_from(self.buffer, self.live_at)[0]
        _COUNT.pack_into(self.buffer, self.live_at, live + change)

    @property
    def end(self) -> int:
        return self.offset + self.entries * _ENTRY.size

    def _home(self, first: int, second: int) -> int:
        return ((first * 0x9E3779B97F4A7C15) & _MASK ^ second) % self.entries

    def _read(self, index: int) -> tuple[int, int, int, int]:
        return _ENTRY.unpack_from(self.buffer, self.offset + index * _ENTRY.size)

    def _write(self, index: int, entry: tuple[int, int, int, int]) -> None:
        _ENTRY.pack_into(self.buffer, self.offset + index * _ENTRY.size, *entry)

    def find(self, first: int, second: int) -> tuple[int, int, int]:
        """(index, held, queued) of the entry, or (-1, 0, 0)."""
        index = self._home(first, second)
        for _ in range(self.entries):
            found_first, found_second, held, queued = self._read(index)
            if found_first == 0:
                break
            if found_first == first and found_second == second:
                return index, held, queued
            index = (index + 1) % self.entries
        return -1, 0, 0

    def add(self, index: int, first: int, second: int, held: int, queued: int) -> None:
        """Add to the entry at ``index`` (from :meth:`find`; -1 makes it)."""
        if index < 0:
            index = self._home(first, second)
            while self._read(index)[0] != 0:
                index = (index + 1) % self.entries
            old_held = old_queued = 0
            self._count_live(1)
        else:
            _, _, old_held, old_queued = self._read(index)
        held += old_held
        queued += old_queued
        if held or queued:
            self._write(index, (first, second, held, queued))
        else:
            self._remove(index)
            self._count_live(-1)

    def _remove(self, index: int) -> None:
        # Knuth's deletion for linear probing: each follower whose home is not between the
        # hole and itself moves back into the hole, which moves on to where it was.
        entries = self.entries
        self._write(index, (0, 0, 0, 0))
        hole, probe = index, index
        while True:
            probe = (probe + 1) % entries
            entry = self._read(probe)
            if entry[0] == 0:
                return
            home = self._home(entry[0], entry[1])
            stays = hole < home <= probe if hole <= probe else home > hole or home <= probe
            if not stays:
                self._write(hole, entry)
                self._write(probe, (0, 0, 0, 0))
                hole = probe

    def of_first(self, first: int) -> list[tuple[int, int, int]]:
        """(second, held, queued) of every entry under ``first``."""
        found = []
        for index in range(self.entries):
            entry = self._read(index)
            if entry[0] == first:
                found.append(entry[1:])
        return found


class _Locked:
    """The lock of the counts in one process: its threads' (or greenlets') lock, then the
    record lock between processes. A class, not a generator: it is taken twice a request."""

    __slots__ = ("_fd", "_lock", "_tally")

    def __init__(self, fd: int, tally: _SharedTally) -> None:
        self._fd = fd
        # Made in the process that uses it, after gevent has patched threading.
        self._lock = threading.Lock()
        self._tally = tally

    def __enter__(self) -> Tally:
        self._lock.acquire()
        try:
            _lock_file(self._fd)
        except BaseException:
            self._lock.release()
            raise
        return self._tally

    def __exit__(self, *exc_info: object) -> None:
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()


def _lock_file(fd: int) -> None:
    deadline = None
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError:
            # Held by another process for a few reads: let others run meanwhile.
            now = time.monotonic()
            if deadline is None:
                deadline = now + LOCK_TIMEOUT_S
            elif now > deadline:
                raise
            time.sleep(0)


class SharedCounts:
    """Slot counts in memory shared by the processes forked after it was made.

    Make it before the fork (:func:`install_shared_counts`); everything that is per
    process (the pid, the lock between its threads or greenlets) is made on first use in
    each process, after gevent has patched ``threading``.
    """

    spans_processes = True

    def __init__(self) -> None:
        size = _HEADER_BYTES + (_KEY_ENTRIES + _PROCESS_ENTRIES) * _ENTRY.size
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("ollama-default-slots", os.MFD_CLOEXEC)
        else:  # pragma: no cover - macOS: an unlinked temporary file
            with tempfile.TemporaryFile() as file:
                fd = os.dup(file.fileno())
        os.ftruncate(fd, size)
        # Never closed: a record lock goes when its process closes ANY descriptor of the
        # file (POSIX), so this one is kept for the life of the process.
        self._fd = fd
        self._buffer = mmap.mmap(fd, size)  # MAP_SHARED: the workers see one memory
        self._keys = _Table(self._buffer, _HEADER_BYTES, _KEY_ENTRIES, MAX_KEYS, 16)
        self._processes = _Table(
            self._buffer, self._keys.end, _PROCESS_ENTRIES, MAX_PROCESS_KEYS, 24
        )
        self._pid = 0
        self._locked: _Locked | None = None
        os.register_at_fork(after_in_child=self._forget_process)

    def _forget_process(self) -> None:
        self._pid, self._locked = 0, None

    def locked(self) -> contextlib.AbstractContextManager[Tally]:
        """Hold the lock, between this process's threads and between processes."""
        locked = self._locked
        if locked is None:
            # First use in this process (the fork forgot the parent's).
            self._pid = os.getpid()
            locked = self._locked = _Locked(self._fd, _SharedTally(self, self._pid))
        return locked

    def totals(self) -> tuple[int, int]:
        """(slots held, requests queued) in all processes."""
        with self.locked() as tally:
            return tally.held(None), tally.queued(None)

    def reclaim(self, pid: int) -> tuple[int, int]:
        """Take what the process ``pid`` (which has exited) held and queued off the counts.

        :returns: (slots held, requests queued) it had.
        """
        held_in_all = queued_in_all = 0
        with self.locked():
            processes, keys = self._processes, self._keys
            for second, held, queued in processes.of_first(pid):
                index, _, _ = processes.find(pid, second)
                processes.add(index, pid, second, -held, -queued)
                if second != _NO_KEY:
                    index, _, _ = keys.find(second, 0)
                    keys.add(index, second, 0, -held, -queued)
                held_in_all += held
                queued_in_all += queued
            total_held, total_queued = _HEADER.unpack_from(self._buffer, 0)
            _HEADER.pack_into(
                self._buffer, 0, total_held - held_in_all, total_queued - queued_in_all
            )
        return held_in_all, queued_in_all


class _SharedTally:
    __slots__ = ("_counts", "_pid")

    def __init__(self, counts: SharedCounts, pid: int) -> None:
        self._counts = counts
        self._pid = pid

    def held(self, key: str | None) -> int:
        if key is None:
            return int(_HEADER.unpack_from(self._counts._buffer, 0)[0])
        return self._counts._keys.find(key_hash(key), 0)[1]

    def queued(self, key: str | None) -> int:
        if key is None:
            return int(_HEADER.unpack_from(self._counts._buffer, 0)[1])
        return self._counts._keys.find(key_hash(key), 0)[2]

    def add(self, key: str | None, *, held: int = 0, queued: int = 0) -> None:
        counts = self._counts
        second = _NO_KEY if key is None else key_hash(key)
        process_index = counts._processes.find(self._pid, second)[0]
        key_index = counts._keys.find(second, 0)[0] if key is not None else 0
        # Checked before anything changes: a full table refuses the request whole.
        if (process_index < 0 and counts._processes.is_full) or (
            key_index < 0 and counts._keys.is_full
        ):
            raise Refusal(for_key=False, queue_full=True)
        buffer = counts._buffer
        total_held, total_queued = _HEADER.unpack_from(buffer, 0)
        _HEADER.pack_into(buffer, 0, total_held + held, total_queued + queued)
        counts._processes.add(process_index, self._pid, second, held, queued)
        if key is not None:
            counts._keys.add(key_index, second, 0, held, queued)


_shared: SharedCounts | None = None
_gate: Gate | None = None
_gate_pid = 0


def install_shared_counts() -> SharedCounts | None:
    """Make the counts the processes forked from now on share (in gunicorn's master,
    before it forks); once per process. None, with a warning, if no shared memory can
    be had."""
    global _shared
    if _shared is None:
        try:
            _shared = SharedCounts()
        except OSError as error:
            _log.warning(
                "no shared memory for the concurrency limits (%s): each worker counts alone",
                error,
            )
    return _shared


def shared_counts() -> SharedCounts | None:
    """The counts :func:`install_shared_counts` made, if it was called."""
    return _shared


def process_gate() -> Gate:
    """The one :class:`~ollama_default.ops.limits.Gate` of this process, over the shared
    counts when there are any: every app graph built in the process (a reload builds a
    new one) counts in it, so the streams of the old graph still count."""
    global _gate, _gate_pid
    pid = os.getpid()
    if _gate is None or _gate_pid != pid:
        counts: SlotCounts = _shared if _shared is not None else LocalCounts()
        _gate, _gate_pid = Gate(counts), pid
    return _gate


def reclaim(pid: int) -> tuple[int, int]:
    """Take an exited worker's slots and queued requests off the shared counts."""
    if _shared is None:
        return 0, 0
    return _shared.reclaim(pid)
