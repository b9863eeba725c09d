"""Training data: reference structures, their symmetry functions and derivatives.

Structures are ``ase.Atoms`` in the potential's own units (n2p2 ``input.data`` files are read
as they are); reference energies in ``atoms.info['energy']`` and forces in
``atoms.arrays['ref_forces']`` (``hdnnp.read_input_data``'s convention), or from an ASE
calculator's results with ``from_ase``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from .. import _core


class DataError(ValueError):
    """Unusable training data (names the structure and what is wrong)."""


@dataclass
class Prepared:
    """One structure, ready for training: per element, its atoms' raw G and the derivative
    blocks of the pairs centred on them."""

    n_atoms: int
    energy: float
    forces: np.ndarray                      # (n, 3) reference
    counts: np.ndarray                      # atoms per element
    rows: Dict[int, np.ndarray]             # element -> atom indices (n_e,)
    G: Dict[int, np.ndarray]                # element -> (n_e, K_e) raw symmetry functions
    prow: Dict[int, np.ndarray]             # element -> pair centre, as row of G[e]
    pi: Dict[int, np.ndarray]               # element -> pair centre atom
    pj: Dict[int, np.ndarray]               # element -> pair neighbour atom
    # element -> (P_e, K_e, 3) dG/d(r_j - r_i), raw. None: not stored (streamed: the trainer
    # contracts the derivatives in the core as it needs them, Trainer.prepared)
    J: Optional[Dict[int, np.ndarray]]
    pd: Dict[int, np.ndarray] = None        # element -> (P_e, 3) r_j + shift - r_i
    stress: Optional[np.ndarray] = None     # reference stress, ASE Voigt order (xx yy zz yz xz xy)
    volume: float = 0.0                     # cell volume (periodic structures), for the stress
    scaled: bool = False                    # G and J hold the scaled network inputs instead
    base_energy: float = 0.0                # the pair baseline's energy, forces and virial
    base_forces: Optional[np.ndarray] = None
    base_virial: Optional[np.ndarray] = None

    def scale(self, transform):
        """Replace raw G and dG by the network inputs offset + factor (G - shift) (in place)."""
        if self.scaled:
            return
        for e, (off, factor, shift) in enumerate(transform):
            self.G[e] = off + factor * (self.G[e] - shift)
            if self.J is not None and e in self.J:
                self.J[e] *= factor[None, :, None]
        self.scaled = True

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in (self.J or {}).values()) + sum(a.nbytes for a in self.G.values()))


def species_of(atoms, elements: Sequence[str], label: str) -> np.ndarray:
    index = {s: i for i, s in enumerate(elements)}
    out = np.empty(len(atoms), dtype=np.int32)
    for i, s in enumerate(atoms.get_chemical_symbols()):
        if s not in index:
            raise DataError(f"{label}: atom {i} is {s}, an element the potential does not have "
                            f"(elements: {' '.join(elements)})")
        out[i] = index[s]
    return out


def check_reference(atoms, label: str, need_forces: bool):
    e = atoms.info.get("energy")
    if e is None or not np.isfinite(e):
        raise DataError(f"{label}: {'no' if e is None else 'non-finite'} reference energy")
    if need_forces:
        f = atoms.arrays.get("ref_forces")
        if f is None:
            raise DataError(f"{label}: no reference forces (atoms.arrays['ref_forces'])")
        if not np.isfinite(f).all():
            i = int(np.flatnonzero(~np.isfinite(f).all(axis=1))[0])
            raise DataError(f"{label}: atom {i} has a non-finite reference force")
    if not np.isfinite(atoms.positions).all():
        raise DataError(f"{label}: non-finite coordinates")
    st = atoms.info.get("stress")
    if st is not None and (np.size(st) != 6 or not np.isfinite(st).all() or not all(atoms.pbc)):
        raise DataError(f"{label}: a reference stress must be 6 finite numbers (Voigt xx yy zz yz xz xy) "
                        f"of a structure periodic in 3 directions")


def geometry(model, atoms, label: str = "structure"):
    """(positions, species, (offsets, index, shift_id, shifts)): what the core's per-structure
    calls (compute, descriptor_jacobian, descriptor_jvp) take."""
    species = species_of(atoms, list(model.elements), label)
    pos = np.ascontiguousarray(atoms.positions, dtype=np.float64)
    pbc = [bool(p) for p in atoms.pbc]
    cell = np.ascontiguousarray(atoms.cell[:], dtype=np.float64) if any(pbc) else None
    try:
        nl = _core.neighbor_list(pos, cell, pbc, model.cutoff)[:4]
    except _core.InputError as e:
        raise DataError(f"{label}: {e}") from None
    return pos, species, nl


def prepare(model, atoms, label: str = "structure", jacobian: bool = True, threads: int = 0,
            geom=None) -> Prepared:
    """Symmetry functions (and, with ``jacobian``, their derivatives) of one structure (`geom`:
    its ``geometry``, when the caller has it)."""
    elements = list(model.elements)
    pos, species, (offsets, index, shift_id, shifts) = geom or geometry(model, atoms, label)
    pbc = [bool(p) for p in atoms.pbc]
    try:
        if jacobian:
            d = model.descriptor_jacobian(pos, species, offsets, index, shift_id, shifts, threads=threads)
        else:
            out = model.compute(pos, species, len(atoms), offsets, index, shift_id, shifts, forces=False,
                                virial=False, descriptors=True, threads=threads, baseline=False)
            d = {"G": out["descriptors"], "g_offsets": out["descriptor_offsets"]}
    except _core.InputError as e:
        raise DataError(f"{label}: {e}") from None
    n = len(atoms)
    counts = np.bincount(species, minlength=len(elements))
    rows, G, prow, pi, pj, pd = {}, {}, {}, {}, {}, {}
    J = {} if jacobian else None
    go = d["g_offsets"]
    row_of = np.empty(n, dtype=np.int64)
    for e in range(len(elements)):
        idx = np.flatnonzero(species == e)
        rows[e] = idx
        row_of[idx] = np.arange(len(idx))
        K = int(model.architecture(e)[0][0])  # number of SFs (network inputs) of element e
        G[e] = np.stack([d["G"][go[i]:go[i + 1]] for i in idx]) if len(idx) else np.zeros((0, K))
    if jacobian:
        po = d["pair_offsets"]
        centre = np.repeat(np.arange(n), np.diff(po))
        pair_species = species[centre]
        for e in range(len(elements)):
            sel = np.flatnonzero(pair_species == e)
            K = G[e].shape[1]
            pi[e] = centre[sel]
            pj[e] = d["pair_atom"][sel].astype(np.int64)
            prow[e] = row_of[pi[e]]
            pd[e] = np.asarray(d["pair_d"])[sel]
            if len(sel):
                starts = d["dg_offsets"][sel]
                J[e] = d["dG"][(starts[:, None] + np.arange(3 * K)[None, :])].reshape(len(sel), K, 3)
            else:
                J[e] = np.zeros((0, K, 3))
    f = atoms.arrays.get("ref_forces")
    st = atoms.info.get("stress")
    return Prepared(pd=pd, stress=None if st is None else np.asarray(st, dtype=float).reshape(6),
                    volume=float(abs(np.linalg.det(atoms.cell[:]))) if all(pbc) else 0.0,
                    n_atoms=n, energy=float(atoms.info.get("energy", np.nan)),
                    forces=np.zeros((n, 3)) if f is None else np.asarray(f, dtype=float), counts=counts,
                    rows=rows, G=G, prow=prow, pi=pi, pj=pj, J=J)


SETS = ("train", "validation", "test")


def split(n: int, test_fraction: float, seed: int, tags: Optional[Sequence[str]] = None,
          validation_fraction: float = 0.0):
    """(train, validation, test) indices. From ``info['set']`` tags (train|validation|test) when
    every structure has one (structures tagged train give up `validation_fraction` of all
    structures to validation when none is tagged validation), else random: `test_fraction` and
    `validation_fraction` of the structures. Validation chooses the best epoch and early
    stopping; the test set is used for nothing but reporting."""
    if not (0.0 <= test_fraction < 1.0 and 0.0 <= validation_fraction < 1.0
            and test_fraction + validation_fraction < 1.0):
        raise ValueError(f"test_fraction {test_fraction} and validation_fraction {validation_fraction} must be in "
                         f"[0, 1) with a sum below 1")
    rng = np.random.default_rng(seed)
    n_val = int(round(validation_fraction * n))
    if tags is not None and len(tags) == n and all(t in SETS for t in tags):
        tags = np.asarray(tags)
        train, val, test = (np.flatnonzero(tags == t) for t in SETS)
        if len(val) == 0 and n_val:
            perm = rng.permutation(train)
            val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        return train, val, test
    perm = rng.permutation(n)
    n_test = int(round(test_fraction * n))
    return np.sort(perm[n_test + n_val:]), np.sort(perm[n_test:n_test + n_val]), np.sort(perm[:n_test])


def selection_score(energy_rmse: float, force_rmse: float = float("nan"), energy_weight: float = 1.0,
                    force_weight: float = 1.0) -> float:
    """The best-epoch criterion: log(RMSE_E^w_E RMSE_F^w_F) on the validation set. Unit-free:
    a relative change of either error counts the same whatever their units and sizes (an epoch
    whose energy error is 2.7x worse does not win by a 2 % better force error). Without forces
    (nan) the energy error alone."""
    tiny = 1e-300
    score = energy_weight * np.log(max(energy_rmse, tiny))
    if np.isfinite(force_rmse) and force_weight:
        score += force_weight * np.log(max(force_rmse, tiny))
    return float(score)


def from_ase(structures: Sequence, energy_factor: float = 1.0, length_factor: float = 1.0) -> List:
    """Copies of ASE structures with calculator results as references (energy, forces, stress,
    charges -> ``arrays['ref_charges']``; the total charge stays in ``info['charge']``),
    converted to the potential's units (``energy_factor``/``length_factor``: potential units per
    ASE unit)."""
    out = []
    for k, a in enumerate(structures):
        b = a.copy()
        b.positions = a.positions * length_factor
        if a.cell.rank:
            b.set_cell(a.cell[:] * length_factor, scale_atoms=False)
        calc = a.calc
        if calc is None or "energy" not in calc.results:
            raise DataError(f"structure {k}: no calculator results (label it first)")
        b.calc = None
        b.info["energy"] = calc.results["energy"] * energy_factor
        if "forces" in calc.results:
            b.arrays["ref_forces"] = calc.results["forces"] * energy_factor / length_factor
        if "stress" in calc.results and all(a.pbc):
            b.info["stress"] = np.asarray(calc.results["stress"]) * energy_factor / length_factor ** 3
        if "charges" in calc.results:  # reference charges (4G/3G), elementary charges
            b.arrays["ref_charges"] = np.asarray(calc.results["charges"], dtype=float)
        out.append(b)
    return out
