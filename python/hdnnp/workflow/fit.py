"""`hdnnp fit DATA -o DIR`: from reference data to a potential in one command, no input.nn needed.

What a new user with DFT data tries first. From anything ASE reads with energies and forces (eV,
Angstrom) it chooses the settings from the data, writes them as an input.nn (for inspection and
reuse with `hdnnp train`), trains (one potential or a committee) and writes a report:

- elements: those of the data; cutoff: the radius that holds about `neighbours` atoms at the
  data's mean density (periodic structures; molecules: 6 A), within [4.5, 6.5] A;
- symmetry functions: shifted radial Gaussians and narrow angular functions (hdnnp sfgen's
  "radial narrow" set) starting below the shortest distance in the data; functions that are
  constant on the training structures are pruned;
- a ZBL pair baseline with radii from the training structures (`hdnnp_zbl auto`) so that MD
  stays repulsive below the shortest distances seen;
- 2 hidden layers of 20 tanh neurons, offsets fitted, training / validation / test split
  80 / 10 / 10 with the best epoch chosen on validation, early stopping, and an optional
  wall-clock budget;
- the optimiser: the Kalman filter with one covariance block per element and 10 % of the force
  components per epoch, which reached a given error on unseen structures several times sooner
  than Adam or n2p2's full-covariance settings (benchmarks/RESULTS.md, "Time to accuracy");
  per-layer blocks where an element's network has more than `max_block` weights, and Adam
  where even a layer has (the covariance would not fit in memory).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np


@dataclass
class FitConfig:
    epochs: int = 100
    optimizer: str = "auto"                # auto (see the module) | kalman | adam
    force_fraction: float = 0.1            # Kalman: force components per epoch (fraction)
    max_block: int = 6000                  # auto: largest covariance block (weights) per element
    time_limit: Optional[float] = None     # seconds, for the whole fit (shared by the committee)
    committee: int = 1
    cutoff: Optional[float] = None         # Angstrom (None: from the data)
    neighbours: float = 60.0               # cutoff: about this many atoms within it
    hidden: Sequence[int] = (20, 20)
    radial_points: int = 8
    angular_points: int = 3
    learning_rate: float = 3e-3
    learning_rate_decay: float = 0.99
    batch_size: int = 2
    patience: int = 25
    validation_fraction: float = 0.1       # chooses the best epoch (0: the training error does)
    # descriptor derivatives kept in memory (MB, shared by the members trained at once); beyond it
    # a structure keeps its descriptors only (TrainingConfig.memory_budget_mb)
    memory_budget_mb: float = 4096.0
    baseline: bool = True
    seed: int = 11
    threads: int = 0
    parallel: int = 0                      # committee members trained at once, one process each (0: cores)
    progress: bool = True


def _elements(structures) -> List[str]:
    from ase.data import atomic_numbers

    return sorted({s for a in structures for s in a.get_chemical_symbols()}, key=lambda s: atomic_numbers[s])


def choose_cutoff(structures, neighbours: float) -> float:
    """The radius holding about `neighbours` atoms at the mean density of the periodic structures,
    within [4.5, 6.5] A (6 A without periodic structures)."""
    dens = [len(a) / a.get_volume() for a in structures if a.pbc.all() and a.cell.rank == 3]
    if not dens:
        return 6.0
    r = (3.0 * neighbours / (4.0 * np.pi * float(np.mean(dens)))) ** (1.0 / 3.0)
    return float(np.clip(r, 4.5, 6.5))


def write_settings(directory: Path, structures, cfg: FitConfig, log=print) -> dict:
    """input.nn for the data (see the module), its choices as a dict."""
    from .. import _core
    from ..baseline import shortest_distances
    from ..training.sfgen import generate, input_nn

    elements = _elements(structures)
    cutoff = cfg.cutoff or choose_cutoff(structures, cfg.neighbours)
    dmin = shortest_distances(structures, elements, cutoff)
    d0 = min(dmin.values()) if dmin else 1.0
    sfs = generate(elements, cutoff, ("radial", "narrow"), radial_points=cfg.radial_points,
                   angular_points=cfg.angular_points, zetas=(1.0, 4.0), mode="shift", r_lower=0.8 * d0)
    directory.mkdir(parents=True, exist_ok=True)
    _core.write_file_atomic(os.fspath(directory / "input.nn"),
                            input_nn(elements, sfs, cfg.hidden, length_unit="Angstrom", energy_unit="eV",
                                     extra="hdnnp_zbl auto" if cfg.baseline else ""))
    choice = {"elements": elements, "cutoff": cutoff, "symmetry_functions": len(sfs),
              "shortest_distance": d0, "hidden": list(cfg.hidden)}
    log(f"settings: elements {' '.join(elements)}, cutoff {cutoff:.2f} A, {len(sfs)} symmetry functions, "
        f"network {'-'.join(map(str, cfg.hidden))}, ZBL baseline {'on' if cfg.baseline else 'off'}")
    return choice


def choose_optimizer(settings: Path, cfg: FitConfig):
    """(optimizer, Kalman decoupling) for the networks of settings/input.nn (see the module), and
    the training keywords appended to that input.nn, so that `hdnnp train` reproduces the choice."""
    from .. import _core
    from ..training.trainer import layer_parameters

    if cfg.optimizer not in ("auto", "kalman", "adam"):
        raise ValueError(f"optimizer: auto, kalman or adam, not {cfg.optimizer!r}")
    model = _core.Model.load(os.fspath(settings), False)
    layers = [layer_parameters(list(model.architecture(e)[0])) for e in range(len(model.elements))]
    optimizer, decoupling = ("kalman", "element") if cfg.optimizer == "auto" else (cfg.optimizer, "element")
    if cfg.optimizer == "auto" and max(sum(ls) for ls in layers) > cfg.max_block:
        optimizer, decoupling = (("kalman", "layer") if max(max(ls) for ls in layers) <= cfg.max_block
                                 else ("adam", "none"))
    lines = ["", "# training (hdnnp fit's choice; `hdnnp train` reads these)", "use_short_forces", "fit_offsets 1",
             f"epochs {cfg.epochs}"] + ([f"early_stopping_patience {cfg.patience}"] if cfg.patience else [])
    if optimizer == "kalman":
        lines += ["updater_type 1", f"kalman_decoupling {decoupling}", f"short_force_fraction {cfg.force_fraction:g}"]
    else:
        lines += ["updater_type 0", "gradient_type 1", f"gradient_adam_eta {cfg.learning_rate:g}",
                  f"learning_rate_decay {cfg.learning_rate_decay:g}", f"task_batch_size_energy {cfg.batch_size}"]
    text = (settings / "input.nn").read_text()
    _core.write_file_atomic(os.fspath(settings / "input.nn"), text.rstrip("\n") + "\n" + "\n".join(lines) + "\n")
    return optimizer, decoupling


def optimizer_words(optimizer: str, decoupling: str, cfg: FitConfig) -> str:
    if optimizer == "adam":
        return f"Adam (step {cfg.learning_rate:g}, decay {cfg.learning_rate_decay:g} per epoch, batch {cfg.batch_size})"
    blocks = {"element": "one covariance block per element", "layer": "one covariance block per layer",
              "none": "full covariance"}[decoupling]
    return f"Kalman filter, {blocks}, {cfg.force_fraction:g} of the force components per epoch"


def fit(data_path, out_dir, cfg: Optional[FitConfig] = None, log=print) -> dict:
    """Fit a potential (or a committee) to the structures of `data_path`; returns the report."""
    import ase.io

    from ..training.data import DataError, from_ase
    from ..training.sfgen import prune_input_nn
    from ..training.trainer import Trainer, TrainingConfig

    cfg = cfg or FitConfig()
    t_start = time.perf_counter()
    out = Path(out_dir)
    try:
        frames = ase.io.read(os.fspath(data_path), ":")
    except Exception as e:  # (ASE raises many types for unreadable files)
        raise DataError(f"{data_path}: cannot read structures: {e}") from None
    if not frames:
        raise DataError(f"{data_path}: no structures")
    structures = from_ase(frames)
    for k, a in enumerate(structures):
        if "ref_forces" not in a.arrays:
            raise DataError(f"{data_path}: structure {k} has no forces (hdnnp fit needs energies and forces)")
    settings = out / "settings"
    choice = write_settings(settings, structures, cfg, log)
    # one split for every member (tags unless the data carries its own): the test structures
    # are held out of the whole committee; constant functions pruned on the training ones
    from ..training.trainer import tag_split

    train_idx, val_idx, test_idx = tag_split(structures, TrainingConfig(seed=cfg.seed,
                                                                        validation_fraction=cfg.validation_fraction))
    dropped = prune_input_nn(os.fspath(settings), [structures[k] for k in train_idx])
    if dropped:
        log(f"pruned {len(dropped)} symmetry functions constant on the training structures")
    optimizer, decoupling = choose_optimizer(settings, cfg)
    choice.update(optimizer=optimizer, kalman_decoupling=decoupling)
    log(f"optimiser: {optimizer_words(optimizer, decoupling, cfg)}")
    from .committee import train_members, workers_for

    n = max(1, cfg.committee)
    budget = None
    if cfg.time_limit is not None:   # shared by the committee: each wave of parallel members its part
        waves = -(-n // workers_for(n, cfg.parallel))
        budget = max(1.0, (cfg.time_limit - (time.perf_counter() - t_start)) / waves)
    tasks = []
    for m in range(n):
        tcfg = TrainingConfig(optimizer=optimizer, epochs=cfg.epochs, learning_rate=cfg.learning_rate,
                              learning_rate_decay=cfg.learning_rate_decay, batch_size=cfg.batch_size,
                              seed=cfg.seed + 101 * m if m else cfg.seed, fit_offsets=True,
                              patience=cfg.patience, time_limit=budget, threads=cfg.threads,
                              force_fraction=cfg.force_fraction, validation_fraction=cfg.validation_fraction,
                              memory_budget_mb=cfg.memory_budget_mb / workers_for(n, cfg.parallel))
        tcfg.kalman.decoupling = decoupling
        run_dir = out / (f"settings-member{m}" if n > 1 else "run")
        shutil.copytree(settings, run_dir, dirs_exist_ok=True)
        tasks.append((os.fspath(run_dir), structures, tcfg, os.fspath(out / (f"member{m}" if n > 1 else "potential"))))
    members, rows = [], []

    def record(m, res):
        target, b = Path(tasks[m][3]), res["best"]
        rows.append({"member": m, "directory": os.fspath(target), "best_epoch": res["best_epoch"],
                     "epochs_run": res["epochs_run"],
                     "rmse_energy_meV_per_atom": {"train": b["rmse_energy_train"] * 1e3,
                                                  "validation": b["rmse_energy_validation"] * 1e3,
                                                  "test": b["rmse_energy_test"] * 1e3},
                     "rmse_force_eV_per_A": {"train": b["rmse_force_train"], "validation": b["rmse_force_validation"],
                                             "test": b["rmse_force_test"]}})
        members.append(target)
        shutil.rmtree(tasks[m][0], ignore_errors=True)
        log(f"{'member ' + str(m) if n > 1 else 'potential'}: best epoch {res['best_epoch']} of {res['epochs_run']}; "
            f"test RMSE {b['rmse_energy_test'] * 1e3:.2f} meV/atom, {b['rmse_force_test']:.4f} eV/A "
            f"(validation {b['rmse_energy_validation'] * 1e3:.2f}, {b['rmse_force_validation']:.4f}) -> {target}")

    train_members(tasks, cfg.parallel, cfg.progress, done=record)
    report = {"data": os.fspath(data_path), "structures": len(structures),
              "split": {"train": len(train_idx), "validation": len(val_idx), "test": len(test_idx)}, "settings": choice,
              "members": rows, "seconds": time.perf_counter() - t_start}
    from .. import _core

    _core.write_file_atomic(os.fspath(out / "report.json"), json.dumps(report, indent=2) + "\n")
    lines = [f"# hdnnp fit: {data_path}", "",
             f"{len(structures)} structures; elements {' '.join(choice['elements'])}; cutoff {choice['cutoff']:.2f} A; "
             f"{choice['symmetry_functions']} symmetry functions generated; network "
             f"{'-'.join(map(str, choice['hidden']))}; {report['seconds']:.0f} s; split "
             f"{len(train_idx)} / {len(val_idx)} / {len(test_idx)} (training / validation / test, the same for "
             f"every committee member); optimiser: {optimizer_words(optimizer, decoupling, cfg)}", "",
             "Errors at the best epoch (chosen on the validation set; the test set made no choice):", "",
             "| potential | energy RMSE train / validation / test (meV/atom) | force RMSE train / validation / test (eV/A) |",
             "|---|---|---|"]
    for r in rows:
        e, f = r["rmse_energy_meV_per_atom"], r["rmse_force_eV_per_A"]
        lines.append(f"| {Path(r['directory']).name} | {e['train']:.2f} / {e['validation']:.2f} / {e['test']:.2f} | "
                     f"{f['train']:.4f} / {f['validation']:.4f} / {f['test']:.4f} |")
    lines += ["", "Each potential directory holds input.nn (the settings, reusable with `hdnnp train`), "
              "scaling.data, the weights, training.json, learning-curve.out and, with matplotlib, "
              "learning-curve and parity plots.",
              "Use: `hdnnp.load(" + (f"[{', '.join(repr(os.fspath(p)) for p in members)}]" if n > 1 else
                                     repr(os.fspath(members[0]))) + ")`, or `pair_style bpnn` in LAMMPS."]
    _core.write_file_atomic(os.fspath(out / "report.md"), "\n".join(lines) + "\n")
    return report
