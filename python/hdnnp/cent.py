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
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .fourth_generation import _4G_ONLY, FourthGeneration

_ARCH = ("global_hidden_layers_electrostatic", "global_nodes_electrostatic", "global_activation_electrostatic")


class Cent(FourthGeneration):
    """A CENT potential directory (see the module), in the potential's own units. Same options
    as FourthGeneration (Ewald mode, dense or CG solver)."""

    GENERATIONS = ("cent",)
    NAME = "CENT"
    SHORT = False
    # the core reads the descriptors with the electronegativity networks' architecture
    _DROP = tuple(k for k in _4G_ONLY if k not in _ARCH) + (
        "global_hidden_layers_short", "global_nodes_short", "global_activation_short")
    _RENAME = {k: k.replace("electrostatic", "short") for k in _ARCH}

    def __init__(self, directory, *args, **kwargs):
        super().__init__(directory, *args, **kwargs)
        if self.r_out > 0:
            raise ValueError(f"{self.path}: screen_electrostatics cannot be used with CENT (the energy is the "
                             f"charge-equilibration functional itself)")

    def evaluate(self, atoms, total_charge: Optional[float] = None, forces: bool = False, stress: bool = False,
                 solver: Optional[str] = None, extrapolation: str = "warn"):
        """Energy (offsets included), charges, electronegativities; with `forces` the forces,
        with `stress` the virial and stress (periodic: at fixed Ewald parameters). `extrapolation`
        as in FourthGeneration.evaluate. The core computes it (`_core.FourthGenerationPotential` in
        its CENT mode) unless `self.core` is None (training; the numpy path as a test oracle)."""
        if self.core is not None:
            res = self._evaluate_core(atoms, total_charge, forces, stress, solver, extrapolation)
            del res["atom_energies_short"]
            return res
        s = self.equilibrate(atoms, total_charge, solver)
        self.check_charged_cell(s.periodic, s.q_tot)
        self.check_extrapolation(s, extrapolation)
        Q = s.Q
        AQ = s.A0 @ Q if s.A0 is not None else s.op.apply(Q)
        e_bg = self.background_energy(atoms, s.q_tot, s.params)
        e_qeq = float(s.chi @ Q + 0.5 * (s.J * Q) @ Q + 0.5 * Q @ AQ)
        res = {"energy": e_qeq + e_bg + float(self.offsets[s.species].sum()), "charges": Q,
               "electronegativities": s.chi, "electrostatic_energy": float(0.5 * Q @ AQ + e_bg), "solver": s.info,
               "extrapolating_atoms": s.extrapolating_atoms, "extrapolation_records": [("", s.extrapolations)]}
        self._report(res, s.op, s.params, Q, s.pos)
        base = self._baseline(atoms, s.species, forces or stress, stress, s.nl)
        self._add_baseline(res, base, False, False)
        if s.solver == "cg":
            self._previous = (s.n, Q.copy(), np.zeros(s.n))
        if not (forces or stress):
            return res
        # dE/dG overwrites the descriptors block by block (each block's inputs are copied out
        # first; the blocks are disjoint): no second descriptor-sized array
        w = s.G
        for e in range(len(s.groups)):
            for g, rows, X in s.blocks(e):
                w[rows] = Q[g, None] * self.elec[e].forward(X, True)[1] * self.transform[e][1][None, :]
        sf = self.model.compute(s.pos, s.species, s.n, *s.nl, forces=True, virial=True, dEdG=w, threads=self.threads)
        F_el, W_el = s.op.derivatives(Q, np.zeros(s.n))   # -d(E_elec)/dR = -d(1/2 Q^T A0 Q)/dR without screening
        res["forces"] = sf["forces"] + F_el
        if stress:
            W = sf["virial"] + W_el + e_bg * np.eye(3)
            res["virial"] = W
            if s.periodic:
                res["stress"] = -W / abs(np.linalg.det(s.cell))
        self._add_baseline(res, base, True, stress, s.cell if s.periodic else None)
        return res
