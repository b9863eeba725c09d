"""4th-generation HDNNP prediction: energies, charges, forces and stress.

THEORY.md B.0-B.5 (n2p2's Mode::evaluateNNP): electronegativity networks chi_i = NN_e(G_i) ->
charge equilibration with Gaussian charges under the total charge -> short networks on
[G_i, Q_i] -> E = sum_i E_i^short + E_elec + offsets, with n2p2's screened electrostatic energy
(direct sum for molecules, Ewald for periodic cells).

Python drives, the C++ core computes: symmetry functions and their gradient pass
(`Model.compute(dEdG=...)`), the networks (`_core.Network`), and the electrostatics
(`_core.Electrostatics`: the QEq matrix dense or matrix-free, the screened energy, its position
derivatives and the virial; `_core.solve_qeq_cg`). Two solvers behind one interface: "dense"
(the QEq matrix factorised once in the core, _core.QEqDense, reused for the charges and the adjoint) and "cg"
(matrix-free preconditioned conjugate gradients on sum(Q) = Q_tot, warm-started from the
previous charges). Forces and stress cost one adjoint solve (THEORY B.4):
F = -d/dR [E(R, Q) + lambda^T (A Q + chi)] at fixed Q and lambda, K lambda = -[dE/dQ; 0].
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

from . import _core
from .long_range import ChargeCalculator, LongRangePotential, _column

_4G_ONLY = ("nnp_generation", "nnp_type", "global_hidden_layers_electrostatic", "global_nodes_electrostatic",
            "global_activation_electrostatic", "initial_hardness", "fixed_gausswidth", "screen_electrostatics",
            "ewald_truncation_error_method", "ewald_prec", "four_pi_epsilon")

FourthGenerationCalculator = ChargeCalculator  # (the name of earlier versions)

_BLOCK = 4096  # atoms per block of network evaluations


class FourthGeneration(LongRangePotential):
    """A 4G potential directory (input.nn with nnp_generation 4, scaling.data, weights.ZZZ.data,
    weightse.ZZZ.data, hardness.ZZZ.data), in the potential's own units.

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
    _DROP, _RENAME = _4G_ONLY, None

    def __init__(self, directory, ewald="n2p2", solver: str = "auto", tolerance: float = 1e-10,
                 dense_max_atoms: int = 3000, threads: int = 0, weights: bool = True,
                 length_unit: Optional[str] = None, energy_unit: Optional[str] = None, reciprocal: str = "auto",
                 background: bool = False):
        super().__init__(directory, ewald, solver, tolerance, dense_max_atoms, threads, length_unit, energy_unit,
                         reciprocal, background)
        # Descriptors: the core reads the same file without the 4G keywords. (Training may
        # compute the scaling itself: then scaling.data need not exist.)
        self.model = self._load_model(drop=self._DROP, rename=self._RENAME, files={"scaling.data": "scaling.data"})
        if weights and self.model.scaling_mode != 0 and not os.path.exists(os.path.join(directory, "scaling.data")):
            raise FileNotFoundError(f"{os.path.join(directory, 'scaling.data')}: no such file")
        self.elements = list(self.model.elements)
        self._check_baseline(weights)
        if self.model.mean_energy != 0.0 or self.model.conv_energy != 1.0:
            raise ValueError(f"{self.path}: normalised {self.NAME} potentials are not supported yet")
        self.sigma = self._gaussian_widths()
        self._previous = None  # (n, charges, adjoint) for warm starts of the CG solver
        self.offsets = np.array(self.model.atom_energies)
        # the core's 4G (or CENT) potential computes predictions (potentials being trained: None)
        self.core = _core.FourthGenerationPotential.load(os.fspath(directory)) if weights else None
        self.transform = (self.scaling_of(self.model) if os.path.exists(os.path.join(directory, "scaling.data"))
                          else None)
        self.elec, self.short, self.hardness = [], [], np.zeros(len(self.elements))
        for e, el in enumerate(self.elements):
            K = int(self.model.architecture(e)[0][0])
            z = self.model.atomic_numbers[e]
            self.elec.append(self._network("electrostatic", K, f"weightse.{z:03d}.data" if weights else None))
            if self.SHORT:
                self.short.append(self._network("short", K + 1, f"weights.{z:03d}.data" if weights else None))
            if weights:
                self.hardness[e] = _column(os.path.join(directory, f"hardness.{z:03d}.data"))[0]
        if not weights:  # (training starts from initial_hardness)
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

    def _evaluate_core(self, atoms, total_charge, forces, stress, solver, extrapolation):
        """evaluate() through the core's 4G potential (the same results, keys and warm starts)."""
        from .extrapolation import report_extrapolation

        periodic = self._periodic(atoms)
        n = len(atoms)
        q_tot = float(atoms.info.get("charge", 0.0) if total_charge is None else total_charge)
        self.check_charged_cell(periodic, q_tot)
        species = self._species(atoms)
        pos = np.ascontiguousarray(atoms.positions, dtype=float)
        cell = np.ascontiguousarray(np.asarray(atoms.cell, dtype=float)) if periodic else None
        solver = self.solver_for(atoms, solver)
        params = self.ewald_parameters(atoms, solver) if periodic else None
        prev = self._previous if solver == "cg" and self._previous is not None and self._previous[0] == n else None
        grads = forces or stress
        r = self.core.compute(pos, species, cell, q_tot, solver=solver, cg_tolerance=self.tolerance, forces=grads,
                              virial=grads, threads=self.threads, background=self.background,
                              warm_start=prev[1] if prev else None, warm_adjoint=prev[2] if prev and grads else None,
                              ewald=None if params is None else {**params.as_dict(), "mesh": params.mesh,
                                                                  "mesh_order": params.mesh_order})
        report_extrapolation([(0, r["extrapolations"], "")], 1, extrapolation, stacklevel=4)
        Q = r["charges"]
        info = {"solver": solver}
        if solver == "cg":
            info["iterations"] = list(r["cg_iterations"])
            adj = r.get("adjoint")   # (none for CENT, whose forces need no adjoint solve)
            self._previous = (n, Q.copy(), adj.copy() if adj is not None else (prev[2] if prev else np.zeros(n)))
        res = {"energy": r["energy"], "charges": Q, "atom_energies_short": r["atom_energies_short"],
               "electrostatic_energy": r["electrostatic_energy"], "electronegativities": r["electronegativities"],
               "solver": info, "extrapolating_atoms": r["extrapolating_atoms"],
               "extrapolation_records": [("", r["extrapolations"])]}
        if periodic:
            res["ewald"] = params.as_dict()
            res["ewald"]["n_kvectors"] = r["ewald"]["n_kvectors"]
            res["ewald"]["mesh_points"] = r["ewald"]["mesh_points"]
        else:
            res["dipole"] = Q @ pos
        base = self._baseline(atoms, species, grads, stress)
        self._add_baseline(res, base, False, False)
        if grads:
            res["forces"] = r["forces"]
            if stress:
                res["virial"] = r["virial"]
                if periodic:
                    res["stress"] = -r["virial"] / abs(np.linalg.det(cell))
            self._add_baseline(res, base, True, stress, cell if periodic else None)
        return res

    @staticmethod
    def check_extrapolation(s, mode: str):
        from .extrapolation import report_extrapolation

        report_extrapolation([(0, s.extrapolations, "")], 1, mode, stacklevel=4)

    def equilibrate(self, atoms, total_charge: Optional[float] = None, solver: Optional[str] = None):
        """Descriptors, electronegativities and the QEq charges of a structure, with what energies
        and forces need (a SimpleNamespace: Q, chi, op, params, solve(rhs) for the adjoint, A0 for
        the dense solver, blocks(e) over the atoms of element e and their descriptors, ...)."""
        periodic = self._periodic(atoms)
        n = len(atoms)
        q_tot = float(atoms.info.get("charge", 0.0) if total_charge is None else total_charge)
        species = self._species(atoms)
        pos = np.ascontiguousarray(atoms.positions, dtype=float)  # (non-finite: the core's list names the atom)
        cell = np.ascontiguousarray(np.asarray(atoms.cell, dtype=float)) if periodic else None
        offs, idx, sid, sh, _, _ = _core.neighbor_list(pos, cell, [periodic] * 3, self.model.cutoff)
        out = self.model.compute(pos, species, n, offs, idx, sid, sh, forces=False, virial=False,
                                 descriptors=True, scaled=True, threads=self.threads, baseline=False)
        K = [int(self.model.architecture(e)[0][0]) for e in range(len(self.elements))]
        G = out["descriptors"].reshape(-1)
        dof = out["descriptor_offsets"]
        groups = [np.where(species == e)[0] for e in range(len(self.elements))]

        def blocks(e):
            """(atoms, their descriptor positions in G, their scaled descriptors) of element e in
            blocks of _BLOCK atoms: network inputs, caches and gradients never exist for all
            atoms at once (the memory beyond 2G stays ~1.5 KB per atom)."""
            g_all = groups[e]
            for b in range(0, len(g_all), _BLOCK):
                g = g_all[b:b + _BLOCK]
                rows = dof[g][:, None] + np.arange(K[e])[None, :]
                yield g, rows, G[rows]

        # electronegativities (batched per element)
        chi = np.zeros(n)
        for e in range(len(groups)):
            for g, _, X in blocks(e):
                chi[g] = self.elec[e].forward(X, False)[0]

        # charge equilibration
        J = self.hardness[species]
        solver = solver or self.solver
        if solver == "auto":
            solver = "dense" if n <= self.dense_max_atoms else "cg"
        op, params = self.electrostatics(atoms, species, solver)
        info = {"solver": solver}
        if solver == "dense":
            A0 = op.dense()
            qeq = _core.QEqDense(A0, J)      # factorised once: charges and the adjoint
            Q = qeq.solve(-chi, q_tot)
            solve = lambda rhs: qeq.solve(rhs, 0.0)
        else:
            warm = self._previous if self._previous is not None and self._previous[0] == n else None
            x0 = warm[1] if warm else np.full(n, q_tot / n)
            Q, cg = _core.solve_qeq_cg(op, J, -chi, q_tot, x0, self.tolerance)
            info["iterations"] = [cg["iterations"]]

            def solve(rhs):
                x, r = _core.solve_qeq_cg(op, J, rhs, 0.0, warm[2] if warm else np.zeros(n), self.tolerance)
                info["iterations"].append(r["iterations"])
                return x

        from types import SimpleNamespace

        return SimpleNamespace(periodic=periodic, n=n, q_tot=q_tot, species=species, pos=pos, cell=cell,
                               nl=(offs, idx, sid, sh), G=G, blocks=blocks, groups=groups, chi=chi, J=J,
                               solver=solver, info=info, op=op, params=params, Q=Q, solve=solve,
                               extrapolations=out["extrapolations"], extrapolating_atoms=out["extrapolating_atoms"],
                               A0=A0 if solver == "dense" else None)

    def evaluate(self, atoms, total_charge: Optional[float] = None, forces: bool = False, stress: bool = False,
                 solver: Optional[str] = None, extrapolation: str = "warn"):
        """Energy (offsets included), charges, atomic short-range energies, electronegativities,
        electrostatic energy; with `forces` the forces, with `stress` the virial and stress
        (periodic: at fixed Ewald parameters) -- all in the potential's units. The total charge
        is `total_charge`, else atoms.info["charge"], else 0; a charged periodic cell is
        neutralised by a uniform background (its energy -pi eta^2 Q^2 / (V 4 pi eps0) included).
        `extrapolation`: symmetry functions outside the scaling.data range give one warning
        ("warn"), an ExtrapolationError ("raise") or nothing ("ignore"); the atoms are flagged in
        `extrapolating_atoms` either way.

        The core computes it (`_core.FourthGenerationPotential`, with the Ewald parameters of
        `ewald_parameters`) unless `self.core` is None (a potential being trained, or the numpy
        path kept as a test oracle)."""
        if self.core is not None:
            return self._evaluate_core(atoms, total_charge, forces, stress, solver, extrapolation)
        s = self.equilibrate(atoms, total_charge, solver)
        self.check_charged_cell(s.periodic, s.q_tot)
        self.check_extrapolation(s, extrapolation)
        periodic, n, q_tot, species, pos, cell = s.periodic, s.n, s.q_tot, s.species, s.pos, s.cell
        solver, op, params, Q = s.solver, s.op, s.params, s.Q
        e_elec, dEelec_dQ = op.energy(Q, s.A0 @ Q if s.A0 is not None else None)
        # neutralising background of a charged cell: constant in Q and R, ~1/V (its virial is e_bg I)
        e_bg = self.background_energy(atoms, q_tot, params)
        e_elec += e_bg

        # short networks on [G, Q]
        grads = forces or stress
        e_short, dEs_dQ = np.zeros(n), np.zeros(n)
        for e in range(len(s.groups)):
            for g, _, X in s.blocks(e):
                E, d, _ = self.short[e].forward(np.concatenate([X, Q[g, None]], axis=1), grads)
                e_short[g] = E
                if grads:
                    dEs_dQ[g] = d[:, -1]
        energy = float(e_short.sum() + e_elec + self.offsets[species].sum())
        res = {"energy": energy, "charges": Q, "atom_energies_short": e_short, "electrostatic_energy": float(e_elec),
               "electronegativities": s.chi, "solver": s.info, "extrapolating_atoms": s.extrapolating_atoms,
               "extrapolation_records": [("", s.extrapolations)]}
        self._report(res, op, params, Q, pos)
        base = self._baseline(atoms, species, grads, stress, s.nl)
        self._add_baseline(res, base, False, False)
        if not grads:
            if solver == "cg":
                self._previous = (n, Q.copy(), np.zeros(n))
            return res

        lam = s.solve(-(dEelec_dQ + dEs_dQ))
        if solver == "cg":
            self._previous = (n, Q.copy(), lam.copy())
        # symmetry-function part: dE/dG = dE_short/dG + lambda dchi/dG (raw G: chain rule of the
        # scaling), the networks' input gradients recomputed block by block
        # dE/dG overwrites the descriptors block by block (each block's inputs are copied out
        # first; the blocks are disjoint): no second descriptor-sized array
        w = s.G
        for e in range(len(s.groups)):
            for g, rows, X in s.blocks(e):
                dchi = self.elec[e].forward(X, True)[1]
                dshort = self.short[e].forward(np.concatenate([X, Q[g, None]], axis=1), True)[1]
                w[rows] = (dshort[:, :-1] + lam[g, None] * dchi) * self.transform[e][1][None, :]
        sf = self.model.compute(pos, species, n, *s.nl, forces=True, virial=True, dEdG=w, threads=self.threads)
        F_el, W_el = op.derivatives(Q, lam)
        res["forces"] = sf["forces"] + F_el
        if stress:
            W = sf["virial"] + W_el + e_bg * np.eye(3)
            res["virial"] = W
            if periodic:
                res["stress"] = -W / abs(np.linalg.det(cell))
        self._add_baseline(res, base, True, stress, cell if periodic else None)
        return res
