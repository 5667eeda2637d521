#!/usr/bin/env bash
# Soak: hundreds of tasks for minutes under random faults, cancels and deletions (bench/soak.py).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
exec .venv/bin/python bench/soak.py "$@"
