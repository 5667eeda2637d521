"""Run every benchmark and write its figures into docs/performance.md.

Each benchmark runs as a process of its own (and starts its emulator in another), one after
the other, so that none measures another's leftovers. Its output replaces the block between
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` in the docs, with the commands that
made it; the prose around the blocks is written by hand. About a quarter of an hour in all.

    bash scripts/bench.sh [--only NAME ...] [--dry-run]
"""

from __future__ import annotations

import argparse
import datetime
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
PYTHON = ".venv/bin/python"

BENCHMARKS: dict[str, list[str]] = {
    "emulator": ["bench/emulator_throughput.py --seconds 5 --concurrency 200 --tasks 1000"],
    "overhead": [
        "bench/heartbeat_overhead.py --rounds 7 --seconds 3 --callers 50",
        "bench/machinery.py --rounds 5 --tasks 1000",
    ],
    "stall": ["bench/stall_watchdog.py --rounds 5 --tasks 300"],
    "memory": [
        "bench/memory.py --tasks 2000",
        "bench/memory.py --tasks 100000 --hold 60 --interval 30 --stall-timeouts none",
    ],
    "scale": [
        "bench/scale.py --tasks 1000 --header",
        "bench/scale.py --tasks 1000 --bare",
        "bench/scale.py --tasks 10000",
    ],
    "saturation": [
        "bench/scale.py --tasks 1000 --load 2 --intervals 40 --header",
        "bench/scale.py --tasks 10000 --load 2 --intervals 5",
    ],
    "metrics": ["bench/metrics_overhead.py --rounds 5 --events 200000 --tasks 1000"],
    "promises": ["bench/promises.py --runs 300"],
    "alternatives": ["bench/alternatives.py --tasks 200 --seconds 4 --rounds 3"],
    "contention": [
        "bench/contention.py slow",
        "bench/contention.py throttled",
        "bench/contention.py cpu --rounds 3 --pools 10 400",
    ],
    "fleet": ["bench/fleet.py --workers 2 4 8 16 --ratios 2.0 1.5 1.25"],
    "blocked": ["bench/blocked_loop.py"],
    "thread": ["bench/reporting_thread.py --rounds 3 --tasks 200 --seconds 4"],
}


def run(name: str) -> str:
    outputs = []
    for command in BENCHMARKS[name]:
        print(f"$ {PYTHON} {command}", file=sys.stderr, flush=True)
        done = subprocess.run(
            [PYTHON, *command.split()],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            check=True,
        )
        outputs.append(done.stdout.strip())
    commands = "\n".join(f"{PYTHON} {command}" for command in BENCHMARKS[name])
    today = datetime.datetime.now(tz=datetime.UTC).date().isoformat()
    # A command that prints only table rows continues the table of the one before it.
    body = outputs[0] + "".join(
        ("\n" if output.startswith("|") else "\n\n") + output for output in outputs[1:]
    )
    return f"```sh\n{commands}\n```\n\nMeasured {today}:\n\n{body}"


def splice(text: str, name: str, block: str) -> str:
    pattern = re.compile(rf"(<!-- bench:{name} -->\n).*?(<!-- /bench:{name} -->)", re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{DOC.name} has no <!-- bench:{name} --> block")
    return pattern.sub(lambda m: m.group(1) + block + "\n" + m.group(2), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument("--dry-run", action="store_true", help="print, do not write the docs")
    args = parser.parse_args()
    for name in args.only:  # find every block before spending minutes on the first
        splice(DOC.read_text(), name, "")
    for name in args.only:
        block = run(name)
        print(block, end="\n\n", flush=True)
        if not args.dry_run:
            DOC.write_text(splice(DOC.read_text(), name, block))


if __name__ == "__main__":
    main()
