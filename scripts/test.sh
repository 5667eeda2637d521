#!/usr/bin/env bash
# The whole check: lint, format, types, tests. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# The quick suite (under a minute), then the slower integration checks.
.venv/bin/pytest -m "not slow" "$@"
.venv/bin/pytest -m slow "$@" || [ $? -eq 5 ]  # 5: the arguments selected no slow test
