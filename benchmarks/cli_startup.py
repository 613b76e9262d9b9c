"""Wall time of ``polytask --help``, ``--version``, a verb's help and mistakes that need
no data, each in a fresh interpreter, for this tree's src against another commit's
(default: the commit before issue 17), interleaved so that both see the same load.

    PYTHONPATH=src python benchmarks/cli_startup.py [--before COMMIT] [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [
    ["--help"],
    ["--version"],
    ["train", "--help"],
    ["compare", "--help"],
    ["train", "--epohcs", "3"],
    ["train", "--data", "{csv}", "--task", "a:regresion", "--out", "r"],
    ["train", "--data", "nope.csv", "--task", "a:regression", "--out", "r"],
    ["predict", "no_run", "--data", "{csv}", "--output", "p.csv"],
]


def seconds(src: Path, argv: list[str], cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "polytask", *argv], cwd=cwd, env=env, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--before", default="b01f950")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        before = work / "before"
        before.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", a.before, "src"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive.stdout, check=True)
        (work / "t.csv").write_text("a,b\n1,2\n3,4\n")
        trees = {"before": before / "src", "after": ROOT / "src"}
        print(f"| command | before {a.before} (s) | after (s) | ratio |\n|---|---|---|---|")
        for cmd in COMMANDS:
            argv = [c.replace("{csv}", str(work / "t.csv")) for c in cmd]
            times: dict[str, list[float]] = {k: [] for k in trees}
            for _ in range(a.repeats):
                for name, src in trees.items():
                    times[name].append(seconds(src, argv, work))
            b, f = (statistics.median(times[k]) for k in trees)
            shown = " ".join(c if "t.csv" not in c else "t.csv" for c in argv)
            print(f"| `polytask {shown}` | {b:.2f} | {f:.2f} | {b / f:.0f}x |")


if __name__ == "__main__":
    main()
