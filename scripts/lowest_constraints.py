"""Print pip constraints that pin each runtime and ``[proxy]`` dependency to its lower bound.

``scripts/test-lowest`` installs the test extra under them, so the suite runs against the
oldest versions ``setup.cfg`` promises to work with. The test tools stay free (pip picks
versions of them that fit the pins): they are not the package's dependencies.

Usage: ``python scripts/lowest_constraints.py [setup.cfg] > constraints.txt``
"""

from __future__ import annotations

import configparser
import sys
from collections.abc import Iterator

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

#: The extras whose dependencies are the package's, as the runtime ones are.
PINNED_EXTRAS = ("proxy",)


def lower_bound_pins(setup_cfg: str) -> Iterator[str]:
    """Each dependency of ``setup_cfg``'s package and pinned extras, as ``name==lower bound``."""
    config = configparser.ConfigParser()
    if not config.read(setup_cfg):
        raise SystemExit(f"{setup_cfg}: cannot be read")
    lines = config["options"]["install_requires"].splitlines()
    for extra in PINNED_EXTRAS:
        lines += config["options.extras_require"][extra].splitlines()
    for line in filter(None, map(str.strip, lines)):
        requirement = Requirement(line)
        lower = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if len(lower) != 1:
            raise SystemExit(f"{setup_cfg}: {line!r} needs one lower bound (>=) to be tested at")
        # pip refuses extras in constraints; the markers stay (tomli: Python < 3.11 only).
        requirement.extras = set()
        requirement.specifier = SpecifierSet(f"=={lower[0]}")
        yield str(requirement)


if __name__ == "__main__":
    print("\n".join(lower_bound_pins(sys.argv[1] if len(sys.argv) > 1 else "setup.cfg")))
