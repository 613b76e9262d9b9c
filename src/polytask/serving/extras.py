"""Optional dependencies: a missing one is a user error that names the extra to install."""

from __future__ import annotations

from polytask.errors import PolytaskError


def missing_extra(extra: str, err: ImportError) -> PolytaskError:
    """The one-line error for an optional package that is not installed."""
    package = err.name or str(err)
    return PolytaskError(
        f"'{package}' is not installed; install with pip install 'polytask[{extra}]'"
    )
