"""Two checkouts measured alternately by the same benchmark, in one run.

    .venv/bin/python bench/compare.py OLD_TREE [--runs 5] [--rows 1,2]
    .venv/bin/python bench/compare.py OLD_TREE --bench io [--rows 1,2,3]   # bench/io_handlers.py cpu

OLD_TREE is another checkout (e.g. `git worktree add ../old <commit>`); this one is "new".
The machine's speed drifts by 2x from day to day and by 20% within minutes, so a figure
only means something beside one taken in the same run: each run measures old then new
(the order alternates), and the table gives every figure's median over the runs per tree.
Worker CPU per job is the steadiest figure; drain rates also carry the machine's noise.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = {"core": ["core.py"], "io": ["io_handlers.py", "cpu"]}  # each prints a "| # | name | figure" table
ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*(.+?)\s*\|\s*([\d,.]+)\s*(jobs/s|us|MB|%|B)?")


def measure(tree: Path | None, bench: str, rows: str) -> dict[str, float]:
    env = {**os.environ, "GEOQ_BENCH_TREE": str(tree)} if tree else dict(os.environ)
    script, *args = BENCHES[bench]
    done = subprocess.run([sys.executable, str(HERE / script), *args, "--rows", rows], env=env,
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"bench/{script} failed for {tree or 'this tree'}:\n{done.stderr[-2000:]}")
    figures = {}
    for line in done.stdout.splitlines():
        match = ROW.match(line)
        if match:
            figures[f"{match[1]} {match[2]} ({match[4] or ''})"] = float(match[3].replace(",", ""))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--bench", choices=sorted(BENCHES), default="core")
    parser.add_argument("--rows", default="1,2")
    args = parser.parse_args()
    seen: dict[str, dict[str, list[float]]] = {"old": defaultdict(list), "new": defaultdict(list)}
    for run in range(args.runs):
        order = [("old", args.old), ("new", None)]
        for name, tree in order if run % 2 == 0 else reversed(order):
            for figure, value in measure(tree, args.bench, args.rows).items():
                seen[name][figure].append(value)
    print(f"{'figure':60} {'old':>10} {'new':>10} {'new/old':>8}   (medians of {args.runs} runs each)")
    for figure, values in seen["new"].items():
        old, new = statistics.median(seen["old"][figure]), statistics.median(values)
        print(f"{figure:60} {old:>10,.1f} {new:>10,.1f} {new / old if old else float('nan'):>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
