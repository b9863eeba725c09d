"""`hdnnp fit DATA -o DIR`: from an extxyz file with energies and forces to a potential (or a
committee) and a report, with no input.nn; bad data gives one clear error line."""
import json

import numpy as np
import pytest

import hdnnp
from hdnnp.cli import main


def emt_data(path, n=24, forces=True):
    import ase.io
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(0)
    frames = []
    for k in range(n):
        a = bulk("Cu", "fcc", a=3.6 * rng.uniform(0.97, 1.03), cubic=True).repeat((2, 2, 1))
        for i in rng.choice(len(a), size=int(rng.integers(0, 6)), replace=False):
            a[i].symbol = "Au"
        a.rattle(0.08, seed=int(rng.integers(1_000_000)))
        a.calc = EMT()
        e, f = a.get_potential_energy(), a.get_forces()
        a.calc = SinglePointCalculator(a, energy=e, **({"forces": f} if forces else {}))
        frames.append(a)
    ase.io.write(path, frames)
    return frames


def test_fit_committee_report_and_potentials(tmp_path, capsys):
    frames = emt_data(tmp_path / "data.extxyz")
    out = tmp_path / "out"
    assert main(["fit", str(tmp_path / "data.extxyz"), "-o", str(out), "--epochs", "4", "--committee", "2",
                 "-q"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["structures"] == len(frames) and len(rep["members"]) == 2
    assert rep["settings"]["elements"] == ["Cu", "Au"] and 4.5 <= rep["settings"]["cutoff"] <= 6.5
    assert sum(rep["split"].values()) == len(frames) and rep["split"]["test"] > 0
    for m in rep["members"]:
        assert np.isfinite(m["rmse_energy_meV_per_atom"]["test"]) and np.isfinite(m["rmse_force_eV_per_A"]["test"])
        text = (out / f"member{m['member']}" / "input.nn").read_text()
        assert "# hdnnp: length_unit=Angstrom energy_unit=eV" in text
        assert "hdnnp_zbl Cu Au" in text       # the baseline's radii resolved from the training data
        # the same held-out test structures for every member
        info = json.loads((out / f"member{m['member']}" / "training.json").read_text())
        assert info["structures"]["test"] == rep["split"]["test"]
    assert "| member0 |" in (out / "report.md").read_text()
    # the default optimiser: the element-decoupled Kalman filter, written into the settings'
    # input.nn so that `hdnnp train` makes the same choice
    from hdnnp.training.n2p2 import config_from_input_nn

    assert rep["settings"]["optimizer"] == "kalman" and rep["settings"]["kalman_decoupling"] == "element"
    assert json.loads((out / "member0" / "training.json").read_text())["config"]["kalman"]["decoupling"] == "element"
    cfg = config_from_input_nn(out / "settings")
    assert (cfg.optimizer, cfg.kalman.decoupling, cfg.force_fraction, cfg.fit_offsets) == ("kalman", "element", 0.1, True)
    assert "Kalman filter, one covariance block per element" in (out / "report.md").read_text()
    com = hdnnp.load([out / "member0", out / "member1"])
    r = com.evaluate(frames[0], extrapolation="ignore")
    assert np.isfinite(r.energy) and r.max_force_deviation is not None


def test_fit_time_limit_and_bad_data(tmp_path, capsys):
    emt_data(tmp_path / "d.extxyz", n=12)
    assert main(["fit", str(tmp_path / "d.extxyz"), "-o", str(tmp_path / "o"), "--epochs", "1000",
                 "--time-limit", "3", "-q"]) == 0
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["members"][0]["epochs_run"] < 1000
    assert np.isfinite(hdnnp.load(tmp_path / "o" / "potential").evaluate(
        __import__("ase.io").io.read(tmp_path / "d.extxyz", 0), extrapolation="ignore").energy)
    emt_data(tmp_path / "noforces.extxyz", n=4, forces=False)
    capsys.readouterr()
    assert main(["fit", str(tmp_path / "noforces.extxyz"), "-o", str(tmp_path / "x"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hdnnp: error:") and "structure 0 has no forces" in err and "noforces.extxyz" in err
    (tmp_path / "garbage.extxyz").write_text("not a structure file\n")
    assert main(["fit", str(tmp_path / "garbage.extxyz"), "-o", str(tmp_path / "y"), "-q"]) == 2
    assert "garbage.extxyz" in capsys.readouterr().err


def test_fit_optimizer_choice_by_network_size(tmp_path):
    """auto: per-element covariance blocks while an element's network has at most max_block
    weights, per-layer blocks while a layer has, Adam beyond."""
    from hdnnp.training.data import from_ase
    from hdnnp.workflow.fit import FitConfig, choose_optimizer, write_settings

    frames = from_ase(emt_data(tmp_path / "d.extxyz", n=4))
    write_settings(tmp_path / "probe", frames, FitConfig(hidden=(20, 20)), log=lambda *a: None)
    k = max(hdnnp._core.Model.load(str(tmp_path / "probe"), False).architecture(e)[0][0] for e in range(2))
    first_layer, network = 20 * k + 20, 20 * k + 20 + 420 + 21
    got = []
    for max_block in (network, network - 1, first_layer - 1):
        d = tmp_path / f"s{max_block}"
        write_settings(d, frames, FitConfig(hidden=(20, 20)), log=lambda *a: None)
        got.append(choose_optimizer(d, FitConfig(max_block=max_block)))
    assert got == [("kalman", "element"), ("kalman", "layer"), ("adam", "none")]
    assert "updater_type 0" in (tmp_path / f"s{first_layer - 1}" / "input.nn").read_text()


def test_fit_without_stored_derivatives_or_validation_set(tmp_path):
    """--memory-budget 0: no structure keeps its descriptor derivatives (they are contracted on
    every use); --validation-fraction 0: every non-test structure trains and the training error
    chooses the epoch."""
    frames = emt_data(tmp_path / "d.extxyz", n=10)
    out = tmp_path / "o"
    assert main(["fit", str(tmp_path / "d.extxyz"), "-o", str(out), "--epochs", "3", "--memory-budget", "0",
                 "--validation-fraction", "0", "-q"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["split"]["validation"] == 0 and rep["split"]["train"] + rep["split"]["test"] == len(frames)
    info = json.loads((out / "potential" / "training.json").read_text())
    assert info["config"]["memory_budget_mb"] == 0.0 and info["config"]["validation_fraction"] == 0.0
    m = rep["members"][0]
    assert np.isfinite(m["rmse_energy_meV_per_atom"]["test"]) and np.isfinite(m["rmse_force_eV_per_A"]["test"])
