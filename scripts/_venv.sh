# Sourced by the other scripts: make .venv with the project, every extra and every group,
# at the versions of constraints.txt, once per change of pyproject.toml or constraints.txt.
# Needs only a Python >= 3.11 (set PYTHON to choose one) and PyPI.
python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "asyncheartbeat needs Python 3.11 or newer; '$python' is not (set PYTHON=...)" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
want=$(.venv/bin/python -c 'import hashlib
h = hashlib.sha256()
for name in ("pyproject.toml", "constraints.txt"):
    h.update(open(name, "rb").read())
print(h.hexdigest())')
if [ "$(cat .venv/.installed 2>/dev/null)" != "$want" ]; then
    # pip >= 25.1 reads dependency groups (--group).
    .venv/bin/python -m pip install --quiet --upgrade 'pip>=25.1'
    # shellcheck disable=SC2046 - one word per option
    .venv/bin/python -m pip install --quiet -c constraints.txt \
        --editable ".[$(.venv/bin/python scripts/_requirements.py extras)]" \
        $(.venv/bin/python scripts/_requirements.py groups)
    echo "$want" > .venv/.installed
fi
