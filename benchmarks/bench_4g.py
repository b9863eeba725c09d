"""4G prediction benchmark: n2p2's H2O_RPBE-D3_4G potential on its 384-atom water box and
replicas of it (768 = 2x1x1, 1,536 = 2x2x1, ...), energy + forces (+ charges) per evaluation.

    OMP_NUM_THREADS=1 python benchmarks/bench_4g.py [--reps 1,1,1 2,1,1 2,2,1] [--solver dense]
        [--ewald n2p2|TOL] [--repeat 3] [--json out.json]

Per size: wall time of one evaluation (best of --repeat, everything included: neighbour lists,
symmetry functions, networks, Ewald, the solves, forces), its parts, the Ewald parameters and
the peak RSS of the process. n2p2's nnp-predict on this machine kind (issue 5, one core,
n2p2-identical Kolafa-Perram Ewald, dense QR): 384 / 768 / 1,536 atoms 0.48 / 1.94 / 8.26 s,
2.0 GB at 1,536 atoms.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time

N2P2_SECONDS = {384: 0.48, 768: 1.94, 1536: 8.26}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fixtures", default=os.environ.get("HDNNP_FIXTURES", "../shared/fixtures"))
    ap.add_argument("--reps", nargs="*", default=["1,1,1", "2,1,1", "2,2,1"])
    ap.add_argument("--solver", default="dense", choices=["dense", "cg"])
    ap.add_argument("--ewald", default="n2p2", help="'n2p2' or an energy tolerance (accuracy mode)")
    ap.add_argument("--tolerance", type=float, default=1e-8, help="CG relative residual")
    ap.add_argument("--reciprocal", default="auto", choices=["auto", "mesh", "ewald"],
                    help="accuracy mode with CG: particle mesh (auto) or Ewald structure factors")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    import hdnnp
    from hdnnp.fourth_generation import FourthGeneration

    name = "n2p2_H2O_RPBE-D3_4G"
    ewald = a.ewald if a.ewald == "n2p2" else float(a.ewald)
    pot = FourthGeneration(os.path.join(a.fixtures, name, "potential"), ewald=ewald, solver=a.solver,
                           tolerance=a.tolerance, reciprocal=a.reciprocal)
    base = hdnnp.read_input_data(os.path.join(a.fixtures, name, "predict", "input.data"))[0]
    rows = []
    for rep in a.reps:
        nx, ny, nz = (int(x) for x in rep.split(","))
        atoms = base.repeat((nx, ny, nz))
        best = None
        for _ in range(a.repeat):
            # (cold starts: compute() without warm_start solves from scratch)
            t = time.perf_counter()
            r = pot.compute(atoms, forces=True)
            dt = time.perf_counter() - t
            best = dt if best is None else min(best, dt)
        n = len(atoms)
        row = {"atoms": n, "seconds": best, "solver": r["solver"], "ewald": {k: (float(v) if isinstance(v, (int, float)) else v)
                                                                              for k, v in r["ewald"].items()},
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
               "energy": r["energy"]}
        if n in N2P2_SECONDS:
            row["n2p2_seconds"] = N2P2_SECONDS[n]
            row["speedup_vs_n2p2"] = N2P2_SECONDS[n] / best
        rows.append(row)
        extra = f"  n2p2 {N2P2_SECONDS[n]:.2f} s -> {N2P2_SECONDS[n] / best:.1f}x" if n in N2P2_SECONDS else ""
        e = row["ewald"]
        print(f"{n:7d} atoms  {best:8.3f} s  ({a.solver}, {r['solver'].get('iterations', '')})  "
              f"eta {e['eta']:.2f} r_cut {e['r_cut']:.1f} k_cut {e['k_cut']:.3f} n_k {int(e['n_kvectors'])} "
              f"mesh {e.get('mesh', '-')}  "
              f"peak RSS {row['peak_rss_mb']:.0f} MB{extra}", flush=True)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
