"""``python -m ollama_default``: the ``ollama-default`` command."""

from __future__ import annotations

import sys

from .proxy.cli import main

sys.exit(main())
