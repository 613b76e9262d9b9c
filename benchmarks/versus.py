"""One benchmark, two checkouts, interleaved: is this tree as fast as another commit?

Runs ``BENCH`` (a script in ``benchmarks/``) from each checkout with that checkout's own
``src`` first on ``PYTHONPATH``, alternating which goes first every round, and reads every
table row it prints (a label followed by numbers; the first number is the row's value).
Prints, per row, the median over rounds for each checkout and their ratio (this tree /
the other; for times below 1 is faster, for rates above 1 is faster). Make the other
checkout with ``git worktree add /tmp/before COMMIT``. Run alone:

    python benchmarks/versus.py --other /tmp/before --rounds 3 step_cost.py --tasks 5,20
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"^-?[\d,]*\.?\d+x?$")
SECTION = re.compile(r"^(T = \d+|batch \d+|prediction|trainer)")


def run(tree: Path, bench: str, args: list[str]) -> str:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    cmd = [sys.executable, str(tree / "benchmarks" / bench), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout


def rows(output: str) -> dict[str, float]:
    """``section / label -> first number`` for every line that ends in numbers."""
    found: dict[str, float] = {}
    section = ""
    for line in output.splitlines():
        head = SECTION.match(line.strip())
        if head:
            section = head.group(1)
        tokens = line.split()
        values = []
        while tokens and NUMBER.match(tokens[-1]):
            values.insert(0, tokens.pop())
        if tokens and values and not line.strip().startswith("T ="):
            label = " ".join(tokens)
            found[f"{section} / {label}"] = float(values[0].rstrip("x").replace(",", ""))
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", type=Path, required=True, help="the other checkout")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("bench", help="script in benchmarks/, e.g. step_cost.py")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")
    opts = ap.parse_args()
    trees = {"this": HERE, "other": opts.other.resolve()}
    seen: dict[str, dict[str, list[float]]] = {k: {} for k in trees}
    for i in range(opts.rounds):
        order = list(trees) if i % 2 == 0 else list(trees)[::-1]
        for name in order:
            for key, value in rows(run(trees[name], opts.bench, opts.args)).items():
                seen[name].setdefault(key, []).append(value)
    print(f"{opts.bench} {' '.join(opts.args)}: median of {opts.rounds} interleaved rounds")
    print(f"this tree {HERE}, other {trees['other']}")
    print(f"{'row':<60}{'this':>12}{'other':>12}{'this/other':>12}")
    for key, values in seen["this"].items():
        other = seen["other"].get(key)
        if not other:
            continue
        a, b = statistics.median(values), statistics.median(other)
        print(f"{key:<60}{a:>12.3f}{b:>12.3f}{(a / b if b else float('nan')):>12.3f}")


if __name__ == "__main__":
    main()
