"""The one table of Ollama's HTTP endpoints, and where model names sit in each.

Everything else looks endpoints up here and never hard-codes a path. Sources: Ollama
``server/routes.go`` ``GenerateRoutes``, ``api/types.go``, ``middleware/openai.go`` and
``middleware/anthropic.go`` (summarised in the project's ``ollama-api.md``).

Pure: no I/O, no WSGI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from .dialects import Dialect
from .listings import Listing


class Field(Enum):
    """What a leaf of a :data:`ResponseFields` tree holds."""

    #: A model name: shown to the client as the name it asked for.
    MODEL_NAME = "model name"
    #: An error message (a string, or an object with ``message``): model names inside it
    #: are shown as the name the client asked for.
    ERROR = "error"


#: Where model names sit in a response body: object keys down to a :class:`Field`.
ResponseFields = Mapping[str, "ResponseFields | Field"]


class Body(Enum):
    """How a request body carries its model."""

    NONE = "none"
    JSON = "json"
    MULTIPART = "multipart"


@dataclass(frozen=True)
class Endpoint:
    """One route of Ollama's API, as the rewriting rules need to know it.

    ``model_fields`` lists the model references in the request body, each a tuple of
    keys where the first non-empty one wins (``("model", "name")``: ``name`` is the
    legacy spelling). ``path_model`` is true when the last path segment is a model.
    ``decodes_zstd`` is true where Ollama zstd-decodes a body sent with
    ``Content-Encoding: zstd`` before reading it (:mod:`~ollama_default.core.codings`).
    ``destination_fields`` maps the first key of each model reference naming the model the
    request makes, removes or publishes in Ollama's store (create's ``model``, copy's
    ``destination``, delete's and push's ``model``) to the words for what it would do to it
    (``"deleted"``): an alias is refused there (:mod:`~ollama_default.core.naming`).
    ``falls_back`` is true on the inference endpoints, where ``fallback_to_default`` sends a
    request for a model the upstream does not have to the default.
    ``listing`` says which listing or model description a successful reply is, where
    aliases are shown as models (:mod:`~ollama_default.core.listings`).
    """

    methods: frozenset[str]
    path: str
    dialect: Dialect
    body: Body = Body.NONE
    model_fields: tuple[tuple[str, ...], ...] = ()
    path_model: bool = False
    takes_default: bool = False
    response_fields: ResponseFields = field(default_factory=dict)
    summary: str = ""
    decodes_zstd: bool = False
    destination_fields: Mapping[str, str] = field(default_factory=dict)
    falls_back: bool = False
    listing: Listing | None = None
    #: The family of fields its requests take for per-alias parameters (a key of
    #: :data:`~ollama_default.core.params.PLACES`), or "" when none apply.
    params: str = ""
    #: The model-store verb it is (one of :data:`STORE_VERBS`: it changes what Ollama has
    #: installed, or uploads to it), or "" for every other endpoint.
    store_verb: str = ""

    @property
    def names_a_model(self) -> bool:
        """Whether requests to this endpoint can name a model at all."""
        return bool(self.model_fields) or self.path_model


_NATIVE_ERROR: ResponseFields = {"error": Field.ERROR}
_ECHOED_MODEL: ResponseFields = {"model": Field.MODEL_NAME, "error": Field.ERROR}

_OLLAMA, _OPENAI, _ANTHROPIC = Dialect.OLLAMA, Dialect.OPENAI, Dialect.ANTHROPIC
_POST = frozenset({"POST"})
_GET = frozenset({"GET"})
_GET_HEAD = frozenset({"GET", "HEAD"})
_MODEL = (("model",),)
_MODEL_OR_NAME = (("model", "name"),)


def _inference(
    path: str, dialect: Dialect, response: ResponseFields, summary: str, params: str
) -> Endpoint:
    return Endpoint(
        _POST,
        path,
        dialect,
        Body.JSON,
        _MODEL,
        takes_default=True,
        response_fields=response,
        summary=summary,
        # server/routes.go:1916-1926 puts cloudPassthroughMiddleware, which zstd-decodes
        # the body, before every /v1 inference route.
        decodes_zstd=path.startswith("/v1/"),
        falls_back=True,
        params=params,
    )


def _management(
    method: str,
    path: str,
    fields: tuple[tuple[str, ...], ...],
    summary: str,
    destinations: Mapping[str, str] | None = None,
) -> Endpoint:
    # No default here: pulling, pushing, creating, copying or deleting "the default model"
    # because a request forgot its name would be a nasty surprise.
    return Endpoint(
        frozenset({method}),
        path,
        _OLLAMA,
        Body.JSON,
        fields,
        response_fields=_NATIVE_ERROR,
        summary=summary,
        destination_fields=destinations or {},
        store_verb=path.rsplit("/", 1)[1],
    )


ENDPOINTS: tuple[Endpoint, ...] = (
    _inference("/api/generate", _OLLAMA, _ECHOED_MODEL, "text generation", "generate"),
    _inference("/api/chat", _OLLAMA, _ECHOED_MODEL, "chat", "chat"),
    _inference("/api/embed", _OLLAMA, _ECHOED_MODEL, "embeddings", "embed"),
    _inference("/api/embeddings", _OLLAMA, _NATIVE_ERROR, "embeddings (legacy)", "embed"),
    Endpoint(
        _POST,
        "/api/show",
        _OLLAMA,
        Body.JSON,
        _MODEL_OR_NAME,
        takes_default=True,
        # model_info["general.basename"] echoes the requested name for some clients
        # (routes.go, GitHubCopilotChat user agent).
        response_fields={
            "error": Field.ERROR,
            "model_info": {"general.basename": Field.MODEL_NAME},
        },
        summary="model details",
        listing=Listing.SHOW,
    ),
    _management("POST", "/api/pull", _MODEL_OR_NAME, "download a model"),
    # Pulling an alias pulls its target, and copying or creating from one copies its target:
    # those names are read, as everywhere. Making, removing or publishing a model under an
    # alias's name is refused (docs/middleware.rst, "Management verbs on an alias").
    _management("POST", "/api/push", _MODEL_OR_NAME, "upload a model", {"model": "pushed"}),
    _management(
        "POST",
        "/api/create",
        (("model", "name"), ("from",)),
        "create a model",
        {"model": "created over"},
    ),
    _management(
        "POST",
        "/api/copy",
        (("source",), ("destination",)),
        "copy a model",
        {"destination": "copied over"},
    ),
    _management("DELETE", "/api/delete", _MODEL_OR_NAME, "delete a model", {"model": "deleted"}),
    _inference("/v1/chat/completions", _OPENAI, _ECHOED_MODEL, "OpenAI chat", "openai-chat"),
    _inference(
        "/v1/completions", _OPENAI, _ECHOED_MODEL, "OpenAI completions", "openai-completions"
    ),
    _inference("/v1/embeddings", _OPENAI, _ECHOED_MODEL, "OpenAI embeddings", ""),
    _inference(
        "/v1/responses",
        _OPENAI,
        # Streamed events carry the model only under "response" (openai/responses.go).
        {**_ECHOED_MODEL, "response": _ECHOED_MODEL},
        "OpenAI responses",
        "openai-responses",
    ),
    _inference(
        "/v1/messages",
        _ANTHROPIC,
        # Streamed, only message_start carries it, as message.model (anthropic.go).
        {**_ECHOED_MODEL, "message": {"model": Field.MODEL_NAME}},
        "Anthropic messages",
        "anthropic-messages",
    ),
    Endpoint(
        _GET,
        "/v1/models/{model}",
        _OPENAI,
        path_model=True,
        response_fields={"id": Field.MODEL_NAME, "error": Field.ERROR},
        summary="OpenAI model details",
        listing=Listing.OPENAI_MODEL,
    ),
    Endpoint(
        _POST,
        "/v1/audio/transcriptions",
        _OPENAI,
        Body.MULTIPART,
        _MODEL,
        takes_default=True,
        response_fields=_NATIVE_ERROR,
        summary="OpenAI transcription",
        falls_back=True,
    ),
    # Routes that name no model in the request; listed so that the table is complete.
    Endpoint(_GET_HEAD, "/", _OLLAMA, summary="health check"),
    Endpoint(_GET_HEAD, "/api/version", _OLLAMA, summary="server version"),
    Endpoint(_GET_HEAD, "/api/tags", _OLLAMA, summary="installed models", listing=Listing.TAGS),
    Endpoint(_GET, "/api/ps", _OLLAMA, summary="loaded models", listing=Listing.PROCESSES),
    Endpoint(
        _GET, "/v1/models", _OPENAI, summary="OpenAI model list", listing=Listing.OPENAI_MODELS
    ),
    Endpoint(
        frozenset({"HEAD", "POST"}),
        "/api/blobs/{digest}",
        _OLLAMA,
        summary="blobs",
        store_verb="blobs",
    ),
)

#: The model-store verbs, in the table's order: each changes what the upstream has
#: installed (or uploads to it, or publishes from it).
STORE_VERBS: tuple[str, ...] = tuple(e.store_verb for e in ENDPOINTS if e.store_verb)

_BY_PATH: dict[str, Endpoint] = {e.path: e for e in ENDPOINTS if "{" not in e.path}
_BY_PREFIX: tuple[tuple[str, Endpoint], ...] = tuple(
    (e.path.split("{", 1)[0], e) for e in ENDPOINTS if "{" in e.path
)


def find_endpoint(path: str) -> Endpoint | None:
    """Return the endpoint serving ``path`` (a WSGI ``PATH_INFO``), or None.

    A trailing slash does not match: Ollama (gin) redirects it instead of serving it.
    """
    endpoint = _BY_PATH.get(path)
    if endpoint is not None:
        return endpoint
    for prefix, endpoint in _BY_PREFIX:
        # A parameter is one path segment (gin: ":model" stops at "/").
        if path.startswith(prefix) and len(path) > len(prefix) and "/" not in path[len(prefix) :]:
            return endpoint
    return None


def dialect_for(path: str) -> Dialect:
    """Return the dialect clients of ``path`` speak, also for unknown paths."""
    endpoint = find_endpoint(path)
    if endpoint is not None:
        return endpoint.dialect
    return Dialect.OPENAI if path.startswith("/v1/") else Dialect.OLLAMA
