"""Extrapolation reports: symmetry functions outside the range seen in training."""
from __future__ import annotations

import warnings

import numpy as np

from . import _core


class ExtrapolationWarning(UserWarning):
    """Symmetry-function values outside the range seen in training (scaling.data)."""


def report_extrapolation(reports, n_structures: int, mode: str, stacklevel: int = 3):
    """One summarised warning (mode "warn") or an ExtrapolationError ("raise") for the symmetry
    functions outside their scaling.data range; `reports`: (structure, the core's extrapolations
    record, a label for the symmetry-function set) of the structures that extrapolate."""
    if mode not in ("warn", "raise", "ignore"):
        raise ValueError("extrapolation must be 'warn', 'raise' or 'ignore'")
    reports = [r for r in reports if len(r[1]["atom"])]
    if not reports or mode == "ignore":
        return
    worst, atoms = None, set()
    for k, ex, label in reports:
        atoms.update((k, int(a)) for a in ex["atom"])
        span = np.maximum(ex["max"] - ex["min"], 1e-300)
        excess = np.maximum(ex["min"] - ex["value"], ex["value"] - ex["max"]) / span
        j = int(np.argmax(excess))
        if worst is None or excess[j] > worst[0]:
            worst = (excess[j], k, int(ex["atom"][j]), int(ex["sf"][j]), label)
    n_bad = len({k for k, _, _ in reports})
    msg = (f"extrapolation: {len(atoms)} atom(s) in {n_bad} of {n_structures} structure(s) have symmetry "
           f"functions outside the scaling.data range; worst: structure {worst[1]}, atom {worst[2]}, "
           f"{worst[4]}SF {worst[3] + 1}, {worst[0]:.3g} x the training range outside. Predictions there are "
           f"unreliable.")
    if mode == "raise":
        raise _core.ExtrapolationError(msg)
    warnings.warn(msg, ExtrapolationWarning, stacklevel=stacklevel)
