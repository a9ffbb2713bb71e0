"""API keys: who may use the proxy, which models, and which model-store verbs.

:class:`KeyCheck` lets in a request that carries one of its keys, as ``Authorization:
Bearer <key>`` (what the ``openai`` and ``ollama`` clients send) or ``x-api-key: <key>``
(what Anthropic's clients send), and answers any other 401 in the client's dialect. The
client's credentials stop here: both headers are removed before the request goes on, so
the upstream never sees them (it gets its own, if the operator configured one).

Keys are kept and compared as SHA-256 hashes. A key is a random token of 128 bits or more
(``ollama-default hash-key --new`` makes one), not a password: nobody can guess it or
search for it by its hash, so a slow password KDF (bcrypt, scrypt, argon2) would add only
a per-request cost, and a plain hash is what GitHub, Stripe and most API-key stores use.
The hash of what the client sent is compared with every key's, each with
:func:`hmac.compare_digest` and with no early exit, so neither the time nor anything else
says which key matched, or how nearly.

A key may be limited to some aliases (:data:`~ollama_default.wsgi.ALLOWED_ALIASES_KEY`,
which :class:`~ollama_default.DefaultModel` enforces where it decides the model) and may
open model-store verbs for itself (:class:`~ollama_default.ops.store.ModelStore` reads
them). The access log names the key by its id (:data:`~ollama_default.wsgi.KEY_ID_KEY`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.aliases import AliasTable
from ..core.endpoints import find_endpoint
from ..core.errors import ConfigError, RequestError
from ..core.paths import store_endpoint
from ..wsgi import (
    ALLOWED_ALIASES_KEY,
    API_KEY_KEY,
    KEY_ID_KEY,
    REFUSED_KEY,
    respond_error,
)
from .store import store_verbs

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: How a stored hash is written: the algorithm, a colon, 64 hex digits.
HASH_PREFIX = "sha256:"
#: The shortest key taken: 16 characters of a random token are 96 bits or more.
MIN_KEY_CHARS = 16
#: The paths under this prefix have their own access rules (the status page's networks).
OWN_RULES_PREFIX = "/-/"
_HASH = re.compile(r"sha256:[0-9a-f]{64}")
_FILE_FIELDS = frozenset({"hash", "aliases", "open_model_store", "max_concurrent"})
_CHALLENGE = ("WWW-Authenticate", 'Bearer realm="ollama-default"')


def hash_key(key: str) -> str:
    """Return the hash a key is stored as: ``sha256:`` and 64 hex digits.

    >>> hash_key("correct horse battery staple")
    'sha256:c4bbcb1fbec99d65bf59d85c8cb62ee2db963f0fe106f483d9afa73bd4e39a8a'
    """
    return HASH_PREFIX + hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """One key: its id, its hash, and what it may do.

    :param name: how the access log and the status name it; never the key.
    :param digest: the SHA-256 of the key.
    :param aliases: the aliases it may use (names as in the alias table), or None for
        every model.
    :param store_verbs: the model-store verbs it may use besides those open to all.
    :param max_concurrent: its own cap on requests at once (the limits read it), or None.
    """

    name: str
    digest: bytes = field(repr=False)
    aliases: frozenset[str] | None = None
    store_verbs: frozenset[str] = frozenset()
    max_concurrent: int | None = None


def keys_from_text(keys: Iterable[str], *, key: str = "api_keys") -> tuple[ApiKey, ...]:
    """Return keys with full client access (any model, no store verb), each named
    ``key-`` and the first 8 hex digits of its hash.

    :raises ConfigError: for a key shorter than :data:`MIN_KEY_CHARS` (the message never
        quotes it) or one given twice.
    """
    found: list[ApiKey] = []
    for number, text in enumerate(keys, 1):
        if len(text) < MIN_KEY_CHARS or not text.isprintable() or " " in text:
            raise ConfigError(
                f"{key}: key {number} is not a key: use a random token of at least "
                f"{MIN_KEY_CHARS} characters, such as ollama-default hash-key --new makes",
                key=key,
            )
        digest = hashlib.sha256(text.encode()).digest()
        found.append(ApiKey(f"key-{digest.hex()[:8]}", digest))
    return _unique(found, key)


def keys_from_document(
    document: Mapping[str, Any], where: str, *, key: str = "api_keys_file"
) -> tuple[ApiKey, ...]:
    """Return the keys of a key file's TOML document (``[keys.NAME]`` tables).

    :param where: the file, for messages.
    :raises ConfigError: naming the file and the key at fault.
    """
    unknown = sorted(set(document) - {"keys"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (keys go in [keys.NAME])", key=key)
    tables = document.get("keys", {})
    if not isinstance(tables, Mapping):
        raise ConfigError(f"{where}: keys must be tables [keys.NAME]", key=key)
    found: list[ApiKey] = []
    for name, table in tables.items():
        at = f"{where}: keys.{name}"
        if not isinstance(table, Mapping):
            raise ConfigError(f"{at} must be a table with a hash", key=key)
        extra = sorted(set(table) - _FILE_FIELDS)
        if extra:
            known = ", ".join(sorted(_FILE_FIELDS))
            raise ConfigError(f"{at}: unknown field {extra[0]!r} (known: {known})", key=key)
        digest = table.get("hash")
        if not isinstance(digest, str) or not _HASH.fullmatch(digest):
            raise ConfigError(
                f"{at}: hash must be 'sha256:' and 64 lower-case hex digits "
                "(ollama-default hash-key prints it), not the key itself",
                key=key,
            )
        aliases = table.get("aliases")
        if aliases is not None and not (
            isinstance(aliases, list) and all(isinstance(a, str) and a for a in aliases)
        ):
            raise ConfigError(f"{at}: aliases must be a list of aliases", key=key)
        verbs = store_verbs(f"{at}.open_model_store", table.get("open_model_store", ()))
        limit = table.get("max_concurrent")
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0
        ):
            raise ConfigError(f"{at}: max_concurrent must be a positive whole number", key=key)
        found.append(
            ApiKey(
                str(name),
                bytes.fromhex(digest.removeprefix(HASH_PREFIX)),
                None if aliases is None else frozenset(aliases),
                frozenset(verbs),
                limit,
            )
        )
    return _unique(found, key)


def _unique(keys: Sequence[ApiKey], key: str) -> tuple[ApiKey, ...]:
    seen: dict[bytes, str] = {}
    for each in keys:
        if each.digest in seen:
            raise ConfigError(
                f"{key}: {each.name!r} is the same key as {seen[each.digest]!r}", key=key
            )
        seen[each.digest] = each.name
    return tuple(keys)


def presented_key(environ: WSGIEnvironment) -> str | None:
    """Return the key a request carries, ``Authorization: Bearer`` first, else
    ``x-api-key``; None when it carries neither."""
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return str(token.strip())
    api_key = environ.get("HTTP_X_API_KEY", "").strip()
    return str(api_key) or None


class KeyCheck:
    """WSGI middleware: only requests with one of ``keys`` get through.

    >>> keys = keys_from_text(["0123456789abcdef0123"])
    >>> app = KeyCheck(ModelStore(DefaultModel(ollama, mapping=table)), keys)  # doctest: +SKIP

    A missing or wrong key gets 401 (with ``WWW-Authenticate: Bearer``); a key limited to
    some aliases gets 403 for any path that is not one of Ollama's endpoints, and
    :class:`~ollama_default.DefaultModel` refuses it any other model. Paths under ``/-/``
    are left to their own rules. ``Authorization`` and ``x-api-key`` are removed from every
    request that goes on.

    :param app: the WSGI app behind it.
    :param keys: the keys let in (:func:`keys_from_text`, :func:`keys_from_document`); none
        at all refuses every request.
    :param aliases: the alias table, to check the aliases keys are limited to; a key naming
        one that is not an alias is a configuration error.
    :raises ConfigError: for such a key.
    """

    def __init__(
        self, app: WSGIApplication, keys: Iterable[ApiKey], *, aliases: AliasTable | None = None
    ) -> None:
        self.app = app
        checked: list[ApiKey] = []
        for each in keys:
            if each.aliases is not None:
                each = _resolved(each, aliases)
            checked.append(each)
        self.keys = tuple(checked)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "") or "/"
        if path.startswith(OWN_RULES_PREFIX):
            return self.app(environ, start_response)
        presented = presented_key(environ)
        # The client's credentials are for us: never sent on.
        environ.pop("HTTP_AUTHORIZATION", None)
        environ.pop("HTTP_X_API_KEY", None)
        if presented is None:
            return self._refuse(environ, start_response, 401, _MISSING)
        digest = hashlib.sha256(presented.encode()).digest()
        found: ApiKey | None = None
        for each in self.keys:
            # Every key is compared, in constant time: nothing tells which one matched.
            if hmac.compare_digest(digest, each.digest):
                found = each
        if found is None:
            return self._refuse(environ, start_response, 401, "invalid API key")
        environ[KEY_ID_KEY] = found.name
        environ[API_KEY_KEY] = found
        if found.aliases is not None:
            environ[ALLOWED_ALIASES_KEY] = found.aliases
            if find_endpoint(path) is None and store_endpoint(path) is None:
                message = f"this API key may not use {path!r}: only Ollama's model endpoints"
                return self._refuse(environ, start_response, 403, message)
        return self.app(environ, start_response)

    @staticmethod
    def _refuse(
        environ: WSGIEnvironment, start_response: StartResponse, status: int, message: str
    ) -> list[bytes]:
        environ[REFUSED_KEY] = "auth"
        headers = [_CHALLENGE] if status == 401 else []
        return respond_error(
            environ, start_response, RequestError(status, message, headers=headers)
        )


_MISSING = "missing API key: send it as Authorization: Bearer <key>, or as x-api-key: <key>"


def _resolved(key: ApiKey, aliases: AliasTable | None) -> ApiKey:
    """``key`` with its aliases named as the alias table names them."""
    names: set[str] = set()
    for alias in sorted(key.aliases or ()):
        route = aliases.resolve(alias) if aliases is not None else None
        if route is None:
            raise ConfigError(
                f"api_keys_file: keys.{key.name}: {alias!r} is not an alias", key="api_keys_file"
            )
        names.add(route.alias)
    return ApiKey(key.name, key.digest, frozenset(names), key.store_verbs, key.max_concurrent)
