"""Learning-curve and parity plots (PNG, matplotlib; optional: ``pip install hdnnp[plot]``)."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    tmp = os.fspath(path) + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)


def learning_curve(history: Sequence, path, units=("energy/atom", "force"), best_epoch=None):
    """RMSE of energies per atom and forces against the epoch: train, validation (when there is
    one) and test; `best_epoch` (the one whose weights were written) marked."""
    plt = _pyplot()
    ep = [h.epoch for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.6))
    for a, key, label in ((ax[0], "energy", units[0]), (ax[1], "force", units[1])):
        a.semilogy(ep, [getattr(h, f"rmse_{key}_train") for h in history], "o-", ms=3, label="train")
        val = [getattr(h, f"rmse_{key}_validation", float("nan")) for h in history]
        if np.any(np.isfinite(val)):
            a.semilogy(ep, val, "^-", ms=3, label="validation")
        a.semilogy(ep, [getattr(h, f"rmse_{key}_test") for h in history], "s-", ms=3, label="test")
        if best_epoch is not None and best_epoch >= 0:
            a.axvline(best_epoch, color="0.6", ls="--", lw=0.8, label="best (validation)")
        a.set_xlabel("epoch")
        a.set_ylabel(f"RMSE ({label})")
        a.legend()
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def parity(reference: np.ndarray, predicted: np.ndarray, path, label: str, sets=None):
    """Predicted against reference values, one colour per set (e.g. train/test)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4))
    sets = sets if sets is not None else np.array(["data"] * len(reference))
    for s in np.unique(sets):
        m = sets == s
        ax.plot(reference[m], predicted[m], ".", ms=3, label=f"{s} (RMSE {np.sqrt(np.mean((predicted[m] - reference[m]) ** 2)):.3g})")
    lo, hi = float(np.min(reference)), float(np.max(reference))
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    ax.set_xlabel(f"reference {label}")
    ax.set_ylabel(f"predicted {label}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
