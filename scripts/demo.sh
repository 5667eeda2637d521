#!/usr/bin/env bash
# Two jobs under Heartbeat against the embedded local Data Pipeline; one is cancelled.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
exec .venv/bin/python examples/demo.py "$@"
