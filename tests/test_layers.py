"""The layers hold: the pure core does no I/O and imports nothing above it (import-linter,
with the contracts in ``pyproject.toml``), and those contracts catch what they forbid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(config: Path, cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(config)],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(pythonpath)},
    )  # fmt: skip


def test_the_package_keeps_its_layers() -> None:
    result = lint_imports(ROOT / "pyproject.toml", ROOT, ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "source", "broken"),
    [
        ("core/clock.py", "import time\n", "the core does no I/O"),
        ("core/files.py", "from pathlib import Path\n", "the core does no I/O"),
        ("core/net.py", "import socket\n", "the core does no I/O"),
        ("core/chance.py", "from random import random\n", "the core does no I/O"),
        ("core/up.py", "from .. import wsgi\n", "proxy above ops above the WSGI layer"),
        ("middleware.py", "from .proxy import forwarder\n", "proxy above ops above"),
    ],
    ids=["time", "files", "sockets", "randomness", "core-imports-wsgi", "wsgi-imports-proxy"],
)
def test_the_contracts_catch_what_they_forbid(
    tmp_path: Path, module: str, source: str, broken: str
) -> None:
    # A package laid out as ours, checked with our own contracts, with one bad import.
    package = tmp_path / "layered"
    for name in ("core/__init__.py", "core/names.py", "ops/__init__.py", "proxy/__init__.py",
                 "proxy/forwarder.py", "__init__.py", "wsgi.py", "middleware.py"):  # fmt: skip
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text("")
    (package / module).write_text(source)
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    lines = ["[importlinter]", "root_package = layered", "include_external_packages = True"]
    for contract in settings["contracts"]:
        lines.append(f"\n[importlinter:contract:{contract['id']}]")
        for key, value in contract.items():
            if key == "id":
                continue
            if isinstance(value, list):
                value = "\n    " + "\n    ".join(
                    v.replace("ollama_default", "layered") for v in value
                )
            lines.append(f"{key} = {value}")
    config = tmp_path / ".importlinter"
    config.write_text("\n".join(lines) + "\n")
    result = lint_imports(config, tmp_path, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{broken}" in result.stdout
    assert "BROKEN" in result.stdout
