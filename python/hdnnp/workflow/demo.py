"""`hdnnp demo`: a Cu-Au potential from nothing, with EMT standing in for DFT.

Stages (each written under the output folder; rerunning continues where it stopped):
 1. sample structures (sample_cu_au): random fcc alloys across all compositions, strained,
    sheared and displaced; ordered L1_2 Cu3Au and L1_0 CuAu; vacancies; (111), (100), (110)
    slabs; short EMT MD at 300-1500 K; label them with EMT;
 2. active learning (workflow.active_learning): committees of two trained in parallel (settings
    chosen from the data as `hdnnp fit` does, element-decoupled Kalman filter), LAMMPS committee
    MD, high-deviation frames labelled and added, twice;
 3. final committee of four on all data; validation: test RMSE/MAE, parity plots, learning
    curves, error correlation of two members, extrapolation statistics (PNG + data files);
 4. generalisation: the committee on unseen structures (unseen_cu_au: larger random-alloy cells
    at other compositions and strains, larger (100) slabs), which no step trains on or chooses with;
 5. production check: NVE MD in LAMMPS with the final potential, drift and speed;
 6. summary.md.
Any ASE calculator can replace EMT (`reference=`), e.g. a DFT code for real work.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .active_learning import ActiveLearner, ActiveLearningConfig, member_errors


def _random_alloy(rng, x: float, size: int, strain: float = 0.0, shear: float = 0.0, rattle: float = 0.05):
    """A cubic fcc cell (4 size^3 sites) with a fraction x of Au on random sites, Vegard's
    lattice constant, isotropic strain, a shear and Gaussian displacements (sigma, A)."""
    from ase.build import bulk

    at = bulk("Cu", "fcc", a=3.61 + (4.08 - 3.61) * x, cubic=True).repeat((size, size, size))
    symbols = np.array(["Cu"] * len(at), dtype=object)
    symbols[rng.permutation(len(at))[:int(round(x * len(at)))]] = "Au"
    at.symbols = list(symbols)
    F = np.eye(3) * (1.0 + strain)
    F[0, 1] += shear
    F[1, 2] += 0.5 * shear
    at.set_cell(at.cell[:] @ F, scale_atoms=True)
    at.positions += rng.normal(0.0, rattle, at.positions.shape)
    return at


def _random_slab(rng, facet, x: float, size, vacuum: float = 5.0, rattle: float = 0.08):
    """A periodic slab of an fcc facet (ase.build.fcc111/fcc100/fcc110) with a fraction x of Au."""
    slab = facet("Cu", size=size, a=3.61 + (4.08 - 3.61) * x, vacuum=vacuum, periodic=True)
    symbols = np.array(["Cu"] * len(slab), dtype=object)
    symbols[rng.permutation(len(slab))[:int(round(x * len(slab)))]] = "Au"
    slab.symbols = list(symbols)
    slab.positions += rng.normal(0.0, rattle, slab.positions.shape)
    slab.info.pop("adsorbate_info", None)
    return slab


def sample_cu_au(rng: np.random.Generator, n_alloys: int = 48, n_md: int = 12, size: int = 2,
                 md_reference: Optional[Callable] = None):
    """Initial structures of the Cu-Au system (periodic, 4 size^3 atoms in the bulk cells):
    random fcc alloys across the whole composition range (every sixth one pure Cu or Au), with
    isotropic strain up to 5 %, shear up to 3 % and displacements of 0.02-0.15 A; the ordered
    L1_2 Cu3Au and L1_0 CuAu at three strains; two vacancies; (111), (100) and (110) slabs of random
    composition; snapshots of MD with the reference method at 300-1500 K."""
    from ase.build import bulk, fcc100, fcc110, fcc111
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.units import fs

    out = []
    for i in range(n_alloys):
        x = rng.uniform(0.0, 1.0) if i % 6 else float(rng.choice([0.0, 1.0]))
        out.append(_random_alloy(rng, x, size, strain=rng.uniform(-0.05, 0.05), shear=rng.uniform(-0.03, 0.03),
                                 rattle=rng.uniform(0.02, 0.15)))
    cu3au = bulk("Cu", "fcc", a=3.75, cubic=True)
    cu3au.symbols[0] = "Au"                      # L1_2
    cuau = bulk("Cu", "fcc", a=3.85, cubic=True)
    cuau.symbols[[0, 1]] = "Au"                  # L1_0-like layering
    for p in (cu3au, cuau):
        for strain in (-0.03, 0.0, 0.03):
            a = p.repeat((size, size, size))
            a.set_cell(a.cell[:] * (1 + strain), scale_atoms=True)
            a.positions += rng.normal(0.0, 0.05, a.positions.shape)
            out.append(a)
    for x in (0.25, 0.75):
        v = _random_alloy(rng, x, size, rattle=0.05)
        del v[int(rng.integers(len(v)))]
        out.append(v)
    for facet in (fcc111, fcc100, fcc110):
        for _ in range(2):
            out.append(_random_slab(rng, facet, rng.uniform(0.0, 1.0), (2, 2, 4)))
    if md_reference is not None:  # MD snapshots with the reference method
        for T in np.linspace(300.0, 1500.0, max(n_md // 3, 1)):
            a = _random_alloy(rng, rng.uniform(0.2, 0.8), size, rattle=0.0)
            a.calc = md_reference()
            MaxwellBoltzmannDistribution(a, temperature_K=T, rng=rng)
            dyn = Langevin(a, 5 * fs, temperature_K=T, friction=0.02, rng=rng, fixcm=False)
            for _ in range(3):
                dyn.run(15)
                b = a.copy()
                b.calc = None
                out.append(b)
    return out


def unseen_cu_au(rng: np.random.Generator):
    """Structures the demo never trains on or chooses with (its generalisation check): random
    fcc alloys with 10-90 % Au at -3, 0 and +3 % strain, displaced by 0.1 A, in 108-atom cells
    (larger than any training cell), and two (100) slabs of 30 and 70 % Au, 3x3 surface cells and
    6 layers (the training slabs are 2x2 cells of 4 layers)."""
    from ase.build import fcc100

    out = [_random_alloy(rng, x, 3, strain=s, rattle=0.1)
           for x in (0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9) for s in (-0.03, 0.0, 0.03)]
    out += [_random_slab(rng, fcc100, x, (3, 3, 6), rattle=0.05) for x in (0.3, 0.7)]
    return out


def run_demo(out_dir="hdnnp-demo", quick: bool = False, reference: Optional[Callable] = None, log=print):
    """The whole workflow; returns the summary dict. `quick`: small sizes (CI)."""
    from ase.calculators.emt import EMT

    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reference = reference or EMT
    rng = np.random.default_rng(2024)
    # settings from the data as `hdnnp fit` chooses them, element-decoupled Kalman filter (the
    # best time to accuracy in benchmarks/bench_optimizers.py); members train two at a time
    cfg = ActiveLearningConfig(elements=["Cu", "Au"], symmetry_functions="data", hidden=(20, 20), committee=2,
                               final_committee=4, epochs=300, time_limit=15.0, final_time_limit=30.0,
                               md_steps=400, max_new_per_iteration=12)
    if quick:
        # (epochs, not seconds: the same result on any machine)
        cfg.epochs, cfg.time_limit, cfg.final_time_limit, cfg.final_committee, cfg.md_steps = 6, None, None, 2, 150
        cfg.max_new_per_iteration, cfg.progress = 8, False
    log("== 1. sampling initial Cu-Au structures (random alloys across compositions, strain, shear, ordered "
        "alloys, vacancies, three surfaces, MD)")
    initial = sample_cu_au(rng, n_alloys=24 if quick else 60, n_md=6 if quick else 12, size=2,
                           md_reference=reference)
    # MD starting points: random alloys of 25 and 50 % Au in 108-atom cells
    from .active_learning import label_structures

    starts = [_random_alloy(rng, x, 3, rattle=0.0) for x in (0.25, 0.5)]
    learner = ActiveLearner(out / "active-learning", cfg, reference, log=log)
    log(f"== 2. active learning ({cfg.iterations} iterations, committees of {cfg.committee})")
    summaries = learner.run(initial, starts)
    log(f"== 3. final committee of {cfg.final_committee or cfg.committee} on all data, validation")
    final = final_stage(learner, out, log)
    log("== 4. generalisation: the committee on unseen structures (never trained on or chosen with)")
    unseen_file = out / "unseen.extxyz"
    if not unseen_file.exists():
        from ase.io import write

        write(unseen_file, label_structures(unseen_cu_au(np.random.default_rng(7777)), reference), format="extxyz")
    final["unseen"] = unseen_check(final["members"], unseen_file, out / "final", log)
    log("== 5. production check: NVE MD in LAMMPS")
    nve = production_check(final["members"][0], initial[len(initial) // 2], out / "nve",
                           steps=200 if quick else 1000, log=log)
    summary = {"iterations": summaries, "final": final, "nve": nve,
               "seconds": time.perf_counter() - t_start}
    write_report(out, summary)
    log(f"== 6. done in {summary['seconds']:.0f} s; report {out / 'summary.md'}")
    return summary


def unseen_check(members, path: Path, out: Path, log) -> dict:
    """Errors of the committee mean on the structures of `path` (the unseen set), overall and for
    the bulk cells and the slabs apart; parity data written to `out`."""
    import ase.io

    from ..potential import Committee

    com = Committee([os.fspath(m) for m in members], warn=False)
    de, df, slab = [], [], []
    rows = []
    for a in ase.io.read(path, ":"):
        r = com.evaluate(a, extrapolation="ignore")
        e_ref, f_ref = a.get_potential_energy(), a.get_forces()
        de.append((r.energy - e_ref) / len(a))
        df.append((r.forces - f_ref).ravel())
        slab.append(bool(np.ptp(a.positions[:, 2]) < a.cell[2, 2] - 4.0))   # (vacuum along z)
        rows.append((e_ref / len(a), r.energy / len(a)))
    de, slab = np.array(de), np.array(slab)
    dfa = np.concatenate(df)
    info = {"structures": len(de), "rmse_energy_per_atom": float(np.sqrt(np.mean(de ** 2))),
            "rmse_force": float(np.sqrt(np.mean(dfa ** 2))), "mae_force": float(np.mean(np.abs(dfa))),
            "rmse_energy_per_atom_bulk": float(np.sqrt(np.mean(de[~slab] ** 2))) if (~slab).any() else None,
            "max_abs_energy_per_atom_slabs": float(np.abs(de[slab]).max()) if slab.any() else None}
    np.savetxt(out / "unseen-energy.dat", np.array(rows), header="reference, committee energy per atom (eV)")
    log(f"  {len(de)} unseen structures: RMSE {info['rmse_energy_per_atom'] * 1e3:.2f} meV/atom, "
        f"{info['rmse_force']:.4f} eV/A")
    return info


def final_stage(learner: ActiveLearner, out: Path, log) -> dict:
    """Committee on all data; validation plots and data files."""
    from ..potential import Committee
    from ..training.data import from_ase

    it_dir = out / "final"
    it_dir.mkdir(exist_ok=True)
    data = learner.load_data()
    c = learner.cfg
    members = learner.train_committee(it_dir, data, size=c.final_committee or c.committee,
                                      time_limit=c.final_time_limit)
    res = [member_errors(m) for m in members]
    # error correlation of two members on all structures (spots suspicious reference data)
    com = Committee([os.fspath(m) for m in members], warn=False)
    labelled = from_ase(data)
    errs = []
    n_extra = 0
    for a in labelled:
        r = com.evaluate(a, extrapolation="ignore", native=True)
        errs.append((r.member_forces[:, :, :] - a.arrays["ref_forces"][None]).reshape(len(members), -1))
        n_extra += r.n_extrapolating
    errs = np.concatenate(errs, axis=1)
    np.savetxt(it_dir / "force-errors-members.dat", errs.T, header="force-component error of each member (eV/A)")
    corr = float(np.corrcoef(errs[0], errs[1])[0, 1]) if len(members) > 1 else float("nan")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.2, 4))
        ax.plot(errs[0], errs[1], ".", ms=2)
        ax.set_xlabel("member 0 force error (eV/A)")
        ax.set_ylabel("member 1 force error (eV/A)")
        ax.set_title(f"error correlation {corr:.2f}")
        fig.tight_layout()
        fig.savefig(it_dir / "error-correlation.png", dpi=120)
        plt.close(fig)
    except ImportError:
        pass
    info = {"members": [os.fspath(m) for m in members], "structures": len(data),
            "test_rmse_energy_per_atom": float(np.mean([r["rmse_energy_test"] for r in res])),
            "test_mae_energy_per_atom": float(np.mean([r["mae_energy_test"] for r in res])),
            "test_rmse_force": float(np.mean([r["rmse_force_test"] for r in res])),
            "test_mae_force": float(np.mean([r["mae_force_test"] for r in res])),
            "member_error_correlation": corr, "extrapolating_atoms_in_data": int(n_extra)}
    log(f"  final committee: members' mean test RMSE {info['test_rmse_energy_per_atom'] * 1e3:.1f} meV/atom, "
        f"{info['test_rmse_force']:.3f} eV/A; member error correlation {corr:.2f}")
    return info


def production_check(potential_dir, start, out: Path, steps: int, log) -> dict:
    """NVE MD in LAMMPS: energy drift (meV/atom/ps) and speed (atom-steps/s)."""
    from ase.io import write

    from .. import lammps as hl

    out.mkdir(parents=True, exist_ok=True)
    atoms = start.repeat((2, 2, 2))
    write(out / "start.data", atoms, format="lammps-data", specorder=["Cu", "Au"], masses=True)
    hl.preload_mpi()
    import lammps

    lmp = lammps.lammps(cmdargs=["-log", os.fspath(out / "log.lammps"), "-screen", "none", "-nocite"])
    dt = 0.001
    try:
        lmp.commands_list(["units metal", "atom_style atomic", f"read_data {out / 'start.data'}",
                           *hl.pair_commands(os.fspath(potential_dir), ["Cu", "Au"],
                                             extra="extrapolation_every 100000"),
                           "velocity all create 300 11 loop geom mom yes", "fix 1 all nve", f"timestep {dt}",
                           "thermo_style custom step time etotal", "thermo_modify format float %.12f",
                           f"thermo {max(steps // 20, 1)}", "run 0"])
        e0 = lmp.get_thermo("etotal")
        t0 = time.perf_counter()
        energies = []
        for _ in range(20):
            lmp.command(f"run {max(steps // 20, 1)}")
            energies.append((lmp.get_thermo("time"), lmp.get_thermo("etotal")))
        elapsed = time.perf_counter() - t0
    finally:
        lmp.close()
    t, e = np.array(energies).T
    n = len(atoms)
    drift = float(np.polyfit(t, e, 1)[0] / n * 1e3)
    info = {"atoms": n, "steps": 20 * max(steps // 20, 1), "timestep_ps": dt, "drift_meV_per_atom_ps": drift,
            "max_excursion_meV_per_atom": float(np.abs(e - e0).max() / n * 1e3),
            "atom_steps_per_s": n * 20 * max(steps // 20, 1) / elapsed}
    np.savetxt(out / "energy.dat", np.c_[t, e], header="time (ps)  total energy (eV)")
    log(f"  {n} atoms, {info['steps']} steps: drift {drift:.3f} meV/atom/ps, "
        f"{info['atom_steps_per_s']:.0f} atom-steps/s")
    return info


def write_report(out: Path, summary: dict):
    from .. import _core

    lines = ["# hdnnp demo: Cu-Au with EMT as the reference method", "",
             "| iteration | structures | new | committee test RMSE E (meV/atom) | F (eV/A) | mean max force deviation in MD (eV/A) | extrapolating candidates |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summary["iterations"]:
        dev = s["mean_max_force_deviation"]
        lines.append(f"| {s['iteration']} | {s['structures']} | {s['new_structures']} | "
                     f"{s['test_rmse_energy_per_atom'] * 1e3:.2f} | {s['test_rmse_force']:.4f} | "
                     f"{'n/a' if dev is None else f'{dev:.4f}'} | {s.get('extrapolating_candidates', 0)} |")
    f = summary["final"]
    u = f["unseen"]
    slabs = u["max_abs_energy_per_atom_slabs"]
    lines += ["", f"Final committee of {len(f['members'])} ({f['structures']} structures): members' mean test RMSE "
              f"{f['test_rmse_energy_per_atom'] * 1e3:.2f} meV/atom (MAE {f['test_mae_energy_per_atom'] * 1e3:.2f}), "
              f"forces {f['test_rmse_force']:.4f} eV/A (MAE {f['test_mae_force']:.4f}); correlation of two members' "
              f"force errors {f['member_error_correlation']:.2f}; extrapolating atoms in the data "
              f"{f['extrapolating_atoms_in_data']}.", "",
              f"**Unseen structures** ({u['structures']}: random alloys of 10-90 % Au at -3/0/+3 % strain, "
              f"displaced 0.1 A, 108-atom cells; two (100) slabs; never trained on or chosen with), committee mean: "
              f"energy RMSE {u['rmse_energy_per_atom'] * 1e3:.2f} meV/atom (bulk "
              f"{u['rmse_energy_per_atom_bulk'] * 1e3:.2f}"
              + (f", slabs at most {slabs * 1e3:.2f}" if slabs is not None else "") +
              f"), force RMSE {u['rmse_force']:.4f} eV/A (MAE {u['mae_force']:.4f}).", "",
              f"NVE check: {summary['nve']['atoms']} atoms, {summary['nve']['steps']} steps of "
              f"{summary['nve']['timestep_ps'] * 1e3:g} fs: drift {summary['nve']['drift_meV_per_atom_ps']:.3f} meV/atom/ps, "
              f"max |E - E0| {summary['nve']['max_excursion_meV_per_atom']:.3f} meV/atom, "
              f"{summary['nve']['atom_steps_per_s']:.0f} atom-steps/s.", "",
              f"Total time {summary['seconds']:.0f} s. Plots: final/member*/learning-curve.png, "
              "final/member*/parity-*.png, final/error-correlation.png; unseen: final/unseen-energy.dat."]
    _core.write_file_atomic(os.fspath(out / "summary.md"), "\n".join(lines) + "\n")
    _core.write_file_atomic(os.fspath(out / "summary.json"), json.dumps(summary, indent=1, default=float) + "\n")
