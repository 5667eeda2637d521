#!/usr/bin/env bash
# Every benchmark, one after the other (about ten minutes); figures go to docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
exec .venv/bin/python bench/run.py "$@"
