"""The package as users import and run it."""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ollama_default


def test_the_public_names_are_exported() -> None:
    assert set(ollama_default.__all__) == {
        "Alias", "AliasTable", "ConfigError", "DefaultModel", "Route", "__version__"
    }  # fmt: skip
    table = ollama_default.AliasTable({"llmodel": "qwen3:4b"})
    assert isinstance(table.resolve("llmodel"), ollama_default.Route)


def test_python_dash_m_runs_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ollama_default", "--version"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0
    assert result.stdout.strip() == f"ollama-default {ollama_default.__version__}"


def test_importing_the_proxy_builds_nothing_until_its_app_is_asked_for(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("upstreams = 1\n")
    program = (
        "import ollama_default.proxy, ollama_default.proxy.cli, ollama_default.proxy.compose\n"
        "from ollama_default import ConfigError\n"
        "try:\n"
        "    ollama_default.proxy.app\n"
        "except ConfigError as error:\n"
        "    print('refused:', error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=30,
        env={**os.environ, "OLLAMA_DEFAULT_CONFIG": str(bad)}, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("refused: config file ")
    assert "unknown key 'upstreams'" in result.stdout


def test_the_proxy_app_is_built_once_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OLLAMA_DEFAULT_ALIAS", "llmodel")
    monkeypatch.setenv("OLLAMA_DEFAULT_TARGET", "qwen3:4b")
    monkeypatch.delitem(sys.modules, "ollama_default.proxy", raising=False)
    proxy = importlib.import_module("ollama_default.proxy")
    try:
        assert callable(proxy.app)
        assert proxy.app is proxy.app
        assert "app" in vars(proxy)  # cached: the module hook runs once
    finally:
        logger = logging.getLogger("ollama_default")
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
