"""Memory of training data: bytes per structure the trainer keeps (symmetry functions and their
derivatives), in double and single precision, and what 10^5 structures would take.

    python benchmarks/bench_train_memory.py [--fixtures DIR]

Structures: Cu-Au cells of 32 and 108 atoms from the demo's sampler (hdnnp fit's settings:
cutoff 5.94 A, 52 SFs per element), and the n2p2 H2O 2G fixture's training structures (~100
atoms; its input.nn, 57 SFs per element, cutoff 12 Bohr), when the fixtures are there. Reported:
`Prepared.nbytes` (what counts against `memory_budget_mb`), split into G and dG/dr, per atom and
per structure; the peak RSS of this process is printed for reference.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
from pathlib import Path

import numpy as np


def measure(settings, structures, precision: str):
    from hdnnp.training.trainer import Trainer, TrainingConfig

    tr = Trainer(settings, structures, TrainingConfig(test_fraction=0.0, validation_fraction=0.0,
                                                      descriptor_precision=precision))
    g = j = atoms = 0
    for k in range(len(structures)):
        p = tr.prepared(k)
        g += sum(a.nbytes for a in p.G.values())
        j += sum(a.nbytes for a in p.J.values()) + sum(a.nbytes for d in (p.pi, p.pj, p.prow, p.pd) for a in d.values())
        atoms += p.n_atoms
    return g, j, atoms


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fixtures", default=os.environ.get("HDNNP_FIXTURES", "../shared/fixtures"))
    a = ap.parse_args(argv)
    from ase.calculators.emt import EMT

    from hdnnp.training.data import from_ase
    from hdnnp.workflow.active_learning import label_structures
    from hdnnp.workflow.demo import _random_alloy
    from hdnnp.workflow.fit import FitConfig, write_settings

    rng = np.random.default_rng(0)
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (2, 3):
            frames = from_ase(label_structures([_random_alloy(rng, x, size, rattle=0.05) for x in (0.3, 0.5, 0.7)],
                                               EMT))
            d = Path(tmp) / f"cuau{size}"
            write_settings(d, frames, FitConfig(cutoff=5.94), log=lambda *x: None)
            cases.append((f"Cu-Au, {len(frames[0])} atoms", d, frames))
        h2o = Path(a.fixtures) / "n2p2_H2O_RPBE-D3_2G" / "train"
        if h2o.exists():
            import hdnnp

            frames = hdnnp.read_input_data(h2o / "input.data")[:5]
            cases.append((f"H2O fixture, {len(frames[0])} atoms", h2o, frames))
        print("| structures | precision | G per atom | dG/dr (+ pair indices) per atom | per structure | 10^5 structures |")
        print("|---|---|---:|---:|---:|---:|")
        for name, d, frames in cases:
            for prec in ("float64", "float32"):
                g, j, atoms = measure(d, frames, prec)
                per = (g + j) / len(frames)
                print(f"| {name} | {prec} | {g / atoms / 1e3:.2f} KB | {j / atoms / 1e3:.1f} KB | {per / 1e6:.2f} MB | "
                      f"{per * 1e5 / 1e9:.0f} GB |", flush=True)
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
