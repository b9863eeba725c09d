"""Unit names accepted by the Python API and their value in eV / Angstrom (ASE's units)."""
from ase import units as _u

LENGTH = {
    "angstrom": 1.0, "a": 1.0, "ang": 1.0, "å": 1.0,
    "bohr": _u.Bohr, "au": _u.Bohr, "a0": _u.Bohr,
    "nm": 10.0,
}
ENERGY = {
    "ev": 1.0,
    "ha": _u.Hartree, "hartree": _u.Hartree, "au": _u.Hartree,
    "ry": _u.Rydberg, "rydberg": _u.Rydberg,
    "kcal/mol": _u.kcal / _u.mol, "kj/mol": _u.kJ / _u.mol,
    "mev": 1e-3,
}


def length_factor(name: str) -> float:
    """Angstrom per unit of `name`."""
    try:
        return LENGTH[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown length unit {name!r}; known: {sorted(set(LENGTH))}") from None


def energy_factor(name: str) -> float:
    """eV per unit of `name`."""
    try:
        return ENERGY[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown energy unit {name!r}; known: {sorted(set(ENERGY))}") from None
