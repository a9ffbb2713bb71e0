"""Ollama's model-name grammar: which spellings name the same model.

Ollama accepts ``mistral``, ``mistral:latest``, ``library/mistral`` and
``registry.ollama.ai/library/MISTRAL:Latest`` as one model (``types/model/name.go``:
``ParseNameBare``, ``DisplayShortest``; lookups use ``strings.EqualFold``). Aliases must
follow the same rules, and responses name models in several of these forms, so both the
request and the response side compare names through :func:`name_key`.

Pure functions over strings: no I/O, no WSGI.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

# types/model/name.go isValidPart: model and tag 1-80 characters of [A-Za-z0-9_.-] not
# starting with . or -, namespace the same without '.', host may also hold ':' (a port).
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}")
_NAMESPACE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,79}")
_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}")

# internal/modelref/modelref.go: "x:cloud" and "x:<tag>-cloud" are cloud references that
# Ollama forwards as the base name "x" / "x:<tag>", and ollama.com echoes the base name.
_CLOUD_TAG = re.compile(r"(?:^|-)cloud$", re.IGNORECASE)


class ModelName(NamedTuple):
    """A parsed model name with Ollama's defaults filled in."""

    host: str
    namespace: str
    model: str
    tag: str

    def display_shortest(self) -> str:
        """Return the form Ollama lists models in: ``llama3.2:latest``, ``user/m:latest``."""
        if self.host.lower() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    def fully_qualified(self) -> str:
        """Return ``registry.ollama.ai/library/x:latest``, the form some errors use."""
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    def cloud_base(self) -> ModelName | None:
        """Return the name Ollama forwards a ``:cloud`` reference as, or None."""
        match = _CLOUD_TAG.search(self.tag)
        if match is None:
            return None
        base_tag = self.tag[: match.start()] or DEFAULT_TAG
        return self._replace(tag=base_tag)


def parse_name(name: str) -> ModelName | None:
    """Parse ``[host/][namespace/]model[:tag]``; return None when Ollama would reject it.

    Surrounding white space is ignored, as ``modelref.ParseRef`` trims it.
    """
    name = name.strip()
    rest, tag = name, DEFAULT_TAG
    colon = name.rfind(":")
    # The text after the last ':' is a tag only when it follows the last '/', so the
    # port in "myreg:5000/ns/m" is not a tag.
    if colon > name.rfind("/"):
        rest, tag = name[:colon], name[colon + 1 :]
    parts = rest.split("/")
    if len(parts) > 3:
        return None
    host = parts[-3] if len(parts) == 3 else DEFAULT_HOST
    namespace = parts[-2] if len(parts) >= 2 else DEFAULT_NAMESPACE
    model = parts[-1]
    valid = (
        _HOST.fullmatch(host)
        and _NAMESPACE.fullmatch(namespace)
        and _PART.fullmatch(model)
        and _PART.fullmatch(tag)
    )
    return ModelName(host, namespace, model, tag) if valid else None


@functools.lru_cache(maxsize=4096)
def name_key(name: str) -> str:
    """Return a key equal for every spelling of one model, as Ollama compares names.

    Names Ollama would reject keep their own (stripped, case-folded) text as key, so
    they still compare equal to themselves. Cached: every request looks one up, and
    clients send the same few names.
    """
    parsed = parse_name(name)
    if parsed is None:
        return name.strip().lower()
    return parsed.fully_qualified().lower()
