"""4G (first part): non-periodic energies and charges against n2p2, both charge states."""
import shutil

import numpy as np
import pytest

import hdnnp
from hdnnp.fourth_generation import FourthGeneration

CC = "n2p2_Carbon_chain_4G"


def test_carbon_chain_prediction_equals_n2p2(fixtures):
    pot = FourthGeneration(fixtures / CC / "potential")
    atoms = hdnnp.read_input_data(fixtures / CC / "predict" / "input.data")[0]
    r = pot.evaluate(atoms)
    assert r["energy"] == pytest.approx(-3.8161078713069378e02, rel=1e-12)  # reference/nnp-predict_C10H2/energy.out
    ref = np.loadtxt(fixtures / CC / "reference" / "nnp-predict_C10H2" / "nnatoms.out")
    np.testing.assert_allclose(r["charges"], ref[:, 4], rtol=0, atol=1e-12)
    np.testing.assert_allclose(r["atom_energies_short"], ref[:, 6], rtol=0, atol=1e-12)
    assert abs(r["charges"].sum()) < 1e-14


def test_carbon_chain_dataset_both_charge_states(fixtures):
    """The 128 structures of n2p2's nnp-dataset run (neutral and +1 chains): energies to the
    9 printed digits (1e-8 relative)."""
    pot = FourthGeneration(fixtures / CC / "potential")
    structs = hdnnp.read_input_data(fixtures / CC / "train" / "input.data")
    ref = np.loadtxt(fixtures / CC / "reference" / "nnp-dataset_trainset_128" / "energy.comp")
    charges = set()
    for k, _, _, e_ref in ref:
        a = structs[int(k)]
        r = pot.evaluate(a)
        assert r["energy"] == pytest.approx(e_ref, rel=1e-8)
        assert r["charges"].sum() == pytest.approx(a.info.get("charge", 0.0), abs=1e-12)
        charges.add(a.info.get("charge", 0.0))
    assert charges == {0.0, 1.0}


def test_mismatched_carbon_chain_file_refused(fixtures, tmp_path):
    d = tmp_path / "pot"
    shutil.copytree(fixtures / CC / "potential", d)
    shutil.copy(d / "input.nn.n2p2-master-ORIGINAL-mismatched-nodes", d / "input.nn")
    with pytest.raises(ValueError, match=r"weights?e?\.\d{3}\.data: expected \d+ weights for the declared architecture"):
        FourthGeneration(d)


def test_periodic_refused_clearly(fixtures):
    pot = FourthGeneration(fixtures / CC / "potential")
    atoms = hdnnp.read_input_data(fixtures / CC / "predict" / "input.data")[0]
    atoms.set_cell([30.0, 30.0, 30.0])
    atoms.pbc = True
    with pytest.raises(ValueError, match="periodic 4G structures"):
        pot.evaluate(atoms)


def test_forces_equal_n2p2_and_finite_differences(fixtures):
    pot = FourthGeneration(fixtures / CC / "potential")
    atoms = hdnnp.read_input_data(fixtures / CC / "predict" / "input.data")[0]
    r = pot.evaluate(atoms, forces=True)
    ref = np.loadtxt(fixtures / CC / "reference" / "nnp-predict_C10H2" / "nnforces.out")
    np.testing.assert_allclose(r["forces"], ref[:, 5:8], rtol=0, atol=1e-12)
    np.testing.assert_allclose(r["forces"].sum(axis=0), 0.0, atol=1e-13)
    # a charged chain (+1) against central differences of the energy
    structs = hdnnp.read_input_data(fixtures / CC / "train" / "input.data")
    charged = next(a for a in structs if a.info.get("charge", 0.0) == 1.0)
    r = pot.evaluate(charged, forces=True)
    h = 1e-5
    for i in (0, 5, len(charged) - 1):
        for c in range(3):
            b = charged.copy()
            b.positions[i, c] += h
            ep = pot.evaluate(b)["energy"]
            b.positions[i, c] -= 2 * h
            em = pot.evaluate(b)["energy"]
            assert r["forces"][i, c] == pytest.approx(-(ep - em) / (2 * h), abs=1e-8)
