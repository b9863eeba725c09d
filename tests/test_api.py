"""Python API, ASE calculator, units, CLI, input.data round trip, extrapolation reports."""
import subprocess
import sys
import warnings

import numpy as np
import pytest
from ase import units
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress

import hdnnp
from synth import random_cluster, write_potential


def test_ase_calculator_units(tmp_path):
    d = write_potential(tmp_path / "pot")
    atoms_native = random_cluster(seed=2)          # positions in the potential's unit (Bohr here)
    native = hdnnp.Potential(d, warn=False).evaluate(atoms_native, native=True)
    pot = hdnnp.load(d, length_unit="Bohr", energy_unit="Ha")
    atoms = atoms_native.copy()
    atoms.set_cell(atoms.cell[:] * units.Bohr, scale_atoms=True)
    atoms.calc = pot.calculator()
    assert atoms.get_potential_energy() == pytest.approx(native.energy * units.Hartree, rel=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), native.forces * units.Hartree / units.Bohr, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(atoms.get_potential_energies(), native.energies * units.Hartree, rtol=1e-12)
    assert atoms.get_potential_energy(force_consistent=True) == atoms.get_potential_energy()
    # ASE Voigt order and sign: compare with ASE's own numerical stress.
    np.testing.assert_allclose(atoms.get_stress(), calculate_numerical_stress(atoms, eps=1e-6),
                               rtol=0, atol=1e-6 * np.abs(atoms.get_stress()).max() + 1e-12)
    fn = calculate_numerical_forces(atoms, eps=1e-6)
    assert np.abs(atoms.get_forces() - fn).max() < 1e-6 * np.abs(fn).max()


def test_declared_units_and_molecule_stress(tmp_path):
    d = write_potential(tmp_path / "pot", extra_lines="# hdnnp: length_unit=Angstrom energy_unit=eV")
    pot = hdnnp.load(d)
    atoms = random_cluster(seed=3, pbc=False)
    atoms.pbc = False
    atoms.calc = pot.calculator()
    atoms.get_forces()
    from ase.calculators.calculator import PropertyNotImplementedError
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()


def test_evaluate_list_and_descriptors(tmp_path):
    pot = hdnnp.Potential(write_potential(tmp_path / "pot"), warn=False)
    structs = [random_cluster(seed=s) for s in range(3)]
    res = pot.evaluate(structs, native=True, extrapolation="ignore")
    assert len(res) == 3 and all(np.isfinite(r.energy) for r in res)
    G = pot.descriptors(structs[0])
    assert len(G) == len(structs[0]) and all(np.isfinite(g).all() for g in G)
    Gs = pot.descriptors(structs[0], scaled=True)
    assert not np.allclose(G[0], Gs[0])


def test_extrapolation_warn_and_raise(tmp_path):
    d = write_potential(tmp_path / "pot", types=[2])
    lines = (d / "scaling.data").read_text().splitlines()
    out = [lines[0]]
    for l in lines[1:]:  # shrink every range to [0, 0.01]
        t = l.split()
        out.append(" ".join(t[:2] + ["0.0", "0.01", "0.005", "0.01"]))
    (d / "scaling.data").write_text("\n".join(out) + "\n")
    pot = hdnnp.Potential(d, warn=False)
    atoms = random_cluster(seed=1)
    with pytest.warns(hdnnp.ExtrapolationWarning, match=r"10 atom\(s\) in 1 of 1 structure"):
        r = pot.evaluate(atoms, native=True)
    assert r.n_extrapolating == 10 and len(r.extrapolations["atom"]) > 0
    with pytest.raises(hdnnp.ExtrapolationError):
        pot.evaluate(atoms, native=True, extrapolation="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pot.evaluate(atoms, native=True, extrapolation="ignore")


def test_input_data_round_trip(tmp_path):
    structs = [random_cluster(seed=s) for s in range(2)] + [random_cluster(seed=9, pbc=False)]
    structs[2].pbc = False
    for k, a in enumerate(structs):
        a.info["energy"] = -1.5 * k
        a.arrays["ref_forces"] = np.random.default_rng(k).normal(size=(len(a), 3))
    structs[0].info["set"] = "test"
    hdnnp.write_input_data(tmp_path / "x.data", structs)
    back = hdnnp.read_input_data(tmp_path / "x.data")
    assert len(back) == 3
    for a, b in zip(structs, back):
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.arrays["ref_forces"], b.arrays["ref_forces"])
        assert a.get_chemical_symbols() == b.get_chemical_symbols()
        assert b.info["energy"] == a.info["energy"]
        assert np.array_equal(a.pbc, b.pbc)
    assert back[0].info["set"] == "test"
    assert not list(tmp_path.glob("*.tmp-hdnnp"))


def test_cli_predict_all_structures(tmp_path):
    d = write_potential(tmp_path / "pot")
    structs = [random_cluster(seed=s) for s in range(4)]
    hdnnp.write_input_data(tmp_path / "in.data", structs, references=False)
    out = tmp_path / "out.data"
    p = subprocess.run([sys.executable, "-m", "hdnnp.cli", "predict", str(d), str(tmp_path / "in.data"), "-o",
                        str(out), "-q"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    pred = hdnnp.read_input_data(out)
    pot = hdnnp.Potential(d, warn=False)
    assert len(pred) == 4
    for a, b in zip(structs, pred):
        r = pot.evaluate(a, native=True, extrapolation="ignore")
        assert b.info["energy"] == pytest.approx(r.energy, rel=1e-14)
        np.testing.assert_allclose(b.arrays["ref_forces"], r.forces, rtol=1e-14, atol=1e-15)
    assert (tmp_path / "out.data.extrapolation").exists()
    # bad input: clear message, non-zero exit, no output written
    (tmp_path / "bad.data").write_text("begin\natom 0 0 0 Xe 0 0 0 0 0\nend\n")
    p = subprocess.run([sys.executable, "-m", "hdnnp.cli", "predict", str(d), str(tmp_path / "bad.data"), "-o",
                        str(tmp_path / "bad.out")], capture_output=True, text=True)
    assert p.returncode == 2 and "Xe" in p.stderr and not (tmp_path / "bad.out").exists()


def test_cli_matches_n2p2_output_data(fixtures, tmp_path):
    F = fixtures / "n2p2_Cu2S_PBE_2G"
    out = tmp_path / "out.data"
    p = subprocess.run([sys.executable, "-m", "hdnnp.cli", "predict", str(F / "potential"),
                        str(F / "train" / "input.data"), "-o", str(out), "-q"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    ours = hdnnp.read_input_data(out)
    ref = hdnnp.read_input_data(F / "reference" / "nnp-dataset_trainset" / "output.data")
    assert len(ours) == len(ref) == 20
    for a, b in zip(ours, ref):
        assert a.info["energy"] == pytest.approx(b.info["energy"], rel=1e-10)
        assert np.abs(a.arrays["ref_forces"] - b.arrays["ref_forces"]).max() < 1e-8


def test_spatial_order_is_invisible(tmp_path, monkeypatch):
    """Large structures are computed in the neighbour list's spatial order and mapped back:
    results equal the input-order computation (forces, per-atom energies, descriptors,
    extrapolation records, committee member forces)."""
    import hdnnp.potential as hp

    d = write_potential(tmp_path / "pot", types=[2, 3], seed=3)
    d2 = write_potential(tmp_path / "pot2", types=[2, 3], seed=4)
    path = tmp_path / "pot" / "scaling.data"
    lines = path.read_text().splitlines()
    cols = lines[1].split()
    cols[3] = "0.5"  # H's first SF extrapolates for some atoms
    lines[1] = " ".join(cols)
    path.write_text("\n".join(lines) + "\n")
    atoms = random_cluster(n_h=6, n_o=4, box=(5.5, 6.0, 6.5), seed=2).repeat((5, 5, 5))
    atoms.rattle(0.05, seed=1)
    assert len(atoms) >= hp.SPATIAL_ORDER_MIN_ATOMS
    com = hdnnp.Committee([d, d2], warn=False)
    kw = dict(native=True, extrapolation="ignore", descriptors=True)
    sorted_r = com.evaluate(atoms, **kw)
    monkeypatch.setattr(hp, "SPATIAL_ORDER_MIN_ATOMS", 10**9)
    plain = com.evaluate(atoms, **kw)
    scale = np.abs(plain.forces).max()
    np.testing.assert_allclose(sorted_r.forces, plain.forces, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(sorted_r.member_forces, plain.member_forces, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(sorted_r.energies, plain.energies, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sorted_r.stress, plain.stress, rtol=1e-10, atol=1e-12)
    for a, b in zip(sorted_r.descriptors, plain.descriptors):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert 0 < plain.n_extrapolating < len(atoms)
    np.testing.assert_array_equal(sorted_r.extrapolating_atoms, plain.extrapolating_atoms)
    for key in ("atom", "sf"):
        np.testing.assert_array_equal(sorted_r.extrapolations[key], plain.extrapolations[key])
    np.testing.assert_allclose(sorted_r.extrapolations["value"], plain.extrapolations["value"], rtol=1e-12)


def test_neighbor_list_far_images_and_electrostatics_half_list():
    """Atoms given 1000 cells away (beyond the packed image range of the list builder) have the
    same neighbours as their wrapped copies; the electrostatics' half list (every pair once)
    gives the same product as the translation path."""
    from hdnnp import _core
    from synth import random_cluster

    a = random_cluster(pbc=True)
    cell = np.ascontiguousarray(np.asarray(a.cell))
    pos = np.ascontiguousarray(a.positions)
    far = pos.copy()
    far[3] += 1000 * cell[0] - 700 * cell[2]

    def pairs(p):
        offs, idx, sid, sh = _core.neighbor_list(p, cell, [True] * 3, 4.0)[:4]
        i = np.repeat(np.arange(len(p)), np.diff(offs))
        d = np.linalg.norm(p[idx] + sh[sid] - p[i], axis=1)
        return sorted(zip(i.tolist(), idx.tolist(), np.round(d, 9).tolist()))

    assert pairs(far) == pairs(pos)
    big = a.repeat((4, 4, 4))
    P, C = np.ascontiguousarray(big.positions), np.ascontiguousarray(np.asarray(big.cell))
    sig, x = np.full(len(big), 0.8), np.random.default_rng(0).normal(size=len(big))
    # r_cut 20: ~1,500 neighbours per atom, so the default is the translation path
    ops = [_core.Electrostatics(P, C, sig, 1.0, 4.0, 20.0, 1.2, 1.0, 4.0, "c", 0, nl) for nl in (False, True)]
    assert ops[1].n_real_pairs > 0 and ops[0].n_real_pairs == 0
    np.testing.assert_allclose(ops[1].apply(x), ops[0].apply(x), rtol=0, atol=1e-11)


def test_earlier_public_names_still_work():
    """Names of earlier versions kept where cheap: hdnnp.potential.load, the 3G/4G/CENT
    calculator names (now the one HDNNPCalculator)."""
    import hdnnp
    from hdnnp.calculator import HDNNPCalculator
    from hdnnp.fourth_generation import FourthGenerationCalculator
    from hdnnp.long_range import ChargeCalculator
    from hdnnp.potential import load

    assert load is hdnnp.load
    assert FourthGenerationCalculator is HDNNPCalculator and ChargeCalculator is HDNNPCalculator
