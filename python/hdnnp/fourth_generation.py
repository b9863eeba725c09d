"""4th-generation HDNNP prediction: energies, charges, forces and stress.

THEORY.md B.0-B.5 (n2p2's Mode::evaluateNNP): electronegativity networks chi_i = NN_e(G_i) ->
charge equilibration with Gaussian charges under the total charge -> short networks on
[G_i, Q_i] -> E = sum_i E_i^short + E_elec + offsets, with n2p2's screened electrostatic energy
(direct sum for molecules, Ewald for periodic cells).

The core computes it (`_core.FourthGenerationPotential`, immutable and thread-safe): two solvers
behind one interface, "dense" (the QEq matrix factorised once with Eigen, reused for the charges
and the adjoint) and "cg" (matrix-free preconditioned conjugate gradients on sum(Q) = Q_tot, with
a particle-mesh reciprocal part in the accuracy mode). Forces and stress cost one adjoint solve
(THEORY B.4): F = -d/dR [E(R, Q) + lambda^T (A Q + chi)] at fixed Q and lambda,
K lambda = -[dE/dQ; 0]. Warm starts of the CG solver are the caller's state
(`compute(..., warm_start=(charges, adjoint))`; the ASE calculator keeps them from step to step).

A potential loaded with `weights=False` is one being trained: it holds the networks as Python
objects (hdnnp.training sets them) and no core potential.
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

from . import _core
from .long_range import ChargeCalculator, LongRangePotential

FourthGenerationCalculator = ChargeCalculator  # (the name of earlier versions)


class FourthGeneration(LongRangePotential):
    """A 4G potential directory (input.nn with nnp_generation 4, scaling.data, weights.ZZZ.data,
    weightse.ZZZ.data, hardness.ZZZ.data).

    `ewald`: "n2p2" (default: n2p2's parameters from ewald_truncation_error_method/ewald_prec, so
    that results equal n2p2's) or an absolute energy tolerance (float) for the accuracy-controlled
    mode (`hdnnp.electrostatics.accuracy_parameters`). `solver`: "dense", "cg" or "auto" (dense
    up to `dense_max_atoms`). `tolerance`: relative residual of the CG solves. `reciprocal`: in
    the accuracy mode with the CG solver, "auto"/"mesh" computes the reciprocal part by smooth
    particle-mesh Ewald on a grid with a fixed number of real-space neighbours per atom
    (`pme_parameters`: O(N log N) per product), "ewald" by structure factors."""

    GENERATIONS = ("4", "4g-hdnnp")
    NAME = "4G"
    #: short networks on [G, Q] (CENT has none)
    SHORT = True
    WARM_START = True

    def __init__(self, directory, ewald="n2p2", solver: str = "auto", tolerance: float = 1e-10,
                 dense_max_atoms: int = 3000, threads: int = 0, weights: bool = True,
                 length_unit: Optional[str] = None, energy_unit: Optional[str] = None, reciprocal: str = "auto",
                 background: bool = False):
        super().__init__(directory, ewald, solver, tolerance, dense_max_atoms, threads, length_unit, energy_unit,
                         reciprocal, background)
        directory = self.directory
        if weights:
            # prediction: the core's potential computes everything
            self.core = _core.FourthGenerationPotential.load(directory)
            self.model = self.core.model
            self.elements = list(self.core.elements)
            self.sigma = np.array(self.core.gaussian_widths)
            self.hardness = np.array(self.core.hardness)
            self.offsets = np.array(self.model.atom_energies)
            return
        # a potential being trained: descriptors from the core, networks in Python (the trainers
        # set them); scaling.data may not exist yet (training computes it)
        self.core = None
        self.model = _core.Model.load(directory, False)
        self.elements = list(self.model.elements)
        if self.model.mean_energy != 0.0 or self.model.conv_energy != 1.0:
            raise ValueError(f"{self.path}: normalised {self.NAME} potentials are not supported yet")
        if not self.SHORT and self.r_out > 0:
            raise ValueError(f"{self.path}: screen_electrostatics cannot be used with CENT (the energy is the "
                             f"charge-equilibration functional itself)")
        self.sigma = self._gaussian_widths()
        self.offsets = np.array(self.model.atom_energies)
        self.transform = (self.scaling_of(self.model) if os.path.exists(os.path.join(directory, "scaling.data"))
                          else None)
        self.elec, self.short, self.hardness = [], [], np.zeros(len(self.elements))
        for e in range(len(self.elements)):
            K = int(self.model.architecture(e)[0][0])
            self.elec.append(self._network("electrostatic", K, None))
            if self.SHORT:
                self.short.append(self._network("short", K + 1, None))
        for no, args in self.keyword_lines.get("initial_hardness", []):
            if len(args) < 2 or args[0] not in self.elements:
                raise ValueError(f"{self.path}:{no}: initial_hardness needs an element of this potential and a value")
            self.hardness[self.elements.index(args[0])] = float(args[1])
        if np.any(self.hardness <= 0):
            missing = [el for el, j in zip(self.elements, self.hardness) if j <= 0]
            raise ValueError(f"{self.path}: initial_hardness (> 0) is needed for {', '.join(missing)} to train")

    def solver_for(self, atoms, solver: Optional[str] = None) -> str:
        solver = solver or self.solver
        return ("dense" if len(atoms) <= self.dense_max_atoms else "cg") if solver == "auto" else solver

    def compute(self, atoms, total_charge: Optional[float] = None, forces: bool = False, stress: bool = False,
                solver: Optional[str] = None, extrapolation: str = "warn", warm_start=None) -> dict:
        """Energy (offsets and baseline included), per-atom energies, charges, atomic short-range
        energies, electronegativities, electrostatic energy; with `forces` the forces, with
        `stress` the virial and stress (periodic: at fixed Ewald parameters) -- all in the
        potential's units, as a dict with the solver's details. The total charge is
        `total_charge`, else atoms.info["charge"], else 0; a charged periodic cell needs
        `background=True` (its energy -pi eta^2 Q^2 / (V 4 pi eps0) is then included).
        `extrapolation`: symmetry functions outside the scaling.data range give one warning
        ("warn"), an ExtrapolationError ("raise") or nothing ("ignore"); the atoms are flagged in
        `extrapolating_atoms` either way. `warm_start`: (charges, adjoint) of a previous step for
        the CG solver (the result's "charges" and "adjoint")."""
        from .extrapolation import report_extrapolation

        if self.core is None:
            raise ValueError(f"{self.path}: this {self.NAME} potential was loaded without weights (for training)")
        periodic = self._periodic(atoms)
        n = len(atoms)
        q_tot = float(atoms.info.get("charge", 0.0) if total_charge is None else total_charge)
        self.check_charged_cell(periodic, q_tot)
        species = self._species(atoms)
        pos = np.ascontiguousarray(atoms.positions, dtype=float)
        cell = np.ascontiguousarray(np.asarray(atoms.cell, dtype=float)) if periodic else None
        solver = self.solver_for(atoms, solver)
        params, ewald = self._ewald_dict(atoms, solver, periodic)
        q0 = lam0 = None
        if warm_start is not None and solver == "cg":
            q0, lam0 = warm_start
            if q0 is None or len(q0) != n:
                q0 = lam0 = None
            elif lam0 is not None and len(lam0) != n:
                lam0 = None
        grads = forces or stress
        r = self.core.compute(pos, species, cell, q_tot, solver=solver, cg_tolerance=self.tolerance, forces=grads,
                              virial=grads, threads=self.threads, background=self.background,
                              warm_start=None if q0 is None else np.ascontiguousarray(q0, dtype=float),
                              warm_adjoint=None if lam0 is None or not grads else np.ascontiguousarray(lam0, dtype=float),
                              ewald=ewald)
        report_extrapolation([(0, r["extrapolations"], "")], 1, extrapolation, stacklevel=4)
        r["solver"] = {"solver": solver}
        if solver == "cg":
            r["solver"]["iterations"] = list(r["cg_iterations"])
        if periodic:
            r["ewald"] = {**params.as_dict(), "n_kvectors": r["ewald"]["n_kvectors"],
                          "mesh_points": r["ewald"]["mesh_points"]}
        r["total_charge"] = q_tot
        return self._native_result(r, periodic, pos, stress, cell)
