"""4th-generation HDNNP prediction: energies, charges, forces and stress.

THEORY.md B.0-B.5 (n2p2's Mode::evaluateNNP): electronegativity networks chi_i = NN_e(G_i) ->
charge equilibration with Gaussian charges under the total charge -> short networks on
[G_i, Q_i] -> E = sum_i E_i^short + E_elec + offsets, with n2p2's screened electrostatic energy
(direct sum for molecules, Ewald for periodic cells).

Python drives, the C++ core computes: symmetry functions and their gradient pass
(`Model.compute(dEdG=...)`), the networks (`_core.Network`), and the electrostatics
(`_core.Electrostatics`: the QEq matrix dense or matrix-free, the screened energy, its position
derivatives and the virial; `_core.solve_qeq_cg`). Two solvers behind one interface: "dense"
(the KKT matrix factorised once by LU, reused for the charges and the adjoint) and "cg"
(matrix-free preconditioned conjugate gradients on sum(Q) = Q_tot, warm-started from the
previous charges). Forces and stress cost one adjoint solve (THEORY B.4):
F = -d/dR [E(R, Q) + lambda^T (A Q + chi)] at fixed Q and lambda, K lambda = -[dE/dQ; 0].
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Optional

import numpy as np
import scipy.linalg

from ase.calculators.calculator import Calculator, all_changes

from . import _core
from .electrostatics import EwaldParameters, accuracy_parameters, n2p2_parameters, pme_parameters
from .training.n2p2 import read_keyword_lines
from .training.network import ElementNetwork
from .units import energy_factor, length_factor

_4G_ONLY = ("nnp_generation", "nnp_type", "global_hidden_layers_electrostatic", "global_nodes_electrostatic",
            "global_activation_electrostatic", "initial_hardness", "fixed_gausswidth", "screen_electrostatics",
            "ewald_truncation_error_method", "ewald_prec", "four_pi_epsilon")


def _column(path: str) -> np.ndarray:
    rows = []
    with open(path) as fh:
        for no, line in enumerate(fh, 1):
            tok = line.split("#", 1)[0].split()
            if tok:
                try:
                    rows.append(float(tok[0]))
                except ValueError:
                    raise ValueError(f"{path}:{no}: not a number: {tok[0]!r}") from None
    return np.array(rows)


class FourthGeneration:
    """A 4G potential directory (input.nn with nnp_generation 4, scaling.data, weights.ZZZ.data,
    weightse.ZZZ.data, hardness.ZZZ.data), in the potential's own units.

    `ewald`: "n2p2" (default: n2p2's parameters from ewald_truncation_error_method/ewald_prec, so
    that results equal n2p2's) or an absolute energy tolerance (float) for the accuracy-controlled
    mode (`hdnnp.electrostatics.accuracy_parameters`). `solver`: "dense", "cg" or "auto" (dense
    up to `dense_max_atoms`). `tolerance`: relative residual of the CG solves. `reciprocal`: in
    the accuracy mode with the CG solver, "auto"/"mesh" computes the reciprocal part by smooth
    particle-mesh Ewald on a grid with a fixed number of real-space neighbours per atom
    (`pme_parameters`: O(N log N) per product), "ewald" by structure factors."""

    def __init__(self, directory, ewald="n2p2", solver: str = "auto", tolerance: float = 1e-10,
                 dense_max_atoms: int = 3000, threads: int = 0, weights: bool = True,
                 length_unit: Optional[str] = None, energy_unit: Optional[str] = None, reciprocal: str = "auto"):
        directory = os.fspath(directory)
        self.directory = directory
        self.length_unit, self.energy_unit = length_unit, energy_unit  # (for calculator())
        path = os.path.join(directory, "input.nn")
        kw = {k: [args for _, args in v] for k, v in read_keyword_lines(path).items()}
        gen = (kw.get("nnp_generation") or kw.get("nnp_type") or [["2"]])[0][0]
        if gen not in ("4", "4G-HDNNP"):
            raise ValueError(f"{path}: not a 4G potential (nnp_generation {gen})")
        # Descriptors: the core reads the same file without the 4G keywords (read at load time).
        with open(path) as fh:
            # (commented out rather than dropped, so that line numbers in errors stay true)
            lines = [("#" + l if l.split()[:1] and l.split()[0] in _4G_ONLY else l) for l in fh.read().splitlines()]
        with tempfile.TemporaryDirectory(prefix="hdnnp-4g-") as tmp:
            with open(os.path.join(tmp, "input.nn"), "w") as fh:
                fh.write("\n".join(lines) + "\n")
            scaling = os.path.join(directory, "scaling.data")
            if weights or os.path.exists(scaling):  # (training may compute the scaling itself)
                shutil.copy(scaling, tmp)
            self.model = _core.Model.load(tmp, False)
        self.elements = list(self.model.elements)
        if self.model.mean_energy != 0.0 or self.model.conv_energy != 1.0:
            raise ValueError(f"{path}: normalised 4G potentials are not supported yet")
        self.sigma = np.zeros(len(self.elements))
        for el, s in (a[:2] for a in kw.get("fixed_gausswidth", [])):
            self.sigma[self.elements.index(el)] = float(s)
        if np.any(self.sigma <= 0):
            raise ValueError(f"{path}: fixed_gausswidth must be given for every element")
        screen = kw.get("screen_electrostatics")
        self.r_in, self.r_out = (float(screen[0][0]), float(screen[0][1])) if screen else (-2.0, -1.0)
        self.screen_core = screen[0][2] if screen and len(screen[0]) > 2 else "c"
        if self.screen_core not in ("c", "p1", "p2", "p3", "p4", "e"):
            raise ValueError(f"{path}: screen_electrostatics: unknown core function {self.screen_core!r}")
        self.ewald_method = int(kw.get("ewald_truncation_error_method", [["0"]])[0][0])
        self.ewald_prec = [float(x) for x in kw.get("ewald_prec", [["1e-6"]])[0]]
        if solver not in ("auto", "dense", "cg"):
            raise ValueError(f"solver must be 'auto', 'dense' or 'cg', not {solver!r}")
        if reciprocal not in ("auto", "mesh", "ewald"):
            raise ValueError(f"reciprocal must be 'auto', 'mesh' or 'ewald', not {reciprocal!r}")
        self.ewald, self.solver, self.tolerance, self.reciprocal = ewald, solver, tolerance, reciprocal
        self.dense_max_atoms, self.threads = dense_max_atoms, threads
        self._previous = None  # (n, charges, adjoint) for warm starts of the CG solver
        self.four_pi_eps = float(kw["four_pi_epsilon"][0][0]) if "four_pi_epsilon" in kw else 1.0
        self.offsets = np.array(self.model.atom_energies)
        self.transform = self._scaling() if os.path.exists(os.path.join(directory, "scaling.data")) else None

        def arch(kind):
            n = int(kw[f"global_hidden_layers_{kind}"][0][0])
            nodes = [int(x) for x in kw[f"global_nodes_{kind}"][0][:n]]
            acts = "".join(kw[f"global_activation_{kind}"][0][:n + 1])
            return nodes, acts

        def network(kind, n_in, fname):
            nodes, acts = arch(kind)
            net = ElementNetwork([n_in, *nodes, 1], acts)
            if not weights:
                return net
            p = _column(os.path.join(directory, fname))
            if len(p) != net.n_parameters:
                raise ValueError(f"{os.path.join(directory, fname)}: expected {net.n_parameters} weights for the "
                                 f"declared architecture {'-'.join(map(str, net.sizes))}, found {len(p)}")
            net.set_parameters(p)
            return net

        self.elec, self.short, self.hardness = [], [], np.zeros(len(self.elements))
        for e, el in enumerate(self.elements):
            K = int(self.model.architecture(e)[0][0])
            z = self.model.atomic_numbers[e]
            self.elec.append(network("electrostatic", K, f"weightse.{z:03d}.data"))
            self.short.append(network("short", K + 1, f"weights.{z:03d}.data"))
            if weights:
                self.hardness[e] = _column(os.path.join(directory, f"hardness.{z:03d}.data"))[0]
        if not weights:  # (training starts from initial_hardness)
            for no, args in read_keyword_lines(path).get("initial_hardness", []):
                if len(args) < 2 or args[0] not in self.elements:
                    raise ValueError(f"{path}:{no}: initial_hardness needs an element of this potential and a value")
                self.hardness[self.elements.index(args[0])] = float(args[1])
            if np.any(self.hardness <= 0):
                missing = [el for el, j in zip(self.elements, self.hardness) if j <= 0]
                raise ValueError(f"{path}: initial_hardness (> 0) is needed for {', '.join(missing)} to train")

    def ewald_parameters(self, atoms, solver: str = "dense") -> EwaldParameters:
        """The Ewald parameters used for a periodic structure (reported with every result). In the
        accuracy mode they are balanced for the solver: dense matrices or matrix-free products."""
        volume = abs(np.linalg.det(np.asarray(atoms.cell, dtype=float)))
        if isinstance(self.ewald, str):
            if self.ewald != "n2p2":
                raise ValueError(f"ewald must be 'n2p2' or an energy tolerance, not {self.ewald!r}")
            return n2p2_parameters(self.ewald_method, self.ewald_prec, volume, len(atoms), self.four_pi_eps,
                                   float(self.sigma.max()))
        if solver == "cg" and self.reciprocal in ("auto", "mesh"):
            return pme_parameters(float(self.ewald), atoms.cell, len(atoms), q_max=1.0, four_pi_eps=self.four_pi_eps,
                                  max_sigma=float(self.sigma.max()))
        return accuracy_parameters(float(self.ewald), volume, len(atoms), q_max=1.0, four_pi_eps=self.four_pi_eps,
                                   max_sigma=float(self.sigma.max()), per_particle=solver == "cg")

    def electrostatics(self, atoms, species, solver: str = "dense"):
        """(the structure's `_core.Electrostatics` operator, its EwaldParameters or None)."""
        periodic = bool(np.all(atoms.pbc))
        params = self.ewald_parameters(atoms, solver) if periodic else None
        cell = np.ascontiguousarray(np.asarray(atoms.cell, dtype=float)) if periodic else None
        op = _core.Electrostatics(np.ascontiguousarray(atoms.positions, dtype=float), cell, self.sigma[species],
                                  self.four_pi_eps,
                                  *((params.eta, params.r_cut, params.k_cut) if params else (0.0, 0.0, 0.0)),
                                  self.r_in, self.r_out, self.screen_core, self.threads,
                                  mesh=params.mesh if params else (0, 0, 0),
                                  mesh_order=params.mesh_order if params else 6)
        return op, params

    def background_energy(self, atoms, q_tot: float, params) -> float:
        """Energy of the uniform background that neutralises a charged periodic cell (constant in
        Q and R at fixed cell; its virial is this energy times the unit matrix)."""
        if params is None or not q_tot:
            return 0.0
        volume = abs(np.linalg.det(np.asarray(atoms.cell, dtype=float)))
        return -np.pi * params.eta ** 2 * q_tot ** 2 / (volume * self.four_pi_eps)

    def _scaling(self):
        from .training.trainer import scaling_transform

        stats = [{k: np.asarray(self.model.scaling(e)[k]) for k in ("min", "max", "mean", "sigma")}
                 for e in range(len(self.elements))]
        return scaling_transform(stats, self.model.scaling_mode, self.model.scale_min, self.model.scale_max)

    def _species(self, atoms):
        index = {s: i for i, s in enumerate(self.elements)}
        out = np.empty(len(atoms), dtype=np.int32)
        for a, s in enumerate(atoms.get_chemical_symbols()):
            if s not in index:
                raise ValueError(f"atom {a}: element {s} is not in this potential ({', '.join(self.elements)})")
            out[a] = index[s]
        return out

    def evaluate(self, atoms, total_charge: Optional[float] = None, forces: bool = False, stress: bool = False,
                 solver: Optional[str] = None):
        """Energy (offsets included), charges, atomic short-range energies, electronegativities,
        electrostatic energy; with `forces` the forces, with `stress` the virial and stress
        (periodic: at fixed Ewald parameters) -- all in the potential's units. The total charge
        is `total_charge`, else atoms.info["charge"], else 0; a charged periodic cell is
        neutralised by a uniform background (its energy -pi eta^2 Q^2 / (V 4 pi eps0) included)."""
        pbc = np.asarray(atoms.pbc, dtype=bool)
        if pbc.any() and not pbc.all():
            raise ValueError("4G structures must be periodic in all three directions or in none "
                             f"(pbc = {pbc.tolist()})")
        periodic = bool(pbc.all())
        n = len(atoms)
        if n == 0:
            raise ValueError("the structure has no atoms")
        q_tot = float(atoms.info.get("charge", 0.0) if total_charge is None else total_charge)
        species = self._species(atoms)
        pos = np.ascontiguousarray(atoms.positions, dtype=float)  # (non-finite: the core's list names the atom)
        cell = np.ascontiguousarray(np.asarray(atoms.cell, dtype=float)) if periodic else None
        offs, idx, sid, sh, _, _ = _core.neighbor_list(pos, cell, [periodic] * 3, self.model.cutoff)
        out = self.model.compute(pos, species, n, offs, idx, sid, sh, forces=False, virial=False,
                                 descriptors=True, scaled=True, threads=self.threads)
        K = [int(self.model.architecture(e)[0][0]) for e in range(len(self.elements))]
        G = out["descriptors"].reshape(-1)
        dof = out["descriptor_offsets"]
        groups = [np.where(species == e)[0] for e in range(len(self.elements))]
        rows = [dof[g][:, None] + np.arange(K[e])[None, :] for e, g in enumerate(groups)]

        # electronegativities (batched per element)
        chi = np.zeros(n)
        dchi = [None] * len(groups)
        for e, g in enumerate(groups):
            if len(g):
                E, dchi[e], _ = self.elec[e].forward(G[rows[e]], True)
                chi[g] = E

        # charge equilibration
        J = self.hardness[species]
        solver = solver or self.solver
        if solver == "auto":
            solver = "dense" if n <= self.dense_max_atoms else "cg"
        op, params = self.electrostatics(atoms, species, solver)
        info = {"solver": solver}
        if solver == "dense":
            A0 = op.dense()
            Kmat = np.zeros((n + 1, n + 1))
            Kmat[:n, :n] = A0
            Kmat[np.arange(n), np.arange(n)] += J
            Kmat[n, :n] = Kmat[:n, n] = 1.0
            lu = scipy.linalg.lu_factor(Kmat, overwrite_a=True, check_finite=False)
            sol = scipy.linalg.lu_solve(lu, np.concatenate([-chi, [q_tot]]), check_finite=False)
            Q = sol[:n]
            solve = lambda rhs: scipy.linalg.lu_solve(lu, np.concatenate([rhs, [0.0]]), check_finite=False)[:n]
        else:
            warm = self._previous if self._previous is not None and self._previous[0] == n else None
            x0 = warm[1] if warm else np.full(n, q_tot / n)
            Q, cg = _core.solve_qeq_cg(op, J, -chi, q_tot, x0, self.tolerance)
            info["iterations"] = [cg["iterations"]]

            def solve(rhs):
                x, r = _core.solve_qeq_cg(op, J, rhs, 0.0, warm[2] if warm else np.zeros(n), self.tolerance)
                info["iterations"].append(r["iterations"])
                return x

        e_elec, dEelec_dQ = op.energy(Q, A0 @ Q if solver == "dense" else None)
        # neutralising background of a charged cell: constant in Q and R, ~1/V (its virial is e_bg I)
        volume = abs(np.linalg.det(cell)) if periodic else 0.0
        e_bg = self.background_energy(atoms, q_tot, params)
        e_elec += e_bg

        # short networks on [G, Q]
        e_short = np.zeros(n)
        dshort = [None] * len(groups)
        for e, g in enumerate(groups):
            if len(g):
                X = np.concatenate([G[rows[e]], Q[g, None]], axis=1)
                E, dshort[e], _ = self.short[e].forward(X, forces or stress)
                e_short[g] = E
        energy = float(e_short.sum() + e_elec + self.offsets[species].sum())
        res = {"energy": energy, "charges": Q, "atom_energies_short": e_short, "electrostatic_energy": float(e_elec),
               "electronegativities": chi, "solver": info}
        if params is not None:
            res["ewald"] = params.as_dict()
            res["ewald"]["n_kvectors"] = op.n_kvectors
            res["ewald"]["mesh_points"] = op.mesh_points
        else:
            res["dipole"] = Q @ pos
        if not (forces or stress):
            if solver == "cg":
                self._previous = (n, Q.copy(), np.zeros(n))
            return res

        dEdQ = dEelec_dQ.copy()
        for e, g in enumerate(groups):
            if len(g):
                dEdQ[g] += dshort[e][:, -1]
        lam = solve(-dEdQ)
        if solver == "cg":
            self._previous = (n, Q.copy(), lam.copy())
        # symmetry-function part: dE/dG = dE_short/dG + lambda dchi/dG (raw G: chain rule of the scaling)
        w = np.zeros_like(G)
        for e, g in enumerate(groups):
            if len(g):
                w[rows[e]] = (dshort[e][:, :-1] + lam[g, None] * dchi[e]) * self.transform[e][1][None, :]
        sf = self.model.compute(pos, species, n, offs, idx, sid, sh, forces=True, virial=True, dEdG=w,
                                threads=self.threads)
        F_el, W_el = op.derivatives(Q, lam)
        F = sf["forces"] + F_el
        W = sf["virial"] + W_el + e_bg * np.eye(3)
        res["forces"] = F
        if stress:
            res["virial"] = W
            if periodic:
                res["stress"] = -W / volume
        return res

    def calculator(self, length_unit: Optional[str] = None, energy_unit: Optional[str] = None,
                   total_charge: Optional[float] = None):
        """ASE calculator (eV, Angstrom): energy, forces, stress (periodic), charges and, for
        molecules, the dipole (e Angstrom). The potential's units come from the arguments or a
        '# hdnnp: length_unit=... energy_unit=...' line in input.nn (n2p2's examples: Bohr, Ha)."""
        from .potential import _declared_units

        decl_l, decl_e = _declared_units(self.directory)
        lu, eu = length_unit or self.length_unit or decl_l, energy_unit or self.energy_unit or decl_e
        if not lu or not eu:
            raise ValueError("the units of this potential are not known: pass length_unit= and energy_unit= "
                             "(e.g. 'Bohr', 'Ha' for n2p2's examples) or declare them in input.nn with a line "
                             "'# hdnnp: length_unit=Bohr energy_unit=Ha'")
        return FourthGenerationCalculator(self, length_factor(lu), energy_factor(eu), total_charge)


class FourthGenerationCalculator(Calculator):
    implemented_properties = ["energy", "free_energy", "forces", "stress", "charges", "dipole"]

    def __init__(self, potential: FourthGeneration, angstrom_per_unit: float, ev_per_unit: float,
                 total_charge: Optional[float] = None, **kwargs):
        super().__init__(**kwargs)
        self.potential, self.lf, self.ef, self.total_charge = potential, angstrom_per_unit, ev_per_unit, total_charge

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        Calculator.calculate(self, atoms, properties, system_changes)
        a = self.atoms.copy()
        a.positions = self.atoms.positions / self.lf
        if self.atoms.pbc.any():
            a.set_cell(np.asarray(self.atoms.cell) / self.lf, scale_atoms=False)
        q = self.total_charge
        if q is None:
            q = float(self.atoms.info.get("charge", 0.0))
        r = self.potential.evaluate(a, total_charge=q, forces=True, stress=bool(a.pbc.all()))
        self.results["energy"] = self.results["free_energy"] = r["energy"] * self.ef
        self.results["forces"] = r["forces"] * self.ef / self.lf
        self.results["charges"] = r["charges"].copy()
        if "stress" in r:
            s = r["stress"] * self.ef / self.lf ** 3
            self.results["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
        if "dipole" in r:
            self.results["dipole"] = r["dipole"] * self.lf
