"""Unit names accepted by the Python API and their value in eV / Angstrom (ASE's units): the
core's one table (hdnnp/units.hpp), which the LAMMPS plugin uses too."""
from . import _core


def length_factor(name: str) -> float:
    """Angstrom per unit of `name`."""
    f = _core.angstrom_per_length_unit(name)
    if f == 0.0:
        raise ValueError(f"unknown length unit {name!r}; known: {_core.LENGTH_UNITS}")
    return f


def energy_factor(name: str) -> float:
    """eV per unit of `name`."""
    f = _core.ev_per_energy_unit(name)
    if f == 0.0:
        raise ValueError(f"unknown energy unit {name!r}; known: {_core.ENERGY_UNITS}")
    return f
