"""Does the ZBL pair baseline keep MD alive at close contacts? The same Cu-Au data (EMT labels,
near-equilibrium sampling as in `hdnnp demo`), the same symmetry functions, architecture and
optimiser, trained once without and once with ``hdnnp_zbl auto``; then

 * test errors of both (a held-out test set; no choice is made on it),
 * dimers pushed from 2 A to 0.5 A (the energy must rise monotonically),
 * hot MD in LAMMPS (Langevin at `temperature`, `ps` picoseconds): the run "collapses" when two
   atoms come closer than `collapse_distance` or LAMMPS stops (lost atoms, non-finite energy).

`python examples/zbl_hot_md.py` runs it and writes the numbers; the test suite runs a small
version.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Dict, Sequence

import numpy as np


def cu_au_data(seed: int = 2024, n_md: int = 4, size: int = 2):
    """Near-equilibrium Cu-Au structures labelled with EMT, in eV and Angstrom (hdnnp's training
    convention: info['energy'], arrays['ref_forces'])."""
    from ase.calculators.emt import EMT

    from ..training.data import from_ase
    from .demo import sample_cu_au

    rng = np.random.default_rng(seed)
    structures = sample_cu_au(rng, n_md=n_md, size=size, md_reference=EMT)
    for a in structures:
        a.calc = EMT()
        a.get_potential_energy()
        a.get_forces()
    return from_ase(structures)


def train(out_dir, data: Sequence, baseline: bool, epochs: int = 60, hidden=(15, 15), cutoff: float = 5.5,
          seed: int = 7, threads: int = 0, log=print) -> Dict:
    """Train one 2G potential on `data` (test structures: info['set'] == 'test'); returns its
    directory and best-epoch errors."""
    from .. import _core
    from ..training.sfgen import generate, input_nn
    from ..training.trainer import Trainer, TrainingConfig

    out = Path(out_dir)
    settings = out / "settings"
    settings.mkdir(parents=True, exist_ok=True)
    sfs = generate(["Cu", "Au"], cutoff, ("radial", "narrow"), radial_points=6, angular_points=2)
    _core.write_file_atomic(os.fspath(settings / "input.nn"),
                            input_nn(["Cu", "Au"], sfs, hidden, length_unit="Angstrom", energy_unit="eV",
                                     extra="hdnnp_zbl auto" if baseline else ""))
    cfg = TrainingConfig(optimizer="adam", epochs=epochs, learning_rate=3e-3, learning_rate_decay=0.99,
                         batch_size=2, fit_offsets=True, seed=seed, threads=threads)
    t0 = time.perf_counter()
    tr = Trainer(settings, data, cfg)
    hist = tr.train(out / "potential", progress=False, log=lambda *_: None)
    b = hist[tr.best_epoch]
    res = {"directory": os.fspath(out / "potential"), "baseline": baseline, "seconds": time.perf_counter() - t0,
           "best_epoch": tr.best_epoch, "test_rmse_energy_meV_per_atom": 1e3 * b.rmse_energy_test,
           "test_rmse_force_eV_per_A": b.rmse_force_test, "train_rmse_energy_meV_per_atom": 1e3 * b.rmse_energy_train,
           "train_rmse_force_eV_per_A": b.rmse_force_train}
    log(f"  {'with' if baseline else 'without'} baseline: test {res['test_rmse_energy_meV_per_atom']:.2f} "
        f"meV/atom, {res['test_rmse_force_eV_per_A']:.3f} eV/A ({res['seconds']:.0f} s)")
    return res


def dimer_curves(potential_dir, r=None) -> Dict[str, Dict]:
    """Energy of Cu-Cu, Cu-Au and Au-Au dimers (isolated) from 2 A down to 0.5 A; whether it
    rises monotonically as the atoms approach."""
    from ase import Atoms

    from ..loading import load

    pot = load(potential_dir)
    r = np.linspace(2.0, 0.5, 61) if r is None else np.asarray(r)
    out = {}
    for pair in ("CuCu", "CuAu", "AuAu"):
        e = np.array([pot.evaluate(Atoms(pair, positions=[[0, 0, 0], [x, 0, 0]]), forces=False, stress=False,
                                   extrapolation="ignore").energy for x in r])
        out[pair] = {"r": r.tolist(), "energy": e.tolist(), "monotonic": bool(np.all(np.diff(e) > 0)),
                     "energy_at_0.5": float(e[-1] - e[0])}
    return out


def hot_md(potential_dir, work_dir, temperature: float = 3000.0, ps: float = 10.0, dt_fs: float = 1.0,
           repeat: int = 3, seed: int = 11, collapse_distance: float = 1.0, every: int = 50) -> Dict:
    """Langevin MD of an L1_2 Cu3Au cell (4 repeat^3 atoms) in LAMMPS with pair_style bpnn; the
    shortest interatomic distance every `every` steps. Returns how far it got."""
    from ase.build import bulk
    from ase.io import write

    from .. import lammps as hl

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    a = bulk("Cu", "fcc", a=3.75, cubic=True)
    a.symbols[0] = "Au"
    a = a.repeat((repeat, repeat, repeat))
    write(work / "start.data", a, format="lammps-data", specorder=["Cu", "Au"], masses=True)
    steps = int(round(ps * 1000.0 / dt_fs))
    hl.preload_mpi()
    import lammps

    lmp = lammps.lammps(cmdargs=["-log", os.fspath(work / "log.lammps"), "-screen", "none", "-nocite"])
    dmin, t0, done, error = [], time.perf_counter(), 0, None
    try:
        lmp.commands_list(["units metal", "atom_style atomic", "atom_modify map array",
                           f"read_data {work / 'start.data'}", *hl.pair_commands(potential_dir, ["Cu", "Au"]),
                           "neighbor 1.0 bin", "neigh_modify every 1 delay 0 check yes",
                           f"velocity all create {temperature} {seed} loop geom mom yes",
                           f"fix 1 all langevin {temperature} {temperature} 0.1 {seed}", "fix 2 all nve",
                           f"timestep {dt_fs / 1000.0}", "thermo_style custom step temp pe",
                           f"thermo {every}", "run 0"])

        def shortest():
            b = a.copy()
            b.positions = np.array(lmp.numpy.extract_atom("x"))[:len(a)]
            return float(b.get_all_distances(mic=True)[np.triu_indices(len(a), 1)].min())

        dmin.append(shortest())
        while done < steps:
            lmp.command(f"run {every} pre no post no")
            done += every
            d = shortest()
            pe = float(lmp.get_thermo("pe"))
            dmin.append(d)
            if not np.isfinite(pe) or d < collapse_distance:
                break
    except Exception as exc:  # LAMMPS stops: lost atoms, bad neighbour list, ...
        error = str(exc).splitlines()[0]
    finally:
        lmp.close()
    collapsed = error is not None or (len(dmin) > 0 and dmin[-1] < collapse_distance)
    return {"steps_requested": steps, "steps_done": done, "ps_done": done * dt_fs / 1000.0, "collapsed": collapsed,
            "error": error, "min_distance": float(np.min(dmin)) if dmin else None,
            "seconds": time.perf_counter() - t0, "atoms": len(a), "temperature": temperature}


def holdout_errors(potential_dir, structures) -> Dict:
    """RMSE of energies per atom (meV) and force components (eV/A) on structures the training
    never saw (eV, Angstrom)."""
    from ..loading import load

    pot = load(potential_dir)
    de, df = [], []
    for a in structures:
        r = pot.evaluate(a, stress=False, extrapolation="ignore")
        de.append((r.energy - a.info["energy"]) / len(a))
        df.append((r.forces - a.arrays["ref_forces"]).ravel())
    return {"holdout_rmse_energy_meV_per_atom": 1e3 * float(np.sqrt(np.mean(np.square(de)))),
            "holdout_rmse_force_eV_per_A": float(np.sqrt(np.mean(np.square(np.concatenate(df))))),
            "holdout_structures": len(structures)}


def run(out_dir="zbl-hot-md", epochs: int = 60, ps: float = 10.0, temperature: float = 3000.0, repeat: int = 3,
        threads: int = 0, log=print) -> Dict:
    """The whole comparison; returns (and writes out_dir/summary.json) the numbers."""
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log("== data: Cu-Au near equilibrium, EMT labels (training) and an independent hold-out set")
    data = cu_au_data(seed=2024)
    holdout = cu_au_data(seed=99, n_md=2)
    summary = {"training_structures": len(data)}
    for name, flag in (("without", False), ("with", True)):
        log(f"== {name} baseline")
        res = train(out / name, data, flag, epochs=epochs, threads=threads, log=log)
        res.update(holdout_errors(res["directory"], holdout))
        res["dimers"] = dimer_curves(res["directory"])
        res["md"] = hot_md(res["directory"], out / name / "md", temperature=temperature, ps=ps, repeat=repeat)
        md = res["md"]
        log(f"  hold-out: {res['holdout_rmse_energy_meV_per_atom']:.2f} meV/atom, "
            f"{res['holdout_rmse_force_eV_per_A']:.3f} eV/A; dimers monotonic: "
            f"{ {k: v['monotonic'] for k, v in res['dimers'].items()} }")
        log(f"  MD at {temperature:g} K: {md['ps_done']:.2f} of {ps:g} ps, shortest distance {md['min_distance']:.3f} A"
            f"{', COLLAPSED' if md['collapsed'] else ''}{' (' + md['error'] + ')' if md['error'] else ''}")
        summary[name] = res
    from .. import _core

    _core.write_file_atomic(os.fspath(out / "summary.json"), json.dumps(summary, indent=1) + "\n")
    return summary
