"""The alias table: lookups the way Ollama compares names; bad tables fail at once."""

from __future__ import annotations

import pytest

from ollama_default import AliasTable, ConfigError


@pytest.mark.parametrize(
    "spelling", ["llmodel", "llmodel:latest", "LLModel", "library/llmodel", " llmodel "]
)
def test_an_alias_matches_every_spelling_ollama_accepts(spelling: str) -> None:
    table = AliasTable({"llmodel": "aya-expanse:8b-q8_0"})
    route = table.resolve(spelling)
    assert route is not None
    assert route.target == "aya-expanse:8b-q8_0"


@pytest.mark.parametrize("name", ["aya-expanse:8b-q8_0", "llmodel:7b", "llmodel2", "other/llmodel"])
def test_other_names_are_not_aliases(name: str) -> None:
    assert AliasTable({"llmodel": "aya-expanse:8b-q8_0"}).resolve(name) is None


def test_a_single_alias_is_the_default() -> None:
    table = AliasTable({"llmodel": "aya-expanse:8b-q8_0"})
    assert table.default is not None
    assert table.default.alias == "llmodel"


def test_several_aliases_have_no_default_unless_named() -> None:
    mapping = {"llmodel": "aya-expanse:8b-q8_0", "embed": "nomic-embed-text"}
    assert AliasTable(mapping).default is None
    default = AliasTable(mapping, default="embed").default
    assert default is not None
    assert default.target == "nomic-embed-text"


def test_the_table_is_a_read_only_mapping_of_routes() -> None:
    table = AliasTable({"llmodel": "aya-expanse:8b-q8_0", "embed": "nomic-embed-text"})
    assert sorted(table) == ["embed", "llmodel"]
    assert table["embed"].target == "nomic-embed-text"
    assert len(table) == 2


def test_a_cloud_target_is_also_known_by_its_base_name() -> None:
    route = AliasTable({"big": "gpt-oss:120b-cloud"}).resolve("big")
    assert route is not None
    assert "registry.ollama.ai/library/gpt-oss:120b" in route.target_keys


@pytest.mark.parametrize(
    ("mapping", "default", "message"),
    [
        ({"llmodel": "llmodel:latest"}, None, "alias 'llmodel' points at itself"),
        ({"bad name": "m"}, None, "alias 'bad name' is not a valid Ollama model name"),
        ({"a": "not valid!"}, None, "target 'not valid!' of alias 'a' is not a valid"),
        ({"a": "b", "b": "m"}, None, "target 'b' of alias 'a' is itself an alias"),
        ({"a": "m", "A:latest": "n"}, None, "alias 'A:latest' names the same model as 'a'"),
        ({"a": "m"}, "b", "default 'b' is not one of the aliases ['a']"),
        ({"a": 3}, None, "target 3 of alias 'a' is not a valid Ollama model name"),
    ],
    ids=["self", "bad-alias", "bad-target", "chain", "duplicate", "unknown-default", "not-str"],
)
def test_an_inconsistent_table_is_a_one_line_config_error(
    mapping: dict[str, str], default: str | None, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        AliasTable(mapping, default)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
    # Which of the two is at fault, for the settings to name its source.
    assert raised.value.key == ("default" if default is not None else "aliases")
