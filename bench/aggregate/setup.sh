#!/usr/bin/env bash
# Creates bench/.venv with DuckDB and pandas (pinned in requirements.txt) for compare.py.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q -r aggregate/requirements.txt
