"""The 4G potential computed in the C++ core (_core.FourthGenerationPotential): n2p2's outputs on
the three 4G fixtures (charge states included), central differences of forces and virial, the CG
solver with warm starts, the Python path, two threads sharing one potential, and bad input."""
import os
import shutil
import threading

import numpy as np
import pytest

import hdnnp
from checks import assert_virial_is_strain_derivative
from hdnnp import _core
from hdnnp.fourth_generation import FourthGeneration
from oracle_long_range import NumpyCent, NumpyFourthGeneration

CC = "n2p2_Carbon_chain_4G"
PERIODIC = [("n2p2_AlAuMgO_4G", "nnp-predict_110atoms", "nnp-dataset_trainset_18"),
            ("n2p2_H2O_RPBE-D3_4G", "nnp-predict_384atoms", "nnp-dataset_trainset_20")]


def compute(pot, atoms, q=None, **kw):
    sp = np.array([pot.elements.index(s) for s in atoms.get_chemical_symbols()], dtype=np.int32)
    cell = np.ascontiguousarray(atoms.cell[:]) if atoms.pbc.all() else None
    q = float(atoms.info.get("charge", 0.0)) if q is None else q
    return pot.compute(np.ascontiguousarray(atoms.positions, dtype=float), sp, cell, q, **kw)


def test_carbon_chain_both_charge_states_equal_n2p2(fixtures):
    pot = _core.FourthGenerationPotential.load(str(fixtures / CC / "potential"))
    atoms = hdnnp.read_input_data(fixtures / CC / "predict" / "input.data")[0]
    r = compute(pot, atoms)
    assert r["energy"] == pytest.approx(-3.8161078713069378e02, rel=1e-12)
    ref = np.loadtxt(fixtures / CC / "reference" / "nnp-predict_C10H2" / "nnatoms.out")
    np.testing.assert_allclose(r["charges"], ref[:, 4], rtol=0, atol=1e-12)
    np.testing.assert_allclose(r["atom_energies_short"], ref[:, 6], rtol=0, atol=1e-12)
    f_ref = np.loadtxt(fixtures / CC / "reference" / "nnp-predict_C10H2" / "nnforces.out")[:, 5:8]
    np.testing.assert_allclose(r["forces"], f_ref, rtol=0, atol=1e-12)
    structs = hdnnp.read_input_data(fixtures / CC / "train" / "input.data")
    comp = np.loadtxt(fixtures / CC / "reference" / "nnp-dataset_trainset_128" / "energy.comp")
    states = set()
    for k, _, _, e_ref in comp:
        a = structs[int(k)]
        rr = compute(pot, a, forces=False, virial=False)
        assert rr["energy"] == pytest.approx(e_ref, rel=1e-8)
        assert rr["charges"].sum() == pytest.approx(a.info.get("charge", 0.0), abs=1e-12)
        states.add(a.info.get("charge", 0.0))
    assert states == {0.0, 1.0}


@pytest.mark.parametrize("name,predict,dataset", PERIODIC)
def test_periodic_equals_n2p2(fixtures, name, predict, dataset):
    pot = _core.FourthGenerationPotential.load(str(fixtures / name / "potential"))
    atoms = hdnnp.read_input_data(fixtures / name / "predict" / "input.data")[0]
    r = compute(pot, atoms)
    ref_dir = fixtures / name / "reference" / predict
    e_ref = float([l.split() for l in open(ref_dir / "energy.out") if not l.startswith("#")][0][3])
    assert r["energy"] == pytest.approx(e_ref, rel=1e-12)
    at = np.loadtxt(ref_dir / "nnatoms.out")
    np.testing.assert_allclose(r["charges"], at[:, 4], rtol=0, atol=1e-12)
    np.testing.assert_allclose(r["atom_energies_short"], at[:, 6], rtol=0, atol=1e-12)
    f_ref = np.loadtxt(ref_dir / "nnforces.out")[:, 5:8]
    np.testing.assert_allclose(r["forces"], f_ref, rtol=0, atol=1e-12 * max(1.0, np.abs(f_ref).max()))
    assert r["ewald"]["method"] == "n2p2-kolafa-perram"
    out = hdnnp.read_input_data(fixtures / name / "reference" / dataset / "output.data")
    structs = hdnnp.read_input_data(fixtures / name / "train" / "input.data")
    for a, o in list(zip(structs, out))[:5]:
        rr = compute(pot, a)
        assert rr["energy"] == pytest.approx(o.info["energy"], rel=1e-12)
        np.testing.assert_allclose(rr["charges"], o.arrays["ref_charges"], rtol=0, atol=1e-10)
        np.testing.assert_allclose(rr["forces"], o.arrays["ref_forces"], rtol=0, atol=1e-10)


def test_forces_and_virial_are_derivatives(fixtures):
    """A charged (+1) carbon chain and a periodic water box (charged: -1, with the background):
    forces and virial (fixed Ewald parameters) against central differences."""
    pot = _core.FourthGenerationPotential.load(str(fixtures / CC / "potential"))
    chain = hdnnp.read_input_data(fixtures / CC / "predict" / "input.data")[0]
    r = compute(pot, chain, q=1.0)
    h = 1e-5
    for i, c in ((0, 0), (3, 1), (11, 2)):
        e = []
        for s in (1, -1):
            a = chain.copy()
            a.positions[i, c] += s * h
            e.append(compute(pot, a, q=1.0, forces=False, virial=False)["energy"])
        assert r["forces"][i, c] == pytest.approx(-(e[0] - e[1]) / (2 * h), abs=1e-8)
    wpot = _core.FourthGenerationPotential.load(str(fixtures / "n2p2_H2O_RPBE-D3_4G" / "potential"))
    water = hdnnp.read_input_data(fixtures / "n2p2_H2O_RPBE-D3_4G" / "train" / "input.data")[3]
    tol = 1e-6   # the accuracy mode keeps the Ewald parameters fixed under strain only per structure:
    with pytest.raises(_core.InputError, match="total charge of -1 e"):
        compute(wpot, water, q=-1.0, ewald_tolerance=tol)
    r = compute(wpot, water, q=-1.0, ewald_tolerance=tol, background=True)
    fixed = r["ewald"]
    for i, c in ((0, 0), (17, 2)):
        e = []
        for s in (1, -1):
            a = water.copy()
            a.positions[i, c] += s * h
            e.append(compute(wpot, a, q=-1.0, ewald_tolerance=tol, forces=False, virial=False,
                             background=True)["energy"])
        assert r["forces"][i, c] == pytest.approx(-(e[0] - e[1]) / (2 * h), abs=1e-7)
    # virial against strain differences, the Ewald parameters held at the unstrained ones via a
    # Python oracle of the same potential (FourthGeneration with the same eta, r_cut, k_cut)
    py = FourthGeneration(fixtures / "n2p2_H2O_RPBE-D3_4G" / "potential", ewald=tol, background=True)
    from hdnnp.electrostatics import EwaldParameters

    py.ewald_parameters = lambda atoms, solver="dense": EwaldParameters(fixed["eta"], fixed["r_cut"],
                                                                         fixed["k_cut"], fixed["method"])
    assert_virial_is_strain_derivative(lambda b: py.compute(b, total_charge=-1.0, extrapolation="ignore")["energy"],
                                       water, r["virial"], atol=1e-6)


def test_cg_equals_dense_and_warm_starts(fixtures):
    pot = _core.FourthGenerationPotential.load(str(fixtures / "n2p2_H2O_RPBE-D3_4G" / "potential"))
    atoms = hdnnp.read_input_data(fixtures / "n2p2_H2O_RPBE-D3_4G" / "predict" / "input.data")[0]
    d = compute(pot, atoms, ewald_tolerance=1e-6)
    c = compute(pot, atoms, ewald_tolerance=1e-6, solver="cg", cg_tolerance=1e-10)
    assert c["ewald"]["mesh"][0] > 0 and len(c["cg_iterations"]) == 2
    assert c["energy"] == pytest.approx(d["energy"], abs=1e-5)          # (mesh vs structure factors)
    np.testing.assert_allclose(c["charges"], d["charges"], atol=1e-5)
    warm = compute(pot, atoms, ewald_tolerance=1e-6, solver="cg", cg_tolerance=1e-10, warm_start=c["charges"])
    assert warm["cg_iterations"][0] < c["cg_iterations"][0] // 3
    assert warm["energy"] == pytest.approx(c["energy"], abs=1e-9)


def test_threads_and_sharing(fixtures):
    """Results independent of the thread count; one potential used by two threads at once gives
    what it gives alone; two different potentials in one process."""
    water = _core.FourthGenerationPotential.load(str(fixtures / "n2p2_H2O_RPBE-D3_4G" / "potential"))
    slab = _core.FourthGenerationPotential.load(str(fixtures / "n2p2_AlAuMgO_4G" / "potential"))
    wa = hdnnp.read_input_data(fixtures / "n2p2_H2O_RPBE-D3_4G" / "train" / "input.data")[:4]
    sa = hdnnp.read_input_data(fixtures / "n2p2_AlAuMgO_4G" / "predict" / "input.data")[0]
    alone = [compute(water, a, threads=1) for a in wa]
    assert compute(water, wa[0], threads=2)["energy"] == pytest.approx(alone[0]["energy"], rel=1e-13)
    results = {}

    def work(key, pot, atoms):
        results[key] = [compute(pot, a, threads=1) for a in atoms]

    ts = [threading.Thread(target=work, args=("w1", water, wa)), threading.Thread(target=work, args=("w2", water, wa)),
          threading.Thread(target=work, args=("s", slab, [sa]))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for key in ("w1", "w2"):
        for r, ref in zip(results[key], alone):
            assert r["energy"] == ref["energy"]
            np.testing.assert_array_equal(r["forces"], ref["forces"])
    assert results["s"][0]["energy"] == compute(slab, sa, threads=1)["energy"]


def test_bad_input_is_refused(fixtures, tmp_path):
    src = fixtures / "n2p2_H2O_RPBE-D3_4G" / "potential"

    def copy(name):
        d = tmp_path / name
        shutil.copytree(src, d)
        return d

    d = copy("missing")
    os.remove(d / "hardness.008.data")
    with pytest.raises(_core.ModelFileError, match="hardness.008.data: no such file"):
        _core.FourthGenerationPotential.load(str(d))
    d = copy("weights")
    with open(d / "weightse.001.data", "a") as fh:
        fh.write("0.5\n")
    with pytest.raises(_core.ModelFileError, match=r"weightse.001.data: expected \d+ weights"):
        _core.FourthGenerationPotential.load(str(d))
    pot = _core.FourthGenerationPotential.load(str(src))
    atoms = hdnnp.read_input_data(fixtures / "n2p2_H2O_RPBE-D3_4G" / "predict" / "input.data")[0]
    sp = np.full(len(atoms), 5, dtype=np.int32)
    with pytest.raises(_core.InputError, match="atom 0 has an element index outside"):
        pot.compute(np.ascontiguousarray(atoms.positions), sp, np.ascontiguousarray(atoms.cell[:]), 0.0)
    with pytest.raises(_core.ConfigError, match="not a 4G or CENT potential"):
        _core.FourthGenerationPotential.load(str(fixtures / "n2p2_H2O_RPBE-D3_2G" / "potential"))


def _bench(*args):
    import json
    import subprocess

    from hdnnp.bench_path import bench_executable

    exe = bench_executable()
    if not os.path.exists(exe):
        pytest.skip("hdnnp-bench is not built")
    r = subprocess.run([exe, *map(str, args)], capture_output=True, text=True)
    return r, (json.load(open(args[args.index("--json") + 1])) if "--json" in args and r.returncode == 0 else None)


@pytest.mark.parametrize("name,ref", [(CC, "nnp-predict_C10H2"), ("n2p2_AlAuMgO_4G", "nnp-predict_110atoms"),
                                      ("n2p2_H2O_RPBE-D3_4G", "nnp-predict_384atoms")])
def test_hdnnp_bench_runs_4g_and_writes_json(fixtures, tmp_path, name, ref):
    """hdnnp-bench (no Python) on the 4G fixtures: its --json (first evaluation, the potential's
    units) equals n2p2's nnp-predict."""
    r, out = _bench(fixtures / name / "potential", fixtures / name / "predict" / "input.data", "--steps", "0",
                    "--json", tmp_path / "out.json")
    assert r.returncode == 0, r.stderr
    ref_dir = fixtures / name / "reference" / ref
    e_ref = float([l.split() for l in open(ref_dir / "energy.out") if not l.startswith("#")][0][3])
    assert out["energy"] == pytest.approx(e_ref, rel=1e-12)
    at = np.loadtxt(ref_dir / "nnatoms.out")
    assert out["natoms"] == len(at)
    np.testing.assert_allclose(out["charges"], at[:, 4], rtol=0, atol=1e-12)
    f_ref = np.loadtxt(ref_dir / "nnforces.out")[:, 5:8]
    np.testing.assert_allclose(out["forces"], f_ref, rtol=0, atol=1e-12 * max(1.0, np.abs(f_ref).max()))
    assert out["timings"]["first_evaluation"] > 0


def test_hdnnp_bench_options_and_errors(fixtures, tmp_path):
    w = fixtures / "n2p2_H2O_RPBE-D3_4G"
    r, dense = _bench(w / "potential", w / "predict" / "input.data", "--steps", "0", "--ewald", "1e-6", "--json",
                      tmp_path / "d.json")
    assert r.returncode == 0, r.stderr
    r, cg = _bench(w / "potential", w / "predict" / "input.data", "--steps", "1", "--ewald", "1e-6", "--solver", "cg",
                   "--json", tmp_path / "c.json")
    assert r.returncode == 0 and "CG iterations" in r.stdout, r.stderr
    assert cg["energy"] == pytest.approx(dense["energy"], abs=1e-5)
    np.testing.assert_allclose(cg["charges"], dense["charges"], atol=1e-5)
    # 2G: charges empty, forces in the input order, equal to the Python API
    d2 = fixtures / "n2p2_H2O_RPBE-D3_2G"
    r, two = _bench(d2 / "potential", d2 / "predict" / "input.data", "--steps", "0", "--json", tmp_path / "2.json")
    assert r.returncode == 0, r.stderr
    atoms = hdnnp.read_input_data(d2 / "predict" / "input.data")[0]
    py = hdnnp.Potential(d2 / "potential", warn=False).evaluate(atoms, native=True, extrapolation="ignore")
    assert two["charges"] == [] and two["energy"] == pytest.approx(py.energy, rel=1e-12)
    np.testing.assert_allclose(two["forces"], py.forces, rtol=0, atol=1e-12)
    for bad, msg in ((["--ewald", "abc"], "--ewald takes n2p2"), (["--solver", "lu"], "--solver takes dense or cg")):
        r, _ = _bench(w / "potential", w / "predict" / "input.data", *bad)
        assert r.returncode == 2 and msg in r.stderr and r.stderr.startswith("hdnnp-bench: error:")
    r, _ = _bench(tmp_path / "nowhere", w / "predict" / "input.data")
    assert r.returncode == 2 and "nowhere" in r.stderr


def test_mesh_fft_engines_agree():
    """The particle mesh's FFTs by Eigen's FFT module (the default) and by the project's own
    mixed-radix transform give the same products, forces and virial (grids with factors 2, 3, 5)."""
    from synth import random_cluster

    a = random_cluster(n_h=10, n_o=5, box=(7.0, 7.5, 8.0), tilt=(0.5, -0.3, 0.4), seed=2)
    sigma = np.where(np.array(a.get_chemical_symbols()) == "H", 0.6, 1.1)
    x = np.random.default_rng(3).normal(size=len(a))
    out = {}
    for fft in ("eigen", "own"):
        op = _core.Electrostatics(np.ascontiguousarray(a.positions), np.ascontiguousarray(a.cell[:]), sigma, 1.0,
                                  1.2, 6.0, 3.0, mesh=(18, 20, 25), fft=fft)
        out[fft] = (op.apply(x), *op.derivatives(x, x[::-1].copy()))
    for u, v in zip(out["eigen"], out["own"]):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-13)
    with pytest.raises(ValueError, match="fft must be"):
        _core.Electrostatics(np.ascontiguousarray(a.positions), np.ascontiguousarray(a.cell[:]), sigma, 1.0,
                             1.2, 6.0, 3.0, mesh=(18, 20, 25), fft="fftw")


def test_cent_in_the_core(tmp_path):
    """CENT in the core (the same class, no short networks, no adjoint solve) equals the numpy
    path (charged molecules and cells, dense and CG), and hdnnp-bench runs it."""
    from synth import random_cluster, write_cent_potential

    d = write_cent_potential(tmp_path / "cent", extra_lines="# hdnnp: length_unit=Angstrom energy_unit=eV\n")
    pot = hdnnp.load(d, background=True)
    assert pot.core is not None and pot.core.cent
    oracle = NumpyCent(d, background=True)
    for pbc, q, solver in ((False, -1.0, "dense"), (True, 1.0, "dense"), (True, 0.0, "cg")):
        a = random_cluster(seed=5, pbc=pbc)
        r = pot.compute(a, total_charge=q, forces=True, stress=pbc, solver=solver, extrapolation="ignore")
        ref = oracle.evaluate(a, total_charge=q, forces=True, stress=pbc, solver=solver, extrapolation="ignore")
        assert r["energy"] == pytest.approx(ref["energy"], rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(r["charges"], ref["charges"], rtol=0, atol=1e-9 if solver == "cg" else 1e-12)
        np.testing.assert_allclose(r["forces"], ref["forces"], rtol=0, atol=1e-8 if solver == "cg" else 1e-12)
        if pbc:
            np.testing.assert_allclose(r["virial"], ref["virial"], rtol=0, atol=1e-8 if solver == "cg" else 1e-11)
    hdnnp.write_input_data(tmp_path / "in.data", [random_cluster(seed=5, pbc=True)], references=False)
    res, out = _bench(d, tmp_path / "in.data", "--steps", "0", "--json", tmp_path / "c.json")
    assert res.returncode == 0 and "(CENT)" in res.stdout, res.stderr
    ref = pot.compute(random_cluster(seed=5, pbc=True), total_charge=0.0, forces=True, extrapolation="ignore")
    assert out["energy"] == pytest.approx(ref["energy"], rel=1e-12)


def test_hdnnp_bench_charged_cell_needs_background(fixtures, tmp_path):
    w = fixtures / "n2p2_H2O_RPBE-D3_4G"
    atoms = hdnnp.read_input_data(w / "predict" / "input.data")[0]
    atoms.info["charge"] = -1.0
    hdnnp.write_input_data(tmp_path / "charged.data", [atoms], references=False)
    r, _ = _bench(w / "potential", tmp_path / "charged.data", "--steps", "0")
    assert r.returncode == 2 and "total charge of -1 e" in r.stderr and "background" in r.stderr
    r, out = _bench(w / "potential", tmp_path / "charged.data", "--steps", "0", "--background", "--json",
                    tmp_path / "b.json")
    assert r.returncode == 0 and "total charge -1" in r.stdout, r.stderr
    pot = FourthGeneration(w / "potential", background=True)
    assert out["energy"] == pytest.approx(pot.compute(atoms, total_charge=-1.0)["energy"], rel=1e-12)
