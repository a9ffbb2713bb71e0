"""The listings with aliases in them (``core/listings.py``), without WSGI: the fake
upstream's real-looking ``/api/tags``, ``/api/ps``, ``/v1/models`` replies in, bytes out."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fake_ollama import FakeOllama
from webtest import TestApp

from ollama_default import AliasTable
from ollama_default.core.aliases import Route
from ollama_default.core.listings import Listing, ListingRewriter

TARGET = "aya-expanse:8b-q8_0"
TABLE = AliasTable(
    {"llmodel": TARGET, "embed": "nomic-embed-text", "missing": "qwen3:32b"}, default="llmodel"
)


def upstream(path: str, *, loaded: tuple[str, ...] = ()) -> bytes:
    """The fake Ollama's reply to ``GET path``, after loading ``loaded``."""
    app = TestApp(FakeOllama())
    for model in loaded:
        app.post_json("/api/generate", {"model": model})  # no prompt: loads it
    body: bytes = app.get(path).body
    return body


def entries(document: bytes, key: str = "models") -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json.loads(document)[key] or []
    return listed


def by_name(listed: list[dict[str, Any]], field: str = "name") -> dict[str, dict[str, Any]]:
    return {entry[field]: entry for entry in listed}


def test_tags_list_each_alias_as_a_copy_of_its_target_named_as_ollama_lists_it() -> None:
    document = upstream("/api/tags")
    rewritten = ListingRewriter(TABLE).rewrite_list(Listing.TAGS, document)
    listed = entries(rewritten)
    # Aliases first, in the table's order; then the upstream's entries, as they were.
    assert [entry["name"] for entry in listed] == [
        "llmodel:latest",
        "embed:latest",
        *(entry["name"] for entry in entries(document)),
    ]
    real = by_name(entries(document))
    for alias, target in (("llmodel:latest", TARGET), ("embed:latest", "nomic-embed-text:latest")):
        entry = by_name(listed)[alias]
        assert entry["model"] == alias
        assert {**entry, "name": target, "model": target} == real[target]
        assert list(entry) == list(real[target])  # Go's field order
    # The upstream's bytes are spliced in unchanged.
    assert rewritten.endswith(document[len(b'{"models":[') :])


def test_an_alias_whose_target_is_not_installed_is_not_listed() -> None:
    listed = entries(ListingRewriter(TABLE).rewrite_list(Listing.TAGS, upstream("/api/tags")))
    assert not [entry for entry in listed if entry["name"].startswith(("missing", "qwen3"))]


def test_an_empty_upstream_lists_nothing_and_stays_as_it_was() -> None:
    assert ListingRewriter(TABLE).rewrite_list(Listing.TAGS, b'{"models":[]}') == b'{"models":[]}'
    empty = b'{"object":"list","data":null}\n'
    assert ListingRewriter(TABLE).rewrite_list(Listing.OPENAI_MODELS, empty) == empty


def test_hidden_real_models_leave_the_aliases_only() -> None:
    rewriter = ListingRewriter(TABLE, hide_real_models=True)
    tags = entries(rewriter.rewrite_list(Listing.TAGS, upstream("/api/tags")))
    assert [entry["name"] for entry in tags] == ["llmodel:latest", "embed:latest"]
    models = entries(rewriter.rewrite_list(Listing.OPENAI_MODELS, upstream("/v1/models")), "data")
    assert [entry["id"] for entry in models] == ["llmodel:latest", "embed:latest"]
    ps = upstream("/api/ps", loaded=(TARGET, "llama3.2"))
    assert [entry["name"] for entry in entries(rewriter.rewrite_list(Listing.PROCESSES, ps))] == [
        "llmodel:latest"
    ]


def test_hidden_real_models_and_no_alias_installed_list_nothing() -> None:
    rewriter = ListingRewriter(AliasTable({"x": "qwen3:32b"}), hide_real_models=True)
    assert rewriter.rewrite_list(Listing.TAGS, upstream("/api/tags")) == b'{"models":[]}'
    models = rewriter.rewrite_list(Listing.OPENAI_MODELS, upstream("/v1/models"))
    assert models == b'{"object":"list","data":null}\n'


def test_hidden_real_models_leave_out_the_names_of_other_real_models() -> None:
    cloud = {
        "name": "gpt-oss:120b-cloud",
        "model": "gpt-oss:120b-cloud",
        "remote_model": "gpt-oss:120b",
        "remote_host": "https://ollama.com:443",
        "size": 384,
        "digest": "abc",
        "details": {"parent_model": "gpt-oss:120b", "format": ""},
    }
    document = json.dumps({"models": [cloud]}).encode()
    table = AliasTable({"big": "gpt-oss:120b-cloud"})
    (shown,) = entries(ListingRewriter(table, hide_real_models=True).rewrite_list(
        Listing.TAGS, document
    ))  # fmt: skip
    assert shown == {
        "name": "big:latest",
        "model": "big:latest",
        "remote_host": "https://ollama.com:443",
        "size": 384,
        "digest": "abc",
        "details": {"parent_model": "", "format": ""},
    }
    # Not hidden: a faithful copy.
    shown, real = entries(ListingRewriter(table).rewrite_list(Listing.TAGS, document))
    assert {**shown, "name": real["name"], "model": real["model"]} == cloud


def test_a_real_model_an_alias_hides_is_not_listed() -> None:
    # Requests for "llama3.2" reach the alias's target: listing the real one would lie.
    table = AliasTable({"llama3.2": TARGET})
    listed = entries(ListingRewriter(table).rewrite_list(Listing.TAGS, upstream("/api/tags")))
    names = [entry["name"] for entry in listed]
    assert names.count("llama3.2:latest") == 1
    assert by_name(listed)["llama3.2:latest"]["digest"] == by_name(listed)[TARGET]["digest"]


@pytest.mark.parametrize(
    ("alias", "listed_as", "owned_by"),
    [
        ("llmodel", "llmodel:latest", "library"),
        ("LLModel:Fast", "LLModel:Fast", "library"),
        ("team/llmodel", "team/llmodel:latest", "team"),
        ("registry.example.com/team/m:v1", "registry.example.com/team/m:v1", "team"),
    ],
    ids=["tagless", "tag-and-case-kept", "namespace", "host"],
)
def test_openai_models_list_the_alias_as_ollama_would(
    alias: str, listed_as: str, owned_by: str
) -> None:
    document = upstream("/v1/models")
    rewritten = ListingRewriter(AliasTable({alias: TARGET})).rewrite_list(
        Listing.OPENAI_MODELS, document
    )
    real = by_name(entries(document, "data"), "id")[TARGET]
    first = entries(rewritten, "data")[0]
    # ToListCompletion: created from the target's modified time; owned_by the namespace
    # of the listed id (openai/openai.go:450-468).
    assert first == {"id": listed_as, "object": "model", "created": real["created"],
                     "owned_by": owned_by}  # fmt: skip
    assert rewritten.endswith(document[len(b'{"object":"list","data":[') :])


def test_ps_lists_an_alias_whose_target_is_loaded_with_its_runtime_state() -> None:
    document = upstream("/api/ps", loaded=(TARGET,))
    listed = entries(ListingRewriter(TABLE).rewrite_list(Listing.PROCESSES, document))
    assert [entry["name"] for entry in listed] == ["llmodel:latest", TARGET]
    alias, real = listed
    assert {**alias, "name": TARGET, "model": TARGET} == real
    for field in ("size", "size_vram", "expires_at", "context_length", "digest", "details"):
        assert alias[field] == real[field]


def test_ps_leaves_out_an_alias_whose_target_is_not_loaded() -> None:
    document = upstream("/api/ps", loaded=("llama3.2",))
    assert ListingRewriter(TABLE).rewrite_list(Listing.PROCESSES, document) == document
    assert ListingRewriter(TABLE).rewrite_list(Listing.PROCESSES, b'{"models":[]}') == (
        b'{"models":[]}'
    )


@pytest.mark.parametrize(
    "document",
    [b"", b"not json", b"[]", b'{"models":{}}', b'{"error":"x"}', b"\xff", b'{"models":[1,"x"]}'],
    ids=["empty", "not-json", "array", "models-not-a-list", "error", "not-utf8", "odd-entries"],
)
def test_what_is_not_a_listing_passes_as_it_came(document: bytes) -> None:
    assert ListingRewriter(TABLE).rewrite_list(Listing.TAGS, document) == document


def test_another_layout_is_reencoded_with_every_member_kept() -> None:
    # Not as Go writes it (spaces, another key first): parsed, and written again whole.
    document = b'{"extra": 1, "models": [{"name": "aya-expanse:8b-q8_0", "size": 5}]}'
    rewritten = json.loads(ListingRewriter(TABLE).rewrite_list(Listing.TAGS, document))
    assert rewritten == {
        "extra": 1,
        "models": [
            {"name": "llmodel:latest", "size": 5, "model": "llmodel:latest"},
            {"name": "aya-expanse:8b-q8_0", "size": 5},
        ],
    }


def show(name: str, user_agent: str = "") -> bytes:
    app = TestApp(FakeOllama())
    body: bytes = app.post_json(
        "/api/show", {"model": name}, headers={"User-Agent": user_agent}
    ).body
    return body


def test_show_names_the_alias_in_the_modelfile_as_for_an_installed_model() -> None:
    route = TABLE["llmodel"]
    document = show(TARGET)
    rewritten = ListingRewriter(TABLE).rewrite_details(Listing.SHOW, document, "llmodel", route)
    shown, real = json.loads(rewritten), json.loads(document)
    assert "# FROM llmodel:latest\n" in shown["modelfile"]
    assert shown["modelfile"] == real["modelfile"].replace(
        f"# FROM {TARGET}\n", "# FROM llmodel:latest\n"
    )
    assert {**shown, "modelfile": real["modelfile"]} == real


def test_show_of_an_mlx_model_names_the_alias_on_its_from_line() -> None:
    document = json.dumps(
        {
            "modelfile": (
                '# Modelfile generated by "ollama show"\nFROM aya-expanse:8b-q8_0\nPARAMETER x 1\n'
            )
        }
    ).encode()
    rewritten = ListingRewriter(TABLE).rewrite_details(
        Listing.SHOW, document, "llmodel", TABLE["llmodel"]
    )
    assert json.loads(rewritten)["modelfile"].splitlines()[1:] == [
        "FROM llmodel:latest",
        "PARAMETER x 1",
    ]


def test_show_leaves_a_modelfile_naming_another_model_alone() -> None:
    document = show("llama3.2")
    assert (
        ListingRewriter(TABLE).rewrite_details(Listing.SHOW, document, "llmodel", TABLE["llmodel"])
        == document
    )


def test_show_in_hidden_mode_leaves_out_other_real_names() -> None:
    document = json.dumps({"modelfile": "", "details": {"parent_model": "llama3:8b"},
                           "remote_model": "aya:8b", "remote_host": "h"}).encode()  # fmt: skip
    rewriter = ListingRewriter(TABLE, hide_real_models=True)
    rewritten = rewriter.rewrite_details(Listing.SHOW, document, "llmodel", TABLE["llmodel"])
    assert json.loads(rewritten) == {"modelfile": "", "details": {"parent_model": ""},
                                     "remote_host": "h"}  # fmt: skip
    # Not hidden: mirrored.
    assert (
        ListingRewriter(TABLE).rewrite_details(Listing.SHOW, document, "llmodel", TABLE["llmodel"])
        == document
    )


@pytest.mark.parametrize(
    ("alias", "owned_by"),
    [("llmodel", "library"), ("team/llmodel", "team")],
    ids=["library", "namespace"],
)
def test_an_openai_model_is_owned_by_the_namespace_of_the_name_asked_for(
    alias: str, owned_by: str
) -> None:
    route = Route.build(alias, "hf.co/bartowski/aya:Q4")
    document = b'{"id":"llmodel","object":"model","created":1,"owned_by":"bartowski"}\n'
    rewritten = ListingRewriter(AliasTable({alias: route.target})).rewrite_details(
        Listing.OPENAI_MODEL, document, alias, route
    )
    assert json.loads(rewritten)["owned_by"] == owned_by
    assert rewritten.endswith(b"}\n")  # json.Encoder's newline kept


@pytest.mark.parametrize("hidden", [False, True], ids=["listed", "hidden"])
@pytest.mark.parametrize(
    "aliases",
    [
        {"llmodel": TARGET, "embed": "nomic-embed-text", "missing": "qwen3:32b"},
        {"llmodel": "Aya-Expanse:8B-Q8_0"},  # another case than the listing's
        {"llmodel": "registry.ollama.ai/library/aya-expanse:8b-q8_0"},  # another spelling
        {"llama3.2": TARGET},  # hides a real model
        {"a": TARGET, "b": TARGET},  # two aliases, one target
        {"x": "qwen3:32b"},  # nothing installed
    ],
    ids=["table", "case", "qualified", "hides-real", "shared-target", "none-installed"],
)
@pytest.mark.parametrize(
    ("listing", "path"),
    [(Listing.TAGS, "/api/tags"), (Listing.OPENAI_MODELS, "/v1/models"),
     (Listing.PROCESSES, "/api/ps")],
    ids=["tags", "openai", "ps"],
)  # fmt: skip
def test_the_quick_search_gives_what_the_full_parse_gives(
    aliases: dict[str, str], hidden: bool, listing: Listing, path: str
) -> None:
    document = upstream(path, loaded=(TARGET, "llama3.2"))
    table = AliasTable(aliases)
    fast = ListingRewriter(table, hide_real_models=hidden).rewrite_list(listing, document)
    slow = ListingRewriter(table, hide_real_models=hidden, fast=False).rewrite_list(
        listing, document
    )
    assert fast == slow
    if "x" not in aliases:
        assert fast != document  # the case changes the listing


def test_a_target_listed_in_another_case_is_found() -> None:
    document = upstream("/api/tags")
    rewritten = ListingRewriter(AliasTable({"llmodel": "AYA-expanse:8B-q8_0"})).rewrite_list(
        Listing.TAGS, document
    )
    assert entries(rewritten)[0]["digest"] == by_name(entries(document))[TARGET]["digest"]


@pytest.mark.parametrize("path", ["/api/tags", "/v1/models", "/api/ps"])
def test_a_listing_as_ollama_writes_it_takes_the_quick_search(path: str) -> None:
    document = upstream(path, loaded=(TARGET,))
    listing = {"/api/tags": Listing.TAGS, "/v1/models": Listing.OPENAI_MODELS}.get(
        path, Listing.PROCESSES
    )
    for hidden in (False, True):
        rewriter = ListingRewriter(TABLE, hide_real_models=hidden)
        assert rewriter._rewrite_found(listing, document) is not None
