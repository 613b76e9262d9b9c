"""``balancing.method: auto``: a short successive-halving race of balancing methods on the
validation split (:mod:`polytask.auto.race`); the winner is then trained to the end."""

from polytask.auto.race import AUTO, AutoOptions, Entrant, race

__all__ = ["AUTO", "AutoOptions", "Entrant", "race"]
