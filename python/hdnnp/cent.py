"""CENT (charge equilibration via neural network technique; Ghasemi et al., PRB 92, 045131
(2015)) as a mode of the 4G machinery: electronegativity networks chi_i = NN_e(G_i), charges from
the same charge equilibration with Gaussian charges, and the energy from the QEq expression alone
(THEORY.md, "The four generations"):

    E = sum_i (chi_i Q_i + J_i Q_i^2 / 2) + 1/2 Q^T A0 Q + (background of a charged cell) + offsets,

with A0 the Gaussian-charge Coulomb matrix (its diagonal the Gaussian self-energies). The charges
minimise E under sum Q = Q_tot, so dE/dQ is uniform and the forces need no adjoint solve:
F = -sum_i Q_i dchi_i/dR - d(1/2 Q^T A0 Q)/dR at fixed Q (the same holds for the weight
gradients in training: dE/dw = sum_i Q_i dchi_i/dw, dE/dJ_Z = sum_{i in Z} Q_i^2 / 2).

Files: input.nn with `nnp_generation cent` (a hdnnp keyword value: n2p2 and RuNNer have no
CENT), the electronegativity networks' `global_*_electrostatic` architecture, `fixed_gausswidth`,
scaling.data, weightse.ZZZ.data and hardness.ZZZ.data; no short networks. Screening
(`screen_electrostatics`) is refused: the energy must be the functional the charges minimise.
The core computes it (`_core.FourthGenerationPotential` in its CENT mode).
"""
from __future__ import annotations

from typing import Optional

from .fourth_generation import FourthGeneration


class Cent(FourthGeneration):
    """A CENT potential directory (see the module). Same options as FourthGeneration (Ewald mode,
    dense or CG solver)."""

    GENERATIONS = ("cent",)
    NAME = "CENT"
    SHORT = False

    def compute(self, atoms, total_charge: Optional[float] = None, forces: bool = False, stress: bool = False,
                solver: Optional[str] = None, extrapolation: str = "warn", warm_start=None) -> dict:
        """Energy (offsets and baseline included), per-atom energies, charges,
        electronegativities; with `forces` the forces, with `stress` the virial and stress
        (periodic: at fixed Ewald parameters); as FourthGeneration.compute."""
        res = super().compute(atoms, total_charge, forces, stress, solver, extrapolation, warm_start)
        res.pop("atom_energies_short", None)
        return res
