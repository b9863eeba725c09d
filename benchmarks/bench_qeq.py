"""Dense charge equilibration: the core's QEqDense (Eigen: Cholesky of A0 + diag J, constraint by
the Schur complement) against LAPACK's LU of the bordered matrix through SciPy (what the Python
4G path used before), side by side on n2p2's 4G water box and its replicas.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_qeq.py [--reps 1,1,1 2,2,1]

Per size: factorisation + charges + one adjoint solve, best of --repeat, and the largest
difference of the charges.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=os.environ.get("HDNNP_FIXTURES", "../shared/fixtures"))
    ap.add_argument("--reps", nargs="*", default=["1,1,1", "2,1,1", "2,2,1"])
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    import scipy.linalg

    import hdnnp
    from hdnnp import _core
    from hdnnp.fourth_generation import FourthGeneration

    d = os.path.join(a.fixtures, "n2p2_H2O_RPBE-D3_4G")
    pot = FourthGeneration(os.path.join(d, "potential"))
    base = hdnnp.read_input_data(os.path.join(d, "predict", "input.data"))[0]
    print(f"{'atoms':>6} {'scipy LU (s)':>13} {'QEqDense (s)':>13} {'ratio':>6} {'max |dQ|':>9}")
    for rep in a.reps:
        atoms = base.repeat(tuple(int(x) for x in rep.split(",")))
        species = pot._species(atoms)
        op, _ = pot.electrostatics(atoms, species, "dense")
        A0, J, n = op.dense(), pot.hardness[species], len(atoms)
        chi = pot.compute(atoms, solver="dense", extrapolation="ignore")["electronegativities"]
        rhs = np.random.default_rng(0).normal(size=n)
        t_lu, t_q = [], []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            K = np.zeros((n + 1, n + 1))
            K[:n, :n] = A0
            K[np.arange(n), np.arange(n)] += J
            K[n, :n] = K[:n, n] = 1.0
            lu = scipy.linalg.lu_factor(K, overwrite_a=True, check_finite=False)
            q1 = scipy.linalg.lu_solve(lu, np.concatenate([-chi, [0.0]]), check_finite=False)[:n]
            scipy.linalg.lu_solve(lu, np.concatenate([rhs, [0.0]]), check_finite=False)
            t_lu.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            qeq = _core.QEqDense(A0, J)
            q2 = qeq.solve(-chi, 0.0)
            qeq.solve(rhs, 0.0)
            t_q.append(time.perf_counter() - t0)
        print(f"{n:6d} {min(t_lu):13.4f} {min(t_q):13.4f} {min(t_lu) / min(t_q):6.2f} {np.abs(q1 - q2).max():9.1e}")


if __name__ == "__main__":
    main()
