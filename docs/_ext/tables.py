"""Tables generated from the code and the tests, so the docs cannot drift from either.

``.. endpoint-table::`` renders :data:`ollama_default.core.endpoints.ENDPOINTS`;
``.. bad-input-table::`` renders the rows ``tests/test_bad_input.py`` runs;
``.. settings-table::`` renders the settings :class:`ollama_default.proxy.config.Settings`
declares, their defaults as a person would type them in TOML;
``.. parameter-table::`` renders the per-alias parameters
(:data:`ollama_default.core.params.PARAMETERS`) and where each goes on every endpoint
(:data:`ollama_default.core.params.PLACES`).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from ollama_default.core.endpoints import ENDPOINTS, Field, ResponseFields
from ollama_default.core.listings import LISTS
from ollama_default.core.params import PARAMETERS, PLACES
from ollama_default.proxy.config import CONFIG_VARIABLE, SETTINGS
from ollama_default.proxy.declaration import Declared

TESTS = Path(__file__).resolve().parents[2] / "tests"
# Flags and variables, as literals (a plain "--" would become a dash).
_LITERAL = r"(--[\w-]+|\bOLLAMA_DEFAULT_\w+|\bGUNICORN_CMD_ARGS\b)"


def _paths(fields: ResponseFields, prefix: str = "") -> list[str]:
    found = []
    for key, value in fields.items():
        if isinstance(value, Field):
            if value is Field.MODEL_NAME:
                found.append(f"``{prefix}{key}``")
        else:
            found.extend(_paths(value, f"{prefix}{key}."))
    return found


def _request_fields(endpoint: Any) -> str:
    if endpoint.path_model:
        return "the path segment"
    refs = []
    for keys in endpoint.model_fields:
        ref = " or ".join(f"``{key}``" for key in keys)
        refs.append(ref + (" (form field)" if endpoint.body.value == "multipart" else ""))
    return ", ".join(refs) or "none"


class _Table(SphinxDirective):
    header: tuple[str, ...] = ()
    widths: str = "auto"

    def rows(self) -> list[tuple[str, ...]]:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {self.widths}"]
        lines += ["   :class: generated", ""]  # docs/_static/tables.css styles them
        lines.append(f"   * - {self.header[0]}")
        lines.extend(f"     - {cell}" for cell in self.header[1:])
        for row in self.rows():
            lines.append(f"   * - {row[0]}")
            # Each cell names its column too, shown where a narrow screen stacks the cells.
            lines.extend(
                f"     - :column-label:`{name}` {cell}"
                for name, cell in zip(self.header[1:], row[1:], strict=True)
            )
        lines = [line for text in lines for line in text.split("\n")]  # cells of paragraphs
        container = nodes.container()
        self.state.nested_parse(StringList(lines), self.content_offset, container)
        return container.children


def _family_paths(family: str) -> list[str]:
    return [f"``{e.path}``" for e in ENDPOINTS if e.params == family]


def parameter_rows() -> list[tuple[str, ...]]:
    """The header and rows of the parameter table: one row per parameter, saying where it
    goes on each endpoint (endpoints that take it alike grouped) and where it is not
    applied."""
    rows: list[tuple[str, ...]] = [("Parameter", "Value", "Where it goes")]
    for parameter in PARAMETERS:
        value = parameter.type.value.replace('"', "``")
        if parameter.load_time:
            value += "; load-time"
        groups: dict[str, list[str]] = {}
        for family, places in PLACES.items():
            place = places.get(parameter.name)
            if place is None:
                groups.setdefault("not applied", []).extend(_family_paths(family))
                continue
            where = f"``options.{place.key}``" if place.in_options else f"``{place.key}``"
            notes = [place.note] if place.note else []
            if place.zero_is_unset and place.unset is not None:
                notes.append(f"stripped as ``{place.unset.decode()}``")
            if parameter.no_strip and place.in_options:
                notes.append("no strip")
            where += f" ({'; '.join(notes)})" if notes else ""
            groups.setdefault(where, []).extend(_family_paths(family))
        cell = "; ".join(f"{where} on {', '.join(paths)}" for where, paths in groups.items())
        rows.append((f"``{parameter.name}``", value, cell))
    return rows


class ParameterTable(_Table):
    header = parameter_rows()[0]
    widths = "18 22 60"

    def rows(self) -> list[tuple[str, ...]]:
        return parameter_rows()[1:]


class EndpointTable(_Table):
    header = (
        "Method, path",
        "Model in the request",
        "Default?",
        "Model names in the response",
        "Errors",
    )

    def rows(self) -> list[tuple[str, ...]]:
        rows = []
        for endpoint in ENDPOINTS:
            methods = ", ".join(sorted(endpoint.methods))
            response = _paths(endpoint.response_fields)
            if "error" in endpoint.response_fields:
                response.append("names in error messages")
            if endpoint.listing in LISTS:
                response.append("each installed alias listed as a model (:ref:`listings`)")
            elif endpoint.listing is not None:
                response.append("the alias described as a model (:ref:`listings`)")
            rows.append((
                f"{methods} ``{endpoint.path}``",
                _request_fields(endpoint),
                "yes" if endpoint.takes_default else "no",
                ", ".join(response) or "none (passed through)",
                endpoint.dialect.value,
            ))  # fmt: skip
        return rows


class BadInputTable(_Table):
    header = ("A request with", "gets")

    def rows(self) -> list[tuple[str, ...]]:
        spec = importlib.util.spec_from_file_location("test_bad_input", TESTS / "test_bad_input.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return [(case.sent, case.answer) for case in module.BAD_INPUT]


class SettingsTable(_Table):
    header = ("Setting", "Default", "Meaning")
    widths = "30 22 48"

    def rows(self) -> list[tuple[str, ...]]:
        rows = []
        for item in SETTINGS.values():
            declared = item.setting
            key = f"``[{item.key}]`` table" if declared.kind.table else f"``{item.key}``"
            variables = re.sub(_LITERAL, r"``\1``", item.variables_shown)
            if declared.variables is not None:
                variables += f" ({declared.variables.scope})"
            meaning = " ".join(declared.doc.split())
            rows.append((_stacked(key, variables), _readable(item), meaning))
        rows.append((_stacked("", f"``{CONFIG_VARIABLE}``"), "none", "the TOML file to read."))
        return rows


def _stacked(*paragraphs: str) -> str:
    """One table cell holding each non-empty paragraph on its own line."""
    return "\n\n       ".join(paragraph for paragraph in paragraphs if paragraph)


def _readable(item: Declared) -> str:
    """A default as a person reads it and types it in TOML: ``true``, ``5 s``, ``100 MiB``.

    The units are the setting's kind's.
    """
    value, unit = item.default, item.setting.kind.unit
    if value is None or value == "" or value == {} or value == ():
        return "none"
    if isinstance(value, bool):
        return f"``{str(value).lower()}``"
    if isinstance(value, (int, float)) and unit == "s":
        shown = f"{value:g} s"
        return f"{shown} ({value / 60:g} min)" if value >= 60 and value % 60 == 0 else shown
    if isinstance(value, int) and unit == "bytes":
        mib, rest = divmod(value, 1024 * 1024)
        return f"{mib} MiB ({value})" if mib and not rest else f"{value} bytes"
    return f"``{value}``"


def column_label(
    name: str, rawtext: str, text: str, lineno: int, inliner: Any, *args: Any, **kwargs: Any
) -> tuple[list[nodes.Node], list[nodes.system_message]]:
    """A column's name inside a cell, hidden unless a narrow screen stacks the table."""
    return [nodes.inline(rawtext, text, classes=["column-label"])], []


class CliFlagsTable(_Table):
    """``.. cli-flags:: serve``: a command's flags, from the one declaration ``--help`` uses."""

    header = ("Flag", "Default", "Meaning")
    widths = "34 20 46"
    required_arguments = 1

    def rows(self) -> list[tuple[str, ...]]:
        import argparse

        from ollama_default.proxy.cli import COMMAND_FLAGS

        rows = []
        for flag in COMMAND_FLAGS[self.arguments[0]]:
            names = list(flag.names)
            if flag.options.get("action") is argparse.BooleanOptionalAction:
                names.append("--no-" + names[0][2:])
            value = flag.options.get("metavar")
            if value is None and "choices" in flag.options:
                value = "{" + ",".join(flag.options["choices"]) + "}"
            shown = ", ".join(f"``{name}``" for name in names)
            if value:
                shown = f"``{names[0]} {value}``" + "".join(f", ``{n}``" for n in names[1:])
            meaning = re.sub(_LITERAL, r"``\1``", flag.meaning)
            origin = re.sub(_LITERAL, r"``\1``", flag.origin.removeprefix("env "))
            also = f"also {origin}" if origin else ""
            rows.append((_stacked(shown, also), f"``{flag.default}``", meaning))
        return rows


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_role("column-label", column_label)
    app.add_directive("endpoint-table", EndpointTable)
    app.add_directive("parameter-table", ParameterTable)
    app.add_directive("bad-input-table", BadInputTable)
    app.add_directive("settings-table", SettingsTable)
    app.add_directive("cli-flags", CliFlagsTable)
    return {"parallel_read_safe": True}
