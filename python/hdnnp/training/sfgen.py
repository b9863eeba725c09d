"""Symmetry-function set generation and pruning.

Radial parameter grids follow the published rules used by n2p2's sfparamgen (Gastegger et al.,
J. Chem. Phys. 148, 241709 (2018)): n grid points r_i = r_lower + i (r_cutoff - r_lower)/(n - 1),
- "shift":  r_s = r_i with a common width eta = 1 / (2 (r_{i+1} - r_i)^2) (Gaussians tiling the
            cutoff sphere);
- "center": r_s = 0 and eta_i = 1 / (2 r_i^2) (Gaussians of growing width centred on the atom;
            needs r_lower > 0).
Angular functions reuse the radial (eta, r_s) set (angular_points of them) with zeta from
`zetas` and lambda = +-1. Kinds:
  radial    type 2 per (centre, neighbour) element pair
  narrow    type 3 per centre and unordered neighbour pair (with r_jk)
  wide      type 9 (no r_jk terms)
  weighted  types 12 and 13 (element-weighted, one set per centre element)
  polynomial types 20 (compact p2 radial windows on the grid) and 21 (angular windows)
  ani       type 90 (ANI angular, theta_s on an even grid)
Lengths in the potential's units.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np


def radial_parameters(r_cutoff: float, n: int, mode: str = "shift", r_lower: Optional[float] = None
                      ) -> List[Tuple[float, float]]:
    """(eta, r_s) pairs of the grid rule above."""
    if n < 1:
        raise ValueError("need at least one grid point")
    if mode == "shift":
        lo = 0.0 if r_lower is None else r_lower
        grid = np.linspace(lo, r_cutoff, n + 1)[:-1] if n > 1 else np.array([lo])
        step = (r_cutoff - lo) / n
        eta = 1.0 / (2.0 * step * step)
        return [(eta, float(r)) for r in grid]
    if mode == "center":
        lo = 1.5 if r_lower is None else r_lower
        if not 0 < lo < r_cutoff:
            raise ValueError("center mode needs 0 < r_lower < r_cutoff")
        grid = np.linspace(lo, r_cutoff, n)
        return [(1.0 / (2.0 * r * r), 0.0) for r in grid]
    raise ValueError(f"unknown mode {mode!r} (shift, center)")


def generate(elements: Sequence[str], r_cutoff: float, kinds: Iterable[str] = ("radial", "narrow"),
             radial_points: int = 8, angular_points: int = 3, zetas: Sequence[float] = (1.0, 4.0),
             mode: str = "shift", r_lower: Optional[float] = None) -> List[str]:
    """`symfunction_short` argument strings (without the keyword) for all centre elements."""
    els = list(elements)
    rad = radial_parameters(r_cutoff, radial_points, mode, r_lower)
    # angular radial parts: a subset spread over the grid (wide Gaussians first)
    idx = np.unique(np.linspace(0, len(rad) - 1, max(1, min(angular_points, len(rad)))).round().astype(int))
    ang = [rad[i] for i in idx]
    if mode == "shift":  # angular functions need radial parts that reach across the sphere
        ang = [(eta / 4.0, rs) for eta, rs in ang]
    pairs = [(a, b) for i, a in enumerate(els) for b in els[i:]]
    out: List[str] = []
    for kind in kinds:
        for c in els:
            if kind == "radial":
                out += [f"{c} 2 {n} {eta:.6g} {rs:.6g} {r_cutoff:.6g}" for n in els for eta, rs in rad]
            elif kind in ("narrow", "wide"):
                t = 3 if kind == "narrow" else 9
                out += [f"{c} {t} {a} {b} {eta:.6g} {lam:g} {z:g} {r_cutoff:.6g} {rs:.6g}"
                        for a, b in pairs for eta, rs in ang for z in zetas for lam in (1, -1)]
            elif kind == "weighted":
                out += [f"{c} 12 {eta:.6g} {rs:.6g} {r_cutoff:.6g}" for eta, rs in rad]
                out += [f"{c} 13 {eta:.6g} {rs:.6g} {lam:g} {z:g} {r_cutoff:.6g}"
                        for eta, rs in ang for z in zetas for lam in (1, -1)]
            elif kind == "polynomial":
                edges = np.linspace(0.0, r_cutoff, radial_points + 1)
                out += [f"{c} 20 {n} {lo - (hi - lo):.6g} {hi:.6g} p2" for n in els
                        for lo, hi in zip(edges[:-1], edges[1:])]
                windows = np.linspace(0.0, 180.0, 5)
                out += [f"{c} 21 {a} {b} {-r_cutoff:.6g} {r_cutoff:.6g} {lo:g} {hi:g} p2"
                        for a, b in pairs for lo, hi in zip(windows[:-1], windows[1:])]
            elif kind == "ani":
                thetas = np.linspace(0.0, 180.0, 4, endpoint=False) + 22.5
                out += [f"{c} 90 {a} {b} {eta:.6g} {rs:.6g} 8 {th:g} {r_cutoff:.6g}"
                        for a, b in pairs for eta, rs in ang for th in thetas]
            else:
                raise ValueError(f"unknown kind {kind!r} (radial narrow wide weighted polynomial ani)")
    return out


def input_nn(elements: Sequence[str], symfunctions: Sequence[str], hidden: Sequence[int] = (25, 25),
             activation: str = "t", cutoff_type: int = 6, length_unit: Optional[str] = None,
             energy_unit: Optional[str] = None, atom_energies: Optional[Dict[str, float]] = None,
             extra: str = "") -> str:
    """A complete input.nn for a 2G potential (scaling: scale + center to [-1, 1])."""
    lines = []
    if length_unit or energy_unit:
        lines.append(f"# hdnnp: length_unit={length_unit} energy_unit={energy_unit}")
    lines += [f"number_of_elements {len(elements)}", "elements " + " ".join(elements),
              f"cutoff_type {cutoff_type} 0.0", "scale_symmetry_functions", "center_symmetry_functions",
              "scale_min_short -1.0", "scale_max_short 1.0",
              f"global_hidden_layers_short {len(hidden)}", "global_nodes_short " + " ".join(map(str, hidden)),
              "global_activation_short " + " ".join([activation] * len(hidden) + ["l"])]
    for e, x in (atom_energies or {}).items():
        lines.append(f"atom_energy {e} {x:.16e}")
    if extra:
        lines.append(extra.rstrip("\n"))
    lines += [f"symfunction_short {s}" for s in symfunctions]
    return "\n".join(lines) + "\n"


def prune_input_nn(settings_dir: str, structures: Sequence, rel_range: float = 1e-4, abs_range: float = 1e-8
                   ) -> List[str]:
    """Remove from settings_dir/input.nn the symmetry functions whose range over `structures`
    is below abs_range or rel_range times their magnitude (never firing or constant: no
    information, and a zero range upsets the scaling). Rewrites input.nn atomically (and
    removes a stale scaling.data); returns the dropped lines."""
    import os

    from .. import _core
    from .data import prepare
    from .trainer import scaling_statistics

    settings_dir = os.fspath(settings_dir)
    model = _core.Model.load(settings_dir, False)
    preps = [prepare(model, a, f"structure {k}", jacobian=False) for k, a in enumerate(structures)]
    stats = scaling_statistics(preps, len(model.elements))
    drop_lines = set()
    dropped = []
    for e, st in enumerate(stats):
        for k, (line_no, text) in enumerate(model.symmetry_functions(e)):
            lo, hi = float(st["min"][k]), float(st["max"][k])
            if hi - lo <= max(abs_range, rel_range * max(abs(lo), abs(hi))):
                drop_lines.add(line_no)
                dropped.append(text)
    if dropped:
        path = os.path.join(settings_dir, "input.nn")
        with open(path) as fh:
            lines = fh.read().splitlines()
        kept = [l for no, l in enumerate(lines, 1) if no not in drop_lines]
        _core.write_file_atomic(path, "\n".join(kept) + "\n")
        stale = os.path.join(settings_dir, "scaling.data")
        if os.path.exists(stale):
            os.remove(stale)
    return dropped
