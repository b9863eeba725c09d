"""4G training benchmark: n2p2's H2O_RPBE-D3_4G training set (20 x 48 atoms) with its own
train/input.nn (Kalman filter, threshold selection, force_weight 10, 2.5 % of the force
components per epoch), both stages.

    OMP_NUM_THREADS=1 python benchmarks/bench_4g_train.py [--epochs 10] [--json out.json]

Reports per stage the one-time set-up (descriptors and their derivatives; stage 2 also the
charges, electrostatic energies and forces and dQ/dR of every structure) and the median wall
time of an epoch (updates plus the train/test error pass), and the final errors. n2p2 on this
machine kind: stage 2 about 3.1 s per epoch on 2 MPI ranks (issue 5); 84 s for the whole
10-epoch stage-2 run on one core and 11.5 s for stage 1 (fixture PROVENANCE.md).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import warnings

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fixtures", default=os.environ.get("HDNNP_FIXTURES", "../shared/fixtures"))
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    import hdnnp
    from hdnnp.training.fourth_generation import ChargeTrainer, ShortTrainer
    from hdnnp.training.n2p2 import config_from_input_nn

    src = os.path.join(a.fixtures, "n2p2_H2O_RPBE-D3_4G", "train")
    structs = hdnnp.read_input_data(os.path.join(src, "input.data"))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for f in os.listdir(src):
            if f != "input.data":
                shutil.copy(os.path.join(src, f), tmp)
        for stage, cls in ((1, ChargeTrainer), (2, ShortTrainer)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cfg = config_from_input_nn(tmp, stage=stage, epochs=a.epochs)
            t0 = time.perf_counter()
            tr = cls(tmp, structs, cfg)   # stage 2 uses n2p2's stage-1 files, as n2p2's test does
            tr.compute_scaling()
            for k in range(len(structs)):
                tr.data(k) if stage == 1 else tr.prepared(k)
            setup = time.perf_counter() - t0
            t0 = time.perf_counter()
            hist = tr.train(None, progress=False)
            total = time.perf_counter() - t0
            epoch = float(np.median([h.seconds for h in hist[1:]]))
            last = hist[-1]
            errors = ({"charge_train": last.rmse_charge_train, "charge_test": last.rmse_charge_test} if stage == 1 else
                      {"energy_train": last.rmse_energy_train, "energy_test": last.rmse_energy_test,
                       "force_train": last.rmse_force_train, "force_test": last.rmse_force_test})
            out[f"stage{stage}"] = {"setup_s": setup, "epoch_s": epoch, "train_s": total, **errors}
            print(f"stage {stage}: set-up {setup:.2f} s, epoch {epoch:.3f} s (median of {len(hist) - 1}), "
                  f"{a.epochs} epochs incl. error passes {total:.2f} s; final RMSE "
                  + ", ".join(f"{k} {v:.3e}" for k, v in errors.items()))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
