"""ollama-default: a default model and model aliases for any Ollama API.

>>> from ollama_default import DefaultModel
>>> app = DefaultModel(app, alias="llmodel", target="aya-expanse:8b-q8_0")  # doctest: +SKIP
"""

from __future__ import annotations

from .core.aliases import AliasTable, Route
from .core.errors import ConfigError
from .core.params import Alias
from .middleware import DefaultModel

__version__ = "0.1.0.dev0"

__all__ = ["Alias", "AliasTable", "ConfigError", "DefaultModel", "Route", "__version__"]
