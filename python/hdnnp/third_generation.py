"""3rd-generation HDNNP prediction (THEORY.md B.0, B.5): E = E_short + E_elec.

- Charges: Q_i = NN_Q,Z(G_i^elec), atomic charge networks on their own symmetry functions
  (RuNNer's `symfunction_electrostatic`, `global_*_electrostatic`, `scalinge.data`,
  `weightse.ZZZ.data`). Local charges need not sum to the structure's total charge; as RuNNer
  does, `enforce_totcharge 1` rescales the positive and the negative charges so that each
  absorbs half of the excess (`charge_correction="rescale"`); "shift" moves every charge by the
  same amount; "none" keeps the network charges (a periodic cell whose charges do not sum to zero
  is then neutralised by a uniform background, its energy included; `total_charge` in the
  result is the charges' sum).
- E_elec: point charges, sum_{i<j} Q_i Q_j f_s(r_ij) / r_ij (screening `screen_electrostatics`,
  f_s = 1 without it), by Ewald summation in periodic cells.
- E_short: the 2G networks on the short symmetry functions.

Forces and stress are exact derivatives of this energy, the charges' dependence on the positions
included (through the charge networks and the correction; RuNNer leaves the correction out of its
forces). No charge equilibration, so no linear solve. The core computes it
(`_core.ThirdGenerationPotential`).
"""
from __future__ import annotations

import os
import warnings
from typing import Optional

import numpy as np

from . import _core
from .long_range import LongRangePotential

CORRECTIONS = ("none", "rescale", "shift")


def correct_charges(q: np.ndarray, total: float, mode: str):
    """(corrected charges, vjp): charges summing to `total` and the map g -> g^T dQ/dq (the
    core's correction of a 3G potential).

    "rescale" (RuNNer's enforce_totcharge 1, there for total 0): with P and N the sums of the
    positive and the negative charges and e = (P + N - total)/2, positive charges are scaled by
    (P - e)/P and the others by (N - e)/N. "shift": Q = q - (sum q - total)/n. "none": Q = q."""
    if mode not in CORRECTIONS:
        raise ValueError(f"charge_correction must be one of {', '.join(CORRECTIONS)}, not {mode!r}")
    q = np.ascontiguousarray(q, dtype=float)
    Q, _ = _core.correct_charges(q, float(total), mode)
    return Q, lambda g: _core.correct_charges(q, float(total), mode, np.ascontiguousarray(g, dtype=float))[1]


def _scaled(kw) -> bool:
    return any(k in kw for k in ("scale_symmetry_functions", "center_symmetry_functions",
                                 "scale_symmetry_functions_sigma"))


class ThirdGeneration(LongRangePotential):
    """A 3G potential directory: input.nn (`nnp_generation 3`, short and electrostatic symmetry
    functions and architectures), scaling.data and weights.ZZZ.data (short networks),
    scalinge.data and weightse.ZZZ.data (charge networks).

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
        if charge_correction is not None and charge_correction not in CORRECTIONS:
            raise ValueError(f"charge_correction must be one of {', '.join(CORRECTIONS)}, not {charge_correction!r}")
        self.sigma = np.zeros(0)
        if weights:
            path = os.path.join(self.directory, "scalinge.data")
            if _scaled(self.kw) and not os.path.exists(path):
                raise FileNotFoundError(f"{path}: no such file (the charge networks' symmetry-function scaling)")
            self.core = _core.ThirdGenerationPotential.load(self.directory, charge_correction or "")
            for w in self.core.warnings:
                warnings.warn(w, stacklevel=2)
            self.elements = list(self.core.elements)
            self.model, self.elec_model = self.core.short_model, self.core.charge_model
            self.sigma = np.zeros(len(self.elements))  # point charges
            self.charge_range = np.array(self.core.charge_range) if len(self.core.charge_range) else None
            return
        # a potential being trained (hdnnp.training.third_generation): descriptor models from the
        # core, the charge networks in Python
        self.core = None
        self.model = _core.Model.load(self.directory, False, networks="short")
        self.elec_model = _core.Model.load(self.directory, False, networks="charge")
        self.elements = list(self.model.elements)
        self.sigma = np.zeros(len(self.elements))
        self.charge_range = None
        has = os.path.exists(os.path.join(self.directory, "scalinge.data"))
        self.elec_transform = self.scaling_of(self.elec_model) if has else None
        self.elec = [self._network("electrostatic", int(self.elec_model.architecture(e)[0][0]), None)
                     for e in range(len(self.elements))]

    @property
    def cutoff(self) -> float:
        return self.core.cutoff if self.core is not None else max(self.model.cutoff, self.elec_model.cutoff)

    @property
    def charge_correction(self) -> str:
        return self.core.charge_correction

    @charge_correction.setter
    def charge_correction(self, mode: str):
        if mode not in CORRECTIONS:
            raise ValueError(f"charge_correction must be one of {', '.join(CORRECTIONS)}, not {mode!r}")
        self.core = _core.ThirdGenerationPotential.load(self.directory, mode)

    def compute(self, atoms, total_charge: Optional[float] = None, forces: bool = False, stress: bool = False,
                solver: Optional[str] = None, extrapolation: str = "warn", warm_start=None) -> dict:
        """Energy (offsets and baseline included), per-atom energies, charges (corrected;
        `network_charges` before), atomic short energies, electrostatic energy; with `forces` the
        forces, with `stress` the virial and stress (periodic: at fixed Ewald parameters), in the
        potential's units. The total charge (`total_charge`, else atoms.info["charge"], else 0) is
        what the correction aims at. `extrapolation`: symmetry functions (short or charge) outside
        their scaling ranges give one warning ("warn"), an ExtrapolationError ("raise") or nothing
        ("ignore"); the atoms are flagged in `extrapolating_atoms` either way."""
        from .extrapolation import report_extrapolation

        if self.core is None:
            raise ValueError(f"{self.path}: this 3G potential was loaded without weights (for training)")
        periodic = self._periodic(atoms)
        q_tot = float(atoms.info.get("charge", 0.0) if total_charge is None else total_charge)
        self.check_charged_cell(periodic, q_tot)
        species = self._species(atoms)
        pos = np.ascontiguousarray(atoms.positions, dtype=float)
        cell = np.ascontiguousarray(np.asarray(atoms.cell, dtype=float)) if periodic else None
        params, ewald = self._ewald_dict(atoms, "cg", periodic)
        grads = forces or stress
        r = self.core.compute(pos, species, cell, q_tot, forces=grads, virial=grads, threads=self.threads,
                              ewald=ewald, background=self.background)
        records = [("", r["extrapolations"]), ("charge network ", r["charge_extrapolations"])]
        report_extrapolation([(0, ex, label) for label, ex in records], 1, extrapolation, stacklevel=4)
        if periodic:
            r["ewald"] = {**params.as_dict(), "n_kvectors": r["ewald"]["n_kvectors"],
                          "mesh_points": r["ewald"]["mesh_points"]}
        r["total_charge"] = float(r["charges"].sum())
        r = self._native_result(r, periodic, pos, stress, cell)
        r["extrapolation_records"] = records
        return r
