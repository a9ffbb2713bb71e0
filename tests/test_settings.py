"""Settings: flags over environment over TOML; where each came from; every problem one line."""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ollama_default import AliasTable, ConfigError, DefaultModel
from ollama_default.proxy.cli import parse_command_line, setting_flag, setting_flags
from ollama_default.proxy.compose import build_app
from ollama_default.proxy.config import (
    DEFAULT_UPSTREAM,
    ENV_VARIABLES,
    SETTINGS,
    LoadedSettings,
    Settings,
    load_settings,
    load_settings_with_sources,
    url_path,
)
from ollama_default.proxy.declaration import (
    BYTES,
    SWITCH,
    Declared,
    Option,
    check_fields,
    declared,
    from_document,
    from_environment,
    from_flags,
    group,
    load,
    setting,
    text,
    value_at,
)
from ollama_default.proxy.forwarder import Forwarder

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "ollama-default.toml"
    path.write_text(text)
    return str(path)


def test_nothing_configured_forwards_to_the_local_ollama() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.upstream == DEFAULT_UPSTREAM == "http://127.0.0.1:11434"
    assert settings.connect_timeout_s < 10 <= settings.read_timeout_s


def test_one_alias_from_the_environment_is_also_the_default() -> None:
    settings = load_settings(
        {"OLLAMA_DEFAULT_ALIAS": "llmodel", "OLLAMA_DEFAULT_TARGET": "aya-expanse:8b-q8_0"}
    )
    assert settings.aliases == {"llmodel": "aya-expanse:8b-q8_0"}
    assert settings.default == "llmodel"


def test_every_key_from_a_toml_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        upstream = "http://ollama.internal:11434"
        prefix = "/llm/"
        default = "embed"
        connect_timeout_s = 2
        read_timeout_s = 900.5
        max_body_bytes = 1000
        max_record_bytes = 2000

        [aliases]
        llmodel = "aya-expanse:8b-q8_0"
        embed = "nomic-embed-text:latest"
        """,
    )
    settings = load_settings({"OLLAMA_DEFAULT_CONFIG": path})
    assert settings == Settings(
        upstream="http://ollama.internal:11434",
        aliases={"llmodel": "aya-expanse:8b-q8_0", "embed": "nomic-embed-text:latest"},
        default="embed",
        prefix="/llm",
        connect_timeout_s=2,
        read_timeout_s=900.5,
        max_body_bytes=1000,
        max_record_bytes=2000,
    )


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'upstream = "http://a:1"\nprefix = "/x"\ndefault = "b"\n[aliases]\na = "m"\nb = "n"\n',
    )
    settings = load_settings(
        {
            "OLLAMA_DEFAULT_CONFIG": path,
            "OLLAMA_DEFAULT_UPSTREAM": "http://b:2",
            "OLLAMA_DEFAULT_ALIAS": "llmodel",
            "OLLAMA_DEFAULT_TARGET": "aya-expanse:8b-q8_0",
            "OLLAMA_DEFAULT_READ_TIMEOUT_S": "30",
        }
    )
    assert settings.upstream == "http://b:2"
    assert settings.prefix == "/x"  # not set by the environment: the file's
    assert settings.aliases == {"llmodel": "aya-expanse:8b-q8_0"}
    assert settings.default == "llmodel"
    assert settings.read_timeout_s == 30


def test_an_empty_variable_counts_as_unset() -> None:
    assert load_settings({"OLLAMA_DEFAULT_UPSTREAM": ""}).upstream == DEFAULT_UPSTREAM


BAD = [
    pytest.param({"OLLAMA_DEFAULT_UPSTREAM": "localhost:11434"}, "",
                 "upstream 'localhost:11434' is not an http:// or https:// URL "
                 "(set by OLLAMA_DEFAULT_UPSTREAM)", id="url-without-scheme"),
    pytest.param({"OLLAMA_DEFAULT_UPSTREAM": "ftp://h"}, "", "is not an http:// or https:// URL",
                 id="url-wrong-scheme"),
    pytest.param({"OLLAMA_DEFAULT_ALIAS": "llmodel", "OLLAMA_DEFAULT_TARGET": "llmodel:latest"},
                 "", "alias 'llmodel' points at itself (set by OLLAMA_DEFAULT_ALIAS and "
                 "OLLAMA_DEFAULT_TARGET)", id="alias-to-itself"),
    pytest.param({"OLLAMA_DEFAULT_ALIAS": "llmodel"}, "",
                 "OLLAMA_DEFAULT_ALIAS is set but OLLAMA_DEFAULT_TARGET is not", id="alias-alone"),
    pytest.param({"OLLAMA_DEFAULT_READ_TIMEOUT_S": "soon"}, "",
                 "OLLAMA_DEFAULT_READ_TIMEOUT_S='soon' is not a number", id="not-a-number"),
    pytest.param({"OLLAMA_DEFAULT_CONNECT_TIMEOUT_S": "0"}, "",
                 "connect_timeout_s must be a positive number of seconds, not 0.0", id="zero"),
    pytest.param({"OLLAMA_DEFAULT_PREFIX": "llm"}, "",
                 "prefix 'llm' must be a path such as '/llm'", id="prefix"),
    pytest.param({}, "upstream = \n[x]", "is not valid TOML: Invalid value (at line 1, column 12)",
                 id="unparseable-toml"),
    pytest.param({}, 'upstrem = "http://h:1"', "unknown key 'upstrem' (did you mean 'upstream'?)",
                 id="unknown-key"),
    pytest.param({}, "[aliases]\nllmodel = 'llmodel'", "alias 'llmodel' points at itself (set by "
                 "config file", id="alias-to-itself-in-file"),
    pytest.param({}, "max_body_bytes = '1MB'",
                 "max_body_bytes must be a positive number of bytes, not '1MB'", id="wrong-type"),
    pytest.param({}, "aliases = 'x'", "aliases must be a table of alias = target", id="aliases"),
]  # fmt: skip


@pytest.mark.parametrize(("environ", "toml", "message"), BAD)
def test_a_bad_configuration_is_one_line_naming_the_problem(
    tmp_path: Path, environ: dict[str, str], toml: str, message: str
) -> None:
    if toml:
        environ = {**environ, "OLLAMA_DEFAULT_CONFIG": write(tmp_path, toml)}
    with pytest.raises(ConfigError) as raised:
        load_settings(environ)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("upstream", "message"),
    [
        ("http://me:s3cret@h:1?x", "upstream 'http://h:1?x' must not have a query or fragment"),
        ("ftp://me:s3cret@h", "upstream 'ftp://h' is not an http:// or https:// URL"),
    ],
    ids=["query", "scheme"],
)
def test_a_bad_upstream_is_quoted_without_its_credentials(upstream: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"OLLAMA_DEFAULT_UPSTREAM": upstream})
    assert str(raised.value) == f"{message} (set by OLLAMA_DEFAULT_UPSTREAM)"


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=r"config file '.*nope.toml' cannot be read: No such"):
        load_settings({"OLLAMA_DEFAULT_CONFIG": missing})


def test_log_options_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, 'access_log = false\nlog_format = "json"\nlog_file = "/tmp/x.log"\n')
    settings = load_settings({"OLLAMA_DEFAULT_CONFIG": path, "OLLAMA_DEFAULT_LOG_LEVEL": "warning"})
    assert (settings.access_log, settings.log_level, settings.log_format, settings.log_file) == (
        False, "warning", "json", "/tmp/x.log"
    )  # fmt: skip
    assert load_settings({"OLLAMA_DEFAULT_ACCESS_LOG": "Off"}).access_log is False
    assert load_settings({"OLLAMA_DEFAULT_ACCESS_LOG": "1"}).access_log is True
    assert Settings().access_log is True


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OLLAMA_DEFAULT_ACCESS_LOG": "maybe"}, "OLLAMA_DEFAULT_ACCESS_LOG='maybe' is not one of"),
        ({"OLLAMA_DEFAULT_LOG_LEVEL": "loud"}, "log_level must be one of debug, info, warning,"),
        ({"OLLAMA_DEFAULT_LOG_FORMAT": "xml"}, "log_format must be one of text, json, not 'xml'"),
    ],
    ids=["access-log", "level", "format"],
)
def test_bad_log_options_are_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_settings(environ)


def test_flags_win_over_the_environment_which_wins_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'upstream = "http://file:1"\nprefix = "/file"\nlog_level = "debug"\n')
    environ = {
        "OLLAMA_DEFAULT_CONFIG": path,
        "OLLAMA_DEFAULT_UPSTREAM": "http://env:2",
        "OLLAMA_DEFAULT_LOG_LEVEL": "warning",
    }
    settings, sources = load_settings_with_sources(
        environ, {"upstream": "http://flag:3", "access_log": False}
    )
    assert (settings.upstream, settings.log_level, settings.prefix) == (
        "http://flag:3", "warning", "/file"
    )  # fmt: skip
    assert settings.access_log is False
    assert sources == {
        "upstream": "--upstream",
        "aliases": "default",
        "default": "default",
        "default_names": "default",
        "fallback_to_default": "default",
        "hide_real_models": "default",
        "prefix": f"config file {path!r}",
        "trusted_proxies": "default",
        "status_networks": "default",
        "open_model_store": "default",
        "api_keys": "default",
        "api_keys_file": "default",
        "upstream_api_key": "default",
        "connect_timeout_s": "default",
        "read_timeout_s": "default",
        "warm_timeout_s": "default",
        "head_timeout_s": "default",
        "body_timeout_s": "default",
        "max_body_bytes": "default",
        "max_buffered_bytes": "default",
        "max_record_bytes": "default",
        "max_concurrent": "default",
        "max_concurrent_per_key": "default",
        "max_queue": "default",
        "queue_timeout_s": "default",
        "access_log": "--no-access-log",
        "log_level": "OLLAMA_DEFAULT_LOG_LEVEL",
        "log_file": "default",
        "log_format": "default",
    }


def test_nothing_set_comes_from_the_defaults() -> None:
    settings, sources = load_settings_with_sources({})
    assert settings == Settings()
    assert set(sources.values()) == {"default"}


def test_alias_flags_replace_the_aliases_and_default_set_elsewhere(tmp_path: Path) -> None:
    path = write(tmp_path, 'default = "a"\n[aliases]\na = "m"\nb = "n"\n')
    environ = {"OLLAMA_DEFAULT_CONFIG": path, "OLLAMA_DEFAULT_DEFAULT": "b"}
    one = load_settings_with_sources(environ, {"aliases": {"llmodel": "qwen3:4b"}})
    assert one.settings.aliases == {"llmodel": "qwen3:4b"}
    assert one.settings.alias_table.default is not None
    assert one.settings.alias_table.default.alias == "llmodel"  # the only alias
    assert (one.sources["aliases"], one.sources["default"]) == ("--alias", "--alias")
    two = load_settings_with_sources(
        environ, {"aliases": {"chat": "qwen3:4b", "embed": "nomic-embed-text"}}
    )
    assert two.settings.alias_table.default is None  # not the environment's 'b'
    chosen = load_settings_with_sources(
        environ, {"aliases": {"chat": "qwen3:4b", "embed": "nomic-embed-text"}, "default": "embed"}
    )
    assert (chosen.settings.default, chosen.sources["default"]) == ("embed", "--default")


def test_a_default_from_the_environment_picks_among_the_files_aliases(tmp_path: Path) -> None:
    path = write(tmp_path, 'default = "a"\n[aliases]\na = "m"\nb = "n"\n')
    settings, sources = load_settings_with_sources(
        {"OLLAMA_DEFAULT_CONFIG": path, "OLLAMA_DEFAULT_DEFAULT": "b"}
    )
    assert (settings.default, sources["default"]) == ("b", "OLLAMA_DEFAULT_DEFAULT")
    assert sources["aliases"] == f"config file {path!r}"


def test_the_environments_alias_is_the_default_and_says_so() -> None:
    _, sources = load_settings_with_sources(
        {"OLLAMA_DEFAULT_ALIAS": "llmodel", "OLLAMA_DEFAULT_TARGET": "qwen3:4b"}
    )
    assert sources["aliases"] == "OLLAMA_DEFAULT_ALIAS and OLLAMA_DEFAULT_TARGET"
    assert sources["default"] == "OLLAMA_DEFAULT_ALIAS"


def test_a_config_file_from_the_command_line_replaces_the_environments(tmp_path: Path) -> None:
    flag_file = write(tmp_path, 'prefix = "/flag"\n')
    settings, sources = load_settings_with_sources(
        {"OLLAMA_DEFAULT_CONFIG": str(tmp_path / "missing.toml")}, config_file=flag_file
    )
    assert (settings.prefix, sources["prefix"]) == ("/flag", f"config file {flag_file!r}")


@pytest.mark.parametrize(
    ("flags", "environ", "key", "source", "message"),
    [
        ({"upstream": "localhost"}, {"OLLAMA_DEFAULT_UPSTREAM": "http://h:1"}, "upstream",
         "--upstream",
         "upstream 'localhost' is not an http:// or https:// URL (set by --upstream)"),
        ({"aliases": {"llmodel": "llmodel"}}, {}, "aliases", "--alias",
         "alias 'llmodel' points at itself (set by --alias)"),
        ({"aliases": {"a": "m", "b": "n"}, "default": "c"}, {}, "default", "--default",
         "default 'c' is not one of the aliases ['a', 'b'] (set by --default)"),
        ({}, {"OLLAMA_DEFAULT_MAX_BODY_BYTES": "1e3"}, "max_body_bytes",
         "OLLAMA_DEFAULT_MAX_BODY_BYTES", "OLLAMA_DEFAULT_MAX_BODY_BYTES='1e3' is not a number"),
        ({}, {"OLLAMA_DEFAULT_LOG_FORMAT": "xml"}, "log_format", "OLLAMA_DEFAULT_LOG_FORMAT",
         "log_format must be one of text, json, not 'xml' (set by OLLAMA_DEFAULT_LOG_FORMAT)"),
    ],
    ids=["flag", "alias-flag", "default-flag", "environment-number", "environment-choice"],
)  # fmt: skip
def test_an_error_carries_its_key_and_source(
    flags: dict[str, object], environ: dict[str, str], key: str, source: str, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(environ, flags)
    assert (str(raised.value), raised.value.key, raised.value.source) == (message, key, source)


def test_an_unknown_key_in_the_file_names_the_file_as_source(tmp_path: Path) -> None:
    path = write(tmp_path, 'prefx = "/llm"\n')
    with pytest.raises(ConfigError) as raised:
        load_settings({"OLLAMA_DEFAULT_CONFIG": path})
    assert str(raised.value) == (
        f"config file {path!r}: unknown key 'prefx' (did you mean 'prefix'?)"
    )
    assert (raised.value.key, raised.value.source) == ("prefx", f"config file {path!r}")


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("OLLAMA_DEFAULT_UPSTRAEM", "unknown environment variable 'OLLAMA_DEFAULT_UPSTRAEM' "
         "(did you mean 'OLLAMA_DEFAULT_UPSTREAM'?)"),
        ("OLLAMA_DEFAULT_ALIASES", "unknown environment variable 'OLLAMA_DEFAULT_ALIASES' "
         "(did you mean 'OLLAMA_DEFAULT_ALIAS'?)"),
        ("OLLAMA_DEFAULT_READ_TIMEOUT", "unknown environment variable "
         "'OLLAMA_DEFAULT_READ_TIMEOUT' (did you mean 'OLLAMA_DEFAULT_READ_TIMEOUT_S'?)"),
        ("OLLAMA_DEFAULT_COLOUR", "unknown environment variable 'OLLAMA_DEFAULT_COLOUR'"),
    ],
    ids=["typo", "plural", "no-unit", "nothing-close"],
)  # fmt: skip
def test_a_misspelt_variable_gets_did_you_mean(variable: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({variable: "x", "OLLAMA_DEFAULT_PREFIX": "/llm"})
    assert (str(raised.value), raised.value.source) == (message, variable)


def test_every_variable_of_the_settings_is_known() -> None:
    values = {"connect_timeout_s": "2", "read_timeout_s": "3", "head_timeout_s": "6",
              "body_timeout_s": "7", "max_body_bytes": "4", "max_buffered_bytes": "8",
              "max_record_bytes": "5", "access_log": "0", "log_level": "error",
              "log_file": "x.log", "log_format": "json", "upstream": "http://h:1",
              "default": "llmodel", "prefix": "/p", "trusted_proxies": "10.0.0.0/8",
              "status_networks": "10.0.0.0/8",
              "default_names": "unknown", "fallback_to_default": "1",
              "hide_real_models": "1", "max_concurrent": "4", "max_concurrent_per_key": "2",
              "max_queue": "3", "queue_timeout_s": "9", "warm_timeout_s": "9",
              "open_model_store": "pull", "api_keys": "0123456789abcdefgh",
              "api_keys_file": "/dev/null", "upstream_api_key": "k"}  # fmt: skip
    environ = {f"OLLAMA_DEFAULT_{key.upper()}": value for key, value in values.items()}
    environ |= {"OLLAMA_DEFAULT_ALIAS": "llmodel", "OLLAMA_DEFAULT_TARGET": "qwen3:4b"}
    assert set(environ) | {"OLLAMA_DEFAULT_CONFIG"} == ENV_VARIABLES
    settings, sources = load_settings_with_sources(environ)
    assert (settings.max_record_bytes, settings.log_format) == (5, "json")
    assert "default" not in sources.values()


# --------------------------------------------------------------------------------------
# Every setting, from its declaration, through every source


@dataclass(frozen=True)
class Example:
    """How to set one setting from each source, rightly and wrongly."""

    value: Any
    toml: str
    environ: dict[str, str]
    #: The flag and its value; empty when the setting has no flag.
    argv: list[str]
    bad_toml: str
    #: What a wrong value in a file says; ``{file}`` stands for the file's source.
    toml_message: str
    #: Empty when any text the variable can hold is right (any non-empty text is a file
    #: name; an empty variable counts as unset).
    bad_environ: dict[str, str]
    environ_message: str
    bad_argv: list[str] = field(default_factory=list)
    #: What the wrong flag says: the settings' message, or argparse's "argument --x: ...".
    argv_message: str = ""
    #: A file present throughout: the aliases a default picks from.
    context: str = ""
    #: Where the environment's value comes from, when not its one variable.
    environ_source: str = ""


ALIAS_PAIR = "OLLAMA_DEFAULT_ALIAS and OLLAMA_DEFAULT_TARGET"
VERBS = "(one of pull, push, create, copy, delete, blobs, account, web)"
#: Settings a config file may never hold (API keys: test_auth.py).
KEYS_NEVER_IN_FILES = ("api_keys",)
EXAMPLES = {
    "upstream": Example(
        "http://h:1", 'upstream = "http://h:1"', {"OLLAMA_DEFAULT_UPSTREAM": "http://h:1"},
        ["--upstream", "http://h:1"],
        'upstream = "h:1"', "upstream 'h:1' is not an http:// or https:// URL (set by {file})",
        {"OLLAMA_DEFAULT_UPSTREAM": "http://h:1?x"},
        "upstream 'http://h:1?x' must not have a query or fragment (set by "
        "OLLAMA_DEFAULT_UPSTREAM)",
        ["--upstream", "ftp://h"],
        "upstream 'ftp://h' is not an http:// or https:// URL (set by --upstream)",
    ),
    "aliases": Example(
        {"llmodel": "qwen3:4b"}, '[aliases]\nllmodel = "qwen3:4b"',
        {"OLLAMA_DEFAULT_ALIAS": "llmodel", "OLLAMA_DEFAULT_TARGET": "qwen3:4b"},
        ["--alias", "llmodel=qwen3:4b"],
        '[aliases]\nllmodel = "llmodel"', "alias 'llmodel' points at itself (set by {file})",
        {"OLLAMA_DEFAULT_ALIAS": "llmodel", "OLLAMA_DEFAULT_TARGET": "not valid!"},
        f"target 'not valid!' of alias 'llmodel' is not a valid Ollama model name (set by "
        f"{ALIAS_PAIR})",
        ["--alias", "llmodel"],
        "--alias 'llmodel' is not NAME=MODEL, such as --alias llmodel=aya-expanse:8b-q8_0",
        environ_source=ALIAS_PAIR,
    ),
    "default": Example(
        "b", 'default = "b"', {"OLLAMA_DEFAULT_DEFAULT": "b"}, ["--default", "b"],
        'default = "c"', "default 'c' is not one of the aliases ['a', 'b'] (set by {file})",
        {"OLLAMA_DEFAULT_DEFAULT": "c"},
        "default 'c' is not one of the aliases ['a', 'b'] (set by OLLAMA_DEFAULT_DEFAULT)",
        ["--default", "c"], "default 'c' is not one of the aliases ['a', 'b'] (set by --default)",
        context='[aliases]\na = "m"\nb = "n"\n',
    ),
    "default_names": Example(
        ("default", "unknown"), 'default_names = ["default", "unknown"]',
        {"OLLAMA_DEFAULT_DEFAULT_NAMES": "default, unknown"},
        ["--default-names", "default,unknown"],
        'default_names = "default"',
        "default_names must be a list of model names, not 'default' (set by {file})",
        {"OLLAMA_DEFAULT_DEFAULT_NAMES": "default,A:latest"},
        "default_names: 'A:latest' is the alias 'a'; a name cannot be both (set by "
        "OLLAMA_DEFAULT_DEFAULT_NAMES)",
        ["--default-names", "a"],
        "default_names: 'a' is the alias 'a'; a name cannot be both (set by --default-names)",
        context='[aliases]\na = "m"\n',
    ),
    "fallback_to_default": Example(
        True, "fallback_to_default = true", {"OLLAMA_DEFAULT_FALLBACK_TO_DEFAULT": "on"},
        ["--fallback-to-default"],
        "fallback_to_default = 1",
        "fallback_to_default must be true or false, not 1 (set by {file})",
        {"OLLAMA_DEFAULT_FALLBACK_TO_DEFAULT": "maybe"},
        "OLLAMA_DEFAULT_FALLBACK_TO_DEFAULT='maybe' is not one of 1, 0, true, false",
        ["--fallback-to-default=maybe"], "argument --fallback-to-default/--no-fallback-to-default: "
        "ignored explicit argument 'maybe'",
        context='[aliases]\na = "m"\n',
    ),
    "hide_real_models": Example(
        True, "hide_real_models = true", {"OLLAMA_DEFAULT_HIDE_REAL_MODELS": "1"},
        ["--hide-real-models"],
        'hide_real_models = "yes"',
        "hide_real_models must be true or false, not 'yes' (set by {file})",
        {"OLLAMA_DEFAULT_HIDE_REAL_MODELS": "2"},
        "OLLAMA_DEFAULT_HIDE_REAL_MODELS='2' is not one of 1, 0, true, false",
        ["--hide-real-models=2"], "argument --hide-real-models/--no-hide-real-models: "
        "ignored explicit argument '2'",
    ),
    "prefix": Example(
        "/llm", 'prefix = "/llm/"', {"OLLAMA_DEFAULT_PREFIX": "/llm/"}, ["--prefix", "/llm/"],
        "prefix = 3", "prefix 3 must be a path such as '/llm' (set by {file})",
        {"OLLAMA_DEFAULT_PREFIX": "llm"},
        "prefix 'llm' must be a path such as '/llm' (set by OLLAMA_DEFAULT_PREFIX)",
        ["--prefix", "//llm"], "prefix '//llm' must be a path such as '/llm' (set by --prefix)",
    ),
    "trusted_proxies": Example(
        ("127.0.0.1", "10.0.0.0/8", "::1"), 'trusted_proxies = ["127.0.0.1", "10.0.0.0/8", "::1"]',
        {"OLLAMA_DEFAULT_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8,::1"},
        ["--trusted-proxies", "127.0.0.1,10.0.0.0/8,::1"],
        'trusted_proxies = "127.0.0.1"',
        "trusted_proxies must be a list of IP addresses or networks, such as ['10.0.0.0/8'], "
        "not '127.0.0.1' (set by {file})",
        {"OLLAMA_DEFAULT_TRUSTED_PROXIES": "127.0.0.1,*"},
        "trusted_proxies: '*' is not an IP address or network, such as 10.0.0.0/8 (set by "
        "OLLAMA_DEFAULT_TRUSTED_PROXIES)",
        ["--trusted-proxies", "10.0.0.1/8"],
        "trusted_proxies: '10.0.0.1/8' is not an IP address or network, such as 10.0.0.0/8 "
        "(set by --trusted-proxies)",
    ),
    "status_networks": Example(
        ("127.0.0.1", "10.0.0.0/8", "::1"), 'status_networks = ["127.0.0.1", "10.0.0.0/8", "::1"]',
        {"OLLAMA_DEFAULT_STATUS_NETWORKS": "127.0.0.1, 10.0.0.0/8,::1"},
        ["--status-networks", "127.0.0.1,10.0.0.0/8,::1"],
        'status_networks = "127.0.0.1"',
        "status_networks must be a list of IP addresses or networks, such as ['10.0.0.0/8'], "
        "not '127.0.0.1' (set by {file})",
        {"OLLAMA_DEFAULT_STATUS_NETWORKS": "127.0.0.1,localhost"},
        "status_networks: 'localhost' is not an IP address or network, such as 10.0.0.0/8 "
        "(set by OLLAMA_DEFAULT_STATUS_NETWORKS)",
        ["--status-networks", "192.168.1.1/24"],
        "status_networks: '192.168.1.1/24' is not an IP address or network, such as "
        "10.0.0.0/8 (set by --status-networks)",
    ),
    "open_model_store": Example(
        ("pull", "copy"), 'open_model_store = ["pull", "copy"]',
        {"OLLAMA_DEFAULT_OPEN_MODEL_STORE": "pull,copy"}, ["--open-model-store", "pull,copy"],
        'open_model_store = ["rm"]',
        "open_model_store: 'rm' is not a model-store verb " + VERBS + " (set by {file})",
        {"OLLAMA_DEFAULT_OPEN_MODEL_STORE": "rm"},
        "open_model_store: 'rm' is not a model-store verb " + VERBS + " (set by "
        "OLLAMA_DEFAULT_OPEN_MODEL_STORE)",
        ["--open-model-store", "rm"],
        "open_model_store: 'rm' is not a model-store verb " + VERBS
        + " (set by --open-model-store)",
    ),
    # Never from a file: the file way is refused (KEYS_NEVER_IN_FILES).
    "api_keys": Example(
        ("0123456789abcdefgh",), 'api_keys = ["0123456789abcdefgh"]',
        {"OLLAMA_DEFAULT_API_KEYS": "0123456789abcdefgh"}, [],
        'api_keys = ["0123456789abcdefgh"]',
        "{file}: api_keys: keys are never written in the config file: set "
        "OLLAMA_DEFAULT_API_KEYS, or name a file of hashed keys with api_keys_file",
        {"OLLAMA_DEFAULT_API_KEYS": "short"},
        "api_keys: key 1 is not a key: use a random token of at least 16 characters, such as "
        "ollama-default hash-key --new makes (set by OLLAMA_DEFAULT_API_KEYS)",
    ),
    "api_keys_file": Example(
        "/dev/null", 'api_keys_file = "/dev/null"', {"OLLAMA_DEFAULT_API_KEYS_FILE": "/dev/null"},
        ["--api-keys-file", "/dev/null"],
        "api_keys_file = 1", "api_keys_file must be a file name, not 1 (set by {file})",
        {"OLLAMA_DEFAULT_API_KEYS_FILE": "/nonexistent/keys.toml"},
        "api_keys_file '/nonexistent/keys.toml' cannot be read: No such file or directory "
        "(set by OLLAMA_DEFAULT_API_KEYS_FILE)",
        ["--api-keys-file", "/nonexistent/keys.toml"],
        "api_keys_file '/nonexistent/keys.toml' cannot be read: No such file or directory "
        "(set by --api-keys-file)",
    ),
    "upstream_api_key": Example(
        "upstream-key", 'upstream_api_key = "upstream-key"',
        {"OLLAMA_DEFAULT_UPSTREAM_API_KEY": "upstream-key"}, [],
        "upstream_api_key = 1",
        "upstream_api_key must be one word of printable text (set by {file})",
        {"OLLAMA_DEFAULT_UPSTREAM_API_KEY": "two words"},
        "upstream_api_key must be one word of printable text (set by "
        "OLLAMA_DEFAULT_UPSTREAM_API_KEY)",
    ),
    "connect_timeout_s": Example(
        2.5, "connect_timeout_s = 2.5", {"OLLAMA_DEFAULT_CONNECT_TIMEOUT_S": "2.5"}, [],
        "connect_timeout_s = 0",
        "connect_timeout_s must be a positive number of seconds, not 0 (set by {file})",
        {"OLLAMA_DEFAULT_CONNECT_TIMEOUT_S": "soon"},
        "OLLAMA_DEFAULT_CONNECT_TIMEOUT_S='soon' is not a number",
    ),
    "read_timeout_s": Example(
        900, "read_timeout_s = 900", {"OLLAMA_DEFAULT_READ_TIMEOUT_S": "900"}, [],
        "read_timeout_s = inf",
        "read_timeout_s must be a finite number of seconds, not inf (set by {file})",
        {"OLLAMA_DEFAULT_READ_TIMEOUT_S": "-1"},
        "read_timeout_s must be a positive number of seconds, not -1.0 (set by "
        "OLLAMA_DEFAULT_READ_TIMEOUT_S)",
    ),
    "warm_timeout_s": Example(
        30, "warm_timeout_s = 30", {"OLLAMA_DEFAULT_WARM_TIMEOUT_S": "30"}, [],
        "warm_timeout_s = 0",
        "warm_timeout_s must be a positive number of seconds, not 0 (set by {file})",
        {"OLLAMA_DEFAULT_WARM_TIMEOUT_S": "2m"},
        "OLLAMA_DEFAULT_WARM_TIMEOUT_S='2m' is not a number",
    ),
    "head_timeout_s": Example(
        5, "head_timeout_s = 5", {"OLLAMA_DEFAULT_HEAD_TIMEOUT_S": "5"}, [],
        "head_timeout_s = -5",
        "head_timeout_s must be a positive number of seconds, not -5 (set by {file})",
        {"OLLAMA_DEFAULT_HEAD_TIMEOUT_S": "10s"},
        "OLLAMA_DEFAULT_HEAD_TIMEOUT_S='10s' is not a number",
    ),
    "body_timeout_s": Example(
        300.5, "body_timeout_s = 300.5", {"OLLAMA_DEFAULT_BODY_TIMEOUT_S": "300.5"}, [],
        'body_timeout_s = "300"',
        "body_timeout_s must be a positive number of seconds, not '300' (set by {file})",
        {"OLLAMA_DEFAULT_BODY_TIMEOUT_S": "nan"},
        "body_timeout_s must be a finite number of seconds, not nan (set by "
        "OLLAMA_DEFAULT_BODY_TIMEOUT_S)",
    ),
    "max_body_bytes": Example(
        1000, "max_body_bytes = 1000", {"OLLAMA_DEFAULT_MAX_BODY_BYTES": "1000"}, [],
        "max_body_bytes = true",
        "max_body_bytes must be a positive number of bytes, not True (set by {file})",
        {"OLLAMA_DEFAULT_MAX_BODY_BYTES": "1e3"},
        "OLLAMA_DEFAULT_MAX_BODY_BYTES='1e3' is not a number",
    ),
    "max_buffered_bytes": Example(
        2**30, "max_buffered_bytes = 1073741824",
        {"OLLAMA_DEFAULT_MAX_BUFFERED_BYTES": "1073741824"}, [],
        "max_buffered_bytes = 1000",
        "max_buffered_bytes (1000) must be at least max_body_bytes (67108864) (set by {file})",
        {"OLLAMA_DEFAULT_MAX_BUFFERED_BYTES": "-1"},
        "max_buffered_bytes must be a positive number of bytes, not -1 (set by "
        "OLLAMA_DEFAULT_MAX_BUFFERED_BYTES)",
    ),
    "max_record_bytes": Example(
        2000, "max_record_bytes = 2000", {"OLLAMA_DEFAULT_MAX_RECORD_BYTES": "2000"}, [],
        "max_record_bytes = 1.5",
        "max_record_bytes must be a positive number of bytes, not 1.5 (set by {file})",
        {"OLLAMA_DEFAULT_MAX_RECORD_BYTES": "0"},
        "max_record_bytes must be a positive number of bytes, not 0 (set by "
        "OLLAMA_DEFAULT_MAX_RECORD_BYTES)",
    ),
    "max_concurrent": Example(
        4, "max_concurrent = 4", {"OLLAMA_DEFAULT_MAX_CONCURRENT": "4"},
        ["--max-concurrent", "4"],
        "max_concurrent = -1",
        "max_concurrent must be a whole number (0 for none), not -1 (set by {file})",
        {"OLLAMA_DEFAULT_MAX_CONCURRENT": "four"},
        "OLLAMA_DEFAULT_MAX_CONCURRENT='four' is not a whole number",
        ["--max-concurrent", "2.5"], "argument --max-concurrent: '2.5' is not a whole number",
    ),
    "max_concurrent_per_key": Example(
        2, "max_concurrent_per_key = 2", {"OLLAMA_DEFAULT_MAX_CONCURRENT_PER_KEY": "2"},
        ["--max-concurrent-per-key", "2"],
        "max_concurrent_per_key = true",
        "max_concurrent_per_key must be a whole number (0 for none), not True (set by {file})",
        {"OLLAMA_DEFAULT_MAX_CONCURRENT_PER_KEY": "-2"},
        "max_concurrent_per_key must be a whole number (0 for none), not -2 (set by "
        "OLLAMA_DEFAULT_MAX_CONCURRENT_PER_KEY)",
        ["--max-concurrent-per-key", "x"],
        "argument --max-concurrent-per-key: 'x' is not a whole number",
    ),
    "max_queue": Example(
        0, "max_queue = 0", {"OLLAMA_DEFAULT_MAX_QUEUE": "0"}, ["--max-queue", "0"],
        'max_queue = "8"', "max_queue must be a whole number, 0 or more, not '8' (set by {file})",
        {"OLLAMA_DEFAULT_MAX_QUEUE": "-1"},
        "max_queue must be a whole number, 0 or more, not -1 (set by OLLAMA_DEFAULT_MAX_QUEUE)",
        ["--max-queue", "-3"],
        "max_queue must be a whole number, 0 or more, not -3 (set by --max-queue)",
    ),
    "queue_timeout_s": Example(
        5, "queue_timeout_s = 5", {"OLLAMA_DEFAULT_QUEUE_TIMEOUT_S": "5"}, [],
        "queue_timeout_s = 0",
        "queue_timeout_s must be a positive number of seconds, not 0 (set by {file})",
        {"OLLAMA_DEFAULT_QUEUE_TIMEOUT_S": "soon"},
        "OLLAMA_DEFAULT_QUEUE_TIMEOUT_S='soon' is not a number",
        [], "",
    ),
    "access_log": Example(
        False, "access_log = false", {"OLLAMA_DEFAULT_ACCESS_LOG": "Off"}, ["--no-access-log"],
        'access_log = "false"', "access_log must be true or false, not 'false' (set by {file})",
        {"OLLAMA_DEFAULT_ACCESS_LOG": "maybe"},
        "OLLAMA_DEFAULT_ACCESS_LOG='maybe' is not one of 1, 0, true, false",
        ["--access-log=maybe"], "argument --access-log/--no-access-log: ignored explicit "
        "argument 'maybe'",
    ),
    "log_level": Example(
        "debug", 'log_level = "debug"', {"OLLAMA_DEFAULT_LOG_LEVEL": "debug"},
        ["--log-level", "debug"],
        'log_level = "DEBUG"',
        "log_level must be one of debug, info, warning, error, not 'DEBUG' (set by {file})",
        {"OLLAMA_DEFAULT_LOG_LEVEL": "loud"},
        "log_level must be one of debug, info, warning, error, not 'loud' (set by "
        "OLLAMA_DEFAULT_LOG_LEVEL)",
        ["--log-level", "loud"], "argument --log-level: invalid choice: 'loud'",
    ),
    "log_file": Example(
        "x.log", 'log_file = "x.log"', {"OLLAMA_DEFAULT_LOG_FILE": "x.log"},
        ["--log-file", "x.log"],
        'log_file = ""', "log_file must be '-' or a file name, not '' (set by {file})",
        {}, "",
        ["--log-file", ""], "log_file must be '-' or a file name, not '' (set by --log-file)",
    ),
    "log_format": Example(
        "json", 'log_format = "json"', {"OLLAMA_DEFAULT_LOG_FORMAT": "json"},
        ["--log-format", "json"],
        'log_format = ["json"]',
        "log_format must be one of text, json, not ['json'] (set by {file})",
        {"OLLAMA_DEFAULT_LOG_FORMAT": "xml"},
        "log_format must be one of text, json, not 'xml' (set by OLLAMA_DEFAULT_LOG_FORMAT)",
        ["--log-format", "xml"], "argument --log-format: invalid choice: 'xml'",
    ),
}  # fmt: skip


def from_command_line(argv: list[str], environ: dict[str, str]) -> LoadedSettings:
    """Load settings as ``ollama-default serve`` does, up to where it would start serving."""
    args = parse_command_line(["serve", *argv])
    return load_settings_with_sources(environ, setting_flags(args), config_file=args.config)


def test_every_declared_setting_has_examples() -> None:
    assert list(EXAMPLES) == list(SETTINGS)
    for key, example in EXAMPLES.items():
        assert bool(example.argv) == (SETTINGS[key].setting.flag is not None), key
        assert bool(example.bad_argv) == bool(example.argv), key


@pytest.mark.parametrize("item", SETTINGS.values(), ids=SETTINGS)
def test_every_setting_is_set_from_a_file_the_environment_and_its_flag(
    tmp_path: Path, item: Declared
) -> None:
    example = EXAMPLES[item.key]
    context = {"OLLAMA_DEFAULT_CONFIG": write(tmp_path, example.context)}
    context_source = f"config file {context['OLLAMA_DEFAULT_CONFIG']!r}"
    path = str(tmp_path / "set.toml")
    Path(path).write_text(f"{example.toml}\n{example.context}")  # top-level keys first
    (variable,) = example.environ if not example.environ_source else [example.environ_source]
    ways = [
        ({"OLLAMA_DEFAULT_CONFIG": path}, [], f"config file {path!r}"),
        ({**context, **example.environ}, [], variable),
    ]
    if item.key in KEYS_NEVER_IN_FILES:
        del ways[0]
    if example.argv:
        ways.append((context, example.argv, example.argv[0]))
    for environ, argv, source in ways:
        settings, sources = from_command_line(argv, environ)
        assert (value_at(settings, item.key), sources[item.key]) == (example.value, source)
        assert item.default != example.value  # so the value did come from the source
        # Nothing else came from the environment or the flag (the default goes with the
        # aliases); the file holds the context too.
        others = {value for key, value in sources.items() if key not in (item.key, "default")}
        assert others <= {"default", f"config file {path!r}", context_source}


@pytest.mark.parametrize("item", SETTINGS.values(), ids=SETTINGS)
def test_a_wrong_value_from_any_source_is_one_line_naming_key_and_source(
    tmp_path: Path, item: Declared, capsys: pytest.CaptureFixture[str]
) -> None:
    example = EXAMPLES[item.key]
    context = {"OLLAMA_DEFAULT_CONFIG": write(tmp_path, example.context)}
    path = str(tmp_path / "bad.toml")
    Path(path).write_text(f"{example.bad_toml}\n{example.context}")
    source = f"config file {path!r}"
    with pytest.raises(ConfigError) as raised:
        load_settings({"OLLAMA_DEFAULT_CONFIG": path})
    assert str(raised.value) == example.toml_message.format(file=source)
    assert (raised.value.key, raised.value.source) == (item.key, source)

    if example.bad_environ:
        with pytest.raises(ConfigError) as raised:
            load_settings({**context, **example.bad_environ})
        assert str(raised.value) == example.environ_message
        expected = example.environ_source or next(iter(example.bad_environ))
        assert (raised.value.key, raised.value.source) == (item.key, expected)

    if not example.bad_argv:
        return
    if example.argv_message.startswith("argument "):  # refused by argparse, as usage
        with pytest.raises(SystemExit) as exited:
            from_command_line(example.bad_argv, context)
        assert exited.value.code == 2
        error = capsys.readouterr().err
        assert example.argv_message in error
        assert len(error.splitlines()) == 1
    else:
        with pytest.raises(ConfigError) as raised:
            from_command_line(example.bad_argv, context)
        assert str(raised.value) == example.argv_message
        assert (raised.value.key, raised.value.source) == (item.key, example.bad_argv[0])


# --------------------------------------------------------------------------------------
# One check for each rule; one alias table


def ollama(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b"{}"]


@pytest.mark.parametrize("value", [True, False, 0, -1, 1.5, "1MB", None], ids=repr)
@pytest.mark.parametrize("key", ["max_body_bytes", "max_record_bytes"])
def test_the_middleware_refuses_a_limit_with_the_settings_message(key: str, value: object) -> None:
    options: dict[str, Any] = {key: value}
    with pytest.raises(ConfigError) as from_settings:
        Settings(**options)
    with pytest.raises(ConfigError) as from_middleware:
        DefaultModel(ollama, alias="llmodel", target="qwen3:4b", **options)
    message = f"{key} must be a positive number of bytes, not {value!r}"
    assert str(from_middleware.value) == str(from_settings.value) == message
    assert from_middleware.value.key == from_settings.value.key == key


@pytest.mark.parametrize("value", [True, 0, -0.5, float("inf"), "5"], ids=repr)
@pytest.mark.parametrize("key", ["connect_timeout_s", "read_timeout_s"])
def test_the_forwarder_refuses_a_timeout_with_the_settings_message(key: str, value: object) -> None:
    options: dict[str, Any] = {key: value}
    with pytest.raises(ConfigError) as from_settings:
        Settings(**options)
    with pytest.raises(ConfigError) as from_forwarder:
        Forwarder(DEFAULT_UPSTREAM, **options)
    assert str(from_forwarder.value) == str(from_settings.value)
    assert str(from_settings.value).startswith(f"{key} must be a ")


@pytest.mark.parametrize(
    ("piece", "key"),
    [(DefaultModel, "max_body_bytes"), (DefaultModel, "max_record_bytes"),
     (Forwarder, "connect_timeout_s"), (Forwarder, "read_timeout_s")],
)  # fmt: skip
def test_a_piece_used_alone_has_the_settings_default(piece: Any, key: str) -> None:
    default = inspect.signature(piece).parameters[key].default
    assert default == SETTINGS[key].default == getattr(Settings(), key)


def test_the_alias_table_is_built_once_for_settings_and_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[object] = []
    build = AliasTable.__init__

    def counted(self: AliasTable, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        build(self, *args, **kwargs)

    monkeypatch.setattr(AliasTable, "__init__", counted)
    path = write(tmp_path, 'default = "llmodel"\n[aliases]\nllmodel = "qwen3:4b"\nembed = "e"\n')
    settings = load_settings({"OLLAMA_DEFAULT_CONFIG": path, "OLLAMA_DEFAULT_ACCESS_LOG": "0"})
    app: Any = build_app(settings, backend=ollama)
    for _ in range(5):  # inside the pieces composed around it
        if isinstance(app, DefaultModel):
            break
        app = app.app
    assert settings.alias_table is settings.alias_table
    assert isinstance(app, DefaultModel)
    assert built == [settings.alias_table] == [app.aliases]
    assert settings.alias_table.default is not None
    assert settings.alias_table.default.target == "qwen3:4b"


@pytest.mark.parametrize(
    ("flags", "key", "message"),
    [
        ({"aliases": {"a": "a:latest"}}, "aliases", "alias 'a' points at itself"),
        ({"aliases": {"a": "m"}, "default": "b"}, "default", "default 'b' is not one of"),
    ],
    ids=["aliases", "default"],
)
def test_the_alias_tables_error_names_the_aliases_or_the_default(
    flags: dict[str, Any], key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({}, flags)
    assert str(raised.value).startswith(message)
    assert (raised.value.key, raised.value.source) == (key, "--alias" if key == "aliases" else
                                                        "--default")  # fmt: skip


# --------------------------------------------------------------------------------------
# Nested tables: a group of settings declared as the top level is


@dataclass(frozen=True)
class Limits:
    max_request_bytes: int = setting(1024, BYTES, "the largest request.", flag=Option(metavar="N"))
    burst: bool = setting(False, SWITCH, "let a burst through.")


@dataclass(frozen=True)
class Outer:
    prefix: str = setting("", text(url_path), "a path.")
    limits: Limits = group(Limits, "limits on requests.")

    def __post_init__(self) -> None:
        check_fields(self)


def test_a_nested_table_declares_its_keys_variables_and_flags() -> None:
    items = declared(Outer)
    assert [item.key for item in items] == ["prefix", "limits.max_request_bytes", "limits.burst"]
    assert [item.variables for item in items[1:]] == [
        ("OLLAMA_DEFAULT_LIMITS_MAX_REQUEST_BYTES",), ("OLLAMA_DEFAULT_LIMITS_BURST",)
    ]  # fmt: skip
    assert [item.flag for item in items[1:]] == ["--limits-max-request-bytes", "--limits-burst"]
    assert [item.default for item in items] == ["", 1024, False]
    assert Outer().limits == Limits()


@pytest.mark.parametrize(
    "toml",
    ["[limits]\nmax_request_bytes = 10", "limits.max_request_bytes = 10"],
    ids=["table", "dotted-key"],
)
def test_a_nested_table_is_read_from_every_source(toml: str) -> None:
    layers = [
        from_document(Outer, tomllib.loads(toml), "the file"),
        from_environment(Outer, {"OLLAMA_DEFAULT_LIMITS_BURST": "yes"}),
        from_flags(Outer, {"prefix": "/p/"}),
    ]
    outer, sources = load(Outer, layers)
    assert outer == Outer(prefix="/p", limits=Limits(max_request_bytes=10, burst=True))
    assert sources == {
        "prefix": "--prefix",
        "limits.max_request_bytes": "the file",
        "limits.burst": "OLLAMA_DEFAULT_LIMITS_BURST",
    }
    flagged, flagged_sources = load(Outer, [from_flags(Outer, {"limits.max_request_bytes": 7})])
    assert flagged.limits.max_request_bytes == 7
    assert flagged_sources["limits.max_request_bytes"] == "--limits-max-request-bytes"


@pytest.mark.parametrize(
    ("toml", "environ", "key", "message"),
    [
        ("[limits]\nmax_request_bytes = 0", {}, "limits.max_request_bytes",
         "limits.max_request_bytes must be a positive number of bytes, not 0 (set by the file)"),
        ("[limits]\nmax_request_byte = 1", {}, "limits.max_request_byte",
         "the file: unknown key 'limits.max_request_byte' (did you mean "
         "'limits.max_request_bytes'?)"),
        ("limits = 3", {}, "limits", "limits must be a table of settings, not 3 (set by the file)"),
        ("", {"OLLAMA_DEFAULT_LIMITS_MAX_REQUEST_BYTES": "lots"}, "limits.max_request_bytes",
         "OLLAMA_DEFAULT_LIMITS_MAX_REQUEST_BYTES='lots' is not a number"),
        ("", {"OLLAMA_DEFAULT_LIMITS_BURST": "maybe"}, "limits.burst",
         "OLLAMA_DEFAULT_LIMITS_BURST='maybe' is not one of 1, 0, true, false"),
    ],
    ids=["value", "unknown-key", "not-a-table", "variable-text", "variable-switch"],
)  # fmt: skip
def test_a_nested_tables_errors_name_the_full_key(
    toml: str, environ: dict[str, str], key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        layers = [
            from_document(Outer, tomllib.loads(toml), "the file"),
            from_environment(Outer, environ),
        ]
        load(Outer, layers)
    assert (str(raised.value), raised.value.key) == (message, key)


def test_a_nested_table_is_checked_when_built_in_code() -> None:
    with pytest.raises(ConfigError) as raised:
        Outer(limits=Limits(max_request_bytes=True))
    assert str(raised.value) == (
        "limits.max_request_bytes must be a positive number of bytes, not True"
    )
    with pytest.raises(ConfigError, match="limits must be a table of settings, not 3"):
        Outer(limits=3)  # type: ignore[arg-type]


def test_a_nested_settings_flag_reads_its_text_as_its_kind(
    capsys: pytest.CaptureFixture[str],
) -> None:
    flag = setting_flag(declared(Outer)[1])
    assert flag.help == "the largest request (default: 1024; env " \
        "OLLAMA_DEFAULT_LIMITS_MAX_REQUEST_BYTES)"  # fmt: skip
    parser = argparse.ArgumentParser(prog="x", exit_on_error=False)
    parser.add_argument(*flag.names, **flag.options)
    assert vars(parser.parse_args(["--limits-max-request-bytes", "10"])) == {
        "limits.max_request_bytes": 10
    }
    with pytest.raises(argparse.ArgumentError, match="'lots' is not a number"):
        parser.parse_args(["--limits-max-request-bytes", "lots"])
