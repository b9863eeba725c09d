"""Active learning with a committee of HDNNPs and LAMMPS (the plugin's committee mode).

One iteration: train a committee (different seeds) on the labelled data, run MD in LAMMPS with
the committee mean, collect the frames whose committee force deviation is high (or whose
symmetry functions extrapolate), label them with the reference calculator (any ASE calculator:
EMT stands in for DFT in the demo), add them to the data. Every stage writes its results under
the work folder; an interrupted run continues from the last completed stage.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np


@dataclass
class ActiveLearningConfig:
    elements: Sequence[str]
    cutoff: float = 5.5                       # Angstrom (symmetry_functions "fixed")
    hidden: Sequence[int] = (15, 15)
    # "fixed": sfgen's radial + narrow angular set at `cutoff` with radial_points/angular_points;
    # "data": the settings `hdnnp fit` chooses from the labelled data (cutoff from the density,
    # functions from the shortest distances, ZBL baseline, constant functions pruned)
    symmetry_functions: str = "fixed"
    sf_kinds: Sequence[str] = ("radial", "narrow")
    radial_points: int = 6
    angular_points: int = 2
    zetas: Sequence[float] = (1.0, 4.0)
    committee: int = 3
    final_committee: int = 0                  # members of run_final's committee (0: committee)
    iterations: int = 2
    # training of each member: the Kalman filter, per-layer covariance blocks, 10 % of the force
    # components per epoch (benchmarks/RESULTS.md, "Time to accuracy"); or Adam
    optimizer: str = "kalman"
    force_fraction: float = 0.1
    kalman_decoupling: str = "layer"
    epochs: int = 150
    time_limit: Optional[float] = None        # seconds per member (None: epochs decide)
    final_time_limit: Optional[float] = None  # ... in the final committee (None: time_limit)
    patience: Optional[int] = None            # early stopping (epochs without a better validation score)
    learning_rate: float = 3e-3               # Adam
    learning_rate_decay: float = 0.99
    force_weight: float = 1.0                 # Adam loss: (E/atom)^2 + w_F F^2, eV and Angstrom
    batch_size: int = 2
    test_fraction: float = 0.15
    parallel: int = 0                         # members trained at once, one process each (0: CPU cores)
    md_temperatures: Sequence[float] = (600.0, 1000.0)
    md_steps: int = 400
    md_timestep: float = 0.002                # ps
    deviation_every: int = 20
    deviation_threshold: float = 0.05         # eV/Angstrom: frames above this are candidates
    deviation_max: float = 2.0                # ... and below this (unphysical otherwise)
    max_new_per_iteration: int = 12
    seed: int = 7
    progress: bool = True                     # progress bars while training (one member at a time)


def _log(msg):
    print(msg, flush=True)


def label_structures(structures, reference: Callable) -> List:
    """Copies of `structures` with the energies and forces of `reference()` (a fresh ASE
    calculator per structure) attached as single-point results."""
    from ase.calculators.singlepoint import SinglePointCalculator

    out = []
    for a in structures:
        b = a.copy()
        b.calc = reference()
        e, f = b.get_potential_energy(), b.get_forces()
        b.calc = SinglePointCalculator(b, energy=e, forces=f)
        out.append(b)
    return out


def member_errors(directory) -> dict:
    """A trained member's statistics at the epoch whose weights it wrote (the best on the
    validation set; training.json)."""
    info = json.loads((Path(directory) / "training.json").read_text())
    return info["best"] or info["final"]


class ActiveLearner:
    """The loop in `workdir`: data.extxyz (labelled data), iter_NN/ (committee, MD, candidates)."""

    def __init__(self, workdir, config: ActiveLearningConfig, reference: Callable, log=_log):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cfg = config
        self.reference = reference            # () -> a fresh ASE calculator
        self.log = log
        self.data_path = self.dir / "data.extxyz"
        self.summary_path = self.dir / "iterations.json"

    # -- data ------------------------------------------------------------------------------------
    def label(self, structures) -> List:
        return label_structures(structures, self.reference)

    def load_data(self) -> List:
        import ase.io

        return ase.io.read(self.data_path, ":") if self.data_path.exists() else []

    def save_data(self, structures):
        import ase.io

        tmp = self.dir / "data.extxyz.tmp"
        ase.io.write(tmp, structures, format="extxyz")
        os.replace(tmp, self.data_path)

    # -- stages -------------------------------------------------------------------------------
    def settings(self, data=None) -> Path:
        """input.nn with the generated symmetry functions (written once; `data`: the labelled
        structures, for symmetry_functions "data")."""
        from .. import _core
        from ..training.sfgen import generate, input_nn

        path = self.dir / "settings"
        if (path / "input.nn").exists():
            return path
        c = self.cfg
        if c.symmetry_functions == "data":
            from ..training.data import from_ase
            from ..training.sfgen import prune_input_nn
            from .fit import FitConfig, write_settings

            structures = from_ase(data if data is not None else self.load_data())
            tmp = self.dir / "settings.tmp"
            choice = write_settings(tmp, structures, FitConfig(hidden=tuple(c.hidden)), log=lambda *_: None)
            dropped = prune_input_nn(os.fspath(tmp), structures)
            os.replace(tmp, path)
            self.log(f"  {choice['symmetry_functions'] - len(dropped)} symmetry functions chosen from the data, "
                     f"r_c {choice['cutoff']:.2f} A, ZBL baseline")
            return path
        if c.symmetry_functions != "fixed":
            raise ValueError(f"symmetry_functions: 'fixed' or 'data', not {c.symmetry_functions!r}")
        path.mkdir(exist_ok=True)
        sfs = generate(c.elements, c.cutoff, c.sf_kinds, radial_points=c.radial_points,
                       angular_points=c.angular_points, zetas=c.zetas)
        _core.write_file_atomic(os.fspath(path / "input.nn"),
                                input_nn(c.elements, sfs, c.hidden, length_unit="Angstrom", energy_unit="eV"))
        self.log(f"  {len(sfs)} symmetry functions ({', '.join(c.sf_kinds)}), r_c {c.cutoff:g} A")
        return path

    def training_config(self, member: int, time_limit=None):
        from ..training.trainer import TrainingConfig

        c = self.cfg
        cfg = TrainingConfig(optimizer=c.optimizer, epochs=c.epochs, learning_rate=c.learning_rate,
                             learning_rate_decay=c.learning_rate_decay, force_weight=c.force_weight,
                             test_fraction=c.test_fraction, seed=c.seed + 101 * member, fit_offsets=True,
                             batch_size=c.batch_size, force_fraction=c.force_fraction, patience=c.patience,
                             time_limit=time_limit if time_limit is not None else c.time_limit)
        cfg.kalman.decoupling = c.kalman_decoupling
        return cfg

    def train_committee(self, it_dir: Path, structures, size: Optional[int] = None,
                        time_limit: Optional[float] = None) -> List[Path]:
        """Train (or find trained) `size` members (default: committee) on `structures`; members
        train in parallel processes (`parallel`), one thread each."""
        from ..training.data import from_ase
        from ..training.trainer import tag_split
        from .committee import train_members

        c = self.cfg
        data = from_ase(structures)
        # one split for every member (different seeds otherwise): the same held-out test
        # structures, and the same training structures for the baseline's radii and the offsets
        tag_split(data, self.training_config(0))
        members, todo = [], []
        for m in range(size or c.committee):
            out = it_dir / f"member{m}"
            members.append(out)
            if (out / "training.json").exists():
                continue
            run_dir = it_dir / f"settings{m}"
            shutil.copytree(self.dir / "settings", run_dir, dirs_exist_ok=True)
            todo.append((m, run_dir, out, self.training_config(m, time_limit)))
        train_members([(os.fspath(run_dir), data, cfg, os.fspath(out)) for _, run_dir, out, cfg in todo],
                      c.parallel, c.progress, done=lambda k, r: self._log_member(todo[k][0], r["best_epoch"], r["best"]))
        return members

    def _log_member(self, m: int, best: int, b: dict):
        self.log(f"  member {m}: test RMSE {b['rmse_energy_test'] * 1e3:.1f} meV/atom, "
                 f"{b['rmse_force_test']:.3f} eV/A (epoch {best})")

    def run_md(self, it_dir: Path, members: Sequence[Path], start, temperature: float, tag: str):
        """Committee MD in LAMMPS; returns (deviation log rows, candidate frames)."""
        from ase.io import write

        from .. import lammps as hl
        from ..io import read_input_data

        md = it_dir / f"md_{tag}"
        md.mkdir(exist_ok=True)
        c = self.cfg
        els = list(c.elements)
        write(md / "start.data", start, format="lammps-data", specorder=els, masses=True)
        dev_log, cand, extra = md / "deviation.log", md / "candidates.data", md / "extrapolating.data"
        for f in (dev_log, cand, extra):
            if f.exists():
                f.unlink()
        hl.preload_mpi()
        import lammps

        lmp = lammps.lammps(cmdargs=["-log", os.fspath(md / "log.lammps"), "-screen", "none", "-nocite"])
        try:
            lmp.commands_list([
                "units metal", "atom_style atomic", "atom_modify map array",
                f"read_data {md / 'start.data'}",
                *hl.pair_commands([os.fspath(m) for m in members], els,
                                  extra=f"deviation_every {c.deviation_every} deviation_log {dev_log} "
                                        f"deviation_write {cand} deviation_threshold {c.deviation_threshold} "
                                        f"deviation_max {c.deviation_max} extrapolation_every {c.deviation_every} "
                                        f"extrapolation_write {extra}"),
                "neighbor 1.0 bin",
                f"velocity all create {temperature} {c.seed} loop geom mom yes",
                f"fix 1 all langevin {temperature} {temperature} 0.1 {c.seed}", "fix 2 all nve",
                f"timestep {c.md_timestep}", "thermo 0",
                f"run {c.md_steps}"])
        finally:
            lmp.close()
        rows = np.loadtxt(dev_log, ndmin=2) if dev_log.exists() else np.zeros((0, 5))
        frames = read_input_data(cand) if cand.exists() else []
        # configurations whose symmetry functions left the training range are candidates too
        # (every extrapolating step is written; keep one per deviation interval)
        extrapolating = read_input_data(extra)[::max(c.deviation_every, 1)] if extra.exists() else []
        return rows, frames, extrapolating

    def iterate(self, it: int, md_starts: Sequence) -> dict:
        it_dir = self.dir / f"iter_{it:02d}"
        it_dir.mkdir(exist_ok=True)
        state_file = it_dir / "done.json"
        if state_file.exists():
            return json.loads(state_file.read_text())
        data = self.load_data()
        self.log(f"== iteration {it}: {len(data)} labelled structures; training a committee of {self.cfg.committee}")
        t0 = time.perf_counter()
        members = self.train_committee(it_dir, data)
        errors = [member_errors(m) for m in members]
        self.log("  committee MD in LAMMPS")
        devs, cands, n_extra = [], [], 0
        for k, (T, start) in enumerate(zip(self.cfg.md_temperatures, md_starts)):
            rows, frames, extrapolating = self.run_md(it_dir, members, start, T, f"{k}_{int(T)}K")
            devs.append(rows)
            cands += frames + extrapolating
            n_extra += len(extrapolating)
            if len(rows):
                self.log(f"  {T:.0f} K: max force deviation {rows[:, 1].mean():.3f} eV/A on average "
                         f"(max {rows[:, 1].max():.3f}), {len(frames)} high-deviation and "
                         f"{len(extrapolating)} extrapolating candidate frame(s)")
        devs = np.concatenate(devs) if devs else np.zeros((0, 5))
        # label the candidates with the highest deviation, at most max_new_per_iteration
        rng = np.random.default_rng(self.cfg.seed + it)
        chosen = [cands[i] for i in sorted(rng.permutation(len(cands))[:self.cfg.max_new_per_iteration])]
        new = self.label([self._to_ase(a) for a in chosen])
        self.save_data(data + new)
        summary = {
            "iteration": it, "structures": len(data), "new_structures": len(new),
            "extrapolating_candidates": n_extra,
            "mean_max_force_deviation": float(devs[:, 1].mean()) if len(devs) else None,
            "max_force_deviation": float(devs[:, 1].max()) if len(devs) else None,
            "test_rmse_energy_per_atom": float(np.mean([e["rmse_energy_test"] for e in errors])),
            "test_rmse_force": float(np.mean([e["rmse_force_test"] for e in errors])),
            "members": [os.fspath(m) for m in members], "seconds": time.perf_counter() - t0,
        }
        self.log(f"  labelled {len(new)} new structure(s); committee test RMSE "
                 f"{summary['test_rmse_energy_per_atom'] * 1e3:.1f} meV/atom, {summary['test_rmse_force']:.3f} eV/A")
        from .. import _core

        _core.write_file_atomic(os.fspath(state_file), json.dumps(summary, indent=1) + "\n")
        return summary

    def _to_ase(self, atoms):
        """A candidate frame (LAMMPS box, wrapped positions) as a periodic ASE structure."""
        a = atoms.copy()
        a.pbc = True
        for key in list(a.arrays):
            if key not in ("numbers", "positions"):
                del a.arrays[key]
        a.info = {}
        return a

    def run(self, initial: Sequence, md_starts: Sequence) -> List[dict]:
        if not self.data_path.exists():
            self.log(f"== labelling {len(initial)} initial structures with the reference method")
            self.save_data(self.label(initial))
        self.settings()
        summaries = [self.iterate(it, md_starts) for it in range(self.cfg.iterations)]
        from .. import _core

        _core.write_file_atomic(os.fspath(self.summary_path), json.dumps(summaries, indent=1) + "\n")
        return summaries
