"""The README's first command, timed: `python3 -m sonify render "Shall I compare thee"`.

    python benchmarks/bench_first_command.py [--repeats 3]

Runs the render part of the README's first set-up command (the install is pip's time, not
ours) in a fresh process and an empty folder, as a new user would, and prints each run's
wall time and the length of the piece it made. Goal: under 10 s on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMAND = [sys.executable, "-m", "sonify", "render", "Shall I compare thee"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times = []
    for run in range(args.repeats):
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            done = subprocess.run(COMMAND, cwd=folder, capture_output=True, text=True)
            elapsed = time.perf_counter() - start
            if done.returncode != 0:
                sys.exit(done.stderr)
            piece = json.loads((Path(folder) / "renders" / "shall-i-compare-thee.json").read_text())
            times.append(elapsed)
            print(f"run {run + 1}: {elapsed:.2f} s wall, piece {piece['duration']:.1f} s, {len(piece['tokens'])} tokens")
    print(f"best {min(times):.2f} s, worst {max(times):.2f} s (goal: under 10 s)")


if __name__ == "__main__":
    main()
