"""Aligned-MTL (Senushkin et al. 2023): align the task gradients so that their Gramian
becomes σ_min² I (condition number 1), then sum them.

With K = V Λ Vᵀ, B = σ_min V Λ^{-1/2} Vᵀ over the non-zero eigenvalues, and the aligned
gradients are B G; the direction is their sum, 1ᵀ B G."""

from __future__ import annotations

import numpy as np

from polytask.balancing.base import GradientBalancer

#: eigenvalues below this fraction of the largest are treated as zero
RANK_TOL = 1e-8


def alignment_matrix(gram: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((gram + gram.T) / 2)
    keep = vals > RANK_TOL * max(float(vals.max()), 1e-30)
    if not keep.any():
        return np.zeros_like(gram)
    vals, vecs = vals[keep], vecs[:, keep]
    sigma_min = float(np.sqrt(vals.min()))
    return sigma_min * (vecs / np.sqrt(vals)) @ vecs.T


class AlignedMTL(GradientBalancer):
    name = "aligned_mtl"

    def coefficients(
        self, gram: np.ndarray, tasks: list[int], losses: np.ndarray | None = None
    ) -> np.ndarray:
        return alignment_matrix(gram).sum(axis=0)
