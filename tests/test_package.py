"""The package as users import and run it."""

from __future__ import annotations

import subprocess
import sys

import ollama_default


def test_the_public_names_are_exported() -> None:
    assert set(ollama_default.__all__) == {
        "AliasTable", "ConfigError", "DefaultModel", "Route", "__version__"
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
