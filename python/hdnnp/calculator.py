"""ASE calculator (eV, Angstrom, ASE's Voigt order and sign for stress)."""
from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes


class HDNNPCalculator(Calculator):
    """ASE calculator. With a Committee, results also hold ``energy_deviation`` (eV),
    ``force_deviation`` (per atom, eV/Angstrom) and ``max_force_deviation``."""

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, potential, extrapolation: str = "warn", **kwargs):
        super().__init__(**kwargs)
        self.potential = potential
        self.extrapolation = extrapolation
        self.last_result = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        Calculator.calculate(self, atoms, properties, system_changes)
        want_stress = "stress" in properties
        if want_stress and not self.atoms.pbc.all():
            raise PropertyNotImplementedError("stress needs a 3-D periodic cell")
        r = self.potential.evaluate(self.atoms, forces=True, stress=bool(self.atoms.pbc.all()),
                                    extrapolation=self.extrapolation)
        self.last_result = r
        self.results["energy"] = r.energy
        self.results["free_energy"] = r.energy
        self.results["energies"] = np.array(r.energies)
        self.results["forces"] = np.array(r.forces)
        if r.stress is not None:
            self.results["stress"] = r.stress
        if r.member_forces is not None:
            self.results["energy_deviation"] = r.energy_deviation
            self.results["force_deviation"] = r.force_deviation
            self.results["max_force_deviation"] = r.max_force_deviation
