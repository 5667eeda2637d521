# Sourced by the other scripts: make .venv with the project, its test and docs tools, once per
# change of pyproject.toml. Needs only a Python >= 3.11 (set PYTHON to choose one) and PyPI.
python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "asyncheartbeat needs Python 3.11 or newer; '$python' is not (set PYTHON=...)" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
want=$(.venv/bin/python -c 'import hashlib; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest())')
if [ "$(cat .venv/.installed 2>/dev/null)" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet --editable '.[test]'
    # The docs site's tools, a PEP 735 group (pip >= 25.1, which the upgrade above ensures).
    .venv/bin/python -m pip install --quiet --group docs
    echo "$want" > .venv/.installed
fi
