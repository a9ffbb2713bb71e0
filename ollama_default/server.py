"""The proxy's WSGI app, composed from settings: access log, prefix mount, DefaultModel,
backend.

The backend is a :class:`~ollama_default.forwarder.Forwarder` to the upstream, or, for
``ollama-default serve --demo``, the built-in demo backend.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from werkzeug.middleware.dispatcher import DispatcherMiddleware

from .errors import RequestError
from .forwarder import DEFAULT_MAX_CONNECTIONS, Forwarder
from .logs import AccessLog
from .middleware import DefaultModel
from .settings import Settings
from .wsgi import respond_error

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def build_app(
    settings: Settings,
    backend: WSGIApplication | None = None,
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> WSGIApplication:
    """Return the proxy for ``settings``, in front of ``backend`` or the upstream.

    :param max_connections: keep-alive connections kept to the upstream; as many as the
        worker serves requests at once, so none is thrown away after use.
    """
    if backend is None:
        backend = Forwarder(
            settings.upstream,
            connect_timeout_s=settings.connect_timeout_s,
            read_timeout_s=settings.read_timeout_s,
            max_connections=max_connections,
        )
    app: WSGIApplication = DefaultModel(
        backend,
        mapping=settings.aliases,
        default=settings.default,
        max_body_bytes=settings.max_body_bytes,
        max_record_bytes=settings.max_record_bytes,
    )
    if settings.prefix:
        # The prefix moves into SCRIPT_NAME; everything outside it is not ours to serve.
        app = DispatcherMiddleware(outside_prefix, {settings.prefix: app})
    if settings.access_log:
        app = AccessLog(app)  # outermost: it sees every request, refused ones too
    return app


def outside_prefix(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Answer 404 for a path outside the prefix, in the client's error shape."""
    message = f"{environ.get('PATH_INFO', '')} is not under this proxy's prefix"
    return respond_error(environ, start_response, RequestError(404, message))
