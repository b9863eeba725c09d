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


def _calc_result(atoms, key):
    calc = getattr(atoms, "calc", None)
    results = getattr(calc, "results", None) or {}
    return results.get(key)


def atoms_to_dict(atoms, energy=None, forces=None, charges=None, charge=None, comment=None,
                  references=True, label: str = "structure") -> dict:
    """One structure as the dict the core writes. Reference energy and forces come from the
    arguments, else ``atoms.info['energy']`` / ``atoms.arrays['ref_forces']`` (hdnnp's
    convention), else the attached calculator's results (``ase.io.read`` of an extxyz file puts
    them there). `references`: True (an energy and forces are required: a structure without
    them is an error naming it, `label`), "energy" (forces may be missing: written as zeros,
    for energy-only data) or False (unlabelled frames to predict or to label: zeros)."""
    pbc = np.asarray(atoms.pbc)
    if pbc.any() and not pbc.all():
        raise ValueError(f"{label}: n2p2 input.data supports only fully periodic or non-periodic structures "
                         f"(pbc = {pbc.tolist()})")
    n = len(atoms)
    if energy is None:
        energy = atoms.info.get("energy")
    if energy is None:
        energy = _calc_result(atoms, "energy")
    if forces is None:
        forces = atoms.arrays.get("ref_forces")
    if forces is None:
        forces = _calc_result(atoms, "forces")
    if references not in (True, False, "energy"):
        raise ValueError(f"references must be True, 'energy' or False, not {references!r}")
    missing = [w for w, v, need in (("energy", energy, bool(references)), ("forces", forces, references is True))
               if v is None and need]
    if missing:
        raise ValueError(f"{label} ({atoms.get_chemical_formula()}): no reference {' and '.join(missing)} "
                         f"(atoms.info['energy'] / atoms.arrays['ref_forces'] or calculator results); "
                         f"references='energy' writes energy-only structures, references=False unlabelled ones")
    if charges is None:
        charges = atoms.arrays.get("ref_charges")
    if charges is None:
        charges = _calc_result(atoms, "charges")
    return {
        "comment": comment if comment is not None else atoms.info.get("comment", ""),
        "set": atoms.info.get("set", ""),
        "periodic": bool(pbc.all()),
        "lattice": np.asarray(atoms.cell[:], dtype=float),
        "symbols": atoms.get_chemical_symbols(),
        "positions": np.asarray(atoms.positions, dtype=float),
        "charges": np.zeros(n) if charges is None else np.asarray(charges, dtype=float),
        "forces": np.zeros((n, 3)) if forces is None else np.asarray(forces, dtype=float),
        "energy": 0.0 if energy is None else float(energy),
        "charge": charge if charge is not None else atoms.info.get("charge", 0.0),
    }


def write_input_data(path: str | os.PathLike, structures: Iterable, references=True) -> None:
    """Write ASE ``Atoms`` (or dicts) as n2p2 ``input.data``, atomically, in the structures' own
    units. Energies and forces: ``info['energy']``/``arrays['ref_forces']`` or the attached
    calculator's results; a structure without them is an error naming it, unless
    ``references="energy"`` (energy-only data: missing forces written as zeros) or
    ``references=False`` (unlabelled structures: zero energy and forces)."""
    items: List[dict] = [s if isinstance(s, dict) else atoms_to_dict(s, references=references, label=f"structure {k}")
                         for k, s in enumerate(structures)]
    _core.write_file_atomic(os.fspath(path), _core.format_input_data(items))
