"""n2p2 ``input.data`` reading and writing, as ASE ``Atoms`` or plain dicts."""
from __future__ import annotations

import os
from typing import Iterable, List

import numpy as np

from . import _core


def read_input_data(path: str | os.PathLike, as_atoms: bool = True):
    """Read every structure of an n2p2 ``input.data`` file.

    With ``as_atoms`` (default) a list of ``ase.Atoms`` in the file's own units is
    returned; reference energy/forces/charges are in ``atoms.info['energy']``,
    ``atoms.arrays['ref_forces']``, ``atoms.arrays['ref_charges']``,
    ``atoms.info['charge']``, ``atoms.info['set']``. Otherwise dicts.
    """
    structures = _core.read_input_data(os.fspath(path))
    if not as_atoms:
        return structures
    return [_dict_to_atoms(s) for s in structures]


def _dict_to_atoms(s):
    from ase import Atoms

    kw = {}
    if s["periodic"]:
        kw = {"cell": s["lattice"], "pbc": True}
    atoms = Atoms(symbols=s["symbols"], positions=s["positions"], **kw)
    atoms.arrays["ref_forces"] = np.array(s["forces"])
    atoms.arrays["ref_charges"] = np.array(s["charges"])
    if s["energy"] is not None:
        atoms.info["energy"] = s["energy"]
    if s["charge"] is not None:
        atoms.info["charge"] = s["charge"]
    if s["comment"]:
        atoms.info["comment"] = s["comment"]
    if s["set"]:
        atoms.info["set"] = s["set"]
    return atoms


def atoms_to_dict(atoms, energy=None, forces=None, charges=None, charge=None, comment=None) -> dict:
    pbc = np.asarray(atoms.pbc)
    if pbc.any() and not pbc.all():
        raise ValueError("n2p2 input.data supports only fully periodic or non-periodic structures")
    n = len(atoms)
    if forces is None:
        forces = atoms.arrays.get("ref_forces", np.zeros((n, 3)))
    if charges is None:
        charges = atoms.arrays.get("ref_charges", np.zeros(n))
    return {
        "comment": comment if comment is not None else atoms.info.get("comment", ""),
        "set": atoms.info.get("set", ""),
        "periodic": bool(pbc.all()),
        "lattice": np.asarray(atoms.cell[:], dtype=float),
        "symbols": atoms.get_chemical_symbols(),
        "positions": np.asarray(atoms.positions, dtype=float),
        "charges": np.asarray(charges, dtype=float),
        "forces": np.asarray(forces, dtype=float),
        "energy": energy if energy is not None else atoms.info.get("energy", 0.0),
        "charge": charge if charge is not None else atoms.info.get("charge", 0.0),
    }


def write_input_data(path: str | os.PathLike, structures: Iterable) -> None:
    """Write ASE ``Atoms`` (or dicts) as n2p2 ``input.data``, atomically."""
    items: List[dict] = [s if isinstance(s, dict) else atoms_to_dict(s) for s in structures]
    _core.write_file_atomic(os.fspath(path), _core.format_input_data(items))
