"""3G training in two steps (charges, then short networks on E_ref - E_elec, F_ref - F_elec).
The reference data come from a random 'teacher' 3G potential (RuNNer's enforce_totcharge on),
so the architecture can represent them exactly; a student with the same settings is trained from
scratch."""
import os
import shutil

import numpy as np
import pytest

import hdnnp
from hdnnp.cli import main
from hdnnp.third_generation import ThirdGeneration
from hdnnp.training.data import DataError
from hdnnp.training.third_generation import LocalChargeTrainer, LocalShortTrainer
from hdnnp.training.trainer import TrainingConfig

from synth import random_cluster, write_3g_potential

# (the synthetic potentials' random scaling ranges: some atoms extrapolate, which these tests do not test)
pytestmark = pytest.mark.filterwarnings("ignore::hdnnp.potential.ExtrapolationWarning")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    base = tmp_path_factory.mktemp("t3g")
    tdir = write_3g_potential(str(base / "teacher"), enforce=1, seed=7, charge_bias=(("H", 1.2), ("O", -0.6)))
    pot = ThirdGeneration(tdir, ewald=1e-10)
    structs = []
    for s in range(24):
        a = random_cluster(pbc=s % 2 == 0, seed=100 + s)
        r = pot.compute(a, forces=True, stress=a.pbc.all())
        if a.pbc.all():
            st = r["stress"]
            a.info["stress"] = np.array([st[0, 0], st[1, 1], st[2, 2], st[1, 2], st[0, 2], st[0, 1]])
        a.info["energy"] = r["energy"]
        a.arrays["ref_forces"] = r["forces"]
        a.arrays["ref_charges"] = r["charges"]
        a.info["charge"] = 0.0
        structs.append(a)
    settings = base / "settings"
    settings.mkdir()
    shutil.copy(os.path.join(tdir, "input.nn"), settings / "input.nn")
    return tdir, settings, structs


def _charge_loss(tr, ks):
    loss, grad = 0.0, 0.0
    for k in ks:
        q, state = tr.charges(k)
        dq = q - state[0].q_ref
        loss += dq @ dq
        grad = grad + tr.gradient(q, state, 2.0 * dq)
    return loss, grad


def test_charge_step_gradient_matches_finite_differences(teacher):
    _, settings, structs = teacher
    tr = LocalChargeTrainer(settings, structs[:4], TrainingConfig(seed=3))
    tr.compute_scaling()
    w0 = tr.parameters()
    _, g = _charge_loss(tr, [0, 1, 3])
    for p in np.random.default_rng(1).choice(len(w0), 12, replace=False):
        vals = []
        for sgn in (1, -1):
            w = w0.copy()
            w[p] += sgn * 1e-6
            tr.set_parameters(w)
            vals.append(_charge_loss(tr, [0, 1, 3])[0])
        assert g[p] == pytest.approx((vals[0] - vals[1]) / 2e-6, rel=1e-6, abs=1e-9), p
    tr.set_parameters(w0)


def test_short_step_gradient_matches_finite_differences(teacher, tmp_path):
    tdir, _, structs = teacher
    tr = LocalShortTrainer(tdir, structs[:3], TrainingConfig(seed=2, test_fraction=0.0, force_weight=3.0,
                                                             stress_weight=1e3))  # (stresses ~1e-2: weighted up)
    tr.compute_scaling()
    _, F, _, _, _, (loss, grads) = tr._batch([0, 1], True)
    g = np.concatenate(grads)
    sizes = np.cumsum([n.n_parameters for n in tr.nets])[:-1]
    w0 = np.concatenate(tr.parameters())
    # no descriptor derivatives stored (contracted in the core): the same forces, loss, gradient
    st = LocalShortTrainer(tdir, structs[:3], TrainingConfig(seed=2, test_fraction=0.0, force_weight=3.0,
                                                             stress_weight=1e3, memory_budget_mb=0.0))
    st.compute_scaling()
    st.set_parameters(tr.parameters())
    _, F2, _, _, _, (loss2, grads2) = st._batch([0, 1], True)
    assert st.prepared(0).J is None and tr.prepared(0).J is not None
    np.testing.assert_allclose(F2, F, rtol=0, atol=1e-11 * np.abs(F).max())
    assert loss2 == pytest.approx(loss, rel=1e-11)
    np.testing.assert_allclose(np.concatenate(grads2), g, rtol=0, atol=1e-10 * np.abs(g).max())
    for p in np.random.default_rng(0).choice(len(w0), 10, replace=False):
        vals = []
        for sgn in (1, -1):
            w = w0.copy()
            w[p] += sgn * 1e-5
            tr.set_parameters(np.split(w, sizes))
            vals.append(tr._batch([0, 1], True)[5][0])
        assert g[p] == pytest.approx((vals[0] - vals[1]) / 2e-5, rel=1e-6, abs=1e-9), p
    tr.set_parameters(np.split(w0, sizes))


def test_two_step_training_learns_the_teacher(teacher, tmp_path):
    """Step 1 brings the charge error down by more than 100x (measured: 1.11 -> 0.0022 e); step 2's
    potential (a complete 3G directory) predicts what its trainer saw; its energy error falls by
    more than 100x (measured 3.4 -> 0.004 per atom) and its force error by more than 3x (0.72 ->
    0.19) in 20 Kalman epochs on 18 structures."""
    _, settings, structs = teacher
    cfg = TrainingConfig(seed=4, epochs=15, optimizer="kalman", test_fraction=0.25)
    tr1 = LocalChargeTrainer(settings, structs, cfg)
    h1 = tr1.train(tmp_path / "step1", progress=False)
    assert h1[-1].rmse_charge_train < h1[0].rmse_charge_train / 100
    assert h1[tr1.best_epoch].rmse_charge_test < 0.01
    for f in ("scalinge.data", "weightse.001.data", "weightse.008.data", "learning-curve-charges.out"):
        assert (tmp_path / "step1" / f).exists()
    # (no validation set: the same 22 training structures as when these thresholds were measured)
    tr2 = LocalShortTrainer(tmp_path / "step1", structs, TrainingConfig(seed=5, epochs=20, optimizer="kalman",
                                                                        validation_fraction=0.0))
    h2 = tr2.train(tmp_path / "step2", progress=False)
    assert h2[-1].rmse_energy_train < h2[0].rmse_energy_train / 100
    assert h2[-1].rmse_force_train < h2[0].rmse_force_train / 3
    pot = hdnnp.load(tmp_path / "step2")
    assert isinstance(pot, ThirdGeneration) and pot.charge_correction == "rescale"
    for k in (0, 5):
        r = pot.compute(structs[k], forces=True)
        E, F, _, _, _, _ = tr2._forward([k])
        assert r["energy"] == pytest.approx(E[0], rel=1e-10)
        np.testing.assert_allclose(r["forces"], F, rtol=0, atol=1e-9)
        assert r["charges"].sum() == pytest.approx(0.0, abs=1e-12)
        np.testing.assert_allclose(r["charges"], structs[k].arrays["ref_charges"], atol=0.05)
    # stresses: the written potential's (periodic structure 0) = the trainer's (electrostatic virial
    # included), which is close to the teacher's
    r = pot.compute(structs[0], forces=True, stress=True)
    st = -0.5 * (r["virial"] + r["virial"].T) / structs[0].get_volume()
    pred, ref, _ = tr2.stress_of(tr2._forward([0])[5])
    np.testing.assert_allclose(pred[0], [st[0, 0], st[1, 1], st[2, 2], st[1, 2], st[0, 2], st[0, 1]], atol=1e-10)


def test_bad_3g_training_input_is_refused(teacher, tmp_path):
    tdir, settings, structs = teacher
    bad = [a.copy() for a in structs[:3]]
    del bad[1].arrays["ref_charges"]
    with pytest.raises(DataError, match="structure 1: no reference charges"):
        LocalChargeTrainer(settings, bad, TrainingConfig())
    with pytest.raises(DataError, match="step-1 file scalinge.data"):
        LocalShortTrainer(settings, structs, TrainingConfig())


def test_cli_trains_and_predicts_3g(teacher, tmp_path, capsys):
    _, settings, structs = teacher
    d = tmp_path / "run"
    shutil.copytree(settings, d)
    hdnnp.write_input_data(d / "input.data", structs[:12])
    assert main(["train", str(d), "--epochs", "2", "--quiet"]) == 2
    assert "--stage 1" in capsys.readouterr().err
    assert main(["train", str(d), "--stage", "1", "--epochs", "5", "--optimizer", "kalman", "--quiet"]) == 0
    assert main(["train", str(d), "--stage", "2", "--charges", str(d / "charges"), "--epochs", "2", "--quiet"]) == 0
    assert main(["predict", str(d / "potential"), str(d / "input.data"), "-o", str(tmp_path / "out.data")]) == 0
    out = hdnnp.read_input_data(tmp_path / "out.data")
    assert len(out) == 12
    pot = ThirdGeneration(d / "potential")
    for k in (0, 7):
        r = pot.compute(structs[k], forces=True)
        assert out[k].info["energy"] == pytest.approx(r["energy"], rel=1e-14)
        np.testing.assert_allclose(out[k].arrays["ref_charges"], r["charges"], rtol=0, atol=1e-14)
        assert out[k].arrays["ref_charges"].sum() == pytest.approx(0.0, abs=1e-12)



def test_charge_step_resume_equals_uninterrupted(teacher, tmp_path):
    _, settings, structs = teacher
    cfg = dict(optimizer="kalman", epochs=4, seed=7)
    full = LocalChargeTrainer(settings, structs, TrainingConfig(**cfg))
    full.train(tmp_path / "a", progress=False)
    part = LocalChargeTrainer(settings, structs, TrainingConfig(**{**cfg, "epochs": 2}))
    part.train(tmp_path / "b", progress=False)
    resumed = LocalChargeTrainer(settings, structs, TrainingConfig(**cfg)).resume(
        tmp_path / "b" / "checkpoint-charges.npz")
    resumed.train(tmp_path / "c", progress=False)
    np.testing.assert_array_equal(resumed.parameters(), full.parameters())
    assert [h.rmse_charge_test for h in resumed.history] == [h.rmse_charge_test for h in full.history]


def test_fitted_offsets_leave_out_the_electrostatics(teacher):
    """fit_offsets fits E_ref - E_elec (the step-1 charges' electrostatics, which the short
    networks do not give), by least squares over the training structures."""
    from hdnnp.training.trainer import fit_atomic_energies

    tdir, _, structs = teacher
    tr = LocalShortTrainer(tdir, structs, TrainingConfig(seed=5, fit_offsets=True))
    pot = ThirdGeneration(tdir, ewald=1e-10)
    train = [structs[k] for k in tr.train_idx]
    resid = [a.info["energy"] - pot.compute(a)["electrostatic_energy"] for a in train]
    np.testing.assert_allclose(tr.offsets, fit_atomic_energies(train, tr.elements, resid), rtol=1e-6)


def test_stage_2_reads_the_directory_settings_or_refuses(teacher, tmp_path, capsys):
    """`--stage 2 --charges DIR` trains with the training keywords of ./input.nn (here: 3 epochs,
    Adam), and refuses when ./input.nn describes another potential than stage 1's copy."""
    _, settings, structs = teacher
    d = tmp_path / "run"
    shutil.copytree(settings, d)
    hdnnp.write_input_data(d / "input.data", structs[:10])
    assert main(["train", str(d), "--stage", "1", "--epochs", "5", "--optimizer", "kalman", "--quiet"]) == 0
    with open(d / "input.nn", "a") as fh:
        fh.write("epochs 3\nupdater_type 0\ngradient_type 1\n")
    assert main(["train", str(d), "--stage", "2", "--charges", str(d / "charges"), "--quiet"]) == 0
    curve = [l for l in open(d / "potential" / "learning-curve.out") if not l.startswith("#")]
    assert len(curve) == 4                                  # epochs 0..3, as ./input.nn says
    info = __import__("json").load(open(d / "potential" / "training.json"))
    assert info["config"]["optimizer"] == "adam" and info["config"]["epochs"] == 3
    capsys.readouterr()
    text = (d / "input.nn").read_text().replace("global_nodes_short 6 5", "global_nodes_short 7 5", 1)
    assert "global_nodes_short 7 5" in text
    (d / "input.nn").write_text(text)
    assert main(["train", str(d), "--stage", "2", "--charges", str(d / "charges"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "describe different potentials (global_nodes_short)" in err
    assert str(d / "input.nn") in err and str(d / "charges" / "input.nn") in err


def test_both_steps_two_processes_equal_one(teacher, tmp_path):
    """The charge step and the short step of a 3G potential on 2 MPI processes equal one process
    with 2 Kalman streams."""
    import sys

    from mpi_util import assert_same_weights, require_mpi, run, weights

    require_mpi()
    _, settings, structs = teacher
    d = tmp_path / "run"
    shutil.copytree(settings, d)
    hdnnp.write_input_data(d / "input.data", structs[:12])
    cli = [sys.executable, "-m", "hdnnp.cli", "train", d, "-q", "--epochs", "3", "--optimizer", "kalman",
           "--set", "kalman_streams=2"]
    for n in (1, 2):
        run(cli + ["--stage", "1", "-o", tmp_path / f"q{n}"], n)
        run(cli + ["--stage", "2", "--charges", tmp_path / f"q{n}", "-o", tmp_path / f"p{n}"], n)
    assert_same_weights(weights(tmp_path / "q1", "weightse.*.data"), weights(tmp_path / "q2", "weightse.*.data"))
    assert_same_weights(weights(tmp_path / "p1"), weights(tmp_path / "p2"))
