"""What the generations with charges share (3G, 4G, CENT): the electrostatics keywords of
input.nn (screening, 4 pi eps0, Ewald truncation), the Ewald parameters of a structure, the
core's electrostatics operator, descriptor models loaded from a keyword-filtered input.nn, the
element networks of weight files, and the ASE calculator.

Units are the potential's own throughout (`evaluate`); the calculator converts to eV and
Angstrom.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Dict, Optional, Sequence

import numpy as np

from ase.calculators.calculator import Calculator, all_changes

from . import _core
from .electrostatics import EwaldParameters, accuracy_parameters, n2p2_parameters, pme_parameters
from .keywords import read_keyword_lines
from .network import ElementNetwork
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


class LongRangePotential:
    """Base of ThirdGeneration, FourthGeneration and Cent: parses input.nn's electrostatics
    keywords. `ewald`: "n2p2" (n2p2's parameters from ewald_truncation_error_method/ewald_prec)
    or an absolute energy tolerance (float) for the accuracy-controlled mode. `reciprocal`: in
    the accuracy mode with matrix-free products, "auto"/"mesh" uses smooth particle-mesh Ewald,
    "ewald" structure factors."""

    #: nnp_generation values this class loads
    GENERATIONS: Sequence[str] = ()
    NAME = ""

    def __init__(self, directory, ewald="n2p2", solver: str = "auto", tolerance: float = 1e-10,
                 dense_max_atoms: int = 3000, threads: int = 0, length_unit: Optional[str] = None,
                 energy_unit: Optional[str] = None, reciprocal: str = "auto", background: bool = False):
        directory = os.fspath(directory)
        self.directory = directory
        self.length_unit, self.energy_unit = length_unit, energy_unit  # (for calculator())
        self.path = path = os.path.join(directory, "input.nn")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file")
        self.keyword_lines = read_keyword_lines(path)
        self.kw = kw = {k: [args for _, args in v] for k, v in self.keyword_lines.items()}
        gen = (kw.get("nnp_generation") or kw.get("nnp_type") or [["2"]])[0][0]
        if gen.lower() not in self.GENERATIONS:
            raise ValueError(f"{path}: not a {self.NAME} potential (nnp_generation {gen})")
        screen = kw.get("screen_electrostatics")
        if screen and len(screen[0]) < 2:
            raise ValueError(f"{path}: screen_electrostatics needs r_in and r_out")
        self.r_in, self.r_out = (float(screen[0][0]), float(screen[0][1])) if screen else (-2.0, -1.0)
        self.screen_core = screen[0][2] if screen and len(screen[0]) > 2 else "c"
        if self.screen_core not in ("c", "p1", "p2", "p3", "p4", "e"):
            raise ValueError(f"{path}: screen_electrostatics: unknown core function {self.screen_core!r}")
        self.ewald_method = int(kw.get("ewald_truncation_error_method", [["0"]])[0][0])
        self.ewald_prec = [float(x) for x in kw.get("ewald_prec", [["1e-6"]])[0]]
        if solver not in ("auto", "dense", "cg"):
            raise ValueError(f"solver must be 'auto', 'dense' or 'cg', not {solver!r}")
        if reciprocal not in ("auto", "mesh", "ewald"):
            raise ValueError(f"reciprocal must be 'auto', 'mesh' or 'ewald', not {reciprocal!r}")
        self.ewald, self.solver, self.tolerance, self.reciprocal = ewald, solver, tolerance, reciprocal
        # a periodic cell with a nonzero total charge: neutralised by a uniform background only
        # when asked for (evaluate refuses it otherwise)
        self.background = bool(background)
        self.dense_max_atoms, self.threads = dense_max_atoms, threads
        self.four_pi_eps = self._four_pi_epsilon()
        self.sigma = np.zeros(0)  # Gaussian width per element (0: point charges)

    def _four_pi_epsilon(self) -> float:
        """4 pi eps0 in the potential's units, e^2 / (energy unit x length unit). Derived from the
        units input.nn declares ('# hdnnp: length_unit=... energy_unit=...'; Bohr and Ha give 1);
        a four_pi_epsilon line that contradicts them (by more than 1e-4 relative) is an error.
        Without declared units: the four_pi_epsilon line, else 1 (atomic units, n2p2's default)."""
        from .keywords import declared_units as _declared_units
        from .units import energy_factor, length_factor

        lu, eu = _declared_units(self.directory)
        given = self.keyword_lines.get("four_pi_epsilon")
        value = None
        if given:
            no, args = given[0]
            try:
                value = float(args[0])
            except (IndexError, ValueError):
                raise ValueError(f"{self.path}:{no}: four_pi_epsilon needs a number") from None
            if not value > 0:
                raise ValueError(f"{self.path}:{no}: four_pi_epsilon must be positive, not {args[0]}")
        if not (lu and eu):
            return 1.0 if value is None else value
        # e^2/(4 pi eps0) = 14.3996... eV A  ->  4 pi eps0 = (eV per unit)(A per unit) / 14.3996...
        derived = energy_factor(eu) * length_factor(lu) / (energy_factor("Ha") * length_factor("Bohr"))
        if value is not None and abs(value - derived) > 1e-4 * derived:
            raise ValueError(f"{self.path}:{given[0][0]}: four_pi_epsilon {value:g} contradicts the declared units "
                             f"({lu}, {eu}), in which 4 pi eps0 = {derived:.10g} e^2/({eu} {lu}); remove the line "
                             f"(it is derived from the units) or correct it")
        return derived

    # -- loading ---------------------------------------------------------------------------------
    def _load_model(self, drop: Sequence[str] = (), rename: Optional[Dict[str, str]] = None,
                    files: Optional[Dict[str, str]] = None, weights: bool = False,
                    texts: Optional[Dict[str, tuple]] = None):
        """The core Model of input.nn with the keywords in `drop` commented out and those in
        `rename` renamed (line numbers stay true), and `files` (name in the model directory ->
        file of this potential) or `texts` (name -> (contents, the file they come from)) next to
        it. Errors name this potential's files."""
        rename = rename or {}
        with open(self.path) as fh:
            lines = []
            for line in fh.read().splitlines():
                key = line.split()[:1]
                key = key[0] if key and not key[0].startswith(("#", "!")) else None
                if key in drop:
                    line = "#" + line
                elif key in rename:
                    line = line.replace(key, rename[key], 1)
                lines.append(line)
        with tempfile.TemporaryDirectory(prefix="hdnnp-") as tmp:
            with open(os.path.join(tmp, "input.nn"), "w") as fh:
                fh.write("\n".join(lines) + "\n")
            names = {}
            for name, src in (files or {}).items():
                path = os.path.join(self.directory, src)
                if os.path.exists(path):
                    shutil.copy(path, os.path.join(tmp, name))
                    names[os.path.join(tmp, name)] = path
            for name, (text, src) in (texts or {}).items():
                with open(os.path.join(tmp, name), "w") as fh:
                    fh.write(text)
                names[os.path.join(tmp, name)] = os.path.join(self.directory, src)
            names[os.path.join(tmp, "input.nn")] = self.path
            try:
                return _core.Model.load(tmp, weights)
            except Exception as exc:  # name this potential's files, not the temporary copies
                msg = str(exc)
                for t, p in names.items():
                    msg = msg.replace(t, p)
                msg = msg.replace(tmp, self.directory)
                raise type(exc)(msg) from None

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

    def _baseline(self, atoms, species, forces: bool, virial: bool, nl=None):
        """The ZBL pair baseline (hdnnp_zbl) of a structure, as the core's result dict, or None
        when the potential has none. `nl`: a neighbour list at hand (longer than r_outer), else
        one to r_outer is built."""
        from .baseline import compute

        b = self.model.baseline
        return None if b is None else compute(b, atoms, species, forces or virial, virial, nl)

    @staticmethod
    def _add_baseline(res, base, forces: bool, stress: bool, cell=None):
        """Add the baseline's energy (also reported as res["baseline_energy"]), forces and
        virial/stress to a result."""
        if base is None:
            return
        if "baseline_energy" not in res:
            res["baseline_energy"] = base["energy"]
            res["energy"] += base["energy"]
        if forces and "forces" in res:
            res["forces"] = res["forces"] + base["forces"]
        if stress and "virial" in res:
            res["virial"] = res["virial"] + base["virial"]
            if cell is not None:
                res["stress"] = -res["virial"] / abs(np.linalg.det(cell))

    def _check_baseline(self, weights: bool):
        if weights and self.model.baseline is None and self.model.baseline_auto:
            raise ValueError(f"{self.path}: 'hdnnp_zbl auto' leaves the baseline's radii to training; a potential "
                             f"to predict with needs them written out ('hdnnp_zbl <element> <element> <r_inner> "
                             f"<r_outer>', as hdnnp train writes them)")

    @staticmethod
    def _report(res, op, params, Q, pos):
        if params is not None:
            res["ewald"] = params.as_dict()
            res["ewald"]["n_kvectors"] = op.n_kvectors
            res["ewald"]["mesh_points"] = op.mesh_points
        else:
            res["dipole"] = Q @ pos

    # -- ASE ---------------------------------------------------------------------------------------
    def calculator(self, length_unit: Optional[str] = None, energy_unit: Optional[str] = None,
                   total_charge: Optional[float] = None):
        """ASE calculator (eV, Angstrom): energy, forces, stress (periodic), charges and, for
        molecules, the dipole (e Angstrom). The potential's units come from the arguments or a
        '# hdnnp: length_unit=... energy_unit=...' line in input.nn (n2p2's examples: Bohr, Ha)."""
        from .keywords import declared_units as _declared_units

        decl_l, decl_e = _declared_units(self.directory)
        lu, eu = length_unit or self.length_unit or decl_l, energy_unit or self.energy_unit or decl_e
        if not lu or not eu:
            raise ValueError("the units of this potential are not known: pass length_unit= and energy_unit= "
                             "(e.g. 'Bohr', 'Ha' for n2p2's examples) or declare them in input.nn with a line "
                             "'# hdnnp: length_unit=Bohr energy_unit=Ha'")
        return ChargeCalculator(self, length_factor(lu), energy_factor(eu), total_charge)


class ChargeCalculator(Calculator):
    """ASE calculator of a potential with charges (3G, 4G, CENT)."""
    implemented_properties = ["energy", "free_energy", "forces", "stress", "charges", "dipole"]

    def __init__(self, potential: LongRangePotential, angstrom_per_unit: float, ev_per_unit: float,
                 total_charge: Optional[float] = None, **kwargs):
        super().__init__(**kwargs)
        self.potential, self.lf, self.ef, self.total_charge = potential, angstrom_per_unit, ev_per_unit, total_charge

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        Calculator.calculate(self, atoms, properties, system_changes)
        a = self.atoms.copy()
        a.positions = self.atoms.positions / self.lf
        if self.atoms.pbc.any():
            a.set_cell(np.asarray(self.atoms.cell) / self.lf, scale_atoms=False)
        q = self.total_charge
        if q is None:
            q = float(self.atoms.info.get("charge", 0.0))
        r = self.potential.evaluate(a, total_charge=q, forces=True, stress=bool(a.pbc.all()))
        self.results["energy"] = self.results["free_energy"] = r["energy"] * self.ef
        self.results["forces"] = r["forces"] * self.ef / self.lf
        self.results["charges"] = r["charges"].copy()
        if "stress" in r:
            s = r["stress"] * self.ef / self.lf ** 3
            self.results["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
        if "dipole" in r:
            self.results["dipole"] = r["dipole"] * self.lf
