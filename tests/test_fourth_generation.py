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
