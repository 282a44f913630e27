"""Wall time of the README's first command, `search run quickstart --parallel 2`, or of
the quickstart ablation, `search ablate quickstart --design oat --seeds 3 --parallel 2`.

Runs in a fresh temporary directory (its own runs/ and storage), so it measures what a new
user waits for: Ray's start, every trial, and the Pareto table.

    python bench/bench_quickstart.py [--parallel 2] [--trials N]
    python bench/bench_quickstart.py --ablate oat [--seeds 3] [--parallel 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--trials", type=int, help="default: the preset's")
    parser.add_argument("--ablate", metavar="DESIGN", help="run `search ablate` with DESIGN")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per configuration (ablate)")
    args = parser.parse_args()
    verb = ["run", "quickstart"]
    if args.ablate:
        verb = ["ablate", "quickstart", "--design", args.ablate, "--seeds", str(args.seeds)]
    command = [sys.executable, "-m", "search.cli", *verb]
    command += ["--study", "bench", "--parallel", str(args.parallel)]
    if args.trials:
        command += ["--trials", str(args.trials)]
    with tempfile.TemporaryDirectory() as cwd:
        start = time.perf_counter()
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
        wall = time.perf_counter() - start
    print(result.stdout)
    if result.returncode:
        sys.exit(result.stderr)
    done = [line for line in result.stdout.splitlines() if line.startswith("[")]
    print(f"search {' '.join(command[3:])}: {len(done)} trials, {wall:.1f} s wall")


if __name__ == "__main__":
    main()
