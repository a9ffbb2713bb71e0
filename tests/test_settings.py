"""Settings: environment and TOML, the environment winning; every problem one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollama_default import ConfigError
from ollama_default.settings import DEFAULT_UPSTREAM, Settings, load_settings


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
