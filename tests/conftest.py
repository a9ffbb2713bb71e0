"""Shared fixtures: every test starts from a clean environment."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# Examples are judged on what they find, not how fast they run: a loaded 2-core CI
# machine must not turn a slow example into a failure.
settings.register_profile("default", deadline=None)
settings.load_profile("default")

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clear our own settings and any HTTP proxy, so no test depends on the shell."""
    for name in list(os.environ):
        if name.startswith("OLLAMA_DEFAULT_") or name.lower() in _PROXY_VARIABLES:
            monkeypatch.delenv(name)
