"""The particle mesh's FFTs: Eigen's FFT module (kissfft) against this project's own mixed-radix
(2, 3, 5) transform, side by side in one run, on the meshes of n2p2's 4G water box replicas in
the iterative mode (energy tolerance 1e-3): matrix-free products A0 x (spread, FFT, influence
function, inverse FFT, interpolation, real space), best of --repeat, and their largest difference.

    OMP_NUM_THREADS=1 python benchmarks/bench_fft.py [--reps 2,2,1 4,4,2]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=os.environ.get("HDNNP_FIXTURES", "../shared/fixtures"))
    ap.add_argument("--reps", nargs="*", default=["2,2,1", "4,4,2", "8,4,4"])
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    import hdnnp
    from hdnnp import _core
    from hdnnp.electrostatics import pme_parameters
    from hdnnp.fourth_generation import FourthGeneration

    d = os.path.join(a.fixtures, "n2p2_H2O_RPBE-D3_4G")
    pot = FourthGeneration(os.path.join(d, "potential"))
    base = hdnnp.read_input_data(os.path.join(d, "predict", "input.data"))[0]
    print(f"{'atoms':>7} {'mesh':>14} {'own (s)':>9} {'Eigen (s)':>10} {'own/Eigen':>9} {'max diff':>9}")
    for rep in a.reps:
        atoms = base.repeat(tuple(int(x) for x in rep.split(",")))
        n = len(atoms)
        sp = np.array([pot.elements.index(s) for s in atoms.get_chemical_symbols()])
        p = pme_parameters(1e-3, atoms.cell[:], n, max_sigma=float(pot.sigma.max()))
        x = np.random.default_rng(1).normal(size=n)
        times, ys = {}, {}
        for fft in ("own", "eigen"):
            op = _core.Electrostatics(np.ascontiguousarray(atoms.positions), np.ascontiguousarray(atoms.cell[:]),
                                      pot.sigma[sp], 1.0, p.eta, p.r_cut, p.k_cut, mesh=p.mesh, fft=fft)
            best = 1e9
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                ys[fft] = op.apply(x)
                best = min(best, time.perf_counter() - t0)
            times[fft] = best
        diff = np.abs(ys["own"] - ys["eigen"]).max()
        mesh = "x".join(map(str, p.mesh))
        print(f"{n:7d} {mesh:>14} {times['own']:9.4f} {times['eigen']:10.4f} {times['own'] / times['eigen']:9.2f} "
              f"{diff:9.1e}")


if __name__ == "__main__":
    main()
