"""Data-parallel training (mpiexec -n 2 hdnnp train): the same weights as one process after three
epochs, with Adam (a batch's structures shared out, gradients summed) and with the Kalman filter
(n2p2's multi-stream update: one process with kalman_streams 2 takes the same steps); the
multi-observation Kalman update against its formulas; a resume on 2 processes continues exactly."""
import subprocess
import sys

import numpy as np
import pytest

import hdnnp
from mpi_util import MPIEXEC, assert_same_weights, require_mpi, run, weights
from test_training import BY_HAND, KalmanByHand, reference_data



@pytest.mark.parametrize("ktype", [0, 1])
def test_kalman_update_many_by_hand(ktype):
    """Two updates of three observations each of a 5-weight filter against the dense formulas
    X = P H^T, A = H X + 1/eta I (or lambda I), K = X A^-1, P <- P - K X^T (/lambda) + q I."""
    from hdnnp.training.kalman import KalmanFilter, KalmanSettings

    kf = KalmanFilter(5, KalmanSettings(kalman_type=ktype, **BY_HAND), updates_per_epoch=2)
    ref = KalmanByHand(5, ktype)
    rng = np.random.default_rng(4)
    w = rng.normal(size=5)
    wr = w.copy()
    for _ in range(2):
        H, xi = rng.normal(size=(3, 5)), rng.normal(size=3)
        w = kf.update_many(w, H, xi)
        wr = wr + ref.step(H, xi)
        np.testing.assert_allclose(w, wr, rtol=1e-12)
        np.testing.assert_allclose(np.triu(kf.P), np.triu(ref.P), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("optimizer", ["adam", "kalman", "kalman-element", "kalman-layer", "kalman-threshold",
                                       "adam-streamed", "kalman-streamed"])
def test_two_processes_equal_one(tmp_path, optimizer):
    """kalman-element/-layer: a decoupled filter, its covariance blocks shared out whole (one
    element's each; the four layers' blocks 2 + 2); kalman-threshold: n2p2's threshold selection,
    each stream trying its own candidates; -streamed: no descriptor derivatives stored
    (memory_budget_mb 0: contracted in the core on every use)."""
    require_mpi()
    settings, structs = reference_data(tmp_path, n=10)
    hdnnp.write_input_data(settings / "input.data", structs)
    streamed = optimizer.endswith("-streamed")
    optimizer = optimizer.removesuffix("-streamed")
    with open(settings / "input.nn", "a") as fh:
        if streamed:
            fh.write("\nmemory_budget_mb 0\n")
        fh.write("\nuse_short_forces\nrandom_seed 7\nforce_weight 2.0\n" +
                 ("updater_type 1\nshort_force_fraction 0.1\n" if optimizer.startswith("kalman") else
                  "updater_type 0\ngradient_type 1\ngradient_adam_eta 1.0e-2\ntask_batch_size_energy 3\n"))
        if optimizer in ("kalman-element", "kalman-layer"):
            fh.write(f"kalman_decoupling {optimizer.split('-')[1]}\n")
        if optimizer == "kalman-threshold":
            fh.write("selection_mode 2\nshort_energy_error_threshold 0.8\nshort_force_error_threshold 1.2\n"
                     "rmse_threshold_trials 3\n")
    base = [sys.executable, "-m", "hdnnp.cli", "train", str(settings), "-q", "--epochs", "3"]
    r1 = subprocess.run(base + ["-o", str(tmp_path / "one"), "--set", "kalman_streams=2"], capture_output=True,
                        text=True, timeout=600)
    assert r1.returncode == 0, r1.stderr
    r2 = subprocess.run([str(MPIEXEC), "-n", "2"] + base + ["-o", str(tmp_path / "two")], capture_output=True,
                        text=True, timeout=600)
    assert r2.returncode == 0, r2.stdout[-2000:] + r2.stderr[-3000:]
    assert "data-parallel over 2 MPI processes" in r2.stdout
    assert r2.stdout.count("potential ->") == 1          # (one process reports)
    w1, w2 = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert len(w1) == len(w2) > 0
    np.testing.assert_allclose(w2, w1, rtol=0, atol=1e-10 * max(1.0, np.abs(w1).max()))
    # the errors of every epoch (all columns but the epoch's seconds): the weights did move
    c1, c2 = (np.delete(np.loadtxt(tmp_path / d / "learning-curve.out"), 9, axis=1) for d in ("one", "two"))
    assert c1.shape == c2.shape == (4, 16)
    np.testing.assert_allclose(c2, c1, rtol=1e-9)
    assert c1[3, 3] < 0.9 * c1[0, 3]   # (the training force error fell)
    # the scaling (from each process's structures, summed) and the parity data (each process's
    # structures, gathered) are those of one process
    s1, s2 = (np.loadtxt(tmp_path / d / "scaling.data", comments="#") for d in ("one", "two"))
    np.testing.assert_allclose(s2, s1, rtol=1e-12, atol=1e-14)
    for name in ("parity-energy.dat", "parity-forces.dat"):
        p1, p2 = (np.loadtxt(tmp_path / d / name, usecols=(0, 1)) for d in ("one", "two"))
        assert p1.shape == p2.shape and len(p1) > 0
        np.testing.assert_allclose(p2, p1, rtol=1e-8, atol=1e-12)
    # a resume on 2 processes (the checkpoint gathers the shared-out covariance) continues exactly
    r3 = subprocess.run([str(MPIEXEC), "-n", "2"] + base[:-2] + ["--epochs", "2", "-o", str(tmp_path / "resumed")],
                        capture_output=True, text=True, timeout=600)
    assert r3.returncode == 0, r3.stderr[-3000:]
    r4 = subprocess.run([str(MPIEXEC), "-n", "2"] + base + ["-o", str(tmp_path / "resumed"), "--resume"],
                        capture_output=True, text=True, timeout=600)
    assert r4.returncode == 0, r4.stderr[-3000:]
    assert "resuming after epoch 2" in r4.stdout
    np.testing.assert_array_equal(weights(tmp_path / "resumed"), w2)


@pytest.mark.parametrize("S,SY", [(1, 2), (2, 2), (3, 1), (5, 3), (2, 9)])
def test_kalman_block_pass(S, SY):
    """_core.kalman_block_pass against numpy: a column block [c0, c0 + w) of a symmetric P's upper
    triangle gets P <- (P - Y Y^T) / div + q I, then x += the block's part of P h (the block and its
    mirror image below the diagonal); the blocks of a partition of the columns add up to P h."""
    from hdnnp import _core

    rng = np.random.default_rng(S * 10 + SY)
    n = 37
    M = rng.normal(size=(n, n))
    P = M @ M.T
    Y, h = rng.normal(size=(n, SY)), rng.normal(size=(n, S))
    div, q = 0.93, 0.05
    P_new = (P - Y @ Y.T) / div + q * np.eye(n)
    x = np.zeros((n, S))
    edges = [0, 5, 19, 20, n]
    for c0, c1 in zip(edges[:-1], edges[1:]):
        R = np.array(P[:c0, c0:c1], order="F")
        T = np.array(np.triu(P[c0:c1, c0:c1]) + np.tril(rng.normal(size=(c1 - c0, c1 - c0)), -1), order="F")
        _core.kalman_block_pass(R, T, Y, div, q, h, x)
        np.testing.assert_allclose(R, P_new[:c0, c0:c1], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(np.triu(T), np.triu(P_new[c0:c1, c0:c1]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(x, P_new @ h, rtol=1e-12, atol=1e-11)


def test_4g_two_processes_equal_one(fixtures, tmp_path):
    """Both stages of a 4G potential on 2 MPI processes equal one process with 2 Kalman streams
    (the carbon chain fixture, 3 epochs): stage 2 (the short networks on [G, Q], the electrostatics
    fixed) and stage 1 (the charge networks and hardness; with Adam too)."""
    import shutil

    require_mpi()
    src = fixtures / "n2p2_Carbon_chain_4G" / "train"
    for f in ("input.nn", "scaling.data"):
        shutil.copy(src / f, tmp_path / f)
    hdnnp.write_input_data(tmp_path / "input.data", hdnnp.read_input_data(src / "input.data")[::8])
    cli = [sys.executable, "-m", "hdnnp.cli", "train", str(tmp_path), "-q"]
    r = subprocess.run(cli + ["--stage", "1", "--epochs", "1"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    stage2 = cli + ["--stage", "2", "--charges", str(tmp_path / "charges"), "--epochs", "3", "--set",
                    "selection=random", "--set", "kalman_streams=2"]
    r1 = subprocess.run(stage2 + ["-o", str(tmp_path / "one")], capture_output=True, text=True, timeout=600)
    assert r1.returncode == 0, r1.stderr[-2000:]
    r2 = subprocess.run([str(MPIEXEC), "-n", "2"] + stage2 + ["-o", str(tmp_path / "two")], capture_output=True,
                        text=True, timeout=600)
    assert r2.returncode == 0, r2.stdout[-2000:] + r2.stderr[-3000:]
    assert "data-parallel over 2 MPI processes" in r2.stdout
    w1, w2 = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert len(w1) == len(w2) > 0
    np.testing.assert_allclose(w2, w1, rtol=0, atol=1e-10 * max(1.0, np.abs(w1).max()))
    # stage 1 (the charge networks and hardness) on 2 processes equals one process with 2 Kalman
    # streams, and with Adam (batches shared out) one process
    for opt, extra in (("kalman", ["--set", "kalman_streams=2"]), ("adam", ["--optimizer", "adam", "--batch-size", "3"])):
        for n in (1, 2):
            run(cli + ["--stage", "1", "--epochs", "3"] + extra + ["-o", tmp_path / f"c{n}-{opt}"], n)
        for pattern in ("weightse.*.data", "hardness.*.data"):
            assert_same_weights(*(weights(tmp_path / f"c{n}-{opt}", pattern) for n in (1, 2)))
        c1, c2 = (np.delete(np.loadtxt(tmp_path / f"c{n}-{opt}" / "learning-curve-charges.out"), 5, axis=1)
                  for n in (1, 2))
        np.testing.assert_allclose(c2, c1, rtol=1e-9)
        assert c1[-1, 1] < c1[0, 1]   # (the training charge error fell)
