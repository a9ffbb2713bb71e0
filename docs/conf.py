"""Sphinx configuration for ollama-default."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "docs" / "_ext")]

import ollama_default  # noqa: E402

project = "ollama-default"
author = "the ollama-default authors"
copyright = "the ollama-default authors (MIT License)"
release = version = ollama_default.__version__
extensions = ["sphinx.ext.autodoc", "tables"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
nitpicky = False
exclude_patterns = ["_build"]
# A bare ``::`` block is a shell command or program output far more often than Python here;
# Python and TOML blocks say so (``.. code-block:: python``).
highlight_language = "none"

# Furo: maintained, readable at any width, and it scrolls a wide table or a long code line
# inside its own box instead of clipping it or pushing the page sideways.
html_theme = "furo"
html_title = f"ollama-default {release}"
html_static_path = ["_static"]
html_css_files = ["tables.css"]
html_show_sourcelink = False
