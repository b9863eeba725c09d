"""Python API over the C++ core: load a potential, evaluate structures."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Union

import numpy as np

from . import _core
from .extrapolation import ExtrapolationWarning, report_extrapolation  # noqa: F401 (public names here too)
from .keywords import declared_units as _declared_units
from .keywords import generation  # noqa: F401 (a public name here too)
from .units import energy_factor, length_factor


@dataclass
class Result:
    """Prediction for one structure, every generation (eV, Angstrom unless evaluated with
    native=True: then the potential's own units)."""

    energy: float
    energies: np.ndarray                 # per atom, sums to energy
    forces: Optional[np.ndarray] = None  # (N, 3)
    virial: Optional[np.ndarray] = None  # (3, 3), W = sum r_ij (x) f_ij, energy units
    stress: Optional[np.ndarray] = None  # ASE Voigt (xx yy zz yz xz xy), energy/length^3
    extrapolating_atoms: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    extrapolations: dict = field(default_factory=dict)
    descriptors: Optional[List[np.ndarray]] = None
    # Committees: energy/forces/stress above are the committee means.
    member_energies: Optional[np.ndarray] = None  # (M,)
    member_forces: Optional[np.ndarray] = None    # (M, N, 3)
    # 3G, 4G, CENT (None for 2G):
    charges: Optional[np.ndarray] = None          # (N,), elementary charges
    dipole: Optional[np.ndarray] = None           # (3,), charge x length (molecules)
    electrostatic_energy: Optional[float] = None  # included in energy
    total_charge: Optional[float] = None          # sum of the charges
    #: every (label, extrapolation record) of the structure: one per descriptor set (3G: the short
    #: and the charge networks' symmetry functions)
    extrapolation_records: list = field(default_factory=list)
    #: 3G/4G/CENT: the potential's native result (its units): solver, Ewald parameters and
    #: iterations, electronegativities, network charges, short-range atomic energies, ...
    details: Optional[dict] = None

    @property
    def n_extrapolating(self) -> int:
        return int(np.count_nonzero(self.extrapolating_atoms))

    @property
    def energy_deviation(self) -> Optional[float]:
        """Committee standard deviation of the total energy (population, 1/M)."""
        return None if self.member_energies is None else float(np.std(self.member_energies))

    @property
    def force_deviation(self) -> Optional[np.ndarray]:
        """Per atom sqrt(mean_m |F_m - F_mean|^2), the committee force disagreement (N,)."""
        if self.member_forces is None:
            return None
        d = self.member_forces - self.member_forces.mean(axis=0)
        return np.sqrt((d * d).sum(axis=2).mean(axis=0))

    @property
    def max_force_deviation(self) -> Optional[float]:
        fd = self.force_deviation
        return None if fd is None else float(fd.max(initial=0.0))


def voigt_stress(virial: np.ndarray, atoms) -> np.ndarray:
    """ASE's stress (Voigt: xx yy zz yz xz xy) of a periodic cell from the virial W (3 x 3,
    symmetrised), in the units of `atoms` and of W: -W / V."""
    volume = abs(np.linalg.det(atoms.cell[:]))
    sigma = -0.5 * (virial + virial.T) / volume
    return np.array([sigma[0, 0], sigma[1, 1], sigma[2, 2], sigma[1, 2], sigma[0, 2], sigma[0, 1]])


SPATIAL_ORDER_MIN_ATOMS = 1024


def _unsort(out: dict, order: np.ndarray) -> dict:
    """Map the results of a computation on atoms[order] back to the input atom order."""
    def back(a, axis=0):
        b = np.empty_like(a)
        if axis == 0:
            b[order] = a
        else:
            b[:, order] = a
        return b

    out = dict(out)
    for key in ("atom_energies", "forces", "extrapolating_atoms"):
        if key in out:
            out[key] = back(out[key])
    if "member_forces" in out:
        out["member_forces"] = back(out["member_forces"], axis=1)
    ex = dict(out["extrapolations"])
    if len(ex["atom"]):
        ex["atom"] = order[ex["atom"]]
        k = np.lexsort((ex["sf"], ex["atom"]))
        ex = {key: v[k] for key, v in ex.items()}
    out["extrapolations"] = ex
    if "descriptors" in out:
        d, o = out["descriptors"], out["descriptor_offsets"]
        parts = [None] * len(order)
        for c, a in enumerate(order):
            parts[a] = d[o[c]:o[c + 1]]
        sizes = np.array([len(p) for p in parts], dtype=np.int64)
        out["descriptor_offsets"] = np.concatenate([[0], np.cumsum(sizes)])
        out["descriptors"] = np.concatenate(parts) if parts else d
    return out


class Potential:
    """A loaded HDNNP (immutable, thread-safe; several can coexist)."""

    _members = False  # Committee evaluates member forces
    #: evaluate() takes warm_start=(charges, adjoint) (4G, CENT); the ASE calculator passes its last
    WARM_START = False

    def __init__(self, directory, length_unit: Optional[str] = None, energy_unit: Optional[str] = None,
                 threads: int = 0, warn: bool = True, weights: bool = True):
        directory = directory if isinstance(directory, list) else os.fspath(directory)
        self.model = self._load(directory, weights)
        decl_l, decl_e = self._declared_units(directory)
        self.length_unit = length_unit or decl_l
        self.energy_unit = energy_unit or decl_e
        self._lf = length_factor(self.length_unit) if self.length_unit else None
        self._ef = energy_factor(self.energy_unit) if self.energy_unit else None
        self.threads = threads
        self.directory = directory
        if warn:
            for w in self.model.warnings:
                warnings.warn(w, stacklevel=2)

    @staticmethod
    def _load(directory, weights):
        return _core.Model.load(directory, weights)

    @staticmethod
    def _declared_units(directory):
        return _declared_units(directory)

    # -- description -------------------------------------------------------------------------
    @property
    def elements(self) -> List[str]:
        return list(self.model.elements)

    @property
    def cutoff(self) -> float:
        """Largest symmetry-function cutoff in the potential's own length unit."""
        return self.model.cutoff

    def __repr__(self):
        return (f"Potential({self.directory!r}, elements={self.elements}, cutoff={self.cutoff:g} "
                f"{self.length_unit or '(native)'}, energy unit {self.energy_unit or '(native)'})")

    def _factors(self, native: bool):
        if native:
            return 1.0, 1.0
        if self._lf is None or self._ef is None:
            raise ValueError(
                "the units of this potential are not known: pass length_unit= and energy_unit= to "
                "hdnnp.load (e.g. 'Bohr', 'Ha' for n2p2's water example), declare them in input.nn with a "
                "line '# hdnnp: length_unit=Bohr energy_unit=Ha', or evaluate with native=True")
        return self._lf, self._ef

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, atoms, forces: bool = True, stress: bool = True, descriptors: bool = False,
                 scaled_descriptors: bool = False, extrapolation: str = "warn", native: bool = False,
                 total_charge: Optional[float] = None, **options):
        """Evaluate one ``ase.Atoms`` (returns a Result) or a sequence of them (list of Results).

        Units are eV and Angstrom (ASE), or the potential's own units with ``native=True``.
        ``extrapolation``: 'warn' (one summarised warning per call), 'raise' or 'ignore'.
        ``total_charge`` (3G/4G/CENT): the structure's charge, else ``atoms.info["charge"]``, else 0
        (2G potentials do not model charges and ignore it). ``options``: per-call options of
        3G/4G/CENT potentials (``solver="dense"|"cg"``).
        """
        if extrapolation not in ("warn", "raise", "ignore"):
            raise ValueError("extrapolation must be 'warn', 'raise' or 'ignore'")
        single = not isinstance(atoms, (list, tuple))
        items = [atoms] if single else list(atoms)
        results = [self._evaluate_one(a, k, forces, stress, descriptors, scaled_descriptors, native, total_charge,
                                      extrapolation, **options)
                   for k, a in enumerate(items)]
        self._report_extrapolation(results, extrapolation)
        return results[0] if single else results

    def with_units(self, length_unit: Optional[str] = None, energy_unit: Optional[str] = None):
        """This potential (the same loaded networks) with other physical units for evaluate()."""
        import copy

        other = copy.copy(self)
        if length_unit:
            other.length_unit, other._lf = length_unit, length_factor(length_unit)
        if energy_unit:
            other.energy_unit, other._ef = energy_unit, energy_factor(energy_unit)
        return other

    def _species(self, symbols: Sequence[str], label: str) -> np.ndarray:
        index = {s: i for i, s in enumerate(self.model.elements)}
        species = np.empty(len(symbols), dtype=np.int32)
        for i, s in enumerate(symbols):
            if s not in index:
                raise _core.InputError(
                    f"{label}atom {i} is {s}, an element this potential does not describe "
                    f"(it knows {', '.join(self.model.elements)})")
            species[i] = index[s]
        return species

    def _evaluate_one(self, atoms, k, want_forces, want_stress, want_descriptors, scaled, native, total_charge=None,
                      extrapolation="warn", **options):
        if options:
            raise TypeError(f"{', '.join(options)}: options of 3G/4G/CENT potentials; this is a 2G potential")
        lf, ef = self._factors(native)
        label = f"structure {k}: " if k else ""
        n = len(atoms)
        if n == 0:
            raise _core.InputError(f"{label}structure has no atoms")
        species = self._species(atoms.get_chemical_symbols(), label)
        pos = np.ascontiguousarray(atoms.positions, dtype=np.float64) / lf
        bad = ~np.isfinite(pos).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _core.InputError(f"{label}atom {i} ({atoms[i].symbol}) has a non-finite position {atoms.positions[i]}")
        pbc = [bool(p) for p in atoms.pbc]
        cell = np.ascontiguousarray(atoms.cell[:], dtype=np.float64) / lf if any(pbc) else None
        # Large structures are computed in cell-list order (atoms close in space close in
        # memory) and mapped back: the cost per atom then stays flat with N.
        sort = n >= SPATIAL_ORDER_MIN_ATOMS
        try:
            offsets, index, shift_id, shifts, _, order = _core.neighbor_list(pos, cell, pbc, self.model.cutoff,
                                                                             spatial_order=sort)
            if sort:
                pos, species = np.ascontiguousarray(pos[order]), np.ascontiguousarray(species[order])
            out = self.model.compute(pos, species, n, offsets, index, shift_id, shifts,
                                     forces=want_forces or want_stress, virial=want_stress,
                                     descriptors=want_descriptors, scaled=scaled, threads=self.threads,
                                     member_forces=self._members and want_forces)
        except _core.InputError as e:
            raise _core.InputError(f"{label}{e}") from None
        if sort:
            out = _unsort(out, order)
        res = Result(energy=out["energy"] * ef, energies=out["atom_energies"] * ef,
                     extrapolating_atoms=out["extrapolating_atoms"], extrapolations=out["extrapolations"],
                     extrapolation_records=[("", out["extrapolations"])])
        if want_forces:
            res.forces = out["forces"] * (ef / lf)
        if self._members:
            res.member_energies = out["member_energies"] * ef
            if "member_forces" in out:
                res.member_forces = out["member_forces"] * (ef / lf)
        if want_stress:
            res.virial = out["virial"] * ef
            if all(pbc):
                res.stress = voigt_stress(res.virial, atoms)
        if want_descriptors:
            d, o = out["descriptors"], out["descriptor_offsets"]
            res.descriptors = [d[o[i]:o[i + 1]] for i in range(n)]
        return res

    def _report_extrapolation(self, results, mode):
        report_extrapolation([(k, r.extrapolations, "") for k, r in enumerate(results) if r.n_extrapolating],
                             len(results), mode, stacklevel=4)

    def descriptors(self, atoms, scaled: bool = False) -> List[np.ndarray]:
        """Symmetry-function values of every atom (n2p2 order), raw or scaled."""
        return self.evaluate(atoms, forces=False, stress=False, descriptors=True, scaled_descriptors=scaled,
                             extrapolation="ignore", native=True).descriptors

    def calculator(self, length_unit: Optional[str] = None, energy_unit: Optional[str] = None, **kwargs):
        """The ASE calculator of this potential (every generation): energy, energies, forces,
        stress, and charges and dipole where the generation has them. ``length_unit`` /
        ``energy_unit`` override the potential's units; ``kwargs`` go to HDNNPCalculator
        (``total_charge``, ``extrapolation``)."""
        from .calculator import HDNNPCalculator

        pot = self.with_units(length_unit, energy_unit) if (length_unit or energy_unit) else self
        pot._factors(False)   # (the units must be known: an error now rather than at the first step)
        return HDNNPCalculator(pot, **kwargs)


class Committee(Potential):
    """Several potentials with the same elements and symmetry functions, evaluated together.

    Neighbours and symmetry functions are computed once; energies, forces and stress are the
    committee means, and each Result also carries ``member_energies``, ``member_forces`` and
    the derived ``energy_deviation``, ``force_deviation`` (per atom) and ``max_force_deviation``
    (the usual active-learning signal). Extrapolation counts a value outside any member's range.
    """

    _members = True

    def __init__(self, directories: Sequence, length_unit: Optional[str] = None,
                 energy_unit: Optional[str] = None, threads: int = 0, warn: bool = True):
        dirs = [os.fspath(d) for d in directories]
        if not dirs:
            raise ValueError("a committee needs at least one potential directory")
        super().__init__(dirs, length_unit, energy_unit, threads, warn)
        self.directories = dirs

    @staticmethod
    def _load(directories, weights):
        return _core.Committee.load(directories)

    @staticmethod
    def _declared_units(directories):
        decl = [_declared_units(d) for d in directories]
        for d, u in zip(directories[1:], decl[1:]):
            if u != decl[0]:
                raise ValueError(f"committee member {d!r} declares units {u}, but {directories[0]!r} declares "
                                 f"{decl[0]}; members must share their units")
        return decl[0]

    @property
    def size(self) -> int:
        return self.model.size

    def __repr__(self):
        return f"Committee({self.directories!r}, elements={self.elements}, cutoff={self.cutoff:g})"


def __getattr__(name):
    # hdnnp.potential.load: the name of earlier versions (hdnnp.load lives in hdnnp.loading, which
    # imports the generations with charges; resolved on first use to keep the modules acyclic)
    if name == "load":
        import importlib

        return importlib.import_module("hdnnp.loading").load
    raise AttributeError(f"module 'hdnnp.potential' has no attribute {name!r}")
