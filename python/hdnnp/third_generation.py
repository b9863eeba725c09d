"""3rd-generation HDNNP prediction (THEORY.md B.0, B.5): E = E_short + E_elec.

- Charges: Q_i = NN_Q,Z(G_i^elec), atomic charge networks on their own symmetry functions
  (RuNNer's `symfunction_electrostatic`, `global_*_electrostatic`, `scalinge.data`,
  `weightse.ZZZ.data`). Local charges need not sum to the structure's total charge; as RuNNer
  does, `enforce_totcharge 1` rescales the positive and the negative charges so that each
  absorbs half of the excess (`charge_correction="rescale"`); "shift" moves every charge by the
  same amount; "none" keeps the network charges (a charged periodic cell is then neutralised by
  a uniform background).
- E_elec: point charges, sum_{i<j} Q_i Q_j f_s(r_ij) / r_ij (screening `screen_electrostatics`,
  f_s = 1 without it), by Ewald summation in periodic cells (the core's electrostatics with zero
  Gaussian widths).
- E_short: the 2G networks on the short symmetry functions (computed by the core).

Forces and stress are exact derivatives of this energy, the charges' dependence on the positions
included (through the charge networks and the correction; RuNNer leaves the correction out of its
forces). No charge equilibration, so no linear solve.
"""
from __future__ import annotations

import os
import re
import warnings
from typing import Optional

import numpy as np

from . import _core
from .long_range import LongRangePotential

# keywords of the charge part, hidden from the short model (and vice versa below)
_ELEC = ("symfunction_electrostatic", "global_hidden_layers_electrostatic", "global_nodes_electrostatic",
         "global_activation_electrostatic", "scale_min_elec", "scale_max_elec")
_LONG_RANGE = ("nnp_generation", "nnp_type", "use_electrostatics", "use_short_nn", "screen_electrostatics",
               "ewald_truncation_error_method", "ewald_prec", "four_pi_epsilon", "enforce_totcharge",
               "ewald_alpha", "ewald_cutoff", "ewald_kmax", "fixed_gausswidth", "electrostatic_type")
_SHORT = ("symfunction_short", "global_hidden_layers_short", "global_nodes_short", "global_activation_short",
          "scale_min_short", "scale_max_short", "atom_energy", "mean_energy", "conv_energy", "conv_length")
_TO_SHORT = {"symfunction_electrostatic": "symfunction_short", "scale_min_elec": "scale_min_short",
             "scale_max_elec": "scale_max_short", "global_hidden_layers_electrostatic": "global_hidden_layers_short",
             "global_nodes_electrostatic": "global_nodes_short",
             "global_activation_electrostatic": "global_activation_short"}

CORRECTIONS = ("none", "rescale", "shift")


def correct_charges(q: np.ndarray, total: float, mode: str):
    """(corrected charges, vjp): charges summing to `total` and the map g -> g^T dQ/dq.

    "rescale" (RuNNer's enforce_totcharge 1, there for total 0): with P and N the sums of the
    positive and the negative charges and e = (P + N - total)/2, positive charges are scaled by
    (P - e)/P and the others by (N - e)/N. "shift": Q = q - (sum q - total)/n. "none": Q = q."""
    if mode == "none":
        return q.copy(), lambda g: g
    if mode == "shift":
        return q - (q.sum() - total) / len(q), lambda g: g - g.mean()
    if mode != "rescale":
        raise ValueError(f"charge_correction must be one of {', '.join(CORRECTIONS)}, not {mode!r}")
    pos = q > 0.0
    P, N = q[pos].sum(), q[~pos].sum()
    if P == 0.0 or N == 0.0:
        raise ValueError("charge rescaling (enforce_totcharge) needs both positive and negative atomic charges; "
                         f"the charge networks give only {'negative (or zero)' if P == 0.0 else 'positive'} ones")
    e = 0.5 * (P + N - total)
    sp, sn = 1.0 - e / P, 1.0 - e / N
    Q = np.where(pos, q * sp, q * sn)

    def vjp(g):
        gp, gn = float(g[pos] @ q[pos]), float(g[~pos] @ q[~pos])
        return np.where(pos, g * sp + gp * (e - 0.5 * P) / P ** 2 - 0.5 * gn / N,
                        g * sn - 0.5 * gp / P + gn * (e - 0.5 * N) / N ** 2)

    return Q, vjp


class ThirdGeneration(LongRangePotential):
    """A 3G potential directory: input.nn (`nnp_generation 3`, short and electrostatic symmetry
    functions and architectures), scaling.data and weights.ZZZ.data (short networks),
    scalinge.data and weightse.ZZZ.data (charge networks), in the potential's own units.

    `ewald`: "n2p2" (ewald_truncation_error_method/ewald_prec as n2p2 reads them; default
    Jackson-Catlow 1e-6) or an absolute energy tolerance (accuracy-controlled, with a particle
    mesh unless `reciprocal="ewald"`). `charge_correction`: None (from enforce_totcharge: 1 ->
    "rescale", else "none"), "none", "rescale" or "shift"."""

    GENERATIONS = ("3", "3g-hdnnp")
    NAME = "3G"

    def __init__(self, directory, ewald="n2p2", threads: int = 0, weights: bool = True,
                 charge_correction: Optional[str] = None, length_unit: Optional[str] = None,
                 energy_unit: Optional[str] = None, reciprocal: str = "auto", background: bool = False):
        super().__init__(directory, ewald, "cg", 1e-10, 0, threads, length_unit, energy_unit, reciprocal, background)
        if "symfunction_electrostatic" not in self.kw:
            raise ValueError(f"{self.path}: a 3G potential needs symfunction_electrostatic lines (the charge "
                             f"networks' symmetry functions)")
        ignored = [k for k in ("ewald_alpha", "ewald_cutoff", "ewald_kmax") if k in self.kw]
        if ignored:
            warnings.warn(f"{self.path}: {', '.join(ignored)} (RuNNer's fixed Ewald parameters) are not used: the "
                          f"Ewald parameters follow from ewald_prec (n2p2's methods) or an energy tolerance "
                          f"(ewald=...), and are reported with each periodic result", stacklevel=2)
        weight_files = {f: f for f in os.listdir(self.directory) if re.fullmatch(r"weights\.\d{3}\.data", f)}
        self.model = self._load_model(drop=_ELEC + _LONG_RANGE, weights=weights,
                                      files={"scaling.data": "scaling.data", **(weight_files if weights else {})})
        self.elements = list(self.model.elements)
        self.charge_range = None   # RuNNer's scalinge.data: the training charges' range per element
        texts = self._runner_scalinge()
        self.elec_model = self._load_model(drop=_SHORT + _LONG_RANGE + ("hdnnp_zbl",), rename=_TO_SHORT,
                                           files={} if texts else {"scaling.data": "scalinge.data"}, texts=texts)
        if self.model.mean_energy != 0.0 or self.model.conv_energy != 1.0:
            raise ValueError(f"{self.path}: normalised 3G potentials are not supported yet")
        self.sigma = np.zeros(len(self.elements))  # point charges
        if charge_correction is None:
            flag = self.kw.get("enforce_totcharge", [["0"]])[0][0]
            if flag not in ("0", "1"):
                raise ValueError(f"{self.path}: enforce_totcharge must be 0 or 1, not {flag}")
            charge_correction = "rescale" if flag == "1" else "none"
        if charge_correction not in CORRECTIONS:
            raise ValueError(f"charge_correction must be one of {', '.join(CORRECTIONS)}, not {charge_correction!r}")
        self.charge_correction = charge_correction
        has = os.path.exists(os.path.join(self.directory, "scalinge.data"))
        if weights and self.elec_model.scaling_mode != 0 and not has:
            raise FileNotFoundError(f"{os.path.join(self.directory, 'scalinge.data')}: no such file (the charge "
                                    f"networks' symmetry-function scaling)")
        self.elec_transform = self.scaling_of(self.elec_model) if has else None
        self.elec = [self._network("electrostatic", int(self.elec_model.architecture(e)[0][0]),
                                   f"weightse.{z:03d}.data" if weights else None)
                     for e, z in enumerate(self.elec_model.atomic_numbers)]

    def _runner_scalinge(self):
        """RuNNer writes scalinge.data with 5 columns per symmetry function and then one line per
        element with the training charges' minimum and maximum: those lines are kept
        (charge_range) and replaced by the one final line the 5-column layout has in scaling.data."""
        path = os.path.join(self.directory, "scalinge.data")
        if not os.path.exists(path):
            return None
        rows = []
        with open(path) as fh:
            for no, line in enumerate(fh, 1):
                tok = line.split("#", 1)[0].split()
                if tok:
                    rows.append((no, tok))
        if not rows or len(rows[0][1]) != 5:
            return None
        tail = [(no, t) for no, t in rows if len(t) == 2]
        if len(tail) != len(self.elements) or any(len(t) != 2 for _, t in rows[-len(tail):]):
            raise ValueError(f"{path}: the RuNNer layout (5 columns) ends with one 'charge_min charge_max' line per "
                             f"element ({len(self.elements)}); found {len(tail)} such lines")
        try:
            self.charge_range = np.array([[float(x) for x in t] for _, t in tail])
        except ValueError:
            raise ValueError(f"{path}:{tail[0][0]}: charge range lines must hold two numbers") from None
        body = "".join(" ".join(t) + "\n" for _, t in rows[:-len(tail)])
        return {"scaling.data": (body + "0.0 0.0\n", "scalinge.data")}

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
        Q, vjp = correct_charges(q, q_tot, self.charge_correction)
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
        from .extrapolation import report_extrapolation

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

