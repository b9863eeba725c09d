"""Parity with n2p2's own outputs on the shared 2G fixtures."""
import json

import numpy as np
import pytest

import hdnnp
from hdnnp import _core

REL_E = 1e-10   # relative, energies
ABS_F = 1e-8    # absolute, per force component (native units)


def table(path):
    return np.array([[float(x) for x in l.split()] for l in open(path) if l.strip() and not l.startswith("#")])


def load_native(fixtures, name):
    return hdnnp.Potential(fixtures / name / "potential", warn=False)


def check_structures(pot, ref_structs, inputs):
    assert len(ref_structs) == len(inputs)
    worst_e = worst_f = 0.0
    for ref, atoms in zip(ref_structs, inputs):
        r = pot.evaluate(atoms, stress=False, native=True, extrapolation="ignore")
        worst_e = max(worst_e, abs(r.energy - ref["energy"]) / abs(ref["energy"]))
        worst_f = max(worst_f, np.abs(r.forces - ref["forces"]).max())
    assert worst_e < REL_E, worst_e
    assert worst_f < ABS_F, worst_f


@pytest.mark.parametrize("name,sub,data", [
    ("n2p2_H2O_RPBE-D3_2G", "nnp-dataset_trainset", "train/input.data"),
    ("n2p2_Cu2S_PBE_2G", "nnp-dataset_trainset", "train/input.data"),
    ("n2p2_DMABN_SCAN_2G", "nnp-dataset_21frames", "data/input.data"),
])
def test_whole_datasets(fixtures, name, sub, data):
    pot = load_native(fixtures, name)
    ref = _core.read_input_data(str(fixtures / name / "reference" / sub / "output.data"))
    inputs = hdnnp.read_input_data(fixtures / name / data)
    check_structures(pot, ref, inputs)


@pytest.mark.parametrize("name,sub", [
    ("n2p2_H2O_RPBE-D3_2G", "nnp-predict_1080atoms"),
    ("n2p2_Cu2S_PBE_2G", "nnp-predict_144atoms"),
    ("n2p2_DMABN_SCAN_2G", "nnp-predict_frame51"),
])
def test_nnp_predict(fixtures, name, sub):
    pot = load_native(fixtures, name)
    atoms = hdnnp.read_input_data(fixtures / name / "predict" / "input.data")[0]  # nnp-predict: first only
    r = pot.evaluate(atoms, stress=False, native=True, extrapolation="ignore")
    ref_dir = fixtures / name / "reference" / sub
    e = table(ref_dir / "energy.out")
    assert e.shape[0] == 1 and int(e[0, 1]) == len(atoms)
    assert abs(r.energy - e[0, 3]) <= REL_E * abs(e[0, 3])
    f = table(ref_dir / "nnforces.out")
    assert np.abs(r.forces - f[:, 5:8]).max() < ABS_F
    # Per-atom energies: n2p2 reports E_i in physical units without mean energy and offsets.
    at = table(ref_dir / "nnatoms.out")
    offsets = np.array(pot.model.atom_energies)[[pot.model.elements.index(s) for s in atoms.get_chemical_symbols()]]
    ours = r.energies - pot.model.mean_energy - offsets
    assert np.abs(ours - at[:, 6]).max() < 1e-10 * max(1.0, np.abs(at[:, 6]).max())
    assert abs(r.energies.sum() - r.energy) < 1e-9 * abs(r.energy)


@pytest.mark.parametrize("name", ["n2p2_H2O_RPBE-D3_2G", "n2p2_Cu2S_PBE_2G", "n2p2_DMABN_SCAN_2G"])
def test_n2p2_regression_values(fixtures, name):
    ref = json.load(open(fixtures / name / "reference" / "n2p2_test_expected_prediction.json"))
    pot = load_native(fixtures, name)
    atoms = hdnnp.read_input_data(fixtures / name / "predict" / "input.data")[0]
    r = pot.evaluate(atoms, stress=False, native=True, extrapolation="ignore")
    assert abs(r.energy - ref["energy"]) <= REL_E * abs(ref["energy"])
    assert np.abs(r.forces - np.array(ref["forces"])).max() < ABS_F


@pytest.mark.parametrize("name,nstruct", [("n2p2_H2O_RPBE-D3_2G", 2), ("n2p2_Cu2S_PBE_2G", 2)])
def test_unscaled_symmetry_functions(fixtures, name, nstruct):
    # The reference values were computed with train/input.nn (Cu2S: more SFs than potential/).
    pot = hdnnp.Potential(fixtures / name / "train", warn=False, weights=False)
    inputs = hdnnp.read_input_data(fixtures / name / "train" / "input.data")[:nstruct]
    rows = [l.split() for l in open(fixtures / name / "reference" / f"sf_values_unscaled_trainset_first{nstruct}.txt")
            if not l.startswith("#") and l.strip()]
    G = [pot.descriptors(a) for a in inputs]
    n_checked = 0
    for row in rows:
        s, a, el, nsf = int(row[0]), int(row[1]), row[2], int(row[3])
        ref = np.array([float(x) for x in row[4:]])
        assert inputs[s].get_chemical_symbols()[a] == el and len(ref) == nsf
        ours = G[s][a]
        np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-13)
        n_checked += 1
    assert n_checked == sum(len(a) for a in inputs)
