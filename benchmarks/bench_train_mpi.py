"""Data-parallel training: seconds per epoch of `hdnnp train` on 1 and 2 MPI processes.

    python benchmarks/bench_train_mpi.py [--fixtures DIR] [--epochs 5] [--rounds 2]
        [--optimizers adam kalman kalman-element] [--batch 8] [--json out.json]

Data: the n2p2 H2O 2G fixture's training folder (20 structures of ~100 atoms, written --repeat
times: 200 by default, for timing only; its input.nn and scaling.data; 57 SFs per element, 25-25
networks). Adam: batches of --batch structures (shared out
over the processes); Kalman: 2 observations per update (kalman_streams 2, on one process too, so
both runs take the same steps; random selection: the threshold selection is one observation per
update; kalman-element / kalman-layer: the decoupled filters, whose blocks are shared out whole).
One thread per process. The epoch time is the learning curve's
`seconds` column (updates and the epoch's error evaluation), averaged over epochs 2.. (epoch 1
includes computing the descriptors). Rounds alternate the two runs; the machine is shared: compare
ratios from one run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def run(folder: Path, out: Path, epochs: int, processes: int) -> float:
    cmd = [sys.executable, "-m", "hdnnp.cli", "train", str(folder), "-q", "--epochs", str(epochs), "-o", str(out),
           "--set", "kalman_streams=2"]
    if processes > 1:
        cmd = [str(Path(sys.prefix) / "bin" / "mpiexec"), "-n", str(processes)] + cmd
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(r.stdout[-2000:] + r.stderr[-2000:])
    curve = np.loadtxt(out / "learning-curve.out")
    return float(curve[2:, 9].mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fixtures", default=os.environ.get("HDNNP_FIXTURES", "../shared/fixtures"))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--optimizers", nargs="*", default=["adam", "kalman", "kalman-element"],
                    help="adam, kalman (n2p2's full covariance), kalman-element / kalman-layer (decoupled)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=10,
                    help="the fixture's 20 structures written this many times (a data set of 20 x N for timing)")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    src = Path(a.fixtures).resolve() / "n2p2_H2O_RPBE-D3_2G" / "train"
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for opt in a.optimizers:
            folder = Path(tmp) / opt
            shutil.copytree(src, folder)
            frames = (src / "input.data").read_text()
            (folder / "input.data").write_text(frames * a.repeat)
            # the optimizer's keywords replace the fixture's lines
            keys = ({"updater_type": "0", "gradient_type": "1", "task_batch_size_energy": str(a.batch)}
                    if opt == "adam" else {"updater_type": "1", "selection_mode": "0"})
            if opt.startswith("kalman-"):
                keys["kalman_decoupling"] = opt.split("-")[1]
            lines = (folder / "input.nn").read_text().splitlines()
            lines = [ln for ln in lines if not (ln.split() and ln.split()[0] in keys)]
            lines += [f"{k} {v}" for k, v in keys.items()]
            (folder / "input.nn").write_text("\n".join(lines) + "\n")
            for rnd in range(a.rounds):
                t = {p: run(folder, Path(tmp) / f"{opt}-{p}-{rnd}", a.epochs, p) for p in (1, 2)}
                results.append({"optimizer": opt, "round": rnd, "seconds_1": t[1], "seconds_2": t[2],
                                "speedup": t[1] / t[2]})
                print(f"{opt:14s} round {rnd}: {t[1]:.3f} s/epoch on 1 process, {t[2]:.3f} on 2: "
                      f"{t[1] / t[2]:.2f}x", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
