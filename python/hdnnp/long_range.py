"""What the generations with charges share (3G, 4G, CENT): the electrostatics keywords of
input.nn (read by the core), the Ewald parameters of a structure, the core's electrostatics
operator, the element networks of weight files (for training), and the one evaluate() of every
generation (hdnnp.Potential: a Result in eV and Angstrom, or the potential's units).

`compute` gives the native-unit dictionary with the solver's details.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from . import _core
from .electrostatics import EwaldParameters, accuracy_parameters, n2p2_parameters, pme_parameters
from .keywords import read_settings
from .network import ElementNetwork
from .potential import Potential, Result, voigt_stress
from .units import energy_factor, length_factor


def _column(path: str) -> np.ndarray:
    """The first number of every non-comment line (weight and hardness files)."""
    rows = []
    with open(path) as fh:
        for no, line in enumerate(fh, 1):
            tok = line.split("#", 1)[0].split()
            if tok:
                try:
                    rows.append(float(tok[0]))
                except ValueError:
                    raise ValueError(f"{path}:{no}: not a number: {tok[0]!r}") from None
    return np.array(rows)


def load_weights(net: ElementNetwork, path: str, what: str = "network weights", error=ValueError):
    """Set `net`'s parameters from a weight file (n2p2/RuNNer order), checking that it exists and
    fits the declared architecture (`error` is raised otherwise)."""
    if not os.path.exists(path):
        raise error(f"{path}: no such file ({what})")
    p = _column(path)
    if len(p) != net.n_parameters:
        raise error(f"{path}: expected {net.n_parameters} weights for the declared architecture "
                    f"{'-'.join(map(str, net.sizes))}, found {len(p)}")
    net.set_parameters(p)


class LongRangePotential(Potential):
    """Base of ThirdGeneration, FourthGeneration and Cent (hdnnp.Potential: evaluate() gives a
    Result). `ewald`: "n2p2" (n2p2's parameters from ewald_truncation_error_method/ewald_prec)
    or an absolute energy tolerance (float) for the accuracy-controlled mode. `reciprocal`: in
    the accuracy mode with matrix-free products, "auto"/"mesh" uses smooth particle-mesh Ewald,
    "ewald" structure factors. `background`: a charged periodic cell is neutralised by a uniform
    background (else an error)."""

    #: nnp_generation values this class loads
    GENERATIONS: Sequence[str] = ()
    NAME = ""

    def __init__(self, directory, ewald="n2p2", solver: str = "auto", tolerance: float = 1e-10,
                 dense_max_atoms: int = 3000, threads: int = 0, length_unit: Optional[str] = None,
                 energy_unit: Optional[str] = None, reciprocal: str = "auto", background: bool = False):
        directory = os.fspath(directory)
        self.directory = directory
        self.path = path = os.path.join(directory, "input.nn")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file")
        self.keyword_lines, declared, _ = read_settings(path)
        self.kw = kw = {k: [args for _, args in v] for k, v in self.keyword_lines.items()}
        gen = (kw.get("nnp_type") or [["2"]])[0][0]
        if gen.lower() not in self.GENERATIONS:
            raise ValueError(f"{path}: not a {self.NAME} potential (nnp_generation {gen})")
        self.length_unit = length_unit or declared.get("length_unit")
        self.energy_unit = energy_unit or declared.get("energy_unit")
        self._lf = length_factor(self.length_unit) if self.length_unit else None
        self._ef = energy_factor(self.energy_unit) if self.energy_unit else None
        es = _core.electrostatics_settings(path)
        self.r_in, self.r_out, self.screen_core = es["r_in"], es["r_out"], es["screen_core"]
        self.ewald_method, self.ewald_prec = es["ewald_method"], list(es["ewald_prec"])
        #: 4 pi eps0 in the potential's units (from the declared units; 1 in atomic units)
        self.four_pi_eps = es["four_pi_epsilon"]
        if solver not in ("auto", "dense", "cg"):
            raise ValueError(f"solver must be 'auto', 'dense' or 'cg', not {solver!r}")
        if reciprocal not in ("auto", "mesh", "ewald"):
            raise ValueError(f"reciprocal must be 'auto', 'mesh' or 'ewald', not {reciprocal!r}")
        if isinstance(ewald, str) and ewald != "n2p2":
            raise ValueError(f"ewald must be 'n2p2' or an energy tolerance, not {ewald!r}")
        self.ewald, self.solver, self.tolerance, self.reciprocal = ewald, solver, tolerance, reciprocal
        self.background = bool(background)
        self.dense_max_atoms, self.threads = dense_max_atoms, threads
        self.sigma = np.zeros(0)  # Gaussian width per element (0: point charges)

    @property
    def cutoff(self) -> float:
        return self.model.cutoff

    @property
    def elements(self):
        return self._elements

    @elements.setter
    def elements(self, symbols):
        self._elements = list(symbols)

    def __repr__(self):
        return (f"{type(self).__name__}({self.directory!r}, elements={self.elements}, "
                f"units {self.length_unit or '(native)'}/{self.energy_unit or '(native)'})")

    # -- loading ---------------------------------------------------------------------------------
    def _architecture(self, kind: str):
        for key in (f"global_hidden_layers_{kind}", f"global_nodes_{kind}", f"global_activation_{kind}"):
            if key not in self.kw:
                raise ValueError(f"{self.path}: {key} is missing")
        n = int(self.kw[f"global_hidden_layers_{kind}"][0][0])
        nodes = [int(x) for x in self.kw[f"global_nodes_{kind}"][0][:n]]
        acts = "".join(self.kw[f"global_activation_{kind}"][0][:n + 1])
        if len(nodes) != n or len(acts) != n + 1:
            raise ValueError(f"{self.path}: global_nodes_{kind}/global_activation_{kind} do not match "
                             f"global_hidden_layers_{kind} {n}")
        return nodes, acts

    def _network(self, kind: str, n_in: int, fname: Optional[str]) -> ElementNetwork:
        """An element network of the `kind` architecture (short, electrostatic) with n_in inputs,
        its weights from `fname` (n2p2/RuNNer order) unless None."""
        nodes, acts = self._architecture(kind)
        net = ElementNetwork([n_in, *nodes, 1], acts)
        if fname is None:
            return net
        path = os.path.join(self.directory, fname)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file (the {kind} network weights)")
        load_weights(net, path)
        return net

    def _gaussian_widths(self):
        sigma = np.zeros(len(self.elements))
        for el, s in (a[:2] for a in self.kw.get("fixed_gausswidth", [])):
            if el not in self.elements:
                raise ValueError(f"{self.path}: fixed_gausswidth for {el}, which is not an element of this potential")
            sigma[self.elements.index(el)] = float(s)
        if np.any(sigma <= 0):
            raise ValueError(f"{self.path}: fixed_gausswidth must be given for every element")
        return sigma

    @staticmethod
    def scaling_of(model):
        """(offset, factor) per element: the scaling of `model`'s symmetry functions."""
        from .scaling import scaling_transform

        stats = [{k: np.asarray(model.scaling(e)[k]) for k in ("min", "max", "mean", "sigma")}
                 for e in range(len(model.elements))]
        return scaling_transform(stats, model.scaling_mode, model.scale_min, model.scale_max)

    # -- structures ------------------------------------------------------------------------------
    def _species(self, atoms):
        index = {s: i for i, s in enumerate(self.elements)}
        out = np.empty(len(atoms), dtype=np.int32)
        for a, s in enumerate(atoms.get_chemical_symbols()):
            if s not in index:
                raise ValueError(f"atom {a}: element {s} is not in this potential ({', '.join(self.elements)})")
            out[a] = index[s]
        return out

    def _periodic(self, atoms) -> bool:
        pbc = np.asarray(atoms.pbc, dtype=bool)
        if pbc.any() and not pbc.all():
            raise ValueError(f"{self.NAME} structures must be periodic in all three directions or in none "
                             f"(pbc = {pbc.tolist()})")
        if len(atoms) == 0:
            raise ValueError("the structure has no atoms")
        return bool(pbc.all())

    # -- electrostatics --------------------------------------------------------------------------
    def ewald_parameters(self, atoms, solver: str = "dense") -> EwaldParameters:
        """The Ewald parameters used for a periodic structure (reported with every result). In the
        accuracy mode they are balanced for the solver: dense matrices or matrix-free products."""
        volume = abs(np.linalg.det(np.asarray(atoms.cell, dtype=float)))
        max_sigma = float(self.sigma.max()) if len(self.sigma) else 0.0
        if isinstance(self.ewald, str):
            if self.ewald != "n2p2":
                raise ValueError(f"ewald must be 'n2p2' or an energy tolerance, not {self.ewald!r}")
            return n2p2_parameters(self.ewald_method, self.ewald_prec, volume, len(atoms), self.four_pi_eps,
                                   max_sigma)
        if solver == "cg" and self.reciprocal in ("auto", "mesh"):
            return pme_parameters(float(self.ewald), atoms.cell, len(atoms), q_max=1.0, four_pi_eps=self.four_pi_eps,
                                  max_sigma=max_sigma)
        return accuracy_parameters(float(self.ewald), volume, len(atoms), q_max=1.0, four_pi_eps=self.four_pi_eps,
                                   max_sigma=max_sigma, per_particle=solver == "cg")

    def electrostatics(self, atoms, species, solver: str = "dense"):
        """(the structure's `_core.Electrostatics` operator, its EwaldParameters or None)."""
        periodic = bool(np.all(atoms.pbc))
        params = self.ewald_parameters(atoms, solver) if periodic else None
        cell = np.ascontiguousarray(np.asarray(atoms.cell, dtype=float)) if periodic else None
        op = _core.Electrostatics(np.ascontiguousarray(atoms.positions, dtype=float), cell, self.sigma[species],
                                  self.four_pi_eps,
                                  *((params.eta, params.r_cut, params.k_cut) if params else (0.0, 0.0, 0.0)),
                                  self.r_in, self.r_out, self.screen_core, self.threads,
                                  mesh=params.mesh if params else (0, 0, 0),
                                  mesh_order=params.mesh_order if params else 6)
        return op, params

    def check_charged_cell(self, periodic: bool, q_tot: float):
        """A charged periodic cell needs the background option (an error naming it otherwise)."""
        if periodic and q_tot != 0.0 and not self.background:
            raise ValueError(f"the periodic cell carries a total charge of {q_tot:g} e: {self.NAME} potential "
                             f"{self.path} neutralises a charged cell with a uniform background only when asked for "
                             f"(background=True; its energy -pi eta^2 Q^2 / (V 4 pi eps0) is then included)")

    def background_energy(self, atoms, q_tot: float, params) -> float:
        """Energy of the uniform background that neutralises a charged periodic cell,
        -pi eta^2 Q_tot^2 / (V 4 pi eps0) (its virial is this energy times the unit matrix)."""
        if params is None or not q_tot:
            return 0.0
        volume = abs(np.linalg.det(np.asarray(atoms.cell, dtype=float)))
        return -np.pi * params.eta ** 2 * q_tot ** 2 / (volume * self.four_pi_eps)

    # -- evaluation (one Result type for every generation) -----------------------------------------
    def compute(self, atoms, total_charge: Optional[float] = None, forces: bool = False, stress: bool = False,
                solver: Optional[str] = None, extrapolation: str = "warn", warm_start=None) -> dict:
        """The native-unit result dict (see FourthGeneration.compute)."""
        raise NotImplementedError

    def _evaluate_one(self, atoms, k, want_forces, want_stress, want_descriptors, scaled, native, total_charge=None,
                      extrapolation="warn", **options):
        if want_descriptors:
            raise ValueError(f"descriptors=True: {self.NAME} potentials give their symmetry functions through "
                             f"hdnnp.Potential of their descriptor model (Potential.descriptors of a 2G potential)")
        lf, ef = self._factors(native)
        label = f"structure {k}: " if k else ""
        a = atoms
        if not native:
            a = atoms.copy()
            a.calc = None
            a.positions = atoms.positions / lf
            if atoms.cell.rank:
                a.set_cell(atoms.cell[:] / lf, scale_atoms=False)
        periodic = bool(np.all(atoms.pbc))
        if total_charge is None:
            total_charge = float(atoms.info.get("charge", 0.0))
        try:
            r = self.compute(a, total_charge, forces=want_forces or want_stress, stress=want_stress,
                             extrapolation=extrapolation, **options)
        except (ValueError, _core.Error) as e:
            if not label:
                raise
            raise type(e)(f"{label}{e}") from None
        res = Result(energy=r["energy"] * ef, energies=r["atom_energies"] * ef,
                     extrapolating_atoms=r["extrapolating_atoms"],
                     extrapolations=r["extrapolation_records"][0][1],
                     extrapolation_records=r["extrapolation_records"],
                     charges=r["charges"], electrostatic_energy=r["electrostatic_energy"] * ef,
                     total_charge=float(r.get("total_charge", np.sum(r["charges"]))), details=r)
        if "dipole" in r:
            res.dipole = r["dipole"] * lf
        if want_forces:
            res.forces = r["forces"] * (ef / lf)
        if want_stress:
            res.virial = r["virial"] * ef
            if periodic:
                res.stress = voigt_stress(res.virial, atoms)
        return res

    def _report_extrapolation(self, results, mode):
        pass   # (compute reports each structure's)

    @staticmethod
    def _native_result(r: dict, periodic: bool, pos, stress: bool, cell) -> dict:
        """The core's result dict as compute() returns it (stress of a periodic cell added)."""
        if stress and periodic and "virial" in r:
            r["stress"] = -r["virial"] / abs(np.linalg.det(cell))
        if not stress:
            r.pop("virial", None)
        r["extrapolation_records"] = [("", r["extrapolations"])]
        return r

    def _ewald_dict(self, atoms, solver: str, periodic: bool):
        """(the EwaldParameters of a periodic structure or None, the dict the core takes)."""
        if not periodic:
            return None, None
        params = self.ewald_parameters(atoms, solver)
        return params, {**params.as_dict(), "mesh": params.mesh, "mesh_order": params.mesh_order}


# (the calculator of every generation; the name is kept for code written against 3G/4G/CENT)
from .calculator import HDNNPCalculator as ChargeCalculator  # noqa: E402,F401
