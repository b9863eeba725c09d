"""Cost of the ZBL pair baseline (hdnnp_zbl) relative to a 2G evaluation, side by side.

    python benchmarks/bench_baseline.py [--rep 2 2 2] [--steps 3] [--threads 1]

n2p2's H2O_RPBE-D3_2G potential (Bohr, Ha) is copied twice into a temporary folder: once as it
is and once with a baseline for every element pair (`hdnnp_zbl` radii from the shortest
distances of its 1,080-atom box, as `hdnnp train` derives them). `hdnnp-bench` runs both on the
same replicated box, alternating, and reports the baseline's own time (it times the baseline
alone within the same run) and the with/without ratio of whole evaluations.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile



def fixtures():
    return os.environ.get("HDNNP_FIXTURES") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                            "shared", "fixtures")


def main():
    from hdnnp.bench_path import bench_executable

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rep", nargs=3, type=int, default=[2, 2, 2])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    import hdnnp
    from hdnnp import baseline as zbl

    src = os.path.join(fixtures(), "n2p2_H2O_RPBE-D3_2G")
    data = os.path.join(src, "predict", "input.data")
    tmp = tempfile.mkdtemp(prefix="hdnnp-bench-zbl-")
    plain, withb = os.path.join(tmp, "plain"), os.path.join(tmp, "zbl")
    for d in (plain, withb):
        shutil.copytree(os.path.join(src, "potential"), d)
    atoms = hdnnp.read_input_data(data)
    dmin = zbl.shortest_distances(atoms, ["H", "O"], 12.0)
    lines = ["# hdnnp: length_unit=Bohr energy_unit=Ha"]
    for (x, y), d in sorted(dmin.items()):
        ri, ro = zbl.suggest_radii(d)
        lines.append(f"hdnnp_zbl {x} {y} {ri!r} {ro!r}   # d_min {d:.4f} bohr")
    with open(os.path.join(withb, "input.nn"), "a") as fh:
        fh.write("\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    exe = bench_executable()
    times = {"plain": [], "zbl": [], "base": []}
    for _ in range(a.rounds):
        for name, d in (("plain", plain), ("zbl", withb)):
            out = subprocess.run([exe, d, data, "--rep", *map(str, a.rep), "--steps", str(a.steps), "--threads",
                                  str(a.threads)], capture_output=True, text=True, check=True).stdout
            times[name].append(float(re.search(r"time SF\+NN\+forces\s+([\d.]+)", out).group(1)))
            m = re.search(r"time ZBL baseline\s+([\d.]+) s \(([\d.]+)%", out)
            if m:
                times["base"].append(float(m.group(1)))
            atoms_line = re.search(r"atoms\s+(\d+)", out).group(1)
    best = {k: min(v) for k, v in times.items()}
    print(f"{atoms_line} atoms, {a.threads} thread(s), best of {a.rounds} x {a.steps} steps:")
    print(f"  2G energy+forces+virial, no baseline:   {best['plain']:.4f} s")
    print(f"  2G energy+forces+virial, with baseline: {best['zbl']:.4f} s (ratio {best['zbl'] / best['plain']:.4f})")
    print(f"  the baseline alone:                     {best['base']:.5f} s ({100 * best['base'] / best['plain']:.2f}% "
          f"of a 2G evaluation)")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
