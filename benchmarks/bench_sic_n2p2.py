"""hdnnp train against n2p2's nnp-train on the held-out SiC set, with one n2p2 input.nn for both.

    python benchmarks/bench_sic_n2p2.py --n2p2 /path/to/n2p2/bin [--data benchmarks/results/sic/sic.extxyz]
        [--epochs 15] [--force-fraction 0.02] [--out /tmp/sic-n2p2]

n2p2 is not a dependency (no PyPI package): build it from its sources (libnnptrain, nnp-scaling,
nnp-train; GSL, BLAS and an MPI compiler from the system's packages) and pass the folder with its
executables. The data: bench_sic.py's 100 SiC cells (80 tagged train, 20 test). The input.nn: the
symmetry functions, scaling and 20-20 tanh networks `hdnnp fit` chose for these data, per-element
atom energies from a linear fit to the training energies (written as atom_energy lines, so neither
code fits offsets), and n2p2's Kalman-filter training keywords (full covariance, threshold
selection, force_weight 10, short_force_fraction as given, `--epochs` epochs). n2p2 trains on the
80 training cells (test_fraction 0); hdnnp train on the same 80 (no validation set: its training
error chooses the epoch; for n2p2 both its last epoch and the epoch the same rule chooses from
its learning curve are evaluated). Both on one thread, one after the other.
Both potentials are evaluated by hdnnp's predictor on the 20 test cells, which make no choice.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

N2P2_TRAINING = """
use_short_forces
random_seed {seed}
epochs {epochs}
updater_type 1
parallel_mode 0
jacobian_mode 1
update_strategy 0
selection_mode 2
task_batch_size_energy 1
task_batch_size_force 1
memorize_symfunc_results
test_fraction 0.0
force_weight 10.0
short_energy_fraction 1.0
short_force_fraction {force_fraction}
short_energy_error_threshold 0.00
short_force_error_threshold 1.00
rmse_threshold_trials 3
weights_min -1.0
weights_max 1.0
nguyen_widrow_weights_short
main_error_metric RMSEpa
write_weights_epoch 1
kalman_type 0
kalman_epsilon 1.0E-2
kalman_q0 0.01
kalman_qtau 2.302
kalman_qmin 1.0E-6
kalman_eta 0.01
kalman_etatau 2.302
kalman_etamax 1.0
"""


def test_errors(directory, test):
    import hdnnp

    pot = hdnnp.load(directory)
    de, df = [], []
    for a in test:
        r = pot.evaluate(a, extrapolation="ignore", native=True)   # (eV and Angstrom, as the data)
        de.append((r.energy - a.info["energy"]) / len(a))
        df.append((r.forces - a.arrays["ref_forces"]).ravel())
    return float(np.sqrt(np.mean(np.square(de)))) * 1e3, float(np.sqrt(np.mean(np.square(np.concatenate(df)))))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n2p2", required=True, help="folder with n2p2's nnp-scaling and nnp-train")
    ap.add_argument("--data", default="benchmarks/results/sic/sic.extxyz")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--force-fraction", type=float, default=0.02)
    ap.add_argument("--out", default="/tmp/sic-n2p2")
    ap.add_argument("--seed", type=int, default=12346, help="random_seed of the input.nn (both codes)")
    ap.add_argument("--reuse-n2p2", action="store_true", help="keep the n2p2 run of an earlier call (and its time)")
    a = ap.parse_args(argv)
    import ase.io

    import hdnnp
    from hdnnp.training.data import from_ase
    from hdnnp.training.trainer import fit_atomic_energies
    from hdnnp.workflow.fit import FitConfig, write_settings

    frames = from_ase(ase.io.read(a.data, ":"))
    train = [f for f in frames if f.info.get("set") == "train"]
    test = [f for f in frames if f.info.get("set") == "test"]
    out = Path(a.out)
    if not a.reuse_n2p2:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "hdnnp", ignore_errors=True)
    write_settings(out / "fit", train, FitConfig(), log=lambda *x: None)
    fitted = (out / "fit" / "input.nn").read_text().splitlines()
    elements = next(l.split()[1:] for l in fitted if l.startswith("elements"))
    offsets = fit_atomic_energies(train, elements)
    keep = ("number_of_elements", "elements", "cutoff_type", "scale_", "center_", "global_", "symfunction_short")
    text = "\n".join(["# hdnnp: length_unit=Angstrom energy_unit=eV"] + [l for l in fitted if l.startswith(keep) and not l.startswith("symfunction")] +
                     [f"atom_energy {e} {x:.10f}" for e, x in zip(elements, offsets)] +
                     [N2P2_TRAINING.format(epochs=a.epochs, force_fraction=a.force_fraction, seed=a.seed)] +
                     [l for l in fitted if l.startswith("symfunction_short")]) + "\n"
    rows = []
    env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")

    # n2p2
    d = out / "n2p2"
    if a.reuse_n2p2 and (d / "seconds").exists():
        seconds = float((d / "seconds").read_text())
    else:
        d.mkdir()
        (d / "input.nn").write_text(text)
        hdnnp.write_input_data(d / "input.data", train)
        n2p2 = Path(a.n2p2)
        t0 = time.perf_counter()
        for cmd in ([str(n2p2 / "nnp-scaling"), "500"], [str(n2p2 / "nnp-train")]):
            r = subprocess.run(cmd, cwd=d, env=env, capture_output=True, text=True)
            if r.returncode:
                sys.exit(f"{cmd[0]} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        seconds = time.perf_counter() - t0
        (d / "seconds").write_text(f"{seconds}\n")
    # its last epoch, and the epoch hdnnp's rule would choose on the training errors (min log RMSE_E
    # + log RMSE_F, learning-curve.out columns 2 and 10): what hdnnp train does without a validation set
    curve = np.loadtxt(d / "learning-curve.out")[1:]
    chosen = int(curve[np.argmin(np.log(curve[:, 1]) + np.log(curve[:, 9])), 0])
    for epoch, name in ((a.epochs, "n2p2 nnp-train (+ nnp-scaling), last epoch"),
                        (chosen, f"n2p2, epoch {chosen} (chosen on training errors)")):
        for f in sorted(d.glob(f"weights.*.{epoch:06d}.out")):
            shutil.copy(f, d / (f.name.split(".")[0] + "." + f.name.split(".")[1] + ".data"))
        rows.append((name, seconds) + test_errors(d, test))
        print(rows[-1], flush=True)

    # hdnnp train, the same input.nn
    h = out / "hdnnp"
    h.mkdir()
    (h / "input.nn").write_text(text)
    ase.io.write(h / "train.extxyz", [f for f in ase.io.read(a.data, ":") if f.info.get("set") == "train"])
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "hdnnp.cli", "train", str(h), "--data", str(h / "train.extxyz"), "-o",
                        str(h / "potential"), "--threads", "1", "--validation-fraction", "0", "--test-fraction", "0",
                        "-q"], env=env, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"hdnnp train failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    seconds = time.perf_counter() - t0
    import json

    best = json.loads((h / "potential" / "training.json").read_text()).get("best_epoch")
    rows.append((f"hdnnp train, epoch {best} (chosen on training errors)", seconds) + test_errors(h / "potential", test))
    print(rows[-1], flush=True)

    print(f"\n{len(train)} training and {len(test)} test SiC cells; {a.epochs} epochs, short_force_fraction "
          f"{a.force_fraction}, one thread each")
    print("| code | wall time (s) | test RMSE E (meV/atom) | test RMSE F (eV/A) |")
    print("|---|---:|---:|---:|")
    for name, s, e, f in rows:
        print(f"| {name} | {s:.1f} | {e:.2f} | {f:.3f} |")
    print(f"speed ratio n2p2 / hdnnp: {rows[0][1] / rows[-1][1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
