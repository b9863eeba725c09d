"""Python-API prediction benchmark: atom-steps/s for energy+forces+stress on a replicated
structure, neighbour list included, with 1 and N threads.

    python benchmarks/bench_python.py POTENTIAL_DIR INPUT.data [--rep 2 2 2] [--steps 3]
"""
import argparse
import time

import hdnnp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("potential")
    ap.add_argument("input")
    ap.add_argument("--rep", type=int, nargs=3, default=[1, 1, 1])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    a = ap.parse_args()
    atoms = hdnnp.read_input_data(a.input)[0].repeat(a.rep)
    for t in a.threads:
        pot = hdnnp.Potential(a.potential, threads=t, warn=False)
        pot.evaluate(atoms, native=True, extrapolation="ignore")  # warm-up
        t0 = time.perf_counter()
        for _ in range(a.steps):
            r = pot.evaluate(atoms, native=True, extrapolation="ignore")
        dt = (time.perf_counter() - t0) / a.steps
        print(f"{len(atoms)} atoms, {t} thread(s): {dt:.3f} s/step, {len(atoms) / dt:.0f} atom-steps/s, "
              f"E = {r.energy:.10e}")


if __name__ == "__main__":
    main()
