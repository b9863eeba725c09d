"""The ASE calculator of every generation (eV, Angstrom, ASE's Voigt order and sign for stress)."""
from __future__ import annotations

from typing import Optional

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes


class HDNNPCalculator(Calculator):
    """ASE calculator of a hdnnp.Potential (2G, committee, 3G, 4G, CENT): energy, energies,
    forces, stress (3-D periodic cells), and charges and dipole (molecules) where the generation
    has charges. The total charge is `total_charge`, else ``atoms.info["charge"]``, else 0. With a
    Committee, results also hold ``energy_deviation`` (eV), ``force_deviation`` (per atom,
    eV/Angstrom) and ``max_force_deviation``. The charge solver's warm start (charges and adjoint
    of the last step) is this calculator's state, not the potential's."""

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "charges", "dipole"]

    def __init__(self, potential, extrapolation: str = "warn", total_charge: Optional[float] = None, **kwargs):
        super().__init__(**kwargs)
        self.potential = potential
        self.extrapolation = extrapolation
        self.total_charge = total_charge
        self.last_result = None
        self._warm = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        Calculator.calculate(self, atoms, properties, system_changes)
        periodic = bool(self.atoms.pbc.all())
        if "stress" in properties and not periodic:
            raise PropertyNotImplementedError("stress needs a 3-D periodic cell")
        options = {}
        if self.potential.WARM_START:   # 4G / CENT: the CG solver starts from the last step's solution
            options["warm_start"] = self._warm
        r = self.potential.evaluate(self.atoms, forces=True, stress=periodic, extrapolation=self.extrapolation,
                                    total_charge=self.total_charge, **options)
        self.last_result = r
        if self.potential.WARM_START:
            self._warm = (r.details["charges"], r.details.get("adjoint"))
        self.results["energy"] = r.energy
        self.results["free_energy"] = r.energy
        self.results["energies"] = np.array(r.energies)
        self.results["forces"] = np.array(r.forces)
        if r.stress is not None:
            self.results["stress"] = r.stress
        if r.charges is not None:
            self.results["charges"] = np.array(r.charges)
        if r.dipole is not None:
            self.results["dipole"] = np.array(r.dipole)
        if r.member_forces is not None:
            self.results["energy_deviation"] = r.energy_deviation
            self.results["force_deviation"] = r.force_deviation
            self.results["max_force_deviation"] = r.max_force_deviation
