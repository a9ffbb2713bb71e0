"""Keep-alive connections to one upstream, shared by a worker's requests."""

from __future__ import annotations

import socket
import ssl
from collections import deque


class ConnectionPool:
    """Idle keep-alive sockets to one upstream, and new ones when none is idle.

    ``deque.append`` and ``pop`` are atomic, so taking and returning need no lock between
    a worker's threads (or greenlets).

    :param scheme: ``http`` or ``https`` (verified TLS, the system's trust store).
    :param connect_timeout_s: how long a new connection may take.
    :param read_timeout_s: the timeout a connection is handed out with, for each read
        (a request may change it: the next one gets it back).
    :param max_idle: idle connections kept; more are closed when they are given back.
    """

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int | None,
        connect_timeout_s: float,
        read_timeout_s: float,
        *,
        max_idle: int,
    ) -> None:
        self._tls = ssl.create_default_context() if scheme == "https" else None
        self._host = host
        self._address = (host, port or (443 if self._tls else 80))
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._max_idle = max_idle
        self._idle: deque[socket.socket] = deque()
        self._closed = False

    def connection(self) -> socket.socket:
        """Return a connected socket: an idle one still open, else a new one.

        :raises TimeoutError: when the upstream does not accept in time.
        :raises OSError: when it refuses, or cannot be found.
        """
        while True:
            try:
                idle = self._idle.pop()
            except IndexError:
                break
            if is_open(idle):
                # Whatever timeout its last request left on it.
                idle.settimeout(self._read_timeout_s)
                return idle
            idle.close()
        sock = socket.create_connection(self._address, timeout=self._connect_timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self._host)
        except BaseException:
            sock.close()
            raise
        sock.settimeout(self._read_timeout_s)
        return sock

    def release(self, sock: socket.socket, reusable: bool) -> None:
        """Keep ``sock`` for the next request if it is ``reusable`` and too few are idle;
        else close it."""
        if reusable and not self._closed and len(self._idle) < self._max_idle:
            self._idle.append(sock)
        else:
            sock.close()

    def close(self) -> None:
        """Close every idle connection, and each one in use when it is given back (a
        reload retires the pool of an upstream no longer used while streams still run)."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()


def is_open(sock: socket.socket) -> bool:
    """Whether an idle socket can carry a request: readable while idle means the upstream
    closed it (or sent what nobody asked for). Leaves ``sock`` non-blocking."""
    sock.settimeout(0)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True  # nothing to read: still open
    except OSError:
        return False
    else:
        return False
