"""Sphinx configuration for ollama-default."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "docs" / "_ext")]

import ollama_default  # noqa: E402

project = "ollama-default"
release = version = ollama_default.__version__
extensions = ["sphinx.ext.autodoc", "tables"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
nitpicky = False
html_theme = "alabaster"
exclude_patterns = ["_build"]
