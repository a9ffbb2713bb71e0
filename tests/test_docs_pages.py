"""Pages of the docs held to what they promise: in the table of contents, and examples that load.

``docs/replacing.rst`` shows each of today's ways of naming a model (``ollama cp``, a
Modelfile, nginx + Lua, Open WebUI presets) beside the configuration that replaces it. Each
of those sections must be there, show today's way before ours, and every TOML block on the
page is a whole configuration file: it parses, names only keys the alias model knows, and
loads with the proxy's own reader, :func:`~ollama_default.proxy.config.load_settings`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from ollama_default.proxy.config import SETTINGS, load_settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGE = DOCS / "replacing.rst"
#: The keys of an alias given as a table (SPEC of #12).
ALIAS_KEYS = frozenset({"target", "defaults", "overrides", "strip", "system"})
#: What the page's last section shows that no other approach gives.
GAINS = frozenset({"hide_real_models", "default_names", "fallback_to_default"})
#: Each approach the page replaces: its section's anchor, and words of its title.
APPROACHES = {
    "replacing-cp": "ollama cp",
    "replacing-modelfile": "Modelfile",
    "replacing-nginx": "nginx",
    "replacing-open-webui": "Open WebUI",
}


class Block(NamedTuple):
    line: int  # where the block's text starts in the page
    language: str
    text: str


class Section(NamedTuple):
    anchor: str  # the ``.. _name:`` label before the title, or ""
    title: str
    blocks: list[Block]


def sections(path: Path) -> list[Section]:
    """The page's sections (level two, underlined with ``-``), with their code blocks."""
    lines = path.read_text().splitlines()
    found: list[Section] = []
    anchor = ""
    number = 0
    while number < len(lines):
        line = lines[number]
        label = re.fullmatch(r"\.\. _([\w-]+):", line)
        if label:
            anchor = label[1]
        underline = lines[number + 1] if number + 1 < len(lines) else ""
        if line and re.fullmatch(r"-{3,}", underline) and len(underline) >= len(line):
            found.append(Section(anchor, line, []))
            anchor = ""
            number += 2
            continue
        directive = re.fullmatch(r"(\s*)\.\. code-block:: *(\S+)", line)
        if directive and found:
            indent = len(directive[1])
            number += 1
            start, body = number + 1, []
            while number < len(lines) and (
                not lines[number].strip()
                or len(lines[number]) - len(lines[number].lstrip()) > indent
            ):
                body.append(lines[number])
                number += 1
            text = "\n".join(body).strip("\n")
            depth = min(len(row) - len(row.lstrip()) for row in text.splitlines() if row.strip())
            found[-1].blocks.append(
                Block(start, directive[2], "\n".join(row[depth:] for row in text.splitlines()))
            )
            continue
        number += 1
    return found


def toml_blocks() -> list[Block]:
    return [
        block for section in sections(PAGE) for block in section.blocks if block.language == "toml"
    ]


def toctree(index: Path) -> list[str]:
    """The entries of the first toctree of ``index``."""
    lines = index.read_text().splitlines()
    start = lines.index(".. toctree::") + 1
    entries = []
    for line in lines[start:]:
        if line and not line.startswith(" "):
            break
        if line.strip() and not line.strip().startswith(":"):
            entries.append(line.strip())
    return entries


def test_the_page_is_in_the_table_of_contents_after_the_proxy_and_middleware() -> None:
    entries = toctree(DOCS / "index.rst")
    assert "replacing" in entries
    assert entries.index("replacing") > max(entries.index("proxy"), entries.index("middleware"))


@pytest.mark.parametrize("anchor", APPROACHES)
def test_each_approach_is_shown_before_the_configuration_that_replaces_it(anchor: str) -> None:
    (section,) = [section for section in sections(PAGE) if section.anchor == anchor]
    assert APPROACHES[anchor] in section.title
    languages = [block.language for block in section.blocks]
    assert "toml" in languages, f"{section.title}: no TOML that replaces it"
    assert languages[0] != "toml", f"{section.title}: today's way is not shown first"


def test_the_page_says_what_none_of_them_gives() -> None:
    (section,) = [section for section in sections(PAGE) if section.anchor == "replacing-gains"]
    assert section.title == "What you get that none of them gives"
    (block,) = [block for block in section.blocks if block.language == "toml"]
    assert tomllib.loads(block.text).keys() >= GAINS


def test_the_page_has_toml_to_check() -> None:
    assert len(toml_blocks()) >= len(APPROACHES) + 1


@pytest.mark.parametrize("block", toml_blocks(), ids=lambda block: f"line-{block.line}")
def test_each_toml_example_uses_only_keys_the_alias_model_knows(block: Block) -> None:
    document = tomllib.loads(block.text)
    assert document.keys() <= SETTINGS.keys()
    for name, alias in document.get("aliases", {}).items():
        if isinstance(alias, dict):
            assert alias.keys() <= ALIAS_KEYS, f"alias {name!r}"
            assert isinstance(alias.get("target"), str), f"alias {name!r} has no target"
            for mode in ("defaults", "overrides"):
                assert isinstance(alias.get(mode, {}), dict), f"alias {name!r}: {mode}"
            assert isinstance(alias.get("strip", []), list), f"alias {name!r}: strip"
        else:
            assert isinstance(alias, str), f"alias {name!r}"


@pytest.mark.parametrize("block", toml_blocks(), ids=lambda block: f"line-{block.line}")
def test_each_toml_example_loads_as_the_proxy_loads_its_file(block: Block, tmp_path: Path) -> None:
    config = tmp_path / "ollama-default.toml"
    config.write_text(block.text + "\n")
    settings = load_settings({}, config_file=str(config))
    document = tomllib.loads(block.text)
    table = settings.alias_table
    assert set(table) == set(document["aliases"])
    for name, alias in document["aliases"].items():
        alias = alias if isinstance(alias, dict) else {"target": alias}
        route = table[name]
        assert route.target == alias["target"]
        defaults = alias.get("defaults", {}) | (
            {"system": alias["system"]} if "system" in alias else {}
        )
        assert dict(route.params.defaults) == defaults, name
        assert dict(route.params.overrides) == alias.get("overrides", {}), name
        assert list(route.params.strip) == alias.get("strip", []), name
    default = document.get("default", next(iter(table)) if len(table) == 1 else None)
    assert (table.default.alias if table.default else None) == default
