"""The one exception type for user mistakes.

Anything a user can fix (a bad config key, a missing column, an unreadable file) raises
:class:`PolytaskError` with one line that names the problem and the fix. The CLI prints
that line and exits 2; the Python API lets it propagate.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PolytaskError(ValueError):
    """A user error: the message names the problem and how to fix it."""


def close_matches(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates closest to ``word`` (case-insensitive), best first."""
    cands = [str(c) for c in candidates]
    lower = {c.lower(): c for c in cands}
    hits = difflib.get_close_matches(word.lower(), list(lower), n=n, cutoff=0.6)
    return [lower[h] for h in hits]


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """' (did you mean 'x'?)' or '' when nothing is close."""
    hits = close_matches(word, candidates, n=1)
    return f" (did you mean '{hits[0]}'?)" if hits else ""
