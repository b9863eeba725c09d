"""4G (first part): non-periodic energies and charges against n2p2, both charge states."""
import shutil

import numpy as np
import pytest

import hdnnp
from checks import assert_virial_is_strain_derivative
from hdnnp.fourth_generation import FourthGeneration

CC = "n2p2_Carbon_chain_4G"


def test_carbon_chain_prediction_equals_n2p2(fixtures):
    pot = FourthGeneration(fixtures / CC / "potential")
    atoms = hdnnp.read_input_data(fixtures / CC / "predict" / "input.data")[0]
    r = pot.compute(atoms)
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
        r = pot.compute(a)
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


def test_mixed_periodicity_and_unknown_elements_refused(fixtures):
    pot = FourthGeneration(fixtures / CC / "potential")
    atoms = hdnnp.read_input_data(fixtures / CC / "predict" / "input.data")[0]
    a = atoms.copy()
    a.set_cell([30.0, 30.0, 30.0])
    a.pbc = [True, True, False]
    with pytest.raises(ValueError, match="periodic in all three directions or in none"):
        pot.compute(a)
    a = atoms.copy()
    a[3].symbol = "Fe"
    with pytest.raises(ValueError, match="atom 3: element Fe is not in this potential"):
        pot.compute(a)


def test_forces_equal_n2p2_and_finite_differences(fixtures):
    pot = FourthGeneration(fixtures / CC / "potential")
    atoms = hdnnp.read_input_data(fixtures / CC / "predict" / "input.data")[0]
    r = pot.compute(atoms, forces=True)
    ref = np.loadtxt(fixtures / CC / "reference" / "nnp-predict_C10H2" / "nnforces.out")
    np.testing.assert_allclose(r["forces"], ref[:, 5:8], rtol=0, atol=1e-12)
    np.testing.assert_allclose(r["forces"].sum(axis=0), 0.0, atol=1e-13)
    # a charged chain (+1) against central differences of the energy
    structs = hdnnp.read_input_data(fixtures / CC / "train" / "input.data")
    charged = next(a for a in structs if a.info.get("charge", 0.0) == 1.0)
    r = pot.compute(charged, forces=True)
    h = 1e-5
    for i in (0, 5, len(charged) - 1):
        for c in range(3):
            b = charged.copy()
            b.positions[i, c] += h
            ep = pot.compute(b)["energy"]
            b.positions[i, c] -= 2 * h
            em = pot.compute(b)["energy"]
            assert r["forces"][i, c] == pytest.approx(-(ep - em) / (2 * h), abs=1e-8)


PERIODIC = [("n2p2_AlAuMgO_4G", "nnp-predict_110atoms", "nnp-dataset_trainset_18"),
            ("n2p2_H2O_RPBE-D3_4G", "nnp-predict_384atoms", "nnp-dataset_trainset_20")]


@pytest.mark.parametrize("name,predict,dataset", PERIODIC)
def test_periodic_prediction_equals_n2p2(fixtures, name, predict, dataset):
    """n2p2-identical Ewald mode (Kolafa-Perram parameters as n2p2 computes them): energy,
    charges, short atomic energies and forces equal nnp-predict's."""
    pot = FourthGeneration(fixtures / name / "potential")
    atoms = hdnnp.read_input_data(fixtures / name / "predict" / "input.data")[0]
    r = pot.compute(atoms, forces=True)
    ref_dir = fixtures / name / "reference" / predict
    e_ref = float([l.split() for l in open(ref_dir / "energy.out") if not l.startswith("#")][0][3])
    assert r["energy"] == pytest.approx(e_ref, rel=1e-12)
    at = np.loadtxt(ref_dir / "nnatoms.out")
    np.testing.assert_allclose(r["charges"], at[:, 4], rtol=0, atol=1e-12)
    np.testing.assert_allclose(r["atom_energies_short"], at[:, 6], rtol=0, atol=1e-12)
    f_ref = np.loadtxt(ref_dir / "nnforces.out")[:, 5:8]
    np.testing.assert_allclose(r["forces"], f_ref, rtol=0, atol=1e-12 * max(1.0, np.abs(f_ref).max()))
    assert abs(r["charges"].sum()) < 1e-12
    assert r["ewald"]["method"] == "n2p2-kolafa-perram" and r["ewald"]["n_kvectors"] > 0


@pytest.mark.parametrize("name,predict,dataset", PERIODIC)
def test_periodic_datasets_equal_n2p2(fixtures, name, predict, dataset):
    """Every structure of the training sets (nnp-dataset's output.data: NNP charges and forces
    at full precision, energy.comp to 9 digits)."""
    pot = FourthGeneration(fixtures / name / "potential")
    structs = hdnnp.read_input_data(fixtures / name / "train" / "input.data")
    out = hdnnp.read_input_data(fixtures / name / "reference" / dataset / "output.data")
    comp = np.loadtxt(fixtures / name / "reference" / dataset / "energy.comp")
    assert len(structs) == len(out) == len(comp)
    for a, o, (k, _, _, e_ref) in zip(structs, out, comp):
        r = pot.compute(a, forces=True)
        assert r["energy"] == pytest.approx(e_ref, rel=1e-8)
        assert r["energy"] == pytest.approx(o.info["energy"], rel=1e-12)
        np.testing.assert_allclose(r["charges"], o.arrays["ref_charges"], rtol=0, atol=1e-10)
        np.testing.assert_allclose(r["forces"], o.arrays["ref_forces"], rtol=0, atol=1e-10)


def _water48(fixtures):
    return hdnnp.read_input_data(fixtures / "n2p2_H2O_RPBE-D3_4G" / "train" / "input.data")[3]


def test_periodic_forces_and_stress_equal_finite_differences(fixtures):
    """Forces and virial (at fixed Ewald parameters) of a periodic water box against central
    differences of the energy, neutral and charged (+1 with a neutralising background). Tight
    Ewald parameters: with loose ones, pairs and k-vectors crossing the cutoffs under the strain
    make the truncated energy jump by more than the differences resolve."""
    water = _water48(fixtures)
    for q in (0.0, 1.0):
        pot = FourthGeneration(fixtures / "n2p2_H2O_RPBE-D3_4G" / "potential", ewald=1e-12, background=True)
        fixed = pot.ewald_parameters(water)
        pot.ewald_parameters = lambda atoms, solver=None, p=fixed: p  # FD at fixed eta, r_cut, k_cut
        r = pot.compute(water, total_charge=q, forces=True, stress=True)
        h = 1e-4
        for i, c in ((0, 0), (1, 2), (47, 1)):
            b = water.copy()
            b.positions[i, c] += h
            ep = pot.compute(b, total_charge=q)["energy"]
            b.positions[i, c] -= 2 * h
            em = pot.compute(b, total_charge=q)["energy"]
            assert r["forces"][i, c] == pytest.approx(-(ep - em) / (2 * h), abs=2e-9)
        # strain step: the O(h^2) error of the central difference is ~1e-7 at 1e-4
        assert_virial_is_strain_derivative(lambda b: pot.compute(b, total_charge=q)["energy"], water, r["virial"],
                                           h=2e-5)
        np.testing.assert_allclose(r["virial"], r["virial"].T, atol=1e-9)
        np.testing.assert_allclose(r["forces"].sum(axis=0), 0.0, atol=1e-10)
        assert r["charges"].sum() == pytest.approx(q, abs=1e-12)


def test_cg_solver_equals_dense_and_warm_starts(fixtures):
    name = "n2p2_H2O_RPBE-D3_4G"
    atoms = hdnnp.read_input_data(fixtures / name / "predict" / "input.data")[0]
    dense = FourthGeneration(fixtures / name / "potential", solver="dense").compute(atoms, forces=True)
    cg = FourthGeneration(fixtures / name / "potential", solver="cg", tolerance=1e-10)
    r = cg.compute(atoms, forces=True)
    assert r["solver"]["solver"] == "cg"
    np.testing.assert_allclose(r["charges"], dense["charges"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(r["forces"], dense["forces"], rtol=0, atol=1e-9)
    assert r["energy"] == pytest.approx(dense["energy"], rel=1e-13)
    assert abs(r["charges"].sum()) < 1e-12  # the constraint holds exactly, not to the tolerance
    # loose tolerance: charges to about that accuracy
    loose = FourthGeneration(fixtures / name / "potential", solver="cg", tolerance=1e-5).compute(atoms)
    err = np.abs(loose["charges"] - dense["charges"]).max()
    assert 1e-12 < err < 1e-5
    # warm starts from the previous charges and adjoint (the caller's state): none needed for the
    # same structure, fewer after a small move; the potential itself keeps no state
    cold = r["solver"]["iterations"]
    prev = (r["charges"], r["adjoint"])
    assert cg.compute(atoms, forces=True, warm_start=prev)["solver"]["iterations"] == [0, 0]
    assert cg.compute(atoms, forces=True)["solver"]["iterations"] == cold
    moved = atoms.copy()
    moved.positions += np.random.default_rng(1).normal(0, 1e-3, moved.positions.shape)
    warm = cg.compute(moved, forces=True, warm_start=prev)["solver"]["iterations"]
    assert warm[0] < cold[0] and warm[1] < cold[1]


def test_accuracy_controlled_ewald_energy_converges(fixtures):
    """The accuracy-controlled mode keeps the *energy* error below the requested tolerance
    (n2p2's Kolafa-Perram parameters control forces: for this cell its energy error is
    ~8e-4 Ha); the converged energy does not depend on the splitting width."""
    from hdnnp.electrostatics import accuracy_parameters

    name = "n2p2_AlAuMgO_4G"
    atoms = hdnnp.read_input_data(fixtures / name / "predict" / "input.data")[0]
    ref = FourthGeneration(fixtures / name / "potential", ewald=1e-11).compute(atoms)["energy"]
    pot = FourthGeneration(fixtures / name / "potential")
    vol, n = atoms.get_volume(), len(atoms)
    for rc in (20.0, 40.0):  # two splitting widths at 1e-11
        p = accuracy_parameters(1e-11, vol, n, r_cut=rc, max_sigma=float(pot.sigma.max()))
        pot.ewald_parameters = lambda a, solver=None, p=p: p
        assert pot.compute(atoms)["energy"] == pytest.approx(ref, abs=1e-9)
    for tol in (1e-3, 1e-5, 1e-7):
        r = FourthGeneration(fixtures / name / "potential", ewald=tol).compute(atoms)
        assert abs(r["energy"] - ref) < tol, (tol, r["energy"] - ref, r["ewald"])
    n2p2_err = abs(FourthGeneration(fixtures / name / "potential").compute(atoms)["energy"] - ref)
    assert n2p2_err > 1e-4  # the force-based n2p2 choice is not an energy tolerance


def test_charged_cell_and_supercell(fixtures):
    """A periodic cell and its 2x1x1 supercell: same charges, twice the energy (accuracy mode,
    both converged); a +1 cell's energy with the background term does not depend on eta."""
    from hdnnp.electrostatics import accuracy_parameters

    water = _water48(fixtures)
    pot = FourthGeneration(fixtures / "n2p2_H2O_RPBE-D3_4G" / "potential", ewald=1e-10)
    with pytest.raises(ValueError, match="total charge of 1 e: 4G potential .*input.nn neutralises a charged cell "
                                         "with a uniform background only when asked for"):
        pot.compute(water, total_charge=1.0)
    pot.background = True
    r1 = pot.compute(water, forces=True)
    sup = water.repeat((2, 1, 1))
    r2 = pot.compute(sup, forces=True)
    assert r2["energy"] == pytest.approx(2 * r1["energy"], abs=5e-9)
    np.testing.assert_allclose(r2["charges"], np.tile(r1["charges"], 2), atol=1e-9)
    np.testing.assert_allclose(r2["forces"], np.tile(r1["forces"], (2, 1)), atol=1e-8)
    # translation and rotation
    moved = water.copy()
    moved.positions += [0.3, -1.1, 2.0]
    assert pot.compute(moved)["energy"] == pytest.approx(r1["energy"], abs=1e-9)
    energies = []
    for rc in (15.0, 30.0):
        p = accuracy_parameters(1e-10, water.get_volume(), len(water), r_cut=rc, max_sigma=float(pot.sigma.max()))
        pot.ewald_parameters = lambda a, solver=None, p=p: p
        energies.append(pot.compute(water, total_charge=1.0)["energy"])
    assert energies[0] == pytest.approx(energies[1], abs=1e-8)


def test_ase_calculator_charges_dipole_units(fixtures):
    """The ASE calculator speaks eV and Angstrom: energy, forces and stress (numerical stress of
    ASE), charges, and the dipole of a molecule; the total charge from atoms.info."""
    from ase.units import Bohr, Hartree

    pot = FourthGeneration(fixtures / "n2p2_H2O_RPBE-D3_4G" / "potential", ewald=1e-10)
    water = _water48(fixtures)
    ref = pot.compute(water, forces=True, stress=True)
    a = water.copy()
    a.positions *= Bohr
    a.set_cell(np.asarray(water.cell) * Bohr, scale_atoms=False)
    a.calc = pot.calculator(length_unit="Bohr", energy_unit="Ha")
    assert a.get_potential_energy() == pytest.approx(ref["energy"] * Hartree, rel=1e-12)
    np.testing.assert_allclose(a.get_forces(), ref["forces"] * Hartree / Bohr, atol=1e-10)
    np.testing.assert_allclose(a.get_charges(), ref["charges"], atol=1e-12)
    # per-atom energies: short + offset + Q_i dE_elec/dQ_i / 2, summing to the energy
    np.testing.assert_allclose(a.get_potential_energies(), ref["atom_energies"] * Hartree, rtol=1e-12)
    assert a.get_potential_energies().sum() == pytest.approx(a.get_potential_energy(), rel=1e-12)
    try:
        from ase.calculators.fd import calculate_numerical_stress
        num = calculate_numerical_stress(a, eps=1e-5)
    except ImportError:  # ASE < 3.23
        num = a.calc.calculate_numerical_stress(a, d=1e-5)
    np.testing.assert_allclose(a.get_stress(), num, atol=2e-7)  # eV/A^3
    chain = hdnnp.read_input_data(fixtures / CC / "train" / "input.data")
    plus = next(s for s in chain if s.info.get("charge", 0.0) == 1.0).copy()
    r = FourthGeneration(fixtures / CC / "potential").compute(plus)
    plus.positions *= Bohr
    plus.calc = FourthGeneration(fixtures / CC / "potential").calculator("Bohr", "Ha")
    assert plus.get_charges().sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(plus.get_dipole_moment(), r["dipole"] * Bohr, atol=1e-10)
    with pytest.raises(ValueError, match="units of this potential are not known"):
        FourthGeneration(fixtures / CC / "potential").calculator()


def test_electrostatics_real_space_paths_agree(fixtures):
    """The two real-space paths of the core (pairs x lattice translations; a stored neighbour
    list, used above 4,096 atoms) and the tabulated / recomputed structure factors give the same
    matrix, products, energy, forces and virial; the screening cores are all accepted."""
    from hdnnp import _core
    from hdnnp.electrostatics import accuracy_parameters

    water = _water48(fixtures)
    n = len(water)
    rng = np.random.default_rng(3)
    Q = rng.normal(0, 0.2, n)
    Q -= Q.mean()
    lam = rng.normal(0, 0.2, n)
    sig = np.where(np.array(water.get_chemical_symbols()) == "H", 0.586, 1.249)
    pos, cell = np.ascontiguousarray(water.positions), np.ascontiguousarray(np.array(water.cell))
    for tol in (1e-4, 1e-10):  # few k-vectors (tabulated) and many (recomputed)
        p = accuracy_parameters(tol, water.get_volume(), n, max_sigma=sig.max())
        for core in ("c", "p2", "e"):
            ops = [_core.Electrostatics(pos, cell, sig, 1.0, p.eta, p.r_cut, p.k_cut, 4.8, 12.0, core, 0, nl)
                   for nl in (False, True)]
            A = [o.dense() for o in ops]
            np.testing.assert_allclose(A[0], A[1], rtol=0, atol=1e-13)
            np.testing.assert_allclose(ops[1].apply(Q), A[0] @ Q, rtol=0, atol=1e-13)
            np.testing.assert_allclose(ops[1].diagonal(), np.diag(A[0]), rtol=0, atol=1e-13)
            e = [o.energy(Q) for o in ops]
            assert e[0][0] == pytest.approx(e[1][0], abs=1e-12)
            np.testing.assert_allclose(e[0][1], e[1][1], atol=1e-12)
            d = [o.derivatives(Q, lam) for o in ops]
            np.testing.assert_allclose(d[0][0], d[1][0], atol=1e-12)
            np.testing.assert_allclose(d[0][1], d[1][1], atol=1e-11)
        assert (ops[0].n_kvectors > 64) == (tol == 1e-10)


def test_particle_mesh_product_converges_to_ewald(fixtures):
    """The smooth particle-mesh Ewald product approaches the exact Ewald sum as the mesh is
    refined (B-splines of order 6), and the mesh operator is symmetric."""
    from hdnnp import _core

    atoms = hdnnp.read_input_data(fixtures / "n2p2_H2O_RPBE-D3_4G" / "predict" / "input.data")[0]
    pos, cell = np.ascontiguousarray(atoms.positions), np.ascontiguousarray(np.asarray(atoms.cell))
    sig = np.where(np.array(atoms.get_chemical_symbols()) == "H", 0.586, 1.249)
    eta, s = 3.0, 6.0
    args = (pos, cell, sig, 1.0, eta, np.sqrt(2) * eta * s, np.sqrt(2) * s / eta)
    x = np.random.default_rng(0).normal(size=len(atoms))
    exact = _core.Electrostatics(*args).apply(x)
    errs = []
    for K in (16, 32, 64):
        op = _core.Electrostatics(*args, mesh=(K, K, K), mesh_order=6)
        assert op.n_kvectors == 0 and op.mesh_points == K ** 3
        errs.append(np.abs(op.apply(x) - exact).max() / np.abs(exact).max())
        z = np.random.default_rng(1).normal(size=len(atoms))
        assert z @ op.apply(x) == pytest.approx(x @ op.apply(z), rel=1e-12)
    assert errs[0] < 1e-4 and errs[1] < 1e-6 and errs[2] < 1e-8, errs
    # grids with factors 3 and 5 (mixed-radix FFT): the error follows the spacing
    # (measured 1.4e-5, 2.5e-8, 1.1e-9)
    for K, bound in (((18, 20, 24), 1e-4), ((45, 48, 50), 1e-7), ((75, 81, 80), 1e-8)):
        op = _core.Electrostatics(*args, mesh=K, mesh_order=6)
        assert np.abs(op.apply(x) - exact).max() / np.abs(exact).max() < bound, K
    with pytest.raises(hdnnp.InputError, match="particle mesh"):
        op.dense()
    with pytest.raises(ValueError, match="products of 2, 3 and 5"):
        _core.Electrostatics(*args, mesh=(16, 14, 16), mesh_order=6)


@pytest.mark.parametrize("mesh", [(32, 32, 32), (30, 27, 25)])
def test_particle_mesh_forces_and_virial_are_derivatives(fixtures, mesh):
    """Forces and virial of E_elec(Q) + lam^T A0 Q with the particle-mesh reciprocal part =
    central differences of that energy (positions; symmetric strain of cell and positions)."""
    from hdnnp import _core

    atoms = _water48(fixtures)
    sig = np.where(np.array(atoms.get_chemical_symbols()) == "H", 0.586, 1.249)
    eta, s = 2.5, 5.0
    rng = np.random.default_rng(1)
    Q = rng.normal(size=len(atoms)) * 0.3
    Q -= Q.mean()
    lam = rng.normal(size=len(atoms)) * 0.1

    def energy(pos, cell):
        op = _core.Electrostatics(np.ascontiguousarray(pos), np.ascontiguousarray(cell), sig, 1.0, eta,
                                  np.sqrt(2) * eta * s, np.sqrt(2) * s / eta, 4.8, 12.0, "c", 0, False, mesh, 6)
        return op.energy(Q)[0] + lam @ op.apply(Q), op

    pos, cell = atoms.positions.copy(), np.asarray(atoms.cell).copy()
    _, op = energy(pos, cell)
    F, W = op.derivatives(Q, lam)
    h = 1e-5
    for i, c in ((0, 0), (5, 1), (20, 2), (47, 0)):
        p = pos.copy()
        p[i, c] += h
        ep, _ = energy(p, cell)
        p[i, c] -= 2 * h
        em, _ = energy(p, cell)
        assert F[i, c] == pytest.approx(-(ep - em) / (2 * h), abs=1e-9)
    for a, b in ((0, 0), (1, 2), (2, 2), (0, 1)):
        eps = np.zeros((3, 3))
        eps[a, b] += h / 2
        eps[b, a] += h / 2
        ep, _ = energy(pos @ (np.eye(3) + eps).T, cell @ (np.eye(3) + eps).T)
        em, _ = energy(pos @ (np.eye(3) - eps).T, cell @ (np.eye(3) - eps).T)
        assert W[a, b] == pytest.approx(-(ep - em) / (2 * h), abs=1e-8)


@pytest.mark.parametrize("name", ["n2p2_AlAuMgO_4G", "n2p2_H2O_RPBE-D3_4G"])
def test_particle_mesh_mode_meets_energy_tolerance(fixtures, name):
    """Accuracy mode with the CG solver uses the particle mesh (pme_parameters): energies
    within the tolerance of the converged sum (measured 4x-100x below it), forces and charges
    close; the result reports the mesh."""
    atoms = hdnnp.read_input_data(fixtures / name / "predict" / "input.data")[0]
    ref = FourthGeneration(fixtures / name / "potential", ewald=1e-11, solver="dense").compute(atoms, forces=True)
    for tol in (1e-3, 1e-5, 1e-7):
        pot = FourthGeneration(fixtures / name / "potential", ewald=tol, solver="cg", tolerance=1e-12)
        r = pot.compute(atoms, forces=True)
        assert r["ewald"]["mesh_points"] > 0 and r["ewald"]["n_kvectors"] == 0
        assert abs(r["energy"] - ref["energy"]) < tol, (tol, r["energy"] - ref["energy"], r["ewald"])
        assert np.abs(r["forces"] - ref["forces"]).max() < 10 * tol
        assert abs(r["charges"].sum() - ref["charges"].sum()) < 1e-10
    ew = FourthGeneration(fixtures / name / "potential", ewald=1e-5, solver="cg", reciprocal="ewald")
    assert ew.compute(atoms)["ewald"]["n_kvectors"] > 0


def test_4g_extrapolation_is_reported(fixtures):
    """A water box compressed to 70%: its symmetry functions leave the scaling.data range; the
    atoms are flagged, one warning is given, or an ExtrapolationError raised on request."""
    pot = FourthGeneration(fixtures / "n2p2_H2O_RPBE-D3_4G" / "potential")
    water = hdnnp.read_input_data(fixtures / "n2p2_H2O_RPBE-D3_4G" / "predict" / "input.data")[0]
    assert not pot.compute(water, extrapolation="raise")["extrapolating_atoms"].any()
    small = water.copy()
    small.set_cell(np.asarray(water.cell) * 0.7, scale_atoms=True)
    with pytest.warns(hdnnp.ExtrapolationWarning, match="outside the scaling.data range"):
        r = pot.compute(small)
    assert r["extrapolating_atoms"].sum() > 0
    with pytest.raises(hdnnp.ExtrapolationError):
        pot.compute(small, extrapolation="raise")


def test_qeq_dense_solver_equals_the_bordered_system():
    """The core's charge equilibration (Cholesky of A = A0 + diag J with the constraint by its
    Schur complement; bordered LU when A is not positive definite) equals a direct solve of
    [A 1; 1^T 0] [Q; mu] = [b; total], for one and for many right-hand sides."""
    from hdnnp import _core

    rng = np.random.default_rng(4)
    n = 40
    M = rng.normal(size=(n, n))
    A0 = M @ M.T / n + 0.1 * np.eye(n)
    for J, chol in ((rng.uniform(0.5, 2.0, n), True), (np.full(n, -5.0), False)):
        K = np.zeros((n + 1, n + 1))
        K[:n, :n] = A0 + np.diag(J)
        K[n, :n] = K[:n, n] = 1.0
        q = _core.QEqDense(np.ascontiguousarray(A0), J)
        assert q.cholesky == chol and q.size == n
        b = rng.normal(size=n)
        x = q.solve(b, 1.5)
        ref = np.linalg.solve(K, np.concatenate([b, [1.5]]))[:n]
        np.testing.assert_allclose(x, ref, rtol=1e-10, atol=1e-12)
        assert x.sum() == pytest.approx(1.5, abs=1e-12)
        B = rng.normal(size=(n, 7))
        X = q.solve(B, 0.0)
        np.testing.assert_allclose(X, np.linalg.solve(K, np.vstack([B, np.zeros((1, 7))]))[:n], rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError):
        _core.QEqDense(np.ascontiguousarray(A0), np.ones(n)).solve(np.ones(n + 1), 0.0)


def test_ewald_parameters_in_the_core_equal_the_python_oracle():
    """n2p2's Jackson-Catlow and Kolafa-Perram choices (optimal eta, fixed r_cut), the energy
    accuracy mode (dense / per particle / given r_cut / sigma floor) and the particle-mesh grid,
    now computed in the core, equal the earlier Python implementation (tests/ewald_oracle.py)."""
    import ewald_oracle as ref

    from hdnnp import electrostatics as es

    def same(a, b):
        assert (a.eta, a.r_cut, a.k_cut) == pytest.approx((b.eta, b.r_cut, b.k_cut), rel=1e-12)
        assert a.method == b.method and a.reliable == b.reliable and tuple(a.mesh) == tuple(b.mesh)

    for volume, n in ((10_000.0, 384), (2_500.0, 60), (80_000.0, 3072)):
        same(es.n2p2_parameters(0, [1e-6], volume, n), ref.n2p2_parameters(0, [1e-6], volume, n))
        for args in ([1e-5], [1e-5, 0.36], [1e-4, 1.0, 12.0]):
            for fpe, sig in ((1.0, 0.0), (0.0694461, 2.5)):
                same(es.n2p2_parameters(1, args, volume, n, fpe, sig), ref.n2p2_parameters(1, args, volume, n, fpe, sig))
        for tol in (1e-2, 1e-5, 1e-8):
            for kw in ({}, {"per_particle": True}, {"r_cut": 9.0}, {"max_sigma": 3.0, "r_cut": 4.0}, {"q_max": 2.0}):
                same(es.accuracy_parameters(tol, volume, n, **kw), ref.accuracy_parameters(tol, volume, n, **kw))
    cell = np.array([[23.5, 0.0, 0.0], [1.2, 24.0, 0.0], [0.5, -0.7, 47.0]])
    for tol in (1e-2, 1e-4, 1e-7):
        same(es.pme_parameters(tol, cell, 3072, max_sigma=1.1), ref.pme_parameters(tol, cell, 3072, max_sigma=1.1))
    assert [es.fft_size(k) for k in (7, 11, 13, 31, 97)] == [ref.fft_size(k) for k in (7, 11, 13, 31, 97)]
    with pytest.raises(ValueError, match="needs a precision < 1"):
        es.n2p2_parameters(0, [2.0], 1000.0, 10)


def test_calculator_keeps_the_cg_warm_start(fixtures):
    """The warm start of the CG solver is the calculator's state (the potential keeps none): the
    second step of an MD-like sequence needs fewer iterations than the same step started cold."""
    from ase.units import Bohr

    pot = FourthGeneration(fixtures / "n2p2_H2O_RPBE-D3_4G" / "potential", solver="cg", tolerance=1e-10)
    water = _water48(fixtures)
    a = water.copy()
    a.positions *= Bohr
    a.set_cell(np.asarray(water.cell) * Bohr, scale_atoms=False)
    a.calc = pot.calculator(length_unit="Bohr", energy_unit="Ha")
    a.get_forces()
    cold = a.calc.last_result.details["solver"]["iterations"]
    a.calc.reset()            # (ASE's results cache; the warm start stays)
    a.get_forces()
    assert a.calc.last_result.details["solver"]["iterations"] == [0, 0]
    a.positions += np.random.default_rng(2).normal(0, 2e-4, a.positions.shape)
    a.get_forces()
    warm = a.calc.last_result.details["solver"]["iterations"]
    b = a.copy()
    b.calc = pot.calculator(length_unit="Bohr", energy_unit="Ha")
    b.get_forces()
    fresh = b.calc.last_result.details["solver"]["iterations"]
    assert sum(warm) < sum(fresh) and warm[0] <= fresh[0] and warm[1] <= fresh[1], (cold, warm, fresh)
    np.testing.assert_allclose(a.get_forces(), b.get_forces(), rtol=0, atol=1e-7)
