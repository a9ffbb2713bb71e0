"""Settings: flags over environment over TOML; where each came from; every problem one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollama_default import ConfigError
from ollama_default.proxy.config import (
    DEFAULT_UPSTREAM,
    ENV_VARIABLES,
    Settings,
    load_settings,
    load_settings_with_sources,
)


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
        "prefix": f"config file {path!r}",
        "connect_timeout_s": "default",
        "read_timeout_s": "default",
        "max_body_bytes": "default",
        "max_record_bytes": "default",
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
    values = {"connect_timeout_s": "2", "read_timeout_s": "3", "max_body_bytes": "4",
              "max_record_bytes": "5", "access_log": "0", "log_level": "error",
              "log_file": "x.log", "log_format": "json", "upstream": "http://h:1",
              "default": "llmodel", "prefix": "/p"}  # fmt: skip
    environ = {f"OLLAMA_DEFAULT_{key.upper()}": value for key, value in values.items()}
    environ |= {"OLLAMA_DEFAULT_ALIAS": "llmodel", "OLLAMA_DEFAULT_TARGET": "qwen3:4b"}
    assert set(environ) | {"OLLAMA_DEFAULT_CONFIG"} == ENV_VARIABLES
    settings, sources = load_settings_with_sources(environ)
    assert (settings.max_record_bytes, settings.log_format) == (5, "json")
    assert "default" not in sources.values()
