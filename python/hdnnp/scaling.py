"""Symmetry-function scaling as the core applies it (n2p2's modes), for the numpy network passes
of 3G/4G/CENT and of training."""
from __future__ import annotations

import numpy as np

SCALING_NONE, SCALING_SCALE, SCALING_CENTER, SCALING_SCALE_CENTER, SCALING_SIGMA = range(5)


def scaling_transform(stats, mode: int, smin: float, smax: float):
    """(offset, factor, shift) with scaled G = offset + factor (G - shift), as the core does."""
    out = []
    for st in stats:
        K = len(st["min"])
        factor, shift, offset = np.ones(K), np.zeros(K), 0.0
        if mode == SCALING_CENTER:
            shift = st["mean"].copy()
        elif mode in (SCALING_SCALE, SCALING_SCALE_CENTER):
            shift = (st["min"] if mode == SCALING_SCALE else st["mean"]).copy()
            rng = st["max"] - st["min"]
            factor = np.where(rng > 0, (smax - smin) / np.where(rng > 0, rng, 1.0), 0.0)
            offset = smin
        elif mode == SCALING_SIGMA:
            shift = st["mean"].copy()
            factor = np.where(st["sigma"] > 0, (smax - smin) / np.where(st["sigma"] > 0, st["sigma"], 1.0), 0.0)
            offset = smin
        out.append((offset, factor, shift))
    return out
