"""Committees: shared descriptors, member networks; means and deviations equal separate evaluations."""
import os

import numpy as np
import pytest

import hdnnp
from synth import random_cluster, write_potential

TYPES = [2, 3, 9, 20, 21]


@pytest.fixture()
def members(tmp_path):
    """Three members with the same SFs but different weights, scaling ranges, normalisation,
    energy offsets and architectures."""
    return [
        write_potential(tmp_path / "m0", types=TYPES, seed=1),
        write_potential(tmp_path / "m1", types=TYPES, seed=2, hidden=(4,), acts="t l",
                        offsets={"H": -0.5, "O": -2.0}),
        write_potential(tmp_path / "m2", types=TYPES, seed=3, scaling="sigma", conv=(-0.3, 1.7, 1.0)),
    ]


def test_committee_equals_separate_members(members):
    atoms = random_cluster(n_h=8, n_o=5, seed=4)
    com = hdnnp.Committee(members, warn=False)
    assert com.size == 3
    r = com.evaluate(atoms, native=True, extrapolation="ignore")
    singles = [hdnnp.Potential(d, warn=False).evaluate(atoms, native=True, extrapolation="ignore") for d in members]
    e = np.array([s.energy for s in singles])
    f = np.array([s.forces for s in singles])
    assert np.ptp(e) > 1e-3 and np.abs(f - f.mean(axis=0)).max() > 1e-3, "members should differ"
    np.testing.assert_allclose(r.member_energies, e, rtol=1e-12)
    np.testing.assert_allclose(r.member_forces, f, rtol=0, atol=1e-12 * np.abs(f).max())
    np.testing.assert_allclose(r.energy, e.mean(), rtol=1e-12)
    np.testing.assert_allclose(r.energies, np.mean([s.energies for s in singles], axis=0), rtol=0,
                               atol=1e-12 * np.abs(e).max())
    np.testing.assert_allclose(r.forces, f.mean(axis=0), rtol=0, atol=1e-12 * np.abs(f).max())
    np.testing.assert_allclose(r.stress, np.mean([s.stress for s in singles], axis=0), rtol=0,
                               atol=1e-12 * np.abs(r.stress).max())
    dev = np.sqrt(((f - f.mean(axis=0)) ** 2).sum(axis=2).mean(axis=0))
    np.testing.assert_allclose(r.force_deviation, dev, rtol=1e-10)
    assert r.max_force_deviation == pytest.approx(dev.max(), rel=1e-10)
    assert r.energy_deviation == pytest.approx(np.std(e), rel=1e-10)


def test_mean_force_without_member_forces(members):
    """Without member forces the mean force comes from one gradient pass with the mean dE/dG."""
    from hdnnp import _core

    atoms = random_cluster(n_h=8, n_o=5, seed=5)
    com = hdnnp.Committee(members, warn=False)
    full = com.evaluate(atoms, native=True, extrapolation="ignore")
    pos = np.ascontiguousarray(atoms.positions)
    species = com._species(atoms.get_chemical_symbols(), "")
    nl = _core.neighbor_list(pos, np.ascontiguousarray(atoms.cell[:]), [True] * 3, com.cutoff)
    out = com.model.compute(pos, species, len(atoms), *nl[:4], member_forces=False)  # input order
    assert "member_forces" not in out
    np.testing.assert_allclose(out["forces"], full.forces, rtol=0, atol=1e-12 * np.abs(full.forces).max())
    np.testing.assert_allclose(out["virial"], full.virial, rtol=0, atol=1e-12 * np.abs(full.virial).max())
    assert out["energy"] == pytest.approx(full.energy, rel=1e-14)


def test_identical_members_have_zero_deviation(tmp_path):
    d = write_potential(tmp_path / "a", types=TYPES, seed=1)
    com = hdnnp.Committee([d, d], warn=False)
    r = com.evaluate(random_cluster(seed=6), native=True, extrapolation="ignore")
    single = hdnnp.Potential(d, warn=False).evaluate(random_cluster(seed=6), native=True, extrapolation="ignore")
    assert r.max_force_deviation == 0.0 and r.energy_deviation == 0.0
    np.testing.assert_allclose(r.forces, single.forces, rtol=0, atol=1e-13 * np.abs(single.forces).max())


def test_threads_identical(members):
    atoms = random_cluster(n_h=8, n_o=5, seed=7).repeat((2, 2, 1))
    r1 = hdnnp.Committee(members, threads=1, warn=False).evaluate(atoms, native=True, extrapolation="ignore")
    r2 = hdnnp.Committee(members, threads=2, warn=False).evaluate(atoms, native=True, extrapolation="ignore")
    assert np.array_equal(r1.forces, r2.forces) and np.array_equal(r1.member_forces, r2.member_forces)
    assert r1.energy == r2.energy


def test_extrapolation_uses_narrowest_range(tmp_path):
    a = write_potential(tmp_path / "a", types=[2], seed=1)
    b = write_potential(tmp_path / "b", types=[2], seed=2)
    atoms = random_cluster(seed=8)
    assert hdnnp.Committee([a, b], warn=False).evaluate(atoms, native=True, extrapolation="ignore").n_extrapolating == 0
    # Member b saw a much narrower range of H's first SF.
    path = os.path.join(b, "scaling.data")
    lines = open(path).read().splitlines()
    cols = lines[1].split()
    cols[2], cols[3] = "0.0", "1e-3"
    lines[1] = " ".join(cols)
    open(path, "w").write("\n".join(lines) + "\n")
    r = hdnnp.Committee([a, b], warn=False).evaluate(atoms, native=True, extrapolation="ignore")
    n_h = atoms.get_chemical_symbols().count("H")
    assert r.n_extrapolating == n_h
    assert set(r.extrapolations["sf"]) == {0} and np.all(r.extrapolations["max"] == 1e-3)


def test_mismatched_members_refused(tmp_path):
    a = write_potential(tmp_path / "a", types=[2, 3], seed=1)
    b = write_potential(tmp_path / "b", types=[2, 3], seed=2, rc=4.0)
    c = write_potential(tmp_path / "c", types=[2], seed=3)
    with pytest.raises(hdnnp.ConfigError, match=r"committee member '.*b' differs.*symmetry function 1 of element H"):
        hdnnp.Committee([a, b], warn=False)
    with pytest.raises(hdnnp.ConfigError, match=r"element H has \d+ symmetry functions instead of"):
        hdnnp.Committee([a, c], warn=False)
    with pytest.raises(ValueError, match="at least one"):
        hdnnp.Committee([])


def test_load_list_and_calculator(members):
    com = hdnnp.load(members, length_unit="Angstrom", energy_unit="eV")
    assert isinstance(com, hdnnp.Committee)
    atoms = random_cluster(seed=9)
    atoms.calc = com.calculator(extrapolation="ignore")
    f = atoms.get_forces()
    calc = atoms.calc
    assert calc.results["force_deviation"].shape == (len(atoms),)
    assert calc.results["max_force_deviation"] == pytest.approx(calc.results["force_deviation"].max())
    np.testing.assert_allclose(f, com.evaluate(atoms, extrapolation="ignore").forces, rtol=1e-14, atol=1e-14)
