# Sourced by the other scripts: make .venv (once, and again when the packaging changed),
# install the package with the given extras, and activate it.
extras="${1:-}"
stamp=".venv/.installed-${extras:-none}"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "Installing ollama-default${extras:+[$extras]} into .venv ..." >&2
    if ! { .venv/bin/python -m pip install --upgrade pip &&
           .venv/bin/python -m pip install -e ".${extras:+[$extras]}"; } > .venv/install.log 2>&1; then
        cat .venv/install.log >&2
        echo "Installing into .venv failed; the log is above (and in .venv/install.log)." >&2
        exit 1
    fi
    touch "$stamp"
fi
# shellcheck disable=SC1091
. .venv/bin/activate
