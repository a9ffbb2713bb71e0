"""The path Ollama's router would serve a request path as, so that a decision about a
route is made on the route Ollama will run, whatever the spelling.

Ollama routes with gin v1.10 (``server/routes.go:1869``: ``gin.Default()``, with
``HandleMethodNotAllowed``) on Go's decoded ``URL.Path``: ``UseRawPath`` is off, so
``/api%2Fpull`` and ``/api/%70ull`` are ``/api/pull``, as in the ``PATH_INFO`` a WSGI server
decodes (PEP 3333). ``RedirectTrailingSlash`` is on: ``/api/pull/`` answers a redirect to
``/api/pull`` (307 for a POST, which clients follow with the body). ``RedirectFixedPath``
and ``RemoveExtraSlash`` are off, so ``/api//pull``, ``/api/./pull`` and ``/API/PULL`` get
404 from this version; a later one, or another server in front, could clean them up. So
every such spelling counts here as the route it could become: a policy refuses them all,
and no spelling of a closed route is forwarded.

Pure: no I/O, no WSGI.
"""

from __future__ import annotations

from .endpoints import ENDPOINTS, Endpoint


def routed_path(path: str) -> str:
    """Return ``path`` (a decoded ``PATH_INFO``) as the route it could be served as: its
    ``.`` and ``..`` segments resolved, repeated slashes and a final slash removed, as
    Go's ``path.Clean`` and gin's redirects make it, and in lower case.

    >>> routed_path("/API//v1/../pull/")
    '/api/pull'
    """
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:  # path.Clean: ".." at the root stays at the root
                segments.pop()
            continue
        segments.append(segment)
    return "/" + "/".join(segments).lower()


def is_plain_path(path: str) -> bool:
    """Whether ``path`` is already the route it names: no dot segments, no repeated or
    final slash (``/`` itself is plain). Case is not looked at: gin matches it exactly."""
    if path == "/":
        return True
    if not path.startswith("/") or path.endswith("/") or "//" in path:
        return False
    return not any(segment in (".", "..") for segment in path.split("/"))


def store_endpoint(path: str) -> Endpoint | None:
    """Return the model-store endpoint (``pull``, ``blobs``...) ``path`` is, or could be
    routed as, in any spelling; None when it is none of them.

    A blob path counts with or without its digest (``/api/blobs``, ``/api/blobs/x/y``):
    nothing else is served under ``/api/blobs``.
    """
    routed = routed_path(path)
    for endpoint in _STORE_ENDPOINTS:
        route = endpoint.path.lower()
        if "{" in route:
            prefix = route.split("{", 1)[0]
            if routed.startswith(prefix) or routed == prefix.rstrip("/"):
                return endpoint
        elif routed == route:
            return endpoint
    return None


_STORE_ENDPOINTS: tuple[Endpoint, ...] = tuple(e for e in ENDPOINTS if e.store_verb)
