#!/usr/bin/env bash
# Write constraints.txt: the versions a fresh venv resolves today for the project with every
# extra and every dependency group. Run it after changing dependencies in pyproject.toml, and commit
# the result; scripts/_venv.sh installs exactly these versions.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade 'pip>=25.1'
extras=$("$work/venv/bin/python" scripts/_requirements.py extras)
groups=$("$work/venv/bin/python" scripts/_requirements.py groups)
# shellcheck disable=SC2086 - one --group option per group
"$work/venv/bin/python" -m pip install --quiet ".[${extras}]" $groups
{
    echo "# Written by scripts/lock.sh from a fresh venv ($("$work/venv/bin/python" -V)); do not edit."
    echo "# The versions scripts/_venv.sh installs: the project with [${extras}] and ${groups//--group /group }."
    "$work/venv/bin/python" -m pip freeze --exclude asyncheartbeat
} > constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) packages"
