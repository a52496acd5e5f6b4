#!/usr/bin/env bash
# Tests of the Python client (clients/python): lint, type check, unit tests, doctests, and the
# tests against a real `pulse serve` (binary: $PULSE_BIN, else built here with cargo).
# Everything is installed into clients/python/.venv from PyPI; extra arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"

if [[ -z "${PULSE_BIN:-}" ]]; then
  (cd "$repo" && cargo build -p pulse-cli --quiet)
  export PULSE_BIN="${CARGO_TARGET_DIR:-$repo/target}/debug/pulse"
fi

venv="$here/.venv"
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$here[test]"

cd "$here"
"$venv/bin/python" -m ruff format --check src tests bench
"$venv/bin/python" -m ruff check src tests bench
"$venv/bin/python" -m mypy --strict src tests bench
"$venv/bin/python" -m pytest -p no:cacheprovider --doctest-modules --import-mode=importlib src tests "$@"
