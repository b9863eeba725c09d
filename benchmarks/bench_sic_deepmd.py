"""DeePMD-kit on bench_sic.py's held-out SiC set, in a wall-clock budget: its test errors beside
hdnnp fit's on the same 80 training / 20 test cells.

    python benchmarks/bench_sic.py                      # writes benchmarks/results/sic/sic.extxyz
    python -m venv /tmp/dp && /tmp/dp/bin/pip install deepmd-kit torch
    python benchmarks/bench_sic_deepmd.py --dp /tmp/dp/bin/dp [--seconds 100] [--model small|large]

DeePMD-kit is not a dependency of this project (a comparison only). se_e2_a descriptor with the
cutoff hdnnp fit chose (5.29 A, smoothing from 0.5 A), the PyTorch backend, one thread
(OMP_NUM_THREADS=1, as the issue's comparison), DeePMD's default loss schedule (energy prefactor
0.02 -> 1, force 1000 -> 1) and learning-rate decay over the planned steps; training is stopped at
the budget (the process killed) and the last checkpoint (every 100 steps) is tested with `dp
test` on the 20 test cells. The budget counts from the start of `dp train` (its start-up too).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MODELS = {
    "small": {"neuron": [10, 20, 40], "axis_neuron": 8, "fitting": [60, 60, 60]},
    "large": {"neuron": [25, 50, 100], "axis_neuron": 16, "fitting": [240, 240, 240]},
}


def write_system(frames, path: Path, type_map):
    """DeePMD's npy format: one system (all frames have the same atoms in the same order)."""
    path.mkdir(parents=True, exist_ok=True)
    types = np.array([type_map.index(s) for s in frames[0].get_chemical_symbols()])
    (path / "type.raw").write_text("\n".join(map(str, types)) + "\n")
    (path / "type_map.raw").write_text("\n".join(type_map) + "\n")
    s = path / "set.000"
    s.mkdir(exist_ok=True)
    np.save(s / "coord.npy", np.array([a.positions.ravel() for a in frames]))
    np.save(s / "box.npy", np.array([a.cell[:].ravel() for a in frames]))
    np.save(s / "energy.npy", np.array([a.get_potential_energy() for a in frames]))
    np.save(s / "force.npy", np.array([a.get_forces().ravel() for a in frames]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dp", required=True, help="the dp executable of a DeePMD-kit installation")
    ap.add_argument("--data", default="benchmarks/results/sic/sic.extxyz")
    ap.add_argument("--out", default="benchmarks/results/sic/deepmd")
    ap.add_argument("--seconds", type=float, default=100.0)
    ap.add_argument("--model", choices=list(MODELS), default="small")
    ap.add_argument("--steps", type=int, default=20000, help="planned steps (the learning-rate schedule's length)")
    a = ap.parse_args(argv)
    import ase.io

    frames = ase.io.read(a.data, ":")
    train = [f for f in frames if f.info.get("set") != "test"]
    test = [f for f in frames if f.info.get("set") == "test"]
    out = Path(a.out) / a.model
    out.mkdir(parents=True, exist_ok=True)
    type_map = ["Si", "C"]
    write_system(train, out / "train", type_map)
    write_system(test, out / "test", type_map)
    m = MODELS[a.model]
    cfg = {
        "model": {"type_map": type_map,
                  "descriptor": {"type": "se_e2_a", "rcut": 5.29, "rcut_smth": 0.5, "sel": "auto",
                                 "neuron": m["neuron"], "axis_neuron": m["axis_neuron"], "seed": 1},
                  "fitting_net": {"neuron": m["fitting"], "resnet_dt": True, "seed": 1}},
        "learning_rate": {"type": "exp", "start_lr": 1e-3, "stop_lr": 3.5e-8, "decay_steps": max(a.steps // 100, 1)},
        "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000, "limit_pref_f": 1,
                 "start_pref_v": 0, "limit_pref_v": 0},
        "training": {"training_data": {"systems": [str((out / "train").resolve())], "batch_size": "auto"},
                     "numb_steps": a.steps, "seed": 1, "disp_file": "lcurve.out", "disp_freq": 100,
                     "save_freq": 100},
    }
    (out / "input.json").write_text(json.dumps(cfg, indent=1))
    env = dict(os.environ, OMP_NUM_THREADS="1", DP_INTRA_OP_PARALLELISM_THREADS="1",
               DP_INTER_OP_PARALLELISM_THREADS="1")
    t0 = time.perf_counter()
    with open(out / "train.log", "w") as log:
        proc = subprocess.Popen([a.dp, "--pt", "train", "input.json"], cwd=out, stdout=log, stderr=subprocess.STDOUT,
                                env=env)
        try:
            proc.wait(timeout=a.seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    elapsed = time.perf_counter() - t0
    curve = np.loadtxt(out / "lcurve.out", ndmin=2) if (out / "lcurve.out").exists() else np.zeros((0, 1))
    steps = int(curve[-1, 0]) if len(curve) else 0
    ckpts = sorted(out.glob("model.ckpt-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    ckpt = ckpts[-1].resolve() if ckpts else None
    if ckpt is None:
        print(f"no checkpoint after {elapsed:.0f} s (see {out / 'train.log'})")
        return 1
    r = subprocess.run([a.dp, "--pt", "test", "-m", str(ckpt), "-s", str((out / "test").resolve()),
                        "-n", str(len(test))], cwd=out, capture_output=True, text=True, env=env)
    text = r.stdout + r.stderr
    (out / "test.log").write_text(text)
    e = re.search(r"Energy RMSE/Natoms\s*:\s*([0-9.eE+-]+)", text)
    f = re.search(r"Force\s+RMSE\s*:\s*([0-9.eE+-]+)", text)
    if not (e and f):
        print(text[-2000:])
        return 1
    res = {"model": a.model, "seconds": elapsed, "steps": steps, "test_rmse_E_meV_per_atom": float(e.group(1)) * 1e3,
           "test_rmse_F_eV_per_A": float(f.group(1))}
    (out / "summary.json").write_text(json.dumps(res, indent=1) + "\n")
    print(f"DeePMD-kit ({a.model}, 1 thread) {elapsed:.0f} s, {steps} steps: test RMSE "
          f"{res['test_rmse_E_meV_per_atom']:.2f} meV/atom, {res['test_rmse_F_eV_per_A']:.3f} eV/A")
    return 0


if __name__ == "__main__":
    sys.exit(main())
