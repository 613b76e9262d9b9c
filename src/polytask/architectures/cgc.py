"""Customized Gate Control (Tang et al. 2020): PLE with one extraction level.

Each task's gate mixes its own experts and the shared experts, all reading the input
embedding x: ``y_t = tower_t(softmax(W_t x) · [E_t(x), E_s(x)])``. The representation
is ``[x, E_s(x)]``; task t's head is its own experts, its gate and its tower.
"""

from __future__ import annotations

from polytask.architectures.ple import PLE, ExtractionOptions


class CGC(PLE):
    name = "cgc"
    Options = ExtractionOptions

    @staticmethod
    def levels_of(opts: ExtractionOptions) -> int:
        return 1
