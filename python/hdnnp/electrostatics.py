"""Ewald parameters for Gaussian-charge electrostatics (THEORY.md B.2), chosen by the core
(`hdnnp/ewald_parameters.hpp`).

Two ways to choose the splitting width eta, the real-space cutoff r_cut and the reciprocal
cutoff k_cut of a periodic structure:

- `n2p2_parameters`: n2p2's own choice, reproduced step by step (same formulas, the same
  iterations and stopping rules), so that results equal n2p2's: Jackson & Catlow
  (`ewald_truncation_error_method 0`, `ewald_prec eps`) and Kolafa & Perram
  (`ewald_truncation_error_method 1`, `ewald_prec dF [q_max [r_cut]]`), which controls the RMS
  *force* error only.
- `accuracy_parameters`: this package's mode: the cutoffs are chosen so that the estimated
  *energy* truncation error of the structure (Kolafa & Perram's energy estimates, real and
  reciprocal space each held to 1/20) stays below a requested absolute tolerance;
  `pme_parameters` the same for matrix-free products with a particle-mesh reciprocal part.

Both are recomputed per structure (volume and number of atoms); the chosen values are
returned so they can be reported.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from . import _core


@dataclass(frozen=True)
class EwaldParameters:
    eta: float
    r_cut: float
    k_cut: float
    method: str
    reliable: bool = True   # n2p2's "estimate reliable" flag (eta >= max sigma)
    mesh: tuple = (0, 0, 0)  # particle-mesh grid (0: Ewald structure factors over |k| < k_cut)
    mesh_order: int = 6

    def as_dict(self):
        d = {"eta": self.eta, "r_cut": self.r_cut, "k_cut": self.k_cut, "method": self.method}
        if self.mesh[0]:
            d["mesh"], d["mesh_order"] = list(self.mesh), self.mesh_order
        return d


def _from_core(p: dict) -> EwaldParameters:
    return EwaldParameters(p["eta"], p["r_cut"], p["k_cut"], p["method"], p["reliable"], tuple(p["mesh"]),
                           p["mesh_order"])


def _checked(fn, *args):
    try:
        return _from_core(fn(*args))
    except _core.ConfigError as e:   # (the Python API's errors for bad settings are ValueErrors)
        raise ValueError(str(e)) from None


def n2p2_parameters(method: int, prec_args: Sequence[float], volume: float, n_atoms: int,
                    four_pi_eps: float = 1.0, max_sigma: float = 0.0) -> EwaldParameters:
    """n2p2's EwaldTruncJackson / EwaldTruncKolafaFixR / EwaldTruncKolafaOptEta."""
    return _checked(_core.n2p2_ewald_parameters, int(method), [float(x) for x in prec_args], float(volume),
                    int(n_atoms), float(four_pi_eps), float(max_sigma))


def accuracy_parameters(energy_tolerance: float, volume: float, n_atoms: int, q_max: float = 1.0,
                        four_pi_eps: float = 1.0, r_cut: Optional[float] = None,
                        max_sigma: float = 0.0, per_particle: bool = False) -> EwaldParameters:
    """Cutoffs whose estimated energy truncation error is below `energy_tolerance` (absolute,
    the potential's energy unit, for the whole structure): Kolafa & Perram's RMS energy
    estimates with Q2 = N q_max^2, each part held to 1/20 of the tolerance. Without `r_cut`, eta
    is n2p2's cost-balanced guess (for dense matrices, or matrix-free products with
    `per_particle`) and the real-space cutoff follows; with `r_cut`, eta follows from it. eta is
    never below sqrt2 max(sigma) (then r_cut grows beyond a requested one)."""
    return _checked(_core.accuracy_ewald_parameters, float(energy_tolerance), float(volume), int(n_atoms),
                    float(q_max), float(four_pi_eps), float(r_cut or 0.0), float(max_sigma), bool(per_particle))


def fft_size(n: int) -> int:
    """The smallest product of 2, 3 and 5 that is >= n (the mesh's FFT sizes)."""
    return _core.fft_size(int(n))


def pme_parameters(energy_tolerance: float, cell, n_atoms: int, q_max: float = 1.0, four_pi_eps: float = 1.0,
                   max_sigma: float = 0.0, neighbours: float = 150.0, order: int = 6) -> EwaldParameters:
    """Parameters for matrix-free products with a particle-mesh reciprocal part: the real-space
    cutoff encloses about `neighbours` atoms at the cell's mean density, eta follows from the
    energy tolerance there (never below sqrt2 max sigma), and the mesh spacing along each lattice
    vector is at most 0.6 eta (tolerance / 1e-3)^(1/8) (grid sizes products of 2, 3 and 5).
    k_cut is reported for reference; the mesh sums every k it resolves."""
    cell = np.ascontiguousarray(np.asarray(cell, dtype=float).reshape(3, 3))
    return _checked(_core.pme_ewald_parameters, float(energy_tolerance), cell, int(n_atoms), float(q_max),
                    float(four_pi_eps), float(max_sigma), float(neighbours), int(order))
