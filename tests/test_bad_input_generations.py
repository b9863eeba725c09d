"""Bad input for every generation: a missing file, a wrong weight count, an unknown element and
(3G, 4G, CENT) a charged periodic cell without the background option each give a clear error
naming the file or the atom."""
import os

import numpy as np
import pytest

import hdnnp
from synth import random_cluster, write_3g_potential, write_4g_potential, write_cent_potential, write_potential

pytestmark = pytest.mark.filterwarnings("ignore::hdnnp.potential.ExtrapolationWarning")
WRITERS = {"2G": write_potential, "3G": write_3g_potential, "4G": write_4g_potential, "CENT": write_cent_potential}
# a file each generation needs, and a weight file to corrupt
FILES = {"2G": ("scaling.data", "weights.008.data"), "3G": ("scalinge.data", "weightse.008.data"),
         "4G": ("hardness.008.data", "weightse.008.data"), "CENT": ("hardness.001.data", "weightse.001.data")}


@pytest.mark.parametrize("gen", list(WRITERS))
def test_missing_file(tmp_path, gen):
    d = WRITERS[gen](tmp_path / gen)
    missing = FILES[gen][0]
    os.remove(os.path.join(d, missing))
    with pytest.raises((ValueError, OSError)) as ei:
        hdnnp.load(d)
    assert missing in str(ei.value)


@pytest.mark.parametrize("gen", list(WRITERS))
def test_wrong_weight_count(tmp_path, gen):
    d = WRITERS[gen](tmp_path / gen)
    name = FILES[gen][1]
    with open(os.path.join(d, name), "a") as fh:
        fh.write("0.25\n")
    with pytest.raises((ValueError, OSError)) as ei:
        hdnnp.load(d)
    assert name in str(ei.value) and "expected" in str(ei.value)


@pytest.mark.parametrize("gen", list(WRITERS))
def test_unknown_element(tmp_path, gen):
    pot = hdnnp.load(WRITERS[gen](tmp_path / gen, extra_lines="# hdnnp: length_unit=Angstrom energy_unit=eV\n"))
    atoms = random_cluster(seed=3)
    atoms.symbols[4] = "Xe"
    with pytest.raises(ValueError) as ei:
        pot.evaluate(atoms)
    assert "atom 4" in str(ei.value) and "Xe" in str(ei.value)


@pytest.mark.parametrize("gen", ["3G", "4G", "CENT"])
def test_charged_periodic_cell_needs_the_background_option(tmp_path, gen):
    d = WRITERS[gen](tmp_path / gen, extra_lines="# hdnnp: length_unit=Angstrom energy_unit=eV\n")
    atoms = random_cluster(seed=3)
    with pytest.raises(ValueError, match=f"total charge of 1 e: {gen} potential .*input.nn neutralises a charged "
                                         "cell with a uniform background only when asked for"):
        hdnnp.load(d).evaluate(atoms, total_charge=1.0)
    r = hdnnp.load(d, background=True).evaluate(atoms, total_charge=1.0)
    assert np.isfinite(r.energy)
    mol = atoms.copy()
    mol.pbc = False                                     # a charged molecule needs no background
    assert np.isfinite(hdnnp.load(d).evaluate(mol, total_charge=1.0).energy)
