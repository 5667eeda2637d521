"""What scripts/_venv.sh and scripts/lock.sh install: every extra, and every group.

``extras`` prints them as ``a,b`` (for ``.[a,b]``); ``groups`` as ``--group x --group y``.
"""

import sys
import tomllib

with open("pyproject.toml", "rb") as file:
    project = tomllib.load(file)
if sys.argv[1:] == ["extras"]:
    print(",".join(project["project"].get("optional-dependencies", {})))
elif sys.argv[1:] == ["groups"]:
    print(" ".join(f"--group {group}" for group in project.get("dependency-groups", {})))
else:
    sys.exit("usage: python scripts/_requirements.py extras|groups")
