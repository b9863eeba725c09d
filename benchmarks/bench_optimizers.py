"""Time to accuracy of the optimisers: error on unseen structures against training wall time.

    python benchmarks/bench_optimizers.py [--seconds 40] [--runs adam kalman-element ...]
        [--out benchmarks/results/optimizers] [--seed 1]

Data (generated, EMT as the reference; hdnnp.workflow.demo's samplers): 78 Cu-Au structures
(random fcc alloys across all compositions, strained, sheared and displaced by 0.02-0.15 A;
ordered alloys; vacancies; (111)/(100)/(110) slabs; EMT MD at 300-1500 K), split 80/10/10 into
training / validation / test, and the unseen set: 23 structures never used for any choice
(random alloys with 10-90 % Au at +-3 % strain displaced by 0.1 A in 108-atom cells, and two
(100) slabs larger than any training cell). Settings as `hdnnp fit` chooses them from the data
(cutoff, 52 symmetry functions per element, 20-20 tanh networks, ZBL baseline, fitted offsets).

Each run trains for --seconds of wall time (one process, the machine's threads; the epochs' own
error evaluation on the three sets counts); after every epoch the errors of the weights the
validation set would choose (the best epoch so far) on the unseen structures are recorded (that
evaluation is not counted in the time). Output: one
curve file per run (time, epoch, validation and unseen RMSEs) and errors-vs-time.png.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RUNS = {
    # the previous `hdnnp fit` / demo default
    "adam": dict(optimizer="adam", learning_rate=3e-3, learning_rate_decay=0.99, batch_size=2),
    # the best Adam variant of a small scan (batch 1-8, lr 1e-3-1e-2, energy weight 1-100)
    "adam-e10": dict(optimizer="adam", learning_rate=1e-2, learning_rate_decay=0.98, batch_size=4,
                     energy_weight=10.0),
    "adam-norm": dict(optimizer="adam", learning_rate=3e-3, learning_rate_decay=0.99, batch_size=2, normalize=True),
    "kalman-element-norm": dict(optimizer="kalman", force_fraction=0.1, kalman_decoupling="element", normalize=True),
    # n2p2's defaults: full covariance, 2 % of the force components per epoch
    "kalman-n2p2": dict(optimizer="kalman", force_fraction=0.02),
    "kalman": dict(optimizer="kalman", force_fraction=0.1),
    "kalman-element": dict(optimizer="kalman", force_fraction=0.1, kalman_decoupling="element"),
    "kalman-layer": dict(optimizer="kalman", force_fraction=0.1, kalman_decoupling="layer"),
}


def data(seed: int):
    from ase.calculators.emt import EMT

    from hdnnp.training.data import from_ase
    from hdnnp.workflow.active_learning import label_structures
    from hdnnp.workflow.demo import sample_cu_au, unseen_cu_au

    pool = label_structures(sample_cu_au(np.random.default_rng(seed), n_alloys=60, n_md=12, md_reference=EMT), EMT)
    unseen = label_structures(unseen_cu_au(np.random.default_rng(seed + 98)), EMT)
    return from_ase(pool), from_ase(unseen)


def run(name: str, spec: dict, pool, unseen, seconds: float, work: Path, seed: int):
    from hdnnp.training.trainer import Trainer, TrainingConfig
    from hdnnp.workflow.fit import FitConfig, write_settings

    settings = work / name
    shutil.rmtree(settings, ignore_errors=True)
    write_settings(settings, pool, FitConfig(), log=lambda *a: None)
    spec = dict(spec)
    decoupling = spec.pop("kalman_decoupling", "none")
    normalize = spec.pop("normalize", False)
    cfg = TrainingConfig(epochs=100000, time_limit=seconds, fit_offsets=True, seed=seed, **spec)
    cfg.kalman.decoupling = decoupling

    class Recording(Trainer):
        """Records the unseen errors of the best-so-far weights after every epoch."""

        def _record(self, epoch, seconds_, log):
            st = super()._record(epoch, seconds_, log)
            t_eval = time.perf_counter()
            better = self.score(st) < self.best_score
            now = self.parameters()
            if not better and self.best_parameters is not None:
                self.set_parameters(self.best_parameters)
            e = self.errors(unseen_idx)
            self.set_parameters(now)
            clock["excluded"] += time.perf_counter() - t_eval
            self.config.time_limit = seconds + clock["excluded"]   # (the budget is training time)
            rows.append((time.perf_counter() - clock["start"] - clock["excluded"], epoch,
                         st.rmse_energy_validation, st.rmse_force_validation, e[0], e[2]))
            return st

    rows, clock = [], {"excluded": 0.0}
    # the pool's split as `hdnnp train` makes it; the unseen structures ride along tagged as test
    # (offsets, scaling and the baseline's radii come from the training set only), reported apart
    from hdnnp.training.trainer import tag_split

    structures = [a.copy() for a in pool] + [a.copy() for a in unseen]
    tag_split(structures[:len(pool)], cfg)
    if normalize:   # n2p2's nnp-norm units, from the training structures
        from hdnnp.training.trainer import normalize_input_nn

        normalize_input_nn(settings, [a for a in structures[:len(pool)] if a.info["set"] == "train"], True)
    for a in structures[len(pool):]:
        a.info["set"] = "test"
    n = len(pool)
    unseen_idx = list(range(n, n + len(unseen)))
    tr = Recording(settings, structures, cfg)
    tr.test_idx = np.array([k for k in tr.test_idx if k < n])
    clock["start"] = time.perf_counter()
    tr.train(None, progress=False, log=lambda *a: None)
    return np.array(rows), tr


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    ap.add_argument("--out", default="benchmarks/results/optimizers")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    pool, unseen = data(a.seed)
    print(f"{len(pool)} structures (80/10/10 split), {len(unseen)} unseen; {a.seconds:g} s per run")
    summary = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.runs:
            rows, tr = run(name, RUNS[name], pool, unseen, a.seconds, Path(tmp), a.seed)
            np.savetxt(out / f"{name}.dat", rows, header="seconds epoch rmse_E_validation(eV/atom) "
                       "rmse_F_validation(eV/A) rmse_E_unseen(eV/atom) rmse_F_unseen(eV/A)  (best-so-far weights)")
            b = rows[-1]
            summary[name] = {"epochs": int(b[1]), "best_epoch": tr.best_epoch, "seconds": float(b[0]),
                             "unseen_rmse_E_meV_per_atom": b[4] * 1e3, "unseen_rmse_F_eV_per_A": b[5],
                             "validation_rmse_E_meV_per_atom": tr.history[tr.best_epoch].rmse_energy_validation * 1e3,
                             "validation_rmse_F_eV_per_A": tr.history[tr.best_epoch].rmse_force_validation}
            for t_mark in (10.0, 20.0):
                r = rows[rows[:, 0] <= t_mark]
                if len(r):
                    summary[name][f"unseen_at_{t_mark:g}s"] = [r[-1, 4] * 1e3, r[-1, 5]]
            s = summary[name]
            print(f"{name:15s} {s['epochs']:4d} epochs (best {s['best_epoch']:3d}) in {s['seconds']:5.1f} s: unseen "
                  f"E {s['unseen_rmse_E_meV_per_atom']:6.2f} meV/atom, F {s['unseen_rmse_F_eV_per_A']:.4f} eV/A "
                  f"(validation {s['validation_rmse_E_meV_per_atom']:.2f}, {s['validation_rmse_F_eV_per_A']:.4f})",
                  flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for name in a.runs:
        rows = np.loadtxt(out / f"{name}.dat", ndmin=2)
        ax[0].semilogy(rows[:, 0], rows[:, 4] * 1e3, label=name)
        ax[1].semilogy(rows[:, 0], rows[:, 5], label=name)
    ax[0].set_ylabel("unseen energy RMSE (meV/atom)")
    ax[1].set_ylabel("unseen force RMSE (eV/A)")
    for x in ax:
        x.set_xlabel("training wall time (s)")
        x.grid(True, which="both", alpha=0.3)
    ax[0].legend()
    fig.tight_layout()
    fig.savefig(out / "errors-vs-time.png", dpi=110)


if __name__ == "__main__":
    sys.exit(main())
