"""What the package's WSGI pieces share: the names of the keys they leave in ``environ``.

The middleware records what it decided, and the forwarder and the prefix mount why they
answered with an error, so that a piece further out (the access log) can report it
without parsing anything again. PEP 3333 asks for names of this dotted form.
"""

from __future__ import annotations

#: The model name the client used, when it was an alias (or the default alias, when the
#: request named no model).
ALIAS_KEY = "ollama_default.alias"
#: The model the request was sent upstream with: the alias's target, or the model the
#: client named itself.
MODEL_KEY = "ollama_default.model"
#: Why the request did not get the upstream's own answer: refused input, the upstream
#: unreachable or slow, a stream cut short.
ERROR_KEY = "ollama_default.error"

#: The response header naming the real model that answered a request for an alias.
TARGET_HEADER = "X-Ollama-Default-Target"
