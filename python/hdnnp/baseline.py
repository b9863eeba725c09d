"""The ZBL pair baseline (``hdnnp_zbl`` in input.nn): shortest distances in data, default
radii, resolving ``hdnnp_zbl auto`` from training structures, and the baseline of a structure.

The physics lives in the core (``_core.PairBaseline``: ZBL screened nuclear repulsion, switched
off between r_inner and r_outer by a C2 polynomial). Every prediction path adds it (2G and
committees in the core's compute, 3G through its short model, 4G and CENT in
``LongRangePotential``); training fits the networks to the reference minus the baseline.

input.nn (radii in the potential's length unit; the units must be declared):

    # hdnnp: length_unit=Angstrom energy_unit=eV
    hdnnp_zbl Cu Cu 1.1 2.0        # element, element, r_inner, r_outer
    hdnnp_zbl auto                 # the pairs not given: radii from the training data
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np

from . import _core
from .units import energy_factor, length_factor

#: default radii as fractions of the shortest distance d_min of a pair in the data: the
#: baseline is zero at and beyond OUTER x d_min and pure ZBL inside INNER x d_min
OUTER, INNER = 0.9, 0.5


def shortest_distances(structures: Sequence, elements: Sequence[str], cutoff: float) -> Dict[Tuple[str, str], float]:
    """Shortest distance of every element pair (a <= b in the order of `elements`) over the
    structures, counting periodic images; pairs never closer than `cutoff` are absent."""
    index = {e: i for i, e in enumerate(elements)}
    best = np.full((len(elements), len(elements)), np.inf)
    for k, a in enumerate(structures):
        sym = a.get_chemical_symbols()
        unknown = sorted(set(sym) - set(index))
        if unknown:
            raise ValueError(f"structure {k}: element(s) {', '.join(unknown)} not in {' '.join(elements)}")
        sp = np.array([index[s] for s in sym], dtype=np.int64)
        pos = np.ascontiguousarray(a.positions, dtype=float)
        pbc = [bool(p) for p in a.pbc]
        cell = np.ascontiguousarray(a.cell[:], dtype=float) if any(pbc) else None
        off, idx, sid, sh, _, _ = _core.neighbor_list(pos, cell, pbc, float(cutoff))
        if len(idx) == 0:
            continue
        i = np.repeat(np.arange(len(a)), np.diff(off))
        d = pos[idx] + sh[sid] - pos[i]
        r = np.sqrt((d * d).sum(axis=1))
        np.minimum.at(best, (sp[i], sp[idx]), r)
    return {(elements[x], elements[y]): float(best[x, y]) for x in range(len(elements))
            for y in range(x, len(elements)) if np.isfinite(best[x, y])}


def suggest_radii(d_min: float) -> Tuple[float, float]:
    """(r_inner, r_outer) for a pair whose shortest distance in the data is d_min."""
    return INNER * d_min, OUTER * d_min


def fallback_distance(a: str, b: str) -> float:
    """A stand-in d_min (Angstrom) for a pair absent from the data: 80 % of the covalent
    radii's sum."""
    from ase.data import atomic_numbers, covalent_radii

    return 0.8 * float(covalent_radii[atomic_numbers[a]] + covalent_radii[atomic_numbers[b]])


def resolve(model, structures: Sequence):
    """The baseline of `model` with the radii of ``hdnnp_zbl auto`` derived from `structures`
    (the training structures, in the potential's units), or None without hdnnp_zbl lines.
    Returns (PairBaseline or None, lines): `lines` are the hdnnp_zbl lines a written potential
    carries (None when input.nn has them all already)."""
    if model.baseline is not None:
        return model.baseline, None
    if not model.baseline_auto:
        return None, None
    elements = list(model.elements)
    ne = len(elements)
    ri, ro = np.zeros((ne, ne)), np.zeros((ne, ne))
    given = set()
    for a, b, r_in, r_out, _ in model.baseline_pairs:
        ri[a, b] = ri[b, a] = r_in
        ro[a, b] = ro[b, a] = r_out
        given.add((min(a, b), max(a, b)))
    dmin = shortest_distances(structures, elements, model.cutoff)
    lf = length_factor(model.length_unit)  # Angstrom per potential length unit
    lines = []
    for a in range(ne):
        for b in range(a, ne):
            if (a, b) not in given:
                d = dmin.get((elements[a], elements[b]))
                source = "shortest distance in the training data"
                if d is None:
                    d = fallback_distance(elements[a], elements[b]) / lf
                    source = "not in the training data: 0.8 x the covalent radii's sum"
                r_in, r_out = suggest_radii(d)
                r_out = min(r_out, 0.999 * model.cutoff)
                ri[a, b] = ri[b, a] = r_in
                ro[a, b] = ro[b, a] = r_out
                lines.append(f"hdnnp_zbl {elements[a]} {elements[b]} {float(r_in)!r} {float(r_out)!r}   "
                             f"# d_min {d:.6f} ({source})")
            else:
                lines.append(f"hdnnp_zbl {elements[a]} {elements[b]} {float(ri[a, b])!r} {float(ro[a, b])!r}")
    base = _core.PairBaseline(list(model.atomic_numbers), np.ascontiguousarray(ri), np.ascontiguousarray(ro),
                              lf, energy_factor(model.energy_unit))
    return base, lines


def written_input_nn(text: str, lines) -> str:
    """input.nn text with 'hdnnp_zbl' lines replaced by `lines` (all pairs explicit), or
    unchanged when `lines` is None."""
    if lines is None:
        return text
    out = [l for l in text.splitlines() if not (l.split()[:1] == ["hdnnp_zbl"])]
    out += ["# ZBL pair baseline (hdnnp): radii in the potential's length unit"] + list(lines)
    return "\n".join(out) + "\n"


def compute(baseline, atoms, species: np.ndarray, forces: bool = True, virial: bool = True, nl=None):
    """The baseline's energy, atom_energies, forces and virial of one structure (potential
    units, atoms in them), as the core's result dict; `nl`: (offsets, index, shift_id, shifts)
    of a list at least max_outer long, or None to build one."""
    pos = np.ascontiguousarray(atoms.positions, dtype=float)
    if nl is None:
        pbc = [bool(p) for p in atoms.pbc]
        cell = np.ascontiguousarray(atoms.cell[:], dtype=float) if any(pbc) else None
        nl = _core.neighbor_list(pos, cell, pbc, baseline.max_outer)[:4]
    return baseline.compute(pos, np.ascontiguousarray(species, dtype=np.int32), len(atoms), *nl,
                            forces=forces, virial=virial)
