"""Test oracle: the Python implementation of the Ewald parameter choice that the core
(hdnnp/ewald_parameters.hpp) replaced, kept to check the core against it (THEORY.md B.2).

Two ways to choose the splitting width eta, the real-space cutoff r_cut and the reciprocal
cutoff k_cut of a periodic structure:

- `n2p2_parameters`: n2p2's own choice, reproduced step by step (same formulas, the same
  iterations and stopping rules), so that results equal n2p2's: Jackson & Catlow
  (`ewald_truncation_error_method 0`, `ewald_prec eps`) and Kolafa & Perram
  (`ewald_truncation_error_method 1`, `ewald_prec dF [q_max [r_cut]]`), which controls the RMS
  *force* error only.
- `accuracy_parameters`: this package's mode: the cutoffs are chosen so that the estimated
  *energy* truncation error of the structure (Kolafa & Perram's energy estimates, real and
  reciprocal space each given half) stays below a requested absolute tolerance.

Both are recomputed per structure (volume and number of atoms); the chosen values are
returned so they can be reported.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

from hdnnp.electrostatics import EwaldParameters  # (the result's container; the choice is this file's)

_TR_OVER_TK = 3.676  # n2p2's ratio of the costs of one real- and one reciprocal-space term


def n2p2_parameters(method: int, prec_args: Sequence[float], volume: float, n_atoms: int,
                    four_pi_eps: float = 1.0, max_sigma: float = 0.0) -> EwaldParameters:
    """n2p2's EwaldTruncJackson / EwaldTruncKolafaFixR / EwaldTruncKolafaOptEta."""
    if not prec_args:
        raise ValueError("ewald_prec needs at least one argument")
    prec = float(prec_args[0])
    if prec <= 0:
        raise ValueError("ewald_prec: the precision must be positive")
    if method == 0:
        if len(prec_args) != 1:
            raise ValueError("ewald_prec takes one argument with ewald_truncation_error_method 0")
        if prec >= 1.0:
            raise ValueError("ewald_prec: Jackson-Catlow (method 0) needs a precision < 1")
        eta = volume ** (1.0 / 3.0) / math.sqrt(2.0 * math.pi)
        t = math.sqrt(-2.0 * math.log(prec))
        return EwaldParameters(eta, t * eta, t / eta, "n2p2-jackson-catlow")
    if method != 1:
        raise ValueError(f"ewald_truncation_error_method {method} is not known (0 or 1)")
    if len(prec_args) > 3:
        raise ValueError("ewald_prec takes at most three arguments with ewald_truncation_error_method 1")
    q_max = float(prec_args[1]) if len(prec_args) >= 2 else 1.0
    if len(prec_args) == 3:  # fixed real-space cutoff
        r_cut = float(prec_args[2])
        if r_cut == 0.0:
            raise ValueError("ewald_prec: the real-space cutoff cannot be zero")
        C = 2.0 * q_max ** 2 * math.sqrt(n_atoms / volume) / four_pi_eps
        x = math.sqrt(r_cut / 2.0) * prec / C
        if x >= 1.0:
            raise ValueError("ewald_prec: bad precision settings (too large), try a smaller value")
        eta = r_cut / math.sqrt(-2.0 * math.log(x))
        y = eta * prec / (math.sqrt(2.0) * C)
        k_cut, rel_x, rel_y = 1.0 / eta, 1.0, 1.0
        while rel_x > 1e-10 or rel_y > 1e-10:
            old = k_cut
            k_cut -= 2 * k_cut / (1 + 2 * (k_cut * eta) ** 2) * (-1 + math.sqrt(k_cut) * math.exp((k_cut * eta) ** 2 / 2) * y)
            if k_cut <= 0:
                k_cut = old / 2
                continue
            rel_x = abs((k_cut - old) / k_cut)
            rel_y = abs((1 / math.sqrt(k_cut) * math.exp(-(k_cut * eta) ** 2 / 2) - y) / y)
        return EwaldParameters(eta, r_cut, k_cut, "n2p2-kolafa-perram-fixed-rcut", eta >= max_sigma)
    # optimal eta
    C = 2.0 ** 0.75 * q_max ** 2 * math.sqrt(n_atoms / volume) / four_pi_eps
    eta0 = (1.0 / _TR_OVER_TK * volume ** 2 / (2.0 * math.pi) ** 3) ** (1.0 / 6.0)
    eta, s, rel = eta0, 1.0, 1.0
    while rel > 1e-10:
        # s solves exp(-s^2)/sqrt(s) = prec/C sqrt(eta/2) (Newton, as n2p2)
        y = prec / C * math.sqrt(eta / 2.0)
        if s <= 0.0:
            s = 0.5
        rx = ry = 1.0
        while rx > 1e-10 or ry > 1e-10:
            step = 2 * s / (4 * s ** 2 + 1) * (1 - math.sqrt(s) / math.exp(-s ** 2) * y)
            if s <= -step:
                s /= 2
                continue
            s += step
            ry = abs((math.exp(-s ** 2) / math.sqrt(s) - y) / y)
            rx = abs(step / s)
        old = eta
        eta = eta0 * (1 + 1 / (2 * s ** 2)) ** (1.0 / 6.0)
        rel = abs(old - eta) / eta
    eta = max(eta, max_sigma)
    return EwaldParameters(eta, math.sqrt(2) * eta * s, math.sqrt(2) * s / eta, "n2p2-kolafa-perram")


def _solve_decreasing(f, target, lo, hi):
    """x in [lo, hi] with f(x) = target for a decreasing f (bisection in log space)."""
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if f(mid) > target:
            lo = mid
        else:
            hi = mid
        if hi / lo - 1 < 1e-12:
            break
    return hi


def accuracy_parameters(energy_tolerance: float, volume: float, n_atoms: int, q_max: float = 1.0,
                        four_pi_eps: float = 1.0, r_cut: Optional[float] = None,
                        max_sigma: float = 0.0, per_particle: bool = False) -> EwaldParameters:
    """Cutoffs whose estimated energy truncation error is below `energy_tolerance` (absolute,
    the potential's energy unit, for the whole structure).

    Kolafa & Perram's RMS energy estimates with Q2 = N q_max^2 and alpha = 1/(sqrt2 eta):
    real space  Q2 sqrt(r_c / (2V)) exp(-alpha^2 r_c^2) / (alpha r_c)^2,
    reciprocal  Q2 alpha / pi^2 (2 pi / (k_c L))^(3/2) exp(-k_c^2 / (4 alpha^2)),  L = V^(1/3),
    each held to 1/20 of the tolerance. Without `r_cut`, eta is n2p2's cost-balanced initial
    guess V^(1/3) / (2 pi 3.676^(1/3))^(1/2) and the real-space cutoff follows from the
    tolerance; with `r_cut`, eta follows from it. eta is never below sqrt2 max(sigma) (then r_cut
    grows beyond a requested one)."""
    if not energy_tolerance > 0:
        raise ValueError("the Ewald energy tolerance must be positive")
    Q2 = n_atoms * q_max ** 2 / four_pi_eps
    # Kolafa-Perram estimates are RMS estimates, not bounds, and the charges and short energies
    # respond to the truncated matrix too: each part is held to 1/20 of the tolerance (the
    # cutoffs grow only like sqrt(ln(1/tol))), checked against converged sums in the tests.
    target = energy_tolerance / 20.0
    L = volume ** (1.0 / 3.0)

    def real_error(alpha, rc):
        return Q2 * math.sqrt(rc / (2 * volume)) * math.exp(-(alpha * rc) ** 2) / (alpha * rc) ** 2

    # The real-space kernel [erfc(r/(sqrt2 eta)) - erfc(r/(sqrt2 gamma_ij))]/r decays with the
    # wider of eta and gamma_ij = sqrt(sigma_i^2 + sigma_j^2): eta >= sqrt2 max(sigma) keeps the
    # estimate (written for eta) an upper bound of the tail.
    eta_min = math.sqrt(2.0) * max_sigma
    if r_cut is not None:
        alpha = _solve_decreasing(lambda a: real_error(a, r_cut), target, 1e-6 / r_cut, 1e3 / r_cut)
        eta = 1.0 / (math.sqrt(2) * alpha)
    if r_cut is None or eta < eta_min:  # then r_cut follows from eta (larger than requested)
        # dense matrices cost n^2 (images + k-vectors): eta ~ V^(1/3); matrix-free products
        # cost n (neighbours + k-vectors): eta ~ (V^2 / n)^(1/6), O(n^1.5) per product
        v2 = volume ** 2 / n_atoms if per_particle else volume ** 2
        eta = max((v2 / ((2 * math.pi) ** 3 * _TR_OVER_TK)) ** (1.0 / 6.0), eta_min) if r_cut is None else eta_min
        alpha = 1.0 / (math.sqrt(2) * eta)
        r_cut = _solve_decreasing(lambda rc: real_error(alpha, rc), target, 1e-3 * eta, 1e3 * eta)

    def recip_error(kc):
        return Q2 * alpha / math.pi ** 2 * (2 * math.pi / (kc * L)) ** 1.5 * math.exp(-kc ** 2 / (4 * alpha ** 2))

    k_cut = _solve_decreasing(recip_error, target, 1e-3 * alpha, 1e3 * alpha)
    return EwaldParameters(eta, r_cut, k_cut, "energy-accuracy", True)


def fft_size(n: int) -> int:
    """The smallest product of 2, 3 and 5 that is >= n (the mesh's FFT sizes)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


# Grid spacing / eta for B-splines of order 6 (tightened like tolerance^(1/8) below 1e-3):
# measured against converged Ewald sums on n2p2's water box and AlAuMgO slab for tolerances
# 1e-2..1e-7, the energy errors stay 4x to 100x below the tolerance (tests/test_fourth_generation).
_PME_SPACING = {6: 0.6}


def pme_parameters(energy_tolerance: float, cell, n_atoms: int, q_max: float = 1.0, four_pi_eps: float = 1.0,
                   max_sigma: float = 0.0, neighbours: float = 150.0, order: int = 6) -> EwaldParameters:
    """Parameters for matrix-free products with a particle-mesh reciprocal part: the real-space
    cutoff encloses about `neighbours` atoms at the cell's mean density (a fixed cost per atom,
    whatever the size), eta follows from the energy tolerance at that cutoff
    (`accuracy_parameters`, never below sqrt2 max sigma), and the mesh spacing along each lattice
    vector is at most 0.6 eta * (tolerance / 1e-3)^(1/8) (grid sizes rounded up to products of 2,
    3 and 5). k_cut is reported for reference; the mesh sums every k it resolves."""
    import numpy as np

    cell = np.asarray(cell, dtype=float)
    volume = abs(float(np.linalg.det(cell)))
    r_cut = (3.0 * neighbours * volume / (4.0 * math.pi * n_atoms)) ** (1.0 / 3.0)
    base = accuracy_parameters(energy_tolerance, volume, n_atoms, q_max, four_pi_eps, r_cut=r_cut,
                               max_sigma=max_sigma)
    spacing = _PME_SPACING[order] * base.eta * min(1.0, (energy_tolerance / 1e-3) ** (1.0 / 8.0))
    mesh = tuple(fft_size(max(order, math.ceil(np.linalg.norm(a) / spacing))) for a in cell)
    return EwaldParameters(base.eta, base.r_cut, base.k_cut, "energy-accuracy, particle mesh", True, mesh, order)
