"""Training: loss gradients against finite differences, forces equal the core's, Adam reduces the
error, written potentials reload and reproduce the reported errors, bad data is refused."""
import shutil
from pathlib import Path

import numpy as np
import pytest

import hdnnp
from hdnnp.training.data import DataError
from hdnnp.training.trainer import Trainer, TrainingConfig
from synth import random_cluster, write_potential


def reference_data(tmp_path, n=8, seed=5, types=(2, 3, 9)):
    ref = write_potential(tmp_path / "ref", types=list(types), seed=seed, hidden=(5,), acts="t l")
    pot = hdnnp.Potential(ref, warn=False)
    structs = []
    for k in range(n):
        a = random_cluster(n_h=5, n_o=3, seed=100 + k)
        r = pot.evaluate(a, native=True, extrapolation="ignore")
        a.info["energy"] = r.energy
        a.arrays["ref_forces"] = r.forces
        structs.append(a)
    settings = tmp_path / "settings"
    settings.mkdir()
    shutil.copy(Path(ref) / "input.nn", settings / "input.nn")
    return settings, structs


def test_loss_gradient_matches_finite_differences(tmp_path):
    settings, structs = reference_data(tmp_path, n=3, types=(2, 3, 9, 20, 21))
    # energy weight and force weight both active; normalisation and offsets off (synthetic)
    tr = Trainer(settings, structs, TrainingConfig(test_fraction=0.0, init="uniform", weights_min=-0.5,
                                                   weights_max=0.5, energy_weight=0.7, force_weight=1.3))
    tr.compute_scaling()
    ks = [0, 1, 2]
    *_, (loss, grads) = tr._batch(ks, True)
    p0 = tr.parameters()
    h = 1e-6
    for e in range(len(p0)):
        fd = np.zeros_like(p0[e])
        for k in range(len(p0[e])):
            for sgn in (1, -1):
                ps = [p.copy() for p in p0]
                ps[e][k] += sgn * h
                tr.set_parameters(ps)
                fd[k] += sgn * tr._batch(ks, True)[5][0] / (2 * h)
        tr.set_parameters(p0)
        np.testing.assert_allclose(grads[e], fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())


@pytest.mark.parametrize("ew,fw", [(1.0, 0.0), (0.0, 1.0)])
def test_energy_and_force_gradients_separately(tmp_path, ew, fw):
    settings, structs = reference_data(tmp_path, n=2, types=(2, 3))
    tr = Trainer(settings, structs, TrainingConfig(test_fraction=0.0, energy_weight=ew, force_weight=fw))
    tr.compute_scaling()
    *_, (loss, grads) = tr._batch([0, 1], True)
    p0 = tr.parameters()
    e, k, h = 1, 3, 1e-6
    vals = []
    for sgn in (1, -1):
        ps = [p.copy() for p in p0]
        ps[e][k] += sgn * h
        tr.set_parameters(ps)
        vals.append(tr._batch([0, 1], True)[5][0])
    assert grads[e][k] == pytest.approx((vals[0] - vals[1]) / (2 * h), rel=1e-5, abs=1e-9)


def test_trainer_predictions_equal_core(tmp_path):
    settings, structs = reference_data(tmp_path, n=3)
    tr = Trainer(settings, structs, TrainingConfig(test_fraction=0.0))
    tr.compute_scaling()
    tr.history = []
    tr.write(tmp_path / "pot")
    pot = hdnnp.Potential(tmp_path / "pot", warn=False)
    E, F, *_ = tr._batch([0, 1, 2], False)
    for k in range(3):
        r = pot.evaluate(structs[k], native=True, extrapolation="ignore")
        assert E[k] == pytest.approx(r.energy, rel=1e-12, abs=1e-12)
    Fc = np.concatenate([pot.evaluate(structs[k], native=True, extrapolation="ignore").forces for k in range(3)])
    np.testing.assert_allclose(F, Fc, rtol=0, atol=1e-12 * np.abs(Fc).max())
    # scaling.data written from the data: the core reads back the same statistics
    for e in range(2):
        sc = pot.model.scaling(e)
        np.testing.assert_allclose(sc["min"], tr.stats[e]["min"], rtol=1e-15)
        np.testing.assert_allclose(sc["sigma"], tr.stats[e]["sigma"], rtol=1e-15)


def test_adam_training_reduces_errors_and_reloads(tmp_path):
    settings, structs = reference_data(tmp_path, n=12)
    cfg = TrainingConfig(epochs=25, learning_rate=3e-3, batch_size=2, test_fraction=0.25, seed=1)
    tr = Trainer(settings, structs, cfg)
    out = tmp_path / "out"
    hist = tr.train(out, progress=False)
    first, best = hist[0], hist[tr.best_epoch]
    assert best.rmse_force_train < 0.5 * first.rmse_force_train
    assert best.rmse_energy_train < 0.5 * first.rmse_energy_train
    # the written potential (best epoch) reproduces the recorded test errors
    pot = hdnnp.Potential(out, warn=False)
    de, df = [], []
    for k in tr.test_idx:
        r = pot.evaluate(structs[k], native=True, extrapolation="ignore")
        de.append((r.energy - structs[k].info["energy"]) / len(structs[k]))
        df.append((r.forces - structs[k].arrays["ref_forces"]).ravel())
    assert np.sqrt(np.mean(np.square(de))) == pytest.approx(best.rmse_energy_test, rel=1e-9)
    assert np.sqrt(np.mean(np.square(np.concatenate(df)))) == pytest.approx(best.rmse_force_test, rel=1e-9)
    curve = np.loadtxt(out / "learning-curve.out")
    assert curve.shape[0] == len(hist) and curve[-1, 0] == hist[-1].epoch
    from PIL import Image

    for name in ("learning-curve.png", "parity-energy.png", "parity-forces.png"):
        with Image.open(out / name) as im:
            im.verify()
            assert im.format == "PNG" and im.size[0] > 200


def test_bad_data_is_refused(tmp_path):
    settings, structs = reference_data(tmp_path, n=3)
    bad = [s.copy() for s in structs]
    del bad[1].arrays["ref_forces"]
    with pytest.raises(DataError, match="structure 1: no reference forces"):
        Trainer(settings, bad, TrainingConfig())
    bad = [s.copy() for s in structs]
    bad[2].info["energy"] = float("nan")
    with pytest.raises(DataError, match="structure 2: non-finite reference energy"):
        Trainer(settings, bad, TrainingConfig())
    bad = [s.copy() for s in structs]
    bad[0].symbols[0] = "C"
    tr = Trainer(settings, bad, TrainingConfig())
    with pytest.raises(DataError, match="structure 0: atom 0 is C"):
        tr.compute_scaling()


# the by-hand Kalman tests' settings (2 updates per epoch)
BY_HAND = dict(epsilon=0.5, q0=0.02, qtau=0.3, qmin=0.015, eta=0.1, etatau=0.4, etamax=0.12, lambda_=0.9, nu=0.99)


class KalmanByHand:
    """The formulas of THEORY.md B.8 with a dense P, for BY_HAND's settings: S observations (rows
    of H) per update, X = P H^T, A = H X + 1/eta I (or lambda I), K = X A^-1, P <- P - K X^T
    (/lambda) + q I; `mask` keeps only a decoupled filter's blocks of P."""

    def __init__(self, n: int, ktype: int, mask=None):
        self.P, self.q, self.eta, self.lam, self.ktype = np.eye(n) / 0.5, 0.02, 0.1, 0.9, ktype
        self.mask = np.ones((n, n)) if mask is None else mask

    def step(self, H, xi) -> np.ndarray:
        """One update; the weights' change K xi."""
        H, xi = np.atleast_2d(H), np.atleast_1d(xi)
        if self.ktype == 0:
            self.eta = min(self.eta * np.exp(0.4 / 2), 0.12)
        X = self.P @ H.T
        A = H @ X + (1 / self.eta if self.ktype == 0 else self.lam) * np.eye(len(H))
        K = X @ np.linalg.inv(A)
        P = (self.P - K @ X.T) * self.mask
        if self.ktype == 1:
            P = P / self.lam
            self.lam = 0.99 * self.lam + 0.01
        self.P = P + self.q * np.eye(len(P))
        self.q = max(self.q * np.exp(-0.3 / 2), 0.015)
        return K @ xi


@pytest.mark.parametrize("ktype", [0, 1])
def test_kalman_update_by_hand(ktype):
    """Two updates of a 4-weight filter against the formulas of THEORY.md B.8 with dense P."""
    from hdnnp.training.kalman import KalmanFilter, KalmanSettings

    kf = KalmanFilter(4, KalmanSettings(kalman_type=ktype, **BY_HAND), updates_per_epoch=2)
    ref = KalmanByHand(4, ktype)
    rng = np.random.default_rng(3)
    w = rng.normal(size=4)
    wr = w.copy()
    for _ in range(2):
        H, xi = rng.normal(size=4), rng.normal()
        w = kf.update(w, H, xi)
        wr = wr + ref.step(H, xi)
        np.testing.assert_allclose(w, wr, rtol=1e-13)
        np.testing.assert_allclose(np.triu(kf.P), np.triu(ref.P), rtol=1e-13, atol=1e-15)
    assert kf.q == pytest.approx(ref.q) and kf.eta == pytest.approx(ref.eta if ktype == 0 else 0.1)


@pytest.mark.parametrize("ktype", [0, 1])
def test_decoupled_kalman_by_hand(ktype):
    """A decoupled filter (blocks 3 + 2 + 2 of 7 weights) against the dense formulas with a
    block-diagonal P: the shared innovation a = H P H + noise, one and then three observations
    per update, and its checkpoint state round trip."""
    from hdnnp.training.kalman import KalmanFilter, KalmanSettings

    st = KalmanSettings(kalman_type=ktype, **BY_HAND)
    kf = KalmanFilter(7, st, updates_per_epoch=2, blocks=[3, 2, 2])
    mask = np.zeros((7, 7))
    for a, b in ((0, 3), (3, 5), (5, 7)):
        mask[a:b, a:b] = 1.0
    ref = KalmanByHand(7, ktype, mask)   # (each block keeps only its own part)
    rng = np.random.default_rng(5)
    w = rng.normal(size=7)
    wr = w.copy()
    for S in (1, 3):
        H, xi = rng.normal(size=(S, 7)), rng.normal(size=S)
        w = kf.update(w, H[0], xi[0]) if S == 1 else kf.update_many(w, H, xi)
        wr = wr + ref.step(H, xi)
        np.testing.assert_allclose(w, wr, rtol=1e-12)
        np.testing.assert_allclose(np.triu(kf.P), np.triu(ref.P), rtol=1e-12, atol=1e-14)
    state = kf.state()
    assert kf.state_bytes == 8 * (6 + 3 + 3)
    again = KalmanFilter(7, st, updates_per_epoch=2, blocks=[3, 2, 2])
    again.load_state(state)
    np.testing.assert_array_equal(np.triu(again.P), np.triu(kf.P))
    with pytest.raises(ValueError, match="does not match"):
        KalmanFilter(7, st, updates_per_epoch=2).load_state(state)


def test_kalman_observation_jacobians(tmp_path):
    """Kalman Jacobians (energy and one force component) against finite differences."""
    settings, structs = reference_data(tmp_path, n=2, types=(2, 3))
    tr = Trainer(settings, structs, TrainingConfig(test_fraction=0.0))
    tr.compute_scaling()
    p0 = np.concatenate(tr.parameters())
    sizes = np.cumsum([n.n_parameters for n in tr.nets])[:-1]
    for atom in (None, 3):
        xi, H = tr._observation(1, atom, 2)
        for k in (0, 7, len(p0) - 1):
            vals = []
            for sgn in (1, -1):
                p = p0.copy()
                p[k] += sgn * 1e-6
                tr.set_parameters(np.split(p, sizes))
                vals.append(tr._observation(1, atom, 2)[0])
            tr.set_parameters(np.split(p0, sizes))
            # xi = y_ref - y, so dy/dw = -dxi/dw
            assert H[k] == pytest.approx(-(vals[0] - vals[1]) / 2e-6, rel=1e-5, abs=1e-8)


def test_local_observations_equal_batch_path(tmp_path):
    """The 2G Kalman observations' own path (energy without forces; one force component from
    that atom's pairs) equals the general batch path, in a cluster and in a small periodic cell
    where atoms see their own images."""
    settings, structs = reference_data(tmp_path, n=2, types=(2, 3, 9))
    box = structs[1].copy()
    box.set_cell(np.diag([4.0, 4.5, 5.0]))
    box.pbc = True
    box.wrap()
    pot = hdnnp.Potential(tmp_path / "ref", warn=False)
    r = pot.evaluate(box, native=True, extrapolation="ignore")
    box.info["energy"], box.arrays["ref_forces"] = r.energy + 0.3, r.forces + 0.01
    tr = Trainer(settings, structs + [box], TrainingConfig(test_fraction=0.0, validation_fraction=0.0))
    tr.compute_scaling()
    assert tr.prepared(2).pi[0].size and np.any(tr.prepared(2).pi[0] == tr.prepared(2).pj[0])  # own images
    for k in (0, 2):
        for atom, comp in ((None, 0), (0, 0), (3, 2), (len(tr.structures[k]) - 1, 1)):
            xi, H = tr._observation(k, atom, comp)
            xi_b, H_b = tr._observation(k, atom, comp, memo={})     # (a memo takes the batch path)
            assert xi == pytest.approx(xi_b, rel=1e-12, abs=1e-12)
            np.testing.assert_allclose(H, H_b, rtol=1e-10, atol=1e-12)


def test_float32_descriptor_derivatives(tmp_path):
    """descriptor_precision float32: the derivatives take half the memory; forces, the loss
    gradient and Kalman Jacobians agree with double precision to float32 rounding."""
    settings, structs = reference_data(tmp_path, n=3, types=(2, 3, 9))
    runs = {}
    for prec in ("float64", "float32"):
        tr = Trainer(settings, structs, TrainingConfig(test_fraction=0.0, validation_fraction=0.0,
                                                       descriptor_precision=prec, seed=3))
        tr.compute_scaling()
        E, F, *_, (loss, grads) = tr._batch([0, 1, 2], True)
        runs[prec] = (tr, F, np.concatenate(grads), tr._observation(1, 2, 1)[1], tr._observation(2, None, 0)[1])
    (t64, F64, g64, h64, e64), (t32, F32, g32, h32, e32) = runs["float64"], runs["float32"]
    assert all(J.dtype == np.float32 for J in t32.prepared(0).J.values())
    j64 = sum(J.nbytes for J in t64.prepared(0).J.values())
    assert sum(J.nbytes for J in t32.prepared(0).J.values()) == j64 // 2
    np.testing.assert_allclose(F32, F64, rtol=0, atol=1e-6 * np.abs(F64).max())
    np.testing.assert_allclose(g32, g64, rtol=0, atol=1e-5 * np.abs(g64).max())
    np.testing.assert_allclose(h32, h64, rtol=0, atol=1e-5 * np.abs(h64).max())
    np.testing.assert_array_equal(e32, e64)          # (an energy needs no derivatives)
    assert np.abs(F32 - F64).max() > 0               # (the float32 path was taken)
    with pytest.raises(ValueError, match="descriptor_precision"):
        Trainer(settings, structs, TrainingConfig(descriptor_precision="half")).compute_scaling()


@pytest.mark.parametrize("selection", ["random", "threshold", "sort"])
def test_kalman_training_reduces_errors(tmp_path, selection):
    settings, structs = reference_data(tmp_path, n=10)
    cfg = TrainingConfig(optimizer="kalman", epochs=6, test_fraction=0.2, seed=2, force_fraction=0.1,
                         force_weight=3.0, selection=selection)
    tr = Trainer(settings, structs, cfg)
    hist = tr.train(None, progress=False)
    assert hist[-1].rmse_force_train < 0.5 * hist[0].rmse_force_train
    assert hist[-1].rmse_energy_train < 0.5 * hist[0].rmse_energy_train


@pytest.mark.parametrize("optimizer", ["adam", "kalman"])
def test_resume_equals_uninterrupted(tmp_path, optimizer):
    settings, structs = reference_data(tmp_path, n=6)
    cfg = dict(optimizer=optimizer, epochs=4, test_fraction=0.2, seed=7, batch_size=2, force_fraction=0.05)
    full = Trainer(settings, structs, TrainingConfig(**cfg))
    full.train(tmp_path / "full", progress=False)
    part = Trainer(settings, structs, TrainingConfig(**{**cfg, "epochs": 2}))
    part.train(tmp_path / "part", progress=False)
    resumed = Trainer(settings, structs, TrainingConfig(**cfg)).resume(tmp_path / "part" / "checkpoint.npz")
    resumed.train(tmp_path / "resumed", progress=False)
    for a, b in zip(full.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(a, b)
    assert [h.rmse_force_test for h in full.history] == [h.rmse_force_test for h in resumed.history]


def test_scaling_cli_reproduces_n2p2(fixtures, tmp_path):
    """hdnnp scaling on n2p2's H2O training folder writes n2p2's scaling.data (min, max, mean
    and the sample standard deviation) to round-off."""
    import subprocess
    import sys

    src = fixtures / "n2p2_H2O_RPBE-D3_2G" / "train"
    for f in ("input.nn", "input.data"):
        shutil.copy(src / f, tmp_path / f)
    r = subprocess.run([sys.executable, "-m", "hdnnp.cli", "scaling", str(tmp_path), "--all"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    ours, ref = np.loadtxt(tmp_path / "scaling.data"), np.loadtxt(src / "scaling.data")
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-15)
    # neighbour and SF statistics: every H and O atom of the 20 structures counted
    nb = {l.split()[0]: l.split()[1:] for l in (tmp_path / "neighbors.out").read_text().splitlines()
          if not l.startswith("#")}
    assert int(nb["H"][0]) == 1376 and int(nb["O"][0]) == 688
    sf = np.loadtxt(tmp_path / "sf-statistics.out", usecols=(2, 3, 4, 5, 6))
    np.testing.assert_allclose(sf[:, :4], ours[:, 2:6], rtol=1e-6)
    assert ((sf[:, 4] > 0) & (sf[:, 4] <= 1)).all()


def test_train_cli_with_n2p2_keywords_and_resume(tmp_path):
    """nnp-train style folder: input.nn with n2p2 training keywords + input.data."""
    import subprocess
    import sys

    settings, structs = reference_data(tmp_path, n=6)
    for k, a in enumerate(structs):
        a.info["set"] = "test" if k == 0 else "train"
    hdnnp.write_input_data(settings / "input.data", structs)
    with open(settings / "input.nn", "a") as fh:
        fh.write("\nuse_short_forces\nupdater_type 1\nkalman_type 0\nkalman_epsilon 1.0E-2\nkalman_q0 0.01\n"
                 "kalman_qtau 2.302\nkalman_qmin 1.0E-6\nkalman_eta 0.01\nkalman_etatau 2.302\nkalman_etamax 1.0\n"
                 "epochs 2\nrandom_seed 12\nforce_weight 2.0\nshort_energy_fraction 1.0\nshort_force_fraction 0.05\n"
                 "selection_mode 2\nshort_energy_error_threshold 0.0\nshort_force_error_threshold 1.0\n"
                 "rmse_threshold_trials 3\nweights_min -1.0\nweights_max 1.0\nparallel_mode 0\n")
    run = lambda *a: subprocess.run([sys.executable, "-m", "hdnnp.cli", "train", str(settings), "-q", *a],
                                    capture_output=True, text=True)
    r = run()
    assert r.returncode == 0, r.stderr
    assert "parallel_mode has no effect" in r.stderr
    out = settings / "potential"
    curve = np.loadtxt(out / "learning-curve.out")
    assert curve.shape[0] == 3
    import json

    best = json.loads((out / "training.json").read_text())["best_epoch"]
    pot = hdnnp.Potential(out, warn=False)  # the best epoch's weights: reproduces its test error
    r0 = pot.evaluate(structs[0], native=True, extrapolation="ignore")
    assert abs(r0.energy - structs[0].info["energy"]) / len(structs[0]) == pytest.approx(curve[best, 2], rel=1e-8)
    r = run("--resume", "--epochs", "4")
    assert r.returncode == 0, r.stderr
    assert "resuming after epoch 2" in r.stdout
    assert np.loadtxt(out / "learning-curve.out").shape[0] == 5
    (settings / "input.data").write_text("begin\natom 0 0 0 H 0 0 0 0 0\nenergy nan\nend\n")
    r = run()
    assert r.returncode == 2 and "non-finite reference energy" in r.stderr


def test_memory_budget_streams_with_same_results(tmp_path):
    """Structures whose dG/dr does not fit in memory_budget_mb keep G only: their forces, virials
    and weight gradients come from the core's contractions (Model.compute with dE/dG,
    Model.descriptor_jvp), never from stored derivatives. In a batch that mixes stored and
    streamed structures (every SF type, conv units, a ZBL-free potential with stresses) the
    energies, forces, stresses, the loss gradient (energy, force and stress terms) and the
    Kalman observations (energies; force components by the local 2G path) equal those of the
    trainer that stores everything to round-off, and 2 epochs of Adam and of the Kalman filter
    give the same weights."""
    ref = write_potential(tmp_path / "ref", seed=5, hidden=(5,), acts="t l", conv=(-0.3, 1.7, 1.3))
    pot = hdnnp.Potential(ref, warn=False)
    structs = []
    for k in range(4):
        a = random_cluster(n_h=5, n_o=3, seed=100 + k, pbc=k != 3)
        r = pot.evaluate(a, native=True, extrapolation="ignore", stress=k != 3)
        a.info["energy"], a.arrays["ref_forces"] = r.energy * 1.1, r.forces * 0.9
        if k != 3:
            a.info["stress"] = r.stress * 1.2
        structs.append(a)
    settings = tmp_path / "settings"
    settings.mkdir()
    shutil.copy(Path(ref) / "input.nn", settings / "input.nn")
    cfg = dict(epochs=2, test_fraction=0.0, validation_fraction=0.0, seed=3, batch_size=3, stress_weight=0.5,
               energy_weight=0.7, init="uniform", weights_min=-0.5, weights_max=0.5)
    cached = Trainer(settings, structs, TrainingConfig(**cfg))
    cached.compute_scaling()
    streamed = Trainer(settings, structs, TrainingConfig(**cfg, memory_budget_mb=0.0))
    streamed.compute_scaling()
    # structure 1 stored, the others streamed
    streamed._prep.pop(1)
    streamed._budget_left = 1e12
    assert streamed.prepared(1).J is not None
    assert all(streamed.prepared(k).J is None for k in (0, 2, 3))
    streamed.set_parameters(cached.parameters())
    ks = [2, 1, 0, 3]
    E0, F0, _, _, _, (loss0, g0) = cached._batch(ks, True)
    E1, F1, _, _, _, (loss1, g1) = streamed._batch(ks, True)
    np.testing.assert_allclose(E1, E0, rtol=1e-12)
    np.testing.assert_allclose(F1, F0, rtol=0, atol=1e-11 * np.abs(F0).max())
    assert loss1 == pytest.approx(loss0, rel=1e-11)
    for a, b in zip(g1, g0):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * np.abs(b).max())
    st0, st1 = cached._forward(ks)[5], streamed._forward(ks)[5]
    S0, S1 = cached.stress_of(st0)[0], streamed.stress_of(st1)[0]
    assert S0.shape == (3, 6)
    np.testing.assert_allclose(S1, S0, rtol=0, atol=1e-11 * np.abs(S0).max())
    for k in (0, 3):
        for atom, comp in ((None, 0), (1, 2), (6, 0)):
            x0, j0 = cached._local_observation(k, atom, comp, True)
            x1, j1 = streamed._local_observation(k, atom, comp, True)
            assert x1 == pytest.approx(x0, rel=1e-10, abs=1e-12)
            np.testing.assert_allclose(j1, j0, rtol=0, atol=1e-10 * np.abs(j0).max())
    # the budget bounds what is stored, whatever it is (the size of dG/dr is bounded from the
    # neighbour list before it is computed), in double and single precision
    sizes = [cached.prepared(k).nbytes for k in range(4)]
    for prec in ("float64", "float32"):
        for budget in (sizes[0] * 1.01, sum(sizes) * 0.6, sum(sizes) * 1.01):
            tr = Trainer(settings, structs, TrainingConfig(**cfg, memory_budget_mb=budget / 2 ** 20,
                                                           descriptor_precision=prec))
            tr.compute_scaling()
            kept = [p.nbytes for p in tr._prep.values() if p.J is not None]
            assert len(tr._prep) == 4 and sum(kept) <= budget
        assert len(kept) == 4   # (everything fits in the largest)
    for optimizer in ("adam", "kalman"):
        runs = []
        for budget in (4096.0, 0.0):
            tr = Trainer(settings, structs, TrainingConfig(**cfg, optimizer=optimizer, memory_budget_mb=budget,
                                                           force_fraction=0.3))
            tr.train(None, progress=False)
            runs.append(tr)
        assert all(p.J is None for p in runs[1]._prep.values()) and len(runs[1]._prep) == 4
        for a, b in zip(runs[0].parameters(), runs[1].parameters()):
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-9 * np.abs(a).max())


def test_fitted_offsets_written_and_reloaded(tmp_path):
    settings, _ = reference_data(tmp_path, n=1)
    ref = hdnnp.Potential(tmp_path / "ref", warn=False)
    shift = {"H": -13.6, "O": -2041.0}
    structs = []
    for k, n_o in enumerate((1, 2, 3, 4, 2, 3)):  # varied composition: both offsets identifiable
        a = random_cluster(n_h=5, n_o=n_o, seed=200 + k)
        r = ref.evaluate(a, native=True, extrapolation="ignore")
        a.info["energy"] = r.energy + sum(shift[s] for s in a.get_chemical_symbols())
        a.arrays["ref_forces"] = r.forces
        structs.append(a)
    from hdnnp.training.trainer import fit_atomic_energies

    x = fit_atomic_energies(structs, ["H", "O"])
    assert x[1] == pytest.approx(-2041.0, abs=5.0) and x[0] == pytest.approx(-13.6, abs=5.0)
    tr = Trainer(settings, structs, TrainingConfig(epochs=1, test_fraction=0.0, fit_offsets=True))
    tr.train(tmp_path / "out", progress=False)
    text = (tmp_path / "out" / "input.nn").read_text()
    assert "atom_energy H" in text and "atom_energy O" in text
    pot = hdnnp.Potential(tmp_path / "out", warn=False)
    E, *_ = tr._forward([0])
    assert pot.evaluate(structs[0], native=True, extrapolation="ignore").energy == pytest.approx(E[0], rel=1e-12)


def stress_data(tmp_path, n=3):
    settings, structs = reference_data(tmp_path, n=n, types=(2, 3))
    ref = hdnnp.Potential(tmp_path / "ref", warn=False)
    for a in structs:
        a.info["stress"] = ref.evaluate(a, native=True, extrapolation="ignore").stress
    return settings, structs


def test_stress_prediction_and_loss_gradient(tmp_path):
    settings, structs = stress_data(tmp_path)
    tr = Trainer(settings, structs, TrainingConfig(test_fraction=0.0, energy_weight=0.0, force_weight=0.0,
                                                   stress_weight=1.0))
    tr.compute_scaling()
    tr.history = []
    tr.write(tmp_path / "pot")
    pot = hdnnp.Potential(tmp_path / "pot", warn=False)
    *_, state = tr._batch([0, 1, 2], False)
    pred, ref, idx = tr.stress_of(state)
    core = np.array([pot.evaluate(structs[k], native=True, extrapolation="ignore").stress for k in idx])
    np.testing.assert_allclose(pred, core, rtol=0, atol=1e-12 * np.abs(core).max())
    *_, (loss, grads) = tr._batch([0, 1, 2], True)
    p0 = tr.parameters()
    for e, k in ((0, 2), (1, 5), (1, len(p0[1]) - 3)):
        vals = []
        for sgn in (1, -1):
            ps = [p.copy() for p in p0]
            ps[e][k] += sgn * 1e-6
            tr.set_parameters(ps)
            vals.append(tr._batch([0, 1, 2], True)[5][0])
        tr.set_parameters(p0)
        assert grads[e][k] == pytest.approx((vals[0] - vals[1]) / 2e-6, rel=1e-5, abs=1e-10)


def test_training_with_stress_reduces_stress_error(tmp_path):
    settings, structs = stress_data(tmp_path, n=8)
    cfg = TrainingConfig(epochs=15, learning_rate=3e-3, test_fraction=0.25, seed=4, stress_weight=10.0)
    tr = Trainer(settings, structs, cfg)
    hist = tr.train(None, progress=False)
    assert hist[-1].rmse_stress_train < 0.5 * hist[0].rmse_stress_train
    with pytest.raises(DataError, match="reference stress must be 6 finite numbers"):
        bad = [s.copy() for s in structs]
        bad[0].info["stress"] = np.array([1.0, 2.0])
        Trainer(settings, bad, cfg)


def test_train_cli_from_extxyz_with_unit_conversion(tmp_path):
    """ASE data (eV, Angstrom) for a potential declared in Bohr/Ha: converted on reading."""
    import subprocess
    import sys

    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write
    from ase.units import Bohr, Hartree

    settings, structs = reference_data(tmp_path, n=4)
    text = (settings / "input.nn").read_text()
    (settings / "input.nn").write_text("# hdnnp: length_unit=Bohr energy_unit=Ha\n" + text + "\nuse_short_forces\n"
                                       "epochs 1\nupdater_type 0\ngradient_type 1\n")
    ase_structs = []
    for a in structs:  # the same structures in eV / Angstrom
        b = a.copy()
        b.info.pop("energy")
        del b.arrays["ref_forces"]
        b.set_cell(a.cell[:] * Bohr, scale_atoms=True)
        b.calc = SinglePointCalculator(b, energy=a.info["energy"] * Hartree,
                                       forces=a.arrays["ref_forces"] * Hartree / Bohr)
        ase_structs.append(b)
    write(tmp_path / "data.extxyz", ase_structs)
    r = subprocess.run([sys.executable, "-m", "hdnnp.cli", "train", str(settings), "--data",
                        str(tmp_path / "data.extxyz"), "-q", "-o", str(tmp_path / "out")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    from hdnnp.io import read_input_data  # noqa: F401
    from hdnnp.training.data import from_ase
    from ase.io import read

    back = from_ase(read(tmp_path / "data.extxyz", ":"), energy_factor=1 / Hartree, length_factor=1 / Bohr)
    for a, b in zip(structs, back):  # extxyz stores positions and forces with 8 decimals
        np.testing.assert_allclose(b.positions, a.positions, rtol=0, atol=1e-7)
        assert b.info["energy"] == pytest.approx(a.info["energy"], rel=1e-10)
        np.testing.assert_allclose(b.arrays["ref_forces"], a.arrays["ref_forces"], rtol=0, atol=1e-7)
    (settings / "input.nn").write_text(text + "\nuse_short_forces\nepochs 1\n")
    r = subprocess.run([sys.executable, "-m", "hdnnp.cli", "train", str(settings), "--data",
                        str(tmp_path / "data.extxyz"), "-q"], capture_output=True, text=True)
    assert r.returncode == 2 and "the potential's units are needed" in r.stderr


def _fixture_trainer(fixtures, tmp_path, name, **overrides):
    import warnings

    from hdnnp.training.n2p2 import config_from_input_nn

    src = fixtures / name / "train"
    for f in ("input.nn", "input.data", "scaling.data"):
        shutil.copy(src / f, tmp_path / f)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = config_from_input_nn(tmp_path, **overrides)
    return Trainer(tmp_path, hdnnp.read_input_data(tmp_path / "input.data"), cfg)


def test_lj_dimer_reaches_stated_error(fixtures, tmp_path):
    """n2p2's LJ example with its own settings (Kalman, threshold selection, 10 epochs): n2p2
    reports test RMSE 1.2e-3 (energy per atom) and 0.225 (forces). The result depends on the
    random initial weights (3 tanh neurons; seed 1234567 lands in a plateau at 0.05), so the
    bound is on the median over four seeds: energy < 4e-3, forces < 0.1."""
    res = []
    for seed in (1, 2, 3, 4):
        tr = _fixture_trainer(fixtures, tmp_path, "n2p2_LJ_dimer", seed=seed)
        tr.train(None, progress=False)
        best = tr.history[tr.best_epoch]
        res.append((best.rmse_energy_test, best.rmse_force_test))
    med = np.median(np.array(res), axis=0)
    assert med[0] < 4e-3 and med[1] < 0.1, res


def test_cu2s_two_epochs_reach_stated_error(fixtures, tmp_path):
    """n2p2's Cu2S example (20 structures, 144 atoms each) with its settings: two Kalman epochs
    take the test errors from 1.4e-2 / 0.38 to below 1e-2 Ha/atom and 0.15 Ha/Bohr."""
    tr = _fixture_trainer(fixtures, tmp_path, "n2p2_Cu2S_PBE_2G", epochs=2)
    hist = tr.train(None, progress=False)
    assert hist[-1].rmse_energy_test < 1e-2 and hist[-1].rmse_force_test < 0.15
    assert hist[-1].rmse_force_test < 0.5 * hist[0].rmse_force_test


def test_early_stopping_keeps_best_weights(tmp_path):
    settings, structs = reference_data(tmp_path, n=5)
    tr = Trainer(settings, structs, TrainingConfig(epochs=10, patience=2, learning_rate=0.0, test_fraction=0.2))
    p0 = [p.copy() for p in tr.parameters()]
    logs = []
    hist = tr.train(None, progress=False, log=logs.append)
    assert [h.epoch for h in hist] == [0, 1, 2, 3] and tr.best_epoch == 1
    assert any("early stopping at epoch 3" in l for l in logs)
    for a, b in zip(p0, tr.parameters()):
        np.testing.assert_array_equal(a, b)


def test_structures_with_different_elements(tmp_path):
    """Some structures contain only H: batches without O atoms, per-element scaling over all."""
    settings, structs = reference_data(tmp_path, n=6)
    ref = hdnnp.Potential(tmp_path / "ref", warn=False)
    for k in range(3):
        a = random_cluster(n_h=6, n_o=0, seed=300 + k)
        r = ref.evaluate(a, native=True, extrapolation="ignore")
        a.info["energy"], a.arrays["ref_forces"] = r.energy, r.forces
        structs.append(a)
    tr = Trainer(settings, structs, TrainingConfig(epochs=3, batch_size=1, test_fraction=0.2, seed=5))
    hist = tr.train(tmp_path / "out", progress=False)
    assert np.isfinite([h.rmse_force_train for h in hist]).all() and hist[-1].rmse_force_train < hist[0].rmse_force_train
    E, F, *_ = tr._forward([6])
    r = hdnnp.Potential(tmp_path / "out", warn=False).evaluate(structs[6], native=True, extrapolation="ignore")
    assert r.energy == pytest.approx(E[0], rel=1e-12)


def test_normalised_training_matches_core(tmp_path):
    """nnp-norm style normalisation written into input.nn; training in internal units; the
    written potential (normalised) predicts what the trainer predicts."""
    from hdnnp.training.trainer import normalization_from_data, normalize_input_nn

    settings, structs = reference_data(tmp_path, n=6)
    me, ce, cl = normalize_input_nn(settings, structs)
    e = np.array([a.info["energy"] / len(a) for a in structs])
    f = np.concatenate([a.arrays["ref_forces"].ravel() for a in structs])
    assert me == pytest.approx(e.mean()) and ce == pytest.approx(1 / e.std(ddof=1))
    assert cl == pytest.approx(f.std(ddof=1) / e.std(ddof=1))
    assert (me, ce, cl) == pytest.approx(normalization_from_data(structs))
    import subprocess
    import sys

    hdnnp.write_input_data(settings / "input.data", structs)
    with open(settings / "input.nn", "a") as fh:
        fh.write("use_short_forces\n")
    r = subprocess.run([sys.executable, "-m", "hdnnp.cli", "norm", str(settings), "--all"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    text = (settings / "input.nn").read_text()
    assert text.count("conv_energy") == 1 and f"conv_length {cl:.16e}" in text
    tr = Trainer(settings, structs, TrainingConfig(epochs=2, optimizer="kalman", test_fraction=0.2, seed=3))
    assert tr.ce == pytest.approx(ce) and tr.cl == pytest.approx(cl)
    hist = tr.train(tmp_path / "out", progress=False)
    assert hist[-1].rmse_force_train < hist[0].rmse_force_train
    pot = hdnnp.Potential(tmp_path / "out", warn=False)
    E, F, *_ = tr._forward([1])
    r = pot.evaluate(structs[1], native=True, extrapolation="ignore")
    assert r.energy == pytest.approx(E[0], rel=1e-12)
    np.testing.assert_allclose(r.forces, F, rtol=0, atol=1e-10 * np.abs(F).max())


def test_plot_units_are_the_declared_ones(tmp_path):
    """Plot labels name the potential's units (declared in input.nn), or say that they are the
    potential's own when it declares none."""
    settings, structs = reference_data(tmp_path, n=3)
    tr = Trainer(settings, structs, TrainingConfig(epochs=0))
    assert "length_unit=" not in (settings / "input.nn").read_text()
    assert tr.plot_units() == ("potential's energy unit", "potential's energy/length unit")
    with open(settings / "input.nn", "a") as fh:
        fh.write("\n# hdnnp: length_unit=Angstrom energy_unit=eV\n")
    assert Trainer(settings, structs, TrainingConfig(epochs=0)).plot_units() == ("eV", "eV/Angstrom")
