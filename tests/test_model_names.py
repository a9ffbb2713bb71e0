"""Ollama's model-name grammar, as ``types/model/name.go`` defines it."""

from __future__ import annotations

import pytest

from ollama_default.core.names import ModelName, name_key, parse_name


@pytest.mark.parametrize(
    ("spelling"),
    [
        "mistral",
        "mistral:latest",
        "library/mistral",
        "registry.ollama.ai/library/mistral:latest",
        "MISTRAL:Latest",
        "  mistral  ",
    ],
)
def test_spellings_of_one_model_share_a_key(spelling: str) -> None:
    assert name_key(spelling) == name_key("mistral")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("mistral", "mistral:7b"),
        ("mistral", "myuser/mistral"),
        ("mistral", "mistral-nemo"),
        ("hf.co/a/m:q4", "a/m:q4"),
    ],
)
def test_different_models_have_different_keys(first: str, second: str) -> None:
    assert name_key(first) != name_key(second)


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("llama3.2", ModelName("registry.ollama.ai", "library", "llama3.2", "latest")),
        ("user/m:q4", ModelName("registry.ollama.ai", "user", "m", "q4")),
        ("myreg:5000/ns/m", ModelName("myreg:5000", "ns", "m", "latest")),
        (
            "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
            ModelName("hf.co", "bartowski", "Llama-3.2-1B-Instruct-GGUF", "Q4_K_M"),
        ),
    ],
    ids=["bare", "namespace-and-tag", "port-is-not-a-tag", "huggingface"],
)
def test_parse_fills_in_ollama_defaults(name: str, parsed: ModelName) -> None:
    assert parse_name(name) == parsed


@pytest.mark.parametrize(
    "name", ["", "   ", "has space", "a/b/c/d", "m:", ":tag", "-m", "m@sha", "ns.dot/m"]
)
def test_names_ollama_rejects_do_not_parse(name: str) -> None:
    assert parse_name(name) is None


@pytest.mark.parametrize(
    ("name", "shortest"),
    [
        ("llama3.2", "llama3.2:latest"),
        ("library/llama3.2:1b", "llama3.2:1b"),
        ("myuser/m", "myuser/m:latest"),
        ("hf.co/a/m:Q4", "hf.co/a/m:Q4"),
    ],
)
def test_display_shortest_is_the_listing_form(name: str, shortest: str) -> None:
    parsed = parse_name(name)
    assert parsed is not None
    assert parsed.display_shortest() == shortest


@pytest.mark.parametrize(
    ("name", "base"),
    [
        ("gpt-oss:120b-cloud", "gpt-oss:120b"),
        ("gpt-oss:cloud", "gpt-oss:latest"),
        ("deepseek:CLOUD", "deepseek:latest"),
    ],
)
def test_cloud_references_have_the_base_name_ollama_forwards(name: str, base: str) -> None:
    parsed = parse_name(name)
    assert parsed is not None
    cloud_base = parsed.cloud_base()
    assert cloud_base is not None
    assert cloud_base.display_shortest() == base


def test_local_models_have_no_cloud_base() -> None:
    parsed = parse_name("mistral:7b")
    assert parsed is not None
    assert parsed.cloud_base() is None


def test_invalid_names_still_compare_to_themselves() -> None:
    assert name_key("has space") == name_key(" HAS SPACE ")
    assert name_key("has space") != name_key("has-space")
