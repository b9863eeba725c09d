"""The numpy implementation of 3G, 4G and CENT prediction that preceded the core's, kept as a test
oracle only (the package does not import it): the same equations written with the core's
building blocks (descriptors, networks, Electrostatics, QEqDense, solve_qeq_cg) driven from
Python. tests/test_core_4g.py compares the core against it."""
import os
from types import SimpleNamespace
from typing import Optional

import numpy as np

from hdnnp import _core
from hdnnp.baseline import compute as baseline_compute
from hdnnp.cent import Cent
from hdnnp.extrapolation import report_extrapolation
from hdnnp.fourth_generation import FourthGeneration
from hdnnp.third_generation import ThirdGeneration, correct_charges
from hdnnp.long_range import _column, load_weights

_BLOCK = 4096


class _Oracle:
    """Mixin: the numpy evaluation on a potential loaded without weights, its networks read here."""

    def load_files(self):
        for e, z in enumerate(self.model.atomic_numbers):
            load_weights(self.elec[e], os.path.join(self.directory, f"weightse.{z:03d}.data"))
            if self.SHORT:
                load_weights(self.short[e], os.path.join(self.directory, f"weights.{z:03d}.data"))
            self.hardness[e] = _column(os.path.join(self.directory, f"hardness.{z:03d}.data"))[0]
        return self

    @staticmethod
    def check_extrapolation(s, mode: str):
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
            warm = None
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


    def _baseline(self, atoms, species, forces: bool, virial: bool, nl=None):
        """The ZBL pair baseline (hdnnp_zbl) of a structure, as the core's result dict, or None
        when the potential has none. `nl`: a neighbour list at hand (longer than r_outer), else
        one to r_outer is built."""
        b = self.model.baseline
        return None if b is None else baseline_compute(b, atoms, species, forces or virial, virial, nl)

    @staticmethod
    def _add_baseline(res, base, forces: bool, stress: bool, cell=None):
        """Add the baseline's energy (also reported as res["baseline_energy"]), forces and
        virial/stress to a result."""
        if base is None:
            return
        if "baseline_energy" not in res:
            res["baseline_energy"] = base["energy"]
            res["energy"] += base["energy"]
        if forces and "forces" in res:
            res["forces"] = res["forces"] + base["forces"]
        if stress and "virial" in res:
            res["virial"] = res["virial"] + base["virial"]
            if cell is not None:
                res["stress"] = -res["virial"] / abs(np.linalg.det(cell))


    @staticmethod
    def _report(res, op, params, Q, pos):
        if params is not None:
            res["ewald"] = params.as_dict()
            res["ewald"]["n_kvectors"] = op.n_kvectors
            res["ewald"]["mesh_points"] = op.mesh_points
        else:
            res["dipole"] = Q @ pos


    def evaluate_4g(self, atoms, total_charge: Optional[float] = None, forces: bool = False, stress: bool = False,
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
            return res

        lam = s.solve(-(dEelec_dQ + dEs_dQ))
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

    def evaluate_cent(self, atoms, total_charge: Optional[float] = None, forces: bool = False, stress: bool = False,
                 solver: Optional[str] = None, extrapolation: str = "warn"):
        """Energy (offsets included), charges, electronegativities; with `forces` the forces,
        with `stress` the virial and stress (periodic: at fixed Ewald parameters). `extrapolation`
        as in FourthGeneration.evaluate. The core computes it (`_core.FourthGenerationPotential` in
        its CENT mode) unless `self.core` is None (training; the numpy path as a test oracle)."""
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


class NumpyFourthGeneration(_Oracle, FourthGeneration):
    def __init__(self, directory, **kw):
        FourthGeneration.__init__(self, directory, weights=False, **kw)
        self.load_files()

    def evaluate(self, *args, **kw):
        return self.evaluate_4g(*args, **kw)


class NumpyCent(_Oracle, Cent):
    def __init__(self, directory, **kw):
        Cent.__init__(self, directory, weights=False, **kw)
        self.load_files()

    def evaluate(self, *args, **kw):
        return self.evaluate_cent(*args, **kw)


class NumpyThirdGeneration(ThirdGeneration):
    """The numpy 3G prediction that preceded the core's (charge networks in Python, the core's
    descriptors and electrostatics driven from here)."""

    def __init__(self, directory, charge_correction="none", **kw):
        ThirdGeneration.__init__(self, directory, weights=False, **kw)
        self.correction = charge_correction
        self.model = _core.Model.load(self.directory, True, networks="short")
        for e, z in enumerate(self.elec_model.atomic_numbers):
            load_weights(self.elec[e], os.path.join(self.directory, f"weightse.{z:03d}.data"))

    _report = staticmethod(_Oracle._report)

    def charges(self, atoms, species, periodic, gradients: bool = False):
        """Network charges (before any correction) and, with `gradients`, what their forces need:
        (q, dq/dG per element, neighbour list, descriptor rows per element, the core's output with
        its extrapolation record)."""
        pos = np.ascontiguousarray(atoms.positions, dtype=float)
        cell = np.ascontiguousarray(np.asarray(atoms.cell, dtype=float)) if periodic else None
        nl = _core.neighbor_list(pos, cell, [periodic] * 3, self.elec_model.cutoff)[:4]
        out = self.elec_model.compute(pos, species, len(atoms), *nl, forces=False, virial=False, descriptors=True,
                                      scaled=True, threads=self.threads)
        G, dof = out["descriptors"].reshape(-1), out["descriptor_offsets"]
        q = np.zeros(len(atoms))
        dq, rows = [None] * len(self.elements), [None] * len(self.elements)
        for e, net in enumerate(self.elec):
            g = np.flatnonzero(species == e)
            if len(g):
                rows[e] = dof[g][:, None] + np.arange(net.sizes[0])[None, :]
                q[g], dq[e], _ = net.forward(G[rows[e]], gradients)
        return q, (dq, nl, rows, len(G), out)

    def long_range(self, atoms, species, q_tot: float, forces: bool = False, stress: bool = False):
        """The electrostatic part alone: charges (corrected), E_elec (with the background of a
        charged periodic cell), and with `forces`/`stress` its forces and virial, the charges'
        position dependence included."""
        periodic = self._periodic(atoms)
        n = len(atoms)
        grads = forces or stress
        q, (dq, nl_e, rows, n_desc, out) = self.charges(atoms, species, periodic, grads)
        Q, vjp = correct_charges(q, q_tot, self.correction)
        op, params = self.electrostatics(atoms, species, "cg")
        e_elec, dEdQ = op.energy(Q)
        S = float(Q.sum())
        e_bg = self.background_energy(atoms, S, params)   # (a non-neutral cell without correction)
        if e_bg:
            dEdQ = dEdQ + 2.0 * e_bg / S
        pos = np.ascontiguousarray(atoms.positions, dtype=float)
        res = {"charges": Q, "network_charges": q, "electrostatic_energy": float(e_elec + e_bg), "total_charge": S,
               "charge_descriptors": out}   # (evaluate reports their extrapolation)
        self._report(res, op, params, Q, pos)
        if not grads:
            return res
        g = vjp(dEdQ)       # dE/dq of the network charges
        w = np.zeros(n_desc)
        for e in range(len(self.elements)):
            if rows[e] is not None:
                scale = self.elec_transform[e][1][None, :] if self.elec_transform is not None else 1.0
                w[rows[e]] = g[species == e, None] * dq[e] * scale
        sf = self.elec_model.compute(pos, species, n, *nl_e, forces=True, virial=True, dEdG=w, threads=self.threads)
        F_el, W_el = op.derivatives(Q, np.zeros(n))
        res["forces"] = sf["forces"] + F_el
        res["virial"] = sf["virial"] + W_el + e_bg * np.eye(3)
        return res

    def evaluate(self, atoms, total_charge: Optional[float] = None, forces: bool = False, stress: bool = False,
                 extrapolation: str = "warn"):
        """Energy (offsets included), charges (corrected; `network_charges` before), atomic short
        energies, electrostatic energy; with `forces` the forces, with `stress` the virial and
        stress (periodic: at fixed Ewald parameters), in the potential's units. The total charge
        (`total_charge`, else atoms.info["charge"], else 0) is what the correction aims at.
        `extrapolation`: symmetry functions (short or charge) outside their scaling ranges give one
        warning ("warn"), an ExtrapolationError ("raise") or nothing ("ignore"); the atoms are
        flagged in `extrapolating_atoms` either way."""
        from hdnnp.extrapolation import report_extrapolation

        periodic = self._periodic(atoms)
        q_tot = float(atoms.info.get("charge", 0.0) if total_charge is None else total_charge)
        self.check_charged_cell(periodic, q_tot)
        species = self._species(atoms)
        grads = forces or stress
        res = self.long_range(atoms, species, q_tot, forces, stress)
        pos = np.ascontiguousarray(atoms.positions, dtype=float)
        cell = np.ascontiguousarray(np.asarray(atoms.cell, dtype=float)) if periodic else None
        nl_s = _core.neighbor_list(pos, cell, [periodic] * 3, self.model.cutoff)[:4]
        short = self.model.compute(pos, species, len(atoms), *nl_s, forces=grads, virial=grads, threads=self.threads)
        elec = res.pop("charge_descriptors")
        report_extrapolation([(0, short["extrapolations"], ""), (0, elec["extrapolations"], "charge network ")], 1,
                             extrapolation, stacklevel=3)
        res["extrapolating_atoms"] = np.maximum(short["extrapolating_atoms"], elec["extrapolating_atoms"])
        res["extrapolation_records"] = [("", short["extrapolations"]), ("charge network ", elec["extrapolations"])]
        res["energy"] = float(short["energy"] + res["electrostatic_energy"])
        res["atom_energies_short"] = short["atom_energies"]
        if not grads:
            return res
        res["forces"] = short["forces"] + res["forces"]
        W = res.pop("virial") + short["virial"]
        if stress:
            res["virial"] = W
            if periodic:
                res["stress"] = -W / abs(np.linalg.det(cell))
        return res

