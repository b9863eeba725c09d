"""Memory of the iterative 4G mode beyond the 2G cost: n2p2's H2O_RPBE-D3_4G potential on
replicas of its 384-atom water box, each size and mode in a fresh process (peak RSS).

    OMP_NUM_THREADS=1 python benchmarks/bench_4g_memory.py [--reps 4,4,2 4,4,4 8,4,4] [--ewald 1e-3]

Modes: "2g" is what a 2G evaluation with the same symmetry functions stores (the neighbour list,
the descriptors, the force pass of the core); "4g" is FourthGeneration.evaluate with the CG
solver and the particle-mesh reciprocal part (energy, forces, charges). The per-atom cost is the
slope of peak RSS over the number of atoms between the sizes (the process' constant part, Python
and the libraries, drops out); 4G beyond 2G is the difference of the slopes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import os, resource, sys, numpy as np
import hdnnp
from hdnnp import _core
from hdnnp.fourth_generation import FourthGeneration
mode, rep, fixtures, ewald = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
d = os.path.join(fixtures, "n2p2_H2O_RPBE-D3_4G")
pot = FourthGeneration(os.path.join(d, "potential"), ewald=ewald, solver="cg", tolerance=1e-6)
atoms = hdnnp.read_input_data(os.path.join(d, "predict", "input.data"))[0].repeat(tuple(int(x) for x in rep.split(",")))
if mode == "2g":
    pos, cell = np.ascontiguousarray(atoms.positions), np.ascontiguousarray(np.asarray(atoms.cell))
    sp = pot._species(atoms)
    nl = _core.neighbor_list(pos, cell, [True] * 3, pot.model.cutoff)[:4]
    out = pot.model.compute(pos, sp, len(atoms), *nl, forces=False, virial=False, descriptors=True, scaled=True)
    w = np.zeros(out["descriptors"].size)
    pot.model.compute(pos, sp, len(atoms), *nl, forces=True, virial=True, dEdG=w)
else:
    pot.compute(atoms, forces=True)
print(len(atoms), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fixtures", default=os.environ.get("HDNNP_FIXTURES", "../shared/fixtures"))
    ap.add_argument("--reps", nargs="*", default=["4,4,2", "4,4,4", "8,4,4"])
    ap.add_argument("--ewald", default="1e-3", help="energy tolerance of the accuracy mode")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    rss = {"2g": [], "4g": []}
    for rep in a.reps:
        for mode in ("2g", "4g"):
            out = subprocess.run([sys.executable, "-c", CHILD, mode, rep, os.path.abspath(a.fixtures), a.ewald],
                                 check=True, capture_output=True, text=True).stdout.split()
            rss[mode].append((int(out[0]), float(out[1])))
            print(f"{mode}  {out[0]:>7} atoms  peak RSS {float(out[1]):8.1f} MB", flush=True)
    rows = []
    for k in range(1, len(a.reps)):
        (n0, m2a), (n1, m2b) = rss["2g"][k - 1], rss["2g"][k]
        (_, m4a), (_, m4b) = rss["4g"][k - 1], rss["4g"][k]
        s2, s4 = (m2b - m2a) * 1024 / (n1 - n0), (m4b - m4a) * 1024 / (n1 - n0)
        rows.append({"from": n0, "to": n1, "kb_per_atom_2g": s2, "kb_per_atom_4g": s4, "beyond_2g": s4 - s2})
        print(f"{n0:>7} -> {n1:>7} atoms: 2G {s2:.2f} KB/atom, 4G {s4:.2f} KB/atom, beyond 2G {s4 - s2:.2f} KB/atom")
    n0, n1 = rss["2g"][0][0], rss["2g"][-1][0]
    s2 = (rss["2g"][-1][1] - rss["2g"][0][1]) * 1024 / (n1 - n0)
    s4 = (rss["4g"][-1][1] - rss["4g"][0][1]) * 1024 / (n1 - n0)
    print(f"overall {n0} -> {n1}: beyond 2G {s4 - s2:.2f} KB/atom (target <= 2)")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"rss_mb": rss, "slopes": rows, "beyond_2g_overall": s4 - s2}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
