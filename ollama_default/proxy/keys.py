"""The proxy's API keys: those of ``OLLAMA_DEFAULT_API_KEYS`` and those of the key file.

The key file is read each time the app is built (:func:`~ollama_default.proxy.compose.build_app`),
so a reload of the configuration, which builds a new app, reads it again: a key removed
from it is refused from then on, with no restart.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ..core.errors import ConfigError
from ..ops.auth import ApiKey, keys_from_document, keys_from_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:
    from .config import Settings


def read_key_file(path: str) -> tuple[ApiKey, ...]:
    """Return the keys of the TOML key file at ``path``.

    :raises ConfigError: when it cannot be read, is not TOML, or holds a key that is not
        one (keyed ``api_keys_file``).
    """
    where = f"api_keys_file {path!r}"
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise ConfigError(
            f"{where} cannot be read: {error.strerror}", key="api_keys_file"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{where} is not valid TOML: {error}", key="api_keys_file") from None
    return keys_from_document(document, where)


def load_keys(settings: Settings) -> tuple[ApiKey, ...] | None:
    """Return every key ``settings`` let in, or None when no key is asked for at all.

    With ``api_keys_file`` set, keys are on even if the file holds none (every request is
    then refused): a file emptied by mistake must not open the proxy to everyone.

    :raises ConfigError: as :func:`read_key_file`, or for a name given in both places.
    """
    if not settings.api_keys and not settings.api_keys_file:
        return None
    keys = keys_from_text(settings.api_keys)
    if settings.api_keys_file:
        from_file = read_key_file(settings.api_keys_file)
        digests = {key.digest for key in keys}
        for key in from_file:
            if key.digest in digests:
                raise ConfigError(
                    f"api_keys_file: keys.{key.name} is also in OLLAMA_DEFAULT_API_KEYS",
                    key="api_keys_file",
                )
        keys += from_file
    return keys
