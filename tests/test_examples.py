"""The deployment examples and install commands of the docs, held to what the package provides.

No Docker engine or systemd runs where the tests run, so ``docs/examples/Dockerfile`` and
``docs/examples/ollama-default.service`` are read rather than run: every file the Dockerfile
copies exists and is all that ``pip`` needs, the extra it installs exists, each command is
the package's console script, and its arguments are ones ``ollama-default`` accepts. The
docs include both files verbatim (``literalinclude``), so the page and the file cannot
differ. Every ``pip install`` in the docs installs from a clone, since the package is not
on PyPI, and every line of code the docs show fits the page.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollama_default.proxy.cli import _parser
from ollama_default.proxy.config import ENV_PREFIX, load_settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
DOCKERFILE = DOCS / "examples" / "Dockerfile"
UNIT = DOCS / "examples" / "ollama-default.service"
#: Furo's column fits about 90 characters of code at a desktop width; more scrolls sideways.
CODE_COLUMNS = 88
#: The wheel ``pip wheel --no-deps .`` builds in a clone, as the docs name it.
WHEEL = "./ollama_default-VERSION-py3-none-any.whl"
#: Where the unit's install steps put the virtual environment.
VENV = "/opt/ollama-default"


def setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "setup.cfg")
    return config


def console_scripts() -> set[str]:
    entries = setup_cfg()["options.entry_points"]["console_scripts"]
    return {line.split("=")[0].strip() for line in entries.strip().splitlines()}


def extras() -> set[str]:
    return set(setup_cfg()["options.extras_require"])


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined, comments left out."""
    instructions = []
    logical = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        logical += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            keyword, _, rest = logical.strip().partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
            logical = ""
    return instructions


def arguments(instruction: str) -> list[str]:
    """Every argument of every instruction ``instruction`` in the Dockerfile, in order."""
    return [args for keyword, args in dockerfile() if keyword == instruction]


def unit() -> configparser.ConfigParser:
    # systemd allows a key more than once; the example uses each once, and keeps its case.
    config = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",))
    config.optionxform = str  # type: ignore[assignment,method-assign]
    config.read(UNIT)
    return config


def the_command(argv: list[str]) -> tuple[str, list[str]]:
    """The subcommand and bind addresses of an ``ollama-default`` command line."""
    script, *args = argv
    assert Path(script).name in console_scripts()
    parsed = _parser().parse_args(args)  # exits (SystemExit) on an unknown option
    return parsed.command, parsed.bind


# -- the Dockerfile ------------------------------------------------------------------------


def test_the_dockerfile_copies_all_that_pip_needs_to_build_the_package() -> None:
    copied: set[str] = set()
    for args in arguments("COPY"):
        *sources, _destination = args.split()
        copied.update(source.rstrip("/") for source in sources)
    metadata = setup_cfg()
    # Files setup.cfg reads (``file:``), the module ``attr:`` imports, the packages found.
    needed = {"pyproject.toml", "setup.cfg"}
    for section in metadata.sections():
        for value in metadata[section].values():
            if value.startswith("file:"):
                needed.update(name.strip() for name in value[5:].split(","))
            if value.startswith("attr:"):
                needed.add(value[5:].strip().split(".")[0])
    needed.update(
        line.strip().rstrip("*") for line in metadata["options.packages.find"]["include"].split()
    )
    assert needed <= copied, f"the Dockerfile does not copy {sorted(needed - copied)}"
    assert all((ROOT / source).exists() for source in copied)


def test_the_dockerfile_installs_the_copy_with_the_proxy_extra() -> None:
    (workdir,) = arguments("WORKDIR")
    assert all(args.split()[-1] in ("./", "ollama_default/") for args in arguments("COPY"))
    installs = [
        shlex.split(command)
        for args in arguments("RUN")
        for command in args.split("&&")
        if "pip install" in command
    ]
    assert len(installs) == 1, installs
    targets = [arg for arg in installs[0][2:] if not arg.startswith("-")]
    assert targets == [".[proxy]"]  # the copy in WORKDIR, with gunicorn and gevent
    assert workdir == "/src"
    assert "proxy" in extras()
    assert {"gunicorn[gevent]", "gevent"} <= {
        re.split(r"[<>=;\s]", line.strip())[0]
        for line in setup_cfg()["options.extras_require"]["proxy"].strip().splitlines()
    }


def test_the_dockerfile_serves_the_exposed_port_as_a_user_it_makes() -> None:
    (cmd,) = arguments("CMD")
    (user,) = arguments("USER")
    (exposed,) = arguments("EXPOSE")
    command, bind = the_command(json.loads(cmd))
    assert command == "serve"
    assert bind == [f"0.0.0.0:{exposed}"]
    assert user not in ("root", "0")
    assert any(
        shlex.split(part)[:1] == ["useradd"] and shlex.split(part)[-1] == user
        for args in arguments("RUN")
        for part in args.split("&&")
    )


def test_the_dockerfile_environment_is_a_valid_configuration() -> None:
    environment = dict(args.split("=", 1) for args in arguments("ENV"))
    assert all(name.startswith(ENV_PREFIX) for name in environment)
    assert load_settings(environment).upstream == "http://ollama:11434"


# -- the systemd unit ----------------------------------------------------------------------


def test_the_unit_runs_the_console_script_the_install_steps_put_in_place() -> None:
    service = unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == f"{VENV}/bin/ollama-default"
    assert the_command(argv) == ("serve", ["0.0.0.0:8080"])
    steps = [
        f"python3 -m venv {VENV}",
        f"{VENV}/bin/pip install '/path/to/clone[proxy]'",
    ]
    unit_text = UNIT.read_text()
    proxy_page = (DOCS / "proxy.rst").read_text()
    for step in steps:
        assert f"#   {step}\n" in unit_text
        assert f"    {step}\n" in proxy_page


def test_the_unit_runs_as_a_dynamic_user_with_a_configuration_file() -> None:
    config = unit()
    service = config["Service"]
    assert service["DynamicUser"] == "yes"
    assert service["KillMode"] == "mixed"  # SIGTERM to gunicorn's master: a graceful stop
    name, value = service["Environment"].split("=", 1)
    assert name == f"{ENV_PREFIX}CONFIG"
    assert value.startswith("/etc/")
    assert config["Install"]["WantedBy"] == "multi-user.target"


# -- the docs ------------------------------------------------------------------------------


def test_the_docs_show_the_example_files_themselves() -> None:
    proxy_page = (DOCS / "proxy.rst").read_text()
    assert ".. literalinclude:: examples/Dockerfile\n" in proxy_page
    assert ".. literalinclude:: examples/ollama-default.service\n" in proxy_page


def documents() -> Iterator[Path]:
    yield ROOT / "README.md"
    yield from sorted(DOCS.glob("*.rst"))
    yield from sorted((DOCS / "examples").iterdir())


@pytest.mark.parametrize("path", list(documents()), ids=lambda path: path.name)
def test_every_pip_install_installs_from_a_clone(path: Path) -> None:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        for command in re.findall(r"pip install ([^`#\n]*)", line):
            words = shlex.split(command.rstrip(" \\"))  # a Dockerfile's line continues
            targets = [word for word in words if not word.startswith("-")]
            where = f"{path.name}:{number}: pip install {command}"
            for target in targets:
                name, _, extra = target.partition("[")
                assert name in (".", "/path/to/clone", WHEEL), f"{where}: not a clone"
                assert not extra or extra.rstrip("]") in extras(), f"{where}: no such extra"


def indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def code_blocks(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Each literal block of a reST page (first line number, lines), included files too.

    A block's lines are given as the page sets them: without the four spaces that make a
    top-level block, but with any deeper indentation, since a block nested in a list or a
    definition is set that much further right. Blocks with ``:class: wrap`` are left out:
    the page wraps them (one long line of program output).
    """
    lines = path.read_text().splitlines()
    number = 0
    while number < len(lines):
        line = lines[number]
        number += 1
        directive = re.match(r"\s*\.\. (code-block|code|literalinclude)::\s*(.*)", line)
        if directive and directive[1] == "literalinclude":
            yield 1, (path.parent / directive[2].strip()).read_text().splitlines()
        elif directive or (line.rstrip().endswith("::") and not line.lstrip().startswith("..")):
            options = []
            while number < len(lines) and lines[number].strip().startswith(":"):
                options.append(lines[number].strip())
                number += 1
            start, block = number + 1, []
            while number < len(lines) and (
                not lines[number].strip() or indent(lines[number]) > indent(line)
            ):
                block.append(lines[number])
                number += 1
            if ":class: wrap" not in options:
                yield start, [text.removeprefix("    ") for text in block]


@pytest.mark.parametrize("path", sorted(DOCS.glob("*.rst")), ids=lambda path: path.name)
def test_code_in_the_docs_fits_the_page(path: Path) -> None:
    too_long = [
        f"{path.name}:{start + offset}: {line.strip()[:40]}..."
        for start, block in code_blocks(path)
        for offset, line in enumerate(block)
        if len(line) > CODE_COLUMNS
    ]
    assert not too_long, f"lines longer than {CODE_COLUMNS} characters: {too_long}"
