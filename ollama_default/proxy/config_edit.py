"""Rewrite the config file's alias target, keeping everything else: the other keys, their
order, comments and blank lines (tomlkit's document model), and write it atomically.

The new text is written to a temporary file in the file's own directory (so the rename
stays on one file system), with the file's mode, flushed to disk, then renamed over the
file (``os.replace``, atomic on POSIX): a reader, the proxy's watcher among them, sees the
old file or the new one, never a part.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import String

from ..core.errors import ConfigError
from ..core.names import name_key


def retarget(text: str, alias: str, target: str, *, where: str) -> tuple[str, str, str]:
    """Return ``text`` with alias ``alias`` pointing at ``target`` (the whole value of a
    plain alias, ``target`` of a table one), the alias's name as the file spells it, and
    its old target.

    :raises ConfigError: when the text is not TOML, or has no such alias in ``[aliases]``.
    """
    try:
        document = tomlkit.parse(text)
    except TOMLKitError as error:
        raise ConfigError(f"{where} is not valid TOML: {error}") from None
    aliases = document.get("aliases")
    if not isinstance(aliases, dict):
        raise ConfigError(f"{where} has no [aliases] table; add the alias there first")
    key = next((each for each in aliases if name_key(each) == name_key(alias)), None)
    if key is None:
        known = ", ".join(aliases) or "none"
        raise ConfigError(f"{where} has no alias {alias!r} in [aliases] (aliases: {known})")
    value: Any = aliases[key]
    if isinstance(value, str):
        old = str(value)
        new = tomlkit.string(target)
        if isinstance(value, String):  # keep the comment after it
            new.trivia.comment_ws = value.trivia.comment_ws
            new.trivia.comment = value.trivia.comment
            new.trivia.trail = value.trivia.trail
        aliases[key] = new
    elif isinstance(value, dict) and isinstance(value.get("target"), str):
        old = str(value["target"])
        value["target"] = target
    else:
        raise ConfigError(f"{where}: alias {key!r} is neither a target nor a table with one")
    return tomlkit.dumps(document), key, old


def replace_file(path: Path, text: str) -> None:
    """Replace ``path``'s content with ``text`` atomically, keeping its mode."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
