"""Fortunes: about 16,000 short texts (quotes, jokes, definitions, song lines) from
Debian's ``fortunes`` package (BSD fortune-mod data), each filed under a topic. A real
text corpus that a package ships and that loads without a network: polytask develops
and benchmarks its text encoders on it (``benchmarks/text_encoders.py``).

Tasks: ``topic`` (the file a text comes from, the 12 largest topical files) and
``group`` (a coarser grouping of those topics), two related classifications of the
same text.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from polytask.errors import PolytaskError

FORTUNES_DIR = Path("/usr/share/games/fortunes")
GROUPS = {
    "computers": "technology",
    "linux": "technology",
    "science": "technology",
    "politics": "society",
    "work": "society",
    "law": "society",
    "education": "society",
    "people": "people",
    "men-women": "people",
    "art": "culture",
    "literature": "culture",
    "songs-poems": "culture",
}


def load_fortunes(folder: Path = FORTUNES_DIR) -> pd.DataFrame:
    """One row per text: ``text``, ``topic``, ``group``."""
    if not (folder / "computers").is_file():
        raise PolytaskError(
            f"the fortunes corpus is not at '{folder}'; install it with "
            "'apt-get install fortunes' (Debian)"
        )
    rows = []
    for topic, group in GROUPS.items():
        raw = (folder / topic).read_text(encoding="utf-8", errors="replace")
        for text in raw.split("\n%\n"):
            text = " ".join(text.split())
            if len(text) >= 20:
                rows.append({"text": text, "topic": topic, "group": group})
    return pd.DataFrame(rows)
