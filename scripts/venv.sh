# Sourced by the other scripts: make .venv (once, or again when setup.cfg changed),
# install the package with the given extras, and activate it.
extras="${1:-}"
stamp=".venv/.installed-${extras:-none}"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".${extras:+[$extras]}"
    touch "$stamp"
fi
# shellcheck disable=SC1091
. .venv/bin/activate
