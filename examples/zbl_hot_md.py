"""With and without the ZBL pair baseline: the same Cu-Au data and training, then dimers from
2 A to 0.5 A and 10 ps of MD at 3,000 K in LAMMPS.

    python examples/zbl_hot_md.py [output_folder] [--epochs 60] [--ps 10] [--temperature 3000]

Writes output_folder/summary.json (hold-out errors, dimer curves, how far each MD run got).
"""
import argparse

from hdnnp.workflow.baseline_check import run

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?", default="zbl-hot-md")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--ps", type=float, default=10.0)
    ap.add_argument("--temperature", type=float, default=3000.0)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    run(a.out, epochs=a.epochs, ps=a.ps, temperature=a.temperature, repeat=a.repeat)
