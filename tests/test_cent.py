"""CENT mode: electronegativity networks -> charge equilibration -> the energy of the QEq
functional alone; forces without an adjoint solve (the charges minimise the functional); trained
on energies. No CENT reference outputs exist (n2p2 and RuNNer have none): forces and stress are
checked against central differences, the charges against the functional's minimum, training
against a random 'teacher' CENT potential."""
import os
import shutil

import numpy as np
import pytest

import hdnnp
from hdnnp.cent import Cent
from hdnnp.cli import main
from hdnnp.training.cent import CentTrainer
from hdnnp.training.trainer import TrainingConfig

from checks import assert_virial_is_strain_derivative
from synth import random_cluster, write_cent_potential

# (the synthetic potentials' random scaling ranges: some atoms extrapolate, which these tests do not test)
pytestmark = pytest.mark.filterwarnings("ignore::hdnnp.potential.ExtrapolationWarning")


@pytest.fixture(scope="module")
def cent_dir(tmp_path_factory):
    return write_cent_potential(str(tmp_path_factory.mktemp("cent") / "pot"))


@pytest.mark.parametrize("periodic, q", [(False, 0.0), (False, 1.0), (True, 0.0), (True, -1.0)])
def test_forces_stress_and_charges(cent_dir, periodic, q):
    pot = Cent(cent_dir, ewald=1e-12, reciprocal="ewald", background=True)
    atoms = random_cluster(pbc=periodic)
    if periodic:
        fixed = pot.ewald_parameters(atoms)
        pot.ewald_parameters = lambda a, solver=None, p=fixed: p   # differences at fixed Ewald parameters
    r = pot.compute(atoms, total_charge=q, forces=True, stress=True)
    assert r["charges"].sum() == pytest.approx(q, abs=1e-12)
    h = 1e-5
    for i, c in ((0, 0), (3, 1), (8, 2), (9, 0)):
        e = []
        for sgn in (1, -1):
            b = atoms.copy()
            b.positions[i, c] += sgn * h
            e.append(pot.compute(b, total_charge=q)["energy"])
        assert r["forces"][i, c] == pytest.approx(-(e[0] - e[1]) / (2 * h), abs=2e-9), (i, c)
    np.testing.assert_allclose(r["forces"].sum(axis=0), 0.0, atol=1e-10)
    if not periodic:
        np.testing.assert_allclose(r["dipole"], r["charges"] @ atoms.positions)
        return
    assert_virial_is_strain_derivative(lambda b: pot.compute(b, total_charge=q)["energy"], atoms, r["virial"])


def test_energy_is_the_minimum_of_the_qeq_functional(cent_dir):
    """E(Q) = chi.Q + J Q^2/2 + Q A0 Q/2 (+ offsets): the returned charges minimise it on sum Q =
    Q_tot, its value is the returned energy, and the CG solver gives the same as the dense one."""
    pot = Cent(cent_dir)
    atoms = random_cluster(pbc=False)
    r = pot.compute(atoms, total_charge=0.5)
    species = pot._species(atoms)
    op, _ = pot.electrostatics(atoms, species)
    A0, chi, J = op.dense(), r["electronegativities"], pot.hardness[species]
    offsets = pot.offsets[species].sum()

    def functional(Q):
        return chi @ Q + 0.5 * (J * Q) @ Q + 0.5 * Q @ A0 @ Q + offsets

    assert functional(r["charges"]) == pytest.approx(r["energy"], abs=1e-12)
    rng = np.random.default_rng(0)
    for _ in range(5):
        d = rng.normal(size=len(atoms)) * 1e-3
        d -= d.mean()
        assert functional(r["charges"] + d) > r["energy"]
    cg = Cent(cent_dir, solver="cg", tolerance=1e-12).compute(atoms, total_charge=0.5, forces=True)
    ref = pot.compute(atoms, total_charge=0.5, forces=True)
    assert cg["energy"] == pytest.approx(ref["energy"], abs=1e-10)
    np.testing.assert_allclose(cg["forces"], ref["forces"], atol=1e-8)


def test_screening_refused_and_load_dispatch(tmp_path):
    d = write_cent_potential(str(tmp_path / "s"), extra_lines="screen_electrostatics 1.0 4.0\n")
    with pytest.raises(ValueError, match="screen_electrostatics cannot be used with CENT"):
        Cent(d)
    d = write_cent_potential(str(tmp_path / "ok"))
    assert isinstance(hdnnp.load(d), Cent)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    base = tmp_path_factory.mktemp("tcent")
    tdir = write_cent_potential(str(base / "teacher"), seed=11)
    pot = Cent(tdir, background=True)
    structs = []
    for s in range(30):
        a = random_cluster(pbc=s % 3 == 0, seed=300 + s)
        a.info["charge"] = float(s % 2)
        a.info["energy"] = pot.compute(a)["energy"]
        structs.append(a)
    settings = base / "settings"
    settings.mkdir()
    shutil.copy(os.path.join(tdir, "input.nn"), settings / "input.nn")
    return tdir, settings, structs


def test_energy_gradient_matches_finite_differences(teacher):
    _, settings, structs = teacher
    tr = CentTrainer(settings, structs[:6], TrainingConfig(seed=2))
    tr.compute_scaling()
    ks = [0, 1, 3, 4]

    def loss():
        out, g = 0.0, 0.0
        for k in ks:
            r, st = tr.residual(k)
            out += r @ r
            g = g + tr.residual_gradient(st, 2 * r)
        return out, g

    w0 = tr.parameters()
    _, g = loss()
    picks = list(np.random.default_rng(1).choice(len(w0) - 2, 10, replace=False)) + [len(w0) - 2, len(w0) - 1]
    for p in picks:
        vals = []
        for sgn in (1, -1):
            w = w0.copy()
            w[p] += sgn * 1e-6
            tr.set_parameters(w)
            vals.append(loss()[0])
        assert g[p] == pytest.approx((vals[0] - vals[1]) / 2e-6, rel=1e-5, abs=1e-10), p
    tr.set_parameters(w0)


def test_training_on_energies_learns_the_teacher(teacher, tmp_path):
    """Kalman on energies alone: the energy error falls by more than 10x and the written CENT
    potential predicts what the trainer saw (both charge states)."""
    _, settings, structs = teacher
    tr = CentTrainer(settings, structs, TrainingConfig(seed=3, epochs=20, optimizer="kalman", test_fraction=0.2))
    hist = tr.train(tmp_path / "out", progress=False)
    assert hist[-1].rmse_energy_train < hist[0].rmse_energy_train / 10
    pot = hdnnp.load(tmp_path / "out", background=True)
    for k in (0, 1, 5):
        r = pot.compute(structs[k])
        res, _ = tr.residual(k)
        assert r["energy"] - structs[k].info["energy"] == pytest.approx(res[0] * len(structs[k]), abs=1e-10)
    assert (tmp_path / "out" / "learning-curve.out").exists() and (tmp_path / "out" / "training.json").exists()


def test_cli_trains_and_predicts_cent(teacher, tmp_path, capsys):
    _, settings, structs = teacher
    d = tmp_path / "run"
    shutil.copytree(settings, d)
    hdnnp.write_input_data(d / "input.data", structs[:10], references="energy")
    assert main(["train", str(d), "--stage", "1", "-q"]) == 2
    assert "one stage" in capsys.readouterr().err
    assert main(["train", str(d), "--epochs", "3", "--optimizer", "kalman", "-q"]) == 0
    capsys.readouterr()
    assert main(["predict", str(d / "potential"), str(d / "input.data"), "-o", str(tmp_path / "out.data")]) == 2
    assert "total charge of" in capsys.readouterr().err     # charged cells need the background option
    assert main(["predict", str(d / "potential"), str(d / "input.data"), "-o", str(tmp_path / "out.data"),
                 "--background"]) == 0
    out = hdnnp.read_input_data(tmp_path / "out.data")
    pot = Cent(d / "potential", background=True)
    for k in (0, 3):
        r = pot.compute(structs[k], forces=True)
        assert out[k].info["energy"] == pytest.approx(r["energy"], rel=1e-14)
        np.testing.assert_allclose(out[k].arrays["ref_charges"], r["charges"], rtol=0, atol=1e-14)


@pytest.mark.parametrize("optimizer", ["kalman", "adam"])
def test_cent_training_resume_equals_uninterrupted(teacher, tmp_path, optimizer):
    _, settings, structs = teacher
    cfg = dict(optimizer=optimizer, epochs=4, seed=7, learning_rate=1e-3)
    full = CentTrainer(settings, structs, TrainingConfig(**cfg))
    full.train(tmp_path / "a", progress=False)
    part = CentTrainer(settings, structs, TrainingConfig(**{**cfg, "epochs": 2}))
    part.train(tmp_path / "b", progress=False)
    resumed = CentTrainer(settings, structs, TrainingConfig(**cfg)).resume(tmp_path / "b" / "checkpoint.npz")
    resumed.train(tmp_path / "c", progress=False)
    np.testing.assert_array_equal(resumed.parameters(), full.parameters())
    assert [h.rmse_energy_test for h in resumed.history] == [h.rmse_energy_test for h in full.history]


@pytest.mark.parametrize("optimizer", ["kalman", "adam"])
def test_cent_two_processes_equal_one(teacher, tmp_path, optimizer):
    """CENT trained on 2 MPI processes (each its structures; Kalman: one observation per process
    and update, as one process with 2 streams; Adam: batches shared out) equals one process."""
    import sys

    from mpi_util import assert_same_weights, require_mpi, run, weights

    require_mpi()
    _, settings, structs = teacher
    d = tmp_path / "run"
    shutil.copytree(settings, d)
    hdnnp.write_input_data(d / "input.data", structs[:16], references="energy")
    cli = [sys.executable, "-m", "hdnnp.cli", "train", d, "-q", "--epochs", "3", "--optimizer", optimizer,
           "--set", "kalman_streams=2", "--batch-size", "3"]
    for n in (1, 2):
        run(cli + ["-o", tmp_path / f"p{n}"], n)
    w1, w2 = ([*weights(tmp_path / f"p{n}", "weightse.*.data"), *weights(tmp_path / f"p{n}", "hardness.*.data")]
              for n in (1, 2))
    assert_same_weights(np.array(w1), np.array(w2))
