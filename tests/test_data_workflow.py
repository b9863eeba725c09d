"""The training workflow as a new user meets it: ASE data written without silent zeros, and an
honest train / validation / test split (the test set makes no choice)."""
import json
import os

import numpy as np
import pytest

import hdnnp
from hdnnp.training.data import selection_score, split
from hdnnp.training.trainer import Trainer, TrainingConfig
from synth import random_cluster, write_potential

pytestmark = pytest.mark.filterwarnings("ignore::hdnnp.potential.ExtrapolationWarning")
UNITS = "# hdnnp: length_unit=Angstrom energy_unit=eV\n"


def labelled(tmp_path, n=14, seed=0):
    """Structures labelled by a random teacher potential, as ASE Atoms with a calculator."""
    from ase.calculators.singlepoint import SinglePointCalculator

    teacher = hdnnp.load(write_potential(tmp_path / "teacher", types=[2, 3], extra_lines=UNITS, seed=seed))
    out = []
    for k in range(n):
        a = random_cluster(n_h=6, n_o=3, box=(5.0, 5.2, 5.4), tilt=(0.5, -0.2, 0.3), seed=200 + k, dmin=0.95)
        r = teacher.evaluate(a, extrapolation="ignore")
        a.calc = SinglePointCalculator(a, energy=r.energy, forces=r.forces, stress=r.stress)
        out.append(a)
    return out


# -- write_input_data ----------------------------------------------------------------------------
def test_write_input_data_takes_calculator_results(tmp_path):
    import ase.io

    structs = labelled(tmp_path, n=3)
    ase.io.write(tmp_path / "data.extxyz", structs)
    back = ase.io.read(tmp_path / "data.extxyz", ":")        # results on a SinglePointCalculator
    assert "energy" not in back[0].info
    hdnnp.write_input_data(tmp_path / "input.data", back)
    again = hdnnp.read_input_data(tmp_path / "input.data")
    for a, r, b in zip(structs, back, again):      # (extxyz keeps 8 decimals of the forces)
        assert b.info["energy"] == pytest.approx(a.get_potential_energy(), rel=1e-14)
        np.testing.assert_array_equal(b.arrays["ref_forces"], r.get_forces())
        np.testing.assert_allclose(b.arrays["ref_forces"], a.get_forces(), rtol=0, atol=1e-8)
        assert b.info["energy"] != 0.0


def test_write_input_data_refuses_missing_references(tmp_path):
    structs = labelled(tmp_path, n=3)
    bare = structs[1].copy()                                   # no calculator, no info
    with pytest.raises(ValueError, match=r"structure 1 \(H6O3\): no reference energy and forces"):
        hdnnp.write_input_data(tmp_path / "x.data", [structs[0], bare, structs[2]])
    assert not (tmp_path / "x.data").exists()                  # nothing half-written
    energy_only = structs[1].copy()
    energy_only.info["energy"] = -3.0
    with pytest.raises(ValueError, match="structure 0 .*no reference forces"):
        hdnnp.write_input_data(tmp_path / "x.data", [energy_only])
    hdnnp.write_input_data(tmp_path / "e.data", [energy_only], references="energy")
    assert hdnnp.read_input_data(tmp_path / "e.data")[0].info["energy"] == -3.0
    hdnnp.write_input_data(tmp_path / "u.data", [bare], references=False)   # frames to predict
    assert hdnnp.read_input_data(tmp_path / "u.data")[0].info["energy"] == 0.0


# -- the split -----------------------------------------------------------------------------------
def test_split_is_disjoint_and_honours_tags():
    tr, va, te = split(50, 0.1, 3, validation_fraction=0.2)
    assert (len(tr), len(va), len(te)) == (35, 10, 5)
    assert not (set(tr) & set(va) or set(tr) & set(te) or set(va) & set(te))
    assert sorted(np.concatenate([tr, va, te])) == list(range(50))
    tags = ["train"] * 6 + ["validation"] * 2 + ["test"] * 2
    tr, va, te = split(10, 0.5, 3, tags, validation_fraction=0.3)
    assert list(tr) == list(range(6)) and list(va) == [6, 7] and list(te) == [8, 9]
    # tags without validation: validation is drawn from the training-tagged structures only
    tr, va, te = split(10, 0.5, 3, ["train"] * 8 + ["test"] * 2, validation_fraction=0.2)
    assert len(va) == 2 and set(va) < set(range(8)) and list(te) == [8, 9]
    with pytest.raises(ValueError):
        split(10, 0.6, 3, validation_fraction=0.5)


def test_selection_combines_energy_and_force_errors():
    """An epoch whose energy error is 2.7x worse does not win by a 2 % better force error, in
    any units; without forces the energy decides."""
    good, bad = (0.010, 0.100), (0.027, 0.098)
    assert selection_score(*good) < selection_score(*bad)
    assert selection_score(good[0] * 27.2, good[1] * 51.4) < selection_score(bad[0] * 27.2, bad[1] * 51.4)
    assert selection_score(0.02) < selection_score(0.03)
    assert selection_score(0.02, 0.05, force_weight=0.0) == selection_score(0.02)


def _train(tmp_path, name, structs, epochs=6):
    settings = write_potential(tmp_path / name, types=[2, 3], extra_lines=UNITS, seed=1)
    os.remove(os.path.join(settings, "scaling.data"))          # the trainer computes it
    cfg = TrainingConfig(epochs=epochs, optimizer="adam", learning_rate=3e-3, fit_offsets=True, threads=1,
                         validation_fraction=0.2, test_fraction=0.2, seed=11)
    tr = Trainer(settings, structs, cfg)
    tr.train(tmp_path / name / "out", progress=False, log=lambda *_: None)
    return tr


def test_test_structures_make_no_choice(tmp_path):
    """Changing only the test structures (positions, references) leaves the split, scaling,
    offsets, best epoch and weights identical; the validation set chooses."""
    from hdnnp.training.data import from_ase

    data = from_ase(labelled(tmp_path))
    a = _train(tmp_path, "a", data)
    changed = [s.copy() for s in data]
    for k in a.test_idx:
        changed[k].info = dict(data[k].info, energy=data[k].info["energy"] + 5.0)
        changed[k].arrays["ref_forces"] = data[k].arrays["ref_forces"] * -3.0
        changed[k].positions = data[k].positions + np.random.default_rng(k).normal(0, 0.05, (len(data[k]), 3))
    b = _train(tmp_path, "b", changed)
    assert list(b.test_idx) == list(a.test_idx) and list(b.val_idx) == list(a.val_idx)
    assert b.best_epoch == a.best_epoch
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa, pb)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    for e in range(2):
        np.testing.assert_array_equal(a.stats[e]["max"], b.stats[e]["max"])
    # ... while the test errors do change
    assert a.history[-1].rmse_energy_test != b.history[-1].rmse_energy_test
    # the best epoch is the validation criterion's
    scores = [a.score(st) for st in a.history]
    assert a.best_epoch == int(np.argmin(scores[1:])) + 1
    info = json.load(open(tmp_path / "a" / "out" / "training.json"))
    assert info["structures"] == {"train": 8, "validation": 3, "test": 3}
    assert info["best"]["epoch"] == a.best_epoch


def test_validation_tags_and_early_stopping(tmp_path):
    from hdnnp.training.data import from_ase

    data = from_ase(labelled(tmp_path, n=10))
    for k, s in enumerate(data):
        s.info["set"] = "train" if k < 6 else "validation" if k < 8 else "test"
    settings = write_potential(tmp_path / "s", types=[2, 3], extra_lines=UNITS, seed=1)
    os.remove(os.path.join(settings, "scaling.data"))
    lines = []
    tr = Trainer(settings, data, TrainingConfig(epochs=40, optimizer="adam", learning_rate=0.3, patience=3,
                                                threads=1))
    tr.train(None, progress=False, log=lines.append)
    assert list(tr.val_idx) == [6, 7] and list(tr.test_idx) == [8, 9]
    assert lines[0].startswith("structures: 6 train, 2 validation")
    assert tr.epoch < 40 and any("no better validation score" in l for l in lines)
    assert tr.epoch - tr.best_epoch == 3


def test_set_tags_round_trip_through_input_data(tmp_path):
    structs = labelled(tmp_path, n=3)
    for a, tag in zip(structs, ("train", "validation", "test")):
        a.info["set"] = tag
    hdnnp.write_input_data(tmp_path / "t.data", structs)
    assert [a.info["set"] for a in hdnnp.read_input_data(tmp_path / "t.data")] == ["train", "validation", "test"]


# -- units of the electrostatics ----------------------------------------------------------------
@pytest.mark.parametrize("units, four_pi_eps", [("Angstrom eV", None), ("Bohr Ha", None), ("Angstrom eV", 0.0694461),
                                               ("Bohr Ha", 1.0)])
def test_declared_units_give_four_pi_epsilon(tmp_path, units, four_pi_eps):
    """An isolated ion pair (point charges +1, -1, 3G) has E = q1 q2 / (4 pi eps0 r) in eV and
    Angstrom whatever units the potential declares; a four_pi_epsilon line may repeat (rounded)
    what the units give."""
    from ase import Atoms
    from ase.units import Bohr, Hartree

    from synth import write_3g_potential

    lu, eu = units.split()
    extra = f"# hdnnp: length_unit={lu} energy_unit={eu}\n"
    if four_pi_eps is not None:
        extra += f"four_pi_epsilon {four_pi_eps}\n"
    pot = hdnnp.load(write_3g_potential(tmp_path / "p", extra_lines=extra, screen=None))
    lf, ef = (1.0, 1.0) if lu == "Angstrom" else (Bohr, Hartree)
    r = 7.3  # Angstrom
    atoms = Atoms("HO", positions=[[0, 0, 0], [r / lf, 0, 0]])
    op, _ = pot.electrostatics(atoms, np.array([0, 1]))
    e = op.energy(np.array([1.0, -1.0]), None)[0] * ef
    assert e == pytest.approx(-14.399645351950548 / r, rel=1e-6 if four_pi_eps else 1e-12)


def test_contradicting_four_pi_epsilon_is_refused(tmp_path):
    from synth import write_3g_potential

    d = write_3g_potential(tmp_path / "p", extra_lines="# hdnnp: length_unit=Angstrom energy_unit=eV\n"
                                                       "four_pi_epsilon 1.0\n")
    with pytest.raises(ValueError, match=r"input.nn:\d+: four_pi_epsilon 1 contradicts the declared units "
                                         r"\(Angstrom, eV\), in which 4 pi eps0 = 0.06944"):
        hdnnp.load(d)


# -- one data path for every command -------------------------------------------------------------
def _cli(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "hdnnp.cli", *map(str, args)], capture_output=True, text=True)


def test_scaling_and_norm_read_ase_files(tmp_path):
    """`hdnnp scaling/norm --data x.extxyz` give what the same structures as input.data give
    (the potential declares Bohr/Ha: the extxyz's eV/Angstrom are converted)."""
    import ase.io
    from ase.units import Bohr, Hartree

    from hdnnp.training.data import from_ase

    structs = labelled(tmp_path, n=12)
    ase.io.write(tmp_path / "data.extxyz", structs)
    for name in ("a", "b"):
        d = write_potential(tmp_path / name, types=[2, 3], extra_lines="# hdnnp: length_unit=Bohr energy_unit=Ha\n",
                            rc=8.0)
        os.remove(os.path.join(d, "scaling.data"))
    native = from_ase(ase.io.read(tmp_path / "data.extxyz", ":"), energy_factor=1 / Hartree, length_factor=1 / Bohr)
    hdnnp.write_input_data(tmp_path / "a" / "input.data", native)
    for args in (["scaling", tmp_path / "a"], ["scaling", tmp_path / "b", "--data", tmp_path / "data.extxyz"],
                 ["norm", tmp_path / "a"], ["norm", tmp_path / "b", "--data", tmp_path / "data.extxyz"]):
        r = _cli(*args)
        assert r.returncode == 0, r.stderr
    sa = np.loadtxt(tmp_path / "a" / "scaling.data")
    sb = np.loadtxt(tmp_path / "b" / "scaling.data")
    np.testing.assert_allclose(sa, sb, rtol=1e-9, atol=1e-12)
    norm = [[l for l in open(tmp_path / n / "input.nn") if l.startswith(("mean_energy", "conv_"))] for n in "ab"]
    assert len(norm[0]) == 3
    for la, lb in zip(*norm):
        assert float(la.split()[1]) == pytest.approx(float(lb.split()[1]), rel=1e-9)
    # both from the training structures only, as hdnnp train will split these twelve
    from hdnnp.training.n2p2 import config_from_input_nn
    from hdnnp.training.trainer import normalization_from_data, split_structures

    train = split_structures(native, config_from_input_nn(tmp_path / "a"))[0]
    assert len(train) == 10
    me, ce, cl = normalization_from_data([native[k] for k in train], use_forces=False)
    assert float(norm[0][0].split()[1]) == pytest.approx(me, rel=1e-9)
    assert float(norm[0][1].split()[1]) == pytest.approx(ce, rel=1e-9)


def test_predict_reads_and_writes_extxyz(tmp_path):
    import ase.io

    structs = labelled(tmp_path, n=3)
    ase.io.write(tmp_path / "in.extxyz", structs)
    d = write_potential(tmp_path / "pot", types=[2, 3], extra_lines=UNITS, seed=4)
    pot = hdnnp.load(d)
    r = _cli("predict", d, tmp_path / "in.extxyz", "-o", tmp_path / "out.extxyz", "-q")
    assert r.returncode == 0, r.stderr
    assert "eV and Angstrom" in r.stdout and "extrapolation:" in r.stdout
    out = ase.io.read(tmp_path / "out.extxyz", ":")
    inp = ase.io.read(tmp_path / "in.extxyz", ":")          # (the positions as extxyz holds them)
    for a, b in zip(inp, out):
        ref = pot.evaluate(a, extrapolation="ignore")
        assert b.get_potential_energy() == pytest.approx(ref.energy, rel=1e-12)
        np.testing.assert_allclose(b.get_forces(), ref.forces, rtol=0, atol=1e-7)   # (8 decimals in extxyz)
        np.testing.assert_allclose(b.get_stress(), ref.stress, rtol=0, atol=1e-7)
    assert os.path.exists(tmp_path / "out.extxyz.extrapolation")
    # ... and n2p2 output from an extxyz input (the potential's units: here eV and Angstrom too)
    r = _cli("predict", d, tmp_path / "in.extxyz", "-o", tmp_path / "out.data", "-q")
    assert r.returncode == 0, r.stderr
    back = hdnnp.read_input_data(tmp_path / "out.data")
    assert back[1].info["energy"] == pytest.approx(pot.evaluate(inp[1], extrapolation="ignore").energy, rel=1e-12)
    # a potential without declared units cannot convert eV/Angstrom: a clear error
    plain = write_potential(tmp_path / "plain", types=[2, 3])
    r = _cli("predict", plain, tmp_path / "in.extxyz", "-o", tmp_path / "x.extxyz")
    assert r.returncode == 2 and "units are needed" in r.stderr and not os.path.exists(tmp_path / "x.extxyz")


def test_charged_predict_writes_the_extrapolation_report(tmp_path):
    from synth import write_cent_potential

    d = write_cent_potential(tmp_path / "cent", extra_lines=UNITS)
    structs = [random_cluster(seed=s, dmin=0.6) for s in range(3)]
    hdnnp.write_input_data(tmp_path / "in.data", structs, references=False)
    pot = hdnnp.load(d)
    n_out = [int(np.count_nonzero(pot.compute(a, total_charge=0.0, extrapolation="ignore")["extrapolating_atoms"]))
             for a in structs]
    assert sum(n_out) > 0
    r = _cli("predict", d, tmp_path / "in.data", "-o", tmp_path / "out.data", "-q")
    assert r.returncode == 0, r.stderr
    assert f"extrapolation: {sum(n_out)} atom(s) in {sum(1 for n in n_out if n)} structure(s)" in r.stdout
    rows = [l for l in open(tmp_path / "out.data.extrapolation") if not l.startswith("#")]
    assert len({(l.split()[0], l.split()[1]) for l in rows}) == sum(n_out)
    out = hdnnp.read_input_data(tmp_path / "out.data")
    e = pot.compute(structs[2], total_charge=0.0, extrapolation="ignore")
    assert out[2].info["energy"] == pytest.approx(e["energy"], rel=1e-12)
    np.testing.assert_allclose(out[2].arrays["ref_charges"], e["charges"], rtol=0, atol=1e-12)


# -- offsets from the CLI ------------------------------------------------------------------------
def test_cli_fits_offsets_when_input_nn_has_none(tmp_path):
    """`hdnnp train` on an input.nn without atom_energy lines fits per-element offsets to the
    training energies (reported, written to the potential); the compositions here (H6O3 and
    H4O2 only: H:O always 2:1) do not separate H from O, which the report says."""
    import ase.io

    from hdnnp.training.trainer import fit_atomic_energies

    from ase.calculators.singlepoint import SinglePointCalculator

    structs = labelled(tmp_path, n=8)
    teacher = hdnnp.load(tmp_path / "teacher")
    for k, a in enumerate(structs):
        if k % 2 == 0:                                             # some H4O2: still H:O = 2:1
            a.calc = None
            del a[[0, 1, 6]]
        r = teacher.evaluate(a, extrapolation="ignore")
        # a DFT-like offset: -300 eV per O, -13 eV per H
        e = r.energy - 300.0 * a.get_chemical_symbols().count("O") - 13.0 * a.get_chemical_symbols().count("H")
        a.calc = SinglePointCalculator(a, energy=e, forces=r.forces)
    ase.io.write(tmp_path / "data.extxyz", structs)
    d = write_potential(tmp_path / "run", types=[2, 3], extra_lines=UNITS + "epochs 2\nupdater_type 0\n"
                        "gradient_type 1\nuse_short_forces\nrandom_seed 3\n", seed=1)
    os.remove(os.path.join(d, "scaling.data"))
    r = _cli("train", d, "--data", tmp_path / "data.extxyz", "-q")
    assert r.returncode == 0, r.stderr
    assert "per-element energy offsets fitted" in r.stdout and "minimum-norm split" in r.stdout
    info = json.load(open(os.path.join(d, "potential", "training.json")))
    assert info["structures"]["train"] == 6
    lines = [l.split() for l in open(os.path.join(d, "potential", "input.nn")) if l.startswith("atom_energy")]
    written = {e: float(x) for _, e, x in lines}
    back = ase.io.read(tmp_path / "data.extxyz", ":")
    from hdnnp.training.data import split

    train = split(8, 0.1, 3, None, 0.1)[0]
    expect = fit_atomic_energies([back[k] for k in train], ["H", "O"], [back[k].get_potential_energy() for k in train])
    assert written["H"] == pytest.approx(expect[0], rel=1e-9) and written["O"] == pytest.approx(expect[1], rel=1e-9)
    # per atom the offsets carry the ~ -109 eV/atom: the networks start close
    assert (2 * written["H"] + written["O"]) / 3 == pytest.approx(-(2 * 13.0 + 300.0) / 3, abs=3.0)
    r = _cli("train", d, "--data", tmp_path / "data.extxyz", "-q", "--no-fit-offsets", "-o", tmp_path / "nofit")
    assert r.returncode == 0 and "offsets fitted" not in r.stdout
    assert not any(l.startswith("atom_energy") for l in open(tmp_path / "nofit" / "input.nn"))


# -- every optimiser setting without Python ------------------------------------------------------
def test_every_training_setting_from_input_nn_and_cli(tmp_path):
    """input.nn keywords (n2p2's where they exist: task_batch_size_energy is Adam's batch) and
    CLI flags reach every TrainingConfig setting; the written potential loads without warnings."""
    import ase.io

    from hdnnp.training.n2p2 import apply_settings, config_from_input_nn

    extra = (UNITS + "epochs 2\nupdater_type 0\ngradient_type 1\nuse_short_forces\ntask_batch_size_energy 3\n"
             "learning_rate_decay 0.9\nenergy_weight 2.5\nstress_weight 0.5\nearly_stopping_patience 7\n"
             "memory_budget_mb 64\nfit_offsets 0\nweights_init glorot\nvalidation_fraction 0.25\n"
             "selection_force_weight 0.5\nshort_energy_fraction 0.5\nshort_force_fraction 0.04\n"
             "short_energy_error_threshold 1.5\nshort_force_error_threshold 2.5\nkalman_decoupling layer\n")
    d = write_potential(tmp_path / "run", types=[2, 3], extra_lines=extra, seed=1)
    os.remove(os.path.join(d, "scaling.data"))
    cfg = config_from_input_nn(d)
    assert (cfg.batch_size, cfg.learning_rate_decay, cfg.energy_weight, cfg.stress_weight, cfg.patience,
            cfg.memory_budget_mb, cfg.fit_offsets, cfg.init, cfg.validation_fraction,
            cfg.selection_force_weight) == (3, 0.9, 2.5, 0.5, 7, 64.0, False, "glorot", 0.25, 0.5)
    # n2p2's names of the Kalman filter's update fractions and thresholds; hdnnp's decoupling
    assert (cfg.energy_fraction, cfg.force_fraction, cfg.energy_threshold, cfg.force_threshold,
            cfg.kalman.decoupling) == (0.5, 0.04, 1.5, 2.5, "layer")
    apply_settings(cfg, ["beta2=0.99", "kalman.q0=0.02", "use_forces=false", "patience=none"])
    assert cfg.beta2 == 0.99 and cfg.kalman.q0 == 0.02 and cfg.use_forces is False and cfg.patience is None
    with pytest.raises(ValueError, match="unknown setting 'learnig_rate'"):
        apply_settings(cfg, ["learnig_rate=1"])
    ase.io.write(tmp_path / "data.extxyz", labelled(tmp_path, n=8))
    r = _cli("train", d, "--data", tmp_path / "data.extxyz", "-q", "--learning-rate", "0.004", "--batch-size", "2",
             "--set", "beta1=0.8", "--set", "kalman.eta=0.5")
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr
    info = json.load(open(os.path.join(d, "potential", "training.json")))
    c = info["config"]
    assert (c["learning_rate"], c["batch_size"], c["beta1"], c["kalman"]["eta"], c["energy_weight"],
            c["fit_offsets"]) == (0.004, 2, 0.8, 0.5, 2.5, False)
    assert info["structures"] == {"train": 5, "validation": 2, "test": 1}   # validation_fraction 0.25 of 8
    # what train writes, predict reads without warnings
    ase.io.write(tmp_path / "one.extxyz", labelled(tmp_path, n=1))
    r = _cli("predict", os.path.join(d, "potential"), tmp_path / "one.extxyz", "-o", tmp_path / "p.extxyz", "-q")
    assert r.returncode == 0 and "warning" not in r.stderr.lower(), r.stderr


# -- checkpoints ---------------------------------------------------------------------------------
def test_kalman_checkpoints_are_packed_and_sparse(tmp_path, monkeypatch):
    """The Kalman covariance is checkpointed as its upper triangle (half the matrix, exact) and,
    when large, not every epoch; a resume from such a checkpoint continues exactly."""
    from hdnnp.training.data import from_ase
    from hdnnp.training.trainer import checkpoint_due

    data = from_ase(labelled(tmp_path, n=6))
    settings = write_potential(tmp_path / "s", types=[2, 3], extra_lines=UNITS, seed=1)
    cfg = dict(epochs=7, optimizer="kalman", threads=1, seed=5, force_fraction=0.05, checkpoint_every=3)
    written = []
    orig = Trainer.checkpoint
    monkeypatch.setattr(Trainer, "checkpoint", lambda self, path: (written.append(self.epoch), orig(self, path)))
    full = Trainer(settings, data, TrainingConfig(**cfg))
    full.train(tmp_path / "full", progress=False, log=lambda *_: None)
    assert written == [3, 6, 7]
    n = sum(net.n_parameters for net in full.nets)
    with np.load(tmp_path / "full" / "checkpoint.npz") as z:
        assert z["kf_P_upper"].shape == (n * (n + 1) // 2,) and "kf_P" not in z.files
    size = os.path.getsize(tmp_path / "full" / "checkpoint.npz")
    assert size < 8 * n * n * 0.55 + 2e5                      # about half the full matrix
    # an interrupted run (checkpoint after epoch 3) resumed equals the uninterrupted one
    part = Trainer(settings, data, TrainingConfig(**{**cfg, "epochs": 3}))
    part.train(tmp_path / "part", progress=False, log=lambda *_: None)
    resumed = Trainer(settings, data, TrainingConfig(**cfg)).resume(tmp_path / "part" / "checkpoint.npz")
    resumed.train(tmp_path / "resumed", progress=False, log=lambda *_: None)
    for a, b in zip(full.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(a, b)
    # the automatic rule: every epoch while the covariance is small, every 10 epochs when large
    def trainer_with_filter_of(n):   # (a stand-in: a trainer whose filter has n weights' covariance)
        kf = type("K", (), {"state_bytes": 8 * n * (n + 1) // 2})()
        return type("T", (), {"config": TrainingConfig(), "_kf": kf})()

    assert full._kf.state_bytes == 8 * n * (n + 1) // 2
    assert all(checkpoint_due(trainer_with_filter_of(1500), e, False) for e in (1, 2, 3))    # 9 MB
    t = trainer_with_filter_of(3000)                                                          # 36 MB
    assert [e for e in range(1, 31) if checkpoint_due(t, e, False)] == [10, 20, 30] and checkpoint_due(t, 7, True)


# -- CLI errors ----------------------------------------------------------------------------------
def test_cli_errors_are_one_line_with_status_2(tmp_path):
    """Bad input: one line 'hdnnp: error: ...' naming the file/line/atom, exit status 2, no
    traceback; --debug shows the traceback."""
    d = write_potential(tmp_path / "pot", types=[2])
    (tmp_path / "bad.data").write_text("begin\natom 0 0 0 H 0 0 0 0 0\natom 0 0 nan O 0 0 0 0 0\nend\n")
    cases = [
        (["predict", d, tmp_path / "bad.data"], "bad.data:3"),                      # file and line
        (["predict", d, tmp_path / "missing.data"], "missing.data"),
        (["predict", tmp_path / "nowhere", tmp_path / "bad.data"], "nowhere"),
        (["train", tmp_path / "nowhere"], "nowhere"),
    ]
    (tmp_path / "xe.data").write_text("begin\natom 0 0 0 Xe 0 0 0 0 0\nend\n")
    cases.append((["predict", d, tmp_path / "xe.data"], "atom 0 is Xe"))               # the atom
    for args, needle in cases:
        r = _cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("hdnnp: error: ") and needle in lines[0], r.stderr
        assert "Traceback" not in r.stderr
    r = _cli("predict", d, tmp_path / "xe.data", "--debug")
    assert r.returncode != 0 and "Traceback" in r.stderr


# -- time limit ----------------------------------------------------------------------------------
def test_time_limit_stops_and_writes_the_best_potential(tmp_path):
    """`hdnnp train --time-limit S` stops within the budget (no epoch started that would end
    beyond it) and writes a loadable potential with the best epoch's weights."""
    import time

    import ase.io

    ase.io.write(tmp_path / "data.extxyz", labelled(tmp_path, n=10))
    d = write_potential(tmp_path / "run", types=[2, 3], extra_lines=UNITS + "epochs 100000\nupdater_type 0\n"
                        "gradient_type 1\nuse_short_forces\n", seed=1)
    os.remove(os.path.join(d, "scaling.data"))
    t0 = time.perf_counter()
    r = _cli("train", d, "--data", tmp_path / "data.extxyz", "-q", "--time-limit", "3")
    elapsed = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    assert "time limit of 3 s: stopping after epoch" in r.stdout
    info = json.load(open(os.path.join(d, "potential", "training.json")))
    epochs = info["final"]["epoch"]
    assert 1 <= epochs < 100000 and elapsed < 3 + 15          # (start-up, set-up and writing outside the budget)
    curve = [l for l in open(os.path.join(d, "potential", "learning-curve.out")) if not l.startswith("#")]
    assert len(curve) == epochs + 1
    pot = hdnnp.load(os.path.join(d, "potential"))
    assert np.isfinite(pot.evaluate(labelled(tmp_path / "x", n=1)[0], extrapolation="ignore").energy)
    from hdnnp.training.trainer import TrainingConfig as TC

    assert TC(time_limit=2.0).time_limit == 2.0


def test_time_limit_in_python_for_charge_trainers(tmp_path):
    from hdnnp.training.cent import CentTrainer
    from hdnnp.training.trainer import TrainingConfig
    from synth import write_cent_potential

    teacher = hdnnp.load(write_cent_potential(tmp_path / "t", seed=3))
    structs = []
    for s in range(6):
        a = random_cluster(seed=40 + s, dmin=0.9)
        a.info["energy"] = teacher.compute(a, total_charge=0.0)["energy"]
        structs.append(a)
    lines = []
    tr = CentTrainer(tmp_path / "t", structs, TrainingConfig(epochs=100000, optimizer="adam", time_limit=1.0))
    tr.train(tmp_path / "out", progress=False, log=lines.append)
    assert any("time limit of 1 s" in l for l in lines) and 1 <= tr.epoch < 100000
    assert hdnnp.load(tmp_path / "out").compute(structs[0], total_charge=0.0)["energy"] == pytest.approx(
        tr.residual(0)[0][0] * len(structs[0]) + structs[0].info["energy"], abs=1e-9)
