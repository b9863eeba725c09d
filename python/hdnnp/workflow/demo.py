"""`hdnnp demo`: a Cu-Au potential from nothing, with EMT standing in for DFT.

Stages (each written under the output folder; rerunning continues where it stopped):
 1. sample structures: fcc Cu and Au, L1_2 Cu3Au and L1_0 CuAu, strained, rattled, with a
    vacancy, random alloys, (111) surface slabs, short EMT MD at several temperatures; label
    them with EMT;
 2. active learning (workflow.active_learning): committee training, LAMMPS committee MD,
    high-deviation frames labelled and added, twice;
 3. final committee on all data; validation: test RMSE/MAE, parity plots, learning curve,
    error correlation of two members, extrapolation statistics (PNG + data files);
 4. production check: NVE MD in LAMMPS with the final potential, drift and speed;
 5. summary.md.
Any ASE calculator can replace EMT (`reference=`), e.g. a DFT code for real work.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .active_learning import ActiveLearner, ActiveLearningConfig


def sample_cu_au(rng: np.random.Generator, n_md: int = 4, size: int = 2, md_reference: Optional[Callable] = None):
    """Initial structures of the Cu-Au system (periodic, 4 * size^3 atoms each)."""
    from ase.build import bulk
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.units import fs

    out = []
    protos = []
    for sym, a0 in (("Cu", 3.61), ("Au", 4.08)):
        protos.append(bulk(sym, "fcc", a=a0, cubic=True))
    cu3au = bulk("Cu", "fcc", a=3.75, cubic=True)
    cu3au.symbols[0] = "Au"                      # L1_2
    protos.append(cu3au)
    cuau = bulk("Cu", "fcc", a=3.85, cubic=True)
    cuau.symbols[[0, 1]] = "Au"                  # L1_0-like layering
    protos.append(cuau)
    for p in protos:
        big = p.repeat((size, size, size))
        for strain in (-0.03, 0.0, 0.03):
            a = big.copy()
            a.set_cell(a.cell[:] * (1 + strain), scale_atoms=True)
            a.rattle(0.05, seed=int(rng.integers(1 << 30)))
            out.append(a)
        v = big.copy()
        del v[int(rng.integers(len(v)))]
        v.rattle(0.05, seed=int(rng.integers(1 << 30)))
        out.append(v)
        # random alloy on the same lattice
        r = big.copy()
        r.symbols = rng.choice(["Cu", "Au"], len(r))
        r.rattle(0.05, seed=int(rng.integers(1 << 30)))
        out.append(r)
    # (111) surfaces: periodic slabs with 8 A of vacuum
    from ase.build import fcc111

    for sym, a0 in (("Cu", 3.61), ("Au", 4.08)):
        for k in range(2):
            slab = fcc111(sym, size=(2, 2, 4), a=a0, vacuum=4.0, periodic=True)
            if k:  # a mixed surface layer
                top = [i for i in range(len(slab)) if slab.positions[i, 2] > slab.positions[:, 2].max() - 0.5]
                slab.symbols[top[:2]] = "Au" if sym == "Cu" else "Cu"
            slab.rattle(0.05, seed=int(rng.integers(1 << 30)))
            out.append(slab)
    if md_reference is not None:  # short MD snapshots with the reference method
        for T in (300, 900):
            a = protos[2].repeat((size, size, size))
            a.calc = md_reference()
            MaxwellBoltzmannDistribution(a, temperature_K=T, rng=rng)
            dyn = Langevin(a, 5 * fs, temperature_K=T, friction=0.02, rng=rng, fixcm=False)
            for _ in range(n_md):
                dyn.run(10)
                b = a.copy()
                b.calc = None
                out.append(b)
    return out


def run_demo(out_dir="hdnnp-demo", quick: bool = False, reference: Optional[Callable] = None, log=print):
    """The whole workflow; returns the summary dict. `quick`: small sizes (CI)."""
    from ase.calculators.emt import EMT

    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reference = reference or EMT
    rng = np.random.default_rng(2024)
    cfg = ActiveLearningConfig(elements=["Cu", "Au"])
    if quick:
        cfg.epochs, cfg.committee, cfg.md_steps, cfg.hidden = 40, 2, 150, (10, 10)
        cfg.radial_points, cfg.max_new_per_iteration, cfg.progress = 5, 8, False
    log("== 1. sampling initial Cu-Au structures (crystals, strain, vacancies, alloys, short MD)")
    initial = sample_cu_au(rng, n_md=2 if quick else 4, size=2, md_reference=reference)
    # MD starting points: the ordered alloys
    starts = [initial[10], initial[15]] if len(initial) > 15 else initial[:2]
    learner = ActiveLearner(out / "active-learning", cfg, reference, log=log)
    log(f"== 2. active learning ({cfg.iterations} iterations)")
    summaries = learner.run(initial, starts)
    log("== 3. final committee on all data, validation")
    final = final_stage(learner, out, log)
    log("== 4. production check: NVE MD in LAMMPS")
    nve = production_check(final["members"][0], starts[0], out / "nve", steps=200 if quick else 1000, log=log)
    summary = {"iterations": summaries, "final": final, "nve": nve,
               "seconds": time.perf_counter() - t_start}
    write_report(out, summary)
    log(f"== 5. done in {summary['seconds']:.0f} s; report {out / 'summary.md'}")
    return summary


def final_stage(learner: ActiveLearner, out: Path, log) -> dict:
    """Committee on all data; validation plots and data files."""
    from ..potential import Committee
    from ..training.data import from_ase

    it_dir = out / "final"
    it_dir.mkdir(exist_ok=True)
    data = learner.load_data()
    members = learner.train_committee(it_dir, data)
    res = [json.loads((m / "training.json").read_text())["final"] for m in members]
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
    log(f"  final committee: test RMSE {info['test_rmse_energy_per_atom'] * 1e3:.1f} meV/atom, "
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
    lines += ["", f"Final committee ({f['structures']} structures): test RMSE "
              f"{f['test_rmse_energy_per_atom'] * 1e3:.2f} meV/atom (MAE {f['test_mae_energy_per_atom'] * 1e3:.2f}), "
              f"forces {f['test_rmse_force']:.4f} eV/A (MAE {f['test_mae_force']:.4f}); correlation of two members' "
              f"force errors {f['member_error_correlation']:.2f}; extrapolating atoms in the data "
              f"{f['extrapolating_atoms_in_data']}.", "",
              f"NVE check: {summary['nve']['atoms']} atoms, {summary['nve']['steps']} steps of "
              f"{summary['nve']['timestep_ps'] * 1e3:g} fs: drift {summary['nve']['drift_meV_per_atom_ps']:.3f} meV/atom/ps, "
              f"max |E - E0| {summary['nve']['max_excursion_meV_per_atom']:.3f} meV/atom, "
              f"{summary['nve']['atom_steps_per_s']:.0f} atom-steps/s.", "",
              f"Total time {summary['seconds']:.0f} s. Plots: final/member*/learning-curve.png, "
              "final/member*/parity-*.png, final/error-correlation.png."]
    _core.write_file_atomic(os.fspath(out / "summary.md"), "\n".join(lines) + "\n")
    _core.write_file_atomic(os.fspath(out / "summary.json"), json.dumps(summary, indent=1, default=float) + "\n")
