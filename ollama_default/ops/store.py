"""The model store closed by default: pull, push, create, copy, delete and blob uploads
refused unless the operator opens them.

A raw Ollama lets anyone who reaches it delete, replace (``copy`` or ``create`` over a name),
pull or push any model, and upload blobs of any size. :class:`ModelStore` answers those
requests 403 in the client's dialect, before a byte of their body is read, unless the verb
is open: for everyone (``open_verbs``), or for the request's API key (its scope, left in
``environ`` by :class:`~ollama_default.ops.auth.KeyCheck`).

The decision is made on the route Ollama would serve the path as
(:func:`~ollama_default.core.paths.store_endpoint`), not on the spelling: ``/api/pull/``,
``/api//pull``, ``/x/../api/pull``, ``/api%2Fpull`` and ``/API/PULL`` are all ``pull``,
whatever the method. An open verb is forwarded only in its plain spelling: any other is
refused (400), never sent on to be read one way here and another there.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..core.endpoints import STORE_VERBS, find_endpoint
from ..core.errors import ConfigError, RequestError
from ..core.paths import store_endpoint
from ..wsgi import API_KEY_KEY, REFUSED_KEY, respond_error

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: The word that opens every verb.
ALL = "all"


def store_verbs(key: str, value: object) -> tuple[str, ...]:
    """Return ``value``, ``"all"`` or a list of model-store verbs, as the verbs it opens.

    :raises ConfigError: naming ``key`` for anything else, or an unknown verb.
    """
    if value == ALL:
        return STORE_VERBS
    if isinstance(value, str) and value.lower() in ("", "none"):
        return ()
    if isinstance(value, (list, tuple)) and all(isinstance(verb, str) for verb in value):
        if list(value) == [ALL]:
            return STORE_VERBS
        if list(value) == ["none"]:
            return ()
        unknown = [verb for verb in value if verb not in STORE_VERBS]
        if not unknown:
            return tuple(verb for verb in STORE_VERBS if verb in value)
        raise ConfigError(
            f"{key}: {unknown[0]!r} is not a model-store verb (one of {', '.join(STORE_VERBS)})",
            key=key,
        )
    raise ConfigError(
        f"{key} must be 'all' or a list of model-store verbs such as ['pull', 'copy'], "
        f"not {value!r}",
        key=key,
    )


class ModelStore:
    """WSGI middleware: the model-store verbs answer 403 unless opened.

    >>> app = ModelStore(DefaultModel(ollama, alias="llmodel", target="qwen3:4b"))  # doctest: +SKIP
    >>> app = ModelStore(app, open_verbs=["pull"])  # doctest: +SKIP

    Put it outside :class:`~ollama_default.DefaultModel` (which is transparent: it refuses
    none of these by itself) and inside :class:`~ollama_default.ops.auth.KeyCheck`, whose
    keys may open verbs of their own.

    :param app: the WSGI app behind it.
    :param open_verbs: the verbs open to every client: ``"all"`` or some of
        :data:`~ollama_default.core.endpoints.STORE_VERBS`; none by default.
    :raises ConfigError: for anything else.
    """

    def __init__(self, app: WSGIApplication, *, open_verbs: Iterable[str] | str = ()) -> None:
        self.app = app
        given = open_verbs if isinstance(open_verbs, str) else list(open_verbs)
        self.open_verbs = frozenset(store_verbs("open_model_store", given))

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "") or "/"
        endpoint = store_endpoint(path)
        if endpoint is None:
            return self.app(environ, start_response)
        verb = endpoint.store_verb
        if verb not in self.open_verbs and verb not in _key_verbs(environ):
            environ[REFUSED_KEY] = "management"
            refused = RequestError(
                403,
                f"the model store's {verb!r} is closed on this proxy: its operator has not "
                "opened it (open_model_store)",
            )
            return respond_error(environ, start_response, refused, endpoint.dialect)
        if find_endpoint(path) is not endpoint:
            # Open, but spelt otherwise than Ollama's route: refused rather than read one
            # way here and another upstream (a trailing slash, a dot segment, case...).
            plain = endpoint.path.split("{", 1)[0] + ("DIGEST" if "{" in endpoint.path else "")
            environ[REFUSED_KEY] = "management"
            refused = RequestError(400, f"request path {path!r} is not plain: send {plain}")
            return respond_error(environ, start_response, refused, endpoint.dialect)
        return self.app(environ, start_response)


def _key_verbs(environ: WSGIEnvironment) -> frozenset[str]:
    key = environ.get(API_KEY_KEY)
    verbs: frozenset[str] = getattr(key, "store_verbs", frozenset())
    return verbs
