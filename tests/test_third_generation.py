"""3G prediction: local charge networks, point-charge (Ewald) electrostatics with screening,
RuNNer's total-charge rescaling. No 3G reference outputs exist (n2p2 has no 3G): the tests check
the electrostatics against closed forms and direct sums, and forces and stress against central
differences of the energy."""
import os

import numpy as np
import pytest
from ase import Atoms

import hdnnp
from hdnnp import _core
from hdnnp.electrostatics import accuracy_parameters
from hdnnp.third_generation import ThirdGeneration, correct_charges
from hdnnp.units import energy_factor, length_factor

from checks import assert_virial_is_strain_derivative
from synth import random_cluster, write_3g_potential

# (the synthetic potentials' random scaling ranges: some atoms extrapolate, which these tests do not test)
pytestmark = pytest.mark.filterwarnings("ignore::hdnnp.potential.ExtrapolationWarning")

MADELUNG_NACL = 1.747564594633182


def _rocksalt(a=5.0):
    pos, q = [], []
    for x in range(2):
        for y in range(2):
            for z in range(2):
                pos.append([x * a / 2, y * a / 2, z * a / 2])
                q.append((-1.0) ** (x + y + z))
    return np.array(pos), np.array(q)


@pytest.mark.parametrize("mesh", [(0, 0, 0), (32, 32, 32)])
def test_point_charge_ewald_gives_the_madelung_constant(mesh):
    """Rock salt with unit point charges (zero Gaussian widths): E = -4 M / (a/2) per cubic cell."""
    a = 5.0
    pos, q = _rocksalt(a)
    p = accuracy_parameters(1e-10, a ** 3, 8)
    op = _core.Electrostatics(pos, np.eye(3) * a, np.zeros(8), 1.0, p.eta, p.r_cut, p.k_cut, mesh=mesh)
    e, dEdQ = op.energy(q)
    assert e == pytest.approx(-4 * MADELUNG_NACL / (a / 2), abs=1e-8 if mesh[0] else 1e-10)
    # each ion's potential is -M q_i / (a/2)
    np.testing.assert_allclose(dEdQ, -MADELUNG_NACL * q / (a / 2), atol=1e-7 if mesh[0] else 1e-9)
    F, W = op.derivatives(q, np.zeros(8))
    np.testing.assert_allclose(F, 0.0, atol=1e-9)
    # E ~ 1/a: the virial of a uniform expansion is -dE/d(eps) = E per direction
    np.testing.assert_allclose(np.diag(W), e / 3, rtol=1e-6)


def test_point_charges_screened_direct_sum():
    rng = np.random.default_rng(3)
    P, Q = rng.uniform(0, 6, (12, 3)), rng.normal(size=12)
    for core, f in (("c", lambda x: 0.5 * (1 - np.cos(np.pi * x))), ("p2", lambda x: 1 - (((15 - 6 * x) * x - 10) * x ** 3 + 1))):
        op = _core.Electrostatics(P, None, np.zeros(12), 1.0, 0.0, 0.0, 0.0, 1.0, 4.0, core)
        ref = 0.0
        for i in range(12):
            for j in range(i + 1, 12):
                r = np.linalg.norm(P[i] - P[j])
                fs = 0.0 if r <= 1 else 1.0 if r >= 4 else f((r - 1) / 3)
                ref += Q[i] * Q[j] * fs / r
        assert op.energy(Q)[0] == pytest.approx(ref, rel=1e-13)


@pytest.fixture(scope="module")
def pot3g(tmp_path_factory):
    return write_3g_potential(str(tmp_path_factory.mktemp("pot3g")))


def _fd_forces(pot, atoms, r, atoms_idx=(0, 3, 8), h=1e-5, **kw):
    for i in atoms_idx:
        for c in range(3):
            b = atoms.copy()
            b.positions[i, c] += h
            ep = pot.compute(b, **kw)["energy"]
            b.positions[i, c] -= 2 * h
            em = pot.compute(b, **kw)["energy"]
            assert r["forces"][i, c] == pytest.approx(-(ep - em) / (2 * h), abs=2e-9), (i, c)


@pytest.mark.parametrize("correction", ["none", "rescale", "shift"])
@pytest.mark.parametrize("periodic", [False, True])
def test_forces_and_stress_equal_finite_differences(pot3g, correction, periodic):
    """Forces (charges' position dependence and the correction included) and, periodic, the
    virial at fixed Ewald parameters. Without correction the periodic cell carries a net charge
    and its neutralising background."""
    pot = ThirdGeneration(pot3g, ewald=1e-12, charge_correction=correction, background=True)
    atoms = random_cluster(pbc=periodic)
    q_tot = 1.0 if correction != "none" else 0.0
    if periodic:
        fixed = pot.ewald_parameters(atoms, "cg")
        pot.ewald_parameters = lambda a, solver=None, p=fixed: p
    r = pot.compute(atoms, total_charge=q_tot, forces=True, stress=True)
    if correction == "none":
        assert abs(r["total_charge"]) > 0.05  # (the background is exercised)
        np.testing.assert_allclose(r["charges"], r["network_charges"])
    else:
        assert r["charges"].sum() == pytest.approx(q_tot, abs=1e-12)
    _fd_forces(pot, atoms, r, total_charge=q_tot)
    np.testing.assert_allclose(r["forces"].sum(axis=0), 0.0, atol=1e-9)
    if not periodic:
        np.testing.assert_allclose(r["dipole"], r["charges"] @ atoms.positions)
        return
    assert_virial_is_strain_derivative(lambda b: pot.compute(b, total_charge=q_tot)["energy"], atoms, r["virial"])
    np.testing.assert_allclose(r["virial"], r["virial"].T, atol=1e-9)
    assert np.allclose(r["stress"], -r["virial"] / atoms.get_volume())


def test_charge_corrections():
    rng = np.random.default_rng(0)
    q = rng.normal(size=9)
    for mode in ("rescale", "shift"):
        for total in (0.0, 1.0, -2.0):
            Q, vjp = correct_charges(q, total, mode)
            assert Q.sum() == pytest.approx(total, abs=1e-12)
            g = rng.normal(size=9)   # vjp against central differences of g . Q(q)
            num = np.array([(g @ correct_charges(q + 1e-6 * np.eye(9)[k], total, mode)[0]
                             - g @ correct_charges(q - 1e-6 * np.eye(9)[k], total, mode)[0]) / 2e-6 for k in range(9)])
            np.testing.assert_allclose(vjp(g), num, atol=1e-8)
    # RuNNer's rescaling keeps signs and moves half of the excess into each sign
    Q, _ = correct_charges(np.array([0.6, 0.5, -0.8]), 0.0, "rescale")
    np.testing.assert_allclose(Q, [0.6 * 0.95 / 1.1, 0.5 * 0.95 / 1.1, -0.95])  # excess 0.3: 0.15 each
    with pytest.raises(ValueError, match="both positive and negative"):
        correct_charges(np.array([0.2, 0.3]), 0.0, "rescale")
    with pytest.raises(ValueError, match="charge_correction"):
        correct_charges(q, 0.0, "spread")


def test_invariance_supercell_and_ewald_independence(pot3g):
    """Rotation/translation (molecule); a 2x1x1 supercell doubles the energy and repeats the
    charges; a charged cell's energy with its background does not depend on the Ewald splitting."""
    pot = ThirdGeneration(pot3g, ewald=1e-10, charge_correction="rescale")
    mol = random_cluster(pbc=False)
    r0 = pot.compute(mol, forces=True)
    m = mol.copy()
    m.rotate(37, (1, 2, 0.5), center=(0.3, 0, 0))
    m.translate((1.0, -2.0, 0.5))
    r1 = pot.compute(m, forces=True)
    assert r1["energy"] == pytest.approx(r0["energy"], abs=1e-10)
    np.testing.assert_allclose(r1["charges"], r0["charges"], atol=1e-12)
    per = random_cluster(pbc=True)
    big = per.repeat((2, 1, 1))
    for corr in ("rescale", "none"):
        pot.charge_correction = corr
        a, b = pot.compute(per, forces=True), pot.compute(big, forces=True)
        assert b["energy"] == pytest.approx(2 * a["energy"], abs=1e-8)
        np.testing.assert_allclose(b["charges"], np.tile(a["charges"], 2), atol=1e-12)
        np.testing.assert_allclose(b["forces"], np.tile(a["forces"], (2, 1)), atol=1e-7)
    pot.charge_correction = "none"   # net charge -0.28 e
    e_acc = pot.compute(per)["energy"]
    e_jc = ThirdGeneration(pot3g, ewald="n2p2", charge_correction="none").compute(per)   # other eta
    assert abs(e_jc["total_charge"]) > 0.05
    assert e_jc["energy"] == pytest.approx(e_acc, abs=1e-7)
    e_ew = ThirdGeneration(pot3g, ewald=1e-10, reciprocal="ewald", charge_correction="none").compute(per)
    assert e_ew["energy"] == pytest.approx(e_acc, abs=1e-8)


def test_enforce_totcharge_keyword_load_and_calculator(tmp_path):
    d = write_3g_potential(str(tmp_path / "p"), enforce=1)
    with open(os.path.join(d, "input.nn"), "a") as fh:
        fh.write("# hdnnp: length_unit=Bohr energy_unit=Ha\n")
    pot = hdnnp.load(d)
    assert isinstance(pot, ThirdGeneration) and pot.charge_correction == "rescale"
    mol = random_cluster(pbc=False)
    mol.info["charge"] = -1.0
    r = pot.compute(mol, forces=True)
    assert r["charges"].sum() == pytest.approx(-1.0, abs=1e-12)
    calc_atoms = mol.copy()
    bohr, ha = length_factor("Bohr"), energy_factor("Ha")
    calc_atoms.positions *= bohr
    calc_atoms.calc = pot.calculator()
    assert calc_atoms.get_potential_energy() == pytest.approx(r["energy"] * ha, rel=1e-12)
    np.testing.assert_allclose(calc_atoms.get_forces(), r["forces"] * ha / bohr, atol=1e-9)
    np.testing.assert_allclose(calc_atoms.get_charges(), r["charges"], atol=1e-12)
    np.testing.assert_allclose(calc_atoms.get_dipole_moment(), r["dipole"] * bohr, atol=1e-10)


def test_bad_3g_potentials_are_refused(tmp_path):
    d = write_3g_potential(str(tmp_path / "a"))
    os.remove(os.path.join(d, "scalinge.data"))
    with pytest.raises(FileNotFoundError, match="scalinge.data"):
        ThirdGeneration(d)
    d = write_3g_potential(str(tmp_path / "b"))
    with open(os.path.join(d, "weightse.008.data"), "a") as fh:
        fh.write("0.5\n")
    with pytest.raises(ValueError, match=r"weightse.008.data: expected \d+ weights"):
        ThirdGeneration(d)
    d = write_3g_potential(str(tmp_path / "c"))
    text = open(os.path.join(d, "input.nn")).read()
    with open(os.path.join(d, "input.nn"), "w") as fh:
        fh.write("\n".join(l for l in text.splitlines() if not l.startswith("symfunction_electrostatic")))
    with pytest.raises(ValueError, match="symfunction_electrostatic"):
        ThirdGeneration(d)
    d = write_3g_potential(str(tmp_path / "e"))
    with open(os.path.join(d, "input.nn"), "a") as fh:
        fh.write("symfunction_electrostatic H 2 Xe 0.5 0.0 4.0\n")
    with pytest.raises(Exception, match=r"input.nn:\d+"):   # the user's file and line, not a temporary copy
        ThirdGeneration(d)
    d = write_3g_potential(str(tmp_path / "f"), charge_bias=(("H", 3.0), ("O", 3.0)))
    pot = ThirdGeneration(d, charge_correction="rescale")
    with pytest.raises(ValueError, match="both positive and negative"):
        pot.compute(random_cluster(pbc=False))
    d = write_3g_potential(str(tmp_path / "h"), extra_lines="ewald_alpha 0.2\newald_kmax 10\n")
    with pytest.warns(UserWarning, match="ewald_alpha, ewald_kmax .* are not used"):
        ThirdGeneration(d)
    pot = ThirdGeneration(write_3g_potential(str(tmp_path / "g")))
    with pytest.raises(ValueError, match="element Xe"):
        pot.compute(Atoms("HXe", positions=[[0, 0, 0], [1.5, 0, 0]]))
    with pytest.raises(ValueError, match="periodic in all three"):
        pot.compute(Atoms("HO", positions=[[0, 0, 0], [1.5, 0, 0]], cell=np.eye(3) * 8, pbc=[True, True, False]))


def test_extrapolation_is_reported(pot3g, tmp_path):
    """Symmetry functions outside the scaling ranges (here the charge networks', narrowed to
    [0, 1e-3]) are flagged per atom, warned about once (naming the set), or raised."""
    import shutil

    d = tmp_path / "narrow"
    shutil.copytree(pot3g, d)
    rows = [l.split() for l in open(d / "scalinge.data") if l.strip() and not l.startswith("#")]
    with open(d / "scalinge.data", "w") as fh:
        fh.write("".join(f"{r[0]} {r[1]} 0.0 1e-3 {r[4]} {r[5]}\n" for r in rows))
    pot = ThirdGeneration(d)
    a = random_cluster(pbc=False)
    with pytest.warns(hdnnp.ExtrapolationWarning, match="charge network SF"):
        r = pot.compute(a)
    assert r["extrapolating_atoms"].all()
    with pytest.raises(hdnnp.ExtrapolationError):
        pot.compute(a, extrapolation="raise")


def test_runner_scalinge_layout(pot3g, tmp_path):
    """RuNNer's scalinge.data (5 columns, then 'charge_min charge_max' per element) gives the same
    potential as the n2p2 layout; a missing charge line is refused."""
    import shutil

    d = tmp_path / "runner"
    shutil.copytree(pot3g, d)
    rows = [l.split() for l in open(d / "scalinge.data") if l.strip() and not l.startswith("#")]
    text = "".join(" ".join(r[:5]) + "\n" for r in rows) + "-0.9 0.2\n0.1 0.8\n"
    (d / "scalinge.data").write_text(text)
    pot = ThirdGeneration(d)
    np.testing.assert_array_equal(pot.charge_range, [[-0.9, 0.2], [0.1, 0.8]])
    a = random_cluster(pbc=True)
    ref = ThirdGeneration(pot3g)
    r0, r1 = ref.compute(a, forces=True), pot.compute(a, forces=True)
    # (the n2p2 layout's sigma column is unused by scale+center scaling)
    assert r1["energy"] == pytest.approx(r0["energy"], rel=1e-14)
    np.testing.assert_allclose(r1["forces"], r0["forces"], rtol=0, atol=1e-12)
    (d / "scalinge.data").write_text(text.rsplit("0.1 0.8", 1)[0])
    with pytest.raises(ValueError, match="one 'charge_min charge_max' line per element"):
        ThirdGeneration(d)


# -- the core's 3G potential ---------------------------------------------------------------------
@pytest.mark.parametrize("correction", ["none", "rescale", "shift"])
@pytest.mark.parametrize("periodic", [False, True])
def test_core_equals_the_numpy_oracle(pot3g, correction, periodic):
    """_core.ThirdGenerationPotential (what ThirdGeneration computes with) against the numpy
    implementation it replaced (tests/oracle_long_range.py), at the same Ewald parameters."""
    from oracle_long_range import NumpyThirdGeneration

    pot = ThirdGeneration(pot3g, ewald=1e-10, charge_correction=correction, background=True)
    ref = NumpyThirdGeneration(pot3g, ewald=1e-10, charge_correction=correction, background=True)
    atoms = random_cluster(pbc=periodic)
    q = 0.0 if correction == "none" else 1.0
    r = pot.compute(atoms, total_charge=q, forces=True, stress=True)
    o = ref.evaluate(atoms, total_charge=q, forces=True, stress=True)
    assert r["energy"] == pytest.approx(o["energy"], rel=1e-13, abs=1e-13)
    np.testing.assert_allclose(r["charges"], o["charges"], rtol=0, atol=1e-13)
    np.testing.assert_allclose(r["network_charges"], o["network_charges"], rtol=0, atol=1e-13)
    np.testing.assert_allclose(r["forces"], o["forces"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(r["virial"], o["virial"], rtol=0, atol=1e-12)
    assert r["electrostatic_energy"] == pytest.approx(o["electrostatic_energy"], rel=1e-12, abs=1e-13)
    # per-atom energies (short + offsets + half of each atom's electrostatic energy) sum to the energy
    assert r["atom_energies"].sum() == pytest.approx(r["energy"], rel=1e-13, abs=1e-12)
    np.testing.assert_allclose(r["atom_energies_short"], o["atom_energies_short"], rtol=0, atol=1e-13)


def test_core_threads_and_sharing(pot3g):
    """Results do not depend on the thread count (to round-off: the electrostatics' sums are
    reduced over threads); two Python threads sharing one potential give bitwise what each gives
    alone; two different potentials live in one process."""
    import threading

    pot = ThirdGeneration(pot3g, ewald=1e-10, charge_correction="rescale")
    a, b = random_cluster(pbc=True, seed=1), random_cluster(pbc=False, seed=2)
    pot.threads = 1
    ref = {k: pot.compute(x, forces=True, stress=True) for k, x in (("a", a), ("b", b))}
    for t in (2, 3):
        pot.threads = t
        r = pot.compute(a, forces=True, stress=True)
        np.testing.assert_allclose(r["forces"], ref["a"]["forces"], rtol=0, atol=1e-14)
        np.testing.assert_allclose(r["virial"], ref["a"]["virial"], rtol=0, atol=1e-13)
        assert r["energy"] == pytest.approx(ref["a"]["energy"], rel=1e-14)
    pot.threads = 1
    other = ThirdGeneration(write_3g_potential(os.path.join(os.path.dirname(pot3g), "other"), seed=9), ewald=1e-10)
    out = {}

    def run(key, x):
        for _ in range(3):
            out[key] = pot.compute(x, forces=True, stress=True)

    threads = [threading.Thread(target=run, args=(k, x)) for k, x in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    e_other = other.compute(a)["energy"]
    for t in threads:
        t.join()
    for k in ("a", "b"):
        assert out[k]["energy"] == ref[k]["energy"]
        np.testing.assert_array_equal(out[k]["forces"], ref[k]["forces"])
    assert e_other != ref["a"]["energy"]


def test_hdnnp_bench_runs_3g(pot3g, tmp_path):
    """The standalone executable computes 3G (no Python): its JSON equals the Python API."""
    import json
    import subprocess

    from hdnnp.bench_path import bench_executable

    exe = bench_executable()
    if not os.path.exists(exe):
        pytest.skip("hdnnp-bench is not built")
    pot = ThirdGeneration(pot3g)
    for periodic in (False, True):
        a = random_cluster(pbc=periodic, seed=4)
        hdnnp.write_input_data(tmp_path / "in.data", [a], references=False)
        out = tmp_path / "out.json"
        r = subprocess.run([exe, pot3g, str(tmp_path / "in.data"), "--steps", "0", "--json", str(out)],
                           capture_output=True, text=True)
        assert r.returncode == 0 and "(3G)" in r.stdout, r.stderr
        j = json.load(open(out))
        ref = pot.compute(a, forces=True, extrapolation="ignore")
        assert j["energy"] == pytest.approx(ref["energy"], rel=1e-12)
        np.testing.assert_allclose(j["forces"], ref["forces"], rtol=0, atol=1e-10)
        np.testing.assert_allclose(j["charges"], ref["charges"], rtol=0, atol=1e-12)
        assert j["natoms"] == len(a)


def test_one_result_type_in_ev_and_angstrom(tmp_path):
    """hdnnp.load gives a Potential for 3G too: evaluate() returns a Result in eV and Angstrom
    (native=True: the potential's units), the charges, dipole and electrostatic energy included."""
    d = write_3g_potential(str(tmp_path / "p"), enforce=1, extra_lines="# hdnnp: length_unit=Bohr energy_unit=Ha\n")
    pot = hdnnp.load(d)
    assert isinstance(pot, hdnnp.Potential)
    bohr, ha = length_factor("Bohr"), energy_factor("Ha")
    for periodic in (False, True):
        native = random_cluster(pbc=periodic, seed=6)
        ase_atoms = native.copy()
        ase_atoms.positions *= bohr
        if periodic:
            ase_atoms.set_cell(native.cell[:] * bohr, scale_atoms=False)
        r = pot.evaluate(ase_atoms, extrapolation="ignore")
        n = pot.evaluate(native, native=True, extrapolation="ignore")
        d_ = pot.compute(native, forces=True, stress=True, extrapolation="ignore")
        assert isinstance(r, hdnnp.Result) and n.energy == d_["energy"]
        assert r.energy == pytest.approx(d_["energy"] * ha, rel=1e-12)
        assert r.energies.sum() == pytest.approx(r.energy, rel=1e-12)
        np.testing.assert_allclose(r.forces, d_["forces"] * ha / bohr, rtol=0, atol=1e-9)
        np.testing.assert_allclose(r.charges, d_["charges"], rtol=0, atol=1e-13)
        assert r.electrostatic_energy == pytest.approx(d_["electrostatic_energy"] * ha, rel=1e-12)
        if periodic:
            np.testing.assert_allclose(r.stress, -np.array([d_["stress"][i, j] for i, j in
                                                             ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))])
                                       * -ha / bohr ** 3, rtol=1e-10, atol=1e-12)
            assert r.dipole is None
        else:
            np.testing.assert_allclose(r.dipole, d_["dipole"] * bohr, rtol=1e-12)
