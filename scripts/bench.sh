#!/usr/bin/env bash
# Every benchmark, one after the other (about a quarter of an hour); figures go to docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
exec .venv/bin/python bench/run.py "$@"
