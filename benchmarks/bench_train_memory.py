"""Memory of training data: bytes per structure the trainer keeps (symmetry functions and their
derivatives), in double and single precision, and what 10^5 structures would take.

    python benchmarks/bench_train_memory.py [--fixtures DIR]

Structures: Cu-Au cells of 32 and 108 atoms from the demo's sampler (hdnnp fit's settings:
cutoff 5.94 A, 52 SFs per element), and the n2p2 H2O 2G fixture's training structures (~100
atoms; its input.nn, 57 SFs per element, cutoff 12 Bohr), when the fixtures are there. Reported:
`Prepared.nbytes` (what counts against `memory_budget_mb`), split into G and dG/dr, per atom and
per structure; the peak RSS of this process is printed for reference. With `--streamed N`:
what structures beyond `memory_budget_mb` cost instead (G only; derivatives contracted in the
core on every use): resident memory of N of them, and per-structure times of preparation and of
Adam and Kalman epochs, stored vs streamed, side by side.

    python benchmarks/bench_train_memory.py --streamed 10000 --threads 1
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
    ap.add_argument("--streamed", type=int, default=0, metavar="N",
                    help="also: N streamed structures' memory, and stored vs streamed epoch times")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    from ase.calculators.emt import EMT

    from hdnnp.training.data import from_ase
    from hdnnp.workflow.active_learning import label_structures
    from hdnnp.workflow.demo import _random_alloy
    from hdnnp.workflow.fit import FitConfig, write_settings

    if a.streamed:   # (alone: its memory is measured from a fresh heap)
        streamed(a.streamed, a.threads)
        return 0
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


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def streamed(n: int, threads: int):
    """Structures beyond memory_budget_mb keep G only (their derivatives are contracted in the
    core on every use): the resident memory of n 32-atom Cu-Au structures prepared that way, and
    the time per structure of preparation and of Adam and Kalman epochs, stored vs streamed,
    measured side by side on the same 200 structures."""
    import time

    from ase.calculators.emt import EMT

    from hdnnp.training.data import from_ase
    from hdnnp.training.kalman import KalmanSettings
    from hdnnp.training.trainer import Trainer, TrainingConfig
    from hdnnp.workflow.active_learning import label_structures
    from hdnnp.workflow.demo import _random_alloy
    from hdnnp.workflow.fit import FitConfig, write_settings

    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "cuau"
        # memory at scale first (a fresh heap): n structures, streamed
        frames = from_ase(label_structures([_random_alloy(rng, x, 2, rattle=0.05) for x in rng.uniform(0.1, 0.9, n)],
                                           EMT))
        write_settings(d, frames[:200], FitConfig(cutoff=5.94), log=lambda *x: None)
        base = rss_mb()
        tr = Trainer(d, frames, TrainingConfig(test_fraction=0.0, validation_fraction=0.0, epochs=1,
                                               memory_budget_mb=0.0, threads=threads, batch_size=8))
        after_init = rss_mb()
        t = time.perf_counter()
        tr.compute_scaling()
        for k in range(len(frames)):
            tr.prepared(k)
        prep = time.perf_counter() - t
        after = rss_mb()
        t = time.perf_counter()
        tr._adam = {"m": [np.zeros(x.n_parameters) for x in tr.nets], "v": [np.zeros(x.n_parameters) for x in tr.nets],
                    "step": 0, "lr": 1e-3}
        tr._epoch_adam()
        epoch = time.perf_counter() - t
        per = (after - after_init) * 2 ** 20 / n
        print(f"\n{n} streamed structures of 32 atoms: resident memory {base:.0f} MB with the ASE structures, "
              f"+{after_init - base:.0f} MB trainer, +{after - after_init:.0f} MB prepared ({per / 1e3:.1f} KB per "
              f"structure, {per / 32 / 1e3:.2f} KB per atom; 10^5 structures: {per * 1e5 / 2 ** 30:.1f} GB); "
              f"preparation {prep:.0f} s, one Adam epoch {epoch:.0f} s; peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f} MB")
        del tr, frames
        small = from_ase(label_structures([_random_alloy(rng, x, 2, rattle=0.05) for x in rng.uniform(0.1, 0.9, 200)],
                                          EMT))
        print(f"\n{threads} thread(s); 200 Cu-Au structures of 32 atoms, ms per structure (each epoch: its updates "
              f"and the error evaluation of the training set):")
        print("| optimiser | derivatives | preparation | epoch 1 | epoch 2 |")
        print("|---|---|---:|---:|---:|")
        for opt in ("adam", "kalman"):
            for budget, name in ((1e6, "stored"), (0.0, "streamed")):
                tr = Trainer(d, small, TrainingConfig(test_fraction=0.0, validation_fraction=0.0, epochs=0,
                                                      memory_budget_mb=budget, threads=threads, optimizer=opt,
                                                      batch_size=8, force_fraction=0.1,
                                                      kalman=KalmanSettings(decoupling="element")))
                t0 = time.perf_counter()
                tr.train(None, progress=False, log=lambda *x: None)   # scaling, preparation, epoch-0 errors
                t1 = time.perf_counter()
                per = []
                for _ in range(2):
                    t = time.perf_counter()
                    tr._epoch_adam() if opt == "adam" else tr._epoch_kalman()
                    tr.errors(tr.train_idx)
                    per.append((time.perf_counter() - t) / len(small) * 1e3)
                print(f"| {opt} | {name} | {(t1 - t0) / len(small) * 1e3:.1f} | {per[0]:.1f} | {per[1]:.1f} |",
                      flush=True)


if __name__ == "__main__":
    sys.exit(main())
